"""QM9 (Ramakrishnan et al. 2014) from the CSV files shipped in the ``qm9pack`` package.

All 130,831 molecules (the 133,885 of QM9 minus the 3,054 that failed QM9's consistency
check). Row ``i`` of the dataset (``data.idx``) is row ``i`` of qm9pack's three CSV parts in order,
which is increasing QM9 (GDB) index; ``data.gdb_id`` is that 1-based QM9 index.

Targets (``data.y``, ``[1, 13]``, float64 so that the large total energies keep their last
digits; order :attr:`QM9.TARGETS`): dipole moment mu (D), isotropic polarizability alpha
(bohr^3), HOMO, LUMO, gap (eV), electronic spatial extent R2 (bohr^2), ZPVE (eV), U0, U, H, G
(eV), heat capacity Cv (cal/mol K) and omega, the highest harmonic frequency (cm^-1). Energies
are converted from Hartree with 27.211386246 eV/Ha.

The processed cache lives under ``root/processed`` (default root: ``qm9/`` under
:func:`gnnkit.data.paths.data_root`, i.e. ``$GNNKIT_DATA/qm9``, else the checkout's
``datasets/qm9``, else ``~/.cache/gnnkit/qm9``), one file per featurizer option set and molecule
subset, each with a JSON sidecar (format version, options, subset hash, source file
sizes, byte count and CRC32 of the cache). A cache whose sidecar does not match, or that fails to
load, is rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import multiprocessing
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from gnnkit.data.files import NoPickleDataset, UnsafeFileError, atomic_write, pid_alive, remove_stale_temporaries
from gnnkit.data.molecule import (
    EdgeRepresentation,
    FeaturizerOptions,
    MoleculeBuildError,
    SOURCE_XYZ,
    SOURCE_XYZ_UNVERIFIED,
    featurize,
    mol_from_xyz,
)
from gnnkit.data.paths import data_root

HARTREE_TO_EV = 27.211386246
NUM_MOLECULES = 130_831
SPLIT_SIZES: dict[str, int] = {"train": 110_831, "val": 10_000, "test": 10_000}
SPLIT_SEED = 0
# Package data (pyproject.toml), so that an installed wheel has it too; equals make_split(SPLIT_SEED).
SPLIT_FILE = Path(__file__).with_name("qm9_split.npz")
CSV_FILES: tuple[str, ...] = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_FORMAT_VERSION = 1

TARGETS: tuple[str, ...] = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u", "h", "g", "cv", "omega")
UNITS: dict[str, str] = {
    "mu": "D", "alpha": "bohr^3", "homo": "eV", "lumo": "eV", "gap": "eV", "r2": "bohr^2",
    "zpve": "eV", "u0": "eV", "u": "eV", "h": "eV", "g": "eV", "cv": "cal/mol K", "omega": "cm^-1",
}  # fmt: skip
# Gilmer et al. 2017, Table 2 ("chemical accuracy"), in the units above.
CHEMICAL_ACCURACY: dict[str, float] = {
    "mu": 0.1, "alpha": 0.1, "homo": 0.043, "lumo": 0.043, "gap": 0.043, "r2": 1.2,
    "zpve": 0.0012, "u0": 0.043, "u": 0.043, "h": 0.043, "g": 0.043, "cv": 0.050, "omega": 10.0,
}  # fmt: skip
# Targets that grow with molecule size: a per-element linear reference is subtracted before
# normalisation (see gnnkit.data.normalize).
EXTENSIVE: tuple[str, ...] = ("alpha", "r2", "zpve", "u0", "u", "h", "g", "cv")

# qm9pack column -> (target, factor); omega is the maximum of the harmonic frequency list.
_COLUMNS: dict[str, tuple[str, float]] = {
    "Dipole_debye": ("mu", 1.0),
    "Polarizability_bohr3": ("alpha", 1.0),
    "HOMO_au": ("homo", HARTREE_TO_EV),
    "LUMO_au": ("lumo", HARTREE_TO_EV),
    "HOMO_LUMO_gap_au": ("gap", HARTREE_TO_EV),
    "R2_bohr2": ("r2", 1.0),
    "ZPVE_au": ("zpve", HARTREE_TO_EV),
    "InternalEnergy_0K_au": ("u0", HARTREE_TO_EV),
    "InternalEnergy_298K_au": ("u", HARTREE_TO_EV),
    "Enthalphy_298K_au": ("h", HARTREE_TO_EV),
    "GibbsFreeEnergy_298K_au": ("g", HARTREE_TO_EV),
    "Heatcapacity_Cv_cal_mol_K": ("cv", 1.0),
}


def target_index(name: str) -> int:
    """Column of target ``name`` in ``data.y`` (case-insensitive: ``"U0"`` works)."""
    key = name.lower()
    if key not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {name!r}")
    return TARGETS.index(key)


def qm9pack_folder() -> Path:
    """The folder of qm9pack's CSV files (found without importing qm9pack, which needs
    ``pkg_resources``)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the qm9pack package is not installed: pip install qm9pack")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@dataclass
