"""Sparse-dense matrix product over a :class:`CSR`: gather source rows, reduce into targets.

``out[v] = reduce_{(u -> v)} w_uv * x[u]`` in one pass, never materialising the ``E x F`` tensor
of per-edge messages that ``scatter(x[src] * w, dst)`` builds.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gnnkit.ops import _library  # registers the torch.ops.gnnkit ops; _library.call runs them
from gnnkit.ops._checks import SPMM_REDUCTIONS, check_float, check_reduce, check_same_device
from gnnkit.ops.csr import CSR


def spmm_unchecked(csr: CSR, x: Tensor, edge_weight: Tensor | None = None, reduce: str = "sum") -> Tensor:
    """:func:`spmm` without argument checks, for ``edge_weight`` already in ``csr``'s sorted order."""
    return _library.call(
        "spmm",
        csr.rowptr, csr.col, edge_weight, x.contiguous(), reduce, csr.row, csr.t_rowptr, csr.t_col, csr.t_perm
    )[0]


def spmm(
    csr: CSR,
    x: Tensor,
    edge_weight: Tensor | None = None,
    reduce: Literal["sum", "mean", "max"] = "sum",
    weight_order: Literal["edge_index", "csr"] = "edge_index",
) -> Tensor:
    """Aggregates source features into targets: ``out[v] = reduce_u w_uv x[u]``.

    Args:
        csr: graph built by :meth:`CSR.from_edge_index`.
        x: ``[num_src, F]`` source node features.
        edge_weight: optional ``[E]`` weight per edge (differentiable).
        reduce: ``"sum"``, ``"mean"`` (divides by the in-degree) or ``"max"``. Empty rows give 0.
        weight_order: ``"edge_index"`` if ``edge_weight`` follows the original ``edge_index``
            order (the default, as in PyG), ``"csr"`` if it is already in ``csr``'s sorted order.

    Shapes:
        x ``[num_src, F]``, edge_weight ``[E]`` -> out ``[num_dst, F]``.

    Cost:
        Per edge: one index (8 B), one weight (4 B) and a gathered row of ``F`` values
        (``4F`` B, mostly from cache for repeated sources); per target: ``4F`` B written.
        ``2F`` flops per edge. Backward for ``x`` is the same product over the transpose.
    """
    if not isinstance(csr, CSR):
        raise TypeError(f"csr must be a gnnkit.ops.CSR, got {type(csr).__name__}")
    check_float("x", x, min_dim=2)
    check_reduce(reduce, SPMM_REDUCTIONS)
    if x.dim() != 2:
        raise ValueError(f"x must have shape [num_nodes, F], got {tuple(x.shape)}")
    if x.size(0) != csr.num_src:
        raise ValueError(f"x has {x.size(0)} rows but the graph has num_src={csr.num_src} nodes")
    if weight_order not in ("edge_index", "csr"):
        raise ValueError(f"weight_order must be 'edge_index' or 'csr', got {weight_order!r}")
    check_same_device(x=x, csr=csr.col, edge_weight=edge_weight)
    if edge_weight is not None:
        check_float("edge_weight", edge_weight)
        if edge_weight.dim() != 1 or edge_weight.size(0) != csr.num_edges:
            raise ValueError(
                f"edge_weight must have shape [E] = [{csr.num_edges}], got {tuple(edge_weight.shape)}"
            )
        if edge_weight.dtype != x.dtype:
            raise TypeError(f"edge_weight dtype {edge_weight.dtype} does not match x dtype {x.dtype}")
        # The value checks happened when the CSR was built; nothing here reads a tensor value.
        if weight_order == "edge_index":
            edge_weight = edge_weight.index_select(0, csr.perm)
    return spmm_unchecked(csr, x, edge_weight, reduce)
