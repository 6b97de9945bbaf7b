"""Our SIE training step vs the reference recipe's loop, on the same model and batch.

    python bench/train_step.py [--data data/quickstart] [--steps 2] [--warmup 1] [--repeats 3]
        [--flag speed.fused_optimizer=auto ...] [--precision bf16-mixed] [--threads 1]

Both arms train the quickstart configuration (``experiment=quickstart``: SIE, timm
ResNet-18, 64 px, 64 objects × 2 views per batch, projector 1024-1024-128) from the same
seed, with the same number of loader workers and torch threads:

- **reference** — what facebookresearch/SIE ``main.py`` does, in fp32 (its ``--no-amp``):
  a ``Dataset`` that opens each JPEG with PIL and applies ``Resize``, ``ToTensor``,
  ``Normalize``, loads each latent with ``np.load``, a plain ``DataLoader`` (shuffle),
  NCHW tensors, plain ``torch.optim.Adam``; the loss is the method's weighted terms plus
  the online classifier's cross-entropy (SIE's ``loss + classif_loss``), then
  ``zero_grad``, ``backward``, ``step``.
- **ours** — the real :class:`equissl.ssl.base.SSLMethod` step under a Lightning
  ``Trainer`` (batch-contract check, NaN guard, logging, online probe), the resumable
  loader of :mod:`equissl.training.sampler`, the ``speed`` flags given by ``--flag``
  (default: those that help on CPU) and ``--precision`` (default ``bf16-mixed``: oneDNN's
  AMX / AVX512-BF16 kernels; pass ``32-true`` on a CPU without them).

Both arms run ``--threads`` intra-op threads (default 1: on a machine shared with other jobs,
two OpenMP threads wait on each other at every op; measured 5-50x slower small ops here).

Each repeat runs each arm in a fresh subprocess (arms alternate, so drifts in the shared
machine's load hit both); the rate of a run is the images (objects × 2 views) of its
``--steps`` timed steps over their wall time, data waits included, after ``--warmup``
untimed steps. Reported: median images/s per arm, the ratio ours / reference, peak RSS of the
training process and of its loader workers (``getrusage``), ``torch.cuda.max_memory_allocated``
when on a GPU, and where each arm's step time goes (data wait, forward, backward, optimiser
and the rest; medians of per-step fractions). The peak RSS of "ours" is that of a
quickstart-scale training run (the quickstart's own config, minus evaluation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_FLAGS = [
    "speed.fused_optimizer=auto",
    "speed.channels_last=true",
    "speed.persistent_workers=true",
]
PHASES = ("data", "forward", "backward", "optimizer", "rest")


# ------------------------------------------------------------------------------- config
def quickstart_config(data: str, workers: int, flags: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_module

    from equissl.apps.hydra_main import _resolved
    from equissl.plugins import register_configs

    register_configs()
    overrides = [
        "experiment=quickstart",
        f"data.root={data}",
        f"data.num_workers={workers}",
        "data.generate=null",
        "logger=csv",
        "logger.name=none",
        "trainer.enable_progress_bar=false",
        *flags,
    ]
    with initialize_config_module("equissl.configs", version_base="1.3"):
        return _resolved(compose("pretrain", overrides=overrides))


def ensure_data(path: Path) -> Path:
    """``path`` when it holds a dataset, else a small quickstart-like render into it."""
    if (path / "data" / "train_images.npy").is_file():
        return path
    from equissl.datasets.render.generate import generate_iebench

    print(f"{path}: no dataset; rendering a small one (10 classes x 8 objects, 8 views, 64 px)")
    generate_iebench(
        path, num_classes=10, objects_per_class=8, views=8, resolution=64, spp=8, seed=0
    )
    return path


# ---------------------------------------------------------------------------- timing
class PhaseClock:
    """Per-step wall times of the phases of a training loop (CPU: no device sync needed;
    on a GPU each mark synchronises first)."""

    def __init__(self) -> None:
        self.marks: list[dict[str, float]] = []
        self.last_end: float | None = None
        self.current: dict[str, float] = {}

    def mark(self, name: str) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.current[name] = time.perf_counter()

    def end_step(self) -> None:
        self.mark("end")
        c = self.current
        start = self.last_end if self.last_end is not None else c["start"]
        self.marks.append(
            {
                "total": c["end"] - start,
                "data": c["start"] - start,
                "forward": c["forward"] - c["start"],
                "backward": c["backward"] - c["forward"],
                "optimizer": c["optimizer"] - c["backward"],
                "rest": c["end"] - c["optimizer"],
            }
        )
        self.last_end, self.current = c["end"], {}

    def summary(self, warmup: int, images_per_step: int) -> dict[str, Any]:
        timed = self.marks[warmup:]
        seconds = sum(m["total"] for m in timed)
        return {
            "images_per_s": images_per_step * len(timed) / seconds,
            "step_s": [m["total"] for m in timed],
            "fractions": {k: statistics.median(m[k] / m["total"] for m in timed) for k in PHASES},
        }


def peak_memory() -> dict[str, float]:
    """Peak RSS (MiB) of this process and of its finished children (loader workers)."""
    out = {
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    if torch.cuda.is_available():
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# ------------------------------------------------------------------------- reference
class ReferenceDataset(torch.utils.data.Dataset):
    """The SIE repository's ``Dataset3DIEBench`` recipe: per-sample PIL decode, torchvision
    ``Resize``/``ToTensor``/``Normalize``, ``np.load`` of each latent, 2 random views.
    Returns our batch keys so that the same ``compute_loss`` consumes it."""

    def __init__(self, root: Path, size: int, views: int) -> None:
        from torchvision import transforms

        from equissl.datasets.iebench_format import MEAN, STD

        self.root = root
        self.samples = np.load(root / "data" / "train_images.npy")
        self.labels = np.load(root / "data" / "train_labels.npy")
        self.views = views
        self.transform = transforms.Compose(
            [
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                transforms.Normalize(mean=list(MEAN), std=list(STD)),
            ]
        )

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, path: Path) -> torch.Tensor:
        from PIL import Image

        with open(path, "rb") as f:
            return self.transform(Image.open(f).convert("RGB"))

    def __getitem__(self, i: int) -> dict[str, Any]:
        obj = self.root / str(self.samples[i]).strip("/")
        views = np.random.choice(self.views, 2, replace=False)
        imgs = [self.image(obj / f"image_{v}.jpg") for v in views]
        lats = [np.load(obj / f"latent_{v}.npy").astype(np.float32) for v in views]
        return {
            "views": torch.stack(imgs),
            "latents": torch.from_numpy(np.stack(lats)),
            "label": int(self.labels[i]),
        }


def run_reference(config: dict[str, Any], steps: int, warmup: int) -> dict[str, Any]:
    import torch.nn.functional as F

    from equissl.ssl.loading import build_method
    from equissl.training.datamodule import PretrainDataModule

    torch.manual_seed(int(config["seed"]))
    ours = PretrainDataModule(config["data"], 2)  # for the data spec and views per object
    method = build_method(config, ours.spec)
    method.train()
    data = config["data"]
    views = ours.dataset.views_per_object
    dataset = ReferenceDataset(Path(data["root"]), int(data["image_size"]), views)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=int(data["batch_size"]),
        shuffle=True,
        drop_last=True,
        num_workers=int(data["num_workers"]),
        pin_memory=torch.cuda.is_available(),
    )
    o = config["method"]["optim"]
    optimizer = torch.optim.Adam(
        method.parameters(), lr=float(o["lr"]), weight_decay=float(o["weight_decay"])
    )
    clock, done = PhaseClock(), 0
    while done < warmup + steps:
        for batch in loader:
            clock.mark("start")
            out = method.compute_loss(batch)
            loss = method.total_loss(out.terms) + F.cross_entropy(
                method.online_classifier(out.embedding.detach()), batch["label"]
            )
            clock.mark("forward")
            optimizer.zero_grad()
            loss.backward()
            clock.mark("backward")
            optimizer.step()
            clock.mark("optimizer")
            float(loss.detach())  # SIE logs stats["loss"].item()
            clock.end_step()
            done += 1
            if done == warmup + steps:
                break
    return clock.summary(warmup, 2 * int(data["batch_size"]))


# ------------------------------------------------------------------------------ ours
def run_ours(config: dict[str, Any], steps: int, warmup: int) -> dict[str, Any]:
    import lightning.pytorch as pl

    from equissl.ssl.loading import build_method
    from equissl.training.datamodule import PretrainDataModule

    clock = PhaseClock()

    class Clock(pl.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            clock.mark("start")

        def on_before_backward(self, *args: Any) -> None:
            clock.mark("forward")

        def on_after_backward(self, *args: Any) -> None:
            clock.mark("backward")

        def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
            # Lightning has no hook after the optimiser's update: torch's own step hook
            trainer.optimizers[0].register_step_post_hook(lambda *a: clock.mark("optimizer"))

        def on_train_batch_end(self, *args: Any) -> None:
            clock.end_step()

    pl.seed_everything(int(config["seed"]), verbose=False)
    t = config["trainer"]
    trainer = pl.Trainer(
        accelerator=t["accelerator"],
        devices=1,
        precision=t["precision"],
        max_steps=warmup + steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Clock()],
        use_distributed_sampler=False,
    )
    dm = PretrainDataModule(config["data"], 2, seed=int(config["seed"]), speed=config["speed"])
    method = build_method(config, dm.spec)
    trainer.fit(method, datamodule=dm)
    return clock.summary(warmup, 2 * int(config["data"]["batch_size"]))


# ---------------------------------------------------------------------------- driver
def child(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    flags = args.flag if args.arm == "ours" else []
    config = quickstart_config(args.data, args.workers, flags)
    if args.precision and args.arm == "ours":
        config["trainer"]["precision"] = args.precision
    run = run_ours if args.arm == "ours" else run_reference
    result = run(config, args.steps, args.warmup)
    result.update(peak_memory(), threads=torch.get_num_threads())
    print("RESULT " + json.dumps(result), flush=True)


def spawn(args: argparse.Namespace, arm: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--arm", arm, "--data", str(args.data)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--workers", str(args.workers), "--threads", str(args.threads)]
    cmd += [f"--flag={f}" for f in args.flag]
    if args.precision:
        cmd += ["--precision", args.precision]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError(f"{arm} run failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def summarise(runs: dict[str, list[dict]]) -> dict[str, Any]:
    arms = {}
    for arm, rs in runs.items():
        arms[arm] = {
            "images_per_s": statistics.median(r["images_per_s"] for r in rs),
            "images_per_s_runs": [r["images_per_s"] for r in rs],
            "median_step_s": statistics.median(s for r in rs for s in r["step_s"]),
            "peak_rss_mib": max(r["rss_mib"] for r in rs),
            "peak_worker_rss_mib": max(r["workers_rss_mib"] for r in rs),
            "fractions": {k: statistics.median(r["fractions"][k] for r in rs) for k in PHASES},
            "threads": rs[0]["threads"],
        }
        if "cuda_max_allocated_mib" in rs[0]:
            arms[arm]["cuda_max_allocated_mib"] = max(r["cuda_max_allocated_mib"] for r in rs)
    # ratio of medians, and the median of the per-repeat ratios (paired runs)
    paired = [
        o["images_per_s"] / r["images_per_s"]
        for o, r in zip(runs["ours"], runs["reference"], strict=True)
    ]
    return {
        "arms": arms,
        "ratio": arms["ours"]["images_per_s"] / arms["reference"]["images_per_s"],
        "paired_ratio_median": statistics.median(paired),
        "paired_ratios": paired,
    }


def report(result: dict[str, Any]) -> str:
    a = result["arms"]
    lines = [
        f"train_step ({result['date']}; {result['machine']['note']}; torch "
        f"{result['torch']}, {a['ours']['threads']} intra-op thread(s), "
        f"{result['workers']} loader worker(s))",
        f"SIE quickstart config, batch {result['batch']} objects x 2 views at "
        f"{result['image_size']} px; {result['steps']} timed steps after {result['warmup']} "
        f"warm-up, {result['repeats']} repeats; ours: {' '.join(result['flags']) or 'plain'}",
        f"{'arm':10s} {'images/s':>9s} {'step s':>7s} {'RSS MiB':>8s} {'workers':>8s}  "
        + " ".join(f"{k:>9s}" for k in PHASES),
    ]
    for name in ("reference", "ours"):
        r = a[name]
        lines.append(
            f"{name:10s} {r['images_per_s']:9.2f} {r['median_step_s']:7.2f} "
            f"{r['peak_rss_mib']:8.0f} {r['peak_worker_rss_mib']:8.0f}  "
            + " ".join(f"{100 * r['fractions'][k]:8.1f}%" for k in PHASES)
        )
    lines.append(
        f"ratio ours/reference: {result['ratio']:.2f}x (median of paired repeats "
        f"{result['paired_ratio_median']:.2f}x; target >= 1.0x on CPU, >= 1.5x on a GPU)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "quickstart"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads of both arms (0: torch's)"
    )
    parser.add_argument("--flag", action="append", default=None, help="speed override")
    parser.add_argument(
        "--precision", default="bf16-mixed", help="ours: trainer.precision (reference: fp32)"
    )
    parser.add_argument("--out", default=str(RESULTS / "train_step_cpu"))
    parser.add_argument("--arm", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flag is None:
        args.flag = list(DEFAULT_FLAGS)
    if args.arm:
        child(args)
        return 0
    args.data = ensure_data(Path(args.data))
    runs: dict[str, list[dict]] = {"reference": [], "ours": []}
    for r in range(args.repeats):
        for arm in ("reference", "ours") if r % 2 == 0 else ("ours", "reference"):
            runs[arm].append(spawn(args, arm))
            print(f"repeat {r} {arm}: {runs[arm][-1]['images_per_s']:.2f} images/s", flush=True)
    config = quickstart_config(str(args.data), args.workers, [])
    result = {
        "bench": "train_step",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "note": "2-core CPU shared with other jobs, no GPU"
            if not torch.cuda.is_available()
            else "GPU",
        },
        "torch": torch.__version__,
        "data": str(args.data),
        "batch": int(config["data"]["batch_size"]),
        "image_size": int(config["data"]["image_size"]),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "workers": args.workers,
        "flags": args.flag + ([f"trainer.precision={args.precision}"] if args.precision else []),
        **summarise(runs),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
