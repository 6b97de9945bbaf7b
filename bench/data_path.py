"""Data path: packed shards (``equissl-pack``) against the loose 3DIEBench tree, items/s per
loader worker (issue 13 item 3).

    python bench/data_path.py [--root data/quickstart] [--sizes 64,256] [--repeats 5]
                              [--epochs 2] [--workers 1] [--out-dir bench/results]

Three readers of the same split, each through the training loader of the SSL stage
(``equissl.training.sampler.build_train_loader``: seeded order, batch contract of
:mod:`equissl.datasets.contract`, ``num_views=2`` views resized to the stored size and
normalised, as the quickstart trains):

* **loose**: ``image_{v}.jpg`` + ``latent_{v}.npy`` per view (the published format);
* **packed jpeg**: the same JPEG bytes in one memory-mapped blob per split + offsets, latents
  in one array (``equissl-pack ROOT OUT``);
* **packed raw**: decoded uint8 pixels in the blob (``encoding=raw``), no decode at all;
* **packed jpeg u8** / **packed raw u8**: the same shards with ``speed.normalize_on_device``:
  the dataset serves uint8 views (a quarter of float32's bytes between processes) and each
  batch is normalised after the loader, as the datamodule does after the transfer; timed here
  in this process (no GPU: the "device" is this CPU, so its cost is counted, not hidden).
  Their ``loader, worker side`` figure leaves the batch normalisation out: what a worker
  delivers when the device normalises at no cost to it (a GPU), and the normalisation's own
  cost on this CPU is reported per batch.

Two figures per reader, medians over ``--repeats`` (readers interleaved within each repeat):

* ``in-process`` — ``num_workers=0``: all loading in this one process, so items/s is what one
  loader worker delivers, without worker start-up;
* ``loader`` — ``--workers`` worker processes, timed from the first batch to the last (the
  per-epoch worker start is reported apart), items/s divided by the workers.

``--root`` is a loose tree (default ``data/quickstart``, the README's quickstart data; rendered
here with the generator when absent). For each size in ``--sizes`` other than the stored one,
a copy of the tree with every image resized (bicubic) and re-encoded as JPEG quality 95 (the
renderer's setting) is written first, so the 256 px figure has 3DIEBench-sized JPEGs without
a 256 px render. Every reader is checked to return the same batches as the loose one.
Writes ``data_path_cpu.json`` and ``data_path_cpu.txt`` (``_gpu`` when CUDA is visible) into
``--out-dir``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from equissl.datasets.iebench import IEBenchDataset
from equissl.datasets.packed import PackSettings, pack_chunk
from equissl.training.sampler import build_train_loader

REPO = Path(__file__).resolve().parents[1]
SEED = 0
BATCH = 32
VIEWS = 2


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} CPUs (shared: load average {load}), {gpu}; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def ensure_root(root: Path) -> Path:
    """``root``, rendered with the quickstart settings when it does not exist yet."""
    if (root / "data" / "train_images.npy").is_file():
        return root
    from equissl.datasets.render import generate_iebench

    print(f"rendering the quickstart data into {root} (absent) ...", flush=True)
    generate_iebench(
        root, num_classes=10, objects_per_class=40, views=8, resolution=64, spp=8, seed=0
    )
    return root


def resized_copy(root: Path, size: int, out: Path) -> Path:
    """A copy of ``root`` with every image resized to ``size`` px, JPEG quality 95."""
    if (out / "data" / "train_images.npy").is_file():
        return out
    for src in root.rglob("*"):
        dst = out / src.relative_to(root)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif src.suffix == ".jpg":
            with Image.open(src) as img:
                img.convert("RGB").resize((size, size), Image.BICUBIC).save(dst, quality=95)
        else:
            shutil.copyfile(src, dst)
    return out


def du(paths: list[Path]) -> tuple[int, int]:
    """(files, bytes) under ``paths``."""
    files = [p for root in paths for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def finished(ds: IEBenchDataset, batch: dict) -> dict:
    """``batch`` as the step sees it (device normalisation of uint8 views, when served)."""
    if ds.pixels:
        batch["views"] = ds.device_transform(batch["views"])
    return batch


def epoch_time(
    ds: IEBenchDataset, workers: int, epochs: int, finish: bool = True
) -> tuple[float, float, int]:
    """(seconds from first to last batch, seconds to the first batch, items after the first);
    ``finish=False``: uint8 batches are left as the loader delivers them."""
    loader = build_train_loader(ds, BATCH, num_workers=workers, seed=SEED)
    steady = first = 0.0
    items = 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        it = iter(loader)
        batch = next(it)
        finished(ds, batch) if finish else batch
        t_first = time.perf_counter()
        for batch in it:
            items += (finished(ds, batch) if finish else batch)["views"].shape[0]
        steady += time.perf_counter() - t_first
        first += t_first - start
    return steady, first, items


def normalise_ms(ds: IEBenchDataset, batches: int = 5) -> float:
    """Milliseconds of ``device_transform`` on one uint8 batch, here (median of ``batches``)."""
    views = next(iter(build_train_loader(ds, BATCH, num_workers=0, seed=SEED)))["views"]
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        ds.device_transform(views)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def same_batches(a: IEBenchDataset, b: IEBenchDataset) -> bool:
    la = build_train_loader(a, BATCH, num_workers=0, seed=SEED)
    lb = build_train_loader(b, BATCH, num_workers=0, seed=SEED)
    pairs = zip(la, lb, strict=True)
    return all(all(torch.equal(x[k], finished(b, y)[k]) for k in x) for x, y in pairs)


def bench_size(root: Path, work: Path, args: argparse.Namespace) -> dict:
    """Pack ``root`` (jpeg, raw), check equality, time the three readers."""
    readers = {"loose": root}
    packing = {}
    for enc in ("jpeg", "raw"):
        out = work / f"{root.name}-{enc}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        pack_chunk(root, out, PackSettings(encoding=enc))
        packing[enc] = round(time.perf_counter() - start, 2)
        readers[f"packed {enc}"] = out
    sets = {name: IEBenchDataset(r, "train", num_views=VIEWS) for name, r in readers.items()}
    for enc in ("jpeg", "raw"):
        sets[f"packed {enc} u8"] = IEBenchDataset(readers[f"packed {enc}"], "train", VIEWS)
        sets[f"packed {enc} u8"].defer_to_device()
    size = sets["loose"].spec().view_shape[-1]
    equal = {name: same_batches(sets["loose"], ds) for name, ds in sets.items() if name != "loose"}
    per: dict[str, dict[str, list[float]]] = {
        n: {"inproc": [], "loader": [], "start": []} for n in sets
    }
    for n, ds in sets.items():
        if ds.pixels:
            per[n] |= {"worker_side": [], "normalise_ms_per_batch": []}
    for ds in sets.values():  # warm the page cache and the code paths
        epoch_time(ds, 0, 1)
    for _ in range(args.repeats):
        for name, ds in sets.items():
            t, _, items = epoch_time(ds, 0, args.epochs)
            per[name]["inproc"].append(items / t)
            t, t0, items = epoch_time(ds, args.workers, args.epochs)
            per[name]["loader"].append(items / t / args.workers)
            per[name]["start"].append(t0 / args.epochs)
            if ds.pixels:
                t, _, items = epoch_time(ds, args.workers, args.epochs, finish=False)
                per[name]["worker_side"].append(items / t / args.workers)
                per[name]["normalise_ms_per_batch"].append(normalise_ms(ds))
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in per.items()}
    files = {"loose": du([root / e for e in {p.name for p in root.iterdir()} if e != "data"])}
    for enc in ("jpeg", "raw"):
        files[f"packed {enc}"] = du([readers[f"packed {enc}"] / "packed"])  # u8: the same
    return {
        "size": size,
        "objects": len(sets["loose"]),
        "views_per_object": sets["loose"].views_per_object,
        "pack_seconds": packing,
        "same_batches_as_loose": equal,
        "files_and_bytes": {n: {"files": f, "bytes": b} for n, (f, b) in files.items()},
        "items_per_s_per_worker": med,
        "ratio_vs_loose": {
            n: {
                k: med[n][k] / med["loose"]["loader" if k == "worker_side" else k]
                for k in ("inproc", "loader", "worker_side")
                if k in med[n]
            }
            for n in sets
            if n != "loose"
        },
        "repeats": per,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=REPO / "data" / "quickstart")
    ap.add_argument("--sizes", default="64,256", help="image sides to measure (px)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the train split per timing")
    ap.add_argument("--workers", type=int, default=1, help="loader workers of the loader figure")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a loader worker runs one intra-op thread (SeededWorkerInit)
    root = ensure_root(args.root)
    stored = IEBenchDataset(root, "train", num_views=VIEWS).spec().view_shape[-1]
    work = args.work or Path(tempfile.mkdtemp(prefix="equissl-data-path-"))
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        src = root if size == stored else resized_copy(root, size, work / f"loose-{size}")
        print(f"{size} px ...", flush=True)
        results.append(bench_size(src, work, args))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)

    tag = "gpu" if torch.cuda.is_available() else "cpu"
    lines = [
        f"# bench/data_path.py, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {machine()}",
        f"data: {root} (train split; other sizes: its images resized + re-encoded, JPEG q95); "
        f"batch {BATCH}, {VIEWS} views per item, normalised at the stored size; medians of "
        f"{args.repeats} repeats x {args.epochs} epochs; loader figure: {args.workers} worker(s)",
    ]
    for r in results:
        fb = r["files_and_bytes"]
        lines.append(
            f"{r['size']} px, {r['objects']} objects x {r['views_per_object']} views: "
            + ", ".join(
                f"{n} {v['files']} files {v['bytes'] / 2**20:.1f} MiB" for n, v in fb.items()
            )
            + f"; packing {r['pack_seconds']['jpeg']} s (jpeg), {r['pack_seconds']['raw']} s (raw)"
        )
        med = r["items_per_s_per_worker"]
        for n, m in med.items():
            ratio = r["ratio_vs_loose"].get(n)
            tail = (
                f"  ->  {ratio['inproc']:.2f}x / {ratio['loader']:.2f}x loose"
                f" (same batches: {r['same_batches_as_loose'][n]})"
                if ratio
                else ""
            )
            if "worker_side" in m:
                tail += (
                    f"\n  {'':15s} loader, worker side {m['worker_side']:7.1f} items/s "
                    f"({ratio['worker_side']:.2f}x loose); batch normalisation here "
                    f"{m['normalise_ms_per_batch']:.1f} ms"
                )
            lines.append(
                f"  {n:15s} items/s per worker: in-process {m['inproc']:7.1f}, "
                f"loader {m['loader']:7.1f} (worker start {m['start']:.2f} s/epoch){tail}"
            )
    report = "\n".join(lines) + "\n"
    print(report, end="")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"data_path_{tag}.txt").write_text(report)
    payload = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    (args.out_dir / f"data_path_{tag}.json").write_text(
        json.dumps({**payload, "results": results}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
