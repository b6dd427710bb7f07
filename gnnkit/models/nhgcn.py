"""Neighborhood Homophily-based Graph Convolutional Network (Gong et al., CIKM 2023,
"Neighborhood Homophily-based Graph Convolutional Network"; reference code rockcor/NHGCN).

Nodes are split by their neighbourhood homophily (:func:`gnnkit.ops.neighbourhood_homophily`)
into a high-NH and a low-NH group. Two 2-layer GCN channels (:class:`gnnkit.nn.NHConv`, over the
operators of :func:`gnnkit.nn.homophily_channels`) aggregate over the edges whose *source* is
high (``Â_L``) and whose source is low (``Â_H``):
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

The model reads the node split from ``data.nh_high`` (all high when absent, the reference's
start). The NH re-estimation schedule is :class:`HomophilySplit`, called from an ``on_improve``
hook of ``gnnkit.train.train_node_classifier`` (wired up in ``recipes/node_classification.py``):
each time validation accuracy improves it recomputes the split from the predictions, and
:meth:`NHGCN.with_split` re-weights both channels of the prepared graph (no rebuild).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.models._base import GraphModel
from gnnkit.nn import Graph, NHConv, homophily_channels
from gnnkit.ops import khop_neighbourhood, neighbourhood_homophily


def _xavier_relu(*shape: int) -> nn.Parameter:
    w = torch.empty(*shape)
    nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("relu"))
    return nn.Parameter(w)


class HomophilySplit:
    """NHGCN's node split by neighbourhood homophily, recomputed from predictions.

    ``split(logits, y, train_mask)`` labels every node (true labels on training nodes, the argmax
    prediction elsewhere), computes ``NH_i = max_c |{u in N_k(i) : label_u = c}| / |N_k(i)|`` and
    returns ``high = 1 / NH <= threshold``.

    Args:
        edge_index: ``[2, E]`` edges of the graph.
        num_nodes: number of nodes.
        hops: ``k`` of the neighbourhood (``--hops``).
        include_self: count a node in its own neighbourhood (``--includeself``).
        threshold: the reference's threshold on ``1 / NH``.
        variant: ``"reference_code"`` reproduces two quirks of rockcor/NHGCN's estimate (the
            lowest-id member of ``N_k(i)`` is dropped instead of ``i``, see
            :func:`gnnkit.ops.khop_neighbourhood`; a training node counts with both its true label
            and its prediction); ``"as_described"`` is the paper's rule.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        hops: int,
        include_self: bool,
        threshold: float,
        variant: Literal["reference_code", "as_described"] = "reference_code",
    ) -> None:
        if variant not in ("reference_code", "as_described"):
            raise ValueError(f"variant must be 'reference_code' or 'as_described', got {variant!r}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.num_nodes, self.threshold, self.reference = num_nodes, float(threshold), variant == "reference_code"
        self.neighbourhood = khop_neighbourhood(
            edge_index, num_nodes, hops, include_self, drop_lowest_id=self.reference and not include_self
        )

    def __call__(self, logits: Tensor, y: Tensor, train_mask: Tensor) -> Tensor:
        pred = logits.argmax(1)
        if self.reference:
            # the reference's one-hot broadcasts [N, 1] * [N] to [N, N] and so marks a training
            # node with both its true label and its prediction
            labels = F.one_hot(pred, logits.size(1)).float()
            labels[train_mask, y[train_mask]] = 1.0
        else:
            labels = torch.where(train_mask, y, pred)
        nh = neighbourhood_homophily(self.neighbourhood, labels, self.num_nodes)
        return nh >= 1.0 / self.threshold


class NHGCN(GraphModel):
    """NHGCN node classifier; returns logits.

    Args:
        in_channels: node feature size.
        out_channels: number of classes.
        hidden: hidden size of both channels (reference: 512).
        dropout: dropout after the first layer of each channel (and on the reference ego branch).
        final_dropout: dropout before the output layer (``--finaldp``).
        ego: ``"reference"`` or ``"linear"`` (see the module docstring).
        add_self_loops: the channels' weight-1 self-loops (``--addself``).

    Shapes:
        data.x ``[N, in_channels]`` (dense or sparse COO), data.nh_high ``[N]`` bool (optional)
        -> ``[N, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 512,
        dropout: float = 0.8,
        final_dropout: float = 0.0,
        ego: Literal["reference", "linear"] = "reference",
        add_self_loops: bool = True,
    ) -> None:
        super().__init__()
        for name, p in (("dropout", dropout), ("final_dropout", final_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if ego not in ("reference", "linear"):
            raise ValueError(f"ego must be 'reference' or 'linear', got {ego!r}")
        self.dropout, self.final_dropout, self.ego, self.add_self_loops = dropout, final_dropout, ego, add_self_loops
        self.w1_l, self.w1_h = _xavier_relu(in_channels, hidden), _xavier_relu(in_channels, hidden)
        self.w2_l, self.w2_h = _xavier_relu(hidden, hidden), _xavier_relu(hidden, hidden)
        self.w_x = _xavier_relu(in_channels, hidden) if ego == "linear" else None
        self.lam = nn.Parameter(torch.zeros(3))
        self.lin = nn.Linear(hidden, out_channels)
        self.prop_l, self.prop_h = NHConv("L"), NHConv("H")

    def graph_from_data(self, data: Any) -> Graph:
        graph = Graph.from_data(data)
        high = getattr(data, "nh_high", None)
        if high is None:
            high = torch.ones(graph.num_nodes, dtype=torch.bool, device=graph.device)
        return homophily_channels(graph, high, self.add_self_loops)

    def param_groups(self, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """One Adam group with the reference's weight decay on every parameter."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    def with_split(self, graph: Graph, high: Tensor) -> Graph:
        """``graph`` with its channels re-weighted for a new node split ``high``."""
        return homophily_channels(graph, high, self.add_self_loops)

    def _channel(self, xw1: Tensor, w2: Tensor, prop: NHConv, graph: Graph) -> Tensor:
        h = F.relu(prop(xw1, graph))
        h = F.dropout(h, self.dropout, self.training)
        return prop(h, graph) @ w2

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        x = self.node_input(graph)
        mm = torch.sparse.mm if x.is_sparse else torch.mm
        x_l = self._channel(mm(x, self.w1_l), self.w2_l, self.prop_l, graph)
        x_h = self._channel(mm(x, self.w1_h), self.w2_h, self.prop_h, graph)
        if self.w_x is None:
            x_ego = F.dropout(x_h, self.dropout, self.training)
        else:
            x_ego = F.dropout(F.relu(mm(x, self.w_x)), self.dropout, self.training)
        lam = torch.softmax(self.lam, dim=0)
        out = F.relu(lam[0] * x_ego + lam[1] * x_l + lam[2] * x_h)
        return self.lin(F.dropout(out, self.final_dropout, self.training))

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, final_dropout={self.final_dropout}, ego={self.ego!r}"


__all__ = ["NHGCN", "HomophilySplit"]
