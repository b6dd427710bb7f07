"""Graph isomorphism network layer of Xu et al. 2019 ("How Powerful are Graph Neural Networks?",
ICLR): ``h_v' = MLP((1 + eps) h_v + sum_{u -> v} h_u)``. The worked example of a layer written
on :class:`gnnkit.nn.MessagePassing`: a sum of the neighbours' states (one fused sparse product)
and an update."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing, canonical_aggr


class GINConv(MessagePassing):
    """GIN layer: ``torch_geometric.nn.GINConv``'s parameters, call forms and results (same
    weights: the same ``nn`` module and ``eps``).

    Args:
        nn: the MLP applied to ``(1 + eps) h_v + sum_u h_u``.
        eps: initial ``eps``.
        train_eps: learn ``eps`` (else it is a buffer).
        **kwargs: PyG's base options: ``aggr`` (``"add"``, ``"sum"``, ``"mean"`` or ``"max"``),
            ``flow``; ``node_dim=-2``, ``decomposed_layers=1`` (other values are refused).

    Call as PyG's: ``conv(x, edge_index, size=None)`` (``size`` also third positionally), with a
    sparse ``adj_t``, an ``(x_src, x_dst)`` pair or an ``(x_src, None)`` pair (no ``(1 + eps) h_v``
    term then; give ``size``), or a static-graph batch ``x [B, N, F]``. It takes no per-edge input
    (PyG's ``GINEConv`` does); ``edge_attr`` or ``edge_weight`` raise ``TypeError``.

    Shapes:
        x ``[N, F]`` (or a pair, or ``[B, N, F]``), edge_index ``[2, E]`` -> ``[N, F']``.
    """

    edge_input = None
    static_graph = True

    def __init__(self, nn: nn.Module, eps: float = 0.0, train_eps: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        canonical_aggr(self.aggr, ("sum", "mean", "max"), "GINConv")  # the reductions of spmm
        self.nn, self.initial_eps = nn, float(eps)
        eps_t = torch.tensor([float(eps)])
        if train_eps:
            self.eps = torch.nn.Parameter(eps_t)
        else:
            self.register_buffer("eps", eps_t)

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        for which, t in (("x", x_src), ("x_dst", x_dst)):
            if t is not None and (t.dim() != 2 or t.is_sparse):
                raise ValueError(f"{which} must be a dense [N, F] tensor (or [B, N, F] for a static graph), got {tuple(t.shape)}")
        if x_dst is not None and x_dst.size(1) != x_src.size(1):
            raise ValueError(f"x_src and x_dst must have the same width, got {x_src.size(1)} and {x_dst.size(1)}")

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor | None, edge: Tensor | None, graph: Graph) -> Tensor:
        # neighbours reduced in one fused sparse product (the base's, explainer mask included), no E x F tensor
        return self.spmm(x_src, graph, reduce=self.aggr)

    def update(self, x_dst: Tensor | None, aggregated: Tensor) -> Tensor:
        if x_dst is None:  # an (x_src, None) pair: no root term, as in PyG
            return self.nn(aggregated)
        return self.nn((1 + self.eps) * x_dst + aggregated)

    def reset_parameters(self) -> None:
        reset(self.nn)  # PyG's helper: the module's own reset_parameters, else its children's
        self.eps.data.fill_(self.initial_eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nn={self.nn})"
