"""Model inputs built from complete-graph molecules (gnnkit.data.inputs)."""

import torch
from torch_geometric.data import Batch, Data

from gnnkit.data import SmilesVocab
from gnnkit.data.inputs import BondGraph, GridInputs, MapBatches, SmilesTokens


def _molecule() -> Data:
    # 3 atoms, complete graph: bonds 0-1 (single) and 1-2 (double) in both directions.
    ei = torch.tensor([[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]])
    bond = torch.zeros(6, 4)
    bond[[0, 2], 0] = 1.0
    bond[[3, 5], 1] = 1.0
    dist = torch.arange(6, dtype=torch.float).unsqueeze(1)
    pos = torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [2.4, 0.3, 0]])
    return Data(x=torch.randn(3, 13), edge_index=ei, edge_attr=torch.cat([dist, bond], 1), pos=pos,
                z=torch.tensor([6, 6, 8]), idx=torch.tensor([1]))  # fmt: skip


def test_bond_graph_keeps_bonded_pairs_and_their_one_hot():
    data = BondGraph()(_molecule())
    assert data.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert data.edge_attr.shape == (4, 4) and data.edge_attr.sum().item() == 4


def test_smiles_tokens_looks_up_the_row():
    vocab = SmilesVocab.build(["CC=O", "C"])
    data = SmilesTokens(["C", "CC=O"], vocab, max_length=6)(_molecule())
    assert data.smiles == "CC=O" and int(data.num_tokens) == 4


def test_grid_inputs_rotate_only_for_training_and_reproducibly():
    batch = Batch.from_data_list([_molecule(), _molecule()])
    fixed = GridInputs("cpu", random_rotate=False, seed=0)(batch.clone()).grid
    assert fixed.shape == (2, 5, 16, 16, 16) and torch.equal(fixed[0], fixed[1])
    a = GridInputs("cpu", random_rotate=True, seed=1)(batch.clone()).grid
    b = GridInputs("cpu", random_rotate=True, seed=1)(batch.clone()).grid
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])  # a fresh rotation per molecule


def test_map_batches_keeps_length_and_sampler():
    class Loader:
        sampler = "the sampler"

        def __len__(self):
            return 2

        def __iter__(self):
            return iter([1, 2])

    mapped = MapBatches(Loader(), lambda b: b * 10)
    assert len(mapped) == 2 and mapped.sampler == "the sampler" and list(mapped) == [10, 20]
