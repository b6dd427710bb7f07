"""gnnkit layers take what their PyG counterparts take and give PyG's results.

Each test builds the gnnkit layer and the PyG layer with the same constructor arguments (PyG's
order and defaults), gives them the same weights, and compares every call form: ``size=``,
``(x, None)`` pairs, static-graph ``[B, N, F]`` input, sparse ``adj_t``, featureless input,
``flow``. Arguments gnnkit cannot honour, and per-edge tensors a layer does not use, must raise.
"""

import copy

import pytest
import torch
import torch_geometric.nn as pyg
from torch import nn

import gnnkit.nn as gk

pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture
def float64():
    """Layers and inputs in float64, so that the comparisons are tight."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _graph(n: int = 6, e: int = 14, seed: int = 0) -> torch.Tensor:
    """``e`` distinct random edges (no self-loops) plus the self-loops of nodes 2 and 4, so that
    a sparse ``adj_t`` holds the same edges."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(n * (n - 1), generator=g)[:e]
    src, k = pairs // (n - 1), pairs % (n - 1)
    ei = torch.stack([src, k + (k >= src).long()])
    return torch.cat([ei, torch.tensor([[2, 4], [2, 4]])], 1)


def _bipartite(n_src: int = 5, n_dst: int = 3, e: int = 10) -> torch.Tensor:
    pairs = torch.randperm(n_src * n_dst, generator=torch.Generator().manual_seed(1))[:e]
    return torch.stack([pairs // n_dst, pairs % n_dst])


def _adj_t(edge_index: torch.Tensor, size: tuple[int, int], value: torch.Tensor | None = None) -> torch.Tensor:
    """PyG's transposed sparse adjacency (row = target), as ``to_torch_coo_tensor(...).t()``."""
    v = torch.ones(edge_index.size(1)) if value is None else value
    return torch.sparse_coo_tensor(edge_index.flip(0), v, (size[1], size[0], *v.shape[1:])).coalesce()


def _hooks_absent(layer: nn.Module) -> None:
    for name in ("register_message_forward_pre_hook", "register_propagate_forward_hook", "register_aggregate_forward_hook"):
        assert not hasattr(layer, name)
        with pytest.raises(AttributeError, match="register_forward_pre_hook"):
            getattr(layer, name)


# ------------------------------------------------------------------------------------ GCNConv


def _gcn_pair(*args, **kwargs):
    ours, theirs = gk.GCNConv(*args, **kwargs), pyg.GCNConv(*args, **kwargs)
    with torch.no_grad():
        ours.lin.weight.copy_(theirs.lin.weight)
        if ours.bias is not None:
            ours.bias.copy_(torch.randn_like(ours.bias))
            theirs.bias.copy_(ours.bias)
    return ours, theirs


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((8, 4), {}),
        ((8, 4, True), {}),  # improved is PyG's third positional parameter
        ((8, 4, False, False, None, False), {}),  # normalize=False: no self-loops (PyG 2.8's default)
        ((8, 4), {"add_self_loops": False}),
        ((8, 4), {"bias": False}),
        ((8, 4), {"aggr": "mean"}),
        ((8, 4), {"aggr": "max"}),
    ],
)
def test_gcn_constructor_forms_match_pyg(args, kwargs):
    ours, theirs = _gcn_pair(*args, **kwargs)
    ei, x, w = _graph(), torch.randn(6, 8), torch.rand(16)
    torch.testing.assert_close(ours(x, ei, w), theirs(x, ei, w))
    torch.testing.assert_close(ours(x, ei, edge_weight=w), theirs(x, ei, edge_weight=w))
    if not (len(args) > 2 and args[2]):  # improved without weights: see the next test
        torch.testing.assert_close(ours(x, ei), theirs(x, ei))
    torch.testing.assert_close(ours(x, _adj_t(ei, (6, 6), w)), theirs(x, ei, w))
    assert str(ours) == str(theirs) == "GCNConv(8, 4)"
    assert (ours.improved, ours.add_self_loops, ours.normalize) == (theirs.improved, theirs.add_self_loops, theirs.normalize)


