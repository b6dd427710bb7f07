"""Molecule featurizer: 3D molecules (element symbols + coordinates) -> graph tensors.

Follows Gilmer et al. 2017 ("Neural Message Passing for Quantum Chemistry"), Table 1 and
section 5:

* **Atom features** (13 columns, :data:`ATOM_FEATURES`): one-hot atom type H/C/N/O/F, atomic
  number, acceptor, donor, aromatic, one-hot hybridisation sp/sp2/sp3 (all zero for H), number of
  hydrogens bonded to the atom. Acceptor/donor are RDKit's ``BaseFeatures.fdef`` families (water
  is neither in that definition); aromaticity and hybridisation are RDKit's after sanitisation.
  Features are always computed on the molecule with explicit hydrogens, so a heavy atom has the
  same feature vector whether or not the hydrogens are kept as nodes. Other element sets
  (``FeaturizerOptions(elements=...)``, e.g. for a user's molecules with S or Cl) change only the
  one-hot block: ``len(elements) + 8`` columns. An atom of an element outside the set is an error
  that names it.
* **Edges** (:data:`EDGE_REPRESENTATIONS`):

  - ``"bonds"``: the chemical graph; ``edge_attr`` = bond one-hot (single, double, triple,
    aromatic), 4 columns.
  - ``"bins"``: the complete graph; non-bonded pairs carry a one-hot of 10 distance bins,
    bonded pairs their bond one-hot: ``edge_attr`` = (10 bin columns, 4 bond columns), 14
    columns, and ``edge_type`` in 0..13 (bond types 0..3, bins 4..13: Gilmer's alphabet of 14
    edge types). Bins (Angstrom): ``[0, 2)``, 8 equal bins over ``[2, 6)``, ``[6, inf)``.

  In every representation the bond one-hot is the last 4 columns of ``edge_attr``.
  - ``"complete"``: the complete graph; ``edge_attr`` = (distance in Angstrom, bond one-hot),
    5 columns, bond one-hot zero for non-bonded pairs. Gilmer's best input and the default.

  Edges are directed pairs ``(src, dst)`` in both directions, sorted by source then target.

Bond perception (:func:`mol_from_xyz`): bonds are determined from the coordinates with RDKit's
``rdDetermineBonds``; where that fails or gives a molecule that disagrees with the reference
SMILES, the connectivity from the coordinates gets its bond orders and formal charges from the
SMILES (graph isomorphism with all bonds single). Each molecule reports which route it took.

Molecules without given coordinates (:func:`mol_from_smiles`) are embedded with RDKit's ETKDG
(v3) and relaxed with the MMFF94 force field (UFF where MMFF has no parameters), from a fixed
seed so that the same SMILES always gives the same geometry. Those geometries are not the
B3LYP/6-31G(2df,p) geometries QM9's properties were computed on. The chemical graph
(``edges="bonds"``) needs no coordinates at all.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

EdgeRepresentation = Literal["complete", "bonds", "bins"]
EDGE_REPRESENTATIONS: tuple[str, ...] = ("complete", "bonds", "bins")

ATOM_TYPES: tuple[str, ...] = ("H", "C", "N", "O", "F")
ATOM_FEATURES: tuple[str, ...] = (
    "H", "C", "N", "O", "F", "atomic_number", "acceptor", "donor", "aromatic",
    "sp", "sp2", "sp3", "num_h",
)  # fmt: skip
BOND_TYPES: tuple[str, ...] = ("single", "double", "triple", "aromatic")
NUM_DISTANCE_BINS = 10
# Bin edges in Angstrom (Gilmer sec. 5: [0, 2], eight bins over [2, 6], [6, inf)).
DISTANCE_BIN_EDGES: np.ndarray = np.linspace(2.0, 6.0, 9)

# Where each molecule's bonds came from (Molecule.source).
SOURCE_XYZ = "xyz"  # rdDetermineBonds on the coordinates, agrees with the SMILES
SOURCE_TEMPLATE = "smiles_template"  # coordinate connectivity + bond orders from the SMILES
SOURCE_XYZ_UNVERIFIED = "xyz_unverified"  # rdDetermineBonds; the SMILES does not fit the coordinates


class MoleculeBuildError(ValueError):
    """Raised when no bond assignment could be found for a molecule; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FeaturizerOptions:
    """Featurizer choices; :meth:`key` names the processed cache built with them.

    Args:
        edges: ``"complete"`` (distance + bond one-hot, Gilmer's best), ``"bonds"`` or ``"bins"``.
        hydrogens: keep hydrogens as nodes (explicit hydrogens, Gilmer's best).
        elements: the element one-hot's elements.
        formal_charge: one more atom feature, last: the atom's formal charge (off by default,
            and for QM9, whose molecules are neutral: Gilmer's features have none, so ``[Fe+2]``
            and ``[Fe+3]`` would be the same graph; turn it on for charged training data).
    """

    edges: EdgeRepresentation = "complete"
    hydrogens: bool = True
    elements: tuple[str, ...] = ATOM_TYPES
    formal_charge: bool = False

    def __post_init__(self) -> None:
        if self.edges not in EDGE_REPRESENTATIONS:
            raise ValueError(f"edges must be one of {EDGE_REPRESENTATIONS}, got {self.edges!r}")
        if not isinstance(self.hydrogens, bool):
            raise TypeError(f"hydrogens must be a bool, got {type(self.hydrogens).__name__}")
        if not isinstance(self.formal_charge, bool):
            raise TypeError(f"formal_charge must be a bool, got {type(self.formal_charge).__name__}")
        if isinstance(self.elements, str) or not all(isinstance(e, str) and e for e in self.elements):
            raise TypeError(f"elements must be a sequence of element symbols, got {self.elements!r}")
        object.__setattr__(self, "elements", tuple(self.elements))  # lists from a checkpoint
        if not self.elements or len(set(self.elements)) != len(self.elements) or "H" not in self.elements:
            raise ValueError(f"elements must be distinct element symbols including 'H', got {self.elements!r}")

    @property
    def needs_coordinates(self) -> bool:
        """Whether the edges carry distances (``"complete"``, ``"bins"``), so that a molecule needs 3D
        coordinates; the chemical graph (``"bonds"``) does not."""
        return self.edges != "bonds"

    @property
    def num_atom_features(self) -> int:
        return len(self.elements) + len(ATOM_FEATURES) - len(ATOM_TYPES) + int(self.formal_charge)

    @property
    def edge_dim(self) -> int:
        return {"complete": 1 + len(BOND_TYPES), "bonds": len(BOND_TYPES),
                "bins": len(BOND_TYPES) + NUM_DISTANCE_BINS}[self.edges]  # fmt: skip

    def key(self) -> str:
        base = f"{self.edges}_{'h' if self.hydrogens else 'noh'}"
        base = base if self.elements == ATOM_TYPES else f"{base}_{'-'.join(self.elements)}"
        return f"{base}_charge" if self.formal_charge else base


