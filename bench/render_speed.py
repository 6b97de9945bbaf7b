"""Rendering cost of our 3DIEBench-style generator: views/s per core at 128 and 256 px
(16 spp), and what a full 3DIEBench-size render (52,472 objects × 50 views) would cost.

    python bench/render_speed.py [--resolutions 128 256] [--spp 16] [--objects 3] [--views 3]

Each view is timed as the generator renders it (``ViewRenderer.render``: pose, path tracing,
sRGB conversion) plus its JPEG encoding; the scene build of an object is timed apart and
charged as 1/50 per view (a generator worker builds it once per object for its 50 views).
CPU variants run on one Dr.Jit thread (per-core rates; the generator runs one object per
worker process). The mitsuba CUDA variant is measured when it can start, else skipped with
the reason. Times are medians over objects × views; the extrapolation is
``52,472 × 50 × (median view + build / 50)`` in core-hours, beside the ≈ 500 V100-hours the
SIE authors estimate for generating 3DIEBench (facebookresearch/SIE, data/README.md). Procedural
objects stand in for ShapeNet meshes (a few thousand triangles against ShapeNet's 10⁴–10⁵):
path tracing cost grows with pixels × samples and only logarithmically with triangles.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from equissl.datasets.render.catalog import procedural_catalog
from equissl.datasets.render.layout import encode_jpeg
from equissl.datasets.render.meshes import mesh_arrays
from equissl.datasets.render.scene import ViewRenderer
from equissl.datasets.render.worker import object_latents, object_mesh

FULL_OBJECTS, FULL_VIEWS = 52_472, 50
SIE_REPORTED_GPU_HOURS = 500  # V100-hours, facebookresearch/SIE data/README.md
RESULTS = Path(__file__).parent / "results"


def time_variant(variant: str, resolution: int, spp: int, objects: int, views: int) -> dict:
    """Median seconds per view and per scene build of ``objects`` procedural objects."""
    import drjit as dr

    if not variant.startswith("cuda"):
        dr.set_thread_count(1)
    specs = procedural_catalog(num_classes=objects, objects_per_class=1, seed=0)
    view_s, build_s = [], []
    for spec in specs:
        latents = object_latents(spec, 0, views, translation=False, ood=False)
        vertices, faces = mesh_arrays(object_mesh(spec, 0))
        start = time.perf_counter()
        renderer = ViewRenderer(vertices, faces, resolution=resolution, spp=spp, variant=variant)
        renderer.render(latents[0], seed=0)  # first frame: JIT/kernel set-up, charged as build
        build_s.append(time.perf_counter() - start)
        for v in range(views):
            start = time.perf_counter()
            encode_jpeg(renderer.render(latents[v], seed=v + 1))
            view_s.append(time.perf_counter() - start)
    per_view = statistics.median(view_s) + statistics.median(build_s) / FULL_VIEWS
    hours = FULL_OBJECTS * FULL_VIEWS * per_view / 3600
    return {
        "variant": variant,
        "resolution": resolution,
        "spp": spp,
        "objects": objects,
        "views_per_object": views,
        "median_view_s": statistics.median(view_s),
        "median_build_s": statistics.median(build_s),
        "views_per_s_per_core": 1.0 / per_view,
        "full_render_hours": hours,
        "hours_unit": "GPU-hours" if variant.startswith("cuda") else "core-hours",
    }


def variant_problem(variant: str) -> str | None:
    """Why ``variant`` cannot render here (``None``: it can), tried in a subprocess: a JIT
    variant without its device or with an LLVM that cannot compile for this CPU aborts the
    process instead of raising."""
    probe = (
        f"import mitsuba as mi; mi.set_variant({variant!r}); "
        "mi.render(mi.load_dict(mi.cornell_box()), spp=1)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    error = [ln for ln in lines if "Error" in ln or "ERROR" in ln]
    return (error or lines or [f"exit {proc.returncode}"])[-1][:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--spp", type=int, default=16)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["scalar_rgb", "llvm_ad_rgb"])
    parser.add_argument("--out", default=str(RESULTS / "render_speed_cpu"))
    args = parser.parse_args(argv)

    import mitsuba as mi

    rows, skipped = [], {}
    for variant in [*args.variants, "cuda_ad_rgb"]:
        reason = variant_problem(variant)
        if reason:
            skipped[variant] = reason
            print(f"skipping {variant}: {reason}")
            continue
        mi.set_variant(variant)
        for res in args.resolutions:
            row = time_variant(variant, res, args.spp, args.objects, args.views)
            rows.append(row)
            print(
                f"{variant:12s} {res:4d} px {args.spp} spp: {row['median_view_s']:.3f} s/view, "
                f"build {row['median_build_s']:.2f} s -> {row['views_per_s_per_core']:.2f} "
                f"views/s per core; full 3DIEBench {row['full_render_hours']:.0f} "
                f"{row['hours_unit']} (SIE reports ≈ {SIE_REPORTED_GPU_HOURS} V100-hours)"
            )
    result = {
        "bench": "render_speed",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "note": "2-core CPU shared with other jobs, no GPU",
        },
        "full_size": {"objects": FULL_OBJECTS, "views": FULL_VIEWS},
        "sie_reported_v100_hours": SIE_REPORTED_GPU_HOURS,
        "rows": rows,
        "skipped": skipped,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"render_speed ({result['date']}; {result['machine']['note']})",
        f"{'variant':12s} {'px':>4s} {'spp':>4s} {'s/view':>8s} {'build s':>8s} "
        f"{'views/s/core':>12s} {'full render':>18s}",
    ]
    lines += [
        f"{r['variant']:12s} {r['resolution']:4d} {r['spp']:4d} {r['median_view_s']:8.3f} "
        f"{r['median_build_s']:8.2f} {r['views_per_s_per_core']:12.2f} "
        f"{r['full_render_hours']:9.0f} {r['hours_unit']}"
        for r in rows
    ]
    lines.append(
        f"full size = {FULL_OBJECTS} objects x {FULL_VIEWS} views; SIE reports ≈ "
        f"{SIE_REPORTED_GPU_HOURS} V100-hours. Skipped: "
        + ("; ".join(f"{k} ({v})" for k, v in skipped.items()) or "none")
    )
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
