"""gnnkit layers inside PyG models, row by row as a PyG user works: sparse adjacency and EdgeIndex
inputs, to_hetero and torch.fx, lazy sizes, half precision and autocast, explainers, DataLoader
pipelines, graph breaks. Compared with PyG's layers wherever one exists."""

import copy

import pytest
import torch
import torch_geometric.transforms as T
from torch import nn
from torch_geometric import EdgeIndex
from torch_geometric.data import Batch, Data, HeteroData
from torch_geometric.explain import Explainer, GNNExplainer
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv as PygGCNConv
from torch_geometric.nn import GINConv as PygGINConv
from torch_geometric.nn import Linear as PygLinear
from torch_geometric.nn import NNConv, global_mean_pool, to_hetero

import gnnkit.nn as gk

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


def _graph(n=12, e=40, seed=0, unique=False):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    if unique:  # ToSparseTensor merges duplicate edges (summing their values)
        ei = torch.unique(ei, dim=1)
    return torch.randn(n, 5, generator=g), ei, torch.rand(ei.size(1), generator=g) + 0.1


def _gcn_pair(cin=5, cout=4):
    ours, theirs = gk.GCNConv(cin, cout), PygGCNConv(cin, cout)
    with torch.no_grad():
        theirs.lin.weight.copy_(ours.lin.weight)
        ours.bias.normal_()
        theirs.bias.copy_(ours.bias)
    return ours, theirs


# --------------------------------------------------------------------- adjacency and EdgeIndex


@pytest.mark.parametrize("layout", [torch.sparse_csr, torch.sparse_coo])
def test_sparse_adjacency_equals_edge_index_and_pyg(layout):
    x, ei, w = _graph(unique=True)
    data = T.ToSparseTensor(layout=layout)(Data(x=x, edge_index=ei, edge_weight=w))
    ours, theirs = _gcn_pair()
    ref = ours(x, ei, w)
    assert int((ei[0] == ei[1]).sum()) > 0  # existing self-loops: adj_t must give what edge_index gives
    torch.testing.assert_close(ours(x, data.adj_t), ref)
    torch.testing.assert_close(theirs(x, ei, w), ref)
    # PyG's own adj_t path adds self-loops differently when the graph has some (its result then
    # differs from its edge_index result); on a graph without them it agrees with gnnkit.
    keep = ei[0] != ei[1]
    loop_free = T.ToSparseTensor(layout=layout)(Data(x=x, edge_index=ei[:, keep], edge_weight=w[keep]))
    torch.testing.assert_close(theirs(x, loop_free.adj_t), ours(x, loop_free.adj_t))
    # a registry model reads data.adj_t too
    from gnnkit.models import build_model

    model = build_model("gcn", 5, 3, hidden=4).eval()
    torch.testing.assert_close(model(data), model(Data(x=x, edge_index=ei, edge_weight=w)))


def test_sparse_adjacency_with_edge_features_equals_nnconv():
    x, ei, _ = _graph(unique=True)
    ea = torch.randn(ei.size(1), 3)
    adj_t = T.ToSparseTensor(attr="edge_attr")(Data(x=x, edge_index=ei, edge_attr=ea)).adj_t
    ours = gk.EdgeNetworkConv(5, 5, aggr="mean", root_weight=True, edge_dim=3, hidden=6)
    theirs = NNConv(5, 5, nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 25)), aggr="mean")
    with torch.no_grad():
        theirs.nn[0].load_state_dict(ours.edge_mlp[0].state_dict())
        theirs.nn[2].load_state_dict(ours.edge_out.state_dict())
        theirs.lin.weight.copy_(ours.root.weight)
        theirs.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x, adj_t), ours(x, ei, ea))
    torch.testing.assert_close(ours(x, adj_t), theirs(x, ei, ea))


def test_sparse_tensor_interface():
    """torch_sparse cannot be installed here; a SparseTensor is read through its coo() /
    sparse_sizes() interface, checked with an object offering exactly those."""

    class SparseTensorLike:
        def __init__(self, row, col, value, sizes):
            self.row, self.col, self.value, self.sizes = row, col, value, sizes

        def coo(self):
            return self.row, self.col, self.value

        def sparse_sizes(self):
            return self.sizes

    x, ei, w = _graph()
    ours, _ = _gcn_pair()
    adj_t = SparseTensorLike(ei[1], ei[0], w, (12, 12))
    torch.testing.assert_close(ours(x, adj_t), ours(x, ei, w))
    with pytest.raises(ValueError, match="adj_t has shape"):
        ours(x[:10], adj_t)


def test_edge_index_class_and_int32():
    x, ei, w = _graph()
    ours, theirs = _gcn_pair()
    ref = ours(x, ei, w)
    torch.testing.assert_close(ours(x, EdgeIndex(ei, sparse_size=(12, 12)), w), ref)
    torch.testing.assert_close(ours(x, ei.int(), w), ref)
    torch.testing.assert_close(theirs(x, ei, w), ref)


