"""Models: build_model registry, permutation invariance/equivariance, batched == per-graph."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnkit.bench.synthetic import complete_edges, synthetic_molecule
from gnnkit.models import GGNN, MODELS, MPNN, build_model, edge_type_from_one_hot

IN, EDGE = 7, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def _molecule(n: int, seed: int) -> Data:
    """A complete graph with QM9-style edge features (distance, bond one-hot of 4; zeros = no bond)."""
    return synthetic_molecule(n, seed, atom_features=IN, bond_fraction=0.3, pos_scale=1.0)


def _permute(data: Data, perm: torch.Tensor) -> Data:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return Data(x=data.x[perm], edge_index=inv[data.edge_index], edge_attr=data.edge_attr, pos=data.pos[perm])


GRAPH_MODELS = [
    ("mpnn", {}),
    ("mpnn", {"aggr": "mean", "readout": "gated"}),
    ("mpnn", {"message": "edge_type"}),
    ("ggnn", {"channels": 8}),
    ("ggnn", {"channels": 8, "readout_form": "li"}),
    ("gcn-graph", {"hidden": 8}),
    ("nfp", {"channels": 8, "fingerprint": 6, "max_degree": 3}),
    ("interaction", {"channels": 8, "hidden": 6}),
    ("weave", {"channels": 8, "edge_channels": 6, "steps": 3}),
    ("dtnn", {"channels": 8, "factors": 6}),
    ("chebnet", {"channels": 8, "K": 3}),
    # Gilmer's Section 5 variants: graph state (master node) must not leak between molecules
    ("mpnn", {"master_node": 5}),
    ("mpnn", {"towers": 2}),
    ("mpnn", {"directed": True}),
    ("mpnn", {"virtual_edges": False}),
    ("ggnn", {"channels": 8, "master_node": 5}),
    ("ggnn", {"channels": 8, "towers": 4}),
    ("ggnn", {"channels": 8, "virtual_edges": False}),
    ("ggnn", {"channels": 8, "virtual_edges": True}),
]


def _small(name, cfg):
    cfg = dict(cfg)
    if name == "mpnn":
        cfg.update(channels=8, edge_hidden=6, set2set_steps=2)
    edge_dim = EDGE if MODELS[name].edge_features else None
    return build_model(name, IN, 2, edge_dim=edge_dim, **cfg).double().eval()


def _double(data):
    return Data(x=data.x.double(), edge_index=data.edge_index, edge_attr=data.edge_attr.double(), pos=data.pos.double())


@pytest.mark.parametrize("name,cfg", GRAPH_MODELS)
def test_graph_output_invariant_to_node_permutation(name, cfg):
    model = _small(name, cfg)
    data = _double(_molecule(6, 1))
    perm = torch.randperm(6)
    with torch.no_grad():
        torch.testing.assert_close(model(_permute(data, perm)), model(data))


@pytest.mark.parametrize("name,cfg", GRAPH_MODELS)
def test_batched_equals_per_graph(name, cfg):
    model = _small(name, cfg)
    graphs = [_double(_molecule(n, s)) for s, n in enumerate([1, 4, 0, 5])]  # a one-atom and an empty graph
    with torch.no_grad():
        batched = model(Batch.from_data_list(graphs))
        single = torch.cat([model(Batch.from_data_list([g])) for g in graphs])
        assert batched.shape == (4, 2)
        torch.testing.assert_close(batched, single)
        torch.testing.assert_close(model(graphs[3]), single[3:])  # a bare Data is one graph


def test_node_outputs_equivariant():
    perm = torch.randperm(6)
    data = _double(_molecule(6, 2))
    gcn = build_model("gcn", IN, 3, hidden=5).double().eval()
    mpnn = _small("mpnn", {})
    with torch.no_grad():
        torch.testing.assert_close(gcn(_permute(data, perm)), gcn(data)[perm])
        torch.testing.assert_close(mpnn.node_states(_permute(data, perm)), mpnn.node_states(data)[perm])


def test_mpnn_computes_edge_network_once_per_forward():
    model = build_model("mpnn", IN, 1, edge_dim=EDGE, channels=8, edge_hidden=6, steps=4)
    calls = []
    model.conv.layer.edge_mlp.register_forward_hook(lambda *a: calls.append(1))
    out = model(Batch.from_data_list([_molecule(4, 0), _molecule(3, 1)]))
    out.sum().backward()
    assert len(calls) == 1
    assert model.conv.layer.edge_out.weight.grad is not None and model.conv.gru.weight_hh.grad is not None


def test_mpnn_trains_on_a_tiny_batch():
    batch = Batch.from_data_list([_molecule(n, n) for n in (3, 5, 4, 6)])
    target = torch.randn(4, 1)
    model = build_model("mpnn", IN, 1, edge_dim=EDGE, channels=16, edge_hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(batch), target)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_edge_type_from_one_hot():
    attr = torch.tensor([[0.5, 0, 1, 0, 0], [1.2, 0, 0, 0, 0], [0.7, 0, 0, 0, 1], [0.1, 1, 0, 0, 0]])
    assert edge_type_from_one_hot(attr, 4).tolist() == [1, 4, 3, 0]
    with pytest.raises(ValueError, match="num_one_hot"):
        edge_type_from_one_hot(attr, 6)


def test_explicit_edge_type_is_used():
    data = _molecule(4, 3)
    data.edge_type = torch.zeros(data.edge_index.size(1), dtype=torch.long)
    model = build_model("ggnn", IN, 1, channels=8).eval()
    with torch.no_grad():
        out_typed = model(data)
        del data.edge_type
        out_onehot = model(data)
    assert not torch.allclose(out_typed, out_onehot)


def test_registry_and_errors():
    assert {"mpnn", "ggnn", "gcn", "gcn-graph"} <= set(MODELS)
    assert isinstance(build_model("mpnn", IN, 1, edge_dim=EDGE), MPNN)
    assert isinstance(build_model("ggnn", IN, 1, edge_dim=EDGE), GGNN)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer", IN, 1)
    with pytest.raises(TypeError):
        build_model("mpnn", IN, 1, edge_dim=EDGE, depth=3)
    with pytest.raises(ValueError, match="edge_dim"):
        build_model("mpnn", IN, 1)
    with pytest.raises(ValueError, match="message"):
        build_model("mpnn", IN, 1, edge_dim=EDGE, message="attention")
    with pytest.raises(ValueError, match="readout"):
        build_model("mpnn", IN, 1, edge_dim=EDGE, readout="max")
    with pytest.raises(ValueError, match="channels"):
        build_model("ggnn", 100, 1, channels=16)
    with pytest.raises(ValueError, match="num_bond_types"):
        build_model("ggnn", IN, 1, edge_dim=3)
    with pytest.raises(ValueError, match="readout"):
        build_model("gcn-graph", IN, 1, readout="set2set")
    with pytest.raises(ValueError, match="form of the gated readout"):  # Li's eq. 7 is a gated form
        build_model("ggnn", IN, 1, edge_dim=EDGE, readout="set2set", readout_form="li")
    with pytest.raises(ValueError, match="form must be"):
        build_model("ggnn", IN, 1, edge_dim=EDGE, readout_form="jraph")
    with pytest.raises(TypeError, match="PyG Data/Batch with an edge_index"):
        build_model("gcn-graph", IN, 1)(torch.randn(3, IN))
    with pytest.raises(TypeError, match=r"no option\(s\) \['depth'\]; valid options: \['channels'"):
        build_model("mpnn", IN, 1, edge_dim=EDGE, depth=3)
    with pytest.raises(TypeError, match="reads no edge features"):
        build_model("gcn", IN, 1, edge_dim=EDGE)
    assert "hidden" in MODELS["gcn"].options() and "weighted" not in MODELS["tdgnn-s"].options()
    assert {spec.task for spec in MODELS.values()} == {"graph", "node"}
    no_attr = _molecule(3, 0)
    del no_attr.edge_attr
    with pytest.raises(ValueError, match="edge_attr"):
        build_model("mpnn", IN, 1, edge_dim=EDGE)(no_attr)


@pytest.mark.parametrize("readout", ["set2set", "gated"])
def test_mpnn_cost_model_is_close_to_the_counted_products(readout, monkeypatch):
    """MPNN.flops() within 3 % of the products torch.utils.flop_counter sees in a forward and
    backward (it does not see the CSR spmm nor the readout's attention), never below them. The
    fused CPU path runs at any size here (its threshold set to 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    import gnnkit.ops.outer_linear

    monkeypatch.setattr(gnnkit.ops.outer_linear, "FUSED_MIN_S_BYTES", 0)

    torch.manual_seed(0)
    graphs = []
    for n in (5, 7, 6):
        ei = complete_edges(n)
        graphs.append(Data(x=torch.randn(n, 11), edge_index=ei, edge_attr=torch.randn(ei.size(1), 5)))
    batch = Batch.from_data_list(graphs)
    model = MPNN(11, 2, edge_dim=5, channels=16, edge_hidden=12, readout=readout)
    for backward in (False, True):
        with FlopCounterMode(display=False) as counter:
            out = model(batch)
            if backward:
                out.sum().backward()
        # The CPU backward recomputes each step's S (gnnkit.ops.outer_linear) rather than storing
        # it: 2 E K d counted products per step that are not the model's work, so not in flops().
        recompute = model.steps * 2 * batch.edge_index.size(1) * 12 * 16 if backward else 0
        counted = counter.get_total_flops() - recompute
        modelled = model.flops(batch.num_nodes, batch.edge_index.size(1), batch.num_graphs, backward)
        assert counted <= modelled <= 1.03 * counted
    with pytest.raises(ValueError, match="edge_network"):
        MPNN(11, 2, edge_dim=5, message="edge_type").flops(10, 20, 2)
