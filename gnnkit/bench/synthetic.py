"""Synthetic molecules: complete graphs with QM9-style edge features, for benchmarks and tests.

One generator for the layer benchmark (``recipes/bench_layers.py``), the PyG interop recipe and
the tests that need a small molecule-shaped graph: random 3-D positions, a complete graph without
self-loops, edge features ``(distance, bond one-hot of 4)`` where a random fraction of the pairs
carries a bond (zeros = no bond), and random atom features.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

__all__ = ["complete_edges", "synthetic_molecule", "synthetic_batch"]

ATOM_FEATURES, EDGE_DIM = 11, 5
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)  # H, C, N, O, F: QM9's elements


def complete_edges(n: int) -> Tensor:
    """Every ordered pair ``(i, j)``, ``i != j``, of ``n`` nodes, row-major.

    Shapes:
        returns: ``[2, n (n - 1)]`` (int64).
    """
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = ii != jj
    return torch.stack([ii[off], jj[off]])


def synthetic_molecule(
    n: int,
    generator: torch.Generator | int,
    *,
    atom_features: int = ATOM_FEATURES,
    bond_fraction: float = 0.1,
    pos_scale: float = 1.5,
    atomic_numbers: bool = False,
) -> Data:
    """A complete graph of ``n`` atoms with QM9-style edge features.

    Draws, in this order from ``generator`` (or a generator seeded with it): positions
    (``randn * pos_scale``), which pairs are bonded (``rand < bond_fraction``), their bond types,
    atom features (``randn``) and, with ``atomic_numbers``, ``z`` from H/C/N/O/F.

    Shapes:
        returns: ``x [n, atom_features]``, ``edge_index [2, E]``, ``edge_attr [E, 5]``
        (distance, bond one-hot), ``pos [n, 3]``, ``z [n]`` (with ``atomic_numbers``);
        ``E = n (n - 1)``.
    """
    g = torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator
    pos = torch.randn(n, 3, generator=g) * pos_scale
    ei = complete_edges(n)
    dist = (pos[ei[0]] - pos[ei[1]]).norm(dim=1, keepdim=True)
    bond = torch.zeros(ei.size(1), 4)
    bonded = torch.rand(ei.size(1), generator=g) < bond_fraction
    bond[bonded, torch.randint(0, 4, (int(bonded.sum()),), generator=g)] = 1.0
    x = torch.randn(n, atom_features, generator=g)
    data = Data(x=x, edge_index=ei, edge_attr=torch.cat([dist, bond], 1), pos=pos)
    if atomic_numbers:
        data.z = torch.tensor(ATOMIC_NUMBERS)[torch.randint(0, len(ATOMIC_NUMBERS), (n,), generator=g)]
    return data


def synthetic_batch(
    molecules: int, min_atoms: int, max_atoms: int, seed: int = 0, *, atom_features: int = ATOM_FEATURES,
    bond_fraction: float = 0.1,
) -> Batch:
    """``molecules`` synthetic molecules (sizes uniform in ``min_atoms..max_atoms``) as one batch,
    all drawn from one generator seeded with ``seed`` (the layer benchmark's data)."""
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(molecules):
        n = int(torch.randint(min_atoms, max_atoms + 1, (1,), generator=g))
        data = synthetic_molecule(n, g, atom_features=atom_features, bond_fraction=bond_fraction)
        del data.pos  # the benchmark's batches carry no positions (the models here do not read them)
        graphs.append(data)
    return Batch.from_data_list(graphs)