class QM9Raw:
    """The molecules as read from the CSVs (coordinates and elements still unparsed strings).

    Shapes:
        gdb_index ``[M]``, targets ``[M, 13]`` (float64, units of :data:`UNITS`).
    """

    gdb_index: np.ndarray
    smiles: list[str]
    elements: list[str]
    xyz: list[str]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.smiles)


def read_raw(folder: str | os.PathLike | None = None, max_rows: int | None = None) -> QM9Raw:
    """Reads the molecules from qm9pack's CSV parts (in file order): all, or the first
    ``max_rows``."""
    folder = Path(folder) if folder is not None else qm9pack_folder()
    csv.field_size_limit(1 << 30)
    gdb, smiles, elements, xyz, targets = [], [], [], [], []
    for name in CSV_FILES:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"QM9 CSV {path} is missing (reinstall qm9pack)")
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            col = {h: k for k, h in enumerate(header)}
            missing = [c for c in ("Index", "SMILES", "Elements", "XYZ_Ang", "Harmonic_Freq_cmi", *_COLUMNS) if c not in col]
            if missing:
                raise ValueError(f"{path}: missing columns {missing}")
            cols = [col[c] for c in _COLUMNS]
            factors = np.array([f for _, f in _COLUMNS.values()])
            for row in reader:
                if max_rows is not None and len(gdb) >= max_rows:
                    break
                gdb.append(int(row[col["Index"]]))
                smiles.append(row[col["SMILES"]])
                elements.append(row[col["Elements"]])
                xyz.append(row[col["XYZ_Ang"]])
                freqs = row[col["Harmonic_Freq_cmi"]].strip("[]").split(",")
                targets.append([float(row[c]) for c in cols] + [max(float(v) for v in freqs)])
        if max_rows is not None and len(gdb) >= max_rows:
            break
    y = np.asarray(targets, dtype=np.float64).reshape(-1, len(TARGETS))
    y[:, :12] *= factors
    return QM9Raw(np.asarray(gdb, dtype=np.int64), smiles, elements, xyz, y)


def parse_molecule(elements: str, xyz: str) -> tuple[list[str], np.ndarray]:
    """Element symbols and ``[N, 3]`` coordinates from qm9pack's string columns."""
    symbols = [e.strip().strip("'\"") for e in elements.strip("[]").split(",")]
    positions = np.array(xyz.replace("[", "").replace("]", "").split(","), dtype=np.float64).reshape(-1, 3)
    if len(positions) != len(symbols):
        raise ValueError(f"{len(symbols)} elements but {len(positions)} coordinates")
    return symbols, positions


def _featurize_rows(job: tuple[FeaturizerOptions, list[tuple[int, str, str, str]]]) -> list[tuple]:
    """Worker: featurizes ``(row, elements, xyz, smiles)`` tuples.

    Returns ``(results, cpu_seconds)``: ``(row, arrays, source, note)`` per molecule (``arrays``
    is None for a failure and ``note`` then gives the reason) and the worker's CPU time."""
    options, rows = job
    out = []
    t0 = time.process_time()
    for row, elements, xyz, smiles in rows:
        try:
            symbols, positions = parse_molecule(elements, xyz)
            mol, source, note = mol_from_xyz(symbols, positions, smiles)
            # With atom_counts: element counts of the whole molecule (hydrogens included even when
            # they are not nodes), for the per-element reference of extensive targets.
            arrays = featurize(mol, options)
            out.append((row, arrays, source, note))
        except (MoleculeBuildError, ValueError) as e:
            out.append((row, None, "failed", getattr(e, "reason", str(e))))
    return out, time.process_time() - t0


