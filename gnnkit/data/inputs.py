"""Model inputs built from QM9 molecules of the complete-graph featurization, so that graph,
grid and sequence models train on the same molecules of one dataset.

* :class:`BondGraph` (per molecule): the chemical graph, for models that average over
  neighbours and would average over all atoms on the complete graph (GCN).
* :class:`GridInputs` (per batch): per-element Gaussian voxel grids of the 3D molecules
  (:func:`gnnkit.data.voxelize`), randomly rotated for training.
* :class:`SmilesTokens` (per molecule): atom-level SMILES tokens.
* :class:`MapBatches`: a loader whose batches pass through a per-batch function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from gnnkit.data.smiles import EncodeSmiles, SmilesVocab
from gnnkit.data.voxel import random_rotation, voxelize

# A 12 Angstrom box (16 voxels of 0.75) holds every QM9 molecule.
QM9_VOXEL: dict[str, float] = {"grid_size": 16, "resolution": 0.75, "sigma": 0.6}


class BondGraph:
    """Keeps the bonded pairs of a complete-graph molecule (bond one-hot != 0) and their bond
    one-hot as ``edge_attr`` (the distance column is dropped).

    Shapes:
        data.edge_index ``[2, E]``, data.edge_attr ``[E, 1 + B]`` -> ``[2, E']``, ``[E', B]``.
    """

    def __call__(self, data: Any) -> Any:
        bond = data.edge_attr[:, 1:]
        keep = bond.sum(dim=1) > 0
        data.edge_index, data.edge_attr = data.edge_index[:, keep], bond[keep]
        return data

    def __repr__(self) -> str:
        return "BondGraph()"


class SmilesTokens:
    """Attaches the molecule's SMILES (looked up by its dataset row ``data.idx``) and encodes it
    (``data.tokens``, ``data.num_tokens``; see :class:`gnnkit.data.EncodeSmiles`)."""

    def __init__(self, smiles: list[str], vocab: SmilesVocab, max_length: int) -> None:
        self.smiles, self.encode = smiles, EncodeSmiles(vocab, max_length)

    def __call__(self, data: Any) -> Any:
        data.smiles = self.smiles[int(data.idx)]
        return self.encode(data)


class GridInputs:
    """Voxelises a whole batch in one call (``batch.grid``), on ``device``, with a fresh random
    rotation per molecule when ``random_rotate``. Per batch rather than per molecule: a few large
    tensor ops instead of a few dozen small ones per molecule.

    Shapes:
        batch.pos ``[N, 3]``, batch.z ``[N]``, batch.batch ``[N]`` -> batch.grid
        ``[num_graphs, 5, grid_size, grid_size, grid_size]``.
    """

    def __init__(self, device: torch.device | str, random_rotate: bool, seed: int, **voxel: float) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed) if random_rotate else None
        self.voxel = {**QM9_VOXEL, **voxel}

    def __call__(self, batch: Any) -> Any:
        rotation = random_rotation(batch.num_graphs, self.generator) if self.generator is not None else None
        batch.grid = voxelize(
            batch.pos.to(self.device), batch.z.to(self.device), batch.batch.to(self.device), batch.num_graphs,
            rotation=rotation, **self.voxel,
        )  # fmt: skip
        return batch


class MapBatches:
    """A loader whose batches pass through ``fn`` (same length and sampler as ``loader``)."""

    def __init__(self, loader: Iterable, fn: Callable[[Any], Any]) -> None:
        self.loader, self.fn = loader, fn

    @property
    def sampler(self) -> Any:
        return getattr(self.loader, "sampler", None)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield self.fn(batch)


__all__ = ["BondGraph", "SmilesTokens", "GridInputs", "MapBatches", "QM9_VOXEL"]
