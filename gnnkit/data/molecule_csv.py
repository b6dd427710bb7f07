"""A user's molecules and measured properties from a CSV file, featurized for any graph model.

:func:`load_molecule_csv` reads one molecule per row (a SMILES column, optionally a coordinates
column) and one or more numeric target columns. Rows that cannot be used are never dropped
silently: each one is listed in :attr:`MoleculeCSV.skipped` with its row number (row 1 is the
first line after the header) and the reason (unparsable SMILES, missing or non-numeric target,
no bonds fitting the coordinates, unsupported bond, ...).

Geometry (what the edges can carry):

* ``"none"``: the chemical graph only (``edges="bonds"``: bond one-hot edge features);
* ``"embedded"``: 3D coordinates from the SMILES (ETKDG + MMFF, see
  :func:`gnnkit.data.molecule.mol_from_smiles`), so ``"complete"``/``"bins"`` edges with
  distances work;
* ``"given"``: coordinates from ``xyz_column``: per row an inline XYZ block, or the path (relative
  to the CSV's folder) of an ``.xyz``, ``.sdf`` or ``.mol`` file. The SMILES is the reference for
  the bond orders, as for QM9 (:func:`gnnkit.data.molecule.mol_from_xyz`).

Splits (:func:`split_molecules`) keep molecules with the same canonical SMILES in one split (with
a warning that counts them), so that no test molecule is also a training molecule:
``"random"`` (seeded) or ``"scaffold"`` (Bemis-Murcko
scaffolds, Bemis & Murcko 1996: whole scaffold groups go to one split, so validation and test
molecules have scaffolds the model did not train on; deterministic: groups in decreasing size,
each to the split that is furthest below its share, so the large groups end up in training).
An explicit split reproduces a published one: a column of ``train``/``val``/``test`` labels
(:func:`split_from_column`) or a JSON file of row indices in chemprop's ``--splits-file`` format
(:func:`read_splits_file`), checked by :func:`check_split_indices` and applied by
:func:`explicit_split`.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch_geometric.data import Data

from gnnkit.data.molecule import EMBED_SEED, FeaturizerOptions, element_symbols
from gnnkit.data.molecule_io import (
    MoleculeRecord,
    molecule_data,
    parse_xyz_block,
    read_sdf,
    smiles_record,
    xyz_record,
)

Geometry = Literal["none", "embedded", "given"]
SplitMethod = Literal["random", "scaffold"]
_MISSING = {"", "na", "nan", "n/a", "none", "null"}


@dataclass
class SkippedRow:
    """A CSV row left out, and why (``row`` 1 is the first line after the header)."""

    row: int
    reason: str


@dataclass
class MoleculeCSV:
    """The usable molecules of a CSV file.

    Attributes:
        data: one graph per usable row, each with ``y [1, T]`` (float64, the targets in their
            own units) and ``row [1]`` (its CSV row number).
        smiles: the SMILES of each graph, in ``data`` order.
        rows: CSV row number of each graph.
        targets: the target column names (``T``).
        options: the featurizer settings used (elements included).
        geometry: where the coordinates came from (``"none"``, ``"embedded"``, ``"given"``).
        skipped: the rows left out, with the reason.
        total_rows: data rows in the file.
    """

    data: list[Data]
    smiles: list[str]
    rows: list[int]
    targets: tuple[str, ...]
    options: FeaturizerOptions
    geometry: Geometry
    skipped: list[SkippedRow] = field(default_factory=list)
    total_rows: int = 0

    def __len__(self) -> int:
        return len(self.data)

    def skipped_summary(self, limit: int = 10) -> str:
        """One line per skipped row (the first ``limit``), with the count."""
        if not self.skipped:
            return f"all {self.total_rows} rows used"
        lines = [f"skipped {len(self.skipped)} of {self.total_rows} rows:"]
        lines += [f"  row {s.row}: {s.reason}" for s in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def csv_header(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV file (its first line).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {path} not found")
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name
        header = next(csv.reader(f), None)
    if not header:
        raise ValueError(f"CSV file {path} is empty (no header line)")
    return [h.strip() for h in header]


def check_columns(header: Sequence[str], wanted: Sequence[str], path: str | os.PathLike) -> None:
    """Raises a ValueError naming the ``wanted`` columns that ``header`` lacks (and listing it)."""
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(map(repr, missing))}; the columns are {', '.join(header)}")
    doubled = sorted({c for c in header if header.count(c) > 1} & set(wanted))
    if doubled:
        raise ValueError(f"{path}: column(s) {', '.join(doubled)} appear more than once in the header")


def _target_value(text: str, name: str) -> float:
    if text.strip().lower() in _MISSING:
        raise ValueError(f"missing target {name!r}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"target {name!r}: {text.strip()[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"target {name!r} is not finite ({text.strip()})")
    return value


def _coordinates_record(cell: str, smiles: str, folder: Path, name: str) -> MoleculeRecord:
    """The molecule of an ``xyz_column`` cell: an inline XYZ block or a file path."""
    text = cell.strip()
    if not text:
        return MoleculeRecord(name, "xyz", error="no coordinates (empty cell)")
    if "\n" in text or len(text.split()) >= 4:
        try:
            symbols, positions, title = parse_xyz_block(text)
        except ValueError as e:
            return MoleculeRecord(name, "xyz", error=f"coordinates: {e}")
        return xyz_record(symbols, positions, name, smiles=smiles, title=title)
    path = Path(text) if Path(text).is_absolute() else folder / text
    if not path.is_file():
        return MoleculeRecord(name, "xyz", error=f"coordinates file {path} not found")
    if path.suffix.lower() in (".sdf", ".mol"):
        records = read_sdf(path)
    elif path.suffix.lower() == ".xyz":
        try:
            symbols, positions, title = parse_xyz_block(path.read_text())
        except ValueError as e:
            return MoleculeRecord(name, "xyz", error=f"{path}: {e}")
        records = [xyz_record(symbols, positions, name, smiles=smiles, title=title)]
    else:
        return MoleculeRecord(name, "xyz", error=f"coordinates file {path}: expected .xyz, .sdf or .mol")
    if len(records) != 1:
        return MoleculeRecord(name, "xyz", error=f"{path} holds {len(records)} molecules, expected one")
    return records[0]


def load_molecule_csv(
    path: str | os.PathLike,
    smiles_column: str,
    targets: Sequence[str],
    xyz_column: str | None = None,
    embed: bool = False,
    edges: str = "bonds",
    hydrogens: bool = True,
    elements: Sequence[str] | None = None,
    seed: int = EMBED_SEED,
    formal_charge: bool = False,
) -> MoleculeCSV:
    """Reads and featurizes the molecules of a CSV file (see the module docstring).

    Args:
        path: the CSV file (header line, then one molecule per row).
        smiles_column: column with the SMILES.
        targets: numeric target columns (at least one).
        xyz_column: column with coordinates (inline XYZ block or file path); ``None``: none.
        embed: embed each SMILES in 3D (ETKDG + MMFF); excludes ``xyz_column``.
        edges: ``"bonds"`` (chemical graph), ``"complete"`` or ``"bins"`` (need coordinates:
            ``xyz_column`` or ``embed``).
        hydrogens: keep hydrogens as nodes.
        elements: element one-hot set; ``None``: the elements of the usable molecules (H always),
            in order of atomic number.
        seed: ETKDG seed for ``embed``.
        formal_charge: add each atom's formal charge as an atom feature (see
            :class:`gnnkit.data.FeaturizerOptions`).

    Raises:
        FileNotFoundError: the CSV file does not exist.
        ValueError: bad arguments, a missing column, or no usable row (the message lists the
            first skipped rows).
    """
    path = Path(path)
    targets = tuple(targets)
    if not targets:
        raise ValueError("targets: give at least one target column")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets: each column once, got {', '.join(targets)}")
    if smiles_column in targets or (xyz_column is not None and xyz_column in targets):
        raise ValueError("a target column cannot also be the SMILES or coordinates column")
    if embed and xyz_column is not None:
        raise ValueError("embed and xyz_column exclude each other: coordinates are either given or embedded")
    geometry: Geometry = "given" if xyz_column is not None else "embedded" if embed else "none"
    probe = FeaturizerOptions(edges, hydrogens, formal_charge=formal_charge)  # validates the options
    if probe.needs_coordinates and geometry == "none":
        raise ValueError(f"edges={edges!r} carry distances: give a coordinates column or embed the SMILES "
                         "(else use edges='bonds', the chemical graph)")  # fmt: skip
    header = csv_header(path)
    check_columns(header, [smiles_column, *targets, *([xyz_column] if xyz_column else [])], path)
    col = {h: k for k, h in enumerate(header)}

    skipped: list[SkippedRow] = []
    parsed: list[tuple[int, str, MoleculeRecord, list[float]]] = []
    total = 0
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name
        reader = csv.reader(f)
        next(reader)
        for total, cells in enumerate(reader, 1):
            if not any(c.strip() for c in cells):
                skipped.append(SkippedRow(total, "empty row"))
                continue
            if len(cells) != len(header):
                skipped.append(SkippedRow(total, f"{len(cells)} cells, the header has {len(header)} columns"))
                continue
            smiles = cells[col[smiles_column]].strip()
            try:
                y = [_target_value(cells[col[t]], t) for t in targets]
            except ValueError as e:
                skipped.append(SkippedRow(total, str(e)))
                continue
            if not smiles:
                skipped.append(SkippedRow(total, "empty SMILES"))
                continue
            name = f"row {total}"
            if geometry == "given":
                record = _coordinates_record(cells[col[xyz_column]], smiles, path.parent, name)
            else:
                record = smiles_record(smiles, embed=embed, seed=seed, name=name)
            record.name = name
            if record.error is not None:
                skipped.append(SkippedRow(total, record.error))
                continue
            parsed.append((total, smiles, record, y))

    if elements is None:
        table = element_symbols()
        seen = {a.GetSymbol() for _, _, r, _ in parsed for a in r.mol.GetAtoms()} | {"H"}
        elements = tuple(sorted(seen, key=table.__getitem__))
    options = FeaturizerOptions(edges, hydrogens, tuple(elements), formal_charge)
    data, smiles_out, rows = [], [], []
    for row, smiles, record, y in parsed:
        try:
            graph = molecule_data(record, options, y)
        except ValueError as e:
            skipped.append(SkippedRow(row, str(e)))
            continue
        graph.row = torch.tensor([row])
        data.append(graph)
        smiles_out.append(smiles)
        rows.append(row)
    skipped.sort(key=lambda s: s.row)
    out = MoleculeCSV(data, smiles_out, rows, targets, options, geometry, skipped, total)
    if not data:
        raise ValueError(f"{path}: no usable molecule; {out.skipped_summary(5)}")
    return out


def _split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    return n - n_val - n_test, n_val, n_test


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validates train/validation/test fractions: three positive numbers summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or not all(f > 0 and math.isfinite(f) for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers (train, validation, test) summing to 1, "
                         f"got {', '.join(map(str, fractions))}")  # fmt: skip
    return fractions  # type: ignore[return-value]


def murcko_scaffold(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES (``""`` for an acyclic molecule)."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"SMILES {smiles!r} does not parse")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _duplicate_groups(smiles: Sequence[str]) -> list[list[int]]:
    """Positions of molecules with the same canonical SMILES (groups of two or more, in order of
    first appearance); a SMILES RDKit cannot parse is compared as written."""
    from rdkit import Chem

    from gnnkit.data.molecule import _rdkit

    _rdkit()
    by_key: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        by_key.setdefault(Chem.MolToSmiles(mol) if mol is not None else s, []).append(i)
    return [g for g in by_key.values() if len(g) > 1]


def _random_group_split(perm: np.ndarray, same: list[list[int]], n: int, sizes: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The random split with each group of duplicates moved as one: groups taken in the order of
    their first member in ``perm``, training filled to its size first, then validation, then test."""
    group_of = np.arange(n)
    for g in same:
        group_of[g] = g[0]
    members: dict[int, list[int]] = {}
    for i in perm.tolist():
        members.setdefault(int(group_of[i]), []).append(i)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    names = ("train", "val", "test")
    for group in members.values():
        k = next((name for name, size in zip(names[:2], sizes[:2]) if len(parts[name]) < size), "test")
        parts[k] += group
    empty = [k for k, v in parts.items() if not v]
    if empty:
        raise ValueError(f"keeping repeated molecules together left {' and '.join(empty)} empty ({n} molecules, "
                         f"{len(members)} distinct); give more distinct molecules")  # fmt: skip
    return {"train": np.asarray(parts["train"], dtype=np.int64), "val": np.sort(np.asarray(parts["val"], dtype=np.int64)),
            "test": np.sort(np.asarray(parts["test"], dtype=np.int64))}  # fmt: skip


