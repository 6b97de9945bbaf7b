"""Console entry points: equissl-pretrain, -evaluate, -generate, -validate (DESIGN §6)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from equissl.config import register_configs

log = logging.getLogger("equissl")


def eval_dir(checkpoint: str) -> str:
    """Run directory of a checkpoint: ``<run>/checkpoints/x.ckpt`` -> ``<run>``."""
    p = Path(checkpoint)
    return str(p.parent.parent if p.parent.name == "checkpoints" else p.parent)


register_configs()
if not OmegaConf.has_resolver("eval_dir"):
    OmegaConf.register_new_resolver("eval_dir", eval_dir)


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore


@hydra.main(version_base="1.3", config_path="configs", config_name="pretrain")
def _pretrain(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.eval.report import markdown_table
    from equissl.train import pretrain

    config = _resolved(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    last = pretrain(config, run_dir)
    print(f"checkpoint: {last}")
    if config["evaluate_after"]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        results = evaluate_checkpoint(last, config["eval"], run_dir / "eval")
        print(f"\nresults: {run_dir / 'eval' / 'results.json'}\n")
        print(markdown_table([results]))


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def _evaluate(cfg: DictConfig) -> None:
    from equissl.eval.evaluate import evaluate_checkpoint
    from equissl.eval.report import markdown_table

    config = _resolved(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    overrides = {"root": config["data_root"], "splits_dir": config["splits_dir"]}
    results = evaluate_checkpoint(config["checkpoint"], config["eval"], out_dir, overrides)
    print(f"\nresults: {out_dir / 'results.json'}\n")
    print(markdown_table([results]))


def pretrain() -> None:
    _pretrain()


def evaluate() -> None:
    _evaluate()


def generate(argv: list[str] | None = None) -> None:
    from equissl.generate_cli import main

    sys.exit(main(sys.argv[1:] if argv is None else argv))


def validate(argv: list[str] | None = None) -> None:
    from equissl.validate_cli import main

    sys.exit(main(sys.argv[1:] if argv is None else argv))
