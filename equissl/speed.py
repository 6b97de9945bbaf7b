"""The ``speed`` section (:class:`equissl.config.SpeedConfig`): flags that make the training
step faster without changing what it computes.

- ``channels_last``: the backbone's 4-D weights and every 4-D input in NHWC. cuDNN's and
  oneDNN's fastest convolutions (tensor cores, AMX) are NHWC kernels; an NCHW model pays a
  layout conversion around each of them.
- ``compile``: ``nn.Module.compile`` of the backbone, in place: unlike ``torch.compile(m)``,
  which wraps the module, parameter names keep their form (no ``_orig_mod.`` prefix), so
  checkpoints load into a plain model.
- ``fused_optimizer``: torch's multi-tensor (``foreach``) or single-kernel (``fused``)
  Adam/AdamW/SGD instead of its per-parameter loop on CPU.
- ``pin_memory``, ``prefetch_factor``, ``persistent_workers``: the training loader's
  (:func:`loader_options`).
- ``normalize_on_device``: datasets that can (3DIEBench, loose or packed) serve uint8 views at
  their stored size, a quarter of float32's bytes through the loader's worker queues, pinned
  memory and the bus; the datamodule's ``on_after_batch_transfer`` resizes and normalises the
  batch on its device with the plain path's function (``ViewDataset.defer_to_device`` /
  ``device_transform``), so the step and the batch-contract check see the same float views
  (bitwise on CPU, ``tests/training/test_normalize_on_device.py``).

bf16 autocast is ``trainer.precision=bf16-mixed``; the loss statistics stay in float32
(:mod:`equissl.ssl.losses`). JPEG decoding stays in the loader workers
(``torchvision.io.decode_jpeg`` on device is not offered): workers decode in parallel with
the step, and packed ``encoding=raw`` removes the decode altogether.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from equissl.config import SpeedConfig
from equissl.lightning_compat import fused_optimizer_devices

#: the plain path: what a config without a ``speed`` section does
PLAIN: dict[str, Any] = dataclasses.asdict(SpeedConfig())

FUSED_CHOICES = (False, True, "foreach", "fused", "auto")


def speed_of(config: dict[str, Any]) -> dict[str, Any]:
    """The run's ``speed`` section with every missing key at its plain-path value."""
    return {**PLAIN, **(config.get("speed") or {})}


def _to_channels_last(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        a.contiguous(memory_format=torch.channels_last)
        if isinstance(a, Tensor) and a.ndim == 4
        else a
        for a in args
    )


def speed_up_backbone(backbone: nn.Module, speed: dict[str, Any]) -> nn.Module:
    """Apply ``channels_last`` and ``compile`` to ``backbone`` in place (parameter objects and
    ``state_dict`` keys unchanged, so optimiser references and checkpoints stay valid).

    Returns:
        ``backbone`` itself.
    """
    if speed["channels_last"]:
        backbone.to(memory_format=torch.channels_last)
        backbone.register_forward_pre_hook(_to_channels_last)
    if speed["compile"]:
        backbone.compile(mode=str(speed["compile_mode"]))
    return backbone


def optimizer_options(flag: Any, params: Iterable[Tensor]) -> dict[str, bool]:
    """``fused=`` / ``foreach=`` keyword arguments of a torch optimiser for
    ``speed.fused_optimizer`` (``{}``: torch's default) and parameters ``params``.

    Raises:
        ValueError: an unknown value, or ``fused`` on a device without a fused kernel.
    """
    if flag not in FUSED_CHOICES or isinstance(flag, int) and not isinstance(flag, bool):
        raise ValueError(
            f"speed.fused_optimizer={flag!r}; choose false, true (fused), foreach, fused or auto"
        )
    if flag is False:
        return {}
    if flag == "foreach":
        return {"foreach": True}
    devices = {p.device.type for p in params}
    fusable = devices <= fused_optimizer_devices()
    if flag == "auto":
        return {"fused": True} if fusable else {"foreach": True}
    if not fusable:
        raise ValueError(
            f"speed.fused_optimizer={flag!r}: torch has no fused optimiser kernel for "
            f"parameters on {sorted(devices)}; use foreach or auto"
        )
    return {"fused": True}


def loader_options(speed: dict[str, Any], num_workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments ``pin_memory``, and with workers ``prefetch_factor`` and
    ``persistent_workers`` (torch refuses both without workers)."""
    pin = speed["pin_memory"]
    if pin == "auto":
        pin = torch.cuda.is_available()
    elif not isinstance(pin, bool):
        raise ValueError(f"speed.pin_memory={pin!r}; choose auto, true or false")
    options: dict[str, Any] = {"pin_memory": pin}
    if num_workers > 0:
        options["persistent_workers"] = bool(speed["persistent_workers"])
        if speed["prefetch_factor"] is not None:
            options["prefetch_factor"] = int(speed["prefetch_factor"])
    return options
