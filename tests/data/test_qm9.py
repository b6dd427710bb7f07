"""QM9 dataset: targets and units, split file, cache keyed by options/subset, invalidation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

import gnnkit.data.qm9 as qm9mod
from gnnkit.data import QM9, TargetNormalizer, load_split, make_split, target_index
from gnnkit.data.files import UnsafeFileError
from gnnkit.data.qm9 import CHEMICAL_ACCURACY, HARTREE_TO_EV, NUM_MOLECULES, SPLIT_FILE, TARGETS, UNITS, read_raw

ROWS = [0, 2, 5, 17, 30, 31, 44]


def test_target_names_units_and_chemical_accuracy():
    assert TARGETS == ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u", "h", "g", "cv", "omega")
    assert QM9.TARGETS is TARGETS and QM9.CHEMICAL_ACCURACY is CHEMICAL_ACCURACY
    assert CHEMICAL_ACCURACY == {"mu": 0.1, "alpha": 0.1, "homo": 0.043, "lumo": 0.043, "gap": 0.043, "r2": 1.2,
                                 "zpve": 0.0012, "u0": 0.043, "u": 0.043, "h": 0.043, "g": 0.043, "cv": 0.05,
                                 "omega": 10.0}  # fmt: skip
    assert [UNITS[t] for t in ("mu", "alpha", "homo", "r2", "zpve", "u0", "cv", "omega")] == [
        "D", "bohr^3", "eV", "bohr^2", "eV", "eV", "cal/mol K", "cm^-1"]  # fmt: skip
    assert target_index("U0") == 7 and target_index("omega") == 12
    with pytest.raises(ValueError, match="target"):
        target_index("enthalpy")


def test_raw_targets_converted():
    raw = read_raw(max_rows=3)
    assert raw.gdb_index.tolist() == [1, 2, 3] and raw.smiles == ["C", "N", "O"]
    methane = dict(zip(TARGETS, raw.targets[0]))
    # qm9pack row 1 (methane): U0 -40.47893 Ha, HOMO -0.3877 Ha, ZPVE 0.044749 Ha, highest harmonic
    # frequency 3151.7078 cm^-1, alpha 13.21 bohr^3, Cv 6.469 cal/mol K, mu 0 D.
    assert methane["u0"] == pytest.approx(-40.47893 * HARTREE_TO_EV, rel=1e-12)
    assert methane["homo"] == pytest.approx(-0.3877 * 27.211386246, rel=1e-12)
    assert methane["zpve"] == pytest.approx(0.044749 * 27.211386246, rel=1e-12)
    assert methane["omega"] == 3151.7078 and methane["alpha"] == 13.21 and methane["cv"] == 6.469
    assert methane["mu"] == 0.0 and methane["r2"] == 35.3641


def test_committed_split():
    split = load_split()
    assert {k: len(v) for k, v in split.items()} == {"train": 110_831, "val": 10_000, "test": 10_000}
    allrows = np.concatenate(list(split.values()))
    assert len(np.unique(allrows)) == NUM_MOLECULES and allrows.min() == 0 and allrows.max() == NUM_MOLECULES - 1
    fresh = make_split()
    for k in split:
        np.testing.assert_array_equal(split[k], fresh[k])
    # The training order is shuffled, so "the first N" is a random sample, not the smallest molecules.
    assert not np.all(np.diff(split["train"]) > 0)
    assert SPLIT_FILE.stat().st_size < 400_000


@pytest.fixture
def counting(monkeypatch):
    """Counts calls of the featurization step."""
    calls = []
    real = qm9mod.featurize_qm9

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(qm9mod, "featurize_qm9", wrapped)
    return calls


def test_dataset_items(tmp_path, counting):
    ds = QM9(tmp_path, subset=ROWS[::-1], num_workers=1, log=False)
    assert len(ds) == len(ROWS) and ds.rows.tolist() == ROWS and len(counting) == 1
    raw = read_raw(max_rows=max(ROWS) + 1)
    for i, row in enumerate(ROWS):
        d = ds[i]
        assert d.y.shape == (1, 13) and d.y.dtype == torch.float64
        np.testing.assert_array_equal(d.y[0].numpy(), raw.targets[row])
        assert d.idx.item() == row and d.gdb_id.item() == raw.gdb_index[row]
        n = d.z.numel()
        assert d.x.shape == (n, 13) and d.pos.shape == (n, 3) and d.edge_index.shape == (2, n * (n - 1))
        assert d.edge_attr.shape == (n * (n - 1), 5)
        assert d.atom_counts.sum().item() == n  # hydrogens are nodes here
    assert ds.report["featurized"] == len(ROWS) and ds.report["failures"] == []
    # select() keeps the requested order; gdb_id and idx are not offset by batching.
    sub = ds.select([31, 0, 5])
    assert [d.idx.item() for d in sub] == [31, 0, 5]
    batch = next(iter(DataLoader(sub, batch_size=3)))
    assert batch.idx.tolist() == [31, 0, 5] and batch.gdb_id.tolist() == raw.gdb_index[[31, 0, 5]].tolist()
    np.testing.assert_array_equal(ds.graph_attr("y", [31, 0]).numpy(), raw.targets[[31, 0]])
    assert sub.graph_attr("idx").tolist() == [31, 0, 5] and sub.graph_attr("idx", [5, 31]).tolist() == [5, 31]
    assert [d.idx.item() for d in sub.select([0, 31])] == [0, 31]  # a view of a view
    with pytest.raises(ValueError, match="key"):
        ds.graph_attr("x")
    with pytest.raises(ValueError, match="not in this dataset"):
        ds.select([1])
    assert len(ds.select([1, 2], missing="skip")) == 1


def test_cache_reused_and_keyed_by_options(tmp_path, counting):
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert len(counting) == 1
    heavy = QM9(tmp_path, edges="bonds", hydrogens=False, subset=ROWS, num_workers=1, log=False)
    assert len(counting) == 2
    assert heavy[0].x.shape == (1, 13) and heavy[0].edge_attr.shape == (0, 4)  # methane without H
    assert heavy[0].atom_counts.tolist() == [[4, 1, 0, 0, 0]]  # counts still include the hydrogens
    QM9(tmp_path, subset=ROWS[:3], num_workers=1, log=False)
    assert len(counting) == 3  # another subset is another cache
    names = sorted(p.name for p in (tmp_path / "processed").glob("qm9_*.pt"))
    assert len(names) == 3 and any("bonds_noh" in n for n in names)


def _files(root: Path) -> tuple[Path, Path]:
    (pt,) = (root / "processed").glob("qm9_*.pt")
    return pt, pt.with_suffix(".json")


def test_corrupt_cache_is_rebuilt(tmp_path, counting):
    ref = QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    pt, _ = _files(tmp_path)
    blob = bytearray(pt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte, same size
    pt.write_bytes(bytes(blob))
    again = QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert len(counting) == 2
    assert torch.equal(again._data.edge_attr, ref._data.edge_attr)
    pt.write_bytes(b"not a torch file")  # truncated / garbage
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert len(counting) == 3


def test_stale_cache_is_rebuilt(tmp_path, counting):
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    _, meta_path = _files(tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = -1  # written by another version of the featurizer
    meta_path.write_text(json.dumps(meta))
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert len(counting) == 2
    meta_path.unlink()  # a crash between writing the data and its sidecar
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert len(counting) == 3
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False, force_reload=True)
    assert len(counting) == 4


def test_subset_cut_from_full_cache(tmp_path, monkeypatch, counting):
    # Pretend qm9pack holds 40 molecules, so that "all" is cheap to build.
    real = qm9mod.read_raw
    monkeypatch.setattr(qm9mod, "read_raw", lambda folder=None, max_rows=None: real(folder, max_rows=min(max_rows or 40, 40)))
    monkeypatch.setattr(qm9mod, "NUM_MOLECULES", 40)
    full = QM9(tmp_path, num_workers=2, log=False)
    assert len(full) == 40 and full.report["sources"]["xyz"] >= 35 and len(counting) == 1
    sub = QM9(tmp_path, subset=[3, 9, 30], log=False)
    assert len(counting) == 1 and sub.report["from_full_cache"]
    for d in sub:
        ref = full[int(d.idx)]
        assert torch.equal(d.edge_attr, ref.edge_attr) and torch.equal(d.x, ref.x)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="subset"):
        QM9(tmp_path, subset=[NUM_MOLECULES])
    with pytest.raises(ValueError, match="subset"):
        QM9(tmp_path, subset=[])
    with pytest.raises(ValueError, match="edges"):
        QM9(tmp_path, edges="radius")
    with pytest.raises(ValueError, match="num_workers"):
        QM9(tmp_path, subset=[0], num_workers=0)


def test_normalizer_recovers_linear_reference():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=(200, 5)).astype(float)
    w = np.array([-16.0, -1036.0, -1490.0, -2047.0, -2717.0])
    noise = rng.normal(0, 0.1, 200)
    y = np.stack([counts @ w + noise, rng.normal(3.0, 2.0, 200)], 1)
    norm = TargetNormalizer.fit(y, counts, columns=[0, 1], extensive=[True, False])
    np.testing.assert_allclose(norm.weights[:, 0].numpy(), w, atol=0.05)
    assert torch.all(norm.weights[:, 1] == 0)
    z = norm.normalize(torch.from_numpy(y), torch.from_numpy(counts))
    assert z.dtype == torch.float32
    np.testing.assert_allclose(z.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0, unbiased=False).numpy(), 1, atol=1e-5)
    back = norm.denormalize(z.double(), torch.from_numpy(counts))
    # Values of order 1e4 come back to 1e-5 although the network-side values are float32.
    np.testing.assert_allclose(back.numpy(), y, rtol=0, atol=1e-5)
    one = TargetNormalizer.fit(y, counts, columns=[1], extensive=[False])
    assert one.target(torch.from_numpy(y)).shape == (200, 1)
    with pytest.raises(ValueError, match="extensive"):
        TargetNormalizer.fit(y, counts, columns=[0], extensive=[True, False])
    with pytest.raises(ValueError, match="std"):
        TargetNormalizer.fit(np.ones((5, 1)), counts[:5], columns=[0], extensive=[False])


class RunsCode:
    """Full unpickling of this creates ``marker``: what a planted file in a shared data root could do."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import subprocess

        return (subprocess.call, (["touch", self.marker],))


