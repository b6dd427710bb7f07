"""One kernel interface, two implementations: torch on CPU, Triton on CUDA.

:class:`Kernels` lists every primitive the ops need. :mod:`gnnkit.ops._torch_kernels` and
:mod:`gnnkit.ops._triton_kernels` both implement all of it with the same signatures (a test checks
this), :func:`kernels_for` picks one for a tensor, and :mod:`gnnkit.ops._library` registers each
primitive once as a ``torch.library`` custom op that dispatches through it. A new kernel is a new
method here, one function in each module and one op in ``_library``.

``set_backend("triton")`` forces the Triton kernels everywhere, which together with
``TRITON_INTERPRET=1`` runs them on CPU tensors (that is how the test suite checks them without a
GPU). ``set_backend("torch")`` forces the torch path on CUDA too, for the sum reductions, spmm's
sum and the outer-product aggregation; its max/min/mean reductions use aten kernels that exist on
CPU only and raise a ``ValueError`` on a CUDA tensor (compare on CPU copies instead, as
tests/ops/test_cuda.py does).

Conventions: ``E`` edges (or scattered rows), ``N`` segments/targets, ``F`` features (trailing
dimensions flattened). Max/min return ``arg``: for every output element the input position that
produced it, ``E`` where the segment is empty (ties: the first position). Half-precision inputs
accumulate in float32 and return their own dtype.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Iterator, Literal, Protocol

from torch import Tensor

Backend = Literal["auto", "torch", "triton"]
_BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
_current: str = "auto"


class Kernels(Protocol):
    """The primitives every backend implements (forward kernels without autograd)."""

    def scatter_fwd(self, src: Tensor, index: Tensor, num_segments: int, reduce: str) -> tuple[Tensor, Tensor | None]:
        """``out[s] = reduce{src[i] : index[i] == s}`` (``arg`` for max/min, else ``None``)."""
        ...

    def segment_fwd(self, src: Tensor, rowptr: Tensor, reduce: str) -> tuple[Tensor, Tensor | None]:
        """``out[s] = reduce(src[rowptr[s]:rowptr[s+1]])``."""
        ...

    def spmm_fwd(
        self, rowptr: Tensor, col: Tensor, weight: Tensor | None, x: Tensor, reduce: str
    ) -> tuple[Tensor, Tensor | None]:
        """``out[v] = reduce_{e in rowptr[v]:rowptr[v+1]} weight[e] * x[col[e]]``; ``arg`` (max) is
        the edge position ``e``."""
        ...

    def spmm_max_bwd(
        self,
        rowptr: Tensor,
        row: Tensor,
        col: Tensor,
        t_rowptr: Tensor,
        t_col: Tensor,
        t_perm: Tensor,
        weight: Tensor | None,
        x: Tensor,
        arg: Tensor,
        grad_out: Tensor,
        need_x: bool,
        need_w: bool,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Gradients of ``spmm_fwd(..., "max")``: each output element's gradient goes to the edge
        ``arg`` that won it."""
        ...

    def edge_dot(self, row: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """``out[e] = sum_f a[row[e], f] * b[col[e], f]`` (SDDMM)."""
        ...

    def outer_fwd(self, rowptr: Tensor, col: Tensor, z: Tensor, h: Tensor, buckets: Tensor) -> Tensor:
        """``S[v] = sum_{e in rowptr[v]:rowptr[v+1]} z[e] ⊗ h[col[e]]`` (``z`` in CSR order);
        ``buckets``: :attr:`gnnkit.ops.DegreeBuckets.packed`, or empty (the CPU kernel then groups
        the targets itself)."""
        ...

    def outer_bwd(
        self,
        rowptr: Tensor,
        col: Tensor,
        t_rowptr: Tensor,
        t_perm: Tensor,
        z: Tensor,
        h: Tensor,
        g: Tensor,
        need_z: bool,
        need_h: bool,
        buckets: Tensor,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Gradients of ``outer_fwd`` for ``g = dL/dS``."""
        ...


KERNEL_NAMES: tuple[str, ...] = tuple(
    name for name in vars(Kernels) if not name.startswith("_") and callable(getattr(Kernels, name))
)


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


def uses_triton(t: Tensor) -> bool:
    """Whether ``t`` is routed to the Triton kernels under the current setting."""
    return _current == "triton" or (_current == "auto" and t.is_cuda)


def kernels_for(t: Tensor) -> Kernels:
    """The kernel implementation for tensor ``t`` under the current backend setting."""
    module: ModuleType
    if uses_triton(t):
        from gnnkit.ops import _triton_kernels as module  # lazily: triton is an optional dependency
    else:
        from gnnkit.ops import _torch_kernels as module
    return module  # type: ignore[return-value]
