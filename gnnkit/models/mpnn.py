"""Message passing neural network of Gilmer et al. 2017 ("Neural Message Passing for Quantum
Chemistry", ICML), in its best QM9 form: edge network messages, GRU update, set2set readout."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.models._base import GraphModel
from gnnkit.models._inputs import with_edge_types, with_virtual_edges
from gnnkit.nn import (
    Bidirectional,
    EdgeNetworkConv,
    GatedReadout,
    Graph,
    GRUUpdate,
    MasterNode,
    MessagePassing,
    RelationalConv,
    Set2Set,
    Towers,
)

Message = Literal["edge_network", "edge_type"]
Readout = Literal["set2set", "gated"]


class MPNN(GraphModel):
    """MPNN: input projection -> ``steps`` x (message, GRU update) with tied weights -> readout ->
    MLP head. One row of predictions per graph. In Gilmer's terms: ``M_t`` is the conv's message,
    ``U_t`` the GRU, ``R`` the readout; the conv's :meth:`~gnnkit.nn.MessagePassing.edge_features`
    are computed once and every step is :meth:`~gnnkit.nn.MessagePassing.propagate` on one
    prepared :class:`gnnkit.nn.Graph`.

    * Input projection ``h^0 = ReLU(Linear(x))`` to ``channels`` features.
    * Message (``message=``): ``"edge_network"`` -- ``A(e_vw) h_w`` with ``A`` an MLP of the edge
      features (:class:`gnnkit.nn.EdgeNetworkConv`, no ``E x d x d`` tensor; its hidden activation
      is computed once per forward and reused by every step), or ``"edge_type"`` -- one learned
      matrix per discrete edge type (GG-NN style, :class:`gnnkit.nn.RelationalConv`). Edge types
      come from ``data.edge_type`` if present, else from the one-hot block in the last
      ``num_bond_types`` columns of ``edge_attr`` (argmax; an all-zero block, i.e. a non-bonded
      pair of a complete graph, is the extra type ``num_bond_types``).
    * Update: ``h^{t+1} = GRUCell(m^{t+1}, h^t)`` (``torch.nn.GRUCell``), weights shared over
      steps. The GRU is the layer's update (:class:`gnnkit.nn.GRUUpdate` around the message
      function), so every step is one ``conv.propagate`` and towers get a GRU each.
    * Readout (``readout=``): ``"set2set"`` (:class:`gnnkit.nn.Set2Set` with ``set2set_steps``
      processing steps, ``2 * channels`` outputs) or ``"gated"`` (Gilmer eq. 4 with ``h^0`` in
      the gate, :class:`gnnkit.nn.GatedReadout`, ``2 * channels`` outputs).
    * Head: ``Linear(2d, d) -> ReLU -> Linear(d, out_channels)``.

    Gilmer's Section 5 variants (Tables 7-8), all off by default:

    * ``directed=True``: separate edge networks for incoming and outgoing edges, a message
      channel of ``2d`` (:class:`gnnkit.nn.Bidirectional`); each bond of the undirected molecule
      is once incoming and once outgoing with the same label. Gilmer's Section 5.1 describes this
      form for its MPNNs; the default here is the undirected form (one edge network over every
      edge, ``m_v = sum_w A(e_vw) h_w``), which is PyG's NNConv example and keeps the fused
      single-kernel step.
    * ``virtual_edges``: ``False`` keeps only the bonded pairs (the chemical graph), ``True``
      joins every pair of atoms, non-bonded pairs by the extra virtual type (see
      :func:`gnnkit.models._inputs.with_virtual_edges`); ``None`` uses the edges as given.
    * ``master_node=d_master``: a graph-level state of width ``d_master`` with its own GRU, read
      and written by every node at every step (:class:`gnnkit.nn.MasterNode`).
    * ``towers=k``: the state split into ``k`` towers of ``d / k``, each with its own edge network
      and GRU, mixed by a shared network (:class:`gnnkit.nn.Towers`, eq. 5).

    Defaults follow Gilmer's enn-s2s (edge network + set2set + GRU, messages summed over the
    neighbours, an edge network with one hidden layer) with the sizes of the common PyG QM9
    baseline: ``channels=64``, ``steps=3``, ``set2set_steps=3``, ``edge_hidden=128``. The paper
    tuned ``T`` in 3..8 and ``M`` in 1..12 per target; pass those to match a specific run.

    Args:
        in_channels: atom feature size.
        out_channels: number of predicted targets.
        edge_dim: edge feature size (required for ``message="edge_network"``).
        channels: node state size ``d``.
        steps: message-passing steps ``T``.
        set2set_steps: Set2Set processing steps ``M``.
        message: ``"edge_network"`` or ``"edge_type"``.
        edge_hidden: hidden size of the edge network's MLP.
        aggr: ``"sum"`` (Gilmer) or ``"mean"`` (PyG's QM9 example) over incoming messages.
        readout: ``"set2set"`` or ``"gated"``.
        num_bond_types: size of the one-hot block of ``edge_attr`` (``message="edge_type"``).
        num_edge_types: number of edge types (default ``num_bond_types + 1``).
        directed: separate message functions for incoming and outgoing edges.
        virtual_edges: ``None`` (edges as given), ``False`` (bonds only) or ``True`` (every pair,
            non-bonded ones of a virtual type).
        master_node: ``d_master`` of a master node, or ``None``.
        towers: number of towers ``k`` (1: none; ``channels`` must be a multiple).
        edge_init_scale: factor on the initial weights and bias of each edge network's output
            layer (the entries of ``A(e)``); 1 keeps ``nn.Linear``'s default initialisation.
        message_scale: constant factor on the aggregated message before the GRU (see
            :class:`gnnkit.nn.GRUUpdate`).

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]``, data.edge_attr ``[E, edge_dim]``,
        data.batch ``[N]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int | None = None,
        channels: int = 64,
        steps: int = 3,
        set2set_steps: int = 3,
        message: Message = "edge_network",
        edge_hidden: int = 128,
        aggr: Literal["sum", "mean"] = "sum",
        readout: Readout = "set2set",
        num_bond_types: int = 4,
        num_edge_types: int | None = None,
        directed: bool = False,
        virtual_edges: bool | None = None,
        master_node: int | None = None,
        towers: int = 1,
        edge_init_scale: float = 1.0,
        message_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if message not in ("edge_network", "edge_type"):
            raise ValueError(f"message must be 'edge_network' or 'edge_type', got {message!r}")
        if readout not in ("set2set", "gated"):
            raise ValueError(f"readout must be 'set2set' or 'gated', got {readout!r}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        check_variants(virtual_edges, master_node, towers, channels)
        self.message, self.readout_kind, self.steps, self.channels = message, readout, steps, channels
        self.num_bond_types, self.virtual_edges, self.directed = num_bond_types, virtual_edges, directed
        self.lin_in = nn.Linear(in_channels, channels)
        if message == "edge_network" and edge_dim is None:
            raise ValueError("message='edge_network' needs edge_dim (the edge feature size)")
        if message == "edge_type":
            self.num_edge_types = num_bond_types + 1 if num_edge_types is None else num_edge_types

        def message_function(c: int) -> MessagePassing:
            if message == "edge_network":
                return EdgeNetworkConv(c, c, aggr=aggr, root_weight=False, edge_dim=edge_dim, hidden=edge_hidden)
            # Gilmer's edge-type message: one reduction over all incoming W_r h_w (not RGCN's per relation)
            return RelationalConv(c, c, self.num_edge_types, aggr=aggr, root_weight=False, per_relation=False)

        def step_layer(c: int) -> GRUUpdate:  # M_t and U_t of one step (one tower)
            if directed:
                return GRUUpdate(Bidirectional(message_function(c), message_function(c)), c, message_channels=2 * c,
                                 message_scale=message_scale)  # fmt: skip
            return GRUUpdate(message_function(c), c, message_scale=message_scale)

        if towers > 1:
            self.conv: MessagePassing = Towers(step_layer, towers, channels)
        elif master_node:
            layer = step_layer(channels)
            self.conv = MasterNode(layer, channels, master_node, message_channels=layer.message_channels)
        else:
            self.conv = step_layer(channels)
        if not (edge_init_scale > 0 and math.isfinite(edge_init_scale)):
            raise ValueError(f"edge_init_scale must be a finite number > 0, got {edge_init_scale!r}")
        self.edge_init_scale = edge_init_scale
        if edge_init_scale != 1.0:
            with torch.no_grad():  # the edge networks' output layer (A(e) = W2 z + b2) scaled at init
                for conv in (m for m in self.conv.modules() if isinstance(m, EdgeNetworkConv)):
                    conv.edge_out.weight.mul_(edge_init_scale)
                    conv.edge_out.bias.mul_(edge_init_scale)
        if readout == "set2set":
            self.readout: nn.Module = Set2Set(channels, set2set_steps)
        else:
            self.readout = GatedReadout(channels, 2 * channels, init_channels=channels)
        self.head = nn.Sequential(nn.Linear(2 * channels, channels), nn.ReLU(), nn.Linear(channels, out_channels))

    def graph_from_data(self, data: Any) -> Graph:
        graph = Graph.from_data(data)
        if self.virtual_edges is not None:
            graph = with_virtual_edges(graph, self.num_bond_types, self.virtual_edges)
        if self.message == "edge_type":
            graph = with_edge_types(graph, self.num_bond_types)
        elif graph.edge_attr is None:
            raise ValueError("message='edge_network' needs data.edge_attr")
        return graph

    def node_states(self, data: Any) -> Tensor:
        """Final node states ``h^T`` (``[N, channels]``), before the readout."""
        return self._propagate(self.prepare(data))[0]

    def _propagate(self, graph: Graph) -> tuple[Tensor, Tensor]:
        h0 = h = F.relu(self.lin_in(self.node_input(graph)))
        return run_steps(self.conv, h, graph, self.steps), h0

    def flops(self, num_nodes: int, num_edges: int, num_graphs: int, backward: bool = False) -> int:
        """Cost model of one forward (``backward=True``: forward + backward) on a batch, in
        floating-point operations of its products (a multiply-add is 2; element-wise work, gathers
        and the optimizer not counted; backward twice the forward except for products whose input
        needs no gradient). Message ``"edge_network"`` only (the edge network's hidden layer once,
        :meth:`gnnkit.nn.EdgeNetworkConv.flops` per step)."""
        conv = getattr(self.conv, "layer", None)
        if self.message != "edge_network" or not isinstance(self.conv, GRUUpdate) or not isinstance(conv, EdgeNetworkConv):
            raise ValueError("flops covers the plain MPNN with message='edge_network' (no towers, master node or directed form)")
        d, n, g = self.channels, num_nodes, num_graphs
        twice = 3 if backward else 1  # forward + both gradients of a product
        total = 2 * n * self.lin_in.in_features * d * (2 if backward else 1)
        total += conv.flops(n, num_edges, backward, edge_mlp=False) * self.steps
        total += 2 * num_edges * conv.edge_dim * conv.hidden * (2 if backward else 1)
        total += twice * 12 * n * d * d * self.steps  # GRUCell: [N, d] x [d, 3d] twice per step
        if self.readout_kind == "set2set":
            # LSTM on [q*, q] (2d + d inputs, 4d gates) and the attention (scores, weighted sum).
            total += twice * (2 * g * 4 * d * 3 * d + 4 * n * d) * self.readout.steps
        else:
            total += twice * (2 * n * 2 * d * 2 * d + 2 * n * d * 2 * d)
        total += twice * (2 * g * 2 * d * d + 2 * g * d * self.head[-1].out_features)
        return total

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        h, h0 = self._propagate(graph)
        return self.head(self.readout(h, graph, x0=h0))


def check_variants(virtual_edges: bool | None, master_node: int | None, towers: int, channels: int) -> None:
    """Raises ``ValueError`` for Gilmer's Section 5 options of an invalid kind or combination."""
    if virtual_edges not in (None, True, False):
        raise ValueError(f"virtual_edges must be None, True or False, got {virtual_edges!r}")
    if master_node is not None and (isinstance(master_node, bool) or not isinstance(master_node, int) or master_node < 1):
        raise ValueError(f"master_node must be None or a positive int (its width d_master), got {master_node!r}")
    if isinstance(towers, bool) or not isinstance(towers, int) or towers < 1:
        raise ValueError(f"towers must be a positive int, got {towers!r}")
    if towers > 1 and channels % towers:
        raise ValueError(f"channels={channels} must be a multiple of towers={towers}")
    if towers > 1 and master_node:
        raise ValueError("towers and master_node are separate variants in Gilmer's Section 5; pick one")


def run_steps(conv: MessagePassing, h: Tensor, graph: Graph, steps: int) -> Tensor:
    """``steps`` tied steps of ``conv`` from ``h``: its edge features computed once, then
    :meth:`~gnnkit.nn.MessagePassing.propagate` (node-only), or :meth:`~gnnkit.nn.MessagePassing.step`
    with the master node's graph state."""
    edge = conv.edge_features(graph)  # e.g. the edge network's hidden layer, once for all steps
    if isinstance(conv, MasterNode):
        u = conv.initial_state(graph, h)
        for _ in range(steps):
            h, _, u = conv.step(h, graph, edge, u)
        return h
    for _ in range(steps):
        h = conv.propagate(h, graph, edge)
    return h


__all__ = ["MPNN"]
