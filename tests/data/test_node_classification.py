"""Benchmark loaders and split protocols on the committed raw files (copied to a temp dir)."""

import pathlib

import pytest
import torch

from gnnkit.data.node_classification import data_root, load_node_dataset, random_splits, raw_files, undirected_graph

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def root(node_data_root):
    return node_data_root


def test_texas_geom_gcn(root):
    d = load_node_dataset("Texas", "geom-gcn", root)
    assert d.x.shape == (183, 1703) and d.edge_index.shape == (2, 325) and d.num_classes == 5
    assert d.train_mask.shape == (183, 10) and d.y.dtype == torch.long
    assert [int(m[:, 0].sum()) for m in (d.train_mask, d.val_mask, d.test_mask)] == [87, 59, 37]
    assert not (d.train_mask & d.val_mask).any() and not (d.val_mask & d.test_mask).any()
    sums = d.x.sum(1)
    assert torch.allclose(sums[sums > 0], torch.ones(int((sums > 0).sum())))  # row-normalised
    assert int((d.edge_index[0] == d.edge_index[1]).sum()) == 16  # as loaded: self-loops kept
    u = load_node_dataset("texas", "geom-gcn", root, graph="undirected")
    assert (u.edge_index[0] != u.edge_index[1]).all()
    pairs = set(map(tuple, u.edge_index.t().tolist()))
    assert all((b, a) in pairs for a, b in pairs)


def test_cora_public_and_geom_gcn(root):
    pub = load_node_dataset("cora", "public", root)
    assert pub.train_mask.shape == (2708, 1)
    assert [int(m.sum()) for m in (pub.train_mask, pub.val_mask, pub.test_mask)] == [140, 500, 1000]
    geo = load_node_dataset("cora", "geom-gcn", root)
    assert geo.train_mask.shape == (2708, 10)
    assert [int(m[:, 0].sum()) for m in (geo.train_mask, geo.val_mask, geo.test_mask)] == [1192, 796, 497]


def reference_random_split(y, num_classes, seed):
    """rockcor/NHGCN random_planetoid_splits after seed_everything(seed), on the global RNG."""
    torch.manual_seed(seed)
    n = y.numel()
    per_class, n_val = int(round(0.6 * n / num_classes)), int(round(0.2 * n))
    idx = [(y == c).nonzero().view(-1) for c in range(num_classes)]
    idx = [i[torch.randperm(i.size(0))] for i in idx]
    train = torch.cat([i[:per_class] for i in idx])
    rest = torch.cat([i[per_class:] for i in idx])
    rest = rest[torch.randperm(rest.size(0))]
    return train, rest[:n_val], rest[n_val:]


def test_random_splits_equal_reference_protocol(root):
    d = load_node_dataset("texas", "random", root)
    assert d.train_mask.shape == (183, 10)
    for s in (0, 3, 9):
        train, val, test = reference_random_split(d.y, 5, 42 + s)
        for mask, idx in ((d.train_mask, train), (d.val_mask, val), (d.test_mask, test)):
            assert set(mask[:, s].nonzero().view(-1).tolist()) == set(idx.tolist())
    # disjoint, covering, class-balanced (a class smaller than its quota goes wholly to training)
    cover = d.train_mask.int() + d.val_mask.int() + d.test_mask.int()
    assert (cover == 1).all()
    per_class = round(0.6 * 183 / 5)
    counts = torch.bincount(d.y[d.train_mask[:, 0]], minlength=5)
    assert torch.equal(counts, torch.bincount(d.y, minlength=5).clamp(max=per_class))
    again = random_splits(d.y, 5)
    assert torch.equal(again[0], d.train_mask)
    assert not torch.equal(d.train_mask[:, 0], d.train_mask[:, 1])


def test_undirected_graph():
    ei = torch.tensor([[0, 1, 2, 2, 1], [1, 0, 2, 0, 2]])
    assert undirected_graph(ei, 3).tolist() == [[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]]


