"""gnnkit.data."""

from gnnkit.data.grid import grid_graph, grid_offsets, path_graph
from gnnkit.data.smiles import EncodeSmiles, SmilesVocab, tokenize
from gnnkit.data.voxel import Voxelize, random_rotation, voxelize

__all__ = [
    "grid_graph",
    "grid_offsets",
    "path_graph",
    "tokenize",
    "SmilesVocab",
    "EncodeSmiles",
    "voxelize",
    "random_rotation",
    "Voxelize",
]
