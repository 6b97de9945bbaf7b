"""equissl's SLURM launcher for Hydra sweeps (``hydra/launcher=slurm``): hydra-submitit-launcher's
with failing failed jobs, jobs named after their run folders and a closing table of the
sweep (:mod:`equissl.apps.sweep_jobs`). Hydra instantiates launchers only from the
``hydra_plugins`` namespace, hence this package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)

from equissl.apps.hydra_main import setup
from equissl.apps.sweep_jobs import sweep_table


class EquisslSlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's ``SlurmLauncher`` with failing failed jobs, job names and a
    closing table (module docstring)."""

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, *args: Any) -> JobReturn:
        setup()  # equissl's resolvers and schemas: a job process starts without them
        ret = super().__call__(sweep_overrides, job_dir_key, *args)
        if ret.status == JobStatus.FAILED:
            raise ret._return_value  # submitit logs it, records it and exits non-zero
        return ret

    def run_folder(self, overrides: Sequence[str]) -> Path:
        """The output folder of the job with ``overrides`` (``hydra.sweep.dir/subdir``),
        resolved as the job resolves it (``hydra:`` interpolations read the job's config)."""
        assert self.hydra_context is not None and self.config is not None
        setup_globals()  # the hydra: resolver
        setup()  # equissl's resolvers (run_hash) and schemas
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        hydra_config = HydraConfig.instance()
        previous = hydra_config.cfg
        hydra_config.set_config(cfg)
        try:
            return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        finally:
            if previous is not None:
                hydra_config.cfg = previous

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        submitted: list[Any] = []
        map_array = submitit.AutoExecutor.map_array

        def keep_jobs(executor: Any, fn: Any, *iterables: Any) -> list[Any]:
            jobs = map_array(executor, fn, *iterables)
            submitted.extend(jobs)
            return jobs

        with mock.patch.object(submitit.AutoExecutor, "map_array", keep_jobs):
            try:
                return super().launch(job_overrides, initial_job_idx)
            finally:  # after every job ended, also when one failed
                folders = [self.run_folder(o) for o in job_overrides]
                print(sweep_table(submitted, folders), flush=True)
