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
:meth:`step`, and its message sees the new edge state (or the step's input one, with
:attr:`messages_read_old_edges`).

``forward`` is never overridden. It accepts PyG's inputs (``x``, ``edge_index`` with row 0 =
source, and the layer's per-edge input: a third positional argument is the tensor named by the
class attribute :attr:`edge_input`, as PyG's ``GCNConv`` takes ``edge_weight`` there and ``NNConv``
``edge_attr``; a layer without one, ``edge_input = None``, takes ``size`` there, as PyG's
``GINConv``), builds and validates the :class:`Graph`, and runs one step. Also PyG's: ``size=``
``(num_src, num_dst)``, ``(x_src, None)`` pairs (``x_dst=None`` reaches :meth:`update`), the
``flow`` attribute (``"target_to_source"`` reverses ``edge_index``), a static-graph ``x [B, N, F]``
for layers with :attr:`static_graph` (run as ``B`` disjoint copies of the graph), and ``x=None``
for layers that define :meth:`featureless_input`. A per-edge tensor the layer does not read (its
:attr:`edge_inputs`: its :attr:`edge_input`, or its inner layers' for a wrapper) raises
``TypeError``: nothing passed is silently dropped. A model that runs
several steps builds the graph once, calls :meth:`prepare` and :meth:`edge_features` once, and
repeats :meth:`propagate` (or :meth:`step`): the unchecked step, the same code ``forward`` runs.

**The explainer contract.** An explainer's edge mask (``explain=True``, ``_edge_mask`` in the
order of the ``edge_index`` the layer is called with, as PyG's ``torch_geometric.explain`` sets
it) scales each edge's message, in every layer, once: :meth:`propagate` and :meth:`step` put it on
the graph (:attr:`Graph.edge_mask`, csr order, sigmoid applied as in PyG), and the base's
primitives (:meth:`aggregate`, also with ``group=``, :meth:`spmm` with any reduction,
:meth:`outer_aggregate`, :meth:`message_count`) apply it, to fused kernels as an edge weight and to
precomputed operators through their :attr:`Graph.origin` (an added self-loop is not masked, as in
PyG). With ``flow="target_to_source"`` each edge keeps its mask; the static-graph call gives every
copy of the graph the mask. A layer written on these primitives cannot forget it; a layer over an
operator with no edge correspondence (TDGNN's multi-hop tree) raises one clear error. A filter
that applies an operator several times (:class:`gnnkit.nn.ChebConv`'s ``T_k(L~)``) is masked at
every application, as PyG masks every ``propagate`` call.

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
from gnnkit.ops import CSR, outer_aggregate_unchecked, scatter_unchecked, segment_unchecked, spmm_unchecked
from gnnkit.ops._checks import values_checked
from gnnkit.ops.outer_linear import fused_outer_linear_applies, outer_linear_unchecked

Aggr = Literal["sum", "add", "mean", "max", "min"]
EdgeInput = Literal["edge_attr", "edge_weight", "edge_type"]
_AGGRS: tuple[str, ...] = ("sum", "mean", "max", "min")
_AGGR_ALIASES = {"add": "sum"}  # PyG's name for a sum
_FLOWS: tuple[str, ...] = ("source_to_target", "target_to_source")
NodeInput = Tensor | tuple[Tensor, Tensor]
Size = tuple[int | None, int | None] | list | torch.Size | None


def canonical_aggr(aggr: str, allowed: tuple[str, ...] = _AGGRS, layer: str = "the layer") -> str:
    """``aggr`` with PyG's ``"add"`` read as ``"sum"``; ``ValueError`` unless it is in ``allowed``."""
    name = _AGGR_ALIASES.get(aggr, aggr) if isinstance(aggr, str) else aggr
    if name not in allowed:
        raise ValueError(f"{layer} supports aggr in {allowed + ('add',) if 'sum' in allowed else allowed}, got {aggr!r}")
    return name


class _Absent:
    """A method of PyG's ``MessagePassing`` that gnnkit layers do not have: reading it raises
    ``AttributeError`` (so ``hasattr`` is ``False``) with the reason and the alternative."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        owner = (objtype or type(obj)).__name__
        raise AttributeError(f"{owner} has no {self.name!r}: {self.reason}")


_NO_HOOKS = (
    "gnnkit layers fuse message and aggregation (no E x F message tensor exists for a hook to see) "
    "and run no PyG propagate; use nn.Module's register_forward_pre_hook / register_forward_hook"
)


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

    edge_input: ClassVar[EdgeInput | None] = "edge_attr"
    #: whether ``forward`` takes a static-graph batch ``x [B, N, F]`` (one graph, ``B`` feature sets)
    static_graph: ClassVar[bool] = False

    def __init__(
        self,
        aggr: Aggr = "sum",
        *,
        flow: str = "source_to_target",
        node_dim: int = -2,
        decomposed_layers: int = 1,
        aggr_kwargs: dict[str, Any] | None = None,
    ) -> None:
        nn.Module.__init__(self)  # not PyG's __init__: the PyG base is only a marker (see the module docstring)
        name = type(self).__name__
        self.aggr = canonical_aggr(aggr, _AGGRS, name)
        self.aggr_name = aggr  # as the user spelt it (PyG prints "add")
        if flow not in _FLOWS:
            raise ValueError(f"flow must be one of {_FLOWS}, got {flow!r}")
        self.flow = flow
        # PyG's other base options: what gnnkit cannot honour is refused, not ignored.
        # nodes are the rows of x [N, F] (0 and -2 alike), and dim -2 of a static-graph x [B, N, F]
        if node_dim != -2 and (node_dim != 0 or type(self).static_graph):
            raise ValueError(f"{name}: node_dim={node_dim} is not supported (nodes are the rows of x, node_dim=-2)")
        if decomposed_layers != 1:
            raise ValueError(
                f"{name}: decomposed_layers={decomposed_layers} is not supported (gnnkit layers never build the "
                "E x F message tensor that PyG decomposes to save memory)"
            )
        if aggr_kwargs:
            raise ValueError(f"{name}: aggr_kwargs are not supported (aggr is one of {_AGGRS})")
        self._explain: bool | None = None  # the explain hooks PyG's set_masks / clear_masks write
        self._edge_mask: Tensor | None = None
        self._loop_mask: Tensor | None = None
        self._apply_sigmoid = True

    def forward(
        self,
        x: NodeInput | None,
        edge_index: Tensor | CSR | Graph | Any,
        edge_input: Tensor | Size = None,
        size: Size = None,
        *,
        edge_attr: Tensor | None = None,
        edge_weight: Tensor | None = None,
        edge_type: Tensor | None = None,
    ) -> Tensor:
        proxy = fx_proxy(x, edge_index, edge_input, edge_attr, edge_weight, edge_type)
        if proxy is not None:
            kwargs = {k: v for k, v in (("edge_attr", edge_attr), ("edge_weight", edge_weight), ("edge_type", edge_type), ("size", size)) if v is not None}
            return record_call(self, proxy, (x, edge_index) + ((edge_input,) if edge_input is not None else ()), kwargs)
        name = type(self).__name__
        if isinstance(edge_input, (tuple, list)):  # PyG's forward(x, edge_index, size) of a layer without edge input
            if size is not None:
                raise TypeError("size given twice (positionally and by keyword)")
            edge_input, size = None, edge_input
        edges = {"edge_attr": edge_attr, "edge_weight": edge_weight, "edge_type": edge_type}
        if edge_input is not None:
            if self.edge_input is None:
                raise TypeError(f"{name} takes no per-edge input, got a {type(edge_input).__name__} as third argument")
            if edges[self.edge_input] is not None:
                raise TypeError(f"{self.edge_input} given twice (positionally and by keyword)")
            edges[self.edge_input] = edge_input
        used = self.edge_inputs
        for key, value in edges.items():
            if value is not None and key not in used:  # never silently dropped
                takes = f"takes {' and '.join(used)}" if used else "takes no per-edge input"
                raise TypeError(f"{name} does not use {key} ({takes})")
        if isinstance(x, Tensor) and x.dim() == 3 and self.static_graph and not x.is_sparse:
            return self._forward_static(x, edge_index, edges, size)
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ValueError(f"x must be a tensor or an (x_src, x_dst) pair, got {len(x)} entries")
            x_src, x_dst = x
            if x_src is None:
                x_src = self.featureless_input()
        else:
            x_src = x_dst = self.featureless_input() if x is None else x
        return self._checked_step(x_src, x_dst, edge_index, edges, size)

    def _checked_step(
        self, x_src: Tensor, x_dst: Tensor | None, edge_index: Any, edges: dict[str, Tensor | None], size: Size,
        copies: int = 1,
    ) -> Tensor:  # fmt: skip
        """What ``forward`` runs once its arguments are sorted out: the flow, the checks, the
        graph, one step. ``copies > 1``: ``edge_index`` is that many disjoint copies of the graph
        an explainer's mask was set for (the static-graph call), and every copy takes the mask."""
        name = type(self).__name__
        edge_index = self._apply_flow(edge_index)
        if self.edge_input is None and is_adjacency(edge_index):
            values = adjacency_edges(edge_index)[1]
            if values is not None and values_checked() and not bool((values == 1).all()):
                raise ValueError(f"adj_t carries edge values other than 1, which {name} does not use (it takes no per-edge input)")
        num_src, num_dst = self._node_counts(x_src, x_dst, edge_index, size)
        self.check_input(x_src, x_dst)
        graph = self.prepare(as_graph(edge_index, num_src, num_dst, x=x_src, edge_input=self.edge_input, **edges))
        if copies > 1 and self._explain is True:
            graph = graph.replace(edge_mask=self.explain_weights(graph, copies))
        return self.propagate((x_src, x_dst), graph, self.edge_features(graph))

    @property
    def edge_inputs(self) -> tuple[str, ...]:
        """The per-edge tensors the layer reads (``forward`` refuses any other): its
        :attr:`edge_input`; a layer built from layers reads theirs."""
        return (self.edge_input,) if self.edge_input is not None else ()

    def featureless_input(self) -> Tensor:
        """The source features used for ``x=None`` (a layer with learned node embeddings, like
        :class:`gnnkit.nn.RelationalConv`, overrides it; the default refuses)."""
        raise TypeError(f"{type(self).__name__} needs node features: x is None")

    def _apply_flow(self, edge_index: Any) -> Any:
        """``edge_index`` read in the direction of :attr:`flow` (PyG's ``"target_to_source"``: row 1
        sends, row 0 receives)."""
        if self.flow == "source_to_target":
            return edge_index
        if self.flow != "target_to_source":
            raise ValueError(f"flow must be one of {_FLOWS}, got {self.flow!r}")
        if not isinstance(edge_index, Tensor) or is_adjacency(edge_index):
            raise ValueError(
                "flow='target_to_source' needs an edge_index tensor; a sparse adjacency, CSR or Graph "
                "already fixes the direction (as in PyG)"
            )
        return edge_index.flip(0)

    def _node_counts(self, x_src: Tensor, x_dst: Tensor | None, edge_index: Any, size: Size) -> tuple[int, int]:
        """``(num_src, num_dst)`` from the features, PyG's ``size`` and the graph argument,
        which must agree."""
        num_src, num_dst = x_src.size(0), (x_dst.size(0) if x_dst is not None else None)
        if size is not None:
            if len(size) != 2:
                raise ValueError(f"size must be (num_src, num_dst), got {tuple(size)}")
            for which, given, have in (("source", size[0], num_src), ("target", size[1], num_dst)):
                if given is not None and have is not None and int(given) != have:
                    raise ValueError(f"size={tuple(size)} gives {given} {which} nodes but x has {have}")
            if num_dst is None and size[1] is not None:
                num_dst = int(size[1])
        if num_dst is None:
            if is_adjacency(edge_index):
                num_dst = adjacency_edges(edge_index)[2][1]
            elif isinstance(edge_index, Graph):
                num_dst = edge_index.csr.num_dst
            elif isinstance(edge_index, CSR):
                num_dst = edge_index.num_dst
            else:
                raise ValueError("x is an (x_src, None) pair: pass size=(num_src, num_dst) to give the number of targets")
        return num_src, num_dst

    def _forward_static(self, x: Tensor, edge_index: Any, edges: dict[str, Tensor | None], size: Size) -> Tensor:
        """PyG's static-graph call ``x [B, N, F]``: ``B`` feature sets on one graph, run as one
        batch of ``B`` disjoint copies of the graph."""
        b, n = x.size(0), x.size(1)
        if not isinstance(edge_index, Tensor) or is_adjacency(edge_index):
            raise TypeError("a static-graph x [B, N, F] needs an edge_index tensor")
        if size is not None and tuple(size) not in ((n, n), (None, None), (n, None), (None, n)):
            raise ValueError(f"size={tuple(size)} does not match x [B, N, F] with N={n}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        offsets = torch.arange(b, device=edge_index.device, dtype=edge_index.dtype).mul_(n).view(1, b, 1)
        copies = (edge_index.unsqueeze(1) + offsets).reshape(2, -1)
        repeated = {k: (v.repeat(b, *([1] * (v.dim() - 1))) if v is not None else None) for k, v in edges.items()}
        flat = x.reshape(b * n, x.size(2))
        out = self._checked_step(flat, flat, copies, repeated, None, copies=b)
        return out.view(b, n, *out.shape[1:])

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
        return getattr(graph, self.edge_input) if self.edge_input is not None else None

    def message(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None) -> Tensor:
        """Per-edge messages ``[E, F]`` from gathered source and target rows (sorted order)."""
        return x_src

    def aggregate(
        self, messages: Tensor, graph: Graph, reverse: bool = False, *, group: Tensor | None = None, num_groups: int = 0
    ) -> Tensor:
        """Reduces the ``[E, F]`` sorted messages into ``[num_dst, F]`` (scaled by the explainer's
        mask, if any). ``reverse=True``: the messages run against the edges, in the transpose's
        order (``csr.t_*``), and are reduced into the sources. ``group``: ``[E]`` int64 in csr
        order, the messages are reduced into ``num_groups`` groups instead of the targets (e.g.
        ``target * R + relation``: one reduction per target and relation, as RGCN's); an empty
        group gives 0."""
        csr, mask = graph.csr, graph.edge_mask
        if mask is not None:
            mask = mask.index_select(0, csr.t_perm) if reverse else mask
            messages = messages * mask.to(messages.dtype).view(-1, *([1] * (messages.dim() - 1)))
        if group is not None:
            if reverse:
                raise ValueError("aggregate: group is given in csr order, so it cannot be combined with reverse=True")
            return scatter_unchecked(messages, group, num_groups, self.aggr)
        return segment_unchecked(messages, csr.t_rowptr if reverse else csr.rowptr, self.aggr)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        """Gathers endpoint features, builds messages and aggregates them. Override with a fused
        kernel where the messages need not exist as an ``E x F`` tensor."""
        csr = graph.csr
        x_dst_e = x_dst.index_select(0, csr.row) if x_dst is not None else None
        messages = self.message(x_src.index_select(0, csr.col), x_dst_e, edge)
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

    def outer_linear(self, z: Tensor, x_src: Tensor, weight: Tensor, graph: Graph) -> Tensor:
        """``weight @ vec(S[v])`` for every target (``[num_dst, d']``; ``weight`` ``[d', K * d]`` in
        ``S``'s ``(k, i)`` order), ``S`` as in :meth:`outer_aggregate` (explainer mask included).
        On CPU in eager mode, where ``S`` is large, the two products are fused block by block so
        that ``S`` is never stored (:func:`gnnkit.ops.outer_linear.outer_linear_unchecked`); elsewhere it is
        :meth:`outer_aggregate` followed by one dense product."""
        if graph.edge_mask is not None:
            z = z * graph.edge_mask.to(z.dtype).unsqueeze(1)
        weight = weight.to(z.dtype)
        if fused_outer_linear_applies(z, x_src, graph.buckets, graph.csr.rowptr.numel() - 1):
            return outer_linear_unchecked(graph.csr, z, x_src, weight, graph.buckets)
        s = outer_aggregate_unchecked(graph.csr, z, x_src, graph.buckets)
        return torch.nn.functional.linear(s.view(s.size(0), weight.size(1)), weight)  # sized: N may be 0

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        """New node states from the old target features and the aggregated messages."""
        return aggregated

    def explain_weights(self, graph: Graph, copies: int = 1) -> Tensor | None:
        """The explainer's edge mask in ``graph``'s CSR order (sigmoid applied as PyG does), or
        ``None`` when the layer is not being explained. ``copies``: ``graph`` is that many disjoint
        copies of the graph the mask was set for (edge_index order copy after copy), each taking
        the mask (PyG's static-graph call ``x [B, N, F]``)."""
        if self._explain is not True:
            return None
        mask = self._edge_mask
        if mask is None:
            raise ValueError("explain=True but no edge mask was set (torch_geometric.explain sets it)")
        if mask.numel() * copies != graph.num_edges:
            per_copy = f" in each of {copies} copies" if copies > 1 else ""
            raise ValueError(f"the edge mask has {mask.numel()} entries but the graph has {graph.num_edges // copies} edges{per_copy}")
        if self._apply_sigmoid:
            mask = mask.sigmoid()
        if copies > 1:
            mask = mask.repeat(copies)
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
        """As PyG prints its layers: ``GCNConv(16, 32)`` for a layer with ``in_channels`` and
        ``out_channels``, else ``nn.Module``'s form; layers whose PyG counterpart prints more
        override it."""
        if hasattr(self, "in_channels") and hasattr(self, "out_channels"):
            return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        return f"aggr={self.aggr_name!r}"

    def __getattr__(self, name: str) -> Any:
        # reached for parameters, buffers and submodules (nn.Module's lookup) and for failures:
        # an absent PyG method then says why it is absent
        try:
            return nn.Module.__getattr__(self, name)
        except AttributeError:
            absent = next((c.__dict__[name] for c in type(self).__mro__ if name in c.__dict__), None)
            if isinstance(absent, _Absent):
                raise AttributeError(f"{type(self).__name__} has no {name!r}: {absent.reason}") from None
            raise

    # PyG's hooks and machinery that cannot apply here are absent rather than inherited stubs.
    register_propagate_forward_pre_hook = _Absent(_NO_HOOKS)
    register_propagate_forward_hook = _Absent(_NO_HOOKS)
    register_message_forward_pre_hook = _Absent(_NO_HOOKS)
    register_message_forward_hook = _Absent(_NO_HOOKS)
    register_aggregate_forward_pre_hook = _Absent(_NO_HOOKS)
    register_aggregate_forward_hook = _Absent(_NO_HOOKS)
    register_message_and_aggregate_forward_pre_hook = _Absent(_NO_HOOKS)
    register_message_and_aggregate_forward_hook = _Absent(_NO_HOOKS)
    register_edge_update_forward_pre_hook = _Absent(_NO_HOOKS)
    register_edge_update_forward_hook = _Absent(_NO_HOOKS)
    # edge_update is the graph-network hook above (its own signature); PyG's edge_updater is not
    edge_updater = _Absent("edge states are updated by the edge_update hook inside step(), not by a separate call")
    decomposed_layers = _Absent("gnnkit layers never build the E x F message tensor that PyG decomposes")
    jittable = _Absent("gnnkit layers are compiled with torch.compile, not TorchScript")
    explain_message = _Absent(
        "the explainer's edge mask is applied once by the base's primitives (aggregate, spmm, outer_aggregate)"
    )


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
