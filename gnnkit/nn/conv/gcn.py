"""Graph convolution of Kipf & Welling 2017 ("Semi-Supervised Classification with Graph
Convolutional Networks", ICLR): ``H' = D^-1/2 (A + I) D^-1/2 H W``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.ops import CSR, spmm
from gnnkit.ops._checks import check_count, check_index


def add_remaining_self_loops(
    edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None, fill_value: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Adds a self-loop ``i -> i`` of weight ``fill_value`` to every node that has none; an
    existing self-loop keeps its weight (duplicates of it are merged into one).

    Returns ``(edge_index, edge_weight)`` with the non-loop edges first, in their original order,
    followed by one loop per node.
    """
    src, dst = edge_index[0], edge_index[1]
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), device=src.device)
    is_loop = src == dst
    loop_weight = torch.full((num_nodes,), fill_value, dtype=edge_weight.dtype, device=src.device)
    loop_weight[src[is_loop]] = edge_weight[is_loop]
    keep = ~is_loop
    nodes = torch.arange(num_nodes, device=src.device)
    new_index = torch.cat([edge_index[:, keep], torch.stack([nodes, nodes])], dim=1)
    return new_index, torch.cat([edge_weight[keep], loop_weight])


def gcn_norm(
    edge_index: Tensor,
    num_nodes: int,
    edge_weight: Tensor | None = None,
    add_self_loops: bool = True,
    dtype: torch.dtype = torch.float,
) -> tuple[CSR, Tensor]:
    """Symmetric normalisation ``D^-1/2 (A + I) D^-1/2`` as a CSR and its edge weights.

    The degree is the weighted in-degree (counted on the target index, as in PyG's ``gcn_norm``),
    and a node of degree 0 gets weight 0. Returns ``(csr, weight)`` with ``weight`` in ``csr``'s
    sorted order (pass ``weight_order="csr"`` to :func:`gnnkit.ops.spmm`).

    Shapes:
        edge_index ``[2, E]``, edge_weight ``[E]`` -> CSR over ``E + N`` edges, weight ``[E + N]``.
    """
    check_index("edge_index", edge_index)
    num_nodes = check_count("num_nodes", num_nodes)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
        raise ValueError(f"edge_weight must have shape [{edge_index.size(1)}], got {tuple(edge_weight.shape)}")
    edge_index = edge_index.long()
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    if add_self_loops:
        edge_index, edge_weight = add_remaining_self_loops(edge_index, num_nodes, edge_weight)
    csr = CSR.from_edge_index(edge_index, num_nodes)
    w = csr.permute(edge_weight)
    deg = torch.zeros(num_nodes, dtype=w.dtype, device=w.device).index_add_(0, csr.row, w)
    dis = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return csr, dis[csr.col] * w * dis[csr.row]


class GCNConv(nn.Module):
    """Graph convolution layer (Kipf & Welling 2017), ``x' = Â x W + b`` with
    ``Â = D^-1/2 (A + I) D^-1/2``.

    Numerically equal to ``torch_geometric.nn.GCNConv`` with the same weights (``lin.weight``,
    ``bias``): the linear map is applied first, then :func:`gnnkit.ops.spmm` aggregates.

    Args:
        in_channels: input feature size.
        out_channels: output feature size.
        cached: keep the normalised CSR of the first graph seen and reuse it (transductive
            learning on one static graph). Call :meth:`reset_cache` to drop it.
        add_self_loops: add ``I`` before normalising.
        normalize: apply the symmetric normalisation (else use ``edge_weight`` or 1 as is).
        bias: learn an additive bias.

    Shapes:
        x ``[N, in_channels]``, edge_index ``[2, E]``, edge_weight ``[E]`` -> ``[N, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cached: bool = False,
        add_self_loops: bool = True,
        normalize: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cached, self.add_self_loops, self.normalize = cached, add_self_loops, normalize
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._cache: tuple[CSR, Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(6.0 / (self.in_channels + self.out_channels))  # glorot, as PyG
        nn.init.uniform_(self.lin.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.reset_cache()

    def reset_cache(self) -> None:
        self._cache = None

    def normalized_graph(self, edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> tuple[CSR, Tensor]:
        """The (possibly cached) normalised CSR and its sorted edge weights."""
        if self.cached and self._cache is not None:
            if self._cache[0].num_dst != num_nodes:
                raise ValueError(
                    f"cached=True: the cached graph has {self._cache[0].num_dst} nodes but x has {num_nodes}; "
                    "call reset_cache() when the graph changes"
                )
            return self._cache
        if self.normalize:
            graph = gcn_norm(edge_index, num_nodes, edge_weight, self.add_self_loops)
        else:
            if self.add_self_loops:
                edge_index, edge_weight = add_remaining_self_loops(edge_index.long(), num_nodes, edge_weight)
            csr = CSR.from_edge_index(edge_index, num_nodes)
            w = csr.permute(edge_weight) if edge_weight is not None else torch.ones(csr.num_edges, device=csr.device)
            graph = (csr, w)
        if self.cached:
            self._cache = graph
        return graph

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"x must have shape [N, {self.in_channels}], got {tuple(x.shape)}")
        csr, w = self.normalized_graph(edge_index, x.size(0), edge_weight)
        # sparse node features (bag-of-words graphs are ~1 % non-zero) take a sparse product
        h = torch.sparse.mm(x, self.lin.weight.t()) if x.is_sparse else self.lin(x)
        out = spmm(csr, h, w.to(h.dtype), "sum", weight_order="csr")
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, cached={self.cached}"


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` that also takes a sparse COO ``x``: then it drops stored values only, which has
    the distribution of dense dropout (a zero stays zero) at the cost of the non-zeros."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not x.is_sparse:
        return F.dropout(x, p, training)
    if not training or p == 0.0:
        return x
    x = x.coalesce()
    return torch.sparse_coo_tensor(
        x.indices(), F.dropout(x.values(), p, True), x.shape, is_coalesced=True, check_invariants=False
    )