def _rdkit():
    # rdkit is imported lazily so that importing gnnkit.data stays cheap.
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem


@functools.lru_cache(maxsize=1)
def element_symbols() -> dict[str, int]:
    """Symbol -> atomic number of every element (1..118), from RDKit's periodic table."""
    table = _rdkit().GetPeriodicTable()
    return {table.GetElementSymbol(z): z for z in range(1, 119)}


_DONOR_ACCEPTOR = None


def _donor_acceptor_patterns():
    """Compiled SMARTS of the Donor and Acceptor families of RDKit's ``BaseFeatures.fdef``.

    Matching these two directly gives the same atoms as ``ChemicalFeatures`` but at a fraction
    of the cost (the factory also matches six families we do not use)."""
    global _DONOR_ACCEPTOR
    if _DONOR_ACCEPTOR is None:
        Chem = _rdkit()
        from rdkit import RDConfig
        from rdkit.Chem import ChemicalFeatures

        factory = ChemicalFeatures.BuildFeatureFactory(os.path.join(RDConfig.RDDataDir, "BaseFeatures.fdef"))
        defs = factory.GetFeatureDefs()
        _DONOR_ACCEPTOR = tuple(
            tuple(Chem.MolFromSmarts(v) for k, v in sorted(defs.items()) if k.split(".")[0] == family)
            for family in ("Acceptor", "Donor")
        )
    return _DONOR_ACCEPTOR


