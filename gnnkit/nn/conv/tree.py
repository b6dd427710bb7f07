"""Propagation over tree-decomposed hop operators: the layer of TDGNN (Wang & Derr, CIKM 2021,
"Tree Decomposed Graph Neural Network"; reference code yuwvandy/TDGNN).

For every source ``s``, the BFS tree to depth ``K`` puts each node ``v`` at shortest distance
exactly ``l`` into level ``l`` with weight ``sum_{m=l..K} (Â^m)[s, v]``
(:func:`gnnkit.ops.tree_decomposition`). A node pair sits in exactly one level, so the chosen
levels form one graph over the nodes whose edges carry a weight and a type (the level's index):
the tree operator of a :class:`gnnkit.nn.Graph` (:func:`tree_operator`, key ``TreeConv.operator_key``). One sparse product
over it propagates through every level at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import MessagePassing
from gnnkit.ops import tree_decomposition



def tree_edges(
    edge_index: Tensor,
    num_nodes: int,
    levels: Sequence[int],
    max_hops: int = 10,
    symmetric: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """The chosen levels as one edge list: ``(edge_index [2, P], weight [P], level [P])`` with
    ``level[p] = i`` for an entry of level ``levels[i]`` (row 0 = the BFS source); the weights are
    computed in ``dtype``."""
    pairs = tree_decomposition(edge_index, num_nodes, list(levels), max_hops, symmetric, dtype=dtype)
    index = torch.cat([idx for idx, _ in pairs], dim=1)
    weight = torch.cat([w for _, w in pairs])
    level = torch.cat([torch.full((w.numel(),), i, dtype=torch.long, device=w.device) for i, (_, w) in enumerate(pairs)])
    return index, weight, level


def tree_operator(edge_index: Tensor, weight: Tensor, level: Tensor, num_nodes: int) -> Graph:
    """The tree operator graph (``TreeConv.operator_key``) from :func:`tree_edges`' output (validated, sorted once)."""
    return Graph.from_edge_index(edge_index, num_nodes, edge_weight=weight, edge_type=level)


class TreeConv(MessagePassing):
    """TDGNN propagation: ``out = Z + sum_l (T^l ⊙ E^{l,K}) Z`` (TDGNN-s) or
    ``out = w_0 Z + sum_i w_i (T^{l_i} ⊙ E^{l_i,K}) Z`` with learnable scalars ``w`` (TDGNN-w,
    initialised to 1, not softmax-normalised, as in the reference code).

    Reads the tree operator of the graph (key ``TreeConv.operator_key``) (build it with :func:`tree_operator`); on the base,
    :meth:`message_and_aggregate` is one weighted sparse product over it (for TDGNN-w the level
    scalars scale the edge weights, so their gradient flows through the product) and
    :meth:`update` adds the identity term.

    Args:
        num_levels: number of levels ``L`` in the operator.
        weighted: ``False`` for TDGNN-s, ``True`` for TDGNN-w.

    Shapes:
        x ``[N, C]`` -> ``[N, C]``.
    """

    operator_key: ClassVar[OperatorKey]  # TREE, set below the class

    def __init__(self, num_levels: int, weighted: bool = False) -> None:
        if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f"num_levels must be a positive int, got {num_levels!r}")
        super().__init__("sum")
        self.num_levels, self.weighted = num_levels, weighted
        self.level_weight = nn.Parameter(torch.ones(num_levels + 1)) if weighted else None

    def reset_parameters(self) -> None:
        if self.level_weight is not None:
            nn.init.ones_(self.level_weight)

    def prepare(self, graph: Graph) -> Graph:
        op = graph.operator(TREE)
        if op.edge_weight is None or op.edge_type is None:
            raise ValueError("the tree operator needs edge weights and edge types (levels); see tree_operator")
        if op.num_edge_types > self.num_levels:
            raise ValueError(f"the tree operator has {op.num_edge_types} levels but the layer was built for {self.num_levels}")
        if op.num_nodes != graph.num_nodes:
            raise ValueError(f"the tree operator is built for {op.num_nodes} nodes, the graph has {graph.num_nodes}")
        return graph

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        op = graph.operators[TREE]
        w = op.edge_weight.to(x_src.dtype)
        if self.level_weight is not None:
            w = w * self.level_weight[1:].to(x_src.dtype).index_select(0, op.edge_type)
        # The operator's entries are multi-hop pairs with no origin: an explainer's mask raises in the base.
        return self.spmm(x_src, graph, w, key=TREE)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        if self.level_weight is None:
            return x_dst + aggregated
        return self.level_weight[0] * x_dst + aggregated

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}, weighted={self.weighted}"


TREE = OperatorKey(TreeConv)
TreeConv.operator_key = TREE  # the key of the tree operator in Graph.operators
