"""CPU kernels in plain torch: the reference path that the Triton kernels are tested against.

The kernels declared in :data:`gnnkit.ops._library.KERNELS` (same names, same arguments),
implemented with aten ops (sparse CSR products for the reductions, batched GEMMs over degree
buckets for the outer-product aggregation). Each function is a primitive without autograd;
:mod:`gnnkit.ops._library` registers them as custom ops and builds the backward passes on them. Shapes: ``E`` edges (or scattered rows), ``N``
segments/targets, ``F`` features (all trailing dimensions flattened).

float16/bfloat16 inputs are computed in float32 (aten's sparse CPU products have no half kernels,
and a half accumulator would drift) and returned in their own dtype.

For max/min the primitives also return ``arg``: for every output element the position (in the
input rows) that produced it, ``E`` where the segment is empty. Ties go to the first position; a
segment whose values are all ``-inf`` (max) or ``+inf`` (min) also keeps ``E``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, TypeVar

import torch
from torch import Tensor

from gnnkit.ops.buckets import DegreeBuckets

_ATEN_REDUCE = {"max": "amax", "min": "amin"}
_HALF = (torch.float16, torch.bfloat16)
_EDGE_DOT_CHUNK = 1 << 23  # elements of a gathered [chunk, F] block in edge_dot
_F = TypeVar("_F", bound=Callable)


def _float32_for_half(fn: _F) -> _F:
    """Runs ``fn`` with float16/bfloat16 tensor arguments upcast to float32 and casts its tensor
    results back to the half dtype (integer results, such as ``arg``, are left alone)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        half = next((a.dtype for a in args if isinstance(a, Tensor) and a.dtype in _HALF), None)
        if half is None:
            return fn(*args, **kwargs)
        up = [a.float() if isinstance(a, Tensor) and a.dtype in _HALF else a for a in args]
        out = fn(*up, **kwargs)

        def down(t):
            return t.to(half) if isinstance(t, Tensor) and t.dtype == torch.float32 else t

        return tuple(down(t) for t in out) if isinstance(out, tuple) else down(out)

    return wrapper  # type: ignore[return-value]


def _cpu_only(t: Tensor, what: str) -> None:
    """aten's sparse reductions other than the sum (``_sparse_mm_reduce_impl``, ``sparse.mm``'s
    ``"mean"``) exist on CPU only: on CUDA these reductions run on the Triton kernels."""
    if t.device.type != "cpu":
        raise ValueError(
            f"the torch backend computes {what} with aten kernels that exist on CPU only, got a "
            f"{t.device.type} tensor; use the Triton backend on CUDA (the default, set_backend('auto'))"
        )


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
    _cpu_only(src, f"{reduce} reductions")
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


@_float32_for_half
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


@_float32_for_half
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


@_float32_for_half
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
    _cpu_only(x, f"spmm with reduce={reduce!r}")
    if reduce == "mean":
        return torch.sparse.mm(a, x, "mean"), None
    # aten only produces the argmax when autograd is recording, so ask for it explicitly.
    with torch.enable_grad():
        out, arg = torch.ops.aten._sparse_mm_reduce_impl(a, x.detach().requires_grad_(), "amax")
    return out.detach(), arg


@_float32_for_half
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


