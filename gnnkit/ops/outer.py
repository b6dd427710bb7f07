"""Outer-product aggregation for Gilmer's edge network message, without per-edge matrices.

The edge network message of Gilmer et al. 2017 is ``A(e_vw) h_w`` with ``A(e)`` an MLP of the edge
features reshaped to ``d x d``. When the MLP's last layer is linear, ``A(e) = W2 z_e + b2`` with
``z_e`` the hidden activation (``K`` values), and the aggregated message needs only

    S_v = sum_{w -> v} z_vw ⊗ h_w        (a ``K x d`` matrix per target node)

followed by one dense ``(K * d) -> d'`` product per node (see
:class:`gnnkit.nn.EdgeNetworkConv`). :func:`outer_aggregate` computes ``S`` as a segmented product
per target node: on CPU, targets of equal in-degree form batched GEMMs ``Z_v^T [K x deg] @ H_v
[deg x d]`` (runs of consecutive equal-degree targets, such as the atoms of one molecule in a batch
of complete graphs, in place on views of ``z`` and ``S``; the rest in degree buckets, see
:class:`gnnkit.ops.DegreeBuckets`); on CUDA a Triton kernel computes one ``K x d`` tile per program
(both behind the ``gnnkit::outer`` op). Neither path builds the ``E x K x d`` outer
products, and the backward stores no per-edge ``K x d`` blocks either::

    grad_z[e] = G[v] @ h_w            (per target bucket: H_v @ G_v^T)
    grad_h[w] += G[v]^T z_e           (per target bucket: Z_v @ G_v, then summed by source)

with ``G = dL/dS``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gnnkit.ops import _library  # registers the torch.ops.gnnkit ops; _library.call runs them
from gnnkit.ops._backend import uses_triton
from gnnkit.ops._checks import check_float, check_same_device
from gnnkit.ops.buckets import DegreeBuckets
from gnnkit.ops.csr import CSR

OuterReduce = Literal["sum", "mean"]


def outer_aggregate(
    csr: CSR,
    z: Tensor,
    h: Tensor,
    reduce: OuterReduce = "sum",
    z_order: Literal["edge_index", "csr"] = "edge_index",
    buckets: DegreeBuckets | None = None,
) -> Tensor:
    """Segmented outer-product aggregation ``S[v] = reduce_{e = (w -> v)} z[e] ⊗ h[w]``.

    Args:
        csr: graph built by :meth:`CSR.from_edge_index`.
        z: ``[E, K]`` per-edge vectors (the edge MLP's hidden activation), differentiable.
        h: ``[num_src, d]`` source node features, differentiable.
        reduce: ``"sum"`` or ``"mean"`` (divides by the in-degree). Targets without in-edges give 0.
        z_order: ``"edge_index"`` if ``z`` follows the original ``edge_index`` order, ``"csr"`` if
            it is already in ``csr``'s sorted order (cheaper when reused across steps).
        buckets: precomputed :class:`DegreeBuckets` of ``csr`` for the CPU path (built inside the
            kernel if ``None``; ignored by the Triton path).

    Shapes:
        z ``[E, K]``, h ``[num_src, d]`` -> out ``[num_dst, K, d]``.

    Cost:
        ``2 E K d`` flops forward and ``4 E K d`` backward; memory ``num_dst * K * d`` for the
        output, plus ``E * (K + d)`` gathered rows per call on CPU. Nothing of size ``E * K * d``.
    """
    if not isinstance(csr, CSR):
        raise TypeError(f"csr must be a gnnkit.ops.CSR, got {type(csr).__name__}")
    check_float("z", z, min_dim=2)
    check_float("h", h, min_dim=2)
    if z.dim() != 2 or z.size(0) != csr.num_edges:
        raise ValueError(f"z must have shape [E, K] with E = {csr.num_edges}, got {tuple(z.shape)}")
    if h.dim() != 2 or h.size(0) != csr.num_src:
        raise ValueError(f"h must have shape [num_src, d] with num_src = {csr.num_src}, got {tuple(h.shape)}")
    if z.dtype != h.dtype:
        raise TypeError(f"z dtype {z.dtype} does not match h dtype {h.dtype}")
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if z_order not in ("edge_index", "csr"):
        raise ValueError(f"z_order must be 'edge_index' or 'csr', got {z_order!r}")
    if buckets is not None:
        if not isinstance(buckets, DegreeBuckets):
            raise TypeError(f"buckets must be a DegreeBuckets, got {type(buckets).__name__}")
        if buckets.num_edges != csr.num_edges or buckets.num_dst != csr.num_dst:
            raise ValueError("buckets were built for a different graph than csr")
    check_same_device(z=z, h=h, csr=csr.col)
    if z_order == "edge_index":
        z = csr.permute(z)
    if reduce == "mean":
        # Scale the K-vectors of the edges (E x K work) rather than S (N x K x d).
        inv_deg = 1.0 / csr.degree(z.dtype).clamp(min=1)
        z = z * inv_deg.index_select(0, csr.row).unsqueeze(1)
    return outer_aggregate_unchecked(csr, z, h, buckets)


def outer_aggregate_flops(num_edges: int, hidden: int, channels: int, backward: bool = False) -> int:
    """The cost model of :func:`outer_aggregate` in floating-point operations (a multiply-add is 2):
    ``2 E K d`` forward; the backward adds ``2 E K d`` for ``grad_z`` and ``2 E K d`` for
    ``grad_h`` (both inputs differentiable). Per-edge scaling (``reduce="mean"``) and the gathers
    are not counted: they move memory and do no multiply-adds of this size."""
    forward = 2 * num_edges * hidden * channels
    return 3 * forward if backward else forward


def outer_aggregate_unchecked(csr: CSR, z_sorted: Tensor, h: Tensor, buckets: DegreeBuckets | None = None) -> Tensor:
    """Sum-reduced :func:`outer_aggregate` without argument checks, ``z`` in ``csr``'s order."""
    if buckets is not None and not uses_triton(z_sorted):
        packed = buckets.packed
    else:
        packed = csr.rowptr.new_empty(0)  # the CPU kernel then groups the targets itself
    return _library.call("outer", csr.rowptr, csr.col, z_sorted.contiguous(), h.contiguous(), packed, csr.t_rowptr, csr.t_perm)


def cpu_buckets(csr: CSR) -> DegreeBuckets | None:
    """The :class:`DegreeBuckets` that :func:`outer_aggregate_unchecked`'s CPU kernel reads
    (built on the host: call it where the graph is prepared, not while compiling), or ``None``
    where the Triton kernel runs, which groups the targets itself."""
    if uses_triton(csr.col):
        return None
    return DegreeBuckets.from_csr(csr)
