"""Layers built from layers: the GRU update, Gilmer's master node, towers and the directed form.

Each wrapper is itself a :class:`gnnkit.nn.MessagePassing` layer written on the base's hooks, so
wrappers nest (a GRU around the two directions, towers of GRU-updated edge networks) and every
layer inside keeps the base's contract (an explainer's mask, set on the outer layer, reaches the
inner ones through the graph). They implement the variants of Gilmer et al. 2017 ("Neural Message
Passing for Quantum Chemistry", ICML), Section 5, for any gnnkit layer:

* :class:`GRUUpdate`: the update ``h' = GRU(m, h)`` around a layer whose output is the message
  ``m``. This is the one place where a recurrent update is attached to a message function: MPNN
  wraps its edge network in it, GG-NN's :class:`gnnkit.nn.GGNNConv` has Li et al.'s GRU in its own
  ``update``; neither model applies a GRU itself.
* :class:`MasterNode`: a graph-level state of its own width with its own GRU, read and written by
  every node at every step (the base's ``node_update`` / ``graph_update`` hooks).
* :class:`Towers`: ``k`` copies of a layer on slices of width ``d / k``, mixed by a network shared
  over the nodes (eq. 5).
* :class:`Bidirectional`: separate message functions for incoming and outgoing edges, their
  aggregates concatenated (a message channel of ``2 d``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import GraphState, MessagePassing, NodeInput, operator_mask
from gnnkit.ops import CSR


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_layer(layer: object) -> MessagePassing:
    if not isinstance(layer, MessagePassing):
        raise TypeError(f"expected a gnnkit.nn.MessagePassing layer, got {type(layer).__name__}")
    return layer


def _inner_flow(*layers: MessagePassing) -> str:
    """The ``flow`` of the layers a wrapper runs (it reads ``edge_index`` for them, so they must
    agree; a wrapper's forward applies it)."""
    flows = {layer.flow for layer in layers}
    if len(flows) != 1:
        raise ValueError(f"the layers inside a wrapper must have one flow, got {sorted(flows)}")
    return flows.pop()


def _edge_inputs(*layers: MessagePassing) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for layer in layers for name in layer.edge_inputs))


class _Wrapper(MessagePassing):
    """A layer around ``self.layer``: its per-graph work, checks and per-edge input are the inner
    layer's (``forward``'s third argument is the inner layer's :attr:`edge_input`), and it reads
    ``edge_index`` in the inner layer's ``flow``."""

    layer: MessagePassing

    def _wrap(self, layer: MessagePassing) -> None:
        self.layer = layer
        self.edge_input = layer.edge_input  # type: ignore[misc]  # per instance: the inner layer's
        self.flow = _inner_flow(layer)

    @property
    def edge_inputs(self) -> tuple[str, ...]:
        return self.layer.edge_inputs

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        self.layer.check_input(x_src, x_dst)

    def prepare(self, graph: Graph) -> Graph:
        return self.layer.prepare(graph)

    def edge_features(self, graph: Graph) -> Any:
        return self.layer.edge_features(graph)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Any, graph: Graph) -> Tensor:
        return self.layer.message_and_aggregate(x_src, x_dst, edge, graph)

    def reset_parameters(self) -> None:
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()


