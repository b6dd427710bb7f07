"""CUDA kernels in Triton: the kernels of :data:`gnnkit.ops._library.KERNELS`, with the arguments
and results of :mod:`._torch_kernels`.

All reductions go through one kernel, :func:`_csr_reduce_kernel`: one program per target row
(axis 0 of the grid) and per ``BLOCK_F`` feature tile (axis 1) loops over the row's edges
``rowptr[v]:rowptr[v+1]`` in chunks of ``BLOCK_E`` and reduces them in registers. Each row is
written exactly once, so there are no atomics and the result does not depend on scheduling: the
GPU path is deterministic. ``scatter`` sorts its index (stable) and runs the same kernel through
the sort permutation; ``segment`` reads its rows in place; ``spmm`` gathers ``x[col[e]]``.

Loads along the feature dimension are contiguous (rows of ``x`` are row-major), so a ``BLOCK_E x
BLOCK_F`` tile is ``BLOCK_E`` coalesced row segments. Half-precision inputs (float16/bfloat16)
accumulate in float32, float64 in float64; outputs have the input dtype.

Max/min follow the torch path (aten's ``_sparse_mm_reduce_impl``) exactly, so the shared backward
is identical: only strictly better values replace the running extreme, so ties go to the first
position of the segment, an empty segment gives 0 with ``arg = E``, and a segment whose values
are all ``-inf`` (max) or ``+inf`` (min) keeps ``arg = E`` (it receives no gradient).

Sizes come from tensor shapes (host ints), never from tensor values, so there is no host sync.
The kernels also run under ``TRITON_INTERPRET=1`` on CPU tensors, which is how the tests check them.

Every launch goes through :func:`_launch` with a configuration (constexpr flags, data dtype,
block sizes, ``num_warps``) from :data:`gnnkit.ops._launch.TABLE`; anything else is refused. Each
kernel declares its entry of that table where it is defined (``@kernel_table(...)`` over
``@triton.jit``), and each launcher is followed by a ``@launch_sweep`` function that calls it once
per flag combination on the sizes it is given: :func:`gnnkit.ops._aot.sweep` runs them all on
``meta`` tensors, and tests/ops/test_triton_aot.py checks that they produce exactly the table,
compiles it for sm_80 and sm_90 and checks the launch grids.
Index tensors are passed as int64; data may be float32, float64, float16 or bfloat16 (any other
dtype is a ``TypeError``).
"""

from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl
from torch import Tensor

from gnnkit.ops._launch import (
    EDGE_SHAPES,
    GATHER_SHAPES,
    OUTER_BWD_MSG_SHAPES,
    OUTER_BWD_Z_SHAPES,
    OUTER_FWD_SHAPES,
    ROW_SHAPES,
    TORCH_DTYPES,
    Flags,
    Launch,
    Spec,
    SweepSizes,
    arg_type,
    cdiv,
    check_grid,
    edge_shape,
    gather_shape,
    kernel_table,
    launch_sweep,
    outer_bwd_msg_shape,
    outer_bwd_z_shape,
    outer_fwd_shape,
    recorder,
    row_shape,
    spec_for,
)

REDUCE_CODE: dict[str, int] = {"sum": 0, "mean": 1, "max": 2, "min": 3}


def csr_reduce_flags(reduce: str, gather: bool, weighted: bool, arg_from_col: bool) -> Flags:
    """The variant of :func:`_csr_reduce_kernel` for a reduction. ``ARG_FROM_COL`` only changes
    max/min (which report positions), so sum/mean always pass False: scatter-sum and unweighted
    spmm-sum then share one compiled kernel."""
    code = REDUCE_CODE[reduce]
    return (("REDUCE", code), ("GATHER", gather), ("HAS_WEIGHT", weighted), ("ARG_FROM_COL", arg_from_col and code >= 2))


_CSR_VARIANTS: tuple[Flags, ...] = tuple(
    dict.fromkeys(
        [csr_reduce_flags(r, False, False, False) for r in REDUCE_CODE]  # segment
        + [csr_reduce_flags(r, True, False, True) for r in REDUCE_CODE]  # scatter (through the sort permutation)
        + [csr_reduce_flags(r, True, w, False) for r in ("sum", "mean", "max") for w in (False, True)]  # spmm
    )
)


