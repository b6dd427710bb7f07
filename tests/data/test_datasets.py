"""The raw graphs committed under datasets/: checksums, nothing unlisted, and each one loads offline
with the counts of datasets/README.md (which match the statistics in PyG's docstrings)."""

import hashlib
import pathlib

import pytest
import torch

from gnnkit.data import load_node_dataset

DATASETS = pathlib.Path(__file__).resolve().parents[2] / "datasets"
GRAPH_FOLDERS = ("planetoid", "webkb", "actor")


def checksums() -> dict[str, str]:
    lines = (DATASETS / "SHA256SUMS").read_text().splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def test_sha256sums_cover_every_committed_graph_file():
    sums = checksums()
    present = {p.relative_to(DATASETS).as_posix() for d in GRAPH_FOLDERS for p in (DATASETS / d).rglob("*")
               if p.is_file() and "processed" not in p.parts and "cache" not in p.parts}  # fmt: skip
    assert set(sums) == present and len(sums) == 100
    for path, digest in sums.items():
        assert hashlib.sha256((DATASETS / path).read_bytes()).hexdigest() == digest, path
    total = sum((DATASETS / p).stat().st_size for p in sums)
    assert total < 6_500_000  # the large graphs (chameleon, squirrel) stay out of the repository


@pytest.fixture(scope="module")
def root(tmp_path_factory, copy_datasets):
    return copy_datasets(tmp_path_factory.mktemp("all_graphs"), *GRAPH_FOLDERS)


# name, split, nodes, edges as loaded by PyG, features, class counts, split-0 train/val/test sizes, splits
GRAPHS = [
    ("cora", "public", 2708, 10556, 1433, [351, 217, 418, 818, 426, 298, 180], [140, 500, 1000], 1),
    ("cora", "geom-gcn", 2708, 10556, 1433, [351, 217, 418, 818, 426, 298, 180], [1192, 796, 497], 10),
    ("citeseer", "public", 3327, 9104, 3703, [264, 590, 668, 701, 596, 508], [120, 500, 1000], 1),
    ("citeseer", "geom-gcn", 3327, 9104, 3703, [264, 590, 668, 701, 596, 508], [1596, 1065, 666], 10),
    # the corrected Cornell files (2022); the earlier upstream copy had Texas's features and labels
    ("cornell", "geom-gcn", 183, 298, 1703, [38, 16, 30, 82, 17], [87, 59, 37], 10),
    ("texas", "geom-gcn", 183, 325, 1703, [33, 1, 18, 101, 30], [87, 59, 37], 10),
    ("wisconsin", "geom-gcn", 251, 515, 1703, [10, 70, 118, 32, 21], [120, 80, 51], 10),
    ("actor", "geom-gcn", 7600, 30019, 932, [853, 1337, 1630, 1815, 1965], [3648, 2432, 1520], 10),
]


@pytest.mark.parametrize("name,split,nodes,edges,features,classes,sizes,splits", GRAPHS)
def test_committed_graph_loads_offline(root, name, split, nodes, edges, features, classes, sizes, splits):
    d = load_node_dataset(name, split, root)
    assert (d.num_nodes, d.edge_index.size(1), d.x.size(1)) == (nodes, edges, features)
    assert torch.bincount(d.y).tolist() == classes
    assert d.train_mask.shape == (nodes, splits)
    assert [int(m[:, 0].sum()) for m in (d.train_mask, d.val_mask, d.test_mask)] == sizes
    assert not (d.train_mask & d.val_mask).any() and not (d.train_mask & d.test_mask).any()
