"""The launch configurations of the Triton kernels: one table that the launchers and the tests read.

This module holds the machinery (:class:`KernelTable`, the shared block-shape families, launch
checks, recording) and no kernel's entry: each ``@triton.jit`` kernel of
:mod:`gnnkit.ops._triton_kernels` declares its own under :func:`kernel_table`, which fills
:data:`TABLE` when that module is imported, and each launcher registers a sweep function next to
itself with :func:`launch_sweep` (collected in :data:`SWEEPS`).

Every launch in :mod:`gnnkit.ops._triton_kernels` goes through
:func:`gnnkit.ops._triton_kernels._launch`, which refuses a configuration that is not in
:data:`TABLE`. So the table is, by construction, a superset of what the launchers can produce, and
tests/ops/test_triton_aot.py checks the converse: running every registered sweep on ``meta``
tensors over a range of sizes and every dtype (:func:`gnnkit.ops._aot.sweep`, inside
:func:`recording`: no kernel runs) produces every entry of the table and nothing else. The same test compiles the entries for sm_80 and sm_90 (see
:mod:`gnnkit.ops._aot`), so a new kernel, flag combination or block size cannot reach a GPU
without having been compiled in CI.

A configuration (:class:`Spec`) is a kernel, its ``tl.constexpr`` flags (a *variant*), the data
dtype (which fixes the pointer types and the ``ACC`` accumulator: float64 for float64 data, else
float32) and a :class:`Shape` (block sizes and ``num_warps``). Index tensors are always int64.

Shapes are chosen from small fixed sets rather than from every power of two: each distinct
configuration costs one JIT compilation (0.3-1 s) the first time a process launches it on a GPU,
and one AOT compilation per target in CI.

This module needs torch only (no Triton) and imports nothing of the kernels, so launch grids can
be computed anywhere; the kernels import it, never the reverse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch

DTYPES: dict[torch.dtype, str] = {
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
}
DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES.values())
TORCH_DTYPES: dict[str, torch.dtype] = {v: k for k, v in DTYPES.items()}

Flags = tuple[tuple[str, Any], ...]
K = TypeVar("K")


@dataclass(frozen=True)
class Shape:
    """Block sizes (``tl.constexpr`` arguments, in order) and ``num_warps`` of one launch."""

    blocks: tuple[tuple[str, int], ...]
    num_warps: int

    @property
    def elements(self) -> int:
        """Elements of the largest register tile (the product of the block sizes)."""
        n = 1
        for _, b in self.blocks:
            n *= b
        return n

    @property
    def per_thread(self) -> float:
        """Tile elements per thread: what register pressure grows with."""
        return self.elements / (32 * self.num_warps)

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.blocks) + f" warps={self.num_warps}"


@dataclass(frozen=True)
class Spec:
    """One launch configuration: what the JIT compiles once per process and device."""

    kernel: str
    flags: Flags
    dtype: str
    shape: Shape

    def constexprs(self) -> dict[str, Any]:
        """The kernel's ``tl.constexpr`` arguments except ``ACC`` (set from :attr:`dtype`)."""
        return {**dict(self.flags), **dict(self.shape.blocks)}

    def label(self) -> str:
        flags = ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in self.flags) or "-"
        return f"{self.kernel} [{flags}] {self.dtype} {self.shape.label()}"


@dataclass(frozen=True)
class KernelTable:
    """Every configuration one kernel is launched with: ``variants x dtypes x shapes``.

    Attributes:
        name: the ``@triton.jit`` function in :mod:`gnnkit.ops._triton_kernels`.
        variants: the constexpr flag combinations the launchers use.
        heaviest: the variant with the most live values per element (for the spill check).
        shapes: the block sizes / warps the launchers can choose.
        uses_dot: the kernel calls ``tl.dot`` (its lowering depends on shape and dtype).
    """

    name: str
    variants: tuple[Flags, ...]
    heaviest: Flags
    shapes: tuple[Shape, ...]
    dtypes: tuple[str, ...] = DTYPE_NAMES
    uses_dot: bool = False

    def specs(self) -> list[Spec]:
        return [Spec(self.name, v, d, s) for v in self.variants for d in self.dtypes for s in self.shapes]

    def largest_shape(self) -> Shape:
        return max(self.shapes, key=lambda s: (s.per_thread, s.elements, s.blocks))


