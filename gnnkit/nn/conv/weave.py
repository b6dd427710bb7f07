"""The weave module of Kearnes et al. 2016 ("Molecular Graph Convolutions: Moving Beyond
Fingerprints", J. Comput.-Aided Mol. Des. 30; arXiv:1603.00856), in Gilmer et al.'s (2017) form:
node and edge (pair) states, both updated every step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing


class WeaveConv(MessagePassing):
    """One weave step, in Gilmer et al.'s (2017) terms, ``α`` = ReLU, ``(.,.)`` concatenation::

        M_t(h_v, h_w, e_vw) = e_vw^t
        U_t(h_v, m_v)       = α(W_1 (α(W_0 h_v), m_v))
        e_vw^{t+1}          = α(W_4 (α(W_2 e_vw^t), α(W_3 (h_v^t, h_w^t))))

    Both updates read the step's old states. Kearnes et al.'s weave module differs in details
    Gilmer's transcription leaves out: the pair-to-atom path applies ``α(W e)`` before the sum, and
    the atom-to-pair path is made order-invariant, ``α(W_3 (h_v, h_w)) + α(W_3 (h_w, h_v))``; here
    each directed edge ``w -> v`` keeps its own state.

    On the base: one weave step is the base's graph-network :meth:`~MessagePassing.step`. The node
    step is ``message -> aggregate -> update`` (the message is the edge state itself, so
    :meth:`message_and_aggregate` is the base's segment sum with nothing gathered); the edge step
    is the base's edge hook :meth:`edge_update` ``(edge, x_src, x_dst, u) -> edge'`` on the
    endpoint rows the base gathers. The messages read the step's input edge states
    (``messages_read_old_edges = True``), so both updates read step ``t``. With
    ``update_edges=False`` the layer has no edge update (:attr:`updates_edges` is ``False``):
    :meth:`step` gathers nothing and returns the edge states unchanged.

    Args:
        in_channels: node state size.
        edge_dim: edge state size.
        out_channels: new node state size.
        edge_out_channels: new edge state size (default ``edge_dim``).
        update_edges: ``False`` for a last step whose edge states nobody reads (no ``W_2..W_4``).

    Shapes:
        x ``[N, in_channels]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` ->
        ``[N, out_channels]`` (:meth:`~MessagePassing.step` also returns the edge states
        ``[E, edge_out_channels]``).
    """

    edge_input = "edge_attr"
    messages_read_old_edges = True  # M_t = e^t: the node update reads the edge states of step t

    def __init__(self, in_channels: int, edge_dim: int, out_channels: int, edge_out_channels: int | None = None,
                 update_edges: bool = True) -> None:  # fmt: skip
        edge_out_channels = edge_dim if edge_out_channels is None else edge_out_channels
        for name, value in (("in_channels", in_channels), ("edge_dim", edge_dim), ("out_channels", out_channels),
                            ("edge_out_channels", edge_out_channels)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        super().__init__("sum")
        self.in_channels, self.edge_dim, self.out_channels = in_channels, edge_dim, out_channels
        self.edge_out_channels, self.update_edges = edge_out_channels, update_edges
        self.lin0 = nn.Linear(in_channels, out_channels)
        self.lin1 = nn.Linear(out_channels + edge_dim, out_channels)
        if update_edges:
            self.lin2 = nn.Linear(edge_dim, edge_out_channels)
            self.lin3 = nn.Linear(2 * in_channels, edge_out_channels)
            self.lin4 = nn.Linear(2 * edge_out_channels, edge_out_channels)

    def reset_parameters(self) -> None:
        for m in self.children():
            m.reset_parameters()

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        if x_dst is None:
            raise ValueError("WeaveConv needs x_dst (its update reads the targets' states): pass x or an (x_src, x_dst) pair, not (x_src, None)")
        for name, x in (("x", x_src), ("x_dst", x_dst)):
            if x.dim() != 2 or x.size(1) != self.in_channels:
                raise ValueError(f"{name} must have shape [N, {self.in_channels}], got {tuple(x.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        if graph.edge_attr is None or graph.edge_attr.dim() != 2:
            raise ValueError("WeaveConv needs edge_attr (the initial edge states) of shape [E, D]")
        return graph  # the width is checked where the graph's edge_attr is this layer's input (edge_features)

    def edge_features(self, graph: Graph) -> Tensor:
        """The graph's ``edge_attr`` as this layer's edge states (a model past its first step
        passes the previous step's states instead)."""
        e = graph.edge_attr
        if e is None or e.dim() != 2 or e.size(1) != self.edge_dim:
            raise ValueError(f"WeaveConv needs edge_attr (the edge states) of shape [E, {self.edge_dim}], "
                             f"got {None if e is None else tuple(e.shape)}")  # fmt: skip
        return e

    def message(self, x_src: Tensor, x_dst: Tensor, edge: Tensor) -> Tensor:
        return edge

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor, graph: Graph) -> Tensor:
        return self.aggregate(edge.to(x_src.dtype), graph)  # the messages are the edge states

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return F.relu(self.lin1(torch.cat([F.relu(self.lin0(x_dst)), aggregated], dim=-1)))

    @property
    def updates_edges(self) -> bool:
        """``update_edges``: a last step (``False``) has no edge update, and its step gathers nothing."""
        return self.update_edges

    def edge_update(self, edge: Tensor, x_src: Tensor, x_dst: Tensor, u: Tensor | None) -> Tensor:
        """``e_vw^{t+1}`` from the edge states and the gathered rows ``x_src = h_w``, ``x_dst = h_v``
        of every edge ``w -> v`` (``u``, a graph state, is not read)."""
        if not self.update_edges:
            raise RuntimeError("this WeaveConv was built with update_edges=False")
        pair = F.relu(self.lin3(torch.cat([x_dst, x_src], dim=-1)))
        return F.relu(self.lin4(torch.cat([F.relu(self.lin2(edge)), pair], dim=-1)))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, edge_dim={self.edge_dim}, "
                f"edge_out_channels={self.edge_out_channels}, update_edges={self.update_edges}")  # fmt: skip
