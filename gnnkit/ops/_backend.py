"""Chooses the kernel implementation for a tensor: torch on CPU, Triton on CUDA.

``set_backend("triton")`` forces the Triton kernels everywhere, which together with
``TRITON_INTERPRET=1`` runs them on CPU tensors (that is how the test suite checks them without a
GPU). ``set_backend("torch")`` forces the torch path on CUDA too (useful for comparisons).
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Iterator, Literal

from torch import Tensor

from gnnkit.ops import _torch_kernels

Backend = Literal["auto", "torch", "triton"]
_BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
_current: str = "auto"


def set_backend(name: Backend) -> None:
    """Sets the kernel backend globally: ``"auto"`` (default), ``"torch"`` or ``"triton"``."""
    global _current
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    _current = name


def get_backend() -> str:
    return _current


@contextlib.contextmanager
def use_backend(name: Backend) -> Iterator[None]:
    """Context manager form of :func:`set_backend`."""
    previous = _current
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def kernels_for(t: Tensor) -> ModuleType:
    """The kernel module for tensor ``t`` under the current backend setting."""
    if _current == "triton" or (_current == "auto" and t.is_cuda):
        from gnnkit.ops import _triton_kernels  # imported lazily: triton is an optional dependency

        return _triton_kernels
    return _torch_kernels
