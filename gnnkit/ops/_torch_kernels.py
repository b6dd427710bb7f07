"""CPU kernels in plain torch: the reference path that the Triton kernels are tested against.

Each function is a forward primitive without autograd; ``gnnkit.ops`` wraps them in
``torch.autograd.Function``s. Shapes: ``E`` edges (or scattered rows), ``N`` segments/targets,
``F`` features (all trailing dimensions flattened).

For max/min the primitives also return ``arg``: for every output element the position (in the
input rows) that produced it, ``E`` where the segment is empty. Ties go to the first position.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_AMAX = {"max": "amax", "min": "amin"}


def _sparse_csr(rowptr: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta" etc.
        return torch.sparse_csr_tensor(rowptr, col, values, size=shape, check_invariants=False)


def _first_arg(src: Tensor, out: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Position of the first row of each segment that attains ``out`` (E for empty segments)."""
    n_rows = src.size(0)
    hit = src == out.index_select(0, index)
    pos = torch.arange(n_rows, device=src.device).view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    cand = torch.where(hit, pos, torch.full_like(pos, n_rows))
    arg = torch.full((num_segments, *src.shape[1:]), n_rows, dtype=torch.long, device=src.device)
    return arg.scatter_reduce_(0, index.view(-1, *([1] * (src.dim() - 1))).expand_as(src), cand, "amin")


def scatter_fwd(src: Tensor, index: Tensor, num_segments: int, reduce: str) -> tuple[Tensor, Tensor | None]:
    out = src.new_zeros((num_segments, *src.shape[1:]))
    if reduce in ("sum", "mean"):
        out.index_add_(0, index, src)
        if reduce == "mean":
            count = torch.bincount(index, minlength=num_segments).clamp_(min=1).to(src.dtype)
            out /= count.view(-1, *([1] * (src.dim() - 1)))
        return out, None
    expanded = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    out.scatter_reduce_(0, expanded, src, _AMAX[reduce], include_self=False)
    return out, _first_arg(src, out, index, num_segments)


def segment_fwd(src: Tensor, rowptr: Tensor, reduce: str) -> tuple[Tensor, Tensor | None]:
    num_segments = rowptr.numel() - 1
    counts = rowptr[1:] - rowptr[:-1]
    index = torch.repeat_interleave(torch.arange(num_segments, device=src.device), counts, output_size=src.size(0))
    return scatter_fwd(src, index, num_segments, reduce)


def spmm_fwd(
    rowptr: Tensor, col: Tensor, weight: Tensor | None, x: Tensor, reduce: str
) -> tuple[Tensor, Tensor | None]:
    """``out[v] = reduce_{e in rowptr[v]:rowptr[v+1]} weight[e] * x[col[e]]`` without an E x F tensor."""
    num_dst = rowptr.numel() - 1
    values = weight if weight is not None else x.new_ones(col.numel())
    a = _sparse_csr(rowptr, col, values.to(x.dtype), (num_dst, x.size(0)))
    if col.numel() == 0:
        return x.new_zeros(num_dst, x.size(1)), (
            torch.zeros(num_dst, x.size(1), dtype=torch.long, device=x.device) if reduce == "max" else None
        )
    if reduce == "sum":
        return torch.sparse.mm(a, x), None
    if reduce == "mean":
        return torch.sparse.mm(a, x, "mean"), None
    # aten only produces the argmax when autograd is recording, so ask for it explicitly.
    with torch.enable_grad():
        out, arg = torch.ops.aten._sparse_mm_reduce_impl(a, x.detach().requires_grad_(), "max")
    return out.detach(), arg


def spmm_max_bwd(
    t_rowptr: Tensor,
    t_col: Tensor,
    t_perm: Tensor,
    row: Tensor,
    col: Tensor,
    weight: Tensor | None,
    x: Tensor,
    arg: Tensor,
    grad_out: Tensor,
    need_x: bool,
    need_w: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Backward of ``spmm_fwd(..., "max")``: the gradient of each output element goes to the edge
    ``arg`` that won it (nowhere for ``arg == E``). ``t_*`` (the transpose) is unused here but
    part of the signature: the Triton kernel gathers over it instead of accumulating."""
    n_edges, feats = col.numel(), x.size(1)
    valid = arg < n_edges
    edge = arg[valid]
    feat = torch.arange(feats, device=x.device).expand_as(arg)[valid]
    g = grad_out[valid]
    src = col.index_select(0, edge)
    grad_x = grad_w = None
    if need_x:
        w = weight.index_select(0, edge) if weight is not None else 1.0
        grad_x = torch.zeros_like(x).index_put_((src, feat), g * w, accumulate=True)
    if need_w and weight is not None:
        grad_w = weight.new_zeros(n_edges).index_put_((edge,), g * x[src, feat], accumulate=True)
    return grad_x, grad_w


def edge_dot(row: Tensor, col: Tensor, a: Tensor, b: Tensor, chunk_elems: int = 1 << 23) -> Tensor:
    """``out[e] = sum_f a[row[e], f] * b[col[e], f]`` (SDDMM), in chunks of edges so that memory
    stays bounded by ``chunk_elems`` elements instead of ``E x F``."""
    n_edges, feats = row.numel(), a.size(1)
    out = a.new_empty(n_edges)
    step = max(1, chunk_elems // max(feats, 1))
    for start in range(0, n_edges, step):
        r, c = row[start : start + step], col[start : start + step]
        out[start : start + step] = (a.index_select(0, r) * b.index_select(0, c)).sum(1)
    return out
