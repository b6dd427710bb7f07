"""The layers of Gilmer et al. 2017's Section 2 (DuvenaudConv, InteractionConv, DTNNConv,
WeaveConv, ChebConv) against dense transcriptions of their papers' equations written here, PyG's
ChebConv and MFConv where they compute the same function, and the fused paths against the
unfused message -> aggregate of the base."""

import math

import pytest
import torch
import torch_geometric.nn as pyg

from gnnkit.nn import (
    ChebConv,
    DTNNConv,
    DuvenaudConv,
    GaussianDistances,
    Graph,
    InteractionConv,
    MessagePassing,
    WeaveConv,
)

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def _random_graph(n=9, e=30, edge_dim=3, seed=0, symmetric=False):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 1, (2, e), generator=g)  # node n-1 is isolated
    if symmetric:
        ei = torch.cat([ei, ei.flip(0)], 1)
    return ei, torch.randn(ei.size(1), edge_dim, generator=g, dtype=D), torch.randn(n, 4, generator=g, dtype=D)


def _unfused(layer: MessagePassing, x, graph, edge):
    """The base's default message -> aggregate -> update (no fused kernel)."""
    return layer.update(x, MessagePassing.message_and_aggregate(layer, x, x, edge, graph))


# --- Duvenaud et al. 2015 ------------------------------------------------------------------------


def _dense_duvenaud(conv, x, ei, e, root):
    n = x.size(0)
    out = []
    for v in range(n):
        into = (ei[1] == v).nonzero().view(-1)
        h_sum = x[ei[0, into]].sum(0) + (x[v] if root else 0)  # v = r_a + sum_i r_i
        e_sum = e[into].sum(0)
        m = torch.cat([h_sum, e_sum]) if conv.edge_dim else h_sum  # M = (h_w, e_vw), summed
        deg = min(into.numel(), conv.max_degree)
        out.append(torch.sigmoid(m @ conv.weight[deg] + conv.bias))  # U = σ(H^{deg(v)} m_v)
    return torch.stack(out)


@pytest.mark.parametrize("root", [True, False])
def test_duvenaud_matches_algorithm_2(root):
    ei, e, x = _random_graph()
    conv = DuvenaudConv(4, 5, edge_dim=3, max_degree=3, root=root).double()  # degrees above 3 share H^3
    torch.testing.assert_close(conv(x, ei, e), _dense_duvenaud(conv, x, ei, e, root))
    graph = conv.prepare(Graph.from_edge_index(ei, 9, edge_attr=e))
    if not root:  # the base's unfused path: M = (h_w, e_vw) gathered per edge, summed
        torch.testing.assert_close(conv.propagate(x, graph, graph.edge_attr),
                                   torch.sigmoid(conv.per_degree(MessagePassing.message_and_aggregate(
                                       conv, x, x, graph.edge_attr, graph), graph) + conv.bias))  # fmt: skip


def test_duvenaud_equals_sigmoid_of_pyg_mfconv_with_tied_self_weights():
    ei, _, x = _random_graph()
    conv = DuvenaudConv(4, 5, max_degree=4).double()
    mf = pyg.MFConv(4, 5, max_degree=4).double()
    with torch.no_grad():
        for d in range(5):
            mf.lins_l[d].weight.copy_(conv.weight[d].t())
            mf.lins_l[d].bias.copy_(conv.bias)
            mf.lins_r[d].weight.copy_(conv.weight[d].t())  # MFConv learns a separate self weight
    torch.testing.assert_close(conv(x, ei), torch.sigmoid(mf(x, ei)))


# --- Battaglia et al. 2016 -----------------------------------------------------------------------


