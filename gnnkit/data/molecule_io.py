"""Molecules from outside QM9: SMILES, XYZ and SDF files, as PyG graphs for a trained model.

Every reader returns :class:`MoleculeRecord` objects, one per input molecule, so that one bad
molecule never stops the others: a record either holds an RDKit molecule with explicit
hydrogens, or says in ``error`` why it has none (the SMILES does not parse, an XYZ frame is
malformed, no bonds fit the coordinates, ...).

* **SMILES** (:func:`smiles_record`): parsed by RDKit; embedded in 3D with ETKDG + MMFF
  (:func:`gnnkit.data.molecule.mol_from_smiles`) when the model's edges carry distances.
* **XYZ** (:func:`read_xyz`): one or more frames (atom count, comment line, ``symbol x y z``
  lines; extra columns are ignored, Mathematica's ``*^`` exponent is read). Bonds come from the
  coordinates (``rdDetermineBonds``, as for most QM9 molecules); molecules are taken as neutral.
* **SDF / MOL** (:func:`read_sdf`): bonds and coordinates from the file. Missing hydrogens are
  added by RDKit with computed coordinates (the record's note says so); a record with 2D
  coordinates only cannot feed a model whose edges carry distances.

:func:`molecule_data` featurizes one record's molecule into a PyG ``Data`` with
:func:`gnnkit.data.molecule.featurize` (the same function the QM9 dataset uses), so a QM9
molecule read from its coordinates gives the graph the dataset holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch_geometric.data import Data

from gnnkit.data.molecule import (
    EMBED_SEED,
    FeaturizerOptions,
    MoleculeBuildError,
    element_symbols,
    featurize,
    mol_from_smiles,
    mol_from_xyz,
)

Source = Literal["smiles", "xyz", "sdf", "mol"]
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class MoleculeRecord:
    """One input molecule, or the reason there is none.

    Attributes:
        name: where it came from (``"mols.xyz:3"``: frame 3; ``"CCO"``: a SMILES).
        source: ``"smiles"``, ``"xyz"``, ``"sdf"`` or ``"mol"`` (an RDKit molecule passed in).
        mol: RDKit molecule with explicit hydrogens (``None`` if ``error``).
        note: how the molecule was built (embedding used, hydrogens added, bond route).
        error: why no molecule could be built (``None`` if it was).
        title: the XYZ comment line or the SDF title, if any.
        geometry: ``"given"`` (coordinates from the input), ``"embedded"`` (ETKDG + MMFF from a
            SMILES) or ``"none"`` (no 3D coordinates).
    """

    name: str
    source: Source
    mol: Any = None
    note: str = ""
    error: str | None = None
    title: str = ""
    geometry: Literal["given", "embedded", "none"] = "none"

    @property
    def ok(self) -> bool:
        return self.error is None


def has_3d_coordinates(mol: Any) -> bool:
    """Whether ``mol`` carries a 3D conformer (not a 2D drawing)."""
    if mol is None or mol.GetNumConformers() == 0:
        return False
    conf = mol.GetConformer()
    if conf.Is3D():
        return True
    # Some writers flag 3D files as 2D; trust non-zero z coordinates.
    return bool(np.any(np.abs(conf.GetPositions()[:, 2]) > 1e-4))


def smiles_record(smiles: str, embed: bool = True, seed: int = EMBED_SEED, name: str | None = None,
                  max_atoms: int | None = None) -> MoleculeRecord:  # fmt: skip
    """A record from a SMILES, embedded in 3D (ETKDG + MMFF) if ``embed``.

    Args:
        max_atoms: an error record, without embedding, for a molecule with more atoms than this
            (hydrogens included): embedding grows with the square of the size.
    """
    name = smiles if name is None else name
    try:
        if max_atoms is not None and embed:
            flat, _ = mol_from_smiles(smiles, embed=False)
            if flat.GetNumAtoms() > max_atoms:
                return MoleculeRecord(name, "smiles", error=too_many_atoms(flat.GetNumAtoms(), max_atoms))
        mol, note = mol_from_smiles(smiles, embed=embed, seed=seed)
    except (ValueError, TypeError) as e:  # MoleculeBuildError is a ValueError
        return MoleculeRecord(name, "smiles", error=str(e))
    return MoleculeRecord(name, "smiles", mol, note=note, geometry="embedded" if embed else "none")


# Per-molecule size limits of prediction: a complete graph grows with the square of the atoms
# (a 2,000-atom molecule needed ~5 GB), and one such input must not stop the others.
DEFAULT_MAX_ATOMS = 500
DEFAULT_MAX_EDGES = 250_000


def too_many_atoms(atoms: int, limit: int) -> str:
    """The error of a molecule over the atom limit."""
    return (f"the molecule has {atoms} atoms (hydrogens included), more than the limit of {limit} per molecule "
            "(--max-atoms); its graph would need memory growing with the square of that")  # fmt: skip


def graph_size(mol: Any, options: FeaturizerOptions) -> tuple[int, int]:
    """``(nodes, edges)`` of the graph :func:`molecule_data` would build, from the molecule alone
    (nothing is allocated): all atom pairs for the complete graph, both directions of each bond
    for the chemical graph."""
    atoms = [a.GetAtomicNum() for a in mol.GetAtoms()]
    nodes = len(atoms) if options.hydrogens else sum(z != 1 for z in atoms)
    if options.needs_coordinates:
        return nodes, nodes * (nodes - 1)
    bonds = sum(1 for b in mol.GetBonds() if options.hydrogens or (b.GetBeginAtom().GetAtomicNum() != 1
                                                                    and b.GetEndAtom().GetAtomicNum() != 1))  # fmt: skip
    return nodes, 2 * bonds


def size_error(mol: Any, options: FeaturizerOptions, max_atoms: int | None, max_edges: int | None) -> str | None:
    """Why the graph of ``mol`` is over the limits (``None``: within them, or no limits)."""
    if max_atoms is not None and mol.GetNumAtoms() > max_atoms:
        return too_many_atoms(mol.GetNumAtoms(), max_atoms)
    nodes, edges = graph_size(mol, options)
    if max_edges is not None and edges > max_edges:
        return (f"the molecule's graph has {edges} edges ({nodes} nodes, edges={options.edges!r}), more than the "
                f"limit of {max_edges} per molecule (--max-edges)")  # fmt: skip
    return None


def molecule_domain(mol: Any) -> dict[str, int]:
    """What the applicability-domain check compares with the training molecules: heavy atoms,
    net charge (sum of formal charges) and number of fragments (disconnected parts)."""
    from rdkit import Chem

    return {"heavy_atoms": mol.GetNumHeavyAtoms(), "net_charge": Chem.GetFormalCharge(mol),
            "fragments": len(Chem.GetMolFrags(mol))}  # fmt: skip


def training_domain(smiles: Sequence[str]) -> dict[str, Any]:
    """The applicability domain of a model trained on ``smiles``: the largest heavy-atom count,
    the net charges and the largest number of fragments seen (SMILES RDKit cannot read are
    left out). Plain values, for a predictor card (see :func:`gnnkit.predict.predictor_card`)."""
    from rdkit import Chem

    from gnnkit.data.molecule import _rdkit

    _rdkit()
    heavy, charges, fragments, n = 0, set(), 0, 0
    for s in smiles:
        mol = Chem.MolFromSmiles(s, sanitize=False)  # charges, atoms and connectivity need no sanitizing
        if mol is None:
            continue
        d = molecule_domain(mol)
        heavy, fragments, n = max(heavy, d["heavy_atoms"]), max(fragments, d["fragments"]), n + 1
        charges.add(d["net_charge"])
    if n == 0:
        raise ValueError("no training SMILES could be read to record the applicability domain")
    return {"molecules": n, "max_heavy_atoms": heavy, "net_charges": sorted(charges), "max_fragments": fragments}


def domain_flags(mol: Any, domain: dict[str, Any]) -> list[str]:
    """How ``mol`` lies outside ``domain`` (:func:`training_domain`): one phrase per reason."""
    d, flags = molecule_domain(mol), []
    if d["net_charge"] not in domain["net_charges"]:
        seen = ", ".join(f"{c:+d}" if c else "0" for c in domain["net_charges"])
        flags.append(f"net charge {d['net_charge']:+d} (training molecules: {seen})")
    if d["fragments"] > domain["max_fragments"]:
        flags.append(f"{d['fragments']} fragments (training molecules: at most {domain['max_fragments']})")
    if d["heavy_atoms"] > domain["max_heavy_atoms"]:
        flags.append(f"{d['heavy_atoms']} heavy atoms (training molecules: at most {domain['max_heavy_atoms']})")
    return flags


def _element(token: str) -> str:
    """An XYZ element column: a symbol in any case (``CL``, ``cl``) or an atomic number."""
    table = element_symbols()
    if token.isdigit():
        by_number = {z: s for s, z in table.items()}
        if int(token) not in by_number:
            raise ValueError(f"{token!r} is not an atomic number")
        return by_number[int(token)]
    symbol = token[:1].upper() + token[1:].lower()
    if symbol not in table:
        raise ValueError(f"{token!r} is not an element symbol")
    return symbol


def _coordinate(token: str) -> float:
    text = token.replace("*^", "e")  # Mathematica-style exponents (QM9's original files)
    if not _FLOAT.match(text):
        raise ValueError(f"{token!r} is not a number")
    return float(text)


def parse_xyz_atoms(lines: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Element symbols and ``[N, 3]`` coordinates (Angstrom) from ``symbol x y z`` lines.

    Raises:
        ValueError: a line has fewer than four columns, an unknown element or a non-number
            (the message names the line, counted from 1).
    """
    symbols, coords = [], []
    for k, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) < 4:
            raise ValueError(f"atom line {k} {line.strip()!r}: expected 'symbol x y z'")
        try:
            symbols.append(_element(parts[0]))
            coords.append([_coordinate(v) for v in parts[1:4]])
        except ValueError as e:
            raise ValueError(f"atom line {k} {line.strip()!r}: {e}") from None
    return symbols, np.asarray(coords, dtype=np.float64).reshape(-1, 3)


