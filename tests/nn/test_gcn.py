"""GCNConv == torch_geometric.nn.GCNConv with copied weights (isolated nodes, cache, edge weights)."""

import pytest
import torch
from torch_geometric.nn import GCNConv as PygGCNConv

from gnnkit.nn import GCNConv, Graph
from gnnkit.nn.graph import OperatorKey


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(cin, cout, **kw):
    ours = GCNConv(cin, cout, **kw).double()
    pyg = PygGCNConv(cin, cout, **kw).double()
    with torch.no_grad():
        pyg.lin.weight.copy_(ours.lin.weight)
        pyg.bias.copy_(torch.randn(cout))
        ours.bias.copy_(pyg.bias)
    return ours, pyg


def _graph(n=12, e=40):
    ei = torch.randint(0, n - 3, (2, e))  # last 3 nodes isolated
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.cat([ei, torch.tensor([[2, 5], [2, 5]])], 1)  # existing self-loops
    return ei, torch.randn(n, 5, dtype=torch.float64), torch.rand(ei.size(1), dtype=torch.float64) + 0.1


@pytest.mark.parametrize("weighted", [False, True])
# add_self_loops=True without normalisation is refused by both (tests/nn/test_pyg_conformance.py).
@pytest.mark.parametrize("kw", [{}, {"add_self_loops": False}, {"normalize": False, "add_self_loops": False}])
def test_matches_pyg(weighted, kw):
    ei, x, w = _graph()
    ours, pyg = _pair(5, 4, **kw)
    w = w if weighted else None
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, ref = ours(x1, ei, w), pyg(x2, ei, w)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.lin.weight.grad, pyg.lin.weight.grad)


def test_edge_weight_gradient_matches_pyg():
    ei, x, w = _graph()
    ours, pyg = _pair(5, 4)
    w1, w2 = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ours(x, ei, w1).square().sum().backward()
    pyg(x, ei, w2).square().sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad)


def test_duplicate_self_loop_gradient_is_the_true_derivative():
    # Node 2 has two self-loops; as in PyG's add_remaining_self_loops, the last one's weight is the
    # loop weight and the other is dropped, so the output does not depend on the first at all.
    # (PyG's own backward still hands that first loop a gradient: index_put's backward with a
    # duplicate index. gnnkit's is the derivative, 0, which gradcheck confirms.)
    ei, x, w = _graph()
    ei = torch.cat([torch.tensor([[2], [2]]), ei], 1)
    w = torch.cat([torch.tensor([0.7], dtype=torch.float64), w]).requires_grad_(True)
    ours, pyg = _pair(5, 4)
    torch.testing.assert_close(ours(x, ei, w), pyg(x, ei, w))
    assert torch.autograd.gradcheck(lambda t: ours(x, ei, t), (w,))
    (g,) = torch.autograd.grad(ours(x, ei, w).square().sum(), w)
    assert g[0] == 0 and g[-2] != 0  # the dropped duplicate, and the loop that counts


def test_cached_matches_pyg_and_reuses_the_graph():
    ei, x, _ = _graph()
    ours, pyg = _pair(5, 4, cached=True)
    torch.testing.assert_close(ours(x, ei), pyg(x, ei))
    cached = ours._cache
    # A cached layer ignores a new edge_index of the same size, as PyG's does.
    other = torch.randint(0, 12, (2, 30))
    torch.testing.assert_close(ours(x, other), pyg(x, other))
    assert ours._cache is cached
    ours.reset_cache()
    uncached = GCNConv(5, 4).double()
    uncached.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, other), uncached(x, other))
    with pytest.raises(ValueError, match="cached"):
        ours(torch.randn(7, 5, dtype=torch.float64), other[:, other.max(0).values < 7])


def test_errors():
    conv = GCNConv(5, 4)
    with pytest.raises(ValueError, match="x must have shape"):
        conv(torch.randn(4, 3), torch.zeros(2, 0, dtype=torch.long))


def test_operator_key_separates_every_setting():
    """Layers share a normalised graph exactly when their settings agree: on one prepared Graph,
    each layer propagates over its own operator and gives what it gives alone."""
    ei, x, w = _graph()
    graph = Graph.from_edge_index(ei, 12, edge_weight=w)
    layers = [GCNConv(5, 4), GCNConv(5, 4, improved=True), GCNConv(5, 4, aggr="mean"), GCNConv(5, 4, aggr="max"),
              GCNConv(5, 4, normalize=False), GCNConv(5, 4, add_self_loops=False)]  # fmt: skip
    for layer in layers:
        layer.double()
        graph = layer.prepare(graph)
    assert len({layer.operator_key for layer in layers}) == len(layers) - 1  # mean and max share one (exact_edges)
    assert len(graph.operators) == len(layers) - 1
    for layer in layers:
        assert isinstance(layer.operator_key, OperatorKey)
        torch.testing.assert_close(layer.propagate(x, graph, None), layer(x, ei, w))


def test_nothing_is_kept_on_the_module_without_cached():
    ei, x, w = _graph()
    conv = GCNConv(5, 4).double()
    before = dict(vars(conv))
    conv(x, ei, w)
    assert conv._cache is None and vars(conv).keys() == before.keys()
    # cached=True keeps (key, operator); a setting changed later rebuilds, cached=False drops it
    conv.cached = True
    conv(x, ei, w)
    assert conv._cache is not None and conv._cache[0] == conv.operator_key
    conv.improved = True
    fresh = GCNConv(5, 4, improved=True).double()
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x, ei, w), fresh(x, ei, w))
    assert conv._cache[0] == conv.operator_key
    conv.cached = False
    conv(x, ei, w)
    assert conv._cache is None
