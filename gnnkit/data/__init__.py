"""gnnkit.data."""

from gnnkit.data.grid import grid_graph, grid_offsets, path_graph
from gnnkit.data.molecule import FeaturizerOptions, atom_features, featurize, mol_from_smiles, mol_from_xyz
from gnnkit.data.molecule_csv import MoleculeCSV, load_molecule_csv, split_molecules
from gnnkit.data.molecule_io import MoleculeRecord, molecule_data, read_sdf, read_smiles_file, read_xyz, smiles_record
from gnnkit.data.node_classification import NODE_DATASETS, load_node_dataset, random_splits, undirected_graph
from gnnkit.data.normalize import TargetNormalizer
from gnnkit.data.paths import data_root, user_cache_dir
from gnnkit.data.qm9 import QM9, load_split, make_split, target_index
from gnnkit.data.smiles import EncodeSmiles, SmilesVocab, read_qm9_smiles, tokenize
from gnnkit.data.voxel import Voxelize, random_rotation, voxelize

__all__ = [
    "QM9",
    "load_split",
    "make_split",
    "target_index",
    "TargetNormalizer",
    "FeaturizerOptions",
    "featurize",
    "atom_features",
    "mol_from_xyz",
    "mol_from_smiles",
    "MoleculeRecord",
    "smiles_record",
    "read_smiles_file",
    "read_xyz",
    "read_sdf",
    "molecule_data",
    "MoleculeCSV",
    "load_molecule_csv",
    "split_molecules",
    "grid_graph",
    "grid_offsets",
    "path_graph",
    "tokenize",
    "SmilesVocab",
    "EncodeSmiles",
    "read_qm9_smiles",
    "voxelize",
    "random_rotation",
    "Voxelize",
    "NODE_DATASETS",
    "load_node_dataset",
    "random_splits",
    "undirected_graph",
    "data_root",
    "user_cache_dir",
]