def split_molecules(
    smiles: Sequence[str], method: SplitMethod = "random", fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Train/validation/test positions of the molecules (see the module docstring).

    Returns:
        ``{"train", "val", "test"}`` -> positions into ``smiles`` (each non-empty).

    Raises:
        ValueError: bad ``method`` or ``fractions``, fewer than 3 molecules, or a scaffold split
            that leaves a split empty (too few scaffold groups).
    """
    fractions = check_fractions(fractions)
    n = len(smiles)
    if n < 3:
        raise ValueError(f"need at least 3 molecules to split into train, validation and test, got {n}")
    n_train, n_val, n_test = _split_sizes(n, fractions)
    if n_train < 1:
        raise ValueError(f"{n} molecules are too few for fractions {fractions}")
    if method not in ("random", "scaffold"):
        raise ValueError(f"split method must be 'random' or 'scaffold', got {method!r}")
    same = _duplicate_groups(smiles)
    if same:
        extra = sum(len(g) - 1 for g in same)
        shown = "; ".join(f"{smiles[g[0]]} x{len(g)}" for g in same[:3]) + (f"; and {len(same) - 3} more" if len(same) > 3 else "")
        warnings.warn(f"{extra} molecule(s) repeat another (same canonical SMILES) in {len(same)} group(s): {shown}. "
                      "Each group is kept in one split, so that no test molecule is also a training molecule",
                      stacklevel=2)  # fmt: skip
    if method == "random":
        perm = np.random.default_rng(seed).permutation(n)
        if not same:
            return {"train": perm[:n_train], "val": np.sort(perm[n_train : n_train + n_val]), "test": np.sort(perm[n_train + n_val :])}
        return _random_group_split(perm, same, n, (n_train, n_val, n_test))
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(murcko_scaffold(s), []).append(i)
    # Largest scaffold groups first (ties: first appearance), each to the split furthest below its
    # size, so training gets the big groups and validation and test fill up with the rarer ones.
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    wanted = {"train": n_train, "val": n_val, "test": n_test}
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for g in ordered:
        k = max(wanted, key=lambda name: (wanted[name] - len(parts[name])) / wanted[name])
        parts[k] += g
    empty = [k for k, v in parts.items() if not v]
    if empty:
        raise ValueError(f"the scaffold split left {' and '.join(empty)} empty ({n} molecules in {len(groups)} scaffold "
                         "groups); use more molecules or --split random")  # fmt: skip
    return {k: np.asarray(sorted(v), dtype=np.int64) for k, v in parts.items()}


# ----------------------------------------------------------------------------- explicit splits
SPLIT_NAMES = ("train", "val", "test")
# Labels a split column may hold (case-insensitive), and the split each names.
SPLIT_LABELS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def count_rows(path: str | os.PathLike) -> int:
    """Data rows of a CSV file (lines after the header; a quoted cell may span lines)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def split_from_column(path: str | os.PathLike, column: str) -> dict[str, list[int]]:
    """The split each data row names in ``column`` (``train``, ``val``/``valid``/``validation``
    or ``test``, case-insensitive): ``{split: [row index]}``, row index 0 = the first line after
    the header (as in a splits file). Empty rows and rows of the wrong length are left out (they
    are reported as skipped rows when the molecules are read).

    Raises:
        ValueError: a row holds another label (the first few are named with their row numbers), or
            the column is missing.
    """
    header = csv_header(path)
    check_columns(header, [column], path)
    k = header.index(column)
    out: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    unknown: list[str] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        for index, cells in enumerate(reader):
            if not any(c.strip() for c in cells) or len(cells) != len(header):
                continue
            label = cells[k].strip()
            if label.lower() in SPLIT_LABELS:
                out[SPLIT_LABELS[label.lower()]].append(index)
            else:
                unknown.append(f"row {index + 1}: {label!r}")
    if unknown:
        shown = "; ".join(unknown[:5]) + (f"; and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValueError(f"{path}: split column {column!r} must hold train, val or test in every row "
                         f"({len(unknown)} do not: {shown})")  # fmt: skip
    return out


def _parse_indices(value: object, name: str, where: str) -> list[int]:
    """A splits file's entry: a list of row indices, or chemprop's string form ``"0-2,4"``."""
    if isinstance(value, str):
        out: list[int] = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                if sep:
                    a, b = int(lo), int(hi)
                    if b < a:
                        raise ValueError
                    out += range(a, b + 1)
                else:
                    out.append(int(part))
            except ValueError:
                raise ValueError(f"{where}: {name!r} has {part!r}, not an index or a range a-b (a <= b)") from None
        return out
    if isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return list(value)
    raise ValueError(f"{where}: {name!r} must be a list of row indices or a string such as \"0-9,12\", "
                     f"got {type(value).__name__}")  # fmt: skip


def read_splits_file(path: str | os.PathLike) -> dict[str, list[int]]:
    """Row indices of each split from a JSON file, as chemprop's ``--splits-file``: an object
    ``{"train": [...], "val": [...], "test": [...]}`` or a list holding one such object; each value
    a list of row indices (0 = the first data row) or a string of indices and inclusive ranges
    (``"0-79,85"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, not that shape (names what is wrong), or more than one split in the list.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"splits file {path} not found")
    try:
        spec = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"splits file {path} is not JSON: {e}") from None
    if isinstance(spec, list):
        if len(spec) != 1:
            raise ValueError(f"splits file {path} holds {len(spec)} splits; gnnkit trains one model: give a file "
                             "with one {\"train\": [...], \"val\": [...], \"test\": [...]}")  # fmt: skip
        spec = spec[0]
    if not isinstance(spec, dict):
        raise ValueError(f"splits file {path} must hold {{\"train\": [...], \"val\": [...], \"test\": [...]}}, "
                         f"got a {type(spec).__name__}")  # fmt: skip
    keys = set(spec)
    if keys != set(SPLIT_NAMES):
        missing, extra = sorted(set(SPLIT_NAMES) - keys), sorted(keys - set(SPLIT_NAMES))
        said = "; ".join(([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else []))
        raise ValueError(f"splits file {path} must have the keys train, val and test ({said})")
    return {name: _parse_indices(spec[name], name, f"splits file {path}") for name in SPLIT_NAMES}


def check_split_indices(indices: dict[str, Sequence[int]], total_rows: int, source: str) -> None:
    """Checks an explicit split against a file of ``total_rows`` data rows: indices in range, none
    repeated or in two splits, no split empty.

    Raises:
        ValueError: naming ``source``, the split and the offending indices.
    """
    seen: dict[int, str] = {}
    for name in SPLIT_NAMES:
        rows = list(indices[name])
        if not rows:
            raise ValueError(f"{source}: the {name} split is empty")
        bad = [i for i in rows if not 0 <= i < total_rows]
        if bad:
            raise ValueError(f"{source}: {name} has row indices out of range ({', '.join(map(str, bad[:5]))}"
                             f"{', ...' if len(bad) > 5 else ''}); the CSV has {total_rows} data rows, indices "
                             f"0-{total_rows - 1}")  # fmt: skip
        for i in rows:
            if i in seen:
                where = f"twice in {name}" if seen[i] == name else f"in both {seen[i]} and {name}"
                raise ValueError(f"{source}: row index {i} is {where}; each row belongs to one split")
            seen[i] = name


def explicit_split(table: MoleculeCSV, indices: dict[str, Sequence[int]], source: str) -> dict[str, np.ndarray]:
    """Positions into ``table`` of each split given by row indices (0 = the first data row):
    skipped rows drop out (they are reported with the others), rows in no split are not used.

    Returns:
        ``{"train", "val", "test"}`` -> positions into ``table.data`` (each non-empty).

    Raises:
        ValueError: the split is not valid (:func:`check_split_indices`) or a split has no usable
            molecule left (its rows were all skipped).
    """
    check_split_indices(indices, table.total_rows, source)
    position = {row: k for k, row in enumerate(table.rows)}  # CSV row number (1-based) -> position
    out = {}
    for name in SPLIT_NAMES:
        kept = [position[i + 1] for i in indices[name] if i + 1 in position]
        if not kept:
            raise ValueError(f"{source}: no usable molecule in the {name} split (all its {len(indices[name])} "
                             "row(s) were skipped; see the skipped rows)")  # fmt: skip
        out[name] = np.asarray(kept, dtype=np.int64)
    crossing = [g for g in _duplicate_groups(table.smiles) if len({_split_of(out, i) for i in g} - {None}) > 1]
    if crossing:
        shown = "; ".join(table.smiles[g[0]] for g in crossing[:3])
        warnings.warn(f"{len(crossing)} molecule(s) appear in more than one split of {source} (same canonical "
                      f"SMILES): {shown}{'; ...' if len(crossing) > 3 else ''}", stacklevel=2)  # fmt: skip
    return out


def _split_of(parts: dict[str, np.ndarray], position: int) -> str | None:
    return next((name for name, v in parts.items() if position in v), None)


__all__ = [
    "MoleculeCSV",
    "SkippedRow",
    "check_columns",
    "check_fractions",
    "csv_header",
    "load_molecule_csv",
    "murcko_scaffold",
    "split_molecules",
    "SPLIT_NAMES",
    "count_rows",
    "split_from_column",
    "read_splits_file",
    "check_split_indices",
    "explicit_split",
]