@pytest.mark.parametrize("planted", ["pre_transform.pt", "pre_filter.pt", "cache"])
def test_planted_pickle_in_the_data_root_never_runs(tmp_path, counting, planted, record_property):
    record_property("reliability", {
        "area": "QM9 dataset (shared data root)",
        "case": f"a crafted {'processed/' + planted if planted != 'cache' else 'processed cache file (with a matching sidecar: size and CRC)'} "
                "whose `__reduce__` runs a shell command",
        "outcome": ("refused: UnsafeFileError naming the file; the command never runs" if planted != "cache" else
                    "not unpickled (weights_only=True, no fallback): a warning names it and the cache is rebuilt; "
                    "the command never runs")})  # fmt: skip
    import zlib

    ref = QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    marker = tmp_path.parent / f"{tmp_path.name}-ran"
    processed = tmp_path / "processed"
    if planted == "cache":
        pt, meta_path = _files(tmp_path)
        torch.save({"x": RunsCode(marker)}, pt)
        meta = json.loads(meta_path.read_text())
        meta["bytes"], meta["crc32"] = pt.stat().st_size, zlib.crc32(pt.read_bytes())
        meta_path.write_text(json.dumps(meta))
        again = QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
        assert len(counting) == 2 and torch.equal(again._data.edge_attr, ref._data.edge_attr)
        # The reproduction: PyG's own loader (InMemoryDataset.load) falls back to full pickle and runs it.
        import warnings

        from torch_geometric.io import fs

        other = tmp_path.parent / f"{tmp_path.name}-pyg-ran"
        torch.save({"x": RunsCode(other)}, tmp_path / "planted.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs.torch_load(str(tmp_path / "planted.pt"))
        assert other.exists()
    else:
        torch.save(RunsCode(marker), processed / planted)
        with pytest.raises(UnsafeFileError, match=rf"{planted}: refused: .*it names [\w.]*call\b") as err:
            QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
        assert err.value.path == processed / planted
    assert not marker.exists()


def test_failed_cache_write_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch, record_property):
    record_property("reliability", {
        "area": "QM9 dataset", "case": "disk full while writing the processed cache (write raises ENOSPC)",
        "outcome": "FileWriteError 'no space left on device writing PATH' naming the cache file; no temporary "
                   "left (a partial *.pt.tmpPID used to stay for good, and torch said only 'unexpected pos')"})  # fmt: skip
    import errno

    import gnnkit.data.files as files

    class Full:
        """A file on a full disk: every write raises ENOSPC."""

        def __init__(self, path, mode):
            self.f = open(path, mode)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(files, "open", Full, raising=False)
    with pytest.raises(files.FileWriteError, match=r"no space left on device writing .*qm9_v\d+_.*\.pt") as err:
        QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert err.value.errno == errno.ENOSPC
    assert [p.name for p in (tmp_path / "processed").iterdir() if "tmp" in p.name] == []
    monkeypatch.undo()
    (tmp_path / "processed" / "qm9_v1_old.pt.tmp999999999").write_bytes(b"partial")  # an older gnnkit's, killed
    QM9(tmp_path, subset=ROWS, num_workers=1, log=False)
    assert [p.name for p in (tmp_path / "processed").iterdir() if "tmp" in p.name] == []
