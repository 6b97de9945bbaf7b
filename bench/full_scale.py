"""Every stage a user runs, measured at growing data sizes up to the real 3DIEBench size
(52,472 objects x 50 views = 2.62 M views): time and peak memory (anonymous and file-backed
apart) per stage, the growth exponent between sizes, and why a stage is not linear or flat
where it is not (issue 25).

    python bench/full_scale.py [--sizes 1000,4000,16000] [--loose-max 16000] [--full]
        [--views 50] [--translation] [--steps 200] [--epochs 1] [--work DIR]
        [--skip-at-full knn_flat,predictor] [--out bench/results/full_scale_cpu]

**Data.** A synthetic tree in the published layout, written quickly: ``<synset>/<obj_id>/
image_{v}.jpg`` (16 px JPEGs, drawn from a pool of 256 encoded once) and ``latent_{v}.npy``
(float64, 7 values as 3DIEBench: Euler angles in [-π/2, π/2], floor hue, spot-light θ, φ and
hue; 10 with ``--translation``, 3DIEBench-T's translation added; a loose tree's files are
hard links into a pool of 256 JPEGs and 4,096 latent files, a packed tree's latents are
drawn per view), 55 synsets (labels
0..54), split files ``data/{train,val}_{images,labels}.npy`` (80 / 20 per class, entries
``/synset/obj_id/``). Sizes up to ``--loose-max`` objects are written loose, packed by the
``pack`` stage (``equissl-pack``); larger ones (``--full``: 52,472) are written packed
directly with the shard writer ``equissl-pack`` and ``equissl-generate format=packed`` use
(:func:`equissl.datasets.packed.write_shard`): a loose tree at full size is 2.6 M images and
2.6 M latent files, ~21 GB of 4 KiB blocks, more than this machine's disk holds.

**Stages**, each one process (the console command a user types where there is one), its
process tree polled every 0.05 s:

* ``build loose`` / ``build packed``: writing the synthetic tree (the bench's own cost);
* ``validate loose``, ``validate packed``: ``equissl-validate ROOT workers=1`` (every image
  decoded, every latent read);
* ``pack``: ``equissl-pack ROOT OUT`` (verify: every image decoded);
* ``cache key folders`` / ``cache key files``: the feature cache's key of both splits of the
  loose tree, ``eval.data_check`` folders (default) and files (``work s``: the key alone);
* ``pretrain``: ``equissl-pretrain`` SIE with a tiny timm ResNet (``test_resnet``, 96-d,
  16 px views, inv 48 / equi 48, projector 64-64-64), batch 64 x 2 views, one loader worker,
  ``--steps`` steps on the packed tree: start-up and the data path;
* ``features loose`` / ``features packed``: ``equissl-evaluate probe=[]``: the feature cache
  of every view of both splits (no loader worker); ``cache hit loose``: the same command
  again (key confirmed, cache reused);
* one ``equissl-evaluate`` per probe on the packed tree's cache (``eval.parts=[equi]``):
  ``classification``, ``rotation``, ``color`` (``--epochs`` epochs each instead of 300 / 300
  / 50: the per-epoch cost), ``predictor`` (MRR / Hit@k over every validation object, PRE
  against every validation view), ``knn_flat`` and ``knn_ivf`` (bank: every train view),
  ``diagnostics``; ``other probes``: the default list's probes for other data (translation
  probes with ``--translation`` in the list above), which only report why they skip;
* ``report``: ``equissl-report`` over this size's evaluation folders.

The evaluations use one checkpoint (the smallest size's ``pretrain``) at every size.
Columns: wall and CPU seconds (the process and the children it waited for), peak over the
process tree of the summed ``RssAnon`` and ``RssFile`` (``/proc/PID/status``), and of the
summed ``Pss_Anon`` (``smaps_rollup``, every second: pages shared by forked workers counted
once).
Exponents ``log(t2/t1) / log(n2/n1)`` between consecutive sizes, of CPU seconds (the
machine may be shared: wall time includes waiting for a CPU; the machine's load average is
recorded per stage), of the key's own CPU time for the ``cache key`` rows; fixed start-up
costs (imports, config: ~5-9 s of CPU and ~0.5 GB anonymous for torch) pull them towards 0
at small sizes: read the last pair (``work``: beyond the command's fixed cost, below).
Stages listed in ``--skip-at-full`` are not run at the full size (the CPU budget of a
shared 2-core machine); their CPU time there is extrapolated from the last two sizes and
marked so. Without ``features packed`` at full size, the probes there run on a cache of the
real key and shapes filled with random features (``synthetic cache``), so that they run at
full size all the same.

Writes ``<out>.json`` and ``<out>.md`` (and ``<out>.partial.json`` after each size). Needs
~8 KB of disk per loose object (its folder; the files are hard links into a pool, see
:func:`build_loose`), ~45 KB per packed object, ~40 KB per object of feature cache;
estimated and printed before anything is written, and each size's trees are deleted after
it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from data_wait import tree  # the process-tree walk of the data-wait bench (bench/ is on the path)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FULL = 52_472
SYNSETS = tuple(f"{2691156 + 7919 * i:08d}" for i in range(55))  # 55 synset-like ids
POOL = 256  # distinct JPEGs
LATENT_POOL = 4096  # distinct latent files of a loose tree
IMAGE_SIZE = 16
LOOSE_BLOCK = 4096  # a file's minimum allocation on this file system
SIE_TINY = [
    "method=sie",
    "backbone.name=test_resnet",
    "method.inv_dim=48",
    "method.projector=[64,64,64]",
    f"data.image_size={IMAGE_SIZE}",
]
#: why a stage is not linear in time or flat in anonymous memory, where it is not
WHY = {
    "validate loose": "anonymous memory: the split files' entries, and per object its view "
    "count and latent lengths (an int and a range; kept to name the minority objects at the "
    "end), a few objects in flight (equissl.datasets.validate.bounded_map)",
    "validate packed": "file-backed memory: the shard pages read are mapped into the "
    "process, at most MAPPED_BUDGET (256 MiB) at a time (equissl.datasets.packed; "
    "docs/packed_shards.md, 'Memory'); the rest of RssFile is the libraries (torch ~0.45 GB); "
    "anonymous: the split's entries, offsets and latents checked block by block",
    "pack": "file-backed: the files read and the shard written go through the page cache "
    "(reclaimable, not the process's own memory)",
    "features loose": "flat: each batch is written into the cache's files with a file write "
    "(equissl.eval.features.ArrayStore), not through a map of the process, so neither "
    "anonymous nor file-backed RSS follows the cache's size; the written pages are in the "
    "kernel's page cache (reclaimable, docs/evaluation.md)",
    "features packed": "as features loose, plus up to MAPPED_BUDGET of mapped shard pages",
    "synthetic cache": "the bench's own stage: writes a full-size cache of random features "
    "the way an extraction does (file writes, 4,096 objects at a time)",
    "classification": "anonymous memory: the predicted class and the label of every "
    "validation view (16 bytes each; the logits are reduced per batch); training draws view "
    "indices and gathers each batch from the memory-mapped cache "
    "(equissl.eval.probes.base.view_features)",
    "rotation": "anonymous memory: each fixed validation pair's target and prediction (kept "
    "for the scatter), [P, 4] each, P = 10 pairs per object; inputs gathered per batch, the "
    "constant floor's mean accumulated chunk by chunk (equissl.eval.probes.pair_regression)",
    "color": "as rotation, a linear head",
    "predictor": "MRR / Hit@k are linear (each prediction ranked among its own object's "
    "views); PRE is an exact nearest-neighbour search of every validation view's prediction "
    "among every validation view, O((N_val x V)^2 x E): quadratic, as the reference "
    "protocol. Anonymous memory holds the embeddings of every validation view (the "
    "ranking's and PRE's bank) and the index's normalised copy; predictions are made, "
    "ranked and searched chunk by chunk of objects",
    "knn_flat": "exact search: every validation view against every training view, "
    "O(N_val x N_train x V^2 x D) time, quadratic in N; anonymous memory holds the bank "
    "once (N_train x V x D float32, normalised; the memory-mapped cache is not copied "
    "first), linear in N. index: ivf scans nprobe of sqrt(bank) lists instead",
    "knn_ivf": "anonymous memory holds the bank once, in the lists (one array sized once, "
    "filled 65,536 prepared vectors at a time; faiss keeps only the centroids): linear in "
    "N, ~0.4 GB for a 48-d part at full size (x 10 for a 512-d ResNet-18 part; bank_views= "
    "caps it); faiss's own lists grew as std::vectors, ~1.6 x the bank (measured on 600 k "
    "x 48: +200 MiB held for the 110 MiB bank, now +149); time ~ N^1.5: k-means on "
    "64 x sqrt(B) points and nprobe of sqrt(B) lists scanned per query",
    "diagnostics": "the distances and the variance decomposition read the part chunk by "
    "chunk (two passes over the objects); the equivariance fit accumulates moments over "
    "pair chunks; PCA / t-SNE on seeded subsets",
}


# ----------------------------------------------------------------------------- synthetic tree
def catalog(objects: int) -> dict[str, list[tuple[str, int]]]:
    """``{split: [(entry, label)]}``: objects spread over the 55 synsets, 80 / 20 per class."""
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    per_class = np.bincount(np.arange(objects) % len(SYNSETS), minlength=len(SYNSETS))
    for label, (synset, count) in enumerate(zip(SYNSETS, per_class.tolist(), strict=True)):
        val = max(1, round(0.2 * count)) if count > 1 else 0
        for k in range(count):
            obj = hashlib.md5(f"{synset}/{k}".encode()).hexdigest()
            splits["val" if k < val else "train"].append((f"/{synset}/{obj}/", label))
    return splits


def jpeg_pool(size: int = IMAGE_SIZE, n: int = POOL, seed: int = 0) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        img = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        img = np.kron(img, np.ones((4, 4, 1), np.uint8))  # blocks: JPEG-like sizes
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        pool.append(buf.getvalue())
    return pool


def latents(rng: np.random.Generator, views: int, dim: int) -> np.ndarray:
    """``[views, dim]`` float64 in 3DIEBench's layout (``equissl.datasets.iebench_actions``)."""
    cols = [
        rng.uniform(-np.pi / 2, np.pi / 2, (views, 3)),  # Euler angles
        rng.uniform(0, 1, (views, 1)),  # floor hue
        rng.uniform(0, np.pi / 4, (views, 1)),  # spot-light polar angle
        rng.uniform(0, 2 * np.pi, (views, 1)),  # spot-light azimuth
        rng.uniform(0, 1, (views, 1)),  # spot-light hue
    ]
    if dim == 10:
        cols.append(rng.uniform(-0.5, 0.5, (views, 3)))  # 3DIEBench-T: translation
    return np.concatenate(cols, axis=1)


