"""How far SIE's probe numbers move between the two backbone modes, on one checkpoint.

``eval.backbone_mode=eval`` (our default) trains every probe on cached features of the
frozen backbone in ``eval()`` mode; ``eval.backbone_mode=reference`` reruns it in
``train()`` mode on every probe batch, as SIE's ``eval_classification.py``,
``eval_angle_prediction.py`` and ``eval_color_prediction.py`` do (batch statistics while
training, drifted running statistics on the test split). This evaluates one checkpoint in
both modes with the same probes, seeds and views, and prints each headline metric in both,
their difference and the metric's floor, with the wall time of each evaluation:

    python bench/backbone_mode.py --checkpoint runs/qs/outputs/seed0_t1/checkpoints/last.ckpt \\
        --cwd runs/qs --out bench/results/backbone_mode_cpu.md

``--cwd`` is where the checkpoint's relative ``data.root`` resolves (the folder the run was
started from). Each mode writes its evaluation under ``<out dir>/backbone_mode_<mode>``
beside the checkpoint's run; the eval-mode run reuses the run's feature cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

MODES = ("eval", "reference")
#: (probe, metric, its floor in results.json, direction)
HEADLINE = (
    ("classification", "top1", "chance_top1", "↑"),
    ("rotation", "r2_global", "constant_r2_global", "↑"),
    ("color", "r2_global", "constant_r2_global", "↑"),
)
SCRIPT = Path(sys.executable).parent / "equissl-evaluate"


def evaluate(checkpoint: Path, cwd: Path, out: Path, mode: str, extra: list[str]) -> float:
    """``equissl-evaluate`` of ``checkpoint`` in ``mode`` into ``out``; its wall seconds."""
    start = time.perf_counter()
    subprocess.run(
        [
            str(SCRIPT),
            f"checkpoint={checkpoint}",
            f"eval.backbone_mode={mode}",
            "probe=[" + ",".join(p for p, *_ in HEADLINE) + "]",
            f"hydra.run.dir={out}",
            *extra,
        ],
        cwd=cwd,
        check=True,
    )
    return time.perf_counter() - start


def table(results: dict[str, dict], parts: list[str]) -> str:
    lines = [
        "| part / probe / metric | eval() cached (default) | train() as SIE (reference) "
        "| reference − default | floor |",
        "|---|---|---|---|---|",
    ]
    for part in parts:
        for probe, metric, floor, arrow in HEADLINE:
            key = f"{part}/{probe}/{metric}"
            got = [results[m]["metrics"].get(key) for m in MODES]
            if None in got:
                continue
            low = results["eval"]["metrics"].get(f"{part}/{probe}/{floor}", float("nan"))
            lines.append(
                f"| {key} {arrow} | {got[0]:.4f} | {got[1]:.4f} | {got[1] - got[0]:+.4f} "
                f"| {low:.4f} ({floor}) |"
            )
    return "\n".join(lines)


def protocols(results: dict) -> str:
    """``classification: linear, 100 epochs (reference 300); …`` from the protocol cards."""
    out = []
    for probe, *_ in HEADLINE:
        card = results["protocols"].get(probe)
        if card:
            changed = [d for d in card["deviations"] if d.startswith("epochs:")]
            note = f" ({changed[0].split(' here')[0]})" if changed else ""
            out.append(f"{probe}: {card['head']}, {card['epochs']} epochs{note}")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="where data.root resolves")
    parser.add_argument("--parts", default="inv,equi", help="parts to probe (eval.parts)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--override", action="append", default=[], help="extra key=value")
    parser.add_argument(
        "--collect", action="store_true", help="only tabulate the two evaluations on disk"
    )
    args = parser.parse_args()
    ckpt = args.checkpoint.resolve()
    parts = [p for p in args.parts.split(",") if p]
    extra = [f"eval.parts=[{','.join(parts)}]", *args.override]
    results, seconds = {}, {}
    for mode in MODES:
        out = ckpt.parent.parent / f"backbone_mode_{mode}"
        if not args.collect:
            seconds[mode] = evaluate(ckpt, args.cwd.resolve(), out, mode, extra)
        results[mode] = json.loads((out / "results.json").read_text())
    config = results["eval"]["config"]
    card = results["reference"]["protocols"]["classification"]
    text = (
        "# Probe backbone mode: cached eval() features against SIE's train() mode\n\n"
        f"`python bench/backbone_mode.py` on `{ckpt.name}` of a "
        f"`{config['method']['name']}` run ({config['backbone']['name']}, "
        f"{config['trainer']['max_steps']} steps, {config['data']['image_size']} px, "
        f"{card['train_objects']} training / {card['test_objects']} test objects); "
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, no GPU. "
        "Same probes, seeds and views in both modes (the SIE protocols: "
        + protocols(results["reference"])
        + "); the floor is the probe's chance or constant predictor.\n\n"
        + table(results, parts)
        + (
            "\n\nWall time of the evaluation: "
            + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items())
            if seconds
            else ""
        )
        + (f"\n\nOverrides: {' '.join(args.override)}" if args.override else "")
        + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