class GRUUpdate(_Wrapper):
    """``h_v' = GRU(m_v, h_v)`` with ``m_v`` the output of ``layer`` (its message, aggregation and
    own update, e.g. :class:`gnnkit.nn.EdgeNetworkConv`'s bias): Gilmer's ``U_t`` for message
    functions without a recurrent update of their own.

    Args:
        layer: the message function (output width ``message_channels``).
        channels: the node state width ``d`` (the GRU's hidden size).
        message_channels: the width of ``layer``'s output (default ``channels``).
        message_scale: a constant factor on ``m_v`` before the GRU (1: none), e.g. ``1 / (mean
            in-degree)`` to keep a sum over many neighbours at the scale of the GRU's state.

    Shapes:
        x ``[N, d]`` -> ``[N, d]``.
    """

    def __init__(self, layer: MessagePassing, channels: int, message_channels: int | None = None,
                 message_scale: float = 1.0) -> None:  # fmt: skip
        super().__init__(_check_layer(layer).aggr)
        self._wrap(layer)
        if not (isinstance(message_scale, (int, float)) and message_scale > 0 and math.isfinite(message_scale)):
            raise ValueError(f"message_scale must be a finite number > 0, got {message_scale!r}")
        self.message_scale = float(message_scale)
        self.channels = _positive("channels", channels)
        self.message_channels = channels if message_channels is None else _positive("message_channels", message_channels)
        self.gru = nn.GRUCell(self.message_channels, channels)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Any, graph: Graph) -> Tensor:
        return self.layer.update(x_dst, self.layer.message_and_aggregate(x_src, x_dst, edge, graph))

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        if self.message_scale != 1.0:
            aggregated = aggregated * self.message_scale
        return self.gru(aggregated, x_dst)

    def extra_repr(self) -> str:
        scale = f", message_scale={self.message_scale:g}" if self.message_scale != 1.0 else ""
        return f"channels={self.channels}, message_channels={self.message_channels}{scale}"


class MasterNode(_Wrapper):
    """Gilmer's master node (Section 5.2): a latent node joined to every node of its graph by a
    special edge type, with its own width ``d_master`` and its own GRU. Written on the base's graph
    hooks, so it is a graph-level state ``u`` (``[num_graphs, d_master]``), not a node in the edge
    list, and one step of :meth:`step` is synchronous, exactly as one more node would be::

        m_v   = (layer's aggregated messages)_v + R h_M          (R: d_master -> message width)
        h_v'  = layer.update(h_v, m_v)
        h_M'  = GRU_M(sum_v W h_v, h_M)                           (W: d -> d_master)

    ``R`` and ``W`` are the special edge type's message matrices in the two directions (no bias,
    as a typed message ``A_e h``); ``GRU_M`` is a ``torch.nn.GRUCell(d_master, d_master)``. The
    master's state starts at zero (:meth:`initial_state`).

    Args:
        layer: the node layer (its ``update`` receives ``m_v``; e.g. a :class:`GRUUpdate` or
            :class:`gnnkit.nn.GGNNConv`).
        channels: node state width ``d``.
        master_channels: ``d_master``.
        message_channels: width of ``layer``'s aggregated messages (default ``channels``;
            ``2 * channels`` for GG-NN's two directions).

    Shapes:
        x ``[N, d]``, u ``[num_graphs, d_master]`` -> ``([N, d], [num_graphs, d_master])``.
    """

    def __init__(self, layer: MessagePassing, channels: int, master_channels: int, message_channels: int | None = None) -> None:
        super().__init__(_check_layer(layer).aggr)
        self._wrap(layer)
        self.channels = _positive("channels", channels)
        self.master_channels = _positive("master_channels", master_channels)
        self.message_channels = channels if message_channels is None else _positive("message_channels", message_channels)
        self.read = nn.Linear(self.master_channels, self.message_channels, bias=False)  # master -> node
        self.write = nn.Linear(channels, self.master_channels, bias=False)  # node -> master
        self.gru = nn.GRUCell(self.master_channels, self.master_channels)

    def initial_state(self, graph: Graph, like: Tensor) -> Tensor:
        """The master states before the first step: zeros ``[num_graphs, d_master]``."""
        return like.new_zeros(graph.num_graphs, self.master_channels)

    def node_update(self, x_dst: Tensor, aggregated: Tensor, u: Tensor | None) -> Tensor:
        if u is None:
            raise ValueError("MasterNode needs the master states: call step(x, graph, edge, u) with u = initial_state(...)")
        return self.layer.update(x_dst, aggregated + self.read(u))

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        raise ValueError("MasterNode carries a graph-level state: run step(x, graph, edge, u), not propagate/forward")

    def graph_update(self, u: Tensor, nodes: Tensor, edges: Tensor | None) -> Tensor:
        return self.gru(self.write(nodes), u)  # W is linear, so sum_v W h_v = W sum_v h_v

    def extra_repr(self) -> str:
        return f"channels={self.channels}, master_channels={self.master_channels}, message_channels={self.message_channels}"


