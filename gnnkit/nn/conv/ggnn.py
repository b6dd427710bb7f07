"""Gated graph neural network propagation of Li et al. 2016 ("Gated Graph Sequence Neural
Networks", ICLR). For a one-directional per-edge-type message see
:class:`gnnkit.nn.RelationalConv`."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing, canonical_aggr


def check_edge_types(graph: Graph, num_edge_types: int, layer: str) -> None:
    """Raises ``ValueError`` unless ``graph`` has edge types below ``num_edge_types`` (the range
    was read when the graph was built, so this reads nothing on the device)."""
    if graph.edge_type is None:
        raise ValueError(f"{layer} needs edge types: pass edge_type (int64 [E])")
    if graph.num_edge_types > num_edge_types:
        raise ValueError(
            f"edge_type contains {graph.num_edge_types - 1}, which is out of range for "
            f"num_edge_types={num_edge_types}"
        )


def typed_messages(h: Tensor, weight: Tensor, src: Tensor, etype: Tensor) -> Tensor:
    """``weight[etype[e]] @ h[src[e]]`` for every edge ``e``: every node is mapped by every type once
    (``N x T x d'``), then rows are gathered per edge (``E x d'``, like any message)."""
    num_types, d_out, d_in = weight.shape
    mapped = (h @ weight.reshape(num_types * d_out, d_in).t()).view(h.size(0) * num_types, d_out)
    return mapped.index_select(0, src * num_types + etype)


class LiGRUCell(nn.Module):
    """The GRU update as written by Li et al. 2016 (eq. 3-6)::

        z = sigmoid(W_z a + U_z h),  r = sigmoid(W_r a + U_r h)
        h~ = tanh(W a + U (r * h)),  h' = (1 - z) * h + z * h~

    It differs from ``torch.nn.GRUCell`` only in where the reset gate acts: here on ``h`` before
    ``U``, in ``GRUCell`` on ``U h + b`` after it.

    Shapes:
        a ``[N, input_size]``, h ``[N, hidden_size]`` -> ``[N, hidden_size]``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.lin_a = nn.Linear(input_size, 3 * hidden_size)  # W_z, W_r, W (with the biases)
        self.lin_h = nn.Linear(hidden_size, 2 * hidden_size, bias=False)  # U_z, U_r
        self.lin_rh = nn.Linear(hidden_size, hidden_size, bias=False)  # U

    def forward(self, a: Tensor, h: Tensor) -> Tensor:
        az, ar, an = self.lin_a(a).chunk(3, dim=-1)
        hz, hr = self.lin_h(h).chunk(2, dim=-1)
        z = torch.sigmoid(az + hz)
        r = torch.sigmoid(ar + hr)
        cand = torch.tanh(an + self.lin_rh(r * h))
        return h + z * (cand - h)


class GGNNConv(MessagePassing):
    """One propagation step of the gated graph neural network (Li et al. 2016)::

        a_v = [sum_{(w -> v)} W_in[t] h_w ,  sum_{(v -> w)} W_out[t] h_w] + b     (2 * channels)
        h_v' = GRU(a_v, h_v)

    with one matrix per edge type ``t`` and per direction (incoming / outgoing edges), and the GRU
    of :class:`LiGRUCell`. Both directions use one :class:`gnnkit.ops.CSR` (its transpose gives
    the outgoing edges). GG-NN repeats this step with tied weights (:class:`gnnkit.models.GGNN`
    runs ``T`` steps from ``h^0`` = the input zero-padded to ``channels``).

    On the base: :meth:`message_and_aggregate` is the typed two-direction aggregation and
    :meth:`update` the GRU.

    Not a drop-in for ``torch_geometric.nn.GatedGraphConv(out_channels, num_layers, aggr, bias)``,
    and it does not take its parameters: that layer runs ``num_layers`` untyped steps along the
    edges only, with ``torch.nn.GRUCell`` and optional ``edge_weight``. There is no ``num_layers``
    here; what replaces ``GatedGraphConv`` is :class:`gnnkit.models.GGNN` (``steps`` tied-weight
    steps of this layer, from the input zero-padded to ``channels``, with a readout), or a loop of
    :meth:`propagate` on one prepared :class:`Graph` (``num_edge_types=1`` for an untyped graph).
    ``edge_weight`` has no meaning here and raises ``TypeError``, like any per-edge input other
    than ``edge_type``.

    Args:
        channels: state size ``d`` (input and output).
        num_edge_types: number of discrete edge types.
        aggr: ``"sum"`` (Li et al.) or ``"mean"``.

    Shapes:
        x ``[N, d]``, edge_index ``[2, E]``, edge_type ``[E]`` -> ``[N, d]``.
    """

    edge_input = "edge_type"

    def __init__(self, channels: int, num_edge_types: int, aggr: Literal["sum", "add", "mean"] = "sum") -> None:
        for name, value in (("channels", channels), ("num_edge_types", num_edge_types)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        super().__init__(aggr)
        canonical_aggr(aggr, ("sum", "mean"), "GGNNConv")
        self.channels, self.num_edge_types = channels, num_edge_types
        self.weight_in = nn.Parameter(torch.empty(num_edge_types, channels, channels))
        self.weight_out = nn.Parameter(torch.empty(num_edge_types, channels, channels))
        self.bias = nn.Parameter(torch.zeros(2 * channels))
        self.gru = LiGRUCell(2 * channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.channels)
        nn.init.uniform_(self.weight_in, -bound, bound)
        nn.init.uniform_(self.weight_out, -bound, bound)
        nn.init.zeros_(self.bias)
        for m in (self.gru.lin_a, self.gru.lin_h, self.gru.lin_rh):
            m.reset_parameters()

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src is not x_dst:
            raise ValueError("GGNNConv received a (x_src, x_dst) pair: its messages run along and against the edges, so it needs one node set")
        if x_src.dim() != 2 or x_src.size(1) != self.channels:
            raise ValueError(
                f"x must have shape [N, channels={self.channels}], got {tuple(x_src.shape)} "
                "(GG-NN zero-pads a narrower input to the state size first)"
            )

    def prepare(self, graph: Graph) -> Graph:
        check_edge_types(graph, self.num_edge_types, "GGNNConv")
        return graph

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        csr, etype = graph.csr, edge
        a_in = self.aggregate(typed_messages(x_src, self.weight_in, csr.col, etype), graph)
        out_messages = typed_messages(x_src, self.weight_out, csr.t_col, etype.index_select(0, csr.t_perm))
        a_out = self.aggregate(out_messages, graph, reverse=True)  # along the outgoing edges
        return torch.cat([a_in, a_out], dim=-1) + self.bias

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return self.gru(aggregated, x_dst)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, num_edge_types={self.num_edge_types}, aggr={self.aggr_name})"
