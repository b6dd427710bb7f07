"""QM9 in one compressed file, for a machine that has neither RDKit nor qm9pack.

    python -m gnnkit.data.qm9_pack --out qm9_pack.npz              # every molecule (about 45 MB)
    python -m gnnkit.data.qm9_pack --out small.npz --rows 2000       # the first 2,000 rows

:class:`gnnkit.data.QM9` featurizes the qm9pack CSVs with RDKit. A GPU machine that can install
nothing (and to which the qm9pack wheel, over 100 MB, cannot be carried) gets a pack instead: what
the featurizer computed per atom and per bond, built where RDKit is, and rebuilt into exactly the
same graphs by :func:`gnnkit.data.molecule.graph_arrays` (numpy only) with
:func:`load_qm9_pack`. Per molecule the pack stores the 13 atom features (small integers, as
uint8), the coordinates (float32, as the processed cache stores ``pos``), the bonds (atom pairs
and type), the 13 targets (float64), the element counts and the row / GDB index.

The one difference from :class:`~gnnkit.data.QM9`: ``edge_attr`` distances are computed from the
float32 coordinates rather than the float64 ones read from the CSVs (a difference of about 1e-7
Angstrom; tests/data/test_qm9_pack.py checks every other tensor is equal).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from gnnkit.data.molecule import BOND_TYPES, EdgeRepresentation, FeaturizerOptions, graph_arrays
from gnnkit.data.qm9 import NUM_MOLECULES, QM9

FORMAT = "gnnkit-qm9-pack-1"
_ARRAYS = ("format", "rows", "gdb_id", "y", "atom_counts", "num_atoms", "num_bonds", "x", "z", "pos", "bonds")


def write_qm9_pack(dataset: QM9, path: str | os.PathLike) -> dict[str, int]:
    """Writes the molecules of ``dataset`` (a :class:`~gnnkit.data.QM9` built with
    ``edges="complete", hydrogens=True``: every atom and every pair) to ``path``.

    Returns:
        counts: molecules, atoms, bonds and the file's bytes.

    Raises:
        ValueError: ``dataset`` is not a complete graph with hydrogens, or an atom feature is not
            a small non-negative integer (the pack stores them as uint8).
    """
    if dataset.options != FeaturizerOptions("complete", True):
        raise ValueError(f"the pack is built from the complete graph with hydrogens, got {dataset.options}")
    data, sl = dataset._data, dataset.slices
    if dataset._indices is not None:
        raise ValueError("pass the whole dataset, not a select()ed view")
    x = data.x.numpy()
    if not (np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 255):
        raise ValueError("atom features must be integers in 0..255 to be packed")
    node_sl, edge_sl = sl["x"].numpy(), sl["edge_index"].numpy()
    bond_onehot = data.edge_attr[:, -len(BOND_TYPES) :].numpy()
    src, dst = data.edge_index.numpy()
    bonds, num_bonds = [], []
    for m in range(len(node_sl) - 1):
        e0, e1 = edge_sl[m], edge_sl[m + 1]
        i, j = src[e0:e1], dst[e0:e1]  # the storage keeps each molecule's local atom indices
        kind = bond_onehot[e0:e1]
        pick = (i < j) & (kind.sum(1) > 0)  # each bond once
        bonds.append(np.stack([i[pick], j[pick], kind[pick].argmax(1)], 1))
        num_bonds.append(int(pick.sum()))
    packed = {
        "format": np.array(FORMAT),
        "rows": data.idx.numpy().astype(np.int32),
        "gdb_id": data.gdb_id.numpy().astype(np.int32),
        "y": data.y.numpy(),
        "atom_counts": data.atom_counts.numpy().astype(np.uint8),
        "num_atoms": np.diff(node_sl).astype(np.uint8),
        "num_bonds": np.array(num_bonds, dtype=np.uint16),
        "x": x.astype(np.uint8),
        "z": data.z.numpy().astype(np.uint8),
        "pos": data.pos.numpy().astype(np.float32),
        "bonds": np.concatenate(bonds).astype(np.uint8) if bonds else np.zeros((0, 3), np.uint8),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **packed)
    os.replace(tmp, path)
    return {"molecules": len(packed["rows"]), "atoms": len(x), "bonds": int(sum(num_bonds)), "bytes": path.stat().st_size}


def _graph_chunk(job: tuple[FeaturizerOptions, list[tuple]]) -> dict[str, np.ndarray]:
    """Worker: the graphs of a chunk of molecules, concatenated (a few large arrays travel back
    between processes much faster than thousands of small ones)."""
    options, molecules = job
    graphs = []
    for x, z, pos, bonds in molecules:
        matrix = np.full((len(z), len(z)), -1, dtype=np.int8)
        matrix[bonds[:, 0], bonds[:, 1]] = matrix[bonds[:, 1], bonds[:, 0]] = bonds[:, 2]
        graphs.append(graph_arrays(x.astype(np.float32), pos.astype(np.float64), matrix, options, z.astype(np.int64)))
    out = {key: np.concatenate([g[key] for g in graphs], axis=1 if key == "edge_index" else 0) for key in graphs[0]}
    out["num_nodes"] = np.array([len(g["z"]) for g in graphs], dtype=np.int64)
    out["num_edges"] = np.array([g["edge_index"].shape[1] for g in graphs], dtype=np.int64)
    return out


class PackedQM9(InMemoryDataset):
    """QM9 rebuilt from a pack (see the module docstring): the items, :attr:`rows`,
    :meth:`positions`, :meth:`graph_attr` and :meth:`select` of :class:`~gnnkit.data.QM9`."""

    rows = QM9.rows
    positions = QM9.positions
    graph_attr = QM9.graph_attr
    select = QM9.select

    def __init__(self, data: Data, slices: dict[str, torch.Tensor], options: FeaturizerOptions, source: str,
                 transform: Callable[[Data], Data] | None = None) -> None:  # fmt: skip
        super().__init__(None, transform, log=False)
        self._data, self.slices = data, slices
        self.options, self.source = options, source
        self._rows = data.idx.numpy()
        self.report = {"featurized": len(self._rows), "source": source}

    def __repr__(self) -> str:
        return f"PackedQM9({len(self)}, edges={self.options.edges!r}, hydrogens={self.options.hydrogens})"


def load_qm9_pack(
    path: str | os.PathLike,
    edges: EdgeRepresentation = "complete",
    hydrogens: bool = True,
    subset: Sequence[int] | np.ndarray | None = None,
    num_workers: int | None = None,
    transform: Callable[[Data], Data] | None = None,
) -> PackedQM9:
    """The molecules of a pack as a PyG dataset with the items :class:`~gnnkit.data.QM9` has.

    Args:
        path: a file written by :func:`write_qm9_pack`.
        edges, hydrogens: the graph to build, as for :class:`~gnnkit.data.QM9`.
        subset: rows (0..130,830) to keep (default: all in the pack); rows not in the pack are
            left out, as molecules that failed featurization are.
        num_workers: processes that build the graphs (default: all cores).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a pack of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"QM9 pack {path} not found (build it with python -m gnnkit.data.qm9_pack --out {path})")
    options = FeaturizerOptions(edges, hydrogens)
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a {FORMAT} file ({e})") from e
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a {FORMAT} file (a single array)")
    with f:
        if "format" not in f.files or str(f["format"]) != FORMAT or set(f.files) != set(_ARRAYS):
            raise ValueError(f"{path} is not a {FORMAT} file (arrays: {', '.join(sorted(f.files))})")
        arr = {k: f[k] for k in _ARRAYS if k != "format"}
    atom_sl = np.concatenate([[0], np.cumsum(arr["num_atoms"], dtype=np.int64)])
    bond_sl = np.concatenate([[0], np.cumsum(arr["num_bonds"], dtype=np.int64)])
    keep = np.arange(len(arr["rows"]))
    if subset is not None:
        sub = np.asarray(subset, dtype=np.int64)
        if sub.size and (sub.min() < 0 or sub.max() >= NUM_MOLECULES):
            raise ValueError(f"subset rows must lie in [0, {NUM_MOLECULES})")
        keep = np.flatnonzero(np.isin(arr["rows"], sub))
    molecules = [(arr["x"][atom_sl[m] : atom_sl[m + 1]], arr["z"][atom_sl[m] : atom_sl[m + 1]],
                  arr["pos"][atom_sl[m] : atom_sl[m + 1]], arr["bonds"][bond_sl[m] : bond_sl[m + 1]]) for m in keep]  # fmt: skip
    if not molecules:
        raise ValueError("no molecule of the subset is in the pack")
    jobs = [(options, molecules[i : i + 2000]) for i in range(0, len(molecules), 2000)]
    workers = min(num_workers or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            chunks = pool.map(_graph_chunk, jobs, chunksize=1)
    else:
        chunks = [_graph_chunk(job) for job in jobs]
    per_mol = {k: v[keep] for k, v in arr.items() if k in ("rows", "gdb_id", "y", "atom_counts")}
    source = f"{path.name} ({hashlib.sha1(path.read_bytes()).hexdigest()[:12]})"
    return _collate(chunks, per_mol, options, source, transform)


def _collate(chunks: list[dict[str, np.ndarray]], per_mol: dict[str, np.ndarray], options: FeaturizerOptions,
             source: str, transform) -> PackedQM9:  # fmt: skip
    """InMemoryDataset storage built directly from the arrays (as QM9 stores its cache)."""

    def cat(key: str, axis: int = 0) -> np.ndarray:
        return np.concatenate([c[key] for c in chunks], axis=axis)

    def slices(counts: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))

    t = lambda a: torch.from_numpy(a)  # noqa: E731
    data = Data(
        x=t(cat("x")), z=t(cat("z")), pos=t(cat("pos")), edge_index=t(cat("edge_index", axis=1)), edge_attr=t(cat("edge_attr")),
        atom_counts=t(per_mol["atom_counts"].astype(np.float32)), y=t(per_mol["y"]),
        idx=t(per_mol["rows"].astype(np.int64)), gdb_id=t(per_mol["gdb_id"].astype(np.int64)),
    )  # fmt: skip
    ones = slices(np.ones(len(per_mol["rows"]), dtype=np.int64))
    node_sl, edge_sl = slices(cat("num_nodes")), slices(cat("num_edges"))
    sl = {"x": node_sl, "z": node_sl, "pos": node_sl, "edge_index": edge_sl, "edge_attr": edge_sl,
          "y": ones, "idx": ones, "gdb_id": ones, "atom_counts": ones}  # fmt: skip
    if "edge_type" in chunks[0]:
        data.edge_type = t(cat("edge_type"))
        sl["edge_type"] = edge_sl
    return PackedQM9(data, sl, options, source, transform)


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    """``python -m gnnkit.data.qm9_pack --out FILE``: featurizes (or loads the cached) QM9 and packs it."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", required=True, help="the pack to write (.npz)")
    p.add_argument("--rows", type=int, default=None, help="only the first N rows (default: all 130,831)")
    p.add_argument("--data-root", default=None, help="QM9 folder with the processed cache (default: as QM9's)")
    p.add_argument("--workers", type=int, default=None, help="featurization processes (default: all cores)")
    a = p.parse_args(argv)
    if a.rows is not None and not 1 <= a.rows <= NUM_MOLECULES:
        p.error(f"--rows must be in 1..{NUM_MOLECULES}, got {a.rows}")
    t0 = time.perf_counter()
    subset = None if a.rows is None else np.arange(a.rows)
    dataset = QM9(a.data_root, "complete", True, subset=subset, num_workers=a.workers)
    counts = write_qm9_pack(dataset, a.out)
    print(f"{a.out}: {counts['molecules']:,} molecules, {counts['atoms']:,} atoms, {counts['bonds']:,} bonds, "
          f"{counts['bytes'] / 1e6:.1f} MB in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    return counts


__all__ = ["FORMAT", "PackedQM9", "load_qm9_pack", "write_qm9_pack"]


if __name__ == "__main__":
    main()
