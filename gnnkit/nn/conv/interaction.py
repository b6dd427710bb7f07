"""The interaction network of Battaglia et al. 2016 ("Interaction Networks for Learning about
Objects, Relations and Physics", NeurIPS; arXiv:1612.00222) as one message-passing step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing


class InteractionConv(MessagePassing):
    """One interaction-network step, in Gilmer et al.'s (2017) terms::

        M(h_v, h_w, e_vw) = NN_R(h_v, h_w, e_vw)       (Battaglia's relational model f_R)
        U(h_v, x_v, m_v)  = NN_O(h_v, x_v, m_v)        (the object model f_O)

    with ``m_v = sum_w M(h_v, h_w, e_vw)``, ``x_v`` an external input of every node ("some outside
    influence on the vertex", e.g. gravity in Battaglia's physics) and ``(.)`` concatenation. Both
    networks have one hidden ReLU layer.

    The layer's input is one tensor ``[h, x]``: the state ``h`` in the first ``channels`` columns,
    the external input in the last ``x_channels`` (0: none). Messages read the state columns; the
    update reads the whole row and returns the new state (``channels`` columns).

    On the base: :meth:`edge_features` is ``W_e e_vw + b`` (the edge block of ``NN_R``'s first
    layer), once per forward. :meth:`message_and_aggregate` computes the node blocks ``W_v h``,
    ``W_w h`` once per node and gathers them (``E x hidden`` instead of the ``E x (2C + D)``
    concatenation and its ``E x (2C + D) x hidden`` product), and because ``NN_R``'s last layer is
    linear and the aggregation a sum it reduces the hidden activations first and applies that
    layer once per node: ``sum_w (W_2 z_vw + b_2) = W_2 (sum_w z_vw) + deg(v) b_2`` (the base's
    :meth:`~MessagePassing.aggregate` and :meth:`~MessagePassing.message_count`, which carry an
    explainer's mask).
    :meth:`message` is the unfused ``NN_R``.

    Args:
        channels: state size ``C``.
        edge_dim: edge feature size ``D``.
        x_channels: external input size (0: none).
        hidden: hidden size of both networks.
        message_channels: size of ``m_v`` (default ``channels``).

    Shapes:
        x ``[N, channels + x_channels]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` ->
        ``[N, channels]``.
    """

    edge_input = "edge_attr"

    def __init__(self, channels: int, edge_dim: int, x_channels: int = 0, hidden: int = 64,
                 message_channels: int | None = None) -> None:  # fmt: skip
        message_channels = channels if message_channels is None else message_channels
        for name, value, low in (("channels", channels, 1), ("edge_dim", edge_dim, 1), ("x_channels", x_channels, 0),
                                 ("hidden", hidden, 1), ("message_channels", message_channels, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        super().__init__("sum")
        self.channels, self.edge_dim, self.x_channels = channels, edge_dim, x_channels
        self.hidden, self.message_channels = hidden, message_channels
        # NN_R's first layer on (h_v, h_w, e_vw), kept as its three blocks.
        self.rel_dst = nn.Linear(channels, hidden, bias=False)
        self.rel_src = nn.Linear(channels, hidden, bias=False)
        self.rel_edge = nn.Linear(edge_dim, hidden)
        self.rel_out = nn.Linear(hidden, message_channels)
        self.obj = nn.Sequential(nn.Linear(channels + x_channels + message_channels, hidden), nn.ReLU(),
                                 nn.Linear(hidden, channels))  # fmt: skip

    def reset_parameters(self) -> None:
        for m in (self.rel_dst, self.rel_src, self.rel_edge, self.rel_out, self.obj[0], self.obj[2]):
            m.reset_parameters()

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        if x_dst is None:
            raise ValueError("InteractionConv needs x_dst (its message and update read the targets' states): pass x or an (x_src, x_dst) pair, not (x_src, None)")
        width = self.channels + self.x_channels
        for name, x in (("x", x_src), ("x_dst", x_dst)):
            if x.dim() != 2 or x.size(1) != width:
                raise ValueError(f"{name} must have shape [N, channels + x_channels = {width}] (state, then external "
                                 f"input), got {tuple(x.shape)}")  # fmt: skip

    def prepare(self, graph: Graph) -> Graph:
        e = graph.edge_attr
        if e is None or e.dim() != 2 or e.size(1) != self.edge_dim:
            raise ValueError(f"InteractionConv needs edge_attr of shape [E, {self.edge_dim}], "
                             f"got {None if e is None else tuple(e.shape)}")  # fmt: skip
        return graph

    def edge_features(self, graph: Graph) -> Tensor:
        """``W_e e_vw + b``, ``[E, hidden]`` in CSR order (the same at every step)."""
        return self.rel_edge(graph.edge_attr)

    def message(self, x_src: Tensor, x_dst: Tensor, edge: Tensor) -> Tensor:
        """``NN_R(h_v, h_w, e_vw)`` on gathered rows (``edge`` from :meth:`edge_features`)."""
        c = self.channels
        return self.rel_out(F.relu(self.rel_dst(x_dst[:, :c]) + self.rel_src(x_src[:, :c]) + edge))

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor, graph: Graph) -> Tensor:
        csr, c = graph.csr, self.channels
        z = self.rel_dst(x_dst[:, :c]).index_select(0, csr.row) + self.rel_src(x_src[:, :c]).index_select(0, csr.col)
        z = F.relu(z + edge.to(z.dtype))
        # sum_w (W_2 z_vw + b_2) = W_2 sum_w z_vw + count(v) b_2 (an explainer's mask in both terms)
        count = self.message_count(graph, z.dtype).unsqueeze(1)
        return F.linear(self.aggregate(z, graph), self.rel_out.weight) + count * self.rel_out.bias

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return self.obj(torch.cat([x_dst, aggregated], dim=-1))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, edge_dim={self.edge_dim}, x_channels={self.x_channels}, "
                f"hidden={self.hidden}, message_channels={self.message_channels}")  # fmt: skip
