"""Graph convolution of Kipf & Welling 2017 ("Semi-Supervised Classification with Graph
Convolutional Networks", ICLR): ``H' = D^-1/2 (A + I) D^-1/2 H W``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import Linear

from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import MessagePassing, canonical_aggr
from gnnkit.ops import CSR


def with_self_loops(graph: Graph, loop_weight: Tensor, weight: Tensor | None = None) -> tuple[CSR, Tensor, Tensor]:
    """The CSR of ``graph``'s edges plus one self-loop per node, without changing any shape that
    depends on the data (so it needs no host sync and compiles).

    Existing self-loops stay as edges of weight 0; the appended loop of node ``v`` gets the weight
    of ``v``'s last existing self-loop (in ``edge_index`` order), else ``loop_weight[v]``. That is
    PyG's ``add_remaining_self_loops``.

    Args:
        graph: the graph (``csr`` order for ``weight``).
        loop_weight: ``[N]`` weight of the appended loop of a node without one.
        weight: ``[E]`` edge weights in ``csr`` order (default 1).

    Returns:
        ``(csr, weight, is_appended)``: the new CSR over ``E + N`` edges, its weights in its own
        order, and a bool ``[E + N]`` marking the appended loops.
    """
    csr, n = graph.csr, graph.csr.num_dst
    e = csr.num_edges
    w = torch.ones(e, dtype=loop_weight.dtype, device=csr.device) if weight is None else weight
    is_loop = csr.row == csr.col
    # Position (in csr order, which keeps edge_index order among duplicates) of each node's last loop.
    slot = torch.where(is_loop, csr.row, torch.full_like(csr.row, n))
    last = torch.full((n + 1,), -1, dtype=torch.long, device=csr.device)
    last = last.scatter_reduce(0, slot, torch.arange(e, device=csr.device), "amax")[:n]
    own = w.index_select(0, last.clamp(min=0)) if e else loop_weight
    loops = torch.where(last >= 0, own, loop_weight)
    nodes = torch.arange(n, device=csr.device)
    new = CSR.from_trusted(torch.cat([csr.col, nodes]), torch.cat([csr.row, nodes]), n, n)
    all_w = torch.cat([torch.where(is_loop, torch.zeros_like(w), w), loops])
    appended = torch.cat([torch.zeros(e, dtype=torch.bool, device=csr.device), torch.ones(n, dtype=torch.bool, device=csr.device)])
    return new, all_w.index_select(0, new.perm), appended.index_select(0, new.perm)


def symmetric_norm(csr: CSR, weight: Tensor) -> Tensor:
    """``w_uv d_u^-1/2 d_v^-1/2`` with the weighted in-degrees ``d`` (a node of degree 0 gets 0),
    as PyG's ``gcn_norm``; ``weight`` in ``csr`` order."""
    deg = weight.new_zeros(csr.num_dst).index_add_(0, csr.row, weight)
    dis = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return dis.index_select(0, csr.col) * weight * dis.index_select(0, csr.row)


def gcn_operator(
    graph: Graph, add_self_loops: bool = True, normalize: bool = True, improved: bool = False, exact_edges: bool = False
) -> Graph:
    """The propagation graph of :class:`GCNConv`: ``D^-1/2 (A + I) D^-1/2`` (``A + 2I`` with
    ``improved``) with ``graph``'s edge weights (1 where it has none). Sync-free: no shape depends
    on the data. Computed in the dtype of the edge weights, else of the graph's node features, else
    the default dtype.

    ``exact_edges`` drops the self-loops that an appended loop replaced (kept as weight-0 edges
    otherwise, so that no shape depends on the data): a mean or max over the edges must not see
    them. It costs a host sync.

    Returns:
        A :class:`Graph` whose ``edge_weight`` holds the normalised weights (``csr`` order).
    """
    csr, w = graph.csr, graph.edge_weight
    if w is not None:
        dtype = w.dtype
    elif graph.x is not None and graph.x.is_floating_point():
        dtype = graph.x.dtype
    else:
        dtype = torch.get_default_dtype()
    origin = torch.arange(csr.num_edges, device=csr.device)  # entry i is the graph's csr edge i
    if add_self_loops:
        loops = torch.full((csr.num_dst,), 2.0 if improved else 1.0, dtype=dtype, device=csr.device)
        new, w, appended = with_self_loops(graph, loops, w)
        # with_self_loops lists the graph's edges (csr order) then one loop per node (origin -1).
        origin = torch.cat([origin, origin.new_full((csr.num_dst,), -1)]).index_select(0, new.perm)
        csr = new
        if exact_edges:
            keep = ~((csr.row == csr.col) & ~appended)  # sorted by target still, so w stays aligned
            csr = CSR.from_trusted(csr.col[keep], csr.row[keep], csr.num_src, csr.num_dst)
            w = w[keep].index_select(0, csr.perm)
            origin = origin[keep].index_select(0, csr.perm)
    elif w is None:
        w = torch.ones(csr.num_edges, dtype=dtype, device=csr.device)
    if normalize:
        w = symmetric_norm(csr, w)
    return Graph(csr, edge_weight=w, origin=origin)


