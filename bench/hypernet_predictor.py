"""SIE hypernetwork predictor: factored ``Σ_k a_k (B_k z)`` vs the reference's materialised
``W(a) = reshape(hypernet(a))`` followed by a batched mat-vec.

    python bench/hypernet_predictor.py [--batch 256] [--dim 1024] [--repeats 7]

Prints the median forward+backward time of each and their ratio (measured in the same run),
the largest output difference, and the activation memory each needs for ``W``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from equissl.models.heads import HypernetPredictor


def reference(p: HypernetPredictor, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The SIE code's computation: materialise ``[B, D, D]`` weights, then bmm."""
    return torch.bmm(p.matrix(a), z.unsqueeze(-1)).squeeze(-1)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn().sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--action-dim", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    p = HypernetPredictor(args.dim, args.action_dim).to(device)
    z = torch.randn(args.batch, args.dim, device=device, requires_grad=True)
    a = torch.randn(args.batch, args.action_dim, device=device)
    diff = (p(z, a) - reference(p, z, a)).abs().max().item()
    t_ref = timed(lambda: reference(p, z, a), args.repeats)
    t_ours = timed(lambda: p(z, a), args.repeats)
    mib = 4 / 2**20
    print(f"device={device} B={args.batch} D={args.dim} A={args.action_dim}")
    print(
        f"reference (materialised W): {t_ref * 1e3:8.1f} ms  W memory "
        f"{args.batch * args.dim**2 * mib:8.1f} MiB"
    )
    print(
        f"factored (ours)           : {t_ours * 1e3:8.1f} ms  B_k z memory "
        f"{args.batch * args.action_dim * args.dim * mib:8.1f} MiB"
    )
    print(f"speed-up ratio reference/ours: {t_ref / t_ours:.2f}x   max |diff| = {diff:.2e}")


if __name__ == "__main__":
    main()