def test_gcn_improved_is_a_plus_2i_also_without_weights():
    """PyG 2.8 drops the fill value 2 on an edge_index without edge_weight (documented difference);
    gnnkit's ``improved`` is A + 2I in every call form, as PyG's with weights or an adj_t."""
    ours, theirs = _gcn_pair(8, 4, True)
    ei, x = _graph(), torch.randn(6, 8)
    ones = torch.ones(ei.size(1))
    torch.testing.assert_close(ours(x, ei), theirs(x, ei, ones))
    # PyG's torch.sparse path adds loops on top of existing ones, so compare it on a loop-free graph
    free = ei[:, :-2]
    torch.testing.assert_close(ours(x, free), theirs(x, _adj_t(free, (6, 6))))
    # the dense equation: D^-1/2 (A' + 2I) D^-1/2 x W + b, A' = A with the loops of nodes 2, 4 kept
    a = torch.zeros(6, 6).index_put_((ei[1], ei[0]), ones, accumulate=True)
    a = a + torch.diag(torch.where(a.diagonal() > 0, torch.zeros(6), torch.full((6,), 2.0)))
    d = a.sum(1).pow(-0.5)
    torch.testing.assert_close(ours(x, ei), d[:, None] * a * d[None, :] @ x @ ours.lin.weight.T + ours.bias)


def test_gcn_self_loops_without_normalisation_refused():
    with pytest.raises(ValueError, match="does not support adding self-loops"):
        gk.GCNConv(8, 4, normalize=False, add_self_loops=True)


def test_gcn_cached_reuses_the_first_graph_as_pyg():
    ours, theirs = _gcn_pair(8, 4, False, True)
    x, ei1, ei2 = torch.randn(6, 8), _graph(seed=0), _graph(seed=3)
    torch.testing.assert_close(ours(x, ei1), theirs(x, ei1))
    torch.testing.assert_close(ours(x, ei2), theirs(x, ei2))  # both still on ei1's normalisation
    torch.testing.assert_close(ours(x, ei2), ours(x, ei1))
    ours.reset_cache()
    ours.cached = False  # settable, as in PyG
    assert not torch.allclose(ours(x, ei2), ours(x, ei1))
    uncached = gk.GCNConv(8, 4, normalize=False, cached=True)  # nothing to cache without normalisation, as PyG
    w = torch.rand(16)
    assert not torch.allclose(uncached(x, ei1, w), uncached(x, ei1, 2 * w))


def test_gcn_flow_argument_and_attribute():
    ours, theirs = _gcn_pair(8, 4, flow="target_to_source")
    ei, x, w = _graph(), torch.randn(6, 8), torch.rand(16)
    torch.testing.assert_close(ours(x, ei, w), theirs(x, ei, w))
    assert not torch.allclose(ours(x, ei, w), ours(x, ei.flip(0), w))
    ours.flow = theirs.flow = "source_to_target"  # set after construction: honoured, as in PyG
    torch.testing.assert_close(ours(x, ei, w), theirs(x, ei, w))
    ours.flow = "target_to_source"
    with pytest.raises(ValueError, match="flow='target_to_source' needs an edge_index"):
        ours(x, _adj_t(ei, (6, 6)))
    with pytest.raises(ValueError, match="flow must be one of"):
        gk.GCNConv(8, 4, flow="both")


def test_gcn_static_graph_input():
    ours, theirs = _gcn_pair(8, 4)
    ei, x, w = _graph(), torch.randn(3, 6, 8), torch.rand(16)
    out = ours(x, ei, w)
    assert out.shape == (3, 6, 4)
    torch.testing.assert_close(out, theirs(x, ei, w))
    torch.testing.assert_close(out[1], ours(x[1], ei, w))


