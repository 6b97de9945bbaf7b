"""Data wait and peak memory of a real (shortened) quickstart training run, loose vs packed data
(issue 13 item 3: "the fraction of step time spent waiting for data in a real training run";
"memory: peak RSS of the quickstart").

    python bench/data_wait.py [--data data/quickstart] [--steps 30] [--warmup 3] [--repeats 1]
                              [--out bench/results/data_wait_cpu]

Each arm is the README's quickstart run (``experiment=quickstart``: SIE, ResNet-18, 64 px,
batch 64 objects x 2 views, 2 loader workers, persistent workers, fused Adam) through the real
``equissl.training.pretrain.pretrain``, shortened to ``--warmup + --steps`` steps and without the
evaluation stage, in a fresh subprocess:

- **loose**: ``data.root`` = the loose tree (``image_{v}.jpg`` + ``latent_{v}.npy``);
- **packed**: the same tree packed by ``equissl-pack`` (jpeg payloads);
- **packed u8**: packed, with ``speed.normalize_on_device=true`` (uint8 views through the
  loader, normalised after the batch transfer).

Per step the run is timed by one callback added to its Trainer: the *data wait* is the gap
between the end of one step's ``on_train_batch_end`` and the next ``on_train_batch_start``
(Lightning's fetch of the next batch from the loader, its transfer and
``on_after_batch_transfer``); the *step* is the whole interval from one step's end to the
next. Reported: the fraction data wait / step (median over the timed steps, and summed),
images/s, and the peak memory of the training process tree: peak RSS of the main process
and of its largest worker (``getrusage``), and the peak of the sum over the process and its
loader workers of RSS and of PSS (``/proc/PID/smaps_rollup``, sampled every 0.1 s; PSS
splits pages shared by forked workers, so it is the tree's real footprint, RSS summed
double-counts them).
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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ARMS = {
    "loose": ("loose", []),
    "packed": ("packed", []),
    "packed u8": ("packed", ["speed.normalize_on_device=true"]),
}


# ------------------------------------------------------------------------------ child
def child(args: argparse.Namespace) -> None:
    """One shortened quickstart run with a step clock; prints ``RESULT {json}``."""
    import lightning.pytorch as pl
    from hydra import compose, initialize_config_module

    from equissl.apps.hydra_main import _resolved
    from equissl.plugins import register_configs
    from equissl.training.pretrain import pretrain

    marks: list[tuple[float, float]] = []  # (batch start, batch end) per step
    state: dict[str, float] = {}

    class StepClock(pl.Callback):
        def on_train_batch_start(self, *a: Any) -> None:
            state["start"] = time.perf_counter()

        def on_train_batch_end(self, *a: Any) -> None:
            marks.append((state["start"], time.perf_counter()))

    class TimedTrainer(pl.Trainer):  # the real pretrain(), one callback added
        def __init__(self, *a: Any, callbacks: list | None = None, **kw: Any) -> None:
            super().__init__(*a, callbacks=[*(callbacks or []), StepClock()], **kw)

    pl.Trainer = TimedTrainer  # type: ignore[misc]
    register_configs()
    overrides = [
        "experiment=quickstart",
        f"data.root={args.data}",
        "data.generate=null",
        f"trainer.max_steps={args.warmup + args.steps}",
        "evaluate_after=false",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        *args.flag,
    ]
    with initialize_config_module("equissl.configs", version_base="1.3"):
        config = _resolved(compose("pretrain", overrides=overrides))
    with tempfile.TemporaryDirectory() as run:
        pretrain(config, Path(run))
    waits, steps = [], []
    for (start, end), (_, prev_end) in zip(marks[1:], marks[:-1], strict=True):
        waits.append(start - prev_end)
        steps.append(end - prev_end)
    waits, steps = waits[args.warmup - 1 :], steps[args.warmup - 1 :]
    batch = int(config["data"]["batch_size"])
    result = {
        "steps": len(steps),
        "wait_fraction_median": statistics.median(w / s for w, s in zip(waits, steps, strict=True)),
        "wait_fraction_total": sum(waits) / sum(steps),
        "wait_s_median": statistics.median(waits),
        "step_s_median": statistics.median(steps),
        "images_per_s": 2 * batch * len(steps) / sum(steps),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "largest_worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- parent
def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc/*/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak of the summed RSS and PSS (MiB) of a process tree, sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak = {"rss_sum_mib": 0.0, "pss_sum_mib": 0.0, "processes": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = tree(self.pid)
            rss = sum(kib(f"/proc/{p}/status", "VmRSS:") for p in pids) / 1024
            pss = sum(kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) / 1024
            self.peak["rss_sum_mib"] = max(self.peak["rss_sum_mib"], rss)
            self.peak["pss_sum_mib"] = max(self.peak["pss_sum_mib"], pss)
            self.peak["processes"] = max(self.peak["processes"], len(pids))
            self.stop.wait(self.period)


def spawn(args: argparse.Namespace, root: Path, flags: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--data", str(root)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += [f"--flag={f}" for f in flags]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        stdout, stderr = proc.communicate()
        sampler.stop.set()
        sampler.join()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(stdout[-3000:] + stderr[-3000:])
        raise RuntimeError(f"run {flags} on {root} failed (exit {proc.returncode})")
    return {**json.loads(lines[-1][len("RESULT ") :]), **sampler.peak}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"# bench/data_wait.py, {result['date']}",
        f"machine: {result['machine']}",
        f"quickstart run (SIE, ResNet-18, 64 px, batch 64 x 2 views, 2 loader workers) on "
        f"{result['data']}; {result['steps']} timed steps after {result['warmup']}, "
        f"{result['repeats']} repeat(s), arms interleaved; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"{'arm':10s} {'wait/step':>9s} {'(summed)':>9s} {'wait s':>7s} {'step s':>7s} "
        f"{'images/s':>9s} {'RSS main':>9s} {'worker':>7s} {'sum RSS':>8s} {'sum PSS':>8s}",
    ]
    for name, r in result["arms"].items():
        lines.append(
            f"{name:10s} {100 * r['wait_fraction_median']:8.2f}% "
            f"{100 * r['wait_fraction_total']:8.2f}% {r['wait_s_median']:7.3f} "
            f"{r['step_s_median']:7.2f} {r['images_per_s']:9.2f} {r['rss_mib']:9.0f} "
            f"{r['largest_worker_rss_mib']:7.0f} {r['rss_sum_mib']:8.0f} {r['pss_sum_mib']:8.0f}"
        )
    lines.append(
        "memory in MiB: peaks over the run (RSS main / largest worker: getrusage; sums over"
    )
    lines.append("the process tree sampled from /proc every 0.1 s)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "quickstart"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "data_wait_cpu"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--flag", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warmup < 1:
        ap.error("--warmup must be ≥ 1 (the first step has no previous step to time from)")
    if args.child:
        child(args)
        return 0
    from data_path import machine  # bench/ is sys.path[0] of a script run from it

    from equissl.datasets.packed import PackSettings, pack_chunk

    loose = Path(args.data)
    with tempfile.TemporaryDirectory(prefix="equissl-data-wait-") as work:
        packed = Path(work) / "packed"
        pack_chunk(loose, packed, PackSettings())
        roots = {"loose": loose, "packed": packed}
        runs: dict[str, list[dict]] = {name: [] for name in ARMS}
        for r in range(args.repeats):
            order = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))
            for name in order:
                fmt, flags = ARMS[name]
                runs[name].append(spawn(args, roots[fmt], flags))
                print(f"repeat {r} {name}: {runs[name][-1]}", flush=True)
    arms = {
        name: {k: statistics.median(run[k] for run in rs) for k in rs[0]}
        for name, rs in runs.items()
    }
    result = {
        "bench": "data_wait",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "platform": platform.platform(),
        "data": str(loose),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "arms": arms,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = report(result)
    out.with_suffix(".txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
