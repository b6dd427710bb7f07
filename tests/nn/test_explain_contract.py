"""The explainer contract, kept by every layer: an explainer's edge mask scales each edge's
message, applied once by the base (its primitives), fused kernels and precomputed operators
included. For every layer, the aggregated messages are affine in the mask with one term per edge
(``A(m) = A(0) + sum_e m_e (A(1_e) - A(0))``), a mask of ones changes nothing, and PyG's route
(``explain=True`` with ``_edge_mask`` in edge_index order, sigmoid applied) reaches the same
numbers through ``forward``."""

import pytest
import torch
from torch import nn

from gnnkit.nn import (
    Bidirectional,
    ChebConv,
    DTNNConv,
    DuvenaudConv,
    EdgeNetworkConv,
    GCNConv,
    GGNNConv,
    GINConv,
    Graph,
    GRUMessagePassing,
    GRUUpdate,
    InteractionConv,
    MasterNode,
    NHConv,
    RelationalConv,
    Towers,
    TreeConv,
    WeaveConv,
    homophily_channels,
    tree_edges,
    tree_operator,
)

pytestmark = pytest.mark.usefixtures("one_thread")
N, E, F, TYPES = 6, 9, 4, 3


def _graph() -> tuple[Graph, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, N, (2, E), generator=g)
    ei[:, 0] = torch.tensor([2, 2])  # a self-loop: GCN's and NHGCN's appended loops must stay unmasked
    graph = Graph.from_edge_index(
        ei, N, edge_attr=torch.rand(E, 5, generator=g, dtype=torch.float64), edge_weight=torch.rand(E, generator=g, dtype=torch.float64) + 0.1,
        edge_type=torch.randint(0, TYPES, (E,), generator=g), batch=torch.tensor([0, 0, 0, 1, 1, 1]), num_graphs=2,
    )  # fmt: skip
    return graph, ei


def _with_tree(g: Graph) -> Graph:
    ei = torch.stack([g.csr.col, g.csr.row])
    return g.with_operator(TreeConv.operator_key, tree_operator(*tree_edges(ei, N, [1, 2], 4, dtype=torch.float64), N))


# name -> (layer, graph preparation[, node input]); the default node input is x [N, F]
LAYERS = {
    "gcn": lambda: (GCNConv(F, 3), None),
    "gcn_mean": lambda: (GCNConv(F, 3, aggr="mean"), None),  # replaced self-loops dropped (exact_edges)
    "gcn_improved": lambda: (GCNConv(F, 3, improved=True), None),
    "edge_network": lambda: (EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6), None),
    "edge_network_mean": lambda: (EdgeNetworkConv(F, F, aggr="mean", root_weight=True, edge_dim=5, hidden=6), None),
    "ggnn": lambda: (GGNNConv(F, TYPES), None),
    "gin": lambda: (GINConv(nn.Linear(F, 3)), None),
    "gin_mean": lambda: (GINConv(nn.Linear(F, 3), aggr="mean"), None),
    "relational": lambda: (RelationalConv(F, 3, TYPES), None),  # PyG's default: a mean per relation
    "relational_sum": lambda: (RelationalConv(F, 3, TYPES, aggr="sum"), None),
    "relational_one_mean": lambda: (RelationalConv(F, 3, TYPES, aggr="mean", per_relation=False), None),
    "relational_featureless": lambda: (RelationalConv(N, 3, TYPES), None, torch.arange(N)),  # learned node embeddings
    "relational_featureless_sum": lambda: (RelationalConv(N, 3, TYPES, aggr="sum"), None, torch.arange(N)),
    "gru_message_passing": lambda: (GRUMessagePassing(F, F), None),
    "nh": lambda: (NHConv("L"), lambda g: homophily_channels(g, torch.arange(N) % 3 > 0)),
    "tree": lambda: (TreeConv(2), _with_tree),
    "gru_update": lambda: (GRUUpdate(EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6), F), None),
    "bidirectional": lambda: (Bidirectional(EdgeNetworkConv(F, F, root_weight=False, edge_dim=5, hidden=6), RelationalConv(F, 3, TYPES)), None),
    "master_node": lambda: (MasterNode(GGNNConv(F, TYPES), F, 3, 2 * F), None),
    "towers": lambda: (Towers(lambda c: GGNNConv(c, TYPES), 2, F), None),
    "towers_relational": lambda: (Towers(lambda c: RelationalConv(c, c, TYPES), 2, F), None),
    "gru_update_gin_mean": lambda: (GRUUpdate(GINConv(nn.Linear(F, F), aggr="mean"), F), None),
    # Gilmer's Section 2 layers
    "duvenaud": lambda: (DuvenaudConv(F, 3, edge_dim=5, max_degree=2), None),
    "interaction": lambda: (InteractionConv(F, 5, hidden=6), None),
    "dtnn": lambda: (DTNNConv(F, 5, factors=6), None),
    "weave": lambda: (WeaveConv(F, 5, 3), None),
    # one product with L~ (K = 2): affine in the mask; K > 2 multiplies masked products (every
    # product masked, as PyG masks every propagate: tests/nn/test_section2_layers.py)
    "cheb": lambda: (ChebConv(F, 3, K=2), None),
}