# ------------------------------------------------------------------------------ fx, to_hetero


class TwoLayers(nn.Module):
    def __init__(self, make):
        super().__init__()
        self.conv1, self.conv2 = make(), make()

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def test_fx_symbolic_trace_records_layers_as_calls():
    x, ei, w = _graph()
    model = TwoLayers(lambda: gk.GINConv(nn.Sequential(nn.Linear(5, 5), nn.ReLU())))
    traced = torch.fx.symbolic_trace(model)
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["conv1", "conv2"]
    torch.testing.assert_close(traced(x, ei), model(x, ei))

    class WithReadout(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool = gk.GCNConv(5, 4), gk.Set2Set(4, processing_steps=2)

        def forward(self, x, edge_index, batch):
            return self.pool(self.conv(x, edge_index), batch, 2)

    batch = torch.arange(12) % 2
    m = WithReadout()
    torch.testing.assert_close(torch.fx.symbolic_trace(m)(x, ei, batch), m(x, ei, batch))


def _hetero():
    g = torch.Generator().manual_seed(3)
    d = HeteroData()
    d["paper"].x, d["author"].x = torch.randn(8, 5, generator=g), torch.randn(5, 5, generator=g)
    d["paper", "cites", "paper"].edge_index = torch.randint(0, 8, (2, 20), generator=g)
    writes = torch.stack([torch.randint(0, 5, (12,), generator=g), torch.randint(0, 8, (12,), generator=g)])
    d["author", "writes", "paper"].edge_index = writes
    d["paper", "rev_writes", "author"].edge_index = writes.flip(0)
    return d


def test_to_hetero_equals_pyg_with_copied_weights():
    d = _hetero()
    ours = to_hetero(TwoLayers(lambda: gk.GINConv(nn.Sequential(nn.Linear(5, 5), nn.ReLU()), train_eps=True)), d.metadata())
    theirs = to_hetero(TwoLayers(lambda: PygGINConv(nn.Sequential(nn.Linear(5, 5), nn.ReLU()), train_eps=True)), d.metadata())
    theirs.load_state_dict(ours.state_dict())  # the same parameter names, per edge type
    out, ref = ours(d.x_dict, d.edge_index_dict), theirs(d.x_dict, d.edge_index_dict)
    assert set(out) == {"paper", "author"}  # per node type: edge types summed per destination
    for key in out:
        torch.testing.assert_close(out[key], ref[key])
    sum(o.sum() for o in out.values()).backward()
    assert ours.conv1["author__writes__paper"].nn[0].weight.grad is not None


def test_to_hetero_with_gcn_on_one_node_type_and_a_clear_bipartite_error():
    d = HeteroData()
    d["paper"].x = torch.randn(8, 5)
    d["paper", "cites", "paper"].edge_index = torch.randint(0, 8, (2, 20))
    ours = to_hetero(TwoLayers(lambda: gk.GCNConv(5, 5)), d.metadata())
    theirs = to_hetero(TwoLayers(lambda: PygGCNConv(5, 5)), d.metadata())
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(d.x_dict, d.edge_index_dict)["paper"], theirs(d.x_dict, d.edge_index_dict)["paper"])
    h = _hetero()
    with pytest.raises(ValueError, match="'add_self_loops' attribute set to 'True'"):  # PyG's own check
        to_hetero(TwoLayers(lambda: gk.GCNConv(5, 5)), h.metadata())
    with pytest.raises(ValueError, match="GCNConv received a \\(x_src, x_dst\\) pair"):
        to_hetero(TwoLayers(lambda: gk.GCNConv(5, 5, add_self_loops=False)), h.metadata())(h.x_dict, h.edge_index_dict)


# ------------------------------------------------------------------------ lazy sizes, precision


def test_lazy_in_channels_equals_pyg():
    x, ei, w = _graph()
    ours, theirs = gk.GCNConv(-1, 4), PygGCNConv(-1, 4)
    out = ours(x, ei, w)  # creates the weight from x's width
    assert ours.lin.weight.shape == (4, 5)
    theirs(x, ei, w)
    with torch.no_grad():
        theirs.lin.weight.copy_(ours.lin.weight)
        theirs.bias.copy_(ours.bias)
    torch.testing.assert_close(out, theirs(x, ei, w))
    sparse = gk.GCNConv(-1, 4)
    assert sparse(x.to_sparse(), ei).shape == (12, 4) and sparse.lin.weight.shape == (4, 5)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 5\]"):
        ours(torch.randn(12, 3), ei)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_layers(dtype):
    x, ei, w = _graph()
    ea = torch.randn(ei.size(1), 3)
    for make, extra in ((lambda: gk.GCNConv(5, 4), (w,)), (lambda: gk.EdgeNetworkConv(5, 5, root_weight=False, edge_dim=3, hidden=6), (ea,)),
                        (lambda: gk.GINConv(nn.Linear(5, 4)), ())):  # fmt: skip
        layer = make()
        ref = layer(x, ei, *extra)
        half = copy.deepcopy(layer).to(dtype)
        out = half(x.to(dtype), ei, *(t.to(dtype) for t in extra))
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)  # float32 accumulation, one rounding


