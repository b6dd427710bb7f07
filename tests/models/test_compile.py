"""No host sync in any model's forward or backward: each model, called on the Graph its
prepare() built (what gnnkit.train.fit does), compiles with torch.compile(fullgraph=True,
dynamic=True) on two batches of different sizes and matches eager."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnkit.bench.synthetic import synthetic_molecule
from gnnkit.models import MODELS, build_model

pytestmark = pytest.mark.usefixtures("one_thread")
IN, EDGE = 7, 5


def _molecule(n: int, seed: int) -> Data:
    return synthetic_molecule(n, seed, atom_features=IN, bond_fraction=0.3, pos_scale=1.0)


def _node_graph(n: int, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, 4 * n), generator=g)
    x = (torch.rand(n, IN, generator=g) < 0.4).float()
    return Data(x=x, edge_index=ei, nh_high=torch.rand(n, generator=g) < 0.5)


GRAPH_CASES = {
    "mpnn": {"channels": 8, "edge_hidden": 6, "set2set_steps": 2},
    "mpnn-edge-type-gated": {"channels": 8, "message": "edge_type", "readout": "gated", "aggr": "mean"},
    "ggnn": {"channels": 8},
    "gcn-graph": {"hidden": 8},
    "nfp": {"channels": 8, "fingerprint": 6},
    "interaction": {"channels": 8, "hidden": 6},
    "weave": {"channels": 8, "edge_channels": 6, "steps": 3},
    "dtnn": {"channels": 8, "factors": 6, "hidden": 5},
    "chebnet": {"channels": 8},
    "mpnn-master-node": {"channels": 8, "edge_hidden": 6, "set2set_steps": 2, "master_node": 5},
    "mpnn-towers": {"channels": 8, "edge_hidden": 6, "set2set_steps": 2, "towers": 2},
    "mpnn-directed": {"channels": 8, "edge_hidden": 6, "set2set_steps": 2, "directed": True},
    "ggnn-master-node": {"channels": 8, "master_node": 5},
    "ggnn-towers": {"channels": 8, "towers": 2},
}
NODE_CASES = {
    "gcn": {"hidden": 8},
    "tdgnn-s": {"levels": [1, 2], "hidden": 8},
    "tdgnn-w": {"levels": [1, 3], "hidden": 8},
    "nhgcn": {"hidden": 8},
}


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_graph_model_compiles(case, compiles_like_eager):
    name = case if case in MODELS else case.split("-")[0]
    edge_dim = EDGE if MODELS[name].edge_features else None
    model = build_model(name, IN, 2, edge_dim=edge_dim, **GRAPH_CASES[case]).eval()
    # 11 and 17 atoms: node counts that no feature or hidden size equals (dynamo gives equal sizes
    # one symbol, and a weight's static size would then pin the batch's); a one-atom molecule too
    batches = [[5, 6], [4, 1, 12]]
    inputs = [(model.prepare(Batch.from_data_list([_molecule(n, i) for i, n in enumerate(b)])),) for b in batches]
    compiles_like_eager(model, inputs)


@pytest.mark.parametrize("name", NODE_CASES)
def test_node_model_compiles(name, compiles_like_eager):
    model = build_model(name, IN, 3, **NODE_CASES[name]).eval()
    inputs = [(model.prepare(_node_graph(n, n)),) for n in (13, 19)]
    compiles_like_eager(model, inputs)


def test_grid_cnn_compiles(compiles_like_eager):
    model = build_model("cnn", 5, 1, channels=(4, 8), hidden=8).eval()
    compiles_like_eager(model, [(torch.randn(b, 5, 8, 8, 8),) for b in (2, 3)])