def test_interaction_matches_dense_equations_and_unfused_path():
    ei, e, h = _random_graph()
    ext = torch.randn(9, 2, dtype=D)
    conv = InteractionConv(4, 3, x_channels=2, hidden=6, message_channels=5).double()
    w1 = torch.cat([conv.rel_dst.weight, conv.rel_src.weight, conv.rel_edge.weight], 1)  # NN_R's first layer on (h_v, h_w, e)
    m = torch.zeros(9, 5, dtype=D)
    for k, (w, v) in enumerate(ei.t().tolist()):
        z = torch.relu(w1 @ torch.cat([h[v], h[w], e[k]]) + conv.rel_edge.bias)
        m[v] += conv.rel_out.weight @ z + conv.rel_out.bias  # M = NN_R(h_v, h_w, e_vw)
    obj = conv.obj
    expected = obj[2](torch.relu(obj[0](torch.cat([h, ext, m], 1))))  # U = NN_O(h_v, x_v, m_v)
    z = torch.cat([h, ext], 1)
    torch.testing.assert_close(conv(z, ei, e), expected)
    graph = conv.prepare(Graph.from_edge_index(ei, 9, edge_attr=e))
    torch.testing.assert_close(_unfused(conv, z, graph, conv.edge_features(graph)), expected)


# --- Schütt et al. 2017 (DTNN) --------------------------------------------------------------------


def test_gaussian_distances_are_the_papers_grid():
    expand = GaussianDistances()
    assert expand.num_gaussians == 106  # -1 .. 20 Å in steps of 0.2 Å
    d = torch.tensor([0.0, 1.37, 19.9], dtype=D)
    k = torch.arange(106, dtype=D)
    expected = torch.exp(-((d[:, None] - (-1.0 + 0.2 * k)) ** 2) / (2 * 0.2**2))
    torch.testing.assert_close(expand(d), expected)


def test_gaussian_distances_equal_pyg_gaussian_smearing_on_the_same_grid():
    from torch_geometric.nn.models.schnet import GaussianSmearing

    d = torch.rand(50) * 12
    # 106 centres from -1 to 20 Å: PyG's spacing 0.2 Å gives its width 0.2 Å, the DTNN setting
    torch.testing.assert_close(GaussianDistances()(d), GaussianSmearing(-1.0, 20.0, 106)(d))


def test_dtnn_matches_dense_equations_and_unfused_path():
    ei, e, h = _random_graph()
    conv = DTNNConv(4, 3, factors=7).double()
    m = torch.zeros_like(h)
    for k, (w, v) in enumerate(ei.t().tolist()):
        factor = (conv.lin_cf.weight @ h[w] + conv.lin_cf.bias) * (conv.lin_df.weight @ e[k] + conv.lin_df.bias)
        m[v] += torch.tanh(conv.lin_fc.weight @ factor)  # v_ij = tanh(W^fc((W^cf c_j + b1) ∘ (W^df d_ij + b2)))
    torch.testing.assert_close(conv(h, ei, e), h + m)  # c_i^{t+1} = c_i^t + sum_j v_ij
    graph = Graph.from_edge_index(ei, 9, edge_attr=e)
    torch.testing.assert_close(_unfused(conv, h, graph, conv.edge_features(graph)), h + m)


# --- Kearnes et al. 2016 (weave) -------------------------------------------------------------------


