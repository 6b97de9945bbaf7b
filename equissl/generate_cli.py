"""``equissl-generate key=value ...``: render 3DIEBench-style data or PDE trajectories.

Examples::

    equissl-generate out=data/mini num_classes=10 objects_per_class=20 views=12 resolution=64
    equissl-generate data=3diebench_t out=data/mini_t chunk=3 num_chunks=8
    equissl-generate data=pde_kdv out=data/kdv num_trajectories=512
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass
class GenerateArgs:
    out: str = MISSING
    data: str = "3diebench"  # 3diebench | 3diebench_t | pde_<equation>
    seed: int = 0
    chunk: int = 0
    num_chunks: int = 1
    # 3DIEBench-style renders
    num_classes: int = 10
    objects_per_class: int = 20
    views: int = 50
    resolution: int = 256
    spp: int = 16
    ood: bool = False
    val_fraction: float = 0.2
    mesh_root: str | None = None
    workers: int | None = None
    # PDE trajectories
    num_trajectories: int = 0
    device: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # equation overrides, e.g. params.nx=128


def parse(argv: list[str]) -> GenerateArgs:
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"equissl-generate takes key=value arguments; got {bad}\n{__doc__}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(GenerateArgs), OmegaConf.from_dotlist(argv))
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise SystemExit(f"equissl-generate: {err}") from None


def main(argv: list[str]) -> int:
    args = parse(argv)
    start = time.perf_counter()
    if args.data.startswith("pde_"):
        from equissl.datasets.pde import generate_pde

        if args.num_trajectories <= 0:
            raise SystemExit("equissl-generate: PDE data need num_trajectories=N (N > 0)")
        summary = generate_pde(args.data[len("pde_"):], args.out,
                               num_trajectories=args.num_trajectories, seed=args.seed,
                               chunk=args.chunk, num_chunks=args.num_chunks, device=args.device,
                               **args.params)
    elif args.data in ("3diebench", "3diebench_t"):
        from equissl.datasets.render import generate_iebench

        summary = generate_iebench(
            args.out, num_classes=args.num_classes, objects_per_class=args.objects_per_class,
            views=args.views, resolution=args.resolution, spp=args.spp, seed=args.seed,
            translation=args.data == "3diebench_t", ood=args.ood,
            val_fraction=args.val_fraction, mesh_root=args.mesh_root, chunk=args.chunk,
            num_chunks=args.num_chunks, workers=args.workers,
        )
    else:
        raise SystemExit(f"equissl-generate: unknown data={args.data!r}; use 3diebench, "
                         "3diebench_t or pde_<equation>")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s: {summary}")
    return 0