def test_errors_and_root(root, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        load_node_dataset("pubmed", "random", root)
    with pytest.raises(ValueError, match="public"):
        load_node_dataset("texas", "public", root)
    with pytest.raises(ValueError, match="split"):
        load_node_dataset("texas", "full", root)
    with pytest.raises(ValueError, match="graph"):
        load_node_dataset("texas", "random", root, graph="directed")
    with pytest.raises(FileNotFoundError, match="GNNKIT_DATA"):
        load_node_dataset("actor", "random", tmp_path)
    monkeypatch.setenv("GNNKIT_DATA", str(root))
    assert data_root() == root
    assert load_node_dataset("texas", "random").num_nodes == 183
    monkeypatch.delenv("GNNKIT_DATA")
    assert data_root() == REPO / "datasets"  # running from the checkout: the committed graphs
    with pytest.raises(ValueError, match="train_rate"):
        random_splits(torch.zeros(4, dtype=torch.long), 1, train_rate=1.5)
    with pytest.raises(ValueError, match="split"):
        raw_files("texas", "full")


def test_offline_failure_names_the_missing_files(tmp_path, copy_datasets):
    """Without network (the suite runs offline), a graph whose raw files are not under the root
    fails with the missing files and their folder, not with PyG's URLError."""
    with pytest.raises(FileNotFoundError) as err:
        load_node_dataset("actor", "random", tmp_path)
    msg = str(err.value)
    assert "12 raw file(s) missing" in msg and str(tmp_path / "actor" / "raw") in msg
    assert "out1_node_feature_label.txt" in msg and "PyG did not get them (" in msg
    # a partial folder: exactly the one missing split file is named
    copy_datasets(tmp_path, "webkb/texas")
    (tmp_path / "webkb" / "texas" / "raw" / "texas_split_0.6_0.2_3.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 raw file\(s\) missing in .*texas.raw .*: texas_split_0.6_0.2_3.npz;"):
        load_node_dataset("texas", "geom-gcn", tmp_path)
    # Planetoid downloads through fsspec/aiohttp, and reads the Geom-GCN split files without
    # checking them first: both end in the same message
    with pytest.raises(FileNotFoundError, match=r"8 raw file\(s\) missing in .*CiteSeer.raw .*ind.citeseer.x"):
        load_node_dataset("citeseer", "public", tmp_path)
    geom = tmp_path / "planetoid" / "Cora" / "geom-gcn" / "raw"
    geom.mkdir(parents=True)
    for f in (REPO / "datasets" / "planetoid" / "Cora" / "raw").iterdir():
        (geom / f.name).write_bytes(f.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"10 raw file\(s\) missing in .*geom-gcn.raw .*cora_split_0.6_0.2_0.npz"):
        load_node_dataset("cora", "geom-gcn", tmp_path)


def test_raw_files_layout():
    assert [p.name for p in raw_files("cora", "public", "r")][:2] == ["ind.cora.x", "ind.cora.tx"]
    geom = raw_files("CiteSeer", "geom-gcn", "r")
    assert len(geom) == 18 and geom[-1] == pathlib.Path("r/planetoid/CiteSeer/geom-gcn/raw/citeseer_split_0.6_0.2_9.npz")
    assert raw_files("actor", "random", "r")[2].name == "film_split_0.6_0.2_0.npz"
    assert raw_files("squirrel", "geom-gcn", "r")[0] == pathlib.Path("r/wikipedia/squirrel/geom_gcn/raw/out1_node_feature_label.txt")


class RunsCode:
    """Full unpickling of this creates ``marker`` (PyG's loaders would run it: see test_qm9.py)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import subprocess

        return (subprocess.call, (["touch", self.marker],))


@pytest.mark.parametrize("planted", ["pre_transform.pt", "data.pt"])
def test_planted_pickle_in_a_pyg_dataset_folder_never_runs(tmp_path, copy_datasets, planted, record_property):
    record_property("reliability", {
        "area": "node datasets (PyG's Planetoid/WebKB/... in a shared data root)",
        "case": f"a crafted processed/{planted} (Texas) whose `__reduce__` runs a command",
        "outcome": "refused: UnsafeFileError naming the file; the command never runs (PyG reads pre_transform.pt "
                   "with full pickle and falls back to it for data.pt)"})  # fmt: skip
    from gnnkit.data.files import UnsafeFileError

    root = copy_datasets(tmp_path / "root", "webkb/texas")
    load_node_dataset("texas", "geom-gcn", root)  # processes the raw files
    processed = root / "webkb" / "texas" / "processed"
    assert (processed / planted).is_file()
    marker = tmp_path / "ran"
    torch.save(RunsCode(marker) if planted == "pre_transform.pt" else ({"x": RunsCode(marker)}, {}, None), processed / planted)
    with pytest.raises(UnsafeFileError, match=rf"{planted}: refused") as err:
        load_node_dataset("texas", "geom-gcn", root)
    assert err.value.path == processed / planted and not marker.exists()