# ------------------------------------------------------------------------------ shape choices


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _smallest_at_least(n: int, choices: tuple[int, ...]) -> int:
    for c in choices:
        if n <= c:
            return c
    return choices[-1]


def _warps_for(tile: int) -> int:
    # At most 16 tile elements per thread: with 32 (a 32 x 128 tile on 4 warps) ptxas spilled a few
    # bytes in several variants (found by `python -m gnnkit.ops._aot --full`).
    return 8 if tile >= 4096 else (4 if tile >= 2048 else (2 if tile >= 512 else 1))


# Row kernels (one program per target row and feature tile, a loop over the row's edges). The
# feature tile covers a float32 row of up to 512 B in one coalesced load; the edge chunk follows
# the average degree so that short rows do not leave most of the tile masked.
ROW_BLOCK_F: tuple[int, ...] = (1, 4, 16, 32, 64, 128)
ROW_BLOCK_E: tuple[int, ...] = (8, 32)
ROW_SHAPES: tuple[Shape, ...] = tuple(
    Shape((("BLOCK_E", be), ("BLOCK_F", bf)), _warps_for(be * bf)) for bf in ROW_BLOCK_F for be in ROW_BLOCK_E
)


def row_shape(num_edges: int, num_rows: int, feats: int) -> Shape:
    """Block sizes of :func:`_csr_reduce_kernel` and :func:`_spmm_max_bwd_x_kernel`."""
    bf = _smallest_at_least(max(feats, 1), ROW_BLOCK_F)
    avg_degree = cdiv(num_edges, max(num_rows, 1))
    be = ROW_BLOCK_E[0] if avg_degree <= ROW_BLOCK_E[0] else ROW_BLOCK_E[-1]
    return Shape((("BLOCK_E", be), ("BLOCK_F", bf)), _warps_for(be * bf))


