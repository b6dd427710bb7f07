"""Triton kernels of :func:`gnnkit.ops.outer_aggregate` (CUDA; also run under ``TRITON_INTERPRET=1``).

Forward, one program per target node ``v`` and ``BLOCK_K x BLOCK_D`` tile of ``S[v]``: loop over
the node's in-edges ``rowptr[v]:rowptr[v+1]`` in chunks of ``BLOCK_E``, load ``Z`` rows (``BLOCK_E x
BLOCK_K``, contiguous: edges are in CSR order) and gathered ``h[col[e]]`` rows (``BLOCK_E x
BLOCK_D``) and accumulate ``Z^T H`` with ``tl.dot`` in registers. Each tile is written once: no
atomics, deterministic, and no ``E x K x d`` intermediate.

Backward, with ``G = dL/dS``:

* ``grad_z[e] = G[v] @ h[col[e]]``: one program per target and ``BLOCK_K`` slice, ``H @ G_v^T``
  per edge chunk; every row of ``grad_z`` is written by exactly one program.
* ``grad_h``: per target, ``M[e] = z[e] @ G[v]`` (``Z @ G_v``, one ``d``-vector per edge, like a
  message), then a segmented sum of ``M`` over each source's out-edges through the CSR transpose
  (:func:`_gather_sum_kernel`), again without atomics.

Cost model (``s`` bytes per value, ``deg`` in-degree): forward reads ``s*K`` B of ``z`` and
``s*d`` B of ``h`` (+8 B of ``col``) per edge and writes ``s*K*d`` B per node; ``2 K d`` flops
per edge. Backward: ``grad_z`` reads ``s*d`` B per edge and ``s*K*d`` per node, writes ``s*K``
per edge, ``2 K d`` flops per edge; ``grad_h`` reads ``s*K`` per edge and ``s*K*d`` per node,
writes and rereads ``s*d`` per edge (``M``), ``2 K d`` flops per edge. Tiles of ``S``/``G`` are
reread once per ``BLOCK_K``/``BLOCK_D`` slice of the other dimension (from L2).

float16/bfloat16 accumulate in float32; float64 in float64. float32 products use IEEE precision
(no TF32) so that results match the torch path to float32 rounding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


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


def _acc(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def _block(n: int) -> int:
    # tl.dot needs every tile dimension >= 16.
    return max(16, min(64, triton.next_power_of_2(max(n, 1))))


_BLOCK_E = 16


def outer_fwd(rowptr: Tensor, col: Tensor, z: Tensor, h: Tensor) -> Tensor:
    """``S[v] = sum_{e in rowptr[v]:rowptr[v+1]} z[e] ⊗ h[col[e]]``; ``z`` in CSR order."""
    n, k, d = rowptr.numel() - 1, z.size(1), h.size(1)
    out = z.new_empty(n, k, d)
    if n == 0 or k == 0 or d == 0:
        return out.zero_()
    bk, bd = _block(k), _block(d)
    grid = (n, triton.cdiv(k, bk), triton.cdiv(d, bd))
    _outer_fwd_kernel[grid](rowptr, col, z, h, out, k, d, ACC=_acc(z.dtype), BLOCK_E=_BLOCK_E, BLOCK_K=bk, BLOCK_D=bd)
    return out


def outer_bwd(csr, z: Tensor, h: Tensor, g: Tensor, need_z: bool, need_h: bool) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`outer_fwd` for ``G = g`` (already divided by the degree for mean)."""
    n, k, d = csr.num_dst, z.size(1), h.size(1)
    bk, bd, acc = _block(k), _block(d), _acc(z.dtype)
    grad_z = grad_h = None
    empty = n == 0 or csr.num_edges == 0 or k == 0 or d == 0
    if need_z:
        grad_z = torch.zeros_like(z)
        if not empty:
            _outer_bwd_z_kernel[(n, triton.cdiv(k, bk))](
                csr.rowptr, csr.col, h, g, grad_z, k, d, ACC=acc, BLOCK_E=_BLOCK_E, BLOCK_K=bk, BLOCK_D=bd
            )
    if need_h:
        grad_h = torch.zeros_like(h)
        if not empty:
            msg = z.new_empty(csr.num_edges, d)
            _outer_bwd_msg_kernel[(n, triton.cdiv(d, bd))](
                csr.rowptr, z, g, msg, k, d, ACC=acc, BLOCK_E=_BLOCK_E, BLOCK_K=bk, BLOCK_D=bd
            )
            _gather_sum_kernel[(csr.num_src, triton.cdiv(d, bd))](
                csr.t_rowptr, csr.t_perm, msg, grad_h, d, ACC=acc, BLOCK_E=_BLOCK_E, BLOCK_D=bd
            )
    return grad_z, grad_h
