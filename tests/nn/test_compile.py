"""No host sync in any layer or readout: each compiles with torch.compile(fullgraph=True,
dynamic=True), forward and backward, on two graphs of different sizes, and matches eager.
(The ops on a prebuilt graph context compile too: the kernels are torch.library custom ops.)"""

import pytest
import torch
from torch import nn

from gnnkit.nn import (
    Bidirectional,
    ChebConv,
    DTNNConv,
    DuvenaudConv,
    EdgeNetworkConv,
    GatedReadout,
    GCNConv,
    GGNNConv,
    GINConv,
    Graph,
    GRUMessagePassing,
    GRUUpdate,
    InteractionConv,
    MaxReadout,
    MeanReadout,
    NHConv,
    RelationalConv,
    Set2Set,
    SumReadout,
    Towers,
    TreeConv,
    WeaveConv,
    homophily_channels,
    tree_edges,
    tree_operator,
)
from gnnkit.ops import outer_aggregate_unchecked, scatter_unchecked, segment_unchecked, spmm_unchecked

pytestmark = pytest.mark.usefixtures("one_thread")
F, TYPES = 4, 3


def _graph(n: int, e: int, seed: int) -> Graph:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    sizes = [n // 2, n - n // 2]
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    return Graph.from_edge_index(
        ei, n, edge_attr=torch.randn(e, 5, generator=g), edge_weight=torch.rand(e, generator=g) + 0.1,
        edge_type=torch.randint(0, TYPES, (e,), generator=g), batch=batch, num_graphs=2,
    )  # fmt: skip


GRAPHS = [(9, 30, 0), (14, 55, 1)]


def _inputs(layer, make_x=lambda n: torch.randn(n, F, requires_grad=True), prep=lambda g: g):
    out = []
    for n, e, seed in GRAPHS:
        graph = layer.prepare(prep(_graph(n, e, seed))) if hasattr(layer, "prepare") else prep(_graph(n, e, seed))
        out.append((make_x(n), graph))
    return out


def _with_tree(g: Graph) -> Graph:
    ei = torch.stack([g.csr.col, g.csr.row])
    return g.with_operator(TreeConv.operator_key, tree_operator(*tree_edges(ei, g.num_nodes, [1, 2], 4), g.num_nodes))


LAYERS = {
    "gcn": lambda: (GCNConv(F, 3), {}),
    "edge_network_sum": lambda: (EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6), {}),
    "edge_network_mean_root": lambda: (EdgeNetworkConv(F, 3, aggr="mean", root_weight=True, edge_dim=5, hidden=6), {}),
    "ggnn": lambda: (GGNNConv(F, TYPES), {}),
    "relational": lambda: (RelationalConv(F, 3, TYPES, root_weight=True), {}),
    "gin": lambda: (GINConv(nn.Sequential(nn.Linear(F, 8), nn.ReLU(), nn.Linear(8, 3)), train_eps=True), {}),
    "tree_s": lambda: (TreeConv(2), {"prep": _with_tree}),
    "tree_w": lambda: (TreeConv(2, weighted=True), {"prep": _with_tree}),
    "nh": lambda: (NHConv("L"), {"prep": lambda g: homophily_channels(g, torch.arange(g.num_nodes) % 3 > 0)}),
    "duvenaud": lambda: (DuvenaudConv(F, 3, edge_dim=5, max_degree=3), {}),
    "interaction": lambda: (InteractionConv(F, 5, hidden=6), {}),
    "dtnn": lambda: (DTNNConv(F, 5, factors=6), {}),
    "weave_nodes": lambda: (WeaveConv(F, 5, 3), {}),
    "cheb_clenshaw": lambda: (ChebConv(F, 3, K=3), {}),
    "cheb_forward": lambda: (ChebConv(F, 6, K=3, normalization=None), {}),
    "gru_update": lambda: (GRUUpdate(EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6), F), {}),
    "towers": lambda: (Towers(lambda c: GGNNConv(c, TYPES), 2, F), {}),
    "bidirectional": lambda: (Bidirectional(EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6), RelationalConv(F, 3, TYPES)), {}),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_compiles_without_graph_breaks(name, compiles_like_eager):
    layer, kw = LAYERS[name]()
    compiles_like_eager(layer, _inputs(layer, **kw))


