"""What SLURM shows for each way a ``slurm/pretrain.sbatch`` job can be interrupted: the
per-attempt records (``jobcomp/filetxt``, what ``sacct -D`` lists with accounting on) and
the final ``scontrol show job`` state, exit code and restart count, measured on the private
single-node SLURM of the ``slurm`` tests (slurm-wlm 22.05).

    python bench/slurm_states.py --out bench/results/slurm_states_cpu.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import write_iebench_tree  # noqa: E402
from tests.slurm.cluster import Cluster  # noqa: E402
from tests.slurm.conftest import TEMPLATES, job_environment, pretrain_args  # noqa: E402

SCENARIOS = {
    "plain": [],
    "scancel --signal=USR1 (the tasks)": ["scancel", "--signal=USR1"],
    "scancel --batch --signal=USR1 (the batch shell)": ["scancel", "--batch", "--signal=USR1"],
    "scontrol requeue": ["scontrol", "requeue"],
    "scancel (SIGTERM)": ["scancel"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="slurm_states_"))
    cluster = Cluster(root / "slurm")
    cluster.start()
    tree = write_iebench_tree(root / "data")
    env = job_environment()
    rows = []
    try:
        for name, action in SCENARIOS.items():
            where = root / name.split()[0].replace("-", "") / str(len(rows))
            where.mkdir(parents=True)
            job = cluster.sbatch(
                "--cpus-per-task=1",
                str(TEMPLATES / "pretrain.sbatch"),
                *pretrain_args(tree, 300),
                cwd=where,
                env=env,
            )
            if action:
                losses = where / "run" / "step_losses.jsonl"
                while not losses.is_file() or len(losses.read_text().splitlines()) < 5:
                    time.sleep(0.3)
                cluster.cmd(*action, job)
            final = cluster.wait(job, timeout=600)
            attempts = ", ".join(
                f"{r['JobState']} {r['ExitCode']}" for r in cluster.completion_records(job)
            )
            rows.append(
                f"| {name} | {attempts} | {final.state} {final.exit_code} | {final.restarts} |"
            )
            print(rows[-1], flush=True)
    finally:
        cluster.stop()
    text = (
        "# What SLURM shows per interruption of `slurm/pretrain.sbatch` (slurm-wlm 22.05, "
        "private single-node cluster on the 2-core CPU machine; `bench/slurm_states.py`)\n\n"
        "A 300-step CPU run, interrupted after step 5. Records: one per attempt that ended "
        "(jobcomp/filetxt; `sacct -D` lists the same with accounting on); final: "
        "`scontrol show job` once the job left the queue.\n\n"
        "| scenario | records (state exit) | final state exit | restarts |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
