"""Graph convolution of Kipf & Welling 2017 ("Semi-Supervised Classification with Graph
Convolutional Networks", ICLR): ``H' = D^-1/2 (A + I) D^-1/2 H W``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import Linear

from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import MessagePassing
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


def gcn_operator(graph: Graph, add_self_loops: bool = True, normalize: bool = True) -> Graph:
    """The propagation graph of :class:`GCNConv`: ``D^-1/2 (A + I) D^-1/2`` with ``graph``'s edge
    weights (1 where it has none). Sync-free: no shape depends on the data. Computed in the dtype
    of the edge weights, else of the graph's node features, else the default dtype.

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
        ones = torch.ones(csr.num_dst, dtype=dtype, device=csr.device)
        new, w, _ = with_self_loops(graph, ones, w)
        # with_self_loops lists the graph's edges (csr order) then one loop per node (origin -1).
        origin = torch.cat([origin, origin.new_full((csr.num_dst,), -1)]).index_select(0, new.perm)
        csr = new
    elif w is None:
        w = torch.ones(csr.num_edges, dtype=dtype, device=csr.device)
    if normalize:
        w = symmetric_norm(csr, w)
    return Graph(csr, edge_weight=w, origin=origin)


class GCNConv(MessagePassing):
    """Graph convolution layer (Kipf & Welling 2017), ``x' = Â x W + b`` with
    ``Â = D^-1/2 (A + I) D^-1/2``.

    Numerically equal to ``torch_geometric.nn.GCNConv`` with the same weights (``lin.weight``,
    ``bias``): the linear map is applied first, then :func:`gnnkit.ops.spmm_unchecked` aggregates
    over the normalised graph, which :meth:`prepare` stores in the :class:`Graph` (operator
    ``"gcn"`` for the default settings) so that every layer of a model shares it.

    Args:
        in_channels: input feature size, or -1 to take it from the first input (PyG's lazy
            ``Linear``; the weight is created, glorot-initialised, on the first call).
        out_channels: output feature size.
        cached: keep the normalised graph of the first graph seen and reuse it (transductive
            learning on one static graph, PyG's semantics). Call :meth:`reset_cache` to drop it.
        add_self_loops: add ``I`` before normalising.
        normalize: apply the symmetric normalisation (else use ``edge_weight`` or 1 as is).
        bias: learn an additive bias.

    Shapes:
        x ``[N, in_channels]`` (dense or sparse COO), edge_index ``[2, E]``, edge_weight ``[E]``
        -> ``[N, out_channels]``.
    """

    edge_input = "edge_weight"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cached: bool = False,
        add_self_loops: bool = True,
        normalize: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__("sum")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cached, self.add_self_loops, self.normalize = cached, add_self_loops, normalize
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._cache: Graph | None = None
        self.reset_parameters()

    @property
    def operator_key(self) -> OperatorKey:
        """The key of this layer's normalised graph in :attr:`Graph.operators` (layers with the
        same settings share one)."""
        return OperatorKey(GCNConv, (self.add_self_loops, self.normalize))

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
        name = self.operator_key
        if name in graph.operators:
            return graph
        if self.cached and self._cache is not None:
            if self._cache.num_nodes != graph.num_nodes:
                raise ValueError(
                    f"cached=True: the cached graph has {self._cache.num_nodes} nodes but x has "
                    f"{graph.num_nodes}; call reset_cache() when the graph changes"
                )
            return graph.with_operator(name, self._cache)
        op = gcn_operator(graph, self.add_self_loops, self.normalize)
        if self.cached:
            self._cache = op
        return graph.with_operator(name, op)

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
        return self.spmm(h, graph, op.edge_weight.to(h.dtype), key=key)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return aggregated + self.bias if self.bias is not None else aggregated

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, cached={self.cached}"


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