def test_weave_step_matches_dense_equations():
    ei, e, h = _random_graph()
    conv = WeaveConv(4, 3, 5, 6).double()
    relu = torch.relu
    m = torch.zeros(9, 3, dtype=D)
    e_new = []
    for k, (w, v) in enumerate(ei.t().tolist()):
        m[v] += e[k]  # M = e_vw
        a = relu(conv.lin2.weight @ e[k] + conv.lin2.bias)
        b = relu(conv.lin3.weight @ torch.cat([h[v], h[w]]) + conv.lin3.bias)
        e_new.append(relu(conv.lin4.weight @ torch.cat([a, b]) + conv.lin4.bias))  # e^{t+1}
    h_new = relu(torch.cat([relu(h @ conv.lin0.weight.t() + conv.lin0.bias), m], 1) @ conv.lin1.weight.t() + conv.lin1.bias)
    torch.testing.assert_close(conv(h, ei, e), h_new)
    graph = conv.prepare(Graph.from_edge_index(ei, 9, edge_attr=e))
    h_step, e_step, u_step = conv.step(h, graph, graph.edge_attr)  # the base's graph-network step
    torch.testing.assert_close(h_step, h_new)  # the node update read e^t, not e^{t+1}
    torch.testing.assert_close(e_step, torch.stack(e_new).index_select(0, graph.csr.perm))  # CSR order
    assert u_step is None
    torch.testing.assert_close(_unfused(conv, h, graph, graph.edge_attr), h_new)
    last = WeaveConv(4, 3, 5, update_edges=False).double()
    assert not last.updates_edges and not hasattr(last, "lin4")
    h_last, e_last, _ = last.step(h, graph, graph.edge_attr)  # no edge update: the edges pass through
    torch.testing.assert_close(h_last, last(h, ei, e))
    assert e_last is graph.edge_attr
    with pytest.raises(RuntimeError, match="update_edges=False"):
        last.edge_update(graph.edge_attr, h, h, None)


# --- Defferrard et al. 2016 (Chebyshev) ---------------------------------------------------------


def _dense_cheb(conv, x, ei, weight, lambda_max=2.0):
    n = x.size(0)
    a = torch.zeros(n, n, dtype=D)
    a.index_put_((ei[0], ei[1]), weight, accumulate=True)
    d = a.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    lap = torch.eye(n, dtype=D) - dis[:, None] * a * dis[None, :]  # L = I - D^-1/2 A D^-1/2
    lap_t = 2.0 * lap / lambda_max - torch.eye(n, dtype=D)
    t_prev, t = torch.eye(n, dtype=D), lap_t
    out = x @ conv.lins[0].weight.t()
    for k in range(1, conv.K):
        out = out + t @ x @ conv.lins[k].weight.t()
        t_prev, t = t, 2 * lap_t @ t - t_prev
    return out + conv.bias


@pytest.mark.parametrize("out", [2, 6])  # Clenshaw on mapped features (out < in), forward recursion
@pytest.mark.parametrize("K", [1, 2, 4])
def test_cheb_matches_the_dense_chebyshev_filter(K, out):
    ei, _, x = _random_graph()
    x = torch.cat([x, x], 1)  # 8 input channels
    ei = ei[:, ei[0] != ei[1]]
    w = torch.rand(ei.size(1), dtype=D) + 0.1
    ei, w = torch.cat([ei, ei.flip(0)], 1), torch.cat([w, w])  # undirected: A symmetric
    conv = ChebConv(8, out, K).double()
    with torch.no_grad():
        conv.bias.normal_()
    torch.testing.assert_close(conv(x, ei, w), _dense_cheb(conv, x, ei, w))


@pytest.mark.parametrize("normalization", ["sym", "rw", None])
@pytest.mark.parametrize("in_out", [(4, 3), (4, 6)])
@pytest.mark.parametrize("weighted", [False, True])
def test_cheb_equals_pyg(normalization, in_out, weighted):
    ei, _, x = _random_graph(e=40)  # directed, with self-loops and repeated edges
    w = torch.rand(ei.size(1), dtype=D) + 0.1 if weighted else None
    ours = ChebConv(*in_out, K=3, normalization=normalization).double()
    ref = pyg.ChebConv(*in_out, K=3, normalization=normalization).double()
    with torch.no_grad():
        ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, ei, w), ref(x, ei, w))
    fixed = ChebConv(*in_out, K=3, normalization=normalization, lambda_max=3.0).double()
    ref.load_state_dict(fixed.state_dict())
    torch.testing.assert_close(fixed(x, ei, w), ref(x, ei, w, lambda_max=3.0))


