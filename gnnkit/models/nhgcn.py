"""Neighborhood Homophily-based Graph Convolutional Network (Gong et al., CIKM 2023,
"Neighborhood Homophily-based Graph Convolutional Network"; reference code rockcor/NHGCN).

Nodes are split by their neighbourhood homophily (:func:`gnnkit.ops.neighbourhood_homophily`)
into a high-NH and a low-NH group. Two 2-layer GCN channels aggregate over the edges whose
*source* is high (``Â_L``) and whose source is low (``Â_H``):
``x_c = Â_c dropout(ReLU(Â_c X W1_c)) W2_c``. With ``λ = softmax`` of three learned scalars,
``out = Linear(final_dropout(ReLU(λ_0 x_ego + λ_1 x_L + λ_2 x_H)))``.

Where gnnkit follows the reference code rather than the paper:

* ``Â_c`` keeps the edges by their source, adds a weight-1 self-loop to every node
  (``add_self_loops``; the reference's ``--addself``) and is normalised symmetrically with
  in-degrees, so a node with no kept in-edge still sees itself;
* the ego branch: the reference computes ``X W_X`` and then overwrites it with
  ``dropout(x_H)`` (``x = self.act(xh); x = self.dropout(xh)``), so its published numbers use
  ``x_ego = dropout(x_H)`` and ``W_X`` never trains. ``ego="reference"`` (default) does exactly
  that (without allocating the unused ``W_X``); ``ego="linear"`` uses ``dropout(ReLU(X W_X))``,
  the branch the code appears to intend;
* weights ``W`` are Xavier-uniform with the ReLU gain, the λ start at 0, there is no dropout on
  the input features and no bias in the channels (as in the reference).

The NH re-estimation schedule is an ``on_improve`` hook of ``gnnkit.train.train_node_classifier``
(wired up in ``recipes/node_classification.py``): the high/low mask starts all-high and is
recomputed from the predictions each time validation accuracy improves, after which
:meth:`NHGCN.channel_graphs` rebuilds both adjacencies.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn import gcn_norm
from gnnkit.ops import CSR, spmm

Graph = tuple[CSR, Tensor]


def _xavier_relu(*shape: int) -> nn.Parameter:
    w = torch.empty(*shape)
    nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("relu"))
    return nn.Parameter(w)


class NHGCN(nn.Module):
    """NHGCN node classifier; returns logits.

    Args:
        in_channels: node feature size.
        out_channels: number of classes.
        hidden: hidden size of both channels (reference: 512).
        dropout: dropout after the first layer of each channel (and on the reference ego branch).
        final_dropout: dropout before the output layer (``--finaldp``).
        ego: ``"reference"`` or ``"linear"`` (see the module docstring).

    Shapes:
        x ``[N, in_channels]`` (dense or sparse COO), two normalised graphs -> ``[N, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 512,
        dropout: float = 0.8,
        final_dropout: float = 0.0,
        ego: Literal["reference", "linear"] = "reference",
    ) -> None:
        super().__init__()
        for name, p in (("dropout", dropout), ("final_dropout", final_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if ego not in ("reference", "linear"):
            raise ValueError(f"ego must be 'reference' or 'linear', got {ego!r}")
        self.dropout, self.final_dropout, self.ego = dropout, final_dropout, ego
        self.w1_l, self.w1_h = _xavier_relu(in_channels, hidden), _xavier_relu(in_channels, hidden)
        self.w2_l, self.w2_h = _xavier_relu(hidden, hidden), _xavier_relu(hidden, hidden)
        self.w_x = _xavier_relu(in_channels, hidden) if ego == "linear" else None
        self.lam = nn.Parameter(torch.zeros(3))
        self.lin = nn.Linear(hidden, out_channels)

    @staticmethod
    def channel_graphs(edge_index: Tensor, num_nodes: int, high: Tensor, add_self_loops: bool = True) -> tuple[Graph, Graph]:
        """``(Â_L, Â_H)``: the normalised graphs over the edges whose source is high / low.

        Args:
            edge_index: ``[2, E]`` edges.
            num_nodes: number of nodes.
            high: ``[N]`` bool, ``True`` for high-NH nodes.
            add_self_loops: give every node a weight-1 self-loop (else drop all self-loops).
        """
        if high.shape != (num_nodes,) or high.dtype != torch.bool:
            raise ValueError(f"high must be a bool tensor of shape [{num_nodes}], got {high.dtype} {tuple(high.shape)}")
        no_loop = edge_index[:, edge_index[0] != edge_index[1]]
        graphs = []
        for keep in (high, ~high):
            ei = no_loop[:, keep[no_loop[0]]]
            graphs.append(gcn_norm(ei, num_nodes, add_self_loops=add_self_loops))
        return graphs[0], graphs[1]

    def _channel(self, xw1: Tensor, w2: Tensor, graph: Graph) -> Tensor:
        csr, w = graph
        h = F.relu(spmm(csr, xw1, w.to(xw1.dtype), "sum", weight_order="csr"))
        h = F.dropout(h, self.dropout, self.training)
        return spmm(csr, h, w.to(h.dtype), "sum", weight_order="csr") @ w2

    def forward(self, x: Tensor, graph_l: Graph, graph_h: Graph) -> Tensor:
        mm = torch.sparse.mm if x.is_sparse else torch.mm
        x_l = self._channel(mm(x, self.w1_l), self.w2_l, graph_l)
        x_h = self._channel(mm(x, self.w1_h), self.w2_h, graph_h)
        if self.w_x is None:
            x_ego = F.dropout(x_h, self.dropout, self.training)
        else:
            x_ego = F.dropout(F.relu(mm(x, self.w_x)), self.dropout, self.training)
        lam = torch.softmax(self.lam, dim=0)
        out = F.relu(lam[0] * x_ego + lam[1] * x_l + lam[2] * x_h)
        return self.lin(F.dropout(out, self.final_dropout, self.training))

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, final_dropout={self.final_dropout}, ego={self.ego!r}"


def build_nhgcn(in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> NHGCN:
    """``build_model("nhgcn", ...)``: see :class:`NHGCN`."""
    return NHGCN(in_channels, out_channels, **config)


__all__ = ["NHGCN", "build_nhgcn"]
