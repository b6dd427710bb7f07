"""gnnkit.data.qm9_pack: QM9 rebuilt from a pack equals QM9 from the featurizer, for every edge
representation, on a small real slice."""

import numpy as np
import pytest
import torch

from gnnkit.data import QM9
from gnnkit.data.qm9_pack import PackedQM9, load_qm9_pack, write_qm9_pack

ROWS = np.arange(0, 420, 7)  # 60 molecules, 1 to 9 heavy atoms


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("qm9_pack")
    counts = write_qm9_pack(QM9(root, "complete", True, subset=ROWS, num_workers=1, log=False), root / "pack.npz")
    return root, counts


@pytest.mark.parametrize("edges,hydrogens", [("complete", True), ("bonds", False), ("bins", True), ("complete", False)])
def test_pack_rebuilds_the_featurized_graphs(packed, edges, hydrogens):
    root, counts = packed
    assert counts["molecules"] == len(ROWS) and counts["bytes"] < 40_000
    ref = QM9(root, edges, hydrogens, subset=ROWS, num_workers=1, log=False)
    got = load_qm9_pack(root / "pack.npz", edges, hydrogens, num_workers=1)
    assert isinstance(got, PackedQM9) and len(got) == len(ref)
    for a, b in zip(ref, got):
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            if key == "edge_attr" and edges == "complete":
                # distances from float32 instead of float64 coordinates; the bond columns are equal
                torch.testing.assert_close(b[key][:, 0], a[key][:, 0], rtol=0, atol=2e-6)
                assert torch.equal(b[key][:, 1:], a[key][:, 1:])
            else:
                assert torch.equal(a[key], b[key]) and a[key].dtype == b[key].dtype, key
    # the QM9 helpers the recipes use
    assert np.array_equal(got.rows, ref.rows)
    assert torch.equal(got.graph_attr("y", ROWS[:5]), ref.graph_attr("y", ROWS[:5]))
    sub = got.select(ROWS[[3, 1]])
    assert [int(d.idx) for d in sub] == [ROWS[3], ROWS[1]]


def test_subset_and_missing_rows(packed):
    root, _ = packed
    got = load_qm9_pack(root / "pack.npz", subset=[ROWS[2], ROWS[0], 5], num_workers=1)  # row 5 is not packed
    assert sorted(got.rows.tolist()) == [ROWS[0], ROWS[2]]
    with pytest.raises(ValueError, match="subset rows"):
        load_qm9_pack(root / "pack.npz", subset=[-1])
    with pytest.raises(ValueError, match="no molecule"):
        load_qm9_pack(root / "pack.npz", subset=[5])


def test_bad_files_and_datasets(packed, tmp_path):
    root, _ = packed
    with pytest.raises(FileNotFoundError, match="python -m gnnkit.data.qm9_pack"):
        load_qm9_pack(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    (tmp_path / "text.npz").write_text("not a pack")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("other.npz", "text.npz", "array.npy"):
        with pytest.raises(ValueError, match="is not a gnnkit-qm9-pack-1 file"):
            load_qm9_pack(tmp_path / name)
    with pytest.raises(ValueError, match="complete graph with hydrogens"):
        write_qm9_pack(QM9(root, "bonds", True, subset=ROWS, num_workers=1, log=False), tmp_path / "p.npz")
    ds = QM9(root, "complete", True, subset=ROWS, num_workers=1, log=False)
    with pytest.raises(ValueError, match="whole dataset"):
        write_qm9_pack(ds.select(ROWS[:3]), tmp_path / "p.npz")