def test_cheb_explainer_mask_scales_the_edges_entries_and_leaves_the_diagonal():
    ei, _, x = _random_graph()
    conv = ChebConv(4, 3, K=3).double()
    with torch.no_grad():
        conv.bias.normal_()
    plain = conv(x, ei)
    conv.explain, conv._apply_sigmoid = True, False
    conv._edge_mask = torch.ones(ei.size(1), dtype=D)
    torch.testing.assert_close(conv(x, ei), plain)
    # every edge masked out: L~ is its diagonal, 2/lambda_max - 1 = 0, so T_1 x = 0 and T_2 x = -x
    conv._edge_mask = torch.zeros(ei.size(1), dtype=D)
    lin = [m.weight for m in conv.lins]
    torch.testing.assert_close(conv(x, ei), x @ (lin[0] - lin[2]).t() + conv.bias)


def test_cheb_explainer_mask_scales_every_laplacian_product():
    """K = 4: the mask scales the edges' entries of L~ in each of the K - 1 products (PyG masks
    every propagate call), so the output is the dense filter on the masked L~, the degrees (and
    the diagonal) those of the unmasked graph."""
    ei, _, x = _random_graph(seed=4)
    ei = ei[:, ei[0] != ei[1]]
    w = torch.rand(ei.size(1), dtype=D) + 0.1
    mask = torch.rand(ei.size(1), dtype=D)
    conv = ChebConv(4, 3, K=4).double()
    conv.explain, conv._apply_sigmoid, conv._edge_mask = True, False, mask
    n = x.size(0)
    a = torch.zeros(n, n, dtype=D).index_put_((ei[0], ei[1]), w, accumulate=True)
    a_masked = torch.zeros(n, n, dtype=D).index_put_((ei[0], ei[1]), w * mask, accumulate=True)
    d = a.sum(1)
    dis = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    lap_t = -(dis[:, None] * a_masked * dis[None, :]).t()  # 2 L / 2 - I, L = I - D^-1/2 A D^-1/2, row = target
    t_prev, t, out = x, lap_t @ x, x @ conv.lins[0].weight.t()
    for k in range(1, 4):
        out = out + t @ conv.lins[k].weight.t()
        t_prev, t = t, 2 * lap_t @ t - t_prev
    torch.testing.assert_close(conv(x, ei, w), out + conv.bias)


def test_layers_gradcheck_in_float64():
    ei, e, h = _random_graph(n=5, e=9)
    w = (torch.rand(ei.size(1), dtype=D) + 0.1).requires_grad_()
    h = h.requires_grad_()
    e = e.requires_grad_()
    cases = [
        (DuvenaudConv(4, 3, edge_dim=3, max_degree=2).double(), lambda c: c(h, ei, e)),
        (InteractionConv(4, 3, hidden=5).double(), lambda c: c(h, ei, e)),
        (DTNNConv(4, 3, factors=5).double(), lambda c: c(h, ei, e)),
        (WeaveConv(4, 3, 5).double(), lambda c: c(h, ei, e)),
        (ChebConv(4, 2, K=3).double(), lambda c: c(h, ei, w)),
    ]
    for conv, call in cases:
        assert torch.autograd.gradcheck(lambda *_: call(conv), (h, e, w))


@pytest.mark.parametrize("make", [
    lambda: DuvenaudConv(3, 4, edge_dim=2),
    lambda: InteractionConv(3, 2),
    lambda: DTNNConv(3, 2),
    lambda: WeaveConv(3, 2, 4),
    lambda: ChebConv(3, 4, K=2),
])  # fmt: skip
def test_empty_graph_and_isolated_nodes_give_finite_rows(make):
    conv = make()
    x, ei, e = torch.randn(4, 3), torch.zeros(2, 0, dtype=torch.long), torch.randn(0, 2)
    args = (x, ei, torch.rand(0)) if isinstance(conv, ChebConv) else (x, ei, e)
    out = conv(*args)
    assert out.shape[0] == 4 and torch.isfinite(out).all()