def featurize_qm9(
    raw: QM9Raw, rows: np.ndarray, options: FeaturizerOptions, num_workers: int = 1, chunk_size: int = 500
) -> tuple[list[tuple], dict]:
    """Featurizes ``rows`` of ``raw`` with ``num_workers`` processes.

    Returns:
        ``(results, report)``: per-row ``(row, arrays, source, note)`` in ``rows`` order, and a
        report with counts per bond source, fallback reasons and the failures (row, GDB index,
        SMILES, reason).
    """
    jobs = []
    for start in range(0, len(rows), chunk_size):
        chunk = [(int(r), raw.elements[r], raw.xyz[r], raw.smiles[r]) for r in rows[start : start + chunk_size]]
        jobs.append((options, chunk))
    t0 = time.perf_counter()
    if num_workers > 1 and len(jobs) > 1:
        # fork: the workers need only numpy and RDKit, and start without re-importing torch.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(num_workers) as pool:
            parts = pool.map(_featurize_rows, jobs, chunksize=1)
    else:
        parts = [_featurize_rows(job) for job in jobs]
    results = [r for part, _ in parts for r in part]
    cpu = sum(c for _, c in parts)
    sources = Counter(r[2] for r in results)
    reasons = Counter(r[3].split(":")[0] + (" (Hueckel connectivity)" if "Hueckel" in r[3] else "")
                      + (" (dropped close contact)" if "dropped" in r[3] else "")
                      for r in results if r[2] not in (SOURCE_XYZ, "failed"))  # fmt: skip
    report = {
        "molecules": len(rows),
        "featurized": len(rows) - sources.get("failed", 0),
        "sources": dict(sorted(sources.items())),
        "fallback_reasons": dict(reasons.most_common()),
        "failures": [
            {"row": r[0], "gdb_index": int(raw.gdb_index[r[0]]), "smiles": raw.smiles[r[0]], "reason": r[3]}
            for r in results if r[2] == "failed"
        ],  # fmt: skip
        # Kept, but worth a look: bonds not confirmed by the SMILES, or a close contact dropped.
        "notable": [
            {"row": r[0], "gdb_index": int(raw.gdb_index[r[0]]), "smiles": raw.smiles[r[0]], "source": r[2], "note": r[3]}
            for r in results if r[2] == SOURCE_XYZ_UNVERIFIED or "dropped" in r[3]
        ],  # fmt: skip
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(cpu, 2),
        "num_workers": num_workers,
    }
    return results, report


def _collate_arrays(results: list[tuple], raw: QM9Raw) -> tuple[Data, dict[str, torch.Tensor]]:
    """InMemoryDataset storage (concatenated tensors + slices) built directly from the arrays,
    without creating one Data object per molecule."""
    ok = [r for r in results if r[1] is not None]
    rows = np.array([r[0] for r in ok], dtype=np.int64)
    nodes = np.array([len(r[1]["z"]) for r in ok], dtype=np.int64)
    edges = np.array([r[1]["edge_index"].shape[1] for r in ok], dtype=np.int64)

    def cat(key: str, axis: int = 0) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([r[1][key] for r in ok], axis=axis))

    def slices(counts: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))

    ones = slices(np.ones(len(ok), dtype=np.int64))
    data = Data(
        x=cat("x"), z=cat("z"), pos=cat("pos"), edge_index=cat("edge_index", axis=1), edge_attr=cat("edge_attr"),
        atom_counts=cat("atom_counts"),
        y=torch.from_numpy(raw.targets[rows]), idx=torch.from_numpy(rows), gdb_id=torch.from_numpy(raw.gdb_index[rows]),
    )  # fmt: skip
    node_sl, edge_sl = slices(nodes), slices(edges)
    sl = {"x": node_sl, "z": node_sl, "pos": node_sl, "edge_index": edge_sl, "edge_attr": edge_sl,
          "y": ones, "idx": ones, "gdb_id": ones, "atom_counts": ones}  # fmt: skip
    if "edge_type" in ok[0][1]:
        data.edge_type = cat("edge_type")
        sl["edge_type"] = edge_sl
    return data, sl


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    atomic_write(path, lambda f: f.write(payload), "wb")


def _remove_stale_cache_temporaries(folder: Path) -> None:
    """Temporaries of killed cache writers: ``.NAME.tmpPID`` and the ``NAME.tmpPID`` that older
    gnnkit versions wrote, whose process is gone."""
    remove_stale_temporaries(folder)
    if folder.is_dir():
        for entry in folder.glob("qm9_v*.tmp*"):
            pid = entry.name.rsplit(".tmp", 1)[1]
            if pid.isdigit() and not pid_alive(int(pid)) and entry.is_file():
                entry.unlink(missing_ok=True)


