"""Sequence representations drawn afresh from cached per-view encodings.

seq-JEPA's published aggregate top-1 comes from a linear probe that sees a new random
sequence of each object at every step. The aggregate ``z_AGG`` of ``M`` views is a function of
the views' encodings and latents only (:meth:`~equissl.ssl.base.SSLMethod.aggregate_encodings`),
so a probe can draw new sequences from the feature cache every epoch — ``M`` distinct views
of the object's cached evaluation views in random order — and run only the method's
aggregator on them, never the backbone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from equissl.ssl.interface import FrozenRepresentation


def random_orders(num_objects: int, num_views: int, length: int, gen: torch.Generator) -> Tensor:
    """``[num_objects, length]`` view ids: ``length`` distinct views per object in random
    order (``length <= num_views``)."""
    if length > num_views:
        raise ValueError(f"sequences of {length} views need as many views per object")
    return torch.rand(num_objects, num_views, generator=gen).argsort(dim=1)[:, :length]


@torch.no_grad()
def aggregate(
    method: FrozenRepresentation,
    encodings: Tensor,
    latents: Tensor,
    objects: Tensor,
    orders: Tensor,
    part: str,
    device: torch.device,
    batch_size: int = 4096,
) -> Tensor:
    """``[S, D_part]`` sequence representations ``part`` of the sequences ``orders [S, M]``
    (view ids) of ``objects [S]``, from ``encodings [N, V, D]`` (the method's
    ``sequence_encoding_part``) and ``latents [N, V, P]``; the method in ``eval()`` mode."""
    method.eval()
    out = []
    for start in range(0, len(objects), batch_size):
        o = objects[start : start + batch_size, None]
        ids = orders[start : start + batch_size]
        z = encodings[o, ids].to(device, torch.float32)
        lat = latents[o, ids].to(device, torch.float32)
        out.append(method.aggregate_encodings(z, lat)[part].float().cpu())
    return torch.cat(out) if out else encodings.new_zeros(0, 0)
