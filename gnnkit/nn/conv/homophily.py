"""The homophily-split channels of NHGCN (Gong et al., CIKM 2023, "Neighborhood Homophily-based
Graph Convolutional Network"; reference code rockcor/NHGCN).

Nodes are split by their neighbourhood homophily (:func:`gnnkit.ops.neighbourhood_homophily`)
into a high-NH and a low-NH group. Channel ``L`` aggregates over the edges whose *source* is high,
channel ``H`` over those whose source is low, each with a weight-1 self-loop per node and the
symmetric normalisation with in-degrees (the reference's ``agg_norm(adj_t, mask, 'source')``).

Both channels share one CSR (the graph's edges plus one loop per node); an edge outside a channel
has weight 0 there. So re-splitting the nodes (NHGCN does it whenever validation accuracy
improves) only recomputes weights: no sort, no shape that depends on the data.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gnnkit.nn.conv.gcn import symmetric_norm, with_self_loops
from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import MessagePassing



def homophily_channels(graph: Graph, high: Tensor, add_self_loops: bool = True) -> Graph:
    """``graph`` with the operators ``CHANNELS["L"]`` (edges whose source is high) and
    ``CHANNELS["H"]`` (source low) for the node split ``high``.

    Args:
        graph: the graph (its existing self-loops are dropped, as in the reference).
        high: ``[N]`` bool, ``True`` for high-NH nodes.
        add_self_loops: give every node a weight-1 self-loop in both channels (the reference's
            ``--addself``); else the channels have no self-loops.

    Raises:
        ValueError: ``high`` is not a bool tensor of shape ``[N]``.
    """
    n = graph.num_nodes
    if not isinstance(high, Tensor) or high.dtype != torch.bool or high.shape != (n,):
        raise ValueError(
            f"high must be a bool tensor of shape [{n}], got {getattr(high, 'dtype', type(high).__name__)} "
            f"{tuple(getattr(high, 'shape', ()))}"
        )
    base = graph.operators.get(_BASE)
    if base is None:
        csr, _, appended = with_self_loops(graph, torch.ones(n, device=graph.device))
        # with_self_loops lists the graph's edges (csr order) then one loop per node (origin -1).
        e = graph.num_edges
        origin = torch.cat([torch.arange(e, device=graph.device), torch.full((n,), -1, device=graph.device)])
        base = Graph(csr, origin=origin.index_select(0, csr.perm))
    csr, appended = base.csr, base.origin < 0
    own_loop = ~appended & (csr.row == csr.col)
    loop = torch.full_like(appended, add_self_loops, dtype=torch.float)
    src_high = high.index_select(0, csr.col)
    ops = {_BASE: base}
    for name, keep in ((CHANNELS["L"], src_high), (CHANNELS["H"], ~src_high)):
        w = torch.where(appended, loop, (keep & ~own_loop).float())
        ops[name] = Graph(csr, edge_weight=symmetric_norm(csr, w), origin=base.origin)
    return graph.replace(operators={**graph.operators, **ops})


class NHConv(MessagePassing):
    """Propagation over one NHGCN channel: ``x' = Â_c x`` for ``c`` in ``{"L", "H"}`` (no weights;
    NHGCN applies its linear maps around it, see :class:`gnnkit.models.NHGCN`).

    Reads the operator ``CHANNELS[channel]`` of the graph (build them with
    :func:`homophily_channels`); on the base, :meth:`message_and_aggregate` is one weighted
    sparse product. An explainer's mask scales the messages of the graph's edges (the operators
    keep each entry's origin), not the appended self-loops.

    Shapes:
        x ``[N, F]`` -> ``[N, F]``.
    """

    def __init__(self, channel: Literal["L", "H"]) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be 'L' or 'H', got {channel!r}")
        super().__init__("sum")
        self.channel = channel

    def prepare(self, graph: Graph) -> Graph:
        graph.operator(CHANNELS[self.channel])  # a clear error if the channels were not built
        return graph

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        key = CHANNELS[self.channel]
        return self.spmm(x_src, graph, graph.operators[key].edge_weight.to(x_src.dtype), key=key)

    def extra_repr(self) -> str:
        return f"channel={self.channel!r}"


CHANNELS: dict[str, OperatorKey] = {"L": OperatorKey(NHConv, ("L",)), "H": OperatorKey(NHConv, ("H",))}
_BASE = OperatorKey(NHConv, ("base",))  # the shared CSR with the appended loops