def parse_xyz_block(text: str) -> tuple[list[str], np.ndarray, str]:
    """One XYZ molecule: ``(symbols, positions, comment)``. The atom-count line and comment line
    are optional (bare ``symbol x y z`` lines are accepted too)."""
    lines = [ln for ln in text.strip().splitlines()]
    if lines and lines[0].strip().isdigit():
        n = int(lines[0].strip())
        comment = lines[1].strip() if len(lines) > 1 else ""
        atoms = [ln for ln in lines[2:] if ln.strip()]
        if len(atoms) < n:
            raise ValueError(f"the count line says {n} atoms but {len(atoms)} atom lines follow")
        atoms = atoms[:n]
    else:
        comment, atoms = "", [ln for ln in lines if ln.strip()]
    if not atoms:
        raise ValueError("no atoms")
    symbols, positions = parse_xyz_atoms(atoms)
    return symbols, positions, comment


def xyz_record(symbols: list[str], positions: np.ndarray, name: str, smiles: str | None = None,
               title: str = "") -> MoleculeRecord:  # fmt: skip
    """A record from coordinates: bonds from ``rdDetermineBonds`` (checked against, and where it
    fails recovered from, ``smiles`` if given; see :func:`gnnkit.data.molecule.mol_from_xyz`)."""
    try:
        mol, route, note = mol_from_xyz(symbols, positions, smiles, elements=None)
    except MoleculeBuildError as e:
        return MoleculeRecord(name, "xyz", error=f"no bonds could be assigned from the coordinates: {e.reason}",
                              title=title)  # fmt: skip
    except ValueError as e:  # bad coordinates or element symbols
        return MoleculeRecord(name, "xyz", error=str(e), title=title)
    note = f"bonds: {route}" + (f" ({note})" if note else "")
    return MoleculeRecord(name, "xyz", mol, note=note, title=title, geometry="given")


