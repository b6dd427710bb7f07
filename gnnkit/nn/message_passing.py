"""The message -> aggregate -> update base class that every gnnkit layer is written on.

One layer of message passing (Gilmer et al. 2017, eq. 1-2)::

    m_v  = AGG_{u -> v} message(h_u, h_v, e_uv)
    h_v' = update(h_v, m_v)

A subclass overrides plain methods with fixed signatures; nothing is inferred from argument names:

* ``check_input(x_src, x_dst)``: shape checks of the node features (``forward`` only).
* ``prepare(graph)``: what the layer precomputes once per graph (normalised weights, degree
  buckets, ...), returned as a new :class:`Graph` (operators under the layer's
  :class:`~gnnkit.nn.graph.OperatorKey`); it also checks the graph suits the layer.
* ``edge_features(graph)``: the per-edge input of ``message`` (default: the graph's tensor named by
  :attr:`edge_input`), computed once per forward.
* ``message(x_src, x_dst, edge)``: per-edge messages from the gathered endpoint rows.
* ``aggregate(messages, graph)``: reduction into the targets (a sorted segment reduction).
* ``message_and_aggregate(x_src, x_dst, edge, graph)``: the two above fused; override it with a
  kernel that never builds the ``E x F`` messages, through the base's primitives
  :meth:`~MessagePassing.spmm`, :meth:`~MessagePassing.outer_aggregate` and
  :meth:`~MessagePassing.message_count` (or :meth:`~MessagePassing.aggregate` on per-edge terms).
* ``update(x_dst, aggregated)``: the new node states.

**Edge and graph state: the graph-network step.** :meth:`MessagePassing.step` is one step of a
graph network (Battaglia et al. 2018; jraph's ``GraphNetwork``): node states ``x``, edge states
``edge`` and graph states ``u`` (``[num_graphs, d_u]``) in, the same three out, through three more
hooks with plain signatures::

    edge' = edge_update(edge, x_src[src], x_dst[dst], u[edge's graph])    (default: edge)
    m     = message_and_aggregate(x_src, x_dst, edge', graph)             (as above)
    x'    = node_update(x_dst, m, u[node's graph])                         (default: update(x_dst, m))
    u'    = graph_update(u, pool(x_dst), pool(edge') or None)              (default: u)

Nodes and graph states are updated synchronously (both read the states of step ``t``), so a
graph-level state updated from the pooled node states is exactly one more node joined to every
node (Gilmer's master node, see :class:`gnnkit.nn.MasterNode`); jraph pools the already updated
nodes instead. The messages read the updated edge states ``edge'``, as in Battaglia et al. 2018's
GN block and jraph; a layer whose messages read the step's input edge states instead (Kearnes et
al.'s weave, where every state of step ``t + 1`` is a function of those of step ``t``) sets the
class attribute :attr:`messages_read_old_edges`. Broadcasting and pooling are index operations
with the sizes the :class:`Graph` carries (nothing syncs). Only the hooks a layer uses cost
anything: without an edge update (:attr:`updates_edges`) no endpoint row is gathered, without a
``graph_update`` nothing is pooled.

:meth:`MessagePassing.propagate` is the node-only fast path: ``update(x_dst,
message_and_aggregate(...))`` with the edge features fixed for the whole forward. It is what
``forward`` runs and what a model repeats for tied steps whose edges carry no changing state;
there, a fused kernel (e.g. the outer-product aggregation of :class:`gnnkit.nn.EdgeNetworkConv`,
whose edge MLP's hidden layer is computed once per forward) is valid because the edge features
do not change between steps. A layer whose edges carry a state updated every step runs
:meth:`step`, and its message sees the new edge state.

``forward`` is never overridden. It accepts PyG's inputs (``x``, ``edge_index`` with row 0 =
source, and the layer's per-edge input: a third positional argument is the tensor named by the
class attribute :attr:`edge_input`, as PyG's ``GCNConv`` takes ``edge_weight`` there and ``NNConv``
``edge_attr``), builds and validates the :class:`Graph`, and runs one step. A model that runs
several steps builds the graph once, calls :meth:`prepare` and :meth:`edge_features` once, and
repeats :meth:`propagate` (or :meth:`step`): the unchecked step, the same code ``forward`` runs.

**The explainer contract.** An explainer's edge mask (``explain=True``, ``_edge_mask`` in the
order of the ``edge_index`` the layer is called with, as PyG's ``torch_geometric.explain`` sets
it) scales each edge's message, in every layer, once: :meth:`propagate` and :meth:`step` put it on
the graph (:attr:`Graph.edge_mask`, csr order, sigmoid applied as in PyG), and the base's
primitives (:meth:`aggregate`, :meth:`spmm`, :meth:`outer_aggregate`, :meth:`message_count`)
apply it, to fused kernels as an edge weight and to precomputed operators through their
:attr:`Graph.origin` (an added self-loop is not masked, as in PyG). A layer written on these
primitives cannot forget it; a layer over an operator with no edge correspondence (TDGNN's
multi-hop tree) raises one clear error. A filter that applies an operator several times
(:class:`gnnkit.nn.ChebConv`'s ``T_k(L~)``) is masked at every application, as PyG masks every
``propagate`` call.

PyG interoperation. The class is registered as a ``torch_geometric.nn.MessagePassing`` subclass so
that PyG's tooling recognises gnnkit layers (``to_hetero`` sums their outputs per destination node
type; ``torch_geometric.explain`` sets its edge masks on them), but none of PyG's machinery runs:
``__init__`` is ``nn.Module``'s, and every method PyG's tools call is defined here. Under
``torch.fx`` tracing (``torch.fx.symbolic_trace``, PyG's ``to_hetero``) a layer is recorded as one
``call_module`` node, so models built from gnnkit layers trace.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing as PygMessagePassing

from gnnkit.nn.graph import Graph, OperatorKey, adjacency_edges, is_adjacency
from gnnkit.ops import CSR, outer_aggregate_unchecked, segment_unchecked, spmm_unchecked

Aggr = Literal["sum", "mean", "max", "min"]
EdgeInput = Literal["edge_attr", "edge_weight", "edge_type"]
_AGGRS: tuple[str, ...] = ("sum", "mean", "max", "min")
NodeInput = Tensor | tuple[Tensor, Tensor]


class GraphState(NamedTuple):
    """What :meth:`MessagePassing.step` returns: node states ``x`` ``[N, F]``, edge states
    ``edge`` (``[E, *]`` in csr order, or ``None``) and graph states ``u`` (``[num_graphs, d_u]``,
    or ``None``)."""

    x: Tensor
    edge: Tensor | None
    u: Tensor | None


def fx_proxy(*values: Any) -> torch.fx.Proxy | None:
    """The first ``torch.fx.Proxy`` among ``values`` (looking into tuples), if any: a module called
    with one is being traced symbolically."""
    for v in values:
        if isinstance(v, torch.fx.Proxy):
            return v
        if isinstance(v, tuple):
            found = fx_proxy(*v)
            if found is not None:
                return found
    return None


def record_call(module: nn.Module, proxy: torch.fx.Proxy, args: tuple, kwargs: dict) -> torch.fx.Proxy:
    """Records ``module(*args, **kwargs)`` as one ``call_module`` node of the graph being traced."""
    tracer = proxy.tracer
    return tracer.create_proxy("call_module", tracer.path_of_module(module), args, kwargs)


class MessagePassing(PygMessagePassing):
    """Base class for message-passing layers.

    Args:
        aggr: how messages arriving at a node are reduced: ``"sum"``, ``"mean"``, ``"max"`` or
            ``"min"``. A node with no incoming edge aggregates to 0.

    Call as ``layer(x, edge_index, edge_input)`` with PyG conventions (per-edge tensors in
    ``edge_index`` order), or ``layer(x, graph)`` with a prebuilt :class:`Graph` to reuse it across
    layers and steps. ``x`` may be a ``(x_src, x_dst)`` pair for bipartite graphs.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]``, per-edge input ``[E, *]`` -> ``[N, F']``.
    """

    edge_input: ClassVar[EdgeInput] = "edge_attr"

    def __init__(self, aggr: Aggr = "sum") -> None:
        if aggr not in _AGGRS:
            raise ValueError(f"aggr must be one of {_AGGRS}, got {aggr!r}")
        nn.Module.__init__(self)  # not PyG's __init__: the PyG base is only a marker (see the module docstring)
        self.aggr = aggr
        self._explain: bool | None = None  # the explain hooks PyG's set_masks / clear_masks write
        self._edge_mask: Tensor | None = None
        self._loop_mask: Tensor | None = None
        self._apply_sigmoid = True

    def forward(
        self,
        x: NodeInput,
        edge_index: Tensor | CSR | Graph | Any,
        edge_input: Tensor | None = None,
        *,
        edge_attr: Tensor | None = None,
        edge_weight: Tensor | None = None,
        edge_type: Tensor | None = None,
    ) -> Tensor:
        proxy = fx_proxy(x, edge_index, edge_input, edge_attr, edge_weight, edge_type)
        if proxy is not None:
            kwargs = {k: v for k, v in (("edge_attr", edge_attr), ("edge_weight", edge_weight), ("edge_type", edge_type)) if v is not None}
            return record_call(self, proxy, (x, edge_index) + ((edge_input,) if edge_input is not None else ()), kwargs)
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        self.check_input(x_src, x_dst)
        edges = {"edge_attr": edge_attr, "edge_weight": edge_weight, "edge_type": edge_type}
        if edge_input is not None:
            if edges[self.edge_input] is not None:
                raise TypeError(f"{self.edge_input} given twice (positionally and by keyword)")
            edges[self.edge_input] = edge_input
        graph = self.prepare(as_graph(edge_index, x_src.size(0), x_dst.size(0), x=x_src, edge_input=self.edge_input, **edges))
        return self.propagate((x_src, x_dst), graph, self.edge_features(graph))

    def propagate(self, x: NodeInput, graph: Graph, edge: Tensor | None) -> Tensor:
        """One node-only step on a prepared graph with precomputed ``edge`` features (no checks):
        the fast path (see the module docstring)."""
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        return self.update(x_dst, self.message_and_aggregate(x_src, x_dst, edge, self.explained(graph)))

    def step(self, x: NodeInput, graph: Graph, edge: Tensor | None, u: Tensor | None = None) -> GraphState:
        """One graph-network step with node, edge and graph states (see the module docstring).

        Args:
            x: ``[N, F]`` node states, or a ``(x_src, x_dst)`` pair.
            graph: a prepared :class:`Graph` (its ``batch``/``edge_graph`` place every node and
                edge in its graph).
            edge: ``[E, *]`` edge states in csr order (or the layer's edge features), or ``None``.
            u: ``[num_graphs, d_u]`` graph states, or ``None``.

        Returns:
            :class:`GraphState` ``(x', edge', u')``.
        """
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        graph = self.explained(graph)
        cls = type(self)
        message_edge = edge
        if self.updates_edges:
            csr = graph.csr
            u_edge = graph.broadcast_edges(u) if u is not None else None
            edge = self.edge_update(edge, x_src.index_select(0, csr.col), x_dst.index_select(0, csr.row), u_edge)
            if not self.messages_read_old_edges:
                message_edge = edge
        aggregated = self.message_and_aggregate(x_src, x_dst, message_edge, graph)
        x_new = self.node_update(x_dst, aggregated, graph.broadcast_nodes(u) if u is not None else None)
        if u is not None and cls.graph_update is not MessagePassing.graph_update:
            pooled_edges = graph.pool_edges(edge, self.graph_pool) if self.graph_reads_edges and edge is not None else None
            u = self.graph_update(u, graph.pool_nodes(x_dst, self.graph_pool), pooled_edges)
        return GraphState(x_new, edge, u)

    # The graph-network hooks; the defaults leave edges and graph states unchanged.
    graph_pool: ClassVar[Literal["sum", "mean", "max"]] = "sum"  # how graph_update's inputs are pooled
    graph_reads_edges: ClassVar[bool] = False  # pool the edge states for graph_update (costs E x F)
    messages_read_old_edges: ClassVar[bool] = False  # message_and_aggregate gets the step's input edge states

    @property
    def updates_edges(self) -> bool:
        """Whether :meth:`step` runs :meth:`edge_update` (default: whether the class overrides
        it). A layer whose edge update is optional per instance (a last step whose edge states
        nobody reads) returns ``False`` there, and the step gathers no endpoint rows."""
        return type(self).edge_update is not MessagePassing.edge_update

    def edge_update(self, edge: Tensor | None, x_src: Tensor, x_dst: Tensor, u: Tensor | None) -> Tensor | None:
        """New edge states ``[E, *]`` (csr order) from the old ones, the gathered endpoint rows and
        the graph state of each edge's graph (``None`` without graph state)."""
        return edge

    def node_update(self, x_dst: Tensor, aggregated: Tensor, u: Tensor | None) -> Tensor:
        """New node states; ``u`` is each node's graph state (``[N, d_u]``) or ``None``."""
        return self.update(x_dst, aggregated)

    def graph_update(self, u: Tensor, nodes: Tensor, edges: Tensor | None) -> Tensor:
        """New graph states ``[num_graphs, d_u]`` from the old ones and this step's input node
        states (and edge states, if :attr:`graph_reads_edges`) pooled per graph."""
        return u

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        """Raises ``ValueError`` for node features of the wrong shape (default: no check)."""

    def prepare(self, graph: Graph) -> Graph:
        """``graph`` with what this layer precomputes per graph (default: nothing). Must be cheap
        on a graph it already prepared, since ``forward`` calls it every time."""
        return graph

    def edge_features(self, graph: Graph) -> Tensor | None:
        """The per-edge tensor ``message`` receives (in CSR order), once per forward."""
        return getattr(graph, self.edge_input)

    def message(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None) -> Tensor:
        """Per-edge messages ``[E, F]`` from gathered source and target rows (sorted order)."""
        return x_src

    def aggregate(self, messages: Tensor, graph: Graph, reverse: bool = False) -> Tensor:
        """Reduces the ``[E, F]`` sorted messages into ``[num_dst, F]`` (scaled by the explainer's
        mask, if any). ``reverse=True``: the messages run against the edges, in the transpose's
        order (``csr.t_*``), and are reduced into the sources."""
        csr, mask = graph.csr, graph.edge_mask
        if mask is not None:
            mask = mask.index_select(0, csr.t_perm) if reverse else mask
            messages = messages * mask.to(messages.dtype).view(-1, *([1] * (messages.dim() - 1)))
        return segment_unchecked(messages, csr.t_rowptr if reverse else csr.rowptr, self.aggr)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        """Gathers endpoint features, builds messages and aggregates them. Override with a fused
        kernel where the messages need not exist as an ``E x F`` tensor."""
        csr = graph.csr
        messages = self.message(x_src.index_select(0, csr.col), x_dst.index_select(0, csr.row), edge)
        return self.aggregate(messages, graph)

    def spmm(
        self, x: Tensor, graph: Graph, weight: Tensor | None = None, key: OperatorKey | None = None,
        reduce: Literal["sum", "mean", "max"] = "sum",
    ) -> Tensor:  # fmt: skip
        """``out[v] = reduce_u w_uv x[u]`` over ``graph`` or its operator ``key`` (weights in that
        graph's csr order), the explainer's mask folded into the weights: the fused form of
        messages ``w_uv x_u``. Nothing of size ``E x F`` is built."""
        op = graph if key is None else graph.operators[key]
        mask = graph.edge_mask
        if mask is not None:
            if key is not None:
                mask = operator_mask(mask, op, key)
            mask = mask.to(x.dtype)
            weight = mask if weight is None else weight * mask
        return spmm_unchecked(op.csr, x, weight, reduce)

    def message_count(self, graph: Graph, dtype: torch.dtype) -> Tensor:
        """``[num_dst]``: the messages each target receives, each counted with the explainer's
        mask (the in-degree when there is none). A fused kernel needs it where every message
        carries the same constant term, summed without building the messages:
        ``sum_w mask_vw (W z_vw + b) = W (sum_w mask_vw z_vw) + message_count(v) b``."""
        csr, mask = graph.csr, graph.edge_mask
        if mask is None:
            return csr.degree(dtype)
        return segment_unchecked(mask.to(dtype).unsqueeze(1), csr.rowptr, "sum").squeeze(1)

    def outer_aggregate(self, z: Tensor, x_src: Tensor, graph: Graph) -> Tensor:
        """``S[v] = sum_{e = (w -> v)} z_e ⊗ x_w`` (``[num_dst, K, d]``, :func:`gnnkit.ops.outer_aggregate`)
        with the explainer's mask folded into ``z``: the fused form of messages linear in ``z_e``."""
        if graph.edge_mask is not None:
            z = z * graph.edge_mask.to(z.dtype).unsqueeze(1)
        return outer_aggregate_unchecked(graph.csr, z, x_src, graph.buckets)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        """New node states from the old target features and the aggregated messages."""
        return aggregated

    def explain_weights(self, graph: Graph) -> Tensor | None:
        """The explainer's edge mask in ``graph``'s CSR order (sigmoid applied as PyG does), or
        ``None`` when the layer is not being explained."""
        if self._explain is not True:
            return None
        mask = self._edge_mask
        if mask is None:
            raise ValueError("explain=True but no edge mask was set (torch_geometric.explain sets it)")
        if mask.numel() != graph.num_edges:
            raise ValueError(f"the edge mask has {mask.numel()} entries but the graph has {graph.num_edges} edges")
        if self._apply_sigmoid:
            mask = mask.sigmoid()
        return mask.index_select(0, graph.csr.perm)

    def explained(self, graph: Graph) -> Graph:
        """``graph`` carrying this layer's explainer mask (:attr:`Graph.edge_mask`) when it is being
        explained and the graph has none yet (a wrapper's mask reaches the layers inside it)."""
        if self._explain is not True or graph.edge_mask is not None:
            return graph
        return graph.replace(edge_mask=self.explain_weights(graph))

    # PyG's base class supplies these with its own machinery; gnnkit layers use nn.Module's.
    @property
    def explain(self) -> bool | None:
        return self._explain

    @explain.setter
    def explain(self, explain: bool | None) -> None:
        self._explain = explain

    def reset_parameters(self) -> None:
        """Re-initialises the layer's parameters (layers with parameters override it)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        nn.Module.__setstate__(self, state)

    def __repr__(self) -> str:
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        return f"aggr={self.aggr!r}"


def operator_mask(mask: Tensor, op: Graph, key: OperatorKey) -> Tensor:
    """The edge mask (csr order of the graph) in the order of its operator ``op``: each entry takes
    the mask of the edge it stands for (:attr:`Graph.origin`), an added entry 1."""
    if op.origin is None:
        raise ValueError(
            f"the {key!r} operator's entries are not the graph's edges (they have no origin), so an "
            "explainer's edge mask has no meaning for a layer that propagates over it"
        )
    return torch.where(op.origin >= 0, mask.index_select(0, op.origin.clamp(min=0)), mask.new_ones(()))


def as_graph(
    edge_index: Tensor | CSR | Graph | Any,
    num_src: int,
    num_dst: int | None = None,
    *,
    x: Tensor | None = None,
    edge_attr: Tensor | None = None,
    edge_weight: Tensor | None = None,
    edge_type: Tensor | None = None,
    edge_input: str | None = None,
) -> Graph:
    """The :class:`Graph` of a layer's graph argument for ``num_src -> num_dst`` nodes: built and
    validated from an ``edge_index`` (int64/int32, or PyG's ``EdgeIndex``), a sparse adjacency
    ``adj_t`` (``torch.sparse`` COO/CSR or a ``SparseTensor``, transposed as in PyG: its stored
    values become the per-edge input ``edge_input`` names), or a prebuilt
    :class:`gnnkit.ops.CSR`, with per-edge tensors in ``edge_index`` order (and the source
    features ``x``, whose dtype precomputations follow); or a prebuilt ``Graph`` checked against
    the node counts."""
    num_dst = num_src if num_dst is None else num_dst
    given = {k: v for k, v in (("edge_attr", edge_attr), ("edge_weight", edge_weight), ("edge_type", edge_type)) if v is not None}
    if is_adjacency(edge_index):
        edge_index, values, (adj_src, adj_dst) = adjacency_edges(edge_index)
        if (adj_src, adj_dst) != (num_src, num_dst):
            raise ValueError(
                f"adj_t has shape [{adj_dst}, {adj_src}] (targets x sources), but x has {num_src} -> {num_dst} rows"
            )
        if edge_input is not None and edge_input not in given and values is not None:
            given[edge_input] = values  # the stored values are the layer's per-edge input, as in PyG
    if isinstance(edge_index, Graph):
        if given:
            raise TypeError(
                f"pass per-edge tensors ({', '.join(given)}) when building the Graph "
                "(Graph.from_edge_index(..., edge_attr=...)), not with a prebuilt one"
            )
        graph = edge_index
    elif isinstance(edge_index, CSR):
        graph = Graph.from_csr(edge_index, x=x, **given)
    else:
        size = num_src if num_src == num_dst else (num_src, num_dst)
        graph = Graph.from_edge_index(edge_index, size, x=x, **given)
    if graph.csr.num_src != num_src or graph.csr.num_dst != num_dst:
        raise ValueError(
            f"the graph was built for {graph.csr.num_src} -> {graph.csr.num_dst} nodes, "
            f"but x has {num_src} -> {num_dst} rows"
        )
    return graph