@kernel_table(_CSR_VARIANTS, csr_reduce_flags("max", True, True, False), ROW_SHAPES)
@triton.jit
def _csr_reduce_kernel(
    rowptr_ptr,
    col_ptr,
    w_ptr,
    x_ptr,
    out_ptr,
    arg_ptr,
    F,
    stride_x,
    sentinel,
    REDUCE: tl.constexpr,  # 0 sum, 1 mean, 2 max, 3 min
    GATHER: tl.constexpr,  # rows read are col[e] (True) or e itself (False)
    HAS_WEIGHT: tl.constexpr,
    ARG_FROM_COL: tl.constexpr,  # arg reports col[e] (scatter: original row) instead of e
    ACC: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    """``out[v, f] = reduce_{e in rowptr[v]:rowptr[v+1]} w[e] * x[col[e], f]``.

    Cost model (``s`` = bytes per value, ``d`` = in-degree): per target row ``16`` B of offsets
    and ``s*F`` B written (+ ``8F`` B of ``arg`` for max/min); per edge ``8`` B of ``col``
    (when gathering), ``s`` B of weight (when weighted) and a row of ``s*F`` B read, ``F``
    flops (``2F`` with weights). Gathered rows of repeated sources hit in L2, so DRAM traffic
    lies between ``s*F*num_src`` and ``s*F*E`` for the features.
    """
    row = tl.program_id(0).to(tl.int64)
    offs_f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = offs_f < F
    start = tl.load(rowptr_ptr + row)
    end = tl.load(rowptr_ptr + row + 1)

    if REDUCE <= 1:
        acc = tl.zeros([BLOCK_F], dtype=ACC)
    else:
        acc = tl.full([BLOCK_F], float("-inf"), dtype=ACC)
        best = tl.full([BLOCK_F], sentinel, dtype=tl.int64)

    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        emask = offs_e < end
        if GATHER:
            src_rows = tl.load(col_ptr + offs_e, mask=emask, other=0).to(tl.int64)
        else:
            src_rows = offs_e
        m2 = emask[:, None] & fmask[None, :]
        vals = tl.load(x_ptr + src_rows[:, None] * stride_x + offs_f[None, :], mask=m2, other=0.0).to(ACC)
        if HAS_WEIGHT:
            w = tl.load(w_ptr + offs_e, mask=emask, other=0.0).to(ACC)
            vals = vals * w[:, None]
        if REDUCE <= 1:
            acc += tl.sum(vals, axis=0)
        else:
            if REDUCE == 3:
                vals = -vals  # min(x) = -max(-x), exactly, ties included
            vals = tl.where(m2, vals, float("-inf"))
            tile_max = tl.max(vals, axis=0)
            if ARG_FROM_COL:
                pos = src_rows
            else:
                pos = offs_e
            hit = m2 & (vals == tile_max[None, :])
            tile_arg = tl.min(tl.where(hit, pos[:, None], sentinel), axis=0)
            # Strictly greater keeps the earlier tile on ties: first position wins.
            upd = tile_max > acc
            acc = tl.where(upd, tile_max, acc)
            best = tl.where(upd, tile_arg, best)

    count = end - start
    if REDUCE == 1:
        acc = acc / tl.maximum(count, 1).to(ACC)
    if REDUCE >= 2:
        if REDUCE == 3:
            acc = -acc
        acc = tl.where(count > 0, acc, 0.0)
        tl.store(arg_ptr + row * F + offs_f, best, mask=fmask)
    tl.store(out_ptr + row * F + offs_f, acc.to(out_ptr.dtype.element_ty), mask=fmask)


@kernel_table(((("HAS_WEIGHT", False),), (("HAS_WEIGHT", True),)), (("HAS_WEIGHT", True),), ROW_SHAPES)
@triton.jit
def _spmm_max_bwd_x_kernel(
    t_rowptr_ptr,
    t_col_ptr,
    t_perm_ptr,
    w_ptr,
    arg_ptr,
    g_ptr,
    out_ptr,
    F,
    HAS_WEIGHT: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    """Gradient of ``spmm(reduce="max")`` w.r.t. ``x``, gathered over the transpose:
    ``grad_x[u, f] = sum_{e: u -> v} [arg[v, f] == e] * w[e] * grad_out[v, f]``.

    One program per source row writes its row once (no atomics, deterministic). Cost model
    (``s`` = bytes per value): per edge ``16`` B of indices, ``s`` B of weight, a row of ``8F``
    B of ``arg`` and at most ``s*F`` B of ``grad_out`` (only where the edge won); per source row
    ``s*F`` B written; ``2F`` flops per edge.
    """
    u = tl.program_id(0).to(tl.int64)
    offs_f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = offs_f < F
    start = tl.load(t_rowptr_ptr + u)
    end = tl.load(t_rowptr_ptr + u + 1)
    acc = tl.zeros([BLOCK_F], dtype=ACC)
    for j0 in range(start, end, BLOCK_E):
        offs_j = j0 + tl.arange(0, BLOCK_E)
        jmask = offs_j < end
        v = tl.load(t_col_ptr + offs_j, mask=jmask, other=0).to(tl.int64)
        e = tl.load(t_perm_ptr + offs_j, mask=jmask, other=-1).to(tl.int64)
        m2 = jmask[:, None] & fmask[None, :]
        won = tl.load(arg_ptr + v[:, None] * F + offs_f[None, :], mask=m2, other=-1) == e[:, None]
        g = tl.load(g_ptr + v[:, None] * F + offs_f[None, :], mask=m2 & won, other=0.0).to(ACC)
        if HAS_WEIGHT:
            g = g * tl.load(w_ptr + e, mask=jmask, other=0.0).to(ACC)[:, None]
        acc += tl.sum(g, axis=0)
    tl.store(out_ptr + u * F + offs_f, acc.to(out_ptr.dtype.element_ty), mask=fmask)


@kernel_table(shapes=EDGE_SHAPES)
@triton.jit
def _edge_dot_kernel(
    row_ptr,
    col_ptr,
    a_ptr,
    b_ptr,
    out_ptr,
    E,
    F,
    stride_a,
    stride_b,
    ACC: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    """``out[e] = sum_f a[row[e], f] * b[col[e], f]`` for a block of ``BLOCK_E`` edges.

    Cost model (``s`` = bytes per value): per edge ``16`` B of indices, two gathered rows of
    ``s*F`` B each, ``s`` B written; ``2F`` flops.
    """
    offs_e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = offs_e < E
    r = tl.load(row_ptr + offs_e, mask=emask, other=0).to(tl.int64)
    c = tl.load(col_ptr + offs_e, mask=emask, other=0).to(tl.int64)
    acc = tl.zeros([BLOCK_E], dtype=ACC)
    for f0 in range(0, F, BLOCK_F):
        offs_f = f0 + tl.arange(0, BLOCK_F)
        m2 = emask[:, None] & (offs_f < F)[None, :]
        va = tl.load(a_ptr + r[:, None] * stride_a + offs_f[None, :], mask=m2, other=0.0).to(ACC)
        vb = tl.load(b_ptr + c[:, None] * stride_b + offs_f[None, :], mask=m2, other=0.0).to(ACC)
        acc += tl.sum(va * vb, axis=1)
    tl.store(out_ptr + offs_e, acc.to(out_ptr.dtype.element_ty), mask=emask)


@kernel_table(shapes=EDGE_SHAPES)
@triton.jit
def _spmm_max_bwd_w_kernel(
    row_ptr,
    col_ptr,
    arg_ptr,
    g_ptr,
    x_ptr,
    out_ptr,
    E,
    F,
    ACC: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    """Gradient of ``spmm(reduce="max")`` w.r.t. the edge weights:
    ``grad_w[e] = sum_f [arg[row[e], f] == e] * grad_out[row[e], f] * x[col[e], f]``.

    Cost model: per edge ``16`` B of indices, ``8F`` B of ``arg``, at most ``2*s*F`` B of
    ``grad_out`` and ``x`` (only where the edge won), ``s`` B written; ``2F`` flops.
    """
    offs_e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = offs_e < E
    r = tl.load(row_ptr + offs_e, mask=emask, other=0).to(tl.int64)
    c = tl.load(col_ptr + offs_e, mask=emask, other=0).to(tl.int64)
    acc = tl.zeros([BLOCK_E], dtype=ACC)
    for f0 in range(0, F, BLOCK_F):
        offs_f = f0 + tl.arange(0, BLOCK_F)
        m2 = emask[:, None] & (offs_f < F)[None, :]
        won = m2 & (tl.load(arg_ptr + r[:, None] * F + offs_f[None, :], mask=m2, other=-1) == offs_e[:, None])
        g = tl.load(g_ptr + r[:, None] * F + offs_f[None, :], mask=won, other=0.0).to(ACC)
        xv = tl.load(x_ptr + c[:, None] * F + offs_f[None, :], mask=won, other=0.0).to(ACC)
        acc += tl.sum(g * xv, axis=1)
    tl.store(out_ptr + offs_e, acc.to(out_ptr.dtype.element_ty), mask=emask)


# ----------------------------------------------------------- outer-product aggregation
#Triton kernels of :func:`gnnkit.ops.outer_aggregate` (CUDA; also run under ``TRITON_INTERPRET=1``).
#
#Forward, one program per target node ``v`` and ``BLOCK_K x BLOCK_D`` tile of ``S[v]``: loop over
#the node's in-edges ``rowptr[v]:rowptr[v+1]`` in chunks of ``BLOCK_E``, load ``Z`` rows (``BLOCK_E x
#BLOCK_K``, contiguous: edges are in CSR order) and gathered ``h[col[e]]`` rows (``BLOCK_E x
#BLOCK_D``) and accumulate ``Z^T H`` with ``tl.dot`` in registers. Each tile is written once: no
#atomics, deterministic, and no ``E x K x d`` intermediate.
#
#Backward, with ``G = dL/dS``:
#
#* ``grad_z[e] = G[v] @ h[col[e]]``: one program per target and ``BLOCK_K`` slice, ``H @ G_v^T``
#  per edge chunk; every row of ``grad_z`` is written by exactly one program.
#* ``grad_h``: per target, ``M[e] = z[e] @ G[v]`` (``Z @ G_v``, one ``d``-vector per edge, like a
#  message), then a segmented sum of ``M`` over each source's out-edges through the CSR transpose
#  (:func:`_gather_sum_kernel`), again without atomics.
#
#Cost model (``s`` bytes per value, ``deg`` in-degree): forward reads ``s*K`` B of ``z`` and
#``s*d`` B of ``h`` (+8 B of ``col``) per edge and writes ``s*K*d`` B per node; ``2 K d`` flops
#per edge. Backward: ``grad_z`` reads ``s*d`` B per edge and ``s*K*d`` per node, writes ``s*K``
#per edge, ``2 K d`` flops per edge; ``grad_h`` reads ``s*K`` per edge and ``s*K*d`` per node,
#writes and rereads ``s*d`` per edge (``M``), ``2 K d`` flops per edge. Tiles of ``S``/``G`` are
#reread once per ``BLOCK_K``/``BLOCK_D`` slice of the other dimension (from L2).
#
#float16/bfloat16 accumulate in float32; float64 in float64. float32 products use IEEE precision
#(no TF32) so that results match the torch path to float32 rounding.
#

@kernel_table(shapes=OUTER_FWD_SHAPES, uses_dot=True)
@triton.jit
def _outer_fwd_kernel(
    rowptr_ptr, col_ptr, z_ptr, h_ptr, out_ptr, K, D,
    ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    v = tl.program_id(0).to(tl.int64)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    kmask, dmask = offs_k < K, offs_d < D
    start = tl.load(rowptr_ptr + v)
    end = tl.load(rowptr_ptr + v + 1)
    acc = tl.zeros([BLOCK_K, BLOCK_D], dtype=ACC)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        emask = offs_e < end
        src = tl.load(col_ptr + offs_e, mask=emask, other=0).to(tl.int64)
        zt = tl.load(z_ptr + offs_e[:, None] * K + offs_k[None, :], mask=emask[:, None] & kmask[None, :], other=0.0)
        ht = tl.load(h_ptr + src[:, None] * D + offs_d[None, :], mask=emask[:, None] & dmask[None, :], other=0.0)
        acc += tl.dot(tl.trans(zt), ht, input_precision="ieee", out_dtype=ACC)
    out = out_ptr + v * K * D + offs_k[:, None] * D + offs_d[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=kmask[:, None] & dmask[None, :])


@kernel_table(shapes=OUTER_BWD_Z_SHAPES, uses_dot=True)
@triton.jit
def _outer_bwd_z_kernel(
    rowptr_ptr, col_ptr, h_ptr, g_ptr, gz_ptr, K, D,
    ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    v = tl.program_id(0).to(tl.int64)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    kmask = offs_k < K
    start = tl.load(rowptr_ptr + v)
    end = tl.load(rowptr_ptr + v + 1)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        emask = offs_e < end
        src = tl.load(col_ptr + offs_e, mask=emask, other=0).to(tl.int64)
        acc = tl.zeros([BLOCK_E, BLOCK_K], dtype=ACC)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            dmask = offs_d < D
            ht = tl.load(h_ptr + src[:, None] * D + offs_d[None, :], mask=emask[:, None] & dmask[None, :], other=0.0)
            gt = tl.load(g_ptr + v * K * D + offs_k[:, None] * D + offs_d[None, :], mask=kmask[:, None] & dmask[None, :], other=0.0)
            acc += tl.dot(ht, tl.trans(gt), input_precision="ieee", out_dtype=ACC)
        out = gz_ptr + offs_e[:, None] * K + offs_k[None, :]
        tl.store(out, acc.to(gz_ptr.dtype.element_ty), mask=emask[:, None] & kmask[None, :])


@kernel_table(shapes=OUTER_BWD_MSG_SHAPES, uses_dot=True)
@triton.jit
def _outer_bwd_msg_kernel(
    rowptr_ptr, z_ptr, g_ptr, m_ptr, K, D,
    ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    v = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    start = tl.load(rowptr_ptr + v)
    end = tl.load(rowptr_ptr + v + 1)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        emask = offs_e < end
        acc = tl.zeros([BLOCK_E, BLOCK_D], dtype=ACC)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            kmask = offs_k < K
            zt = tl.load(z_ptr + offs_e[:, None] * K + offs_k[None, :], mask=emask[:, None] & kmask[None, :], other=0.0)
            gt = tl.load(g_ptr + v * K * D + offs_k[:, None] * D + offs_d[None, :], mask=kmask[:, None] & dmask[None, :], other=0.0)
            acc += tl.dot(zt, gt, input_precision="ieee", out_dtype=ACC)
        out = m_ptr + offs_e[:, None] * D + offs_d[None, :]
        tl.store(out, acc.to(m_ptr.dtype.element_ty), mask=emask[:, None] & dmask[None, :])


@kernel_table(shapes=GATHER_SHAPES)
@triton.jit
def _gather_sum_kernel(rowptr_ptr, idx_ptr, x_ptr, out_ptr, D, ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    """``out[w] = sum_{j in rowptr[w]:rowptr[w+1]} x[idx[j]]``: 8 B of index and ``s*D`` B read per
    entry, ``s*D`` B written per row, ``D`` flops per entry."""
    w = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    start = tl.load(rowptr_ptr + w)
    end = tl.load(rowptr_ptr + w + 1)
    acc = tl.zeros([BLOCK_D], dtype=ACC)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        emask = offs_e < end
        rows = tl.load(idx_ptr + offs_e, mask=emask, other=0).to(tl.int64)
        x = tl.load(x_ptr + rows[:, None] * D + offs_d[None, :], mask=emask[:, None] & dmask[None, :], other=0.0)
        acc += tl.sum(x.to(ACC), axis=0)
    tl.store(out_ptr + w * D + offs_d, acc.to(out_ptr.dtype.element_ty), mask=dmask)


# --------------------------------------------------------------------------------- launching

_ACC = {"fp64": tl.float64, "fp32": tl.float32, "fp16": tl.float32, "bf16": tl.float32}


def _runtime_args(kernel) -> tuple[str, ...]:
    params = inspect.signature(getattr(kernel, "fn", kernel)).parameters.values()
    return tuple(p.name for p in params if "constexpr" not in str(p.annotation))


def _launch(kernel, grid: tuple[int, ...], args: tuple, spec: Spec) -> None:
    """Runs ``kernel`` on ``grid`` in the configuration ``spec`` (a :data:`gnnkit.ops._launch.TABLE`
    entry, checked by :func:`~gnnkit.ops._launch.spec_for`), or records the launch inside
    :func:`gnnkit.ops._launch.recording`."""
    check_grid(grid, spec)
    want = TORCH_DTYPES[spec.dtype]
    mixed = [a.dtype for a in args if isinstance(a, Tensor) and a.is_floating_point() and a.dtype != want]
    if mixed:
        # Only single-dtype configurations are in the table (and compiled ahead of time).
        raise TypeError(f"{spec.kernel}: float tensors of {want} and {mixed[0]} mixed; cast them to one dtype")
    launches = recorder()
    if launches is not None:
        names = _runtime_args(kernel)
        launches.append(Launch(spec, tuple(grid), {n: arg_type(a) for n, a in zip(names, args, strict=True)}))
        return
    kernel[grid](*args, **spec.constexprs(), ACC=_ACC[spec.dtype], num_warps=spec.shape.num_warps)


def _i64(t: Tensor) -> Tensor:
    # One index type for every kernel (int32 inputs would double the compiled variants).
    return t.long().contiguous()


def _block(spec: Spec, name: str) -> int:
    return dict(spec.shape.blocks)[name]


def _sweep_tensors(dtype: torch.dtype, device: str | torch.device):
    """``idx(m)``: an int64 index of ``m`` zeros; ``data(*shape)``: an uninitialised ``dtype``
    tensor (both on ``device``): the arguments of the launch sweeps below."""
    return (
        lambda m: torch.zeros(m, dtype=torch.long, device=device),
        lambda *shape: torch.empty(*shape, dtype=dtype, device=device),
    )


def _csr_reduce(
    rowptr: Tensor,
    col: Tensor | None,
    weight: Tensor | None,
    x: Tensor,
    reduce: str,
    arg_from_col: bool,
    sentinel: int,
) -> tuple[Tensor, Tensor | None]:
    num_rows, feats = rowptr.numel() - 1, x.size(1)
    n_edges = col.numel() if col is not None else x.size(0)
    flags = csr_reduce_flags(reduce, col is not None, weight is not None, arg_from_col)
    spec = spec_for("_csr_reduce_kernel", flags, x.dtype, row_shape(n_edges, num_rows, feats))
    out = torch.empty((num_rows, feats), dtype=x.dtype, device=x.device)
    arg = (
        torch.empty((num_rows, feats), dtype=torch.long, device=x.device)
        if reduce in ("max", "min")
        else None
    )
    if num_rows == 0 or feats == 0:
        return out, arg
    grid = (num_rows, cdiv(feats, _block(spec, "BLOCK_F")))
    args = (
        rowptr,
        col if col is not None else rowptr,
        weight if weight is not None else x,
        x,
        out,
        arg if arg is not None else rowptr,
        feats,
        x.stride(0),
        sentinel,
    )
    _launch(_csr_reduce_kernel, grid, args, spec)
    return out, arg


def _flat(src: Tensor) -> Tensor:
    feats = 1
    for d in src.shape[1:]:
        feats *= d
    return src.reshape(src.size(0), feats).contiguous()


def segment_fwd(src: Tensor, rowptr: Tensor, reduce: str) -> tuple[Tensor, Tensor | None]:
    """Segment reduction over sorted rows; rows are read in place (no gather)."""
    flat = _flat(src)
    out, arg = _csr_reduce(_i64(rowptr), None, None, flat, reduce, False, src.size(0))
    shape = (rowptr.numel() - 1, *src.shape[1:])
    return out.view(shape), (arg.view(shape) if arg is not None else None)


@launch_sweep
def _sweep_segment_fwd(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    for reduce in REDUCE_CODE:
        segment_fwd(data(sizes.edges, sizes.feats), idx(sizes.rows + 1), reduce)


def scatter_fwd(src: Tensor, index: Tensor, num_segments: int, reduce: str) -> tuple[Tensor, Tensor | None]:
    """Sorts ``index`` (stable, so ties keep input order) and reduces segment by segment through
    the permutation: deterministic, no atomics. Extra cost over a segment reduction: the sort
    (``O(E log E)`` on 8 B keys) and ``8`` B per row for the permutation."""
    sorted_index, perm = torch.sort(index.long(), stable=True)
    bounds = torch.arange(num_segments + 1, device=index.device)
    rowptr = torch.searchsorted(sorted_index, bounds)  # no bincount: that would sync on its max
    flat = _flat(src)
    out, arg = _csr_reduce(rowptr, perm, None, flat, reduce, True, src.size(0))
    shape = (num_segments, *src.shape[1:])
    return out.view(shape), (arg.view(shape) if arg is not None else None)


@launch_sweep
def _sweep_scatter_fwd(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    for reduce in REDUCE_CODE:
        scatter_fwd(data(sizes.edges, sizes.feats), idx(sizes.edges), sizes.rows, reduce)


def spmm_fwd(
    rowptr: Tensor, col: Tensor, weight: Tensor | None, x: Tensor, reduce: str
) -> tuple[Tensor, Tensor | None]:
    """``out[v] = reduce_{e in rowptr[v]:rowptr[v+1]} weight[e] * x[col[e]]``, one pass, no
    ``E x F`` tensor. ``arg`` (max) holds the edge position ``e`` of the maximum, ``E`` if none."""
    n_edges = col.numel()
    if n_edges == 0:
        num_dst = rowptr.numel() - 1
        return x.new_zeros(num_dst, x.size(1)), (
            torch.zeros(num_dst, x.size(1), dtype=torch.long, device=x.device) if reduce == "max" else None
        )
    w = weight.contiguous() if weight is not None else None
    return _csr_reduce(_i64(rowptr), _i64(col), w, x.contiguous(), reduce, False, n_edges)


@launch_sweep
def _sweep_spmm_fwd(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    n, e, f = sizes.rows, sizes.edges, sizes.feats
    for reduce in ("sum", "mean", "max"):
        for weight in (None, data(e)):
            spmm_fwd(idx(n + 1), idx(e), weight, data(n, f), reduce)


def edge_dot(row: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``out[e] = sum_f a[row[e], f] * b[col[e], f]`` (SDDMM), in registers (no ``E x F`` block)."""
    n_edges, feats = row.numel(), a.size(1)
    spec = spec_for("_edge_dot_kernel", (), a.dtype, edge_shape(feats))
    out = torch.empty(n_edges, dtype=a.dtype, device=a.device)
    if n_edges == 0:
        return out
    if feats == 0:
        return out.zero_()
    a, b = a.contiguous(), b.contiguous()
    grid = (cdiv(n_edges, _block(spec, "BLOCK_E")),)
    _launch(_edge_dot_kernel, grid, (_i64(row), _i64(col), a, b, out, n_edges, feats, a.stride(0), b.stride(0)), spec)
    return out


@launch_sweep
def _sweep_edge_dot(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    x = data(sizes.rows, sizes.feats)
    edge_dot(idx(sizes.edges), idx(sizes.edges), x, x)


def spmm_max_bwd(
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
    """Backward of ``spmm_fwd(..., "max")``: each output row is written by one program, so the
    gradients are deterministic (the torch path's ``index_put_(accumulate=True)`` would use
    floating-point atomics on CUDA)."""
    n_edges, feats = col.numel(), x.size(1)
    grad_x = grad_w = None
    x, arg, grad_out = x.contiguous(), _i64(arg), grad_out.contiguous()
    if need_x:
        flags = (("HAS_WEIGHT", weight is not None),)
        spec = spec_for("_spmm_max_bwd_x_kernel", flags, x.dtype, row_shape(n_edges, x.size(0), feats))
        grad_x = torch.zeros_like(x)
        if n_edges > 0 and feats > 0 and x.size(0) > 0:
            grid = (x.size(0), cdiv(feats, _block(spec, "BLOCK_F")))
            w = weight.contiguous() if weight is not None else x
            args = (_i64(t_rowptr), _i64(t_col), _i64(t_perm), w, arg, grad_out, grad_x, feats)
            _launch(_spmm_max_bwd_x_kernel, grid, args, spec)
    if need_w and weight is not None:
        spec = spec_for("_spmm_max_bwd_w_kernel", (), x.dtype, edge_shape(feats))
        grad_w = torch.zeros_like(weight)
        if n_edges > 0 and feats > 0:
            grid = (cdiv(n_edges, _block(spec, "BLOCK_E")),)
            args = (_i64(row), _i64(col), arg, grad_out, x, grad_w, n_edges, feats)
            _launch(_spmm_max_bwd_w_kernel, grid, args, spec)
    return grad_x, grad_w


@launch_sweep
def _sweep_spmm_max_bwd(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    n, e, f = sizes.rows, sizes.edges, sizes.feats
    rowptr, arg = idx(n + 1), idx(n * f).view(n, f)
    for weight in (None, data(e)):
        spmm_max_bwd(rowptr, idx(e), idx(e), rowptr, idx(e), idx(e), weight, data(n, f), arg, data(n, f), True,
                     weight is not None)  # fmt: skip


def outer_fwd(rowptr: Tensor, col: Tensor, z: Tensor, h: Tensor, buckets: Tensor) -> Tensor:
    """``S[v] = sum_{e in rowptr[v]:rowptr[v+1]} z[e] ⊗ h[col[e]]``; ``z`` in CSR order
    (``buckets`` is the CPU path's grouping and is not needed here)."""
    n, k, d = rowptr.numel() - 1, z.size(1), h.size(1)
    spec = spec_for("_outer_fwd_kernel", (), z.dtype, outer_fwd_shape(k, d))
    out = z.new_empty(n, k, d)
    if n == 0 or k == 0 or d == 0:
        return out.zero_()
    grid = (n, cdiv(k, _block(spec, "BLOCK_K")), cdiv(d, _block(spec, "BLOCK_D")))
    _launch(_outer_fwd_kernel, grid, (_i64(rowptr), _i64(col), z.contiguous(), h.contiguous(), out, k, d), spec)
    return out


@launch_sweep
def _sweep_outer_fwd(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    outer_fwd(idx(sizes.rows + 1), idx(sizes.edges), data(sizes.edges, sizes.k), data(sizes.rows, sizes.feats), idx(0))


def outer_bwd(
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
    """Gradients of :func:`outer_fwd` for ``G = g`` (already divided by the degree for mean)."""
    n, k, d, n_edges = rowptr.numel() - 1, z.size(1), h.size(1), col.numel()
    rowptr, col, z, h, g = _i64(rowptr), _i64(col), z.contiguous(), h.contiguous(), g.contiguous()
    grad_z = grad_h = None
    empty = n == 0 or n_edges == 0 or k == 0 or d == 0
    if need_z:
        spec = spec_for("_outer_bwd_z_kernel", (), z.dtype, outer_bwd_z_shape(k))
        grad_z = torch.zeros_like(z)
        if not empty:
            grid = (n, cdiv(k, _block(spec, "BLOCK_K")))
            _launch(_outer_bwd_z_kernel, grid, (rowptr, col, h, g, grad_z, k, d), spec)
    if need_h:
        spec = spec_for("_outer_bwd_msg_kernel", (), z.dtype, outer_bwd_msg_shape(d))
        gather = spec_for("_gather_sum_kernel", (), z.dtype, gather_shape(d))
        grad_h = torch.zeros_like(h)
        if not empty:
            msg = z.new_empty(n_edges, d)
            _launch(_outer_bwd_msg_kernel, (n, cdiv(d, _block(spec, "BLOCK_D"))), (rowptr, z, g, msg, k, d), spec)
            grid = (t_rowptr.numel() - 1, cdiv(d, _block(gather, "BLOCK_D")))
            _launch(_gather_sum_kernel, grid, (_i64(t_rowptr), _i64(t_perm), msg, grad_h, d), gather)
    return grad_z, grad_h


@launch_sweep
def _sweep_outer_bwd(sizes: SweepSizes, dtype: torch.dtype, device: str | torch.device) -> None:
    idx, data = _sweep_tensors(dtype, device)
    n, e, f, k = sizes.rows, sizes.edges, sizes.feats, sizes.k
    rowptr = idx(n + 1)
    outer_bwd(rowptr, idx(e), rowptr, idx(e), data(e, k), data(n, f), data(n, k, f), True, True, idx(0))