def _bare_mol(symbols: list[str], positions: np.ndarray):
    """An RDKit molecule with atoms and a 3D conformer and no bonds."""
    Chem = _rdkit()
    from rdkit.Geometry import Point3D

    rw = Chem.RWMol()
    for s in symbols:
        rw.AddAtom(Chem.Atom(s))
    conf = Chem.Conformer(len(symbols))
    conf.Set3D(True)
    for i, (x, y, z) in enumerate(positions.tolist()):
        conf.SetAtomPosition(i, Point3D(x, y, z))
    rw.AddConformer(conf, assignId=True)
    return rw


@contextlib.contextmanager
def _quiet_stderr(active: bool = True) -> Iterator[None]:
    """Silences C-level stderr (the Hueckel code prints distance warnings there)."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def canonical_smiles(mol) -> str:
    """Canonical SMILES without hydrogens and stereo, for comparing bond assignments."""
    Chem = _rdkit()
    return Chem.MolToSmiles(Chem.RemoveAllHs(mol, sanitize=False), isomericSmiles=False)


def _orders_from_smiles(connectivity, smiles: str):
    """Copies bond orders and formal charges from ``smiles`` onto ``connectivity`` (explicit H,
    single bonds only) through a graph isomorphism; returns ``None`` if there is none."""
    Chem = _rdkit()
    ref = Chem.MolFromSmiles(smiles)
    if ref is None:
        return None
    ref = Chem.AddHs(ref)
    Chem.Kekulize(ref, clearAromaticFlags=True)
    if ref.GetNumAtoms() != connectivity.GetNumAtoms() or ref.GetNumBonds() != connectivity.GetNumBonds():
        return None
    plain = Chem.RWMol(ref)
    for b in plain.GetBonds():
        b.SetBondType(Chem.BondType.SINGLE)
    for a in plain.GetAtoms():
        a.SetFormalCharge(0)
    target = Chem.RWMol(connectivity)
    for a in target.GetAtoms():
        a.SetFormalCharge(0)
        a.SetNoImplicit(True)
    match = target.GetSubstructMatch(plain)
    if not match:
        return None
    for b in ref.GetBonds():
        target.GetBondBetweenAtoms(match[b.GetBeginAtomIdx()], match[b.GetEndAtomIdx()]).SetBondType(b.GetBondType())
    for a in ref.GetAtoms():
        target.GetAtomWithIdx(match[a.GetIdx()]).SetFormalCharge(a.GetFormalCharge())
    try:
        Chem.SanitizeMol(target)
    except Exception:  # noqa: BLE001 - any RDKit sanitisation failure means "no assignment"
        return None
    return target.GetMol()


def mol_from_xyz(symbols: list[str], positions: np.ndarray, smiles: str | None = None,
                 elements: Sequence[str] | None = ATOM_TYPES, charge: int = 0):  # fmt: skip
    """Builds an RDKit molecule with explicit hydrogens and the given coordinates.

    Args:
        symbols: element symbols, one per atom.
        positions: coordinates in Angstrom.
        smiles: reference SMILES used to check the perceived bonds and to recover bond orders
            where ``rdDetermineBonds`` fails or disagrees; ``None`` trusts the coordinates.
        elements: the elements allowed (QM9's by default); ``None`` allows any element RDKit
            knows (the featurizer checks its own set later).
        charge: total charge of the molecule, for ``rdDetermineBonds``.

    Returns:
        ``(mol, source, note)``: the sanitised molecule, how its bonds were found
        (:data:`SOURCE_XYZ`, :data:`SOURCE_TEMPLATE` or :data:`SOURCE_XYZ_UNVERIFIED`) and, for
        the fallbacks, why (e.g. the ``rdDetermineBonds`` error).

    Raises:
        ValueError: ``positions`` has the wrong shape or non-finite entries, or an element is
            not in ``elements`` (or not an element at all).
        MoleculeBuildError: neither route produced a molecule.

    Shapes:
        positions ``[N, 3]``.
    """
    Chem = _rdkit()
    from rdkit.Chem import rdDetermineBonds

    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape != (len(symbols), 3):
        raise ValueError(f"positions must have shape [{len(symbols)}, 3], got {tuple(positions.shape)}")
    _check_finite(positions)
    known = element_symbols()
    for i, s in enumerate(symbols):
        if s not in known:
            raise ValueError(f"symbols: {s!r} (atom {i}) is not an element symbol")
        if elements is not None and s not in elements:
            raise ValueError(f"symbols: element {s!r} (atom {i}) is not one of {tuple(elements)}")

    mol = _bare_mol(symbols, positions)
    determined, note = None, ""
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=charge)
        determined = mol.GetMol()
    except Exception as e:  # noqa: BLE001 - RDKit raises several types; all mean "no assignment"
        note = f"rdDetermineBonds failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    if smiles is None:
        if determined is None:
            raise MoleculeBuildError(note)
        return determined, SOURCE_XYZ_UNVERIFIED, ""
    ref = Chem.MolFromSmiles(smiles)
    if ref is None:
        if determined is None:
            raise MoleculeBuildError(f"{note}; reference SMILES does not parse")
        return determined, SOURCE_XYZ_UNVERIFIED, "reference SMILES does not parse"
    if determined is not None:
        if canonical_smiles(determined) == Chem.MolToSmiles(ref, isomericSmiles=False):
            return determined, SOURCE_XYZ, ""
        note = "rdDetermineBonds disagrees with the SMILES"

    # Connect-the-dots over-bonds some strained cages (an extra close contact); extended Hueckel
    # connectivity gets those right, so it is the second try.
    for hueckel in (False, True):
        connectivity = _bare_mol(symbols, positions)
        try:
            with _quiet_stderr(hueckel):
                rdDetermineBonds.DetermineConnectivity(connectivity, useHueckel=hueckel)
        except Exception:  # noqa: BLE001
            continue
        recovered = _orders_from_smiles(connectivity, smiles)
        if recovered is not None:
            return recovered, SOURCE_TEMPLATE, note + ("; Hueckel connectivity" if hueckel else "")
    # Last try: the coordinates show one close contact more than the SMILES has bonds (strained
    # cages); drop one of the most stretched candidate bonds.
    for i, j, dist in _stretched_bonds(connectivity, positions)[:5]:
        trimmed = Chem.RWMol(connectivity)
        trimmed.RemoveBond(i, j)
        recovered = _orders_from_smiles(trimmed, smiles)
        if recovered is not None:
            return recovered, SOURCE_TEMPLATE, f"{note}; dropped close contact {i}-{j} ({dist:.2f} A)"
    if determined is not None:
        return determined, SOURCE_XYZ_UNVERIFIED, f"{note}; coordinate connectivity does not match the SMILES"
    raise MoleculeBuildError(f"{note}; coordinate connectivity does not match the SMILES")


def _check_finite(positions: np.ndarray) -> None:
    """NaN or infinite coordinates are bad input, not a bonding problem: say so, naming the atoms
    (bond perception on them would fail, or worse succeed, with a misleading reason)."""
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        shown = ", ".join(f"{i} {positions[i].tolist()}" for i in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise ValueError(f"positions: non-finite (NaN or infinite) coordinates for {bad.size} atom(s): {shown}")


def _stretched_bonds(mol, positions: np.ndarray) -> list[tuple[int, int, float]]:
    """Bonds sorted by length relative to the sum of covalent radii, longest first."""
    Chem = _rdkit()
    table = Chem.GetPeriodicTable()
    out = []
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        dist = float(np.linalg.norm(positions[i] - positions[j]))
        ref = table.GetRcovalent(b.GetBeginAtom().GetAtomicNum()) + table.GetRcovalent(b.GetEndAtom().GetAtomicNum())
        out.append((dist / ref, i, j, dist))
    return [(i, j, dist) for _, i, j, dist in sorted(out, reverse=True)]


def atom_feature_names(elements: Sequence[str] = ATOM_TYPES) -> tuple[str, ...]:
    """Column names of :func:`atom_features` for the element set ``elements``."""
    return (*elements, *ATOM_FEATURES[len(ATOM_TYPES):])


def check_elements(mol, elements: Sequence[str] = ATOM_TYPES) -> None:
    """Raises a ValueError naming the atoms of ``mol`` whose element is not in ``elements``."""
    bad = [(a.GetIdx(), a.GetSymbol()) for a in mol.GetAtoms() if a.GetSymbol() not in elements]
    if bad:
        found = sorted({sym for _, sym in bad})
        atoms = ", ".join(f"{sym} (atom {i})" for i, sym in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ValueError(f"element{'s' if len(found) > 1 else ''} {', '.join(found)} not supported: the featurizer "
                         f"knows {', '.join(elements)} only; found {atoms}")  # fmt: skip


def atom_features(mol, elements: Sequence[str] = ATOM_TYPES) -> np.ndarray:
    """Gilmer Table 1 atom features of every atom (columns :func:`atom_feature_names`; for
    QM9's elements, :data:`ATOM_FEATURES`).

    Raises:
        ValueError: an atom's element is not in ``elements`` (the message names it).

    Shapes:
        -> ``[N, len(elements) + 8]`` float32 (``[N, 13]`` for QM9's elements).
    """
    Chem = _rdkit()
    elements = tuple(elements)
    check_elements(mol, elements)
    k = len(elements)
    hyb = {Chem.HybridizationType.SP: k + 4, Chem.HybridizationType.SP2: k + 5, Chem.HybridizationType.SP3: k + 6}
    out = np.zeros((mol.GetNumAtoms(), k + 8), dtype=np.float32)
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        out[i, elements.index(atom.GetSymbol())] = 1.0
        out[i, k] = atom.GetAtomicNum()
        out[i, k + 3] = float(atom.GetIsAromatic())
        col = hyb.get(atom.GetHybridization())
        if col is not None:
            out[i, col] = 1.0
        out[i, k + 7] = atom.GetTotalNumHs(includeNeighbors=True)
    for col, patterns in zip((k + 1, k + 2), _donor_acceptor_patterns()):
        for pattern in patterns:
            for match in mol.GetSubstructMatches(pattern, uniquify=False):
                out[list(match), col] = 1.0
    return out


def bond_matrix(mol) -> np.ndarray:
    """Bond type per atom pair: -1 if not bonded, else the index into :data:`BOND_TYPES`.

    Shapes:
        -> ``[N, N]`` int8.
    """
    Chem = _rdkit()
    types = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2, Chem.BondType.AROMATIC: 3}
    n = mol.GetNumAtoms()
    out = np.full((n, n), -1, dtype=np.int8)
    for b in mol.GetBonds():
        if b.GetBondType() not in types:
            raise ValueError(f"unsupported bond type {b.GetBondType()} between atoms {b.GetBeginAtomIdx()} and {b.GetEndAtomIdx()}")
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        out[i, j] = out[j, i] = types[b.GetBondType()]
    return out


def distance_bins(distance: np.ndarray) -> np.ndarray:
    """Index of Gilmer's distance bin (0..9) for each distance in Angstrom."""
    return np.searchsorted(DISTANCE_BIN_EDGES, distance, side="right")


def graph_arrays(
    features: np.ndarray, positions: np.ndarray | None, bonds: np.ndarray, options: FeaturizerOptions,
    atomic_numbers: np.ndarray,
) -> dict[str, np.ndarray]:
    """Node and edge arrays of one molecule for the chosen edge representation.

    Args:
        features: atom features from :func:`atom_features`.
        positions: coordinates in Angstrom; ``None`` (no ``pos`` in the result) only for the
            chemical graph (``edges="bonds"``), which reads no distances.
        bonds: bond matrix from :func:`bond_matrix`.
        options: edge representation and whether hydrogens stay as nodes.
        atomic_numbers: atomic number of each atom.

    Returns:
        dict with ``x [n, F]``, ``pos [n, 3]`` (when positions are given), ``z [n]``,
        ``edge_index [2, E]`` (int64) and ``edge_attr [E, options.edge_dim]`` (float32), and for
        ``"bins"`` ``edge_type [E]`` (int64), where ``n`` counts the kept atoms.

    Raises:
        ValueError: ``positions`` holds NaN or infinite coordinates, or is ``None`` for edges
            that carry distances.

    Shapes:
        features ``[N, 13]``, positions ``[N, 3]``, bonds ``[N, N]``, atomic_numbers ``[N]``.
    """
    if positions is None:
        if options.needs_coordinates:
            raise ValueError(f"edges={options.edges!r} needs 3D coordinates (distances); the molecule has none")
    else:
        _check_finite(np.asarray(positions, dtype=np.float64))
    keep = np.arange(len(atomic_numbers)) if options.hydrogens else np.flatnonzero(atomic_numbers != 1)
    x, z = features[keep], atomic_numbers[keep].astype(np.int64)
    bonds = bonds[np.ix_(keep, keep)]
    n = len(keep)
    if options.edges == "bonds":
        src, dst = np.nonzero(bonds >= 0)
    else:
        src, dst = np.nonzero(~np.eye(n, dtype=bool))
    btype = bonds[src, dst]
    bonded = btype >= 0
    bond_onehot = np.zeros((len(src), len(BOND_TYPES)), dtype=np.float32)
    bond_onehot[np.flatnonzero(bonded), btype[bonded]] = 1.0
    if options.edges == "bonds":
        edge_attr = bond_onehot
    else:
        dist = np.linalg.norm(positions[keep][src] - positions[keep][dst], axis=1)
        if options.edges == "complete":
            edge_attr = np.concatenate([dist[:, None].astype(np.float32), bond_onehot], axis=1)
        else:
            bins = np.zeros((len(src), NUM_DISTANCE_BINS), dtype=np.float32)
            far = np.flatnonzero(~bonded)
            bin_of = distance_bins(dist[far])
            bins[far, bin_of] = 1.0
            edge_attr = np.concatenate([bins, bond_onehot], axis=1)
            edge_type = btype.astype(np.int64)
            edge_type[far] = len(BOND_TYPES) + bin_of
    edge_index = np.stack([src, dst]).astype(np.int64)
    out = {"x": x, "z": z, "edge_index": edge_index, "edge_attr": edge_attr}
    if positions is not None:
        out["pos"] = positions[keep].astype(np.float32)
    if options.edges == "bins":
        out["edge_type"] = edge_type
    return out


def featurize(mol, options: FeaturizerOptions) -> dict[str, np.ndarray]:
    """Featurizes an RDKit molecule with explicit hydrogens and (for edges with distances) a 3D
    conformer.

    Returns:
        the arrays of :func:`graph_arrays`, plus ``atom_counts [1, len(options.elements)]``: the
        number of atoms of each element in the whole molecule (hydrogens included even when they
        are not nodes), for the per-element reference of extensive targets.

    Raises:
        ValueError: an element outside ``options.elements``, a bond type outside
            :data:`BOND_TYPES`, or no conformer although the edges need distances.
    """
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    features = atom_features(mol, options.elements)  # checks the elements first
    if options.formal_charge:
        charges = np.array([[a.GetFormalCharge()] for a in mol.GetAtoms()], dtype=np.float32).reshape(-1, 1)
        features = np.concatenate([features, charges], axis=1)
    if mol.GetNumConformers() == 0:
        if options.needs_coordinates:
            raise ValueError(f"mol has no 3D coordinates (conformer), which edges={options.edges!r} needs")
        positions = None
    else:
        positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    out = graph_arrays(features, positions, bond_matrix(mol), options, z)
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    out["atom_counts"] = np.array([[symbols.count(e) for e in options.elements]], dtype=np.float32)
    return out


# Fixed so that a SMILES always embeds to the same geometry (and predicts the same value).
EMBED_SEED = 0x5EED


def mol_from_smiles(smiles: str, embed: bool = True, seed: int = EMBED_SEED) -> tuple[object, str]:
    """An RDKit molecule with explicit hydrogens from a SMILES, embedded in 3D if asked.

    Embedding: ETKDG v3 from ``seed`` (random starting coordinates if that fails), then MMFF94
    relaxation (UFF where MMFF has no parameters). The geometry is a force-field one, not a DFT
    (B3LYP) geometry such as QM9's.

    Args:
        smiles: the molecule.
        embed: compute 3D coordinates (else the molecule has no conformer: enough for the
            chemical graph, ``edges="bonds"``).
        seed: ETKDG's random seed.

    Returns:
        ``(mol, note)``: the molecule and how its geometry was made (empty without embedding).

    Raises:
        TypeError: ``smiles`` is not a string.
        ValueError: the SMILES does not parse (or is empty).
        MoleculeBuildError: no 3D embedding was found.
    """
    Chem = _rdkit()
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a str, got {type(smiles).__name__}")
    mol = Chem.MolFromSmiles(smiles) if smiles.strip() else None
    if mol is None:
        raise ValueError(f"SMILES {smiles!r} does not parse")
    mol = Chem.AddHs(mol)
    if not embed:
        return mol, ""
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    how = "ETKDGv3"
    if rdDistGeom.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        how = "ETKDGv3 (random start)"
        if rdDistGeom.EmbedMolecule(mol, params) != 0:
            raise MoleculeBuildError(f"SMILES {smiles!r}: ETKDG found no 3D embedding")
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        status, field = rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=2000), "MMFF94"
    elif rdForceFieldHelpers.UFFHasAllMoleculeParams(mol):
        status, field = rdForceFieldHelpers.UFFOptimizeMolecule(mol, maxIters=2000), "UFF (no MMFF parameters)"
    else:
        status, field = 0, "no force field parameters: unrelaxed"
    note = f"{how} + {field}" + (" (not converged)" if status == 1 else "")
    return mol, note


__all__ = [
    "ATOM_FEATURES",
    "ATOM_TYPES",
    "BOND_TYPES",
    "DISTANCE_BIN_EDGES",
    "EDGE_REPRESENTATIONS",
    "FeaturizerOptions",
    "MoleculeBuildError",
    "SOURCE_TEMPLATE",
    "SOURCE_XYZ",
    "SOURCE_XYZ_UNVERIFIED",
    "EMBED_SEED",
    "atom_feature_names",
    "atom_features",
    "check_elements",
    "element_symbols",
    "mol_from_smiles",
    "bond_matrix",
    "canonical_smiles",
    "distance_bins",
    "featurize",
    "graph_arrays",
    "mol_from_xyz",
]