def test_gru_step_compiles(compiles_like_eager):
    layer = GRUMessagePassing(F, 3)
    # Both halves of the bipartite (h, x) input require grad: the check compares each one's gradient.
    inputs = [
        ((torch.randn(n, 3, requires_grad=True), torch.randn(n, F, requires_grad=True)), _graph(n, e, s))
        for n, e, s in GRAPHS
    ]
    compiles_like_eager(layer, inputs)


class _GradDiffersWhenCompiled(nn.Module):
    """Same output compiled and eager, but compiled the gradient of ``h`` (inside a tuple) doubles."""

    def forward(self, hx, extra):
        h, x = hx
        if torch.compiler.is_compiling():
            h = h + (h - h.detach())  # value h, gradient 2
        return h * x + extra["w"]


def test_compile_check_compares_gradients_inside_tuples_and_dicts(compiles_like_eager):
    """The check itself: a wrong compiled gradient of a leaf nested in a tuple must fail it."""
    def inputs(h_grad: bool, w_grad: bool):
        return [((torch.randn(4, 3, requires_grad=h_grad), torch.randn(4, 3)), {"w": torch.randn(4, 3, requires_grad=w_grad)})]

    with pytest.raises(AssertionError):
        compiles_like_eager(_GradDiffersWhenCompiled(), inputs(True, False))
    compiles_like_eager(_GradDiffersWhenCompiled(), inputs(False, True))  # only w's gradient: equal


class _WeaveStep(nn.Module):
    """A weave step's node and edge updates together (the base's step with the edge hook)."""

    def __init__(self):
        super().__init__()
        self.conv = WeaveConv(F, 5, 3, 4)

    def forward(self, x, graph):
        h, e, _ = self.conv.step(x, graph, graph.edge_attr)  # the base's graph-network step
        return h.sum() + e.sum()


def test_weave_step_compiles(compiles_like_eager):
    layer = _WeaveStep()
    compiles_like_eager(layer, _inputs(layer.conv))


READOUTS = {
    "sum": lambda: SumReadout(),
    "mean": lambda: MeanReadout(),
    "max": lambda: MaxReadout(),
    "set2set": lambda: Set2Set(F, processing_steps=2),
}


@pytest.mark.parametrize("name", READOUTS)
def test_readout_compiles_without_graph_breaks(name, compiles_like_eager):
    compiles_like_eager(READOUTS[name](), _inputs(nn.Identity()))


def test_gated_readout_compiles(compiles_like_eager):
    class WithInitial(nn.Module):  # the gated readout's x0 as a second input
        def __init__(self):
            super().__init__()
            self.readout = GatedReadout(F, 3, init_channels=F)

        def forward(self, x, graph, x0):
            return self.readout(x, graph, x0=x0)

    inputs = [(x, g, torch.randn(x.size(0), F)) for x, g in _inputs(nn.Identity())]
    compiles_like_eager(WithInitial(), inputs)


class _Ops(nn.Module):
    """Every unchecked op on a prebuilt graph, in one differentiable expression."""

    def forward(self, x, graph):
        csr = graph.csr
        a = spmm_unchecked(csr, x, graph.edge_weight, "sum") + spmm_unchecked(csr, x, None, "max")
        b = segment_unchecked(x.index_select(0, csr.col), csr.rowptr, "mean")
        c = scatter_unchecked(x, graph.batch, graph.num_graphs, "min").sum() + scatter_unchecked(x, graph.batch, 2, "sum").sum()
        z = torch.tanh(graph.edge_attr[:, :3] @ torch.ones(3, 2)) * x.index_select(0, csr.col)[:, :2]
        d = outer_aggregate_unchecked(csr, z, x, graph.buckets).sum(1)
        return a + b + c + d


def test_ops_on_a_prebuilt_graph_compile(compiles_like_eager):
    layer = EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6)  # its prepare adds the CPU degree buckets
    inputs = [(x, layer.prepare(g)) for x, g in _inputs(nn.Identity())]
    compiles_like_eager(_Ops(), inputs)