@_float32_for_half
def edge_dot(row: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``out[e] = sum_f a[row[e], f] * b[col[e], f]`` (SDDMM), in chunks of edges so that memory
    stays bounded by ``_EDGE_DOT_CHUNK`` elements instead of ``E x F``."""
    n_edges, feats = row.numel(), a.size(1)
    out = a.new_empty(n_edges)
    step = max(1, _EDGE_DOT_CHUNK // max(feats, 1))
    for start in range(0, n_edges, step):
        r, c = row[start : start + step], col[start : start + step]
        out[start : start + step] = (a.index_select(0, r) * b.index_select(0, c)).sum(1)
    return out


def _rows(t: Tensor, pos: Tensor) -> Tensor:
    """``t[pos]`` for a 2-D ``pos`` (index_select is much faster than advanced indexing on CPU)."""
    return t.index_select(0, pos.reshape(-1)).view(*pos.shape, t.size(1))


def _groups(rowptr: Tensor, buckets: Tensor | DegreeBuckets) -> DegreeBuckets:
    if isinstance(buckets, DegreeBuckets):  # the fused eager path passes them unpacked
        return buckets
    return DegreeBuckets.unpack(buckets) if buckets.numel() else DegreeBuckets.from_rowptr(rowptr)


@_float32_for_half
def outer_fwd(rowptr: Tensor, col: Tensor, z: Tensor, h: Tensor, buckets: Tensor) -> Tensor:
    """``S[v] = sum_e z[e] ⊗ h[col[e]]`` as batched GEMMs ``Z_v^T [K x deg] @ H_v [deg x d]``:
    runs of consecutive equal-degree targets (slabs) in place on views of ``z`` and ``S``, the
    other targets in degree buckets. Never builds the ``E x K x d`` outer products."""
    groups = _groups(rowptr, buckets)
    k, d = z.size(1), h.size(1)
    out = z.new_empty(groups.num_dst, k, d)
    if groups.isolated.numel():  # only targets without in-edges need zeros
        out.index_fill_(0, groups.isolated, 0.0)
    h_src = h.index_select(0, col)  # [E, d], one gather (like a message tensor) for all groups
    for n0, b, e0, deg in groups.slabs:
        e1 = e0 + b * deg
        torch.bmm(z[e0:e1].view(b, deg, k).transpose(1, 2), h_src[e0:e1].view(b, deg, d), out=out[n0 : n0 + b])
    for nodes, pos, mask in zip(groups.nodes, groups.edges, groups.mask):
        zb = _rows(z, pos)  # [B, L, K]
        if mask is not None:
            zb = zb * mask.unsqueeze(-1)
        out.index_copy_(0, nodes, torch.bmm(zb.transpose(1, 2), _rows(h_src, pos)))
    return out


@_float32_for_half
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
    """``grad_z[e] = G[v] @ h_w`` (per group ``H_v @ G_v^T``) and ``grad_h[w] = sum_e G[v]^T z_e``
    (per group ``Z_v @ G_v``, then summed over each source's out-edges through the transpose)."""
    groups = _groups(rowptr, buckets)
    # Every edge lies in exactly one slab or bucket, so grad_z and msg are fully overwritten.
    k, d, n_edges = z.size(1), h.size(1), col.numel()
    grad_z = torch.empty_like(z) if need_z else None
    msg = z.new_empty(n_edges, d) if need_h else None
    h_src = h.index_select(0, col) if need_z else None
    for n0, b, e0, deg in groups.slabs:
        gb = g[n0 : n0 + b]  # [B, K, d], a view
        e1 = e0 + b * deg
        if need_z:
            torch.bmm(h_src[e0:e1].view(b, deg, d), gb.transpose(1, 2), out=grad_z[e0:e1].view(b, deg, k))
        if need_h:
            torch.bmm(z[e0:e1].view(b, deg, k), gb, out=msg[e0:e1].view(b, deg, d))
    for nodes, pos, mask in zip(groups.nodes, groups.edges, groups.mask):
        gb = g.index_select(0, nodes)  # [B, K, d]
        flat = pos.reshape(-1) if mask is None else pos[mask]
        if need_z:
            gz = torch.bmm(_rows(h_src, pos), gb.transpose(1, 2))  # [B, L, K]
            grad_z.index_copy_(0, flat, gz.reshape(-1, k) if mask is None else gz[mask])
        if need_h:
            gh = torch.bmm(_rows(z, pos), gb)  # [B, L, d]: one d-vector per edge, like a message
            msg.index_copy_(0, flat, gh.reshape(-1, d) if mask is None else gh[mask])
    grad_h = None
    if need_h:
        if n_edges == 0:
            grad_h = torch.zeros_like(h)
        else:
            # Sum each source's out-edge messages: a sparse [num_src, E] product over the transpose.
            t = _sparse_csr(t_rowptr, t_perm, msg.new_ones(n_edges), (t_rowptr.numel() - 1, n_edges))
            grad_h = torch.sparse.mm(t, msg)
    return grad_z, grad_h


# Target nodes per block of the fused outer-product aggregation + linear map: a block's ``S``
# (``rows x K x d``) stays in the last-level cache between the GEMM that writes it and the one
# that reads it. 8 MB (256 rows at K = 128, d = 64; 1 MB L2 per core, 32 MB L3 on the 2-core AMD
# VM): on the idle VM 2, 4, 8 and 16 MB ran the MPNN benchmark step in the same time within the
# noise (449.5, 442.9, 448.5, 424.0 ms, medians of 10 interleaved runs,
# recipes/results/bench_layers_cpu.md; rerun with `recipes/bench_layers.py --block-sizes`), but
# while the host was busy 2 MB fell behind (656, 580, 531, 541 ms over 30 runs): fewer, larger
# products mean fewer fork/joins of the two threads, which a busy host stretches. Cost: two
# buffers of this size per call (peak tensor memory of the benchmark step 111 -> 123 MB).
_OUTER_BLOCK_BYTES = 1 << 23


def _outer_blocks(groups: DegreeBuckets, rows: int) -> list[tuple[int, int, list[tuple], Tensor | None]]:
    """The targets of ``groups`` in blocks of at most ``rows`` nodes (a single slab or bucket may
    be split), each ``(first_row, num_rows, pieces, nodes)``: ``pieces`` the slabs
    ``("slab", b, e0, deg)`` or one bucket slice ``("bucket", pos, mask)`` in row order; ``nodes``
    ``None`` when the block is the contiguous targets ``first_row:first_row + num_rows`` (runs of
    adjacent slabs), else the ``[num_rows]`` target nodes of a bucket slice."""
    blocks: list[tuple[int, int, list[tuple], Tensor | None]] = []
    run: list[tuple] = []
    run_n0 = run_rows = 0
    for n0, b, e0, deg in groups.slabs:
        for j in range(0, b, rows):  # a slab longer than a block is split
            bj = min(rows, b - j)
            if run and (run_n0 + run_rows != n0 + j or run_rows + bj > rows):
                blocks.append((run_n0, run_rows, run, None))
                run = []
            if not run:
                run_n0, run_rows = n0 + j, 0
            run.append(("slab", bj, e0 + j * deg, deg))
            run_rows += bj
    if run:
        blocks.append((run_n0, run_rows, run, None))
    for nodes, pos, mask in zip(groups.nodes, groups.edges, groups.mask):
        for j in range(0, nodes.numel(), rows):
            sl = slice(j, j + rows)
            blocks.append((0, nodes[sl].numel(), [("bucket", pos[sl], None if mask is None else mask[sl])], nodes[sl]))
    return blocks


def _block_rows(k: int, d: int, elsize: int) -> int:
    return max(1, _OUTER_BLOCK_BYTES // max(1, k * d * elsize))


def _outer_block_s(pieces: list[tuple], z: Tensor, h_src: Tensor, s: Tensor) -> None:
    """Writes the block's ``S`` rows (``[rows, K, d]``) into ``s``, piece after piece."""
    k, d, at = z.size(1), h_src.size(1), 0
    for piece in pieces:
        if piece[0] == "slab":
            _, b, e0, deg = piece
            e1 = e0 + b * deg
            torch.bmm(z[e0:e1].view(b, deg, k).transpose(1, 2), h_src[e0:e1].view(b, deg, d), out=s[at : at + b])
        else:
            _, pos, mask = piece
            b = pos.size(0)
            zb = _rows(z, pos)
            if mask is not None:
                zb = zb * mask.unsqueeze(-1)
            torch.bmm(zb.transpose(1, 2), _rows(h_src, pos), out=s[at : at + b])
        at += b


def outer_linear_fwd(rowptr: Tensor, col: Tensor, z: Tensor, h: Tensor, w: Tensor, buckets: DegreeBuckets) -> Tensor:
    """``out[v] = w @ vec(S[v])`` with ``S[v] = sum_e z[e] ⊗ h[col[e]]`` (``w`` ``[d', K * d]``
    in ``S``'s ``(k, i)`` order), block by block of target nodes: each block's ``S`` is written
    into one reused buffer and multiplied by ``w`` while still in the cache, so neither ``S``
    (``N x K x d``) nor anything of size ``E x K x d`` is ever stored."""
    groups = _groups(rowptr, buckets)
    k, d, d_out = z.size(1), h.size(1), w.size(0)
    out = z.new_zeros(groups.num_dst, d_out)  # targets without in-edges keep 0
    if col.numel() == 0:
        return out
    rows = _block_rows(k, d, z.element_size())
    h_src = h.index_select(0, col)  # [E, d], one gather for all blocks
    buf = z.new_empty(min(rows, groups.num_dst), k, d)
    wt = w.t()
    for n0, r, pieces, nodes in _outer_blocks(groups, rows):
        s = buf[:r]
        _outer_block_s(pieces, z, h_src, s)
        if nodes is None:
            torch.mm(s.view(r, k * d), wt, out=out[n0 : n0 + r])
        else:
            out.index_copy_(0, nodes, torch.mm(s.view(r, k * d), wt))
    return out


def outer_linear_bwd(
    rowptr: Tensor,
    col: Tensor,
    t_rowptr: Tensor,
    t_perm: Tensor,
    z: Tensor,
    h: Tensor,
    w: Tensor,
    g: Tensor,
    need_z: bool,
    need_h: bool,
    need_w: bool,
    buckets: DegreeBuckets,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Backward of :func:`outer_linear_fwd`, block by block: ``grad_w += g_B^T S_B`` (``S_B``
    recomputed into a cached buffer rather than stored by the forward), ``G_B = g_B w`` (the
    block's ``dL/dS``, also in a reused buffer), then per slab or bucket ``grad_z = H_v G_v^T``
    and the per-edge messages ``Z_v G_v``, summed by source into ``grad_h`` as in :func:`outer_bwd`."""
    groups = _groups(rowptr, buckets)
    k, d, n_edges = z.size(1), h.size(1), col.numel()
    grad_z = torch.empty_like(z) if need_z else None
    msg = z.new_empty(n_edges, d) if need_h else None
    grad_w = torch.zeros_like(w) if need_w else None
    if n_edges == 0:
        return grad_z, (torch.zeros_like(h) if need_h else None), grad_w
    rows = _block_rows(k, d, z.element_size())
    h_src = h.index_select(0, col) if (need_z or need_w) else None
    cap = min(rows, groups.num_dst)
    s_buf = z.new_empty(cap, k, d) if need_w else None
    g_buf = z.new_empty(cap, k * d) if (need_z or need_h) else None
    for n0, r, pieces, nodes in _outer_blocks(groups, rows):
        gb = g[n0 : n0 + r] if nodes is None else g.index_select(0, nodes)  # [r, d']
        if need_w:
            s = s_buf[:r]
            _outer_block_s(pieces, z, h_src, s)
            torch.addmm(grad_w, gb.t(), s.view(r, k * d), out=grad_w)  # in place, seen by flop counters
        if not (need_z or need_h):
            continue
        gs = torch.mm(gb, w, out=g_buf[:r]).view(r, k, d)  # dL/dS of the block
        at = 0
        for piece in pieces:
            if piece[0] == "slab":
                _, b, e0, deg = piece
                e1 = e0 + b * deg
                gp = gs[at : at + b]
                if need_z:
                    torch.bmm(h_src[e0:e1].view(b, deg, d), gp.transpose(1, 2), out=grad_z[e0:e1].view(b, deg, k))
                if need_h:
                    torch.bmm(z[e0:e1].view(b, deg, k), gp, out=msg[e0:e1].view(b, deg, d))
            else:
                _, pos, mask = piece
                b = pos.size(0)
                gp = gs[at : at + b]
                flat = pos.reshape(-1) if mask is None else pos[mask]
                if need_z:
                    gz = torch.bmm(_rows(h_src, pos), gp.transpose(1, 2))
                    grad_z.index_copy_(0, flat, gz.reshape(-1, k) if mask is None else gz[mask])
                if need_h:
                    gh = torch.bmm(_rows(z, pos), gp)
                    msg.index_copy_(0, flat, gh.reshape(-1, d) if mask is None else gh[mask])
            at += b
    grad_h = None
    if need_h:
        t = _sparse_csr(t_rowptr, t_perm, msg.new_ones(n_edges), (t_rowptr.numel() - 1, n_edges))
        grad_h = torch.sparse.mm(t, msg)
    return grad_z, grad_h, grad_w