class GCNConv(MessagePassing):
    """Graph convolution layer (Kipf & Welling 2017), ``x' = Â x W + b`` with
    ``Â = D^-1/2 (A + I) D^-1/2``.

    Takes ``torch_geometric.nn.GCNConv``'s parameters in its order, with its defaults and meanings,
    and equals it with the same weights (``lin.weight``, ``bias``): the linear map is applied first,
    then :func:`gnnkit.ops.spmm_unchecked` aggregates over the normalised graph, which
    :meth:`prepare` stores in the :class:`Graph` under :attr:`operator_key` so that every layer of a
    model with the same settings shares it. Nothing is kept on the module between calls unless
    ``cached=True``.

    Args:
        in_channels: input feature size, or -1 to take it from the first input (PyG's lazy
            ``Linear``; the weight is created, glorot-initialised, on the first call).
        out_channels: output feature size.
        improved: use ``A + 2I`` (self-loops of weight 2). One difference from PyG 2.8: there,
            on an ``edge_index`` without ``edge_weight`` the loops get weight 1 all the same (its
            ``add_remaining_self_loops`` drops the fill value when there are no weights); here
            ``improved`` always means ``A + 2I``, as it does in PyG with weights or an ``adj_t``.
        cached: normalise the first graph seen, keep that and reuse it for every later call,
            whatever graph is passed (PyG's semantics: transductive learning on one static graph;
            only a graph with another node count is refused; with ``normalize=False`` nothing is
            cached, as in PyG). Settable after construction; call
            :meth:`reset_cache` (or :meth:`reset_parameters`) to drop the cache. The cache is kept
            with its :attr:`operator_key`: a setting changed later rebuilds it, and
            ``cached=False`` keeps nothing on the module.
        add_self_loops: add ``I`` before normalising; ``None`` (the default) means ``normalize``,
            as in PyG 2.8. Self-loops without normalisation are refused, as in PyG.
        normalize: apply the symmetric normalisation (else ``edge_weight``, or 1, is used as is).
        bias: learn an additive bias.
        **kwargs: PyG's base options: ``aggr`` (``"add"``, ``"sum"``, ``"mean"`` or ``"max"``),
            ``flow`` (``"source_to_target"`` or ``"target_to_source"``, also settable as an
            attribute); ``node_dim=-2``, ``decomposed_layers=1`` (other values are refused).

    Call as PyG's: ``conv(x, edge_index, edge_weight=None)``, with a sparse ``adj_t`` in place of
    ``edge_index``, or with a static-graph batch ``x [B, N, F]``. A pair of node features is refused
    (the normalisation is defined on one node set, as in PyG).

    Shapes:
        x ``[N, in_channels]`` (dense or sparse COO) or ``[B, N, in_channels]``, edge_index
        ``[2, E]``, edge_weight ``[E]`` -> ``[N, out_channels]`` (``[B, N, out_channels]``).
    """

    edge_input = "edge_weight"
    static_graph = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        improved: bool = False,
        cached: bool = False,
        add_self_loops: bool | None = None,
        normalize: bool = True,
        bias: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        canonical_aggr(self.aggr, ("sum", "mean", "max"), "GCNConv")  # the reductions of spmm
        if add_self_loops is None:
            add_self_loops = normalize
        if add_self_loops and not normalize:
            raise ValueError(
                "'GCNConv' does not support adding self-loops to the graph when no on-the-fly "
                "normalization is applied (pass add_self_loops=False, or normalize=True)"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.improved, self.cached = improved, cached
        self.add_self_loops, self.normalize = add_self_loops, normalize
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._cache: tuple[OperatorKey, Graph] | None = None  # (key, operator) with cached=True only
        self.reset_parameters()

    @property
    def operator_key(self) -> OperatorKey:
        """The key of this layer's normalised graph in :attr:`Graph.operators`: every setting the
        operator depends on, so layers share one exactly when their settings agree (a mean or max
        aggregation needs the replaced self-loops dropped, ``exact_edges``)."""
        return OperatorKey(
            GCNConv,
            (("add_self_loops", self.add_self_loops), ("normalize", self.normalize),
             ("improved", self.improved), ("exact_edges", self.aggr != "sum")),
        )  # fmt: skip

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()  # glorot, as PyG (nothing yet for a lazy in_channels=-1)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.reset_cache()

    def reset_cache(self) -> None:
        self._cache = None

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src is not x_dst:
            raise ValueError(
                "GCNConv received a (x_src, x_dst) pair, but its normalisation is defined on one node set "
                "(as in PyG); use a layer with bipartite message passing such as GINConv or EdgeNetworkConv"
            )
        width = self.lin.in_channels  # -1 until a lazy layer has seen its first input
        if x_src.dim() != 2 or (width > 0 and x_src.size(1) != width):
            raise ValueError(f"x must have shape [N, {width if width > 0 else 'F'}], got {tuple(x_src.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        key = self.operator_key
        if key in graph.operators:
            return graph
        # The only state kept on the module, and only with cached=True (PyG's meaning: the first
        # graph's operator serves every later call). It is kept with its key, so changing a setting
        # (improved, aggr, ...) never reuses an operator built for others.
        caching = self.cached and self.normalize  # as PyG: without normalisation there is nothing to cache
        if not caching:
            if self._cache is not None:  # cached was switched off: keep nothing
                self._cache = None
        elif self._cache is not None and self._cache[0] == key:
            op = self._cache[1]
            if op.num_nodes != graph.num_nodes:
                raise ValueError(
                    f"cached=True: the cached graph has {op.num_nodes} nodes but x has "
                    f"{graph.num_nodes}; call reset_cache() when the graph changes"
                )
            return graph.with_operator(key, op)
        op = gcn_operator(graph, self.add_self_loops, self.normalize, self.improved, exact_edges=self.aggr != "sum")
        if caching:
            self._cache = (key, op)
        return graph.with_operator(key, op)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        key = self.operator_key
        op = graph.operators[key]
        # sparse node features (bag-of-words graphs are ~1 % non-zero) take a sparse product
        if x_src.is_sparse:
            if hasattr(self.lin, "_hook"):  # a lazy weight not created yet: create it from x's width
                self.lin.initialize_parameters(self.lin, (x_src,))
            h = torch.sparse.mm(x_src, self.lin.weight.t())
        else:
            h = self.lin(x_src)
        # An explainer's mask scales each edge's normalised message, appended loops unmasked (PyG).
        return self.spmm(h, graph, op.edge_weight.to(h.dtype), key=key, reduce=self.aggr)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return aggregated + self.bias if self.bias is not None else aggregated



def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` that also takes a sparse COO ``x``: then it drops stored values only, which has
    the distribution of dense dropout (a zero stays zero) at the cost of the non-zeros."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not x.is_sparse:
        return F.dropout(x, p, training)
    if not training or p == 0.0:
        return x
    x = x.coalesce()
    return torch.sparse_coo_tensor(
        x.indices(), F.dropout(x.values(), p, True), x.shape, is_coalesced=True, check_invariants=False
    )
