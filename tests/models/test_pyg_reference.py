"""Reference models from PyG (gnnkit.models.pyg_reference): interface, invariances, the interaction graph."""

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnkit.bench.synthetic import synthetic_molecule
from gnnkit.models import MODELS, build_model
from gnnkit.models.pyg_reference import (
    REFERENCE_MODELS,
    CompleteInteractionGraph,
    PygDimeNetPlusPlus,
    PygQM9NNConv,
    PygSchNet,
    dimenet_missing,
)

pytestmark = pytest.mark.usefixtures("one_thread")
IN, EDGE = 7, 5


def _molecule(n: int, seed: int) -> Data:
    """A complete graph with QM9-style edges (distance, bond one-hot) and atomic numbers."""
    return synthetic_molecule(n, seed, atom_features=IN, bond_fraction=0.3, atomic_numbers=True)


def _brute_force_pairs(pos, batch, cutoff):
    pairs = set()
    for i in range(pos.size(0)):
        for j in range(pos.size(0)):
            if i != j and batch[i] == batch[j] and float((pos[i] - pos[j]).norm()) < cutoff:
                pairs.add((i, j))
    return pairs


@pytest.mark.parametrize("cutoff", [1.5, 100.0])
def test_complete_interaction_graph_equals_brute_force(cutoff):
    batch = Batch.from_data_list([_molecule(n, s) for s, n in enumerate([5, 1, 7, 3])])
    edge_index, weight = CompleteInteractionGraph(cutoff)(batch.pos, batch.batch)
    got = {(int(a), int(b)) for a, b in edge_index.t()}
    assert got == _brute_force_pairs(batch.pos, batch.batch, cutoff)
    assert edge_index.size(1) == len(got)  # no duplicates
    assert torch.allclose(weight, (batch.pos[edge_index[0]] - batch.pos[edge_index[1]]).norm(dim=1))
    if cutoff == 100.0:  # every pair of each molecule: n (n - 1) edges
        assert edge_index.size(1) == sum(n * (n - 1) for n in (5, 1, 7, 3))


def test_complete_interaction_graph_edge_cases():
    graph = CompleteInteractionGraph(5.0)
    ei, w = graph(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert ei.shape == (2, 0) and w.shape == (0,)
    ei, w = graph(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))  # a one-atom molecule
    assert ei.shape == (2, 0)
    with pytest.raises(ValueError, match="sorted"):
        graph(torch.randn(3, 3), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="batch"):
        graph(torch.randn(3, 3), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="cutoff"):
        CompleteInteractionGraph(0.0)


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_schnet_is_invariant_to_rotation_translation_and_atom_order():
    model = PygSchNet(IN, 2, hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10).double().eval()
    mols = [_molecule(n, s) for s, n in enumerate([6, 4])]
    batch = Batch.from_data_list(mols)
    batch.pos = batch.pos.double()
    with torch.no_grad():
        out = model(batch)
        assert out.shape == (2, 2)
        moved = batch.clone()
        moved.pos = batch.pos @ _rotation(0).T + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
        assert torch.allclose(model(moved), out, atol=1e-9)
        perm = torch.cat([torch.randperm(6), 6 + torch.randperm(4)])
        shuffled = batch.clone()
        shuffled.pos, shuffled.z = batch.pos[perm], batch.z[perm]
        assert torch.allclose(model(shuffled), out, atol=1e-9)


def test_schnet_batched_equals_per_graph_and_pads_a_trailing_empty_graph():
    model = PygSchNet(IN, 1, hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10).eval()
    mols = [_molecule(n, s) for s, n in enumerate([5, 3])]
    empty = Data(x=torch.zeros(0, IN), edge_index=torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.zeros(0, EDGE),
                 pos=torch.zeros(0, 3), z=torch.zeros(0, dtype=torch.long))  # fmt: skip
    with torch.no_grad():
        out = model(Batch.from_data_list([*mols, empty]))
        single = torch.cat([model(Batch.from_data_list([m])) for m in mols])
    assert out.shape == (3, 1)
    assert torch.allclose(out[:2], single, atol=1e-5) and float(out[2].abs()) == 0.0
    with pytest.raises(TypeError, match="data.z"):
        model(Data(x=torch.zeros(2, IN), edge_index=torch.zeros(2, 0, dtype=torch.long)))


def test_pyg_nnconv_matches_per_graph_and_is_permutation_invariant():
    model = PygQM9NNConv(IN, 3, edge_dim=EDGE, channels=8, edge_hidden=6, steps=2, set2set_steps=2).double().eval()
    mols = [_molecule(n, s) for s, n in enumerate([5, 4, 1])]
    for m in mols:
        m.x, m.edge_attr = m.x.double(), m.edge_attr.double()
    with torch.no_grad():
        out = model(Batch.from_data_list(mols))
        single = torch.cat([model(Batch.from_data_list([m])) for m in mols])
        m = mols[0]
        perm = torch.randperm(5)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(5)
        permuted = Data(x=m.x[perm], edge_index=inv[m.edge_index], edge_attr=m.edge_attr)
        assert torch.allclose(model(Batch.from_data_list([permuted])), single[:1], atol=1e-10)
    assert out.shape == (3, 3) and torch.allclose(out, single, atol=1e-10)


def test_reference_builders_and_errors():
    # One entry per name: pyg-nnconv takes gnnkit's graph inputs and is a registry model; the
    # references that read atomic numbers and positions are the builders of REFERENCE_MODELS.
    assert set(REFERENCE_MODELS) == {"schnet", "dimenet++"} and not set(REFERENCE_MODELS) & set(MODELS)
    assert MODELS["pyg-nnconv"].cls is PygQM9NNConv and MODELS["pyg-nnconv"].edge_features
    model = build_model("pyg-nnconv", IN, 1, edge_dim=EDGE, channels=4, edge_hidden=4)
    assert isinstance(model, PygQM9NNConv)
    with pytest.raises(ValueError, match="edge_dim"):
        PygQM9NNConv(IN, 1)
    with pytest.raises(ValueError, match="channels"):
        PygQM9NNConv(IN, 1, edge_dim=EDGE, channels=0)
    with pytest.raises(ValueError, match="readout"):
        PygSchNet(IN, 1, readout="max")
    with pytest.raises(ValueError, match="out_channels"):
        PygSchNet(IN, 0)


def test_dimenet_runs_where_its_dependencies_are_installed_and_says_why_not_elsewhere():
    reason = dimenet_missing()
    if reason is not None:
        assert "pyg-lib" in reason or "torch_sparse" in reason or "sympy" in reason
        with pytest.raises(ImportError, match="DimeNet"):
            PygDimeNetPlusPlus(IN, 1)
        return
    model = PygDimeNetPlusPlus(IN, 2, hidden_channels=16, num_blocks=1, int_emb_size=8, basis_emb_size=4,
                               out_emb_channels=16).eval()  # fmt: skip
    with torch.no_grad():
        out = model(Batch.from_data_list([_molecule(n, s) for s, n in enumerate([5, 4])]))
    assert out.shape == (2, 2) and all(math.isfinite(v) for v in out.flatten().tolist())