class QM9(NoPickleDataset, InMemoryDataset):
    """QM9 as a PyG ``InMemoryDataset`` with Gilmer et al.'s featurization.

    Args:
        root: dataset folder (processed cache in ``root/processed``); default
            ``data_root() / "qm9"`` (:func:`gnnkit.data.paths.data_root`: ``$GNNKIT_DATA/qm9``, else
            the checkout's ``datasets/qm9``, else ``~/.cache/gnnkit/qm9``).
        edges: ``"complete"`` (distance + bond one-hot on all pairs, Gilmer's best), ``"bonds"``
            (chemical graph) or ``"bins"`` (complete graph, bond type or distance bin); see
            :mod:`gnnkit.data.molecule`.
        hydrogens: keep hydrogens as nodes.
        subset: rows (0..130,830) to featurize, e.g. the split indices a quick run needs; ``None``
            for all. The cache is keyed by the subset, and a subset is cut from the full cache
            when that already exists.
        transform: PyG transform applied on access.
        num_workers: processes for featurization (default: all CPU cores).
        force_reload: rebuild the cache even if it is valid.

    Each item has ``x [n, 13]``, ``z [n]``, ``pos [n, 3]`` (Angstrom), ``edge_index [2, E]``,
    ``edge_attr [E, D]``, ``y [1, 13]`` (float64), ``atom_counts [1, 5]`` (H, C, N, O, F in the whole
    molecule), ``idx [1]`` (row) and ``gdb_id [1]`` (the QM9 index; not named ``*index`` since PyG would offset it when batching).
    Molecules whose bonds could not be assigned are left out and listed in :attr:`report`.
    """

    TARGETS = TARGETS
    UNITS = UNITS
    CHEMICAL_ACCURACY = CHEMICAL_ACCURACY
    EXTENSIVE = EXTENSIVE

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        edges: EdgeRepresentation = "complete",
        hydrogens: bool = True,
        subset: Sequence[int] | np.ndarray | None = None,
        transform: Callable[[Data], Data] | None = None,
        num_workers: int | None = None,
        force_reload: bool = False,
        log: bool = True,
    ) -> None:
        self.options = FeaturizerOptions(edges, hydrogens)
        if subset is None:
            self.subset = None
        else:
            sub = np.unique(np.asarray(subset, dtype=np.int64))
            if sub.size == 0 or sub[0] < 0 or sub[-1] >= NUM_MOLECULES:
                raise ValueError(f"subset must be non-empty rows in [0, {NUM_MOLECULES}), got {len(sub)} rows in [{sub.min(initial=0)}, {sub.max(initial=0)}]")
            self.subset = sub
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.num_workers = num_workers or os.cpu_count() or 1
        self._log = log
        self.report: dict = {}
        root = data_root(root) if root is not None else data_root() / "qm9"
        super().__init__(str(root), transform, log=log, force_reload=force_reload)
        if not self._load_cache():
            # The files existed but did not load (corrupt); build once more.
            self.process()
            if not self._load_cache():
                raise RuntimeError(f"QM9 cache {self.processed_paths[0]} could not be read back after rebuilding")

    # -- files ------------------------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return str(qm9pack_folder())

    @property
    def raw_file_names(self) -> list[str]:
        return list(CSV_FILES)

    def download(self) -> None:
        raise FileNotFoundError(f"QM9 CSVs not found in {self.raw_dir}: pip install qm9pack")

    @property
    def subset_key(self) -> str:
        if self.subset is None:
            return "all"
        return f"sub{len(self.subset)}_{hashlib.sha1(self.subset.tobytes()).hexdigest()[:12]}"

    @property
    def processed_file_names(self) -> list[str]:
        stem = f"qm9_v{_FORMAT_VERSION}_{self.options.key()}_{self.subset_key}"
        return [f"{stem}.pt", f"{stem}.json"]

    def _expected_meta(self) -> dict:
        return {
            "format_version": _FORMAT_VERSION,
            "options": self.options.key(),
            "subset": self.subset_key,
            "source_bytes": {name: (Path(self.raw_dir) / name).stat().st_size for name in CSV_FILES},
        }

    def _meta_valid(self, subset_key: str | None = None) -> bool:
        """Whether the cache for ``subset_key`` (default: this dataset's) matches its sidecar."""
        expected = self._expected_meta()
        if subset_key is not None:
            expected["subset"] = subset_key
        stem = f"qm9_v{_FORMAT_VERSION}_{self.options.key()}_{expected['subset']}"
        data_path, meta_path = Path(self.processed_dir) / f"{stem}.pt", Path(self.processed_dir) / f"{stem}.json"
        try:
            meta = json.loads(meta_path.read_text())
            if any(meta.get(k) != v for k, v in expected.items()):
                return False
            return data_path.stat().st_size == meta["bytes"] and _crc32(data_path) == meta["crc32"]
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _process(self) -> None:
        # A stale or corrupt cache is removed first, so that PyG's check sees it as missing.
        self._checked = False
        _remove_stale_cache_temporaries(Path(self.processed_dir))
        if not self.force_reload and all(Path(p).exists() for p in self.processed_paths):
            self._checked = self._meta_valid()
            if not self._checked:
                for p in self.processed_paths:
                    Path(p).unlink(missing_ok=True)
        super()._process()

    def _load_cache(self) -> bool:
        # The CRC is read once per construction: skip it if _process just checked these files.
        checked, self._checked = getattr(self, "_checked", False), False
        if not checked and not self._meta_valid():
            return False
        try:
            self.load(self.processed_paths[0])  # weights_only=True (NoPickleDataset): nothing in it runs
            meta = json.loads(Path(self.processed_paths[1]).read_text())
        except UnsafeFileError as e:
            print(f"warning: QM9 cache {e}; rebuilding it", flush=True)
            return False
        except Exception:  # noqa: BLE001 - any failure to unpickle means a corrupt cache
            return False
        if len(self) != meta["report"]["featurized"]:
            return False
        self.report = meta["report"]
        self._rows = self._data.idx.numpy()
        return True

    # -- building ---------------------------------------------------------------------------
    def process(self) -> None:
        t0 = time.perf_counter()
        full = QM9(self.root, self.options.edges, self.options.hydrogens, log=False) if self._full_cache_valid() else None
        if full is not None:
            pos = full.positions(self.subset, missing="skip")
            data, slices = self.collate(list(full.index_select(torch.from_numpy(pos))))
            failed_rows = set(np.setdiff1d(self.subset, full.rows).tolist())
            report = {**full.report, "molecules": len(self.subset), "featurized": len(pos),
                      "failures": [f for f in full.report["failures"] if f["row"] in failed_rows],
                      "from_full_cache": True}  # fmt: skip
            for key in ("sources", "fallback_reasons", "notable", "seconds", "cpu_seconds", "num_workers"):
                report.pop(key, None)
        else:
            # A subset needs the CSV rows only up to its last row.
            last = None if self.subset is None else int(self.subset[-1]) + 1
            raw = read_raw(self.raw_dir, max_rows=last)
            if len(raw) != (last or NUM_MOLECULES):
                raise ValueError(f"expected {last or NUM_MOLECULES} molecules in qm9pack, found {len(raw)}")
            rows = np.arange(len(raw)) if self.subset is None else self.subset
            results, report = featurize_qm9(raw, rows, self.options, self.num_workers)
            if report["featurized"] == 0:
                raise RuntimeError(f"no molecule could be featurized: {report['failures'][:3]}")
            data, slices = _collate_arrays(results, raw)
        data_path, meta_path = map(Path, self.processed_paths)
        atomic_write(data_path, lambda f: torch.save((data.to_dict(), slices, Data), f))
        report["build_seconds"] = round(time.perf_counter() - t0, 2)
        meta = {**self._expected_meta(), "bytes": data_path.stat().st_size, "crc32": _crc32(data_path), "report": report}
        _atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        if self._log:
            print(f"QM9 {self.options.key()} {self.subset_key}: featurized {report['featurized']} of "
                  f"{report['molecules']} molecules in {report['build_seconds']:.1f} s", flush=True)  # fmt: skip

    def _full_cache_valid(self) -> bool:
        return self.subset is not None and self._meta_valid("all")

    # -- access by row ----------------------------------------------------------------------
    @property
    def rows(self) -> np.ndarray:
        """Row (0..130,830) of each molecule in this dataset, increasing."""
        return self._rows if self._indices is None else self._rows[np.asarray(self.indices())]

    def positions(self, rows: Sequence[int] | np.ndarray, missing: str = "raise") -> np.ndarray:
        """Positions in this dataset of the given rows.

        Args:
            rows: rows (e.g. split indices).
            missing: ``"raise"`` if a row is not in the dataset, or ``"skip"`` to leave it out
                (molecules that failed featurization).
        """
        if missing not in ("raise", "skip"):
            raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
        rows = np.asarray(rows, dtype=np.int64)
        have = self.rows
        order = np.argsort(have, kind="stable")  # a select()ed view need not be sorted
        at = np.searchsorted(have[order], rows).clip(max=max(len(have) - 1, 0))
        pos = order[at] if len(have) else at
        found = have[pos] == rows if len(have) else np.zeros(len(rows), dtype=bool)
        if not found.all():
            if missing == "raise":
                raise ValueError(f"rows not in this dataset: {rows[~found][:10].tolist()}")
            pos = pos[found]
        return pos

    def graph_attr(self, key: str, rows: Sequence[int] | np.ndarray | None = None, missing: str = "raise") -> torch.Tensor:
        """A per-molecule attribute (``"y"``, ``"atom_counts"``, ``"idx"`` or ``"gdb_id"``) of the
        given rows (default: all), stacked without building Data objects, e.g. to fit a
        :class:`gnnkit.data.TargetNormalizer` on the training rows.

        Shapes:
            -> ``[len(rows), ...]`` (``y``: ``[M, 13]``).
        """
        if key not in ("y", "atom_counts", "idx", "gdb_id"):
            raise ValueError(f"key must be a per-molecule attribute (y, atom_counts, idx, gdb_id), got {key!r}")
        pos = np.arange(len(self)) if rows is None else self.positions(rows, missing)
        if self._indices is not None:
            pos = np.asarray(self.indices())[pos]
        return getattr(self._data, key)[torch.from_numpy(np.asarray(pos, dtype=np.int64))]

    def select(self, rows: Sequence[int] | np.ndarray, missing: str = "raise") -> QM9:
        """The sub-dataset of the given rows, in the given order (see :meth:`positions`)."""
        return self.index_select(torch.from_numpy(self.positions(rows, missing)))

    def __repr__(self) -> str:
        return f"QM9({len(self)}, edges={self.options.edges!r}, hydrogens={self.options.hydrogens})"