# Edge kernels (one program per block of edges, a loop over feature tiles): 1024-value tiles.
EDGE_BLOCK_F: tuple[int, ...] = (1, 4, 16, 32, 64)
EDGE_SHAPES: tuple[Shape, ...] = tuple(Shape((("BLOCK_E", 1024 // bf), ("BLOCK_F", bf)), 4) for bf in EDGE_BLOCK_F)


def edge_shape(feats: int) -> Shape:
    """Block sizes of :func:`_edge_dot_kernel` and :func:`_spmm_max_bwd_w_kernel`."""
    bf = _smallest_at_least(max(feats, 1), EDGE_BLOCK_F)
    return Shape((("BLOCK_E", 1024 // bf), ("BLOCK_F", bf)), 4)


# Outer-product kernels: tl.dot needs every tile dimension >= 16. The forward reduces over a chunk
# of 16 edges, the two backward kernels over a 16-wide slice of the other dimension (d for grad_z,
# K for the messages): with float32 IEEE products (FMA, no tensor cores) a wider reduction tile
# spilled registers (64 x 64 tiles: up to 416 B per thread on sm_80), and grad_z's K tile stops at
# 32 for the same reason (tests/ops/test_triton_aot.py fails on any spill).
DOT_BLOCKS: tuple[int, ...] = (16, 32, 64)
DOT_BLOCK_E = 16
DOT_REDUCE_BLOCK = 16
BWD_Z_BLOCK_K: tuple[int, ...] = (16, 32)


def _dot(bk: int, bd: int) -> Shape:
    return Shape((("BLOCK_E", DOT_BLOCK_E), ("BLOCK_K", bk), ("BLOCK_D", bd)), 4)


OUTER_FWD_SHAPES: tuple[Shape, ...] = tuple(_dot(bk, bd) for bk in DOT_BLOCKS for bd in DOT_BLOCKS)
OUTER_BWD_Z_SHAPES: tuple[Shape, ...] = tuple(_dot(bk, DOT_REDUCE_BLOCK) for bk in BWD_Z_BLOCK_K)
OUTER_BWD_MSG_SHAPES: tuple[Shape, ...] = tuple(_dot(DOT_REDUCE_BLOCK, bd) for bd in DOT_BLOCKS)
GATHER_SHAPES: tuple[Shape, ...] = tuple(Shape((("BLOCK_E", DOT_BLOCK_E), ("BLOCK_D", bd)), 4) for bd in DOT_BLOCKS)


def outer_fwd_shape(k: int, d: int) -> Shape:
    """Block sizes of :func:`_outer_fwd_kernel` (one ``BLOCK_K x BLOCK_D`` tile of ``S[v]``)."""
    return _dot(_smallest_at_least(max(k, 1), DOT_BLOCKS), _smallest_at_least(max(d, 1), DOT_BLOCKS))


def outer_bwd_z_shape(k: int) -> Shape:
    """Block sizes of :func:`_outer_bwd_z_kernel` (a ``BLOCK_E x BLOCK_K`` tile of ``grad_z``)."""
    return _dot(_smallest_at_least(max(k, 1), BWD_Z_BLOCK_K), DOT_REDUCE_BLOCK)


def outer_bwd_msg_shape(d: int) -> Shape:
    """Block sizes of :func:`_outer_bwd_msg_kernel` (a ``BLOCK_E x BLOCK_D`` tile of messages)."""
    return _dot(DOT_REDUCE_BLOCK, _smallest_at_least(max(d, 1), DOT_BLOCKS))


def gather_shape(d: int) -> Shape:
    """Block sizes of :func:`_gather_sum_kernel`."""
    return Shape((("BLOCK_E", DOT_BLOCK_E), ("BLOCK_D", _smallest_at_least(max(d, 1), DOT_BLOCKS))), 4)


# ------------------------------------------------------------------------------------- table

# Filled by :func:`kernel_table` where each ``@triton.jit`` kernel is defined (in
# :mod:`gnnkit.ops._triton_kernels`): this module holds no kernel's entry.
TABLE: dict[str, KernelTable] = {}


def kernel_table(
    variants: tuple[Flags, ...] = ((),),
    heaviest: Flags = (),
    shapes: tuple[Shape, ...] = (),
    dtypes: tuple[str, ...] = DTYPE_NAMES,
    uses_dot: bool = False,
) -> Callable[[K], K]:
    """Decorator over a ``@triton.jit`` kernel: enters its :class:`KernelTable` (named after the
    kernel's function) in :data:`TABLE`, and returns the kernel unchanged.

    Raises:
        ValueError: a kernel of that name already has an entry, or the entry is empty or its
            ``heaviest`` variant is not one of its ``variants``.
    """

    def register(kernel: K) -> K:
        name = getattr(kernel, "fn", kernel).__name__
        if name in TABLE:
            raise ValueError(f"kernel {name} already has an entry in gnnkit.ops._launch.TABLE")
        if not variants or not shapes or not dtypes:
            raise ValueError(f"kernel {name}: the launch table needs at least one variant, shape and dtype")
        if heaviest not in variants:
            raise ValueError(f"kernel {name}: heaviest variant {heaviest} is not one of its variants")
        TABLE[name] = KernelTable(name, tuple(variants), heaviest, tuple(shapes), tuple(dtypes), uses_dot)
        return kernel

    return register


def all_specs() -> list[Spec]:
    """Every configuration of every kernel (the product the launchers may produce), as registered
    so far: import :mod:`gnnkit.ops._triton_kernels` first (or use :func:`gnnkit.ops._aot.table`)."""
    return [s for t in TABLE.values() for s in t.specs()]


def spec_for(kernel: str, flags: Flags, dtype: torch.dtype, shape: Shape) -> Spec:
    """The table's :class:`Spec` for a launch, or an error naming what is not in the table.

    Raises:
        TypeError: the data dtype has no Triton kernel (e.g. a float8 or integer tensor).
        RuntimeError: the kernel, flags or shape are not in :data:`TABLE` (a launcher bug: add the
            configuration to the table, so that the AOT test compiles it).
    """
    if dtype not in DTYPES:
        raise TypeError(
            f"the Triton kernels support {', '.join(str(d) for d in DTYPES)} data, got {dtype}; "
            "convert the tensor (e.g. .float()) or use the torch backend"
        )
    table = TABLE.get(kernel)
    if table is None:
        raise RuntimeError(f"kernel {kernel} has no entry in gnnkit.ops._launch.TABLE")
    spec = Spec(kernel, tuple(flags), DTYPES[dtype], shape)
    if spec.flags not in table.variants or spec.shape not in table.shapes or spec.dtype not in table.dtypes:
        raise RuntimeError(f"launch configuration {spec.label()} is not in gnnkit.ops._launch.TABLE")
    return spec


# CUDA's limits on the number of programs along each grid axis.
GRID_LIMITS: tuple[int, int, int] = (2**31 - 1, 65_535, 65_535)


def check_grid(grid: tuple[int, ...], spec: Spec) -> None:
    """Raises ``ValueError`` if ``grid`` exceeds CUDA's limits (x <= 2**31 - 1, y and z <= 65,535),
    before a launch would fail with a driver error."""
    if not 1 <= len(grid) <= 3:
        raise ValueError(f"{spec.kernel}: a grid has 1 to 3 axes, got {grid}")
    for axis, (n, limit) in enumerate(zip(grid, GRID_LIMITS)):
        if n > limit:
            raise ValueError(
                f"{spec.kernel} would launch a grid of {grid} programs: axis {'xyz'[axis]} exceeds CUDA's limit of "
                f"{limit:,} (the tensor is too large for this kernel's tiling, {spec.shape.label()})"
            )


# ------------------------------------------------------------------------------ recording


@dataclass
class Launch:
    """One launch, as recorded by :func:`recording`: the configuration, the grid, and the
    argument types the JIT would see (tensors as pointers, ints as i32/i64)."""

    spec: Spec
    grid: tuple[int, ...]
    signature: dict[str, str] = field(default_factory=dict)


_recorder: list[Launch] | None = None


@contextlib.contextmanager
def recording() -> Iterator[list[Launch]]:
    """Within this context the launchers record their launches instead of running kernels, so
    they can be called on ``meta`` tensors of any size (outputs are left unwritten)."""
    global _recorder
    previous, _recorder = _recorder, []
    try:
        yield _recorder
    finally:
        _recorder = previous


def recorder() -> list[Launch] | None:
    """The active recording (see :func:`recording`), or None when kernels run."""
    return _recorder


@dataclass(frozen=True)
class SweepSizes:
    """Sizes for one call of every launcher: ``rows`` targets (and sources), ``edges`` edges,
    ``feats`` features; the outer-product kernels use ``k`` and ``feats``."""

    rows: int
    edges: int
    feats: int
    k: int


Sweep = Callable[[SweepSizes, torch.dtype, "str | torch.device"], None]

# Filled by :func:`launch_sweep` next to each launcher; :func:`gnnkit.ops._aot.call_every_launcher`
# calls them all, in registration order.
SWEEPS: dict[str, Sweep] = {}


def launch_sweep(fn: Sweep) -> Sweep:
    """Decorator that registers ``fn(sizes, dtype, device)``: it calls one launcher (or a few)
    once per flag combination it can produce, with tensors of ``sizes`` and ``dtype`` on ``device``
    (``meta`` inside :func:`recording`), so that the AOT sweep reaches every configuration.

    Raises:
        ValueError: a sweep of that name is already registered.
    """
    if fn.__name__ in SWEEPS:
        raise ValueError(f"a launch sweep named {fn.__name__} is already registered")
    SWEEPS[fn.__name__] = fn
    return fn


_TRITON_TYPES = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16",
                 torch.int64: "i64", torch.int32: "i32"}  # fmt: skip


def arg_type(value: Any) -> str:
    """Triton's signature type for a runtime argument (``*fp32`` for a float32 tensor, ``i32`` for
    an int that fits in 32 bits)."""
    if isinstance(value, torch.Tensor):
        if value.dtype not in _TRITON_TYPES:
            raise TypeError(f"no Triton pointer type for a {value.dtype} tensor")
        return "*" + _TRITON_TYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__}")


__all__ = [
    "DTYPES",
    "TABLE",
    "KernelTable",
    "Launch",
    "Shape",
    "Spec",
    "all_specs",
    "GRID_LIMITS",
    "check_grid",
    "SWEEPS",
    "SweepSizes",
    "kernel_table",
    "launch_sweep",
    "outer_bwd_msg_shape",
    "outer_bwd_z_shape",
    "outer_fwd_shape",
    "edge_shape",
    "gather_shape",
    "recording",
    "row_shape",
    "spec_for",
]