class Towers(MessagePassing):
    """Gilmer's towers (Section 5.3, eq. 5): the node states of width ``d`` are split into ``k``
    slices of ``d / k``; each slice runs its own copy of a layer (own message and update
    functions), and the results are mixed by a network ``g`` shared over all nodes::

        h~_v^{t+1,i} = layer_i(h^{t,i})_v          (i = 1..k)
        h_v^{t+1}    = g([h~_v^{t+1,1}, ..., h~_v^{t+1,k}])

    A step costs about ``1/k`` of the dense layer's ``d x d`` work. Usable around any gnnkit
    message-passing layer whose input and output width is the slice width.

    Args:
        layer_factory: builds one tower's layer from the slice width ``d / k`` (e.g.
            ``lambda c: GRUUpdate(EdgeNetworkConv(c, c, root_weight=False, edge_dim=edge_dim), c)``).
        towers: ``k``.
        channels: ``d`` (a multiple of ``k``).
        mix: the network ``g`` (``[*, d] -> [*, d]``); default ``Linear(d, d) -> ReLU -> Linear(d, d)``.

    Shapes:
        x ``[N, d]`` -> ``[N, d]``.
    """

    def __init__(self, layer_factory: Callable[[int], MessagePassing], towers: int, channels: int, mix: nn.Module | None = None) -> None:
        k, d = _positive("towers", towers), _positive("channels", channels)
        if d % k:
            raise ValueError(f"channels={d} must be a multiple of towers={k}")
        layers = [_check_layer(layer_factory(d // k)) for _ in range(k)]
        super().__init__(layers[0].aggr, flow=_inner_flow(*layers))
        self.edge_input = layers[0].edge_input  # type: ignore[misc]  # per instance: the towers'
        self.towers, self.channels = k, d
        self.layers = nn.ModuleList(layers)
        self.mix = mix if mix is not None else nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src.dim() != 2 or x_src.size(1) != self.channels or x_dst.size(-1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {tuple(x_src.shape)}")
        src = x_src.chunk(self.towers, dim=1)
        dst = src if x_dst is x_src else x_dst.chunk(self.towers, dim=1)
        for layer, s, t in zip(self.layers, src, dst):
            layer.check_input(s, t)

    @property
    def edge_inputs(self) -> tuple[str, ...]:
        return _edge_inputs(*self.layers)

    def prepare(self, graph: Graph) -> Graph:
        for layer in self.layers:
            graph = layer.prepare(graph)
        return graph

    def edge_features(self, graph: Graph) -> tuple[Any, ...]:
        """One tower's edge features each (their edge functions are their own)."""
        return tuple(layer.edge_features(graph) for layer in self.layers)

    def propagate(self, x: NodeInput, graph: Graph, edge: Any) -> Tensor:
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        graph = self.explained(graph)
        src = x_src.chunk(self.towers, dim=1)
        dst = src if x_dst is x_src else x_dst.chunk(self.towers, dim=1)
        out = [layer.propagate(s if s is t else (s, t), graph, e) for layer, s, t, e in zip(self.layers, src, dst, edge)]
        return self.mix(torch.cat(out, dim=1))

    def step(self, x: NodeInput, graph: Graph, edge: Any, u: Tensor | None = None) -> GraphState:
        if u is not None:
            raise ValueError("Towers carries no graph state of its own: put a MasterNode inside each tower's layer")
        return GraphState(self.propagate(x, graph, edge), edge, None)

    def reset_parameters(self) -> None:
        for layer in self.layers:
            layer.reset_parameters()
        for m in self.mix.modules():
            if m is not self.mix and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return f"towers={self.towers}, channels={self.channels}"


class Bidirectional(MessagePassing):
    """Gilmer's directed form (Section 5.1): separate message functions for a node's incoming and
    outgoing edges, the two aggregates concatenated::

        m_v = [ incoming(h)_v ,  outgoing over the reversed edges(h)_v ]     (2 d)

    An undirected graph given as both directions of every edge (PyG's convention, gnnkit's QM9)
    is then treated as directed with each bond once incoming and once outgoing with the same
    label; the direction only decides which function's weights an edge uses. The reversed graph
    is built once per graph (:meth:`prepare`, sorted without a host read) with each entry's origin,
    so an explainer's mask scales both directions' message of an edge. Wrap it in
    :class:`GRUUpdate` with ``message_channels = 2 d`` for Gilmer's update.

    Args:
        incoming: the layer over the edges (``w -> v`` sends to ``v``).
        outgoing: the layer over the reversed edges (``v -> w`` sends ``h_w`` to ``v``).

    Shapes:
        x ``[N, d]`` -> ``[N, d_in + d_out]`` (the two layers' output widths).
    """

    operator_key: ClassVar[OperatorKey]  # REVERSED, set below the class

    def __init__(self, incoming: MessagePassing, outgoing: MessagePassing) -> None:
        super().__init__(_check_layer(incoming).aggr, flow=_inner_flow(incoming, _check_layer(outgoing)))
        self.incoming, self.outgoing = incoming, outgoing
        self.edge_input = incoming.edge_input  # type: ignore[misc]  # the third argument of forward

    @property
    def edge_inputs(self) -> tuple[str, ...]:
        return _edge_inputs(self.incoming, self.outgoing)

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src is not x_dst:
            raise ValueError("Bidirectional received a (x_src, x_dst) pair: its messages run along and against the edges, so it needs one node set")
        self.incoming.check_input(x_src, x_dst)
        self.outgoing.check_input(x_src, x_dst)

    def prepare(self, graph: Graph) -> Graph:
        """Adds the reversed graph (shared by every Bidirectional layer of a model) with what the
        outgoing layer precomputes on it."""
        graph = self.incoming.prepare(graph)
        rev = graph.operators.get(REVERSED)
        if rev is None:
            csr = graph.csr
            rev_csr = CSR.from_trusted(csr.row, csr.col, csr.num_dst, csr.num_src)  # "edge_index" order = graph's csr order

            def flip(t: Tensor | None) -> Tensor | None:
                return None if t is None else t.index_select(0, rev_csr.perm)

            rev = graph.replace(
                csr=rev_csr, edge_attr=flip(graph.edge_attr), edge_weight=flip(graph.edge_weight),
                edge_type=flip(graph.edge_type), edge_graph=flip(graph.edge_graph), buckets=None, operators={},
                origin=rev_csr.perm,
            )  # fmt: skip
        prepared = self.outgoing.prepare(rev)  # cheap on a graph it prepared before
        return graph if prepared is graph.operators.get(REVERSED) else graph.with_operator(REVERSED, prepared)

    def edge_features(self, graph: Graph) -> tuple[Any, Any]:
        return self.incoming.edge_features(graph), self.outgoing.edge_features(graph.operator(REVERSED))

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Any, graph: Graph) -> Tensor:
        rev = graph.operators[REVERSED]
        if graph.edge_mask is not None:
            rev = rev.replace(edge_mask=operator_mask(graph.edge_mask, rev, REVERSED))
        a_in = self.incoming.update(x_dst, self.incoming.message_and_aggregate(x_src, x_dst, edge[0], graph))
        a_out = self.outgoing.update(x_dst, self.outgoing.message_and_aggregate(x_src, x_dst, edge[1], rev))
        return torch.cat([a_in, a_out], dim=-1)

    def reset_parameters(self) -> None:
        self.incoming.reset_parameters()
        self.outgoing.reset_parameters()


REVERSED = OperatorKey(Bidirectional)  # the reversed graph, each entry's origin its edge in the graph
Bidirectional.operator_key = REVERSED

__all__ = ["GRUUpdate", "MasterNode", "Towers", "Bidirectional"]