def test_autocast_matches_pyg():
    x, ei, w = _graph()
    ours, theirs = _gcn_pair()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, ref = ours(x, ei, w), theirs(x, ei, w)
    torch.testing.assert_close(out.float(), ref.float(), atol=0.02, rtol=0.02)
    ea = torch.randn(ei.size(1), 3)
    conv = gk.EdgeNetworkConv(5, 5, root_weight=False, edge_dim=3, hidden=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, ei, ea)
    torch.testing.assert_close(out.float(), conv(x, ei, ea), atol=0.05, rtol=0.05)


# --------------------------------------------------------------------------------- explainers


def _explain(model, x, ei):
    torch.manual_seed(0)
    explainer = Explainer(
        model, GNNExplainer(epochs=40), explanation_type="model", node_mask_type="attributes", edge_mask_type="object",
        model_config=dict(mode="multiclass_classification", task_level="node", return_type="raw"),
    )  # fmt: skip
    return explainer(x, ei, index=torch.tensor([2, 5]))


def test_gnnexplainer_masks_reach_the_messages_and_equal_pygs():
    x, ei, _ = _graph()

    class Net(nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.conv1, self.conv2 = conv(5, 8), conv(8, 3)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    ours, theirs = Net(gk.GCNConv), Net(PygGCNConv)
    theirs.load_state_dict(ours.state_dict())
    a, b = _explain(ours, x, ei), _explain(theirs, x, ei)
    assert a.edge_mask.shape == (ei.size(1),) and bool((a.edge_mask != 0).any())
    torch.testing.assert_close(a.edge_mask, b.edge_mask, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(a.node_mask, b.node_mask, atol=1e-4, rtol=1e-3)
    assert all(m.explain is not True for m in ours.modules() if isinstance(m, gk.MessagePassing))  # cleared


@pytest.mark.parametrize("make", [lambda: gk.GINConv(nn.Linear(5, 5)), lambda: gk.EdgeNetworkConv(5, 5, root_weight=False, edge_dim=2, hidden=4),
                                  lambda: gk.RelationalConv(5, 5, 3, aggr="sum"), lambda: gk.GGNNConv(5, 3)])  # fmt: skip
def test_edge_mask_scales_each_message(make):
    """With explain on, a mask of 0 on an edge removes exactly that edge's message."""
    x, ei, _ = _graph()
    layer = make()
    extra = {"edge_attr": torch.randn(ei.size(1), 2)} if isinstance(layer, gk.EdgeNetworkConv) else {}
    if isinstance(layer, (gk.RelationalConv, gk.GGNNConv)):
        extra = {"edge_type": torch.randint(0, 3, (ei.size(1),))}
    keep = torch.rand(ei.size(1)) < 0.6
    layer.explain, layer._edge_mask, layer._apply_sigmoid = True, keep.float(), False
    masked = layer(x, ei, **extra)
    layer.explain = None
    sub = {k: v[keep] for k, v in extra.items()}
    torch.testing.assert_close(masked, layer(x, ei[:, keep], **sub))


# -------------------------------------------------------------------- DataLoader, graph breaks


def test_dataloader_pipeline_with_pyg_pooling_and_lazy_linear():
    graphs = [Data(x=torch.randn(n, 5), edge_index=torch.randint(0, n, (2, 3 * n))) for n in (4, 6, 3, 7)]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = gk.GCNConv(5, 8), PygLinear(-1, 2)

        def forward(self, data):
            return self.head(global_mean_pool(self.conv(data.x, data.edge_index).relu(), data.batch))

    net = Net()
    batch = next(iter(DataLoader(graphs, batch_size=4)))
    out = net(batch)
    single = torch.cat([net(Batch.from_data_list([g])) for g in graphs])
    torch.testing.assert_close(out, single)


def _breaks(fn, *args):
    torch._dynamo.reset()
    count = torch._dynamo.explain(fn)(*args).graph_break_count
    torch._dynamo.reset()
    return count


def test_graph_breaks_no_more_than_pygs():
    x, ei, _ = _graph()
    ea = torch.randn(ei.size(1), 3)
    nnconv = NNConv(5, 5, nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 25)))
    assert _breaks(gk.GCNConv(5, 4), x, ei) <= _breaks(PygGCNConv(5, 4), x, ei)
    assert _breaks(gk.EdgeNetworkConv(5, 5, root_weight=False, edge_dim=3, hidden=6), x, ei, ea) <= _breaks(nnconv, x, ei, ea) == 0
    graph = gk.GCNConv(5, 4).prepare(gk.Graph.from_edge_index(ei, 12))
    assert _breaks(gk.GCNConv(5, 4), x, graph) == 0  # on a prebuilt graph context
