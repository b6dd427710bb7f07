"""Tree Decomposed Graph Neural Network (Wang & Derr, CIKM 2021, "Tree Decomposed Graph Neural
Network"; reference code yuwvandy/TDGNN).

``Z = MLP(X)`` once, then ``out = Z + sum_{l in levels} (T^l ⊙ E^{l,K}) Z`` (TDGNN-s) or
``out = w_0 Z + sum_i w_i (T^{l_i} ⊙ E^{l_i,K}) Z`` with free scalars ``w`` (TDGNN-w): one
:class:`gnnkit.nn.TreeConv` over the tree operator (``TreeConv.operator_key``), which the model reads from its data.
Compute it once per graph with the PyG transform :class:`TreeDecomposition` (the node-
classification recipe caches it on disk); given data without it, :meth:`TDGNN.prepare` computes
it on the spot, which is correct but costs a multi-source BFS every call.

Choices taken from the reference code (the paper leaves them open):

* the MLP is ``Linear(dropout_2(ReLU(Linear(dropout_1(X)))))``, propagation happens once after it;
* the identity term ``Z`` is always there, and the self-loop weight ``sum_{m=1..K} (Â^m)[s, s]``
  sits inside level 1 (so it is only used when ``1 in levels``);
* ``K`` (``max_hops``) is both the BFS depth and the largest power of ``Â``; the reference's
  ``--K`` flag is unused, its ``tree_layer`` (10) plays this role;
* on directed graphs the operators are not symmetrised (see :func:`gnnkit.ops.tree_decomposition`);
* TDGNN-w's scalars start at 1, are not softmax-normalised and get their own weight decay
  (``wd3``, see :meth:`TDGNN.param_groups`).

Sparse ``x`` (a COO tensor) is supported: dropout then acts on the stored values, which is the
same distribution as dense dropout on a matrix whose other entries are zero, and the first
linear map becomes a sparse product (bag-of-words features are ~1% dense).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.models._base import GraphModel
from gnnkit.nn import Graph, TreeConv, feature_dropout, tree_edges, tree_operator
from gnnkit.nn.conv.tree import TREE

_KEYS = ("tree_edge_index", "tree_edge_weight", "tree_edge_type")


def _levels(levels: Sequence[int]) -> list[int]:
    levels = [int(level) for level in levels]
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be a non-empty list of distinct ints >= 1, got {levels}")
    return levels


class TreeDecomposition:
    """PyG transform: attaches TDGNN's tree operator to a graph, as ``data.tree_edge_index``
    ``[2, P]``, ``data.tree_edge_weight`` ``[P]`` and ``data.tree_edge_type`` ``[P]`` (the index
    of each entry's level in ``levels``), plus ``data.tree_config`` (the settings, checked by
    :class:`TDGNN`).

    Args:
        levels: the tree levels ``l`` (the reference's ``--layers``).
        max_hops: ``K``, the BFS depth and largest power of ``Â``.
        symmetric: symmetrise the graph first (a different model on directed graphs).
    """

    def __init__(self, levels: Sequence[int], max_hops: int = 10, symmetric: bool = False) -> None:
        self.levels, self.max_hops, self.symmetric = _levels(levels), int(max_hops), bool(symmetric)

    @property
    def config(self) -> dict[str, Any]:
        return {"levels": self.levels, "max_hops": self.max_hops, "symmetric": self.symmetric}

    def __call__(self, data: Any) -> Any:
        data = data.clone()
        index, weight, level = tree_edges(data.edge_index, data.num_nodes, self.levels, self.max_hops, self.symmetric)
        data.tree_edge_index, data.tree_edge_weight, data.tree_edge_type = index, weight, level
        data.tree_config = self.config
        return data

    def __repr__(self) -> str:
        return f"TreeDecomposition(levels={self.levels}, max_hops={self.max_hops}, symmetric={self.symmetric})"


class TDGNN(GraphModel):
    """TDGNN node classifier. Returns logits (the reference applies ``log_softmax`` and
    ``nll_loss``, which is ``cross_entropy`` on these logits).

    Args:
        in_channels: node feature size.
        out_channels: number of classes.
        levels: the tree levels ``l`` used (the reference's ``--layers``).
        hidden: hidden size of the MLP.
        weighted: ``False`` for TDGNN-s (plain sum), ``True`` for TDGNN-w (learnable scalars).
        dropout1: dropout on the input features.
        dropout2: dropout on the hidden layer.
        max_hops: ``K`` of the tree operator.
        symmetric: whether the tree operator is built on the symmetrised graph.

    Shapes:
        data.x ``[N, in_channels]`` (dense or sparse COO) -> ``[N, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        levels: Sequence[int] = (1, 2, 3, 4),
        hidden: int = 64,
        weighted: bool = False,
        dropout1: float = 0.5,
        dropout2: float = 0.5,
        max_hops: int = 10,
        symmetric: bool = False,
    ) -> None:
        super().__init__()
        levels = _levels(levels)
        for name, p in (("dropout1", dropout1), ("dropout2", dropout2)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if max(levels) > max_hops:
            raise ValueError(f"levels {levels} must not exceed max_hops={max_hops}")
        self.levels, self.weighted, self.max_hops, self.symmetric = levels, weighted, max_hops, symmetric
        self.dropout1, self.dropout2 = dropout1, dropout2
        self.lin1 = nn.Linear(in_channels, hidden)
        self.lin2 = nn.Linear(hidden, out_channels)
        self.prop = TreeConv(len(levels), weighted)

    @property
    def level_weight(self) -> nn.Parameter | None:
        return self.prop.level_weight

    def transform(self) -> TreeDecomposition:
        """The PyG transform that precomputes this model's tree operator."""
        return TreeDecomposition(self.levels, self.max_hops, self.symmetric)

    def graph_from_data(self, data: Any) -> Graph:
        graph = Graph.from_data(data)
        if all(getattr(data, k, None) is not None for k in _KEYS):
            config = getattr(data, "tree_config", None)
            if config != self.transform().config:
                raise ValueError(
                    f"the data's tree operator was built with {config}, but the model needs "
                    f"{self.transform().config}: apply model.transform() to the data"
                )
            index, weight, level = (getattr(data, k) for k in _KEYS)
        else:
            index, weight, level = tree_edges(data.edge_index, graph.num_nodes, self.levels, self.max_hops, self.symmetric)
        return graph.with_operator(TREE, tree_operator(index, weight, level, graph.num_nodes))

    def param_groups(self, wd1: float, wd2: float, wd3: float = 0.0) -> list[dict[str, Any]]:
        """Adam parameter groups with the reference's three weight decays."""
        groups = [
            {"params": list(self.lin1.parameters()), "weight_decay": wd1},
            {"params": list(self.lin2.parameters()), "weight_decay": wd2},
        ]
        if self.level_weight is not None:
            groups.append({"params": [self.level_weight], "weight_decay": wd3})
        return groups

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        x = feature_dropout(self.node_input(graph), self.dropout1, self.training)  # x may be sparse COO
        h = torch.sparse.mm(x, self.lin1.weight.t()) + self.lin1.bias if x.is_sparse else self.lin1(x)
        z = self.lin2(F.dropout(F.relu(h), self.dropout2, self.training))
        return self.prop(z, graph)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, weighted={self.weighted}, dropout=({self.dropout1}, {self.dropout2})"


__all__ = ["TDGNN", "TreeDecomposition"]
