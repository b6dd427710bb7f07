"""Which kernels run: torch on CPU, Triton on CUDA, and how to add an op.

Every kernel is declared once, in :mod:`gnnkit.ops._library` (:data:`~gnnkit.ops._library.KERNELS`:
its argument list, output shapes and docs); :mod:`gnnkit.ops._torch_kernels` and
:mod:`gnnkit.ops._triton_kernels` both implement each with that argument list (a test checks
this), and :func:`kernels_for` picks one of the two modules for a tensor at run time.

**Adding a differentiable op touches three files** (its public function and test aside), also
when it brings a new ``@triton.jit`` kernel:

1. ``gnnkit/ops/_library.py``: the kernel's shape function under ``@kernel(on=...)`` (argument
   list, schema, fake) and the op's row in ``OPS`` with its ``setup`` and ``backward``;
2. ``gnnkit/ops/_torch_kernels.py``: the CPU implementation, same name and arguments;
3. ``gnnkit/ops/_triton_kernels.py``: the CUDA implementation, same name and arguments (the
   launcher). A new ``@triton.jit`` kernel goes here too, under
   ``@kernel_table(variants, heaviest, shapes, ...)`` (:func:`gnnkit.ops._launch.kernel_table`),
   which enters its launch configurations in ``gnnkit.ops._launch.TABLE``; and next to the
   launcher a function under ``@launch_sweep`` (:func:`gnnkit.ops._launch.launch_sweep`) that
   calls it once per flag combination on the sizes it is given, which
   :func:`gnnkit.ops._aot.call_every_launcher` runs, so that CI compiles the kernel ahead of
   time (tests/ops/test_triton_aot.py checks that the sweep produces exactly the table).

The registered ``torch.ops.gnnkit`` op, its autograd registration and the eager path are built
from the row. ``gnnkit/ops/_launch.py`` (the table machinery and the shared block-shape
families) and ``gnnkit/ops/_aot.py`` need no edit, unless a kernel needs a new family of block
shapes that the sweep sizes of :func:`gnnkit.ops._aot.sweep_sizes` do not reach. The public
function (checked arguments, then ``_library.call``) lives in a module of :mod:`gnnkit.ops` and is
exported by its ``__init__``, like any public function.

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
from typing import Iterator, Literal

from torch import Tensor

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


def uses_triton(t: Tensor) -> bool:
    """Whether ``t`` is routed to the Triton kernels under the current setting."""
    return _current == "triton" or (_current == "auto" and t.is_cuda)


def kernels_for(t: Tensor) -> ModuleType:
    """The kernel implementation for tensor ``t`` under the current backend setting."""
    module: ModuleType
    if uses_triton(t):
        from gnnkit.ops import _triton_kernels as module  # lazily: triton is an optional dependency
    else:
        from gnnkit.ops import _torch_kernels as module
    return module