def make_split(seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The seeded random 110,831 / 10,000 / 10,000 split of rows (train order is shuffled)."""
    perm = np.random.default_rng(seed).permutation(NUM_MOLECULES)
    n_val, n_test = SPLIT_SIZES["val"], SPLIT_SIZES["test"]
    return {"train": perm[n_val + n_test :], "val": np.sort(perm[:n_val]), "test": np.sort(perm[n_val : n_val + n_test])}


def load_split(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The committed split (``gnnkit/data/qm9_split.npz``, installed with the package; equal to
    :func:`make_split` ``(0)``): ``{"train", "val", "test"}`` -> rows."""
    path = Path(path) if path is not None else SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"QM9 split file {path} not found")
    with np.load(path) as f:
        split = {k: f[k].astype(np.int64) for k in ("train", "val", "test")}
    for k, n in SPLIT_SIZES.items():
        if len(split[k]) != n:
            raise ValueError(f"{path}: split {k!r} has {len(split[k])} rows, expected {n}")
    return split


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m gnnkit.data.qm9``: builds (or loads) the full processed cache and writes the
    build report (counts, fallback reasons, failures, timings) as JSON."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--root", default=None, help="dataset folder (default: qm9/ under $GNNKIT_DATA, else the checkout's "
                   "datasets/, else ~/.cache/gnnkit)")
    p.add_argument("--edges", default="complete", choices=("complete", "bonds", "bins"))
    p.add_argument("--no-hydrogens", action="store_true")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    p.add_argument("--report", default=None, help="write the report JSON here")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    ds = QM9(a.root, a.edges, not a.no_hydrogens, num_workers=a.workers, force_reload=a.force)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = QM9(a.root, a.edges, not a.no_hydrogens)
    cached = time.perf_counter() - t0
    report = {**ds.report, "options": ds.options.key(), "first_call_seconds": round(first, 2),
              "cached_load_seconds": round(cached, 2), "cache_bytes": Path(ds.processed_paths[0]).stat().st_size,
              "cpu_count": os.cpu_count()}  # fmt: skip
    text = json.dumps(report, indent=1)
    if a.report:
        _atomic_write_bytes(Path(a.report), (text + "\n").encode())
    print(text)
    return report


__all__ = [
    "CHEMICAL_ACCURACY",
    "EXTENSIVE",
    "HARTREE_TO_EV",
    "NUM_MOLECULES",
    "QM9",
    "QM9Raw",
    "SPLIT_SIZES",
    "TARGETS",
    "UNITS",
    "featurize_qm9",
    "load_split",
    "make_split",
    "parse_molecule",
    "qm9pack_folder",
    "read_raw",
    "target_index",
]


if __name__ == "__main__":
    main()