def test_gcn_refuses_what_it_cannot_honour():
    for kwargs, match in (({"decomposed_layers": 2}, "decomposed_layers"), ({"node_dim": 1}, "node_dim"),
                          ({"aggr": "min"}, "aggr"), ({"aggr_kwargs": {"a": 1}}, "aggr_kwargs")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            gk.GCNConv(8, 4, **kwargs)
    with pytest.raises(TypeError, match="colour"):
        gk.GCNConv(8, 4, colour=1)
    conv, ei, x = gk.GCNConv(8, 4), _graph(), torch.randn(6, 8)
    with pytest.raises(TypeError, match="GCNConv does not use edge_attr"):
        conv(x, ei, edge_attr=torch.randn(16, 2))
    _hooks_absent(conv)


# ------------------------------------------------------------------------------------ GINConv


def _gin_pair(**kwargs):
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    ours, theirs = gk.GINConv(mlp, **kwargs), pyg.GINConv(copy.deepcopy(mlp), **kwargs)
    ours.nn.load_state_dict(theirs.nn.state_dict())  # PyG re-initialises nn when it is built
    return ours, theirs


@pytest.mark.parametrize("kwargs", [{}, {"eps": 0.3, "train_eps": True}, {"aggr": "mean"}, {"aggr": "max"}, {"flow": "target_to_source"}])
def test_gin_call_forms_match_pyg(kwargs):
    ours, theirs = _gin_pair(**kwargs)
    ei, x = _graph(), torch.randn(6, 8)
    ref = theirs(x, ei)
    torch.testing.assert_close(ours(x, ei), ref)
    torch.testing.assert_close(ours(x, ei, (6, 6)), ref)  # size, PyG's third positional parameter
    torch.testing.assert_close(ours(x, ei, size=(6, 6)), ref)
    if "flow" not in kwargs:
        torch.testing.assert_close(ours(x, _adj_t(ei, (6, 6))), ref)
    xs = torch.randn(3, 6, 8)  # static graph
    torch.testing.assert_close(ours(xs, ei), theirs(xs, ei))
    assert str(ours) == str(theirs)


def test_gin_bipartite_and_none_target():
    ours, theirs = _gin_pair(eps=0.5)
    ei, x1, x2 = _bipartite(), torch.randn(5, 8), torch.randn(3, 8)
    torch.testing.assert_close(ours((x1, x2), ei), theirs((x1, x2), ei))
    torch.testing.assert_close(ours((x1, x2), ei, (5, 3)), theirs((x1, x2), ei, (5, 3)))
    ref = theirs((x1, None), ei, (5, 3))
    torch.testing.assert_close(ours((x1, None), ei, (5, 3)), ref)
    torch.testing.assert_close(ours((x1, None), ei, size=(5, 3)), ref)
    torch.testing.assert_close(ours((x1, None), _adj_t(ei, (5, 3))), ref)
    with pytest.raises(ValueError, match="pass size"):
        ours((x1, None), ei)
    with pytest.raises(ValueError, match="size=\\(5, 4\\) gives 4 target nodes but x has 3"):
        ours((x1, x2), ei, (5, 4))
    with pytest.raises(TypeError, match="size given twice"):
        ours((x1, x2), ei, (5, 3), size=(5, 3))


def test_gin_refuses_per_edge_inputs():
    ours, _ = _gin_pair()
    ei, x = _graph(), torch.randn(6, 8)
    with pytest.raises(TypeError, match="GINConv does not use edge_attr \\(takes no per-edge input\\)"):
        ours(x, ei, edge_attr=torch.randn(16, 8))
    with pytest.raises(TypeError, match="GINConv does not use edge_weight"):
        ours(x, ei, edge_weight=torch.rand(16))
    with pytest.raises(TypeError, match="takes no per-edge input, got a Tensor"):
        ours(x, ei, torch.rand(16))
    with pytest.raises(ValueError, match="edge values other than 1"):
        ours(x, _adj_t(ei, (6, 6), torch.rand(16)))
    _hooks_absent(ours)


# ---------------------------------------------------------------------- EdgeNetworkConv / NNConv


def _edge_net(edge_dim: int = 3, width: int = 8 * 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(edge_dim, 5), nn.ReLU(), nn.Linear(5, width))


def _nn_pair(in_channels, out_channels, *args, **kwargs):
    net = _edge_net(width=(in_channels[0] if isinstance(in_channels, tuple) else in_channels) * out_channels)
    theirs = pyg.NNConv(in_channels, out_channels, copy.deepcopy(net), *args, **kwargs)
    ours = gk.EdgeNetworkConv(in_channels, out_channels, net, *args, **kwargs)
    ours.nn.load_state_dict(theirs.nn.state_dict())  # both re-initialise nn when built
    with torch.no_grad():
        if ours.root is not None:
            ours.root.weight.copy_(theirs.lin.weight)
        if ours.bias is not None:
            theirs.bias.copy_(ours.bias)
    return ours, theirs


@pytest.mark.parametrize("args, kwargs", [((), {}), (("mean",), {}), (("add", False, False), {}), ((), {"flow": "target_to_source"})])
def test_nnconv_constructor_and_call_forms_match_pyg(args, kwargs):
    ours, theirs = _nn_pair(8, 4, *args, **kwargs)
    ei, x, ea = _graph(), torch.randn(6, 8), torch.randn(16, 3)
    ref = theirs(x, ei, ea)
    torch.testing.assert_close(ours(x, ei, ea), ref)
    torch.testing.assert_close(ours(x, ei, ea, (6, 6)), ref)
    torch.testing.assert_close(ours(x, ei, edge_attr=ea, size=(6, 6)), ref)
    if "flow" not in kwargs:
        torch.testing.assert_close(ours(x, _adj_t(ei, (6, 6), ea)), ref)
    assert str(ours) == str(theirs).replace("NNConv", "EdgeNetworkConv", 1)
    assert ours.state_dict().keys() >= {"edge_mlp.0.weight", "edge_out.weight"}


def test_nnconv_tuple_in_channels_and_none_target():
    ours, theirs = _nn_pair((8, 2), 4)
    ei, x1, x2, ea = _bipartite(), torch.randn(5, 8), torch.randn(3, 2), torch.randn(10, 3)
    torch.testing.assert_close(ours((x1, x2), ei, ea), theirs((x1, x2), ei, ea))
    torch.testing.assert_close(ours((x1, x2), ei, ea, (5, 3)), theirs((x1, x2), ei, ea, (5, 3)))
    ref = theirs((x1, None), ei, ea, (5, 3))
    torch.testing.assert_close(ours((x1, None), ei, ea, (5, 3)), ref)
    torch.testing.assert_close(ours((x1, None), _adj_t(ei, (5, 3), ea)), ref)
    assert str(ours).startswith("EdgeNetworkConv((8, 2), 4, aggr=add, nn=Sequential(")
    with pytest.raises(ValueError, match=r"x_dst must have shape \[M, 2\]"):
        ours((x1, torch.randn(3, 8)), ei, ea)


def test_nnconv_refusals():
    with pytest.raises(ValueError, match="last module is an nn.Linear"):
        gk.EdgeNetworkConv(8, 4, nn.Sequential(nn.Linear(3, 32), nn.Tanh()))
    with pytest.raises(ValueError, match="output in_channels \\* out_channels = 32"):
        gk.EdgeNetworkConv(8, 4, nn.Sequential(nn.Linear(3, 31)))
    with pytest.raises(ValueError, match="aggr"):
        gk.EdgeNetworkConv(8, 4, _edge_net(), "max")
    with pytest.raises(TypeError, match="needs nn"):
        gk.EdgeNetworkConv(8, 4)
    with pytest.raises(TypeError, match="not both"):
        gk.EdgeNetworkConv(8, 4, _edge_net(), edge_dim=3)
    ours = gk.EdgeNetworkConv(8, 4, _edge_net())
    ei, x, ea = _graph(), torch.randn(6, 8), torch.randn(16, 3)
    with pytest.raises(TypeError, match="EdgeNetworkConv does not use edge_weight \\(takes edge_attr\\)"):
        ours(x, ei, ea, edge_weight=torch.rand(16))
    with pytest.raises(ValueError, match="x must have shape"):
        ours(torch.randn(2, 6, 8), ei, ea)  # NNConv has no static-graph form either
    _hooks_absent(ours)


# ---------------------------------------------------------------------- RelationalConv / RGCNConv


def _rgcn_pair(*args, **kwargs):
    theirs = pyg.RGCNConv(*args, **kwargs)
    ours = gk.RelationalConv(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())  # same parameter names and layouts
    with torch.no_grad():
        if ours.bias is not None:
            ours.bias.copy_(torch.randn_like(ours.bias))
            theirs.bias.copy_(ours.bias)
    return ours, theirs


_CONFS = [(None, None), (2, None), (None, 2)]


@pytest.mark.parametrize("conf", _CONFS)
@pytest.mark.parametrize("aggr", ["mean", "add", "max", "min"])
def test_rgcn_matches_pyg(conf, aggr):
    ours, theirs = _rgcn_pair(4, 6, 3, *conf, aggr=aggr)
    ei, x = _graph(), torch.randn(6, 4)
    et = torch.randint(0, 3, (ei.size(1),), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours(x, ei, et), theirs(x, ei, et))
    torch.testing.assert_close(ours(x, _adj_t(ei, (6, 6), et)), theirs(x, ei, et))
    assert str(ours) == str(theirs).replace("RGCNConv", "RelationalConv") == "RelationalConv(4, 6, num_relations=3)"


def test_rgcn_default_is_the_per_relation_mean():
    """``aggr="mean"`` (the default) is each relation's mean, summed over relations."""
    ours = gk.RelationalConv(2, 3, 2, root_weight=False, bias=False)
    x = torch.randn(3, 2)
    ei, et = torch.tensor([[0, 1, 2], [2, 2, 2]]), torch.tensor([0, 0, 1])
    expected = (x[0] + x[1]) / 2 @ ours.weight[0] + x[2] @ ours.weight[1]
    torch.testing.assert_close(ours(x, ei, et)[2], expected)
    over_all = gk.RelationalConv(2, 3, 2, root_weight=False, bias=False, per_relation=False)
    over_all.load_state_dict(ours.state_dict())
    torch.testing.assert_close(over_all(x, ei, et)[2], (x[0] @ ours.weight[0] + x[1] @ ours.weight[0] + x[2] @ ours.weight[1]) / 3)


@pytest.mark.parametrize("conf", _CONFS[:2])
@pytest.mark.parametrize("aggr", ["mean", "add", "max"])
def test_rgcn_featureless_and_index_input(conf, aggr):
    ours, theirs = _rgcn_pair(6, 5, 3, *conf, aggr=aggr)
    ei = _graph()
    et = torch.randint(0, 3, (ei.size(1),), generator=torch.Generator().manual_seed(2))
    ref = theirs(None, ei, et)
    torch.testing.assert_close(ours(None, ei, et), ref)
    torch.testing.assert_close(ours(torch.arange(6), ei, et), ref)
    idx = torch.tensor([5, 0, 3, 3, 1, 2])  # nodes sharing an embedding row
    torch.testing.assert_close(ours(idx, ei, et), theirs(idx, ei, et))
    with pytest.raises(ValueError, match="node indices, which must lie in \\[0, in_channels=6\\)"):
        ours(torch.tensor([0, 1, 2, 3, 4, 6]), ei, et)


@pytest.mark.parametrize("conf", _CONFS)
def test_rgcn_bipartite(conf):
    ours, theirs = _rgcn_pair((4, 7), 6, 2, *conf, aggr="mean")
    ei, x1, x2 = _bipartite(), torch.randn(5, 4), torch.randn(3, 7)
    et = torch.randint(0, 2, (ei.size(1),), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(ours((x1, x2), ei, et), theirs((x1, x2), ei, et))
    assert str(ours) == "RelationalConv((4, 7), 6, num_relations=2)"
    if conf[1] is None:  # featureless sources, indexed targets
        ours, theirs = _rgcn_pair((5, 3), 6, 2, *conf)
        idx2 = torch.tensor([2, 0, 1])
        torch.testing.assert_close(ours((None, idx2), ei, et), theirs((None, idx2), ei, et))
        torch.testing.assert_close(ours((torch.arange(5), idx2), ei, et), theirs((None, idx2), ei, et))


def test_rgcn_is_sorted_is_checked_and_other_refusals():
    ei = _graph()
    et = torch.randint(0, 3, (ei.size(1),), generator=torch.Generator().manual_seed(2))
    x = torch.randn(6, 4)
    ours, theirs = _rgcn_pair(4, 6, 3, is_sorted=True)
    order = et.argsort(stable=True)
    torch.testing.assert_close(ours(x, ei[:, order], et[order]), theirs(x, ei[:, order], et[order]))
    with pytest.raises(ValueError, match="is_sorted=True, but edge_type is not sorted"):
        ours(x, ei, et)
    with pytest.raises(ValueError, match="Can not apply both"):
        gk.RelationalConv(4, 6, 3, 2, 2)
    with pytest.raises(ValueError, match="num_blocks=3 must divide"):
        gk.RelationalConv(4, 6, 3, None, 3)
    with pytest.raises(ValueError, match="Block-diagonal decomposition not supported"):
        gk.RelationalConv(4, 6, 3, None, 2)(None, ei, et)
    with pytest.raises(TypeError, match="RelationalConv does not use edge_weight \\(takes edge_type\\)"):
        ours(x, ei, et, edge_weight=torch.rand(ei.size(1)))
    _hooks_absent(ours)


# ------------------------------------------------------------------- GGNNConv / GatedGraphConv


def test_ggnn_is_not_gated_graph_conv_and_says_so():
    with pytest.raises(TypeError, match="num_layers"):
        gk.GGNNConv(32, num_layers=3)
    conv, ei, x = gk.GGNNConv(4, 2), _graph(), torch.randn(6, 4)
    et = torch.randint(0, 2, (ei.size(1),))
    with pytest.raises(TypeError, match="GGNNConv does not use edge_weight \\(takes edge_type\\)"):
        conv(x, ei, et, edge_weight=torch.rand(ei.size(1)))
    assert "gnnkit.models.GGNN" in gk.GGNNConv.__doc__ and "GatedGraphConv" in gk.GGNNConv.__doc__
    assert str(conv) == "GGNNConv(4, num_edge_types=2, aggr=sum)"
    _hooks_absent(conv)


# --------------------------------------------------------------------------------- Set2Set


def test_set2set_matches_pyg_aggregation():
    ours, theirs = gk.Set2Set(3, 2), pyg.aggr.Set2Set(3, 2)
    ours.load_state_dict(theirs.state_dict())
    assert str(ours) == str(theirs) == "Set2Set(3, 6)"
    x, batch = torch.randn(7, 3), torch.tensor([0, 0, 1, 1, 1, 2, 2])
    torch.testing.assert_close(ours(x, batch), theirs(x, batch))  # graph count read from batch
    torch.testing.assert_close(ours(x, batch, 4), theirs(x, batch, dim_size=4))
    torch.testing.assert_close(ours(x), theirs(x))  # no index: one set
    assert gk.Set2Set(in_channels=3, processing_steps=2, bias=True).processing_steps == 2
    with pytest.raises(ValueError, match="num_layers=2 is not supported"):
        gk.Set2Set(3, 2, num_layers=2)
