"""CPU kernels in plain torch: the reference path that the Triton kernels are tested against.

Each function is a forward primitive without autograd; ``gnnkit.ops`` wraps them in
``torch.autograd.Function``s. Shapes: ``E`` edges (or scattered rows), ``N`` segments/targets,
``F`` features (all trailing dimensions flattened).

For max/min the primitives also return ``arg``: for every output element the position (in the
input rows) that produced it, ``E`` where the segment is empty. Ties go to the first position; a
segment whose values are all ``-inf`` (max) or ``+inf`` (min) also keeps ``E``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_ATEN_REDUCE = {"max": "amax", "min": "amin"}


def _sparse_csr(rowptr: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta" etc.
        return torch.sparse_csr_tensor(rowptr, col, values, size=shape, check_invariants=False)


def _flat(src: Tensor) -> Tensor:
    feats = 1
    for d in src.shape[1:]:
        feats *= d
    return src.reshape(src.size(0), feats)


def _csr_extreme(rowptr: Tensor, col: Tensor, src: Tensor, reduce: str) -> tuple[Tensor, Tensor]:
    """Max/min over CSR rows of ``src[col[e]]`` with the position ``e`` that attains it (strictly
    better values only, so ties keep the first position and an empty row keeps ``E``)."""
    num_rows, n_edges, feats = rowptr.numel() - 1, col.numel(), src.size(1)
    if num_rows == 0 or n_edges == 0 or feats == 0:
        return src.new_zeros(num_rows, feats), torch.full((num_rows, feats), n_edges, dtype=torch.long, device=src.device)
    a = _sparse_csr(rowptr, col, src.new_ones(n_edges), (num_rows, src.size(0)))
    # aten only produces the argmax when autograd is recording, so ask for it explicitly.
    with torch.enable_grad():
        out, arg = torch.ops.aten._sparse_mm_reduce_impl(a, src.detach().requires_grad_(), _ATEN_REDUCE[reduce])
    return out.detach(), arg


def _offsets(sorted_index: Tensor, num_segments: int) -> Tensor:
    rowptr = torch.zeros(num_segments + 1, dtype=torch.long, device=sorted_index.device)
    torch.cumsum(torch.bincount(sorted_index, minlength=num_segments), 0, out=rowptr[1:])
    return rowptr


def scatter_fwd(src: Tensor, index: Tensor, num_segments: int, reduce: str) -> tuple[Tensor, Tensor | None]:
    out = src.new_zeros((num_segments, *src.shape[1:]))
    if reduce in ("sum", "mean"):
        out.index_add_(0, index, src)
        if reduce == "mean":
            count = torch.bincount(index, minlength=num_segments).clamp_(min=1).to(src.dtype)
            out /= count.view(-1, *([1] * (src.dim() - 1)))
        return out, None
    # Max/min: a stable sort turns the scatter into a CSR reduction through the permutation
    # (aten's sparse-mm reduce returns the arg in the same pass; ties stay in input order).
    sorted_index, perm = torch.sort(index, stable=True)
    out, arg = _csr_extreme(_offsets(sorted_index, num_segments), perm, _flat(src), reduce)
    # arg is a sorted position (or E): map it back to the row of src.
    arg = torch.cat([perm, perm.new_full((1,), src.size(0))]).index_select(0, arg.view(-1))
    shape = (num_segments, *src.shape[1:])
    return out.view(shape), arg.view(shape)


def segment_fwd(src: Tensor, rowptr: Tensor, reduce: str) -> tuple[Tensor, Tensor | None]:
    num_segments, n_rows = rowptr.numel() - 1, src.size(0)
    shape = (num_segments, *src.shape[1:])
    if reduce in ("max", "min"):
        identity = torch.arange(n_rows, device=src.device)
        out, arg = _csr_extreme(rowptr, identity, _flat(src), reduce)
        return out.view(shape), arg.view(shape)
    counts = rowptr[1:] - rowptr[:-1]
    index = torch.repeat_interleave(torch.arange(num_segments, device=src.device), counts, output_size=n_rows)
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
        out, arg = torch.ops.aten._sparse_mm_reduce_impl(a, x.detach().requires_grad_(), "amax")
    return out.detach(), arg


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
    """Backward of ``spmm_fwd(..., "max")``: the gradient of each output element goes to the edge
    ``arg`` that won it (nowhere for ``arg == E``). ``row`` and ``t_*`` (the transpose) are unused
    here but part of the signature: the Triton kernels gather over them instead of accumulating.

    Narrow features use flat ``index_add_``s (spare slot for ``arg == E``, no masking), wide ones
    aten's sparse-mm-reduce backward, whichever is faster on CPU at that width; both are
    sequential per output element, hence deterministic.
    """
    n_edges, feats = col.numel(), x.size(1)
    if n_edges == 0 or feats == 0:
        return (torch.zeros_like(x) if need_x else None), (
            torch.zeros_like(weight) if need_w and weight is not None else None
        )
    need_w = need_w and weight is not None
    if feats >= 64:
        values = weight if weight is not None else x.new_ones(n_edges)
        a = _sparse_csr(rowptr, col, values, (arg.size(0), x.size(0)))
        grad_a, grad_x = torch.ops.aten._sparse_mm_reduce_impl_backward(
            a, grad_out, x, "amax", arg, [need_w, need_x]
        )
        return (grad_x if need_x else None), (grad_a.values() if need_w else None)
    flat_arg = arg.reshape(-1)
    src = torch.cat([col, col.new_full((1,), x.size(0))]).index_select(0, flat_arg)
    slot = src.view_as(arg) * feats + torch.arange(feats, device=x.device)  # x.size(0)*F+f: spare
    grad_x = grad_w = None
    if need_x:
        g = grad_out
        if weight is not None:
            g = g * torch.cat([weight, weight.new_zeros(1)]).index_select(0, flat_arg).view_as(arg)
        grad_x = x.new_zeros((x.size(0) + 1) * feats).index_add_(0, slot.view(-1), g.reshape(-1))
        grad_x = grad_x[: x.size(0) * feats].view_as(x)
    if need_w:
        x_won = torch.cat([x.reshape(-1), x.new_zeros(feats)]).index_select(0, slot.view(-1))
        grad_w = weight.new_zeros(n_edges + 1).index_add_(0, flat_arg, grad_out.reshape(-1) * x_won)[:n_edges]
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
