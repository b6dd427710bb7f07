"""Argument validation shared by the ops.

Every public op checks its arguments here so that bad input raises a ``ValueError`` or
``TypeError`` naming the argument, instead of a CUDA device-side assert or a silent wrong answer.

Type and shape checks are free. Value checks (index ranges) read a reduction on the host: a GPU
sync, and under ``torch.compile`` a graph break. So they run in eager mode only
(:func:`values_checked`): compiled code trusts its inputs, as PyG's layers always do. To check
inputs once and still compile, build the :class:`gnnkit.nn.Graph` eagerly (a model's
``prepare``, which :func:`gnnkit.train.fit` calls outside the model) and pass it in.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

REDUCTIONS: tuple[str, ...] = ("sum", "mean", "max", "min")
SPMM_REDUCTIONS: tuple[str, ...] = ("sum", "mean", "max")


def check_reduce(reduce: str, allowed: Sequence[str] = REDUCTIONS) -> None:
    if not isinstance(reduce, str) or reduce not in allowed:
        raise ValueError(f"reduce must be one of {tuple(allowed)}, got {reduce!r}")


def check_float(name: str, t: object, min_dim: int = 1) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(t.shape)}")


def check_index(name: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 or int32 tensor, got dtype {t.dtype}")


def check_count(name: str, n: object) -> int:
    if isinstance(n, Tensor):
        if n.numel() != 1:
            raise TypeError(f"{name} must be an int, got a tensor of shape {tuple(n.shape)}")
        n = int(n.item())
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def check_same_device(**tensors: Tensor | None) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"all tensors must be on the same device, got {listing}")


def values_checked() -> bool:
    """Whether value checks run: always in eager mode, never while ``torch.compile`` traces."""
    return not torch.compiler.is_compiling()


def check_range(name: str, index: Tensor, upper: int, upper_name: str) -> None:
    """Checks ``0 <= index < upper``. One reduction (and a host sync on GPU); skipped while
    compiling (see the module docstring)."""
    if index.numel() == 0 or not values_checked():
        return
    lo, hi = (int(v) for v in torch.aminmax(index))
    if lo < 0:
        raise ValueError(f"{name} contains a negative value ({lo})")
    if hi >= upper:
        raise ValueError(
            f"{name} contains {hi}, which is out of range for {upper_name}={upper} "
            f"({upper_name} is too small or {name} is wrong)"
        )