def write_splits(folder: Path, splits: dict[str, list[tuple[str, int]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in splits.items():
        np.save(folder / f"{name}_images.npy", np.array([e for e, _ in items]))
        np.save(folder / f"{name}_labels.npy", np.array([lab for _, lab in items], np.int64))


def build_loose(root: Path, objects: int, views: int, dim: int) -> dict[str, Any]:
    """The published layout. Each view's two files are hard links into a pool (the 256
    JPEGs and 4,096 latent files of real format and value ranges) beside ``root``: the tree
    has every directory entry of a real one, and freeing it frees no data blocks (on a file
    system mounted with ``discard``, deleting 2 M small files takes ~1 ms each)."""
    pool = root.parent / f"{root.name}_pool"
    pool.mkdir(parents=True)
    rng = np.random.default_rng(1)
    lat = latents(rng, LATENT_POOL, dim)
    for i, data in enumerate(jpeg_pool()):
        (pool / f"image_{i}.jpg").write_bytes(data)
    for i in range(LATENT_POOL):
        np.save(pool / f"latent_{i}.npy", lat[i])
    splits = catalog(objects)
    n = 0
    for items in splits.values():
        for entry, _ in items:
            folder = root / entry.strip("/")
            folder.mkdir(parents=True)
            for v in range(views):
                os.link(pool / f"image_{(n + 7 * v) % POOL}.jpg", folder / f"image_{v}.jpg")
                k = int(rng.integers(LATENT_POOL))
                os.link(pool / f"latent_{k}.npy", folder / f"latent_{v}.npy")
            n += 1
    write_splits(root / "data", splits)
    return {"objects": n}


def build_packed(out: Path, objects: int, views: int, dim: int) -> dict[str, Any]:
    """Packed shards written directly by the project's shard writer (one chunk per split, as
    ``equissl-pack``'s default), split files copied, index written."""
    from equissl.datasets.iebench_format import load_split
    from equissl.datasets.packed import ShardObject, shard_name, write_index, write_shard

    pool = jpeg_pool()
    rng = np.random.default_rng(1)
    splits = catalog(objects)
    write_splits(out / "data", splits)
    n = 0
    for name, items in splits.items():
        split = load_split(out, name)

        def stream(items=items, offset=n):
            for i, (entry, _) in enumerate(items):
                images = [pool[(offset + i + 7 * v) % POOL] for v in range(views)]
                yield ShardObject(entry, images, latents(rng, views, dim))

        write_shard(out, split, shard_name(name, 0, 1), 0, len(items), stream(), verify=False)
        n += len(items)
    write_index(out, tuple(splits), 1)
    return {"objects": n}


def cache_key_stage(root: Path, check: str) -> dict[str, Any]:
    """The feature cache's key of both splits (``eval.data_check``), timed alone."""
    from equissl.datasets.iebench import IEBenchDataset
    from equissl.eval.features import cache_key

    datasets = [IEBenchDataset(root, split) for split in ("train", "val")]
    start, cpu = time.perf_counter(), time.process_time()
    keys = [
        cache_key("x", ds.full_manifest() if check == "files" else ds.manifest(), {})
        for ds in datasets
    ]
    return {
        "work_s": time.perf_counter() - start,
        "work_cpu_s": time.process_time() - cpu,
        "keys": keys,
    }


def synthetic_cache(ckpt: Path, root: Path, cache: Path, out: Path) -> dict[str, Any]:
    """The feature cache ``equissl-evaluate`` would look up for ``root`` (the real key: the
    evaluation stage runs with its extraction replaced), filled with random features of the
    model's part widths, the packed latents, labels and ids: the probes then run at full
    size without the extraction's CPU time (extrapolated instead)."""
    from hydra import compose, initialize_config_module

    import equissl.eval.evaluate as evaluate
    from equissl.apps.hydra_main import _resolved, setup
    from equissl.eval import features

    setup()
    rng = np.random.default_rng(0)

    def fill(method: Any, ds: Any, directory: Path, **kwargs: Any) -> Any:
        if directory.exists():
            return features.load_features(directory)
        single = ds.evaluation_views(kwargs["views_per_object"], kwargs["seed"])
        n, v = len(ds), ds.views_per_object
        with torch_inference():
            reps = method.eval().represent(single[0]["views"])  # [1, 3, H, W]: the widths
        store = features.ArrayStore(directory.with_name(f".{directory.name}.synthetic"))
        rows = 4096  # objects per chunk: memory flat
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            for name, rep in reps.items():
                shape = (n, v, rep.shape[-1])
                noise = rng.standard_normal((stop - start, v, rep.shape[-1]), dtype=np.float32)
                store.write(f"part/{name}", shape, start, noise)
            lat = np.stack([ds.store.latents(i, range(v)) for i in range(start, stop)])
            store.write("latents", (n, v, ds.latent_dim), start, lat.astype(np.float32))
        store.write("labels", (n,), 0, np.asarray(ds.labels, np.int64))
        store.write("coeffs", (n, 0), 0, np.empty((n, 0), np.float32))
        store.write("index", (n,), 0, np.arange(n, dtype=np.int64))
        store.close({"key": directory.name, "split": ds.split_name, "dtype": "float32"})
        os.replace(store.directory, directory)
        return features.load_features(directory)

    evaluate.cached_features = fill
    overrides = [f"checkpoint={ckpt}", "probe=[]", "eval.parts=[equi]",
                 f"eval.cache_dir={cache}", "eval.device=cpu", "eval.num_workers=0"]  # fmt: skip
    with initialize_config_module("equissl.configs", version_base="1.3"):
        config = _resolved(compose("evaluate", overrides=overrides))
    start = time.process_time()
    evaluate.evaluate_checkpoint(str(ckpt), config["eval"], out, {"root": str(root)}, False)
    return {"work_cpu_s": time.process_time() - start}


def torch_inference() -> Any:
    import torch

    return torch.inference_mode()


CHILDREN = {"build-loose", "build-packed", "cache-key", "synthetic-cache"}


def render(result: dict[str, Any], runs: dict[int, dict[str, Any]]) -> str:
    """The Markdown report of a result: header, table, and why each stage is not linear or
    flat (stages re-measured with ``--merge`` named, grouped by the command that did it)."""
    by_command: dict[str, list[str]] = {}
    for name, how in result.get("remeasured", {}).items():
        by_command.setdefault(how, []).append(name)
    remeasured = "".join(
        f"; {', '.join(sorted(names))} re-measured {how}" for how, names in by_command.items()
    )
    lines = [
        f"# bench/full_scale.py, {result['date']}",
        "",
        f"machine: {result['machine']}; `{result['command']}`; OMP_NUM_THREADS=1; "
        f"{result['views']} views per object, {result['latent_dim']}-value latents, "
        f"{IMAGE_SIZE} px JPEGs; SIE on timm test_resnet, {result['steps']} pretraining steps, "
        f"probes {result['epochs']} epoch(s); bench wall {result['bench_wall_s'] / 60:.1f} min"
        + remeasured,
        "",
        *table(runs),
        *why_lines(runs),
    ]
    return "\n".join(lines) + "\n"


def merged(
    earlier: dict[str, Any], now: dict[str, Any], only: set[str]
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """``earlier``'s result with the stages ``only`` replaced by ``now``'s at the sizes
    ``now`` ran (the rest as measured then), and the merged runs keyed by size."""
    out = {**earlier, "remeasured": dict(earlier.get("remeasured", {}))}
    runs = {int(n): dict(r) for n, r in earlier["runs"].items()}
    for n, r in now["runs"].items():
        for name in only:
            if name in r:
                runs.setdefault(int(n), {})[name] = r[name]
    for name in sorted(only):
        out["remeasured"][name] = f"{now['date']} by `{now['command']}`"
    out["runs"] = {str(n): r for n, r in runs.items()}
    return out, runs


def child(args: argparse.Namespace) -> None:
    root = Path(args.root)
    if args.child == "build-loose":
        result = build_loose(root, args.objects, args.views, args.latent_dim)
    elif args.child == "build-packed":
        result = build_packed(root, args.objects, args.views, args.latent_dim)
    elif args.child == "synthetic-cache":
        result = synthetic_cache(Path(args.checkpoint), root, Path(args.cache), Path(args.to))
    else:
        result = cache_key_stage(root, args.check)
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- measuring
def fields(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """``{key: kB}`` of ``key:`` lines of a ``/proc`` file (0 when absent or gone)."""
    out = dict.fromkeys(keys, 0)
    try:
        with open(path) as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return out


class TreeSampler(threading.Thread):
    """Peaks (MiB) over time of the process tree's summed RssAnon and RssFile (every
    ``period`` s) and Pss_Anon (every ``pss_period`` s: reading ``smaps_rollup`` walks every
    mapping of a process, ~0.1 s for a torch process on a loaded machine)."""

    def __init__(self, pid: int, period: float = 0.05, pss_period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.pss_every = pid, period, max(1, round(pss_period / period))
        self.peak = {"anon_rss": 0.0, "file_rss": 0.0, "anon_pss": 0.0, "processes": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            total = {"anon_rss": 0, "file_rss": 0}
            pids = tree(self.pid)
            for p in pids:
                status = fields(f"/proc/{p}/status", ("RssAnon", "RssFile"))
                total["anon_rss"] += status["RssAnon"]
                total["file_rss"] += status["RssFile"]
            if tick % self.pss_every == 0:
                total["anon_pss"] = sum(
                    fields(f"/proc/{p}/smaps_rollup", ("Pss_Anon",))["Pss_Anon"] for p in pids
                )
            for key, kb in total.items():
                self.peak[key] = max(self.peak[key], kb / 1024)
            self.peak["processes"] = max(self.peak["processes"], len(pids))
            tick += 1
            self.stop.wait(self.period)


def measure(cmd: list[str], log: Path, cwd: Path) -> dict[str, Any]:
    """Run ``cmd``; wall and CPU seconds, memory peaks, exit status, ``RESULT`` of a child."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
    text = log.read_text(errors="replace")
    result = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        **sampler.peak,
        "exit": proc.returncode,
        "load": os.getloadavg()[0],  # the machine's 1-minute load average at the end
    }
    lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
    if lines:
        result.update(json.loads(lines[-1][len("RESULT ") :]))
    if proc.returncode:
        result["tail"] = text[-1500:]
    return result


# ----------------------------------------------------------------------------- the stages
def command(name: str) -> str:
    return str(BIN / f"equissl-{name}")


def evaluate_cmd(ckpt: Path, root: Path, cache: Path, out: Path, probes: list[str],
                 extra: list[str], data: str) -> list[str]:  # fmt: skip
    return [
        command("evaluate"),
        f"checkpoint={ckpt}",
        f"data_root={root}",
        f"probe=[{','.join(probes)}]",
        "eval.parts=[equi]",
        f"eval.cache_dir={cache}",
        "eval.num_workers=0",
        "eval.device=cpu",
        f"hydra.run.dir={out}",
        *extra,
    ]


#: stages that are one ``equissl-evaluate``: their fixed cost (imports, config, checkpoint,
#: datasets, cache lookup) is the ``other probes`` stage's at the same size (probes that
#: only report why they skip), subtracted for the ``work`` exponent and extrapolation
BASELINE = "other probes"
PROBE_STAGES = ("classification", "rotation", "color", "predictor", "knn_flat", "knn_ivf",
                "diagnostics", "translation", BASELINE)  # fmt: skip


def probe_stages(args: argparse.Namespace) -> dict[str, tuple[list[str], list[str]]]:
    """``{stage: (probes, overrides)}`` of the per-probe evaluations."""
    epochs = str(args.epochs)
    translation = ["translation", "translation_base", "translation_object"]
    stages = {
        "classification": (["classification"], [f"eval.probes.classification.epochs={epochs}"]),
        "rotation": (["rotation"], [f"eval.probes.rotation.epochs={epochs}"]),
        "color": (["color"], [f"eval.probes.color.epochs={epochs}"]),
        "predictor": (["predictor"], []),
        "knn_flat": (["knn"], []),
        "knn_ivf": (["knn"], ["eval.probes.knn.index=ivf"]),
        "diagnostics": (["diagnostics"], []),
    }
    other = ["lie", "coefficients", "time_stepping", "path_integration"]
    if args.translation:
        stages["translation"] = (
            translation,
            [f"eval.probes.{p}.epochs={epochs}" for p in translation],
        )
    else:
        other = translation + other
    stages["other probes"] = (other, [])
    return stages


#: stages that run under ``--only`` whatever it lists: the tree, the checkpoint, the cache
PREREQUISITES = {"build loose", "build packed", "pack", "pretrain", "features packed",
                 "synthetic cache"}  # fmt: skip


def run_size(args: argparse.Namespace, n: int, work: Path, state: dict[str, Any]) -> dict:
    """Every stage at ``n`` objects; the trees are deleted afterwards."""
    here = work / f"n{n}"
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    logs = here / "logs"
    logs.mkdir()
    loose, packed = here / "loose", here / "packed"
    data = "3diebench_t" if args.translation else "3diebench"
    results: dict[str, Any] = {}

    def stage(name: str, cmd: list[str]) -> dict[str, Any]:
        if args.only and name not in args.only and name not in PREREQUISITES:
            return {}
        print(f"  {name} ...", end="", flush=True)
        r = measure(cmd, logs / f"{name.replace(' ', '_')}.log", here)
        results[name] = r
        status = "" if not r["exit"] else f" EXIT {r['exit']}\n{r.get('tail', '')}"
        print(f" {r['wall_s']:.1f} s, anon {r['anon_rss']:.0f} MiB, "
              f"file {r['file_rss']:.0f} MiB{status}", flush=True)  # fmt: skip
        return r

    me = [sys.executable, __file__]
    size = ["--objects", str(n), "--views", str(args.views), "--latent-dim", str(args.dim)]
    if n <= args.loose_max:
        stage("build loose", [*me, "--child", "build-loose", "--root", str(loose), *size])
        stage("validate loose", [command("validate"), str(loose), "workers=1"])
        stage("pack", [command("pack"), str(loose), str(packed)])
        stage("cache key folders", [*me, "--child", "cache-key", "--root", str(loose)])
        stage("cache key files",
              [*me, "--child", "cache-key", "--root", str(loose), "--check", "files"])  # fmt: skip
    else:
        stage("build packed", [*me, "--child", "build-packed", "--root", str(packed), *size])
    stage("validate packed", [command("validate"), str(packed), "workers=1"])
    run = here / "pretrain"
    stage(
        "pretrain",
        [
            command("pretrain"),
            f"data={data}",
            f"data.root={packed}",
            *SIE_TINY,
            "data.batch_size=64",
            "data.num_workers=1",
            "trainer=cpu",
            f"trainer.max_steps={args.steps}",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}",
        ],
    )
    if "checkpoint" not in state and (run / "checkpoints" / "last.ckpt").is_file():
        keep = work / "checkpoint.ckpt"
        shutil.copyfile(run / "checkpoints" / "last.ckpt", keep)
        state["checkpoint"] = keep
    ckpt = state.get("checkpoint")
    if ckpt is None:
        return results
    full = args.full and n == args.full_objects
    evals = here / "evals"
    if n <= args.loose_max:
        cache = here / "cache_loose"
        for name, out in (("features loose", "features_loose"), ("cache hit loose", "hit")):
            stage(name, evaluate_cmd(ckpt, loose, cache, evals / out, [], [], data))
        shutil.rmtree(cache, ignore_errors=True)
    cache = here / "cache_packed"
    if full and "features packed" in args.skip_at_full:
        results["features packed"] = {"skipped": "extrapolated (--skip-at-full)"}
        synthetic = ["--checkpoint", str(ckpt), "--cache", str(cache)]
        synthetic += ["--to", str(evals / "synthetic")]
        stage("synthetic cache",
              [*me, "--child", "synthetic-cache", "--root", str(packed), *synthetic])  # fmt: skip
    else:
        out = evals / "features_packed"
        stage("features packed", evaluate_cmd(ckpt, packed, cache, out, [], [], data))
    for name, (probes, extra) in probe_stages(args).items():
        if full and name in args.skip_at_full:
            results[name] = {"skipped": "extrapolated (--skip-at-full)"}
            continue
        out = evals / name.replace(" ", "_")
        stage(name, evaluate_cmd(ckpt, packed, cache, out, probes, extra, data))
    stage("report", [command("report"), str(evals)])
    results["_disk_peak_bytes"] = state["free"] - shutil.disk_usage(work).free
    if not args.keep:
        shutil.rmtree(here, ignore_errors=True)
    return results


# ----------------------------------------------------------------------------- the table
def exponent(n1: int, t1: float, n2: int, t2: float) -> float | None:
    if t1 <= 0 or t2 <= 0 or n1 == n2:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def is_evaluation(name: str) -> bool:
    return name.startswith(("features", "cache hit")) or name in PROBE_STAGES


#: CPU seconds of work below which its exponent is noise (the fixed cost varies by ~0.5 s)
MIN_WORK_S = 1.5
#: the complexity of a stage whose measured work is too small to give an exponent
THEORY = {"features packed": 1.0, "knn_flat": 2.0, "predictor": 2.0}


def work_cpu(runs: dict[int, dict[str, Any]], n: int, name: str) -> float | None:
    """CPU seconds of stage ``name`` at ``n`` objects beyond the command's fixed cost (the
    ``BASELINE`` stage's at the same size); ``None`` when unknown or below ``MIN_WORK_S``."""
    r = runs[n].get(name, {})
    if "work_cpu_s" in r:
        return r["work_cpu_s"]
    base = runs[n].get(BASELINE, {})
    if is_evaluation(name) and name != BASELINE and "cpu_s" in base and "cpu_s" in r:
        work = r["cpu_s"] - base["cpu_s"]
        return work if work >= MIN_WORK_S else None
    return None


ORDER = ("build loose", "build packed", "validate loose", "pack", "validate packed",
         "cache key folders", "cache key files", "pretrain", "features loose", "cache hit loose",
         "features packed", "synthetic cache")  # fmt: skip


def stage_names(runs: dict[int, dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in runs.values():
        names += [k for k in r if not k.startswith("_") and k not in names]
    first = [n for n in ORDER if n in names]
    return first + [n for n in names if n not in first]


def measured(runs: dict[int, dict[str, Any]], name: str) -> list[int]:
    return [n for n in sorted(runs) if "cpu_s" in runs[n].get(name, {})
            and not runs[n][name].get("extrapolated") and not runs[n][name]["exit"]]  # fmt: skip


def extrapolate(runs: dict[int, dict[str, Any]]) -> None:
    """Fill skipped full-size stages: the work's CPU time from the exponent of the last two
    measured sizes, plus the command's fixed cost measured at that size; the anonymous
    memory linearly from the last two sizes."""
    for name in stage_names(runs):
        sizes = measured(runs, name)
        for n, r in runs.items():
            if "skipped" not in r.get(name, {}) or len(sizes) < 2:
                continue
            n1, n2 = sizes[-2:]
            w1, w2 = work_cpu(runs, n1, name), work_cpu(runs, n2, name)
            a, b = runs[n1][name], runs[n2][name]
            k = exponent(n1, w1, n2, w2) if w1 and w2 else None
            source = "measured"
            if k is None:
                k, source = THEORY.get(name, 1.0), "complexity (work too small to measure)"
            base = runs[n].get(BASELINE, runs[n2].get(BASELINE, {})).get("cpu_s", 0.0)
            slope = (b["anon_rss"] - a["anon_rss"]) / (n2 - n1)
            r[name] = {
                "extrapolated": True,
                "wall_s": float("nan"),
                "cpu_s": base + (w2 or b["cpu_s"]) * (n / n2) ** k,
                "work_exponent": k,
                "exponent_from": source,
                "anon_rss": b["anon_rss"] + slope * (n - n2),
                "file_rss": float("nan"),
                "anon_pss": float("nan"),
                "exit": 0,
                "from": [n1, n2],
            }


def fmt(x: float, spec: str = ".1f") -> str:
    return "—" if x is None or x != x else format(x, spec)


def table(runs: dict[int, dict[str, Any]]) -> list[str]:
    sizes = sorted(runs)
    lines = [
        "| stage | objects | views | wall s | CPU s | anon RSS MiB | file RSS MiB | "
        "anon PSS MiB | exp. CPU (work) | exp. anon | Δ anon MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in stage_names(runs):
        prev = None
        for n in sizes:
            r = runs[n].get(name)
            if r is None or "cpu_s" not in r:
                continue
            mark = " **(extrapolated)**" if r.get("extrapolated") else ""
            if r.get("exit"):
                mark += f" EXIT {r['exit']}"
            exp_t = exp_a = delta = ""
            if prev is not None:
                k = exponent(prev, runs[prev][name]["cpu_s"], n, r["cpu_s"])
                w = exponent(prev, work_cpu(runs, prev, name) or 0, n, work_cpu(runs, n, name) or 0)
                if r.get("extrapolated"):
                    w = r["work_exponent"]
                exp_t = fmt(k, ".2f") + (f" ({w:.2f})" if w is not None else "")
                if not r.get("extrapolated"):
                    ka = exponent(prev, runs[prev][name]["anon_rss"], n, r["anon_rss"])
                    exp_a = fmt(ka, ".2f")
                delta = f"{r['anon_rss'] - runs[prev][name]['anon_rss']:+.0f}"
            key = f" (key {r['work_s']:.2f})" if "work_s" in r else ""
            key_cpu = f" (key {r['work_cpu_s']:.2f})" if "work_s" in r else ""
            lines.append(
                f"| {name}{mark} | {n:,} | {n * VIEWS:,} | {fmt(r['wall_s'])}{key} | "
                f"{fmt(r['cpu_s'])}{key_cpu} | {fmt(r['anon_rss'], '.0f')} | "
                f"{fmt(r['file_rss'], '.0f')} | {fmt(r['anon_pss'], '.0f')} | {exp_t} | "
                f"{exp_a} | {delta} |"
            )
            prev = n
    return lines


VIEWS = 50


def why_lines(runs: dict[int, dict[str, Any]]) -> list[str]:
    lines = ["", "What is not linear in time or flat in anonymous memory, and why:", ""]
    for name in stage_names(runs):
        if name in WHY:
            lines.append(f"* **{name}**: {WHY[name]}")
    return lines


# ----------------------------------------------------------------------------- main
def disk_estimate(args: argparse.Namespace, n: int) -> int:
    per_view_packed = 700 + 8 + 8 * args.dim
    per_view_cache = 4 * (48 + 48 + 96) + 4 * args.dim
    loose = n * 2 * LOOSE_BLOCK + 2 * 2**20 if n <= args.loose_max else 0  # folders, pool
    return loose + n * args.views * (per_view_packed + per_view_cache)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,4000,16000")
    p.add_argument("--loose-max", type=int, default=16000)
    p.add_argument("--full", action="store_true", help="add the full size (--full-objects)")
    p.add_argument("--full-objects", type=int, default=FULL, help="the full size (tests: less)")
    p.add_argument("--views", type=int, default=50)
    p.add_argument("--translation", action="store_true", help="3DIEBench-T: 10-value latents")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/equissl_full_scale"))
    p.add_argument("--skip-at-full", default="features packed,knn_flat,predictor")
    p.add_argument("--keep", action="store_true", help="keep the trees and caches")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "full_scale_cpu")
    p.add_argument("--only", default="", help="run only these stages (and what they need)")
    p.add_argument("--merge", type=Path, help="replace --only's stages in this earlier result")
    p.add_argument("--render", type=Path, help="only rewrite the .md of this result (.json)")
    p.add_argument("--child", choices=sorted(CHILDREN))
    p.add_argument("--root")
    p.add_argument("--objects", type=int)
    p.add_argument("--latent-dim", type=int, default=7)
    p.add_argument("--check", default="folders")
    p.add_argument("--checkpoint")
    p.add_argument("--cache")
    p.add_argument("--to")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    global VIEWS
    if args.render:
        result = json.loads(args.render.read_text())
        VIEWS = int(result["views"])
        runs = {int(n): r for n, r in result["runs"].items()}
        args.render.with_suffix(".md").write_text(render(result, runs))
        return
    VIEWS = args.views
    args.dim = 10 if args.translation else 7
    args.skip_at_full = {s for s in args.skip_at_full.split(",") if s}
    args.only = {s for s in args.only.split(",") if s}
    if args.merge and not args.only:
        sys.exit("--merge replaces the stages named by --only: name them")
    sizes = {int(s) for s in args.sizes.split(",") if s}
    sizes = sorted(sizes | ({args.full_objects} if args.full else set()))
    free = shutil.disk_usage(args.work.parent if not args.work.exists() else args.work).free
    print(f"sizes {sizes}, loose up to {args.loose_max:,} objects; free disk {free / 1e9:.1f} GB")
    for n in sizes:
        need = disk_estimate(args, n)
        print(f"  {n:,} objects x {args.views} views: ~{need / 1e9:.2f} GB at once")
        if need > 0.9 * free:
            sys.exit(f"{n:,} objects need ~{need / 1e9:.1f} GB; {free / 1e9:.1f} GB free")
    args.work.mkdir(parents=True, exist_ok=True)
    runs: dict[int, dict[str, Any]] = {}
    state: dict[str, Any] = {"free": shutil.disk_usage(args.work).free}
    start = time.perf_counter()
    for n in sizes:
        print(f"{n:,} objects:", flush=True)
        runs[n] = run_size(args, n, args.work, state)
        partial = args.out.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({str(k): v for k, v in runs.items()}, indent=1))
    extrapolate(runs)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": " ".join(["bench/full_scale.py", *sys.argv[1:]]),
        "views": args.views,
        "latent_dim": args.dim,
        "steps": args.steps,
        "epochs": args.epochs,
        "runs": {str(n): r for n, r in runs.items()},
        "bench_wall_s": time.perf_counter() - start,
    }
    shutil.rmtree(args.work, ignore_errors=True) if not args.keep else None
    if args.merge:
        result, runs = merged(json.loads(args.merge.read_text()), result, args.only)
    text = render(result, runs)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