def test_bad_arguments_raise_clear_errors():
    ei, e, x = _random_graph()
    with pytest.raises(ValueError, match="max_degree"):
        DuvenaudConv(4, 3, max_degree=-1)
    with pytest.raises(ValueError, match="act"):
        DuvenaudConv(4, 3, act="gelu")
    with pytest.raises(ValueError, match="edge_dim=2: pass edge_attr"):
        DuvenaudConv(4, 3, edge_dim=2)(x.float(), ei)
    with pytest.raises(ValueError, match=r"channels \+ x_channels = 6"):
        InteractionConv(4, 3, x_channels=2)(x, ei, e)
    with pytest.raises(ValueError, match=r"expanded distances\) of shape \[E, 5\]"):
        DTNNConv(4, 5).double()(x, ei, e)
    with pytest.raises(ValueError, match=r"edge states\) of shape \[E, 2\]"):
        WeaveConv(4, 2, 3).double()(x, ei, e)
    with pytest.raises(ValueError, match="K must be"):
        ChebConv(4, 3, K=0)
    with pytest.raises(ValueError, match="normalization"):
        ChebConv(4, 3, K=2, normalization="lap")
    with pytest.raises(ValueError, match="lambda_max"):
        ChebConv(4, 3, K=2, lambda_max=0.0)
    with pytest.raises(ValueError, match="one node set"):
        ChebConv(4, 3, K=2).double()((x, x.clone()), ei)
    with pytest.raises(ValueError, match="mu_max > mu_min"):
        GaussianDistances(mu_min=1.0, mu_max=0.0)


@pytest.mark.parametrize("make", [
    lambda: DuvenaudConv(4, 3, edge_dim=3, max_degree=2, root=False),
    lambda: InteractionConv(4, 3, hidden=5),
    lambda: DTNNConv(4, 3, factors=5),
    lambda: WeaveConv(4, 3, 5),
])  # fmt: skip
def test_fused_paths_apply_an_explainer_mask_as_the_base_does(make):
    """A random edge mask scales each edge's message in the fused path exactly as the base's
    unfused message -> mask -> aggregate does."""
    ei, e, x = _random_graph()
    conv = make().double()
    conv.explain, conv._apply_sigmoid = True, True
    conv._edge_mask = torch.randn(ei.size(1), dtype=D)
    graph = conv.explained(conv.prepare(Graph.from_edge_index(ei, 9, edge_attr=e)))  # what propagate passes down
    assert graph.edge_mask is not None
    edge = conv.edge_features(graph)
    fused = conv.message_and_aggregate(x, x, edge, graph)
    base = MessagePassing.message_and_aggregate(conv, x, x, edge, graph)
    if isinstance(conv, DuvenaudConv):
        base = conv.per_degree(base, graph)
    torch.testing.assert_close(fused, base)
    plain = graph.replace(edge_mask=None)
    assert not torch.allclose(fused, conv.message_and_aggregate(x, x, conv.edge_features(plain), plain))


def test_pyg_call_forms_of_the_base():
    """The base's PyG call forms reach the Section 2 layers: ``(x_src, None)`` is refused where the
    update reads the targets' states, ``size=`` is checked; ChebConv prints as PyG's."""
    ei, e, x = _random_graph()
    for conv in (DuvenaudConv(4, 3, edge_dim=3), InteractionConv(4, 3), DTNNConv(4, 3), WeaveConv(4, 3, 5)):
        with pytest.raises(ValueError, match=r"not \(x_src, None\)"):
            conv.double()((x, None), ei, e, size=(9, 9))
    no_root = DuvenaudConv(4, 3, edge_dim=3, root=False).double()
    torch.testing.assert_close(no_root((x, None), ei, e, size=(9, 9)), no_root(x, ei, e))
    with pytest.raises(ValueError, match="size"):
        DTNNConv(4, 3).double()(x, ei, e, size=(9, 8))
    assert repr(ChebConv(4, 3, K=2)) == repr(pyg.ChebConv(4, 3, K=2)) == "ChebConv(4, 3, K=2, normalization=sym)"