def _setup(name):
    torch.manual_seed(0)
    layer, prep, *node_input = LAYERS[name]()
    layer = layer.double()
    graph, ei = _graph()
    graph = layer.prepare(prep(graph) if prep else graph)
    x = node_input[0] if node_input else torch.randn(N, F, dtype=torch.float64)
    return layer, graph, ei, x


def _aggregated(layer, graph, x, mask):
    """What the layer aggregates before its update, with ``mask`` (csr order) on the graph; for
    Towers (whose towers' updates are inside it) the concatenated towers' aggregates."""
    g = graph if mask is None else graph.replace(edge_mask=mask)
    edge = layer.edge_features(g)
    if isinstance(layer, Towers):
        parts = x.chunk(layer.towers, dim=1)
        return torch.cat([t.message_and_aggregate(p, p, e, g) for t, p, e in zip(layer.layers, parts, edge)], dim=1)
    return layer.message_and_aggregate(x, x, edge, g)


@pytest.mark.parametrize("name", LAYERS)
def test_the_mask_scales_every_layers_messages(name):
    layer, graph, ei, x = _setup(name)
    if name == "tree":  # multi-hop entries that are no edge of the graph: one clear error, from the base
        with pytest.raises(ValueError, match="explainer's edge mask has no meaning"):
            _aggregated(layer, graph, x, torch.rand(E, dtype=torch.float64))
        return
    with torch.no_grad():
        base = _aggregated(layer, graph, x, torch.zeros(E, dtype=torch.float64))
        torch.testing.assert_close(_aggregated(layer, graph, x, torch.ones(E, dtype=torch.float64)), _aggregated(layer, graph, x, None))
        per_edge = [_aggregated(layer, graph, x, torch.eye(E, dtype=torch.float64)[k]) - base for k in range(E)]
        mask = torch.rand(E, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        expect = base + sum(m * d for m, d in zip(mask, per_edge))
        torch.testing.assert_close(_aggregated(layer, graph, x, mask), expect)
        # every edge's message moves something, except where the operator gives it weight 0: GCN's
        # and NHGCN's own self-loops (replaced by the appended, unmasked loop), NHGCN's other
        # channel, the self-loops ChebConv's Laplacian leaves out (as PyG's get_laplacian)
        changed = [bool(d.abs().sum() > 0) for d in per_edge]
        own_loop = (graph.csr.row == graph.csr.col).tolist()
        if name.startswith("gcn") or name in ("nh", "cheb"):
            assert not any(c for c, loop in zip(changed, own_loop) if loop) and any(changed)
        else:
            assert all(changed)


@pytest.mark.parametrize("name", [n for n in LAYERS if n not in ("tree", "master_node")])
def test_pyg_explain_route_reaches_the_same_mask(name):
    """``explain=True`` and ``_edge_mask`` (edge_index order, logits) on the outer layer only:
    ``forward`` equals the step with the sigmoid of the mask, in csr order, on the graph."""
    layer, graph, ei, x = _setup(name)
    logits = torch.randn(E, dtype=torch.float64)
    layer.explain, layer._edge_mask = True, logits
    node_input = (x, x) if name == "gru_message_passing" else x
    with torch.no_grad():
        out = layer(node_input, graph)
        layer.explain = False
        expect = layer.propagate(node_input, graph.replace(edge_mask=logits.sigmoid().index_select(0, graph.csr.perm)), layer.edge_features(graph))
        plain = layer.propagate(node_input, graph, layer.edge_features(graph))
    torch.testing.assert_close(out, expect)
    assert not torch.allclose(out, plain)


def test_master_node_step_applies_the_mask():
    layer, graph, ei, x = _setup("master_node")
    u = layer.initial_state(graph, x)
    layer.explain, layer._edge_mask = True, torch.randn(E, dtype=torch.float64)
    with torch.no_grad():
        out = layer.step(x, graph, layer.edge_features(graph), u)
        layer.explain = False
        masked = graph.replace(edge_mask=layer._edge_mask.sigmoid().index_select(0, graph.csr.perm))
        expect = layer.step(x, masked, layer.edge_features(graph), u)
    torch.testing.assert_close(out.x, expect.x)
    torch.testing.assert_close(out.u, expect.u)


# Aggregations that are not linear in the messages (max) still see every message scaled: a mask
# of ones changes nothing, a mask of zeros leaves what a graph without edges gives.
MAX_LAYERS = {
    "gcn_max": lambda: GCNConv(F, 3, aggr="max", bias=False),
    "gin_max": lambda: GINConv(nn.Identity(), aggr="max"),
    "relational_max": lambda: RelationalConv(F, 3, TYPES, aggr="max", root_weight=False, bias=False),
}


@pytest.mark.parametrize("name", MAX_LAYERS)
def test_the_mask_reaches_max_aggregations(name):
    torch.manual_seed(0)
    layer = MAX_LAYERS[name]().double()
    graph, ei = _graph()
    graph = layer.prepare(graph)
    x = torch.randn(N, F, dtype=torch.float64)
    edge = layer.edge_features(graph)
    with torch.no_grad():
        plain = layer.message_and_aggregate(x, x, edge, graph)
        ones = layer.message_and_aggregate(x, x, edge, graph.replace(edge_mask=torch.ones(E, dtype=torch.float64)))
        zeros = layer.message_and_aggregate(x, x, edge, graph.replace(edge_mask=torch.zeros(E, dtype=torch.float64)))
    torch.testing.assert_close(ones, plain)
    if name == "gcn_max":  # only the appended, unmasked loops are left: max over {0 (masked edges), loop}
        op = graph.operator(layer.operator_key)
        loop = op.origin < 0
        loop_msg = layer.lin(x) * torch.zeros(N, dtype=torch.float64).index_put_((op.csr.row[loop],), op.edge_weight[loop]).unsqueeze(1)
        has_edges = torch.zeros(N, dtype=torch.bool).index_fill_(0, op.csr.row[~loop], True).unsqueeze(1)
        torch.testing.assert_close(zeros, torch.where(has_edges, loop_msg.clamp(min=0), loop_msg))
    else:  # every message is 0: the max over a node's in-edges is 0, as is an empty max
        torch.testing.assert_close(zeros, torch.zeros_like(zeros))


FLOW_LAYERS = {
    "gcn": (lambda **kw: GCNConv(F, 3, **kw), "edge_weight"),
    "gin_mean": (lambda **kw: GINConv(nn.Linear(F, 3), aggr="mean", **kw), None),
    "edge_network": (lambda **kw: EdgeNetworkConv(F, 3, edge_dim=5, hidden=6, **kw), "edge_attr"),
    "relational": (lambda **kw: RelationalConv(F, 3, TYPES, **kw), "edge_type"),
}


@pytest.mark.parametrize("name", FLOW_LAYERS)
def test_flow_reverses_the_edges_and_each_keeps_its_mask(name):
    """``flow="target_to_source"`` reads edge_index reversed; the mask stays with its edge (its
    column of edge_index), so it equals the default flow on the flipped edge_index, same mask."""
    make, edge_name = FLOW_LAYERS[name]
    t2s, s2t = make(flow="target_to_source").double(), make().double()
    s2t.load_state_dict(t2s.state_dict())
    graph, ei = _graph()
    per_edge = {} if edge_name is None else {edge_name: getattr(_graph_inputs(), edge_name)}
    x, logits = torch.randn(N, F, dtype=torch.float64), torch.randn(E, dtype=torch.float64)
    for layer in (t2s, s2t):
        layer.explain, layer._edge_mask = True, logits
    with torch.no_grad():
        out = t2s(x, ei, **per_edge)
        torch.testing.assert_close(out, s2t(x, ei.flip(0), **per_edge))
        t2s.explain = False
        assert not torch.allclose(out, t2s(x, ei, **per_edge))


def _graph_inputs():
    """The per-edge tensors of :func:`_graph` in edge_index order."""
    graph, ei = _graph()
    inv = torch.empty_like(graph.csr.perm).index_copy_(0, graph.csr.perm, torch.arange(E))

    class Inputs:
        edge_attr = graph.edge_attr.index_select(0, inv)
        edge_weight = graph.edge_weight.index_select(0, inv)
        edge_type = graph.edge_type.index_select(0, inv)

    return Inputs


STATIC_LAYERS = {
    "gcn": (lambda: GCNConv(F, 3), "edge_weight"),
    "gcn_mean": (lambda: GCNConv(F, 3, aggr="mean"), "edge_weight"),
    "gin": (lambda: GINConv(nn.Linear(F, 3)), None),
    "gin_mean": (lambda: GINConv(nn.Linear(F, 3), aggr="mean"), None),
}


@pytest.mark.parametrize("name", STATIC_LAYERS)
def test_static_graph_input_takes_the_mask_in_every_copy(name):
    """PyG's static-graph call ``x [B, N, F]`` with an explainer: one mask over the graph's edges
    scales each copy's messages, so copy ``b`` equals the explained call on ``x[b]``."""
    make, edge_name = STATIC_LAYERS[name]
    torch.manual_seed(0)
    layer = make().double()
    _, ei = _graph()
    per_edge = {} if edge_name is None else {edge_name: getattr(_graph_inputs(), edge_name)}
    x = torch.randn(3, N, F, dtype=torch.float64)
    layer.explain, layer._edge_mask = True, torch.randn(E, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x, ei, **per_edge)
        for b in range(3):
            torch.testing.assert_close(out[b], layer(x[b], ei, **per_edge))
        with pytest.raises(ValueError, match="edge mask has 8 entries but the graph has 9 edges in each of 3 copies"):
            layer._edge_mask = torch.randn(E - 1, dtype=torch.float64)
            layer(x, ei, **per_edge)
        layer.explain = False
        assert not torch.allclose(out, layer(x, ei, **per_edge))
