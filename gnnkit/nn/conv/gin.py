"""Graph isomorphism network layer of Xu et al. 2019 ("How Powerful are Graph Neural Networks?",
ICLR): ``h_v' = MLP((1 + eps) h_v + sum_{u -> v} h_u)``. The worked example of a layer written
on :class:`gnnkit.nn.MessagePassing`: a sum of the neighbours' states (one fused sparse product)
and an update."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing


class GINConv(MessagePassing):
    """GIN layer; equals ``torch_geometric.nn.GINConv(nn, eps, train_eps)``.

    Shapes:
        x ``[N, F]`` (or an ``(x_src, x_dst)`` pair), edge_index ``[2, E]`` -> ``[N, F']``.
    """

    def __init__(self, nn: nn.Module, eps: float = 0.0, train_eps: bool = False) -> None:
        super().__init__("sum")
        self.nn, self.initial_eps = nn, float(eps)
        eps_t = torch.tensor([float(eps)])
        if train_eps:
            self.eps = torch.nn.Parameter(eps_t)
        else:
            self.register_buffer("eps", eps_t)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        return self.spmm(x_src, graph)  # neighbours summed, no E x F tensor

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return self.nn((1 + self.eps) * x_dst + aggregated)

    def reset_parameters(self) -> None:
        reset(self.nn)  # PyG's helper: the module's own reset_parameters, else its children's
        self.eps.data.fill_(self.initial_eps)