def read_xyz(path: str | os.PathLike) -> list[MoleculeRecord]:
    """The molecules of an XYZ file (one or more frames), one record per frame.

    A malformed frame gets an error record; as the frames after it cannot be located reliably,
    reading stops there with that record last.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    records: list[MoleculeRecord] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        name = f"{path.name}:{len(records) + 1}"
        head = lines[i].strip()
        if not head.isdigit() or int(head) < 1:
            records.append(MoleculeRecord(name, "xyz", error=f"line {i + 1}: expected the atom count of a frame, got "
                                          f"{head[:40]!r}; the rest of the file is not read"))  # fmt: skip
            break
        n = int(head)
        block = lines[i + 2 : i + 2 + n]
        title = lines[i + 1].strip() if i + 1 < len(lines) else ""
        try:
            if len(block) < n:
                raise ValueError(f"the frame needs {n} atom lines, the file ends after {len(block)}")
            symbols, positions = parse_xyz_atoms(block)
        except ValueError as e:
            records.append(MoleculeRecord(name, "xyz", error=f"frame at line {i + 1}: {e}; the rest of the file is not read",
                                          title=title))  # fmt: skip
            break
        records.append(xyz_record(symbols, positions, name, title=title))
        i += 2 + n
    if not records:
        records.append(MoleculeRecord(f"{path.name}:1", "xyz", error="the file holds no molecule"))
    return records


def _with_hydrogens(mol: Any) -> tuple[Any, str]:
    """``mol`` with every hydrogen an explicit atom (placed by RDKit if it has coordinates)."""
    from rdkit import Chem

    implicit = sum(a.GetNumImplicitHs() + a.GetNumExplicitHs() for a in mol.GetAtoms())
    if implicit == 0:
        return mol, ""
    withh = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
    where = " with computed coordinates" if mol.GetNumConformers() > 0 else ""
    return withh, f"{implicit} hydrogen(s) added by RDKit{where}"


def mol_record(mol: Any, name: str = "mol", source: Source = "mol") -> MoleculeRecord:
    """A record from an RDKit molecule (hydrogens made explicit; coordinates kept if any)."""
    from rdkit import Chem

    if not isinstance(mol, Chem.Mol):
        return MoleculeRecord(name, source, error=f"expected an RDKit Mol, got {type(mol).__name__}")
    mol, note = _with_hydrogens(mol)
    geometry = "given" if has_3d_coordinates(mol) else "none"
    if mol.GetNumConformers() and geometry == "none":
        note = "; ".join(filter(None, [note, "2D coordinates only"]))
    title = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    return MoleculeRecord(name, source, mol, note=note, title=title, geometry=geometry)


def read_smiles_file(path: str | os.PathLike, embed: bool = True, seed: int = EMBED_SEED,
                     max_atoms: int | None = None) -> list[MoleculeRecord]:  # fmt: skip
    """The molecules of a SMILES file: one per line, ``SMILES`` optionally followed by whitespace
    and a name (RDKit's ``SmilesMolSupplier`` convention). Blank lines and lines whose first
    character is ``#`` are skipped: no SMILES starts with ``#``, while ``#`` inside one is a
    triple bond (``C#N``), so nothing is cut from a line.

    ``max_atoms``: see :func:`smiles_record`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SMILES file {path} not found")
    records = []
    for k, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        smiles, *name = text.split(None, 1)
        records.append(smiles_record(smiles, embed=embed, seed=seed, name=name[0].strip() if name else f"{path.name}:{k}",
                                     max_atoms=max_atoms))  # fmt: skip
    return records


_SDF_END = re.compile(r"^\$\$\$\$[ \t]*(?:\r?\n|\Z)", re.MULTILINE)


def sdf_blocks(text: str) -> list[str]:
    """The records of an SDF file's text: what lies between ``$$$$`` lines (the last one may
    lack its ``$$$$``); blank space after the last ``$$$$`` is no record."""
    blocks = _SDF_END.split(text)
    if blocks and not blocks[-1].strip():
        blocks.pop()
    return blocks


def read_sdf(path: str | os.PathLike) -> list[MoleculeRecord]:
    """The molecules of an SDF (or MOL) file, one record per entry; an entry RDKit cannot read
    gets an error record.

    The file is cut into entries at its ``$$$$`` lines here, and each entry parsed on its own, so
    that a truncated or malformed entry is that entry's error and never swallows the next one,
    and a last entry without ``$$$$`` is read too (RDKit's ``SDMolSupplier`` resynchronises on
    the stream and can lose either).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    from rdkit import Chem

    from gnnkit.data.molecule import _rdkit

    _rdkit()  # silences RDKit's own logging
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SDF file {path} not found")
    records = []
    for k, block in enumerate(sdf_blocks(path.read_text(errors="replace")), 1):
        name = f"{path.name}:{k}"
        if "M  END" not in block:
            records.append(MoleculeRecord(name, "sdf", error=f"entry {k} could not be read: it is truncated (no "
                                          "'M  END' line before its '$$$$' or the end of the file)"))  # fmt: skip
            continue
        try:
            mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        except Exception:  # noqa: BLE001 - RDKit raises on some malformed blocks instead of returning None
            mol = None
        if mol is None:
            records.append(MoleculeRecord(name, "sdf", error=f"entry {k} could not be read by RDKit (malformed "
                                          "block or a valence RDKit refuses)"))  # fmt: skip
            continue
        records.append(mol_record(mol, name, "sdf"))
    if not records:
        records.append(MoleculeRecord(f"{path.name}:1", "sdf", error="the file holds no molecule"))
    return records


def molecule_data(record: MoleculeRecord, options: FeaturizerOptions, y: Sequence[float] | None = None) -> Data:
    """The PyG graph of one record's molecule, as the QM9 dataset builds it.

    Returns:
        ``Data`` with ``x``, ``z``, ``edge_index``, ``edge_attr`` (``edge_type`` for ``"bins"``),
        ``pos`` (edges with distances only), ``atom_counts [1, len(options.elements)]``
        and, if given, ``y [1, T]`` (float64).

    Raises:
        ValueError: the record has an error, its molecule has an element outside
            ``options.elements`` or an unsupported bond, or it has no 3D coordinates although
            the edges carry distances.
    """
    if record.error is not None:
        raise ValueError(record.error)
    mol = record.mol
    if options.needs_coordinates and not has_3d_coordinates(mol):
        what = "2D coordinates only" if mol.GetNumConformers() else "no coordinates"
        raise ValueError(f"the molecule has {what}, and this featurization (edges={options.edges!r}) needs 3D "
                         "coordinates: give an XYZ or 3D SDF file, or a SMILES to embed")  # fmt: skip
    if not options.needs_coordinates and mol.GetNumConformers():
        from rdkit import Chem

        # The chemical graph reads no geometry; leaving pos out keeps inputs with and without
        # coordinates (an XYZ file and a SMILES) batchable together.
        mol = Chem.Mol(mol)
        mol.RemoveAllConformers()
    arrays = featurize(mol, options)
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    data = Data(**tensors)
    if y is not None:
        data.y = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(1, -1))
    return data


__all__ = [
    "DEFAULT_MAX_ATOMS",
    "DEFAULT_MAX_EDGES",
    "MoleculeRecord",
    "domain_flags",
    "graph_size",
    "molecule_domain",
    "size_error",
    "training_domain",
    "has_3d_coordinates",
    "mol_record",
    "molecule_data",
    "parse_xyz_atoms",
    "parse_xyz_block",
    "read_sdf",
    "read_smiles_file",
    "sdf_blocks",
    "read_xyz",
    "smiles_record",
    "xyz_record",
]
