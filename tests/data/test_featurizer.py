"""Featurizer on hand-checked QM9 molecules: exact atom features, edges and edge features."""

import numpy as np
import pytest

from gnnkit.data.molecule import (
    ATOM_FEATURES,
    DISTANCE_BIN_EDGES,
    SOURCE_TEMPLATE,
    SOURCE_XYZ,
    FeaturizerOptions,
    MoleculeBuildError,
    atom_features,
    distance_bins,
    featurize,
    mol_from_xyz,
)
from gnnkit.data.qm9 import parse_molecule, read_raw

# Rows of qm9pack (0-based): methane, water, CF4, benzene, pyridine, a zwitterion
# (3-aminopropanoate, [NH3+]CCC([O-])=O), and one where rdDetermineBonds fails on the
# coordinates (strained cage) so the bond orders come from the SMILES.
METHANE, WATER, CF4, BENZENE, PYRIDINE, ZWITTERION, CAGE = 0, 2, 180, 208, 209, 263, 8255


@pytest.fixture(scope="module")
def raw():
    return read_raw(max_rows=CAGE + 1)


def build(raw, row):
    symbols, positions = parse_molecule(raw.elements[row], raw.xyz[row])
    mol, source, note = mol_from_xyz(symbols, positions, raw.smiles[row])
    return mol, source, note, symbols, positions


#          H  C  N  O  F  Z  acc don aro sp sp2 sp3 nH
H_ROW = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
C_SP3 = lambda nh: [0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 1, nh]  # noqa: E731
C_AROM = [0, 1, 0, 0, 0, 6, 0, 0, 1, 0, 1, 0, 1]


def test_feature_names():
    assert ATOM_FEATURES == ("H", "C", "N", "O", "F", "atomic_number", "acceptor", "donor", "aromatic",
                             "sp", "sp2", "sp3", "num_h")  # fmt: skip


def test_methane(raw):
    mol, source, _, symbols, positions = build(raw, METHANE)
    assert source == SOURCE_XYZ and symbols == ["C", "H", "H", "H", "H"]
    np.testing.assert_array_equal(atom_features(mol), [C_SP3(4)] + [H_ROW] * 4)
    g = featurize(mol, FeaturizerOptions("bonds"))
    assert g["edge_index"].tolist() == [[0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 0, 0, 0]]
    np.testing.assert_array_equal(g["edge_attr"], [[1, 0, 0, 0]] * 8)
    np.testing.assert_array_equal(g["z"], [6, 1, 1, 1, 1])
    np.testing.assert_allclose(g["pos"], positions, atol=1e-6)
    # Without hydrogens methane is a single node with no edges; its features do not change.
    g = featurize(mol, FeaturizerOptions("complete", hydrogens=False))
    np.testing.assert_array_equal(g["x"], [C_SP3(4)])
    assert g["edge_index"].shape == (2, 0) and g["edge_attr"].shape == (0, 5)


def test_methane_complete_and_bins(raw):
    mol, _, _, _, positions = build(raw, METHANE)
    g = featurize(mol, FeaturizerOptions("complete"))
    src, dst = g["edge_index"]
    assert g["edge_index"].shape == (2, 20)
    assert [(s, d) for s, d in zip(src, dst)] == [(i, j) for i in range(5) for j in range(5) if i != j]
    dist = np.linalg.norm(positions[src] - positions[dst], axis=1)
    np.testing.assert_allclose(g["edge_attr"][:, 0], dist, rtol=1e-6)
    bonded = (src == 0) | (dst == 0)  # only C-H pairs are bonded
    np.testing.assert_array_equal(g["edge_attr"][:, 1:], np.where(bonded[:, None], [1, 0, 0, 0], 0))
    # C-H 1.09 A, H...H 1.78 A: both below 2 A, so non-bonded H...H pairs fall in bin 0.
    assert np.all(dist[bonded] < 1.1) and np.all((dist[~bonded] > 1.7) & (dist[~bonded] < 1.8))
    b = featurize(mol, FeaturizerOptions("bins"))
    assert b["edge_attr"].shape == (20, 14)
    expected = np.zeros((20, 14))
    expected[bonded, 10] = 1.0  # bond one-hot (single) in the last 4 columns
    expected[~bonded, 0] = 1.0  # distance bin 0
    np.testing.assert_array_equal(b["edge_attr"], expected)
    np.testing.assert_array_equal(b["edge_type"], np.where(bonded, 0, 4))


def test_distance_bins():
    # [0, 2) -> 0; eight 0.5 A bins over [2, 6) -> 1..8; [6, inf) -> 9.
    np.testing.assert_array_equal(distance_bins(np.array([0.5, 1.99, 2.0, 2.49, 2.5, 5.99, 6.0, 12.0])),
                                  [0, 0, 1, 1, 2, 8, 9, 9])  # fmt: skip
    assert len(DISTANCE_BIN_EDGES) == 9


def test_water(raw):
    mol, source, _, symbols, _ = build(raw, WATER)
    assert source == SOURCE_XYZ and symbols == ["O", "H", "H"]
    # RDKit's BaseFeatures.fdef makes water neither donor nor acceptor.
    np.testing.assert_array_equal(atom_features(mol), [[0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0, 1, 2], H_ROW, H_ROW])
    g = featurize(mol, FeaturizerOptions("bonds"))
    assert g["edge_index"].tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]


def test_fluorinated(raw):
    mol, source, _, symbols, _ = build(raw, CF4)
    assert source == SOURCE_XYZ and symbols == ["F", "C", "F", "F", "F"]
    f_row = [0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 1, 0]  # F of CF4: the fdef excludes F on a CF2+ carbon
    np.testing.assert_array_equal(atom_features(mol), [f_row, C_SP3(0), f_row, f_row, f_row])
    g = featurize(mol, FeaturizerOptions("bonds"))
    assert g["edge_index"].tolist() == [[0, 1, 1, 1, 1, 2, 3, 4], [1, 0, 2, 3, 4, 1, 1, 1]]


def test_benzene(raw):
    mol, source, _, symbols, _ = build(raw, BENZENE)
    assert source == SOURCE_XYZ and symbols == ["C"] * 6 + ["H"] * 6
    np.testing.assert_array_equal(atom_features(mol), [C_AROM] * 6 + [H_ROW] * 6)
    g = featurize(mol, FeaturizerOptions("bonds"))
    ring = {(i, (i + 1) % 6) for i in range(6)} | {((i + 1) % 6, i) for i in range(6)}
    ch = {(i, i + 6) for i in range(6)} | {(i + 6, i) for i in range(6)}
    pairs = list(zip(*g["edge_index"].tolist()))
    assert set(pairs) == ring | ch and len(pairs) == 24 and pairs == sorted(pairs)
    kinds = {p: tuple(a) for p, a in zip(pairs, g["edge_attr"].tolist())}
    assert all(kinds[p] == (0, 0, 0, 1) for p in ring) and all(kinds[p] == (1, 0, 0, 0) for p in ch)
    heavy = featurize(mol, FeaturizerOptions("bonds", hydrogens=False))
    assert heavy["x"].shape == (6, 13) and set(zip(*heavy["edge_index"].tolist())) == ring


def test_pyridine(raw):
    mol, source, _, symbols, _ = build(raw, PYRIDINE)
    assert source == SOURCE_XYZ and symbols == ["C", "C", "C", "N", "C", "C"] + ["H"] * 5
    n_arom = [0, 0, 1, 0, 0, 7, 1, 0, 1, 0, 1, 0, 0]  # aromatic sp2 N, acceptor, no H
    np.testing.assert_array_equal(atom_features(mol), [C_AROM] * 3 + [n_arom] + [C_AROM] * 2 + [H_ROW] * 5)
    g = featurize(mol, FeaturizerOptions("bonds"))
    pairs = list(zip(*g["edge_index"].tolist()))
    ring = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]
    for a, b in ring:
        for p in ((a, b), (b, a)):
            assert g["edge_attr"][pairs.index(p)].tolist() == [0, 0, 0, 1]
    assert sum(1 for s, d in pairs if 3 in (s, d)) == 4  # N: two ring bonds, both directions, no H


def test_zwitterion(raw):
    mol, source, _, symbols, _ = build(raw, ZWITTERION)
    assert raw.smiles[ZWITTERION] == "[NH3+]CCC([O-])=O"
    assert source == SOURCE_XYZ
    assert [a.GetFormalCharge() for a in mol.GetAtoms()] == [1, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0]
    x = atom_features(mol)
    np.testing.assert_array_equal(x[0], [0, 0, 1, 0, 0, 7, 0, 1, 0, 0, 0, 1, 3])  # NH3+: donor, sp3, 3 H
    np.testing.assert_array_equal(x[4], C_SP3(2))
    np.testing.assert_array_equal(x[5], C_SP3(2))
    np.testing.assert_array_equal(x[6], [0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 1, 0, 0])  # carboxylate C
    np.testing.assert_array_equal(x[7], [0, 0, 0, 1, 0, 8, 1, 0, 0, 0, 1, 0, 0])  # =O: acceptor
    np.testing.assert_array_equal(x[8], [0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 1, 0, 0])  # O-: v1, fdef says no
    g = featurize(mol, FeaturizerOptions("bonds"))
    kinds = {p: a.index(1.0) for p, a in zip(zip(*g["edge_index"].tolist()), g["edge_attr"].tolist())}
    assert kinds[(6, 7)] == 1 and kinds[(6, 8)] == 0  # C=O double, C-O- single


def test_donor_acceptor_match_rdkit_feature_factory(raw):
    import os

    from rdkit import RDConfig
    from rdkit.Chem import ChemicalFeatures

    factory = ChemicalFeatures.BuildFeatureFactory(os.path.join(RDConfig.RDDataDir, "BaseFeatures.fdef"))
    for row in (METHANE, WATER, CF4, PYRIDINE, ZWITTERION, CAGE, 273, 1598):
        mol = build(raw, row)[0]
        expected = np.zeros((mol.GetNumAtoms(), 2))
        for feat in factory.GetFeaturesForMol(mol):
            if feat.GetFamily() in ("Acceptor", "Donor"):
                expected[list(feat.GetAtomIds()), ("Acceptor", "Donor").index(feat.GetFamily())] = 1
        np.testing.assert_array_equal(atom_features(mol)[:, 6:8], expected, err_msg=raw.smiles[row])


def test_fallback_recovers_bond_orders_from_smiles(raw):
    from rdkit import Chem

    mol, source, note, _, _ = build(raw, CAGE)
    assert source == SOURCE_TEMPLATE and note.startswith("rdDetermineBonds failed")
    want = Chem.MolToSmiles(Chem.MolFromSmiles(raw.smiles[CAGE]), isomericSmiles=False)
    assert Chem.MolToSmiles(Chem.RemoveAllHs(mol), isomericSmiles=False) == want
    # Positions are kept.
    np.testing.assert_allclose(mol.GetConformer().GetPositions(), parse_molecule(raw.elements[CAGE], raw.xyz[CAGE])[1])


def test_no_assignment_raises():
    # Two hydrogens 3 A apart: no bond, no SMILES fits.
    with pytest.raises(MoleculeBuildError, match="does not match"):
        mol_from_xyz(["H", "H"], np.array([[0.0, 0, 0], [3.0, 0, 0]]), "[H][H]")


def test_bad_input():
    with pytest.raises(ValueError, match="edges"):
        FeaturizerOptions("knn")
    with pytest.raises(TypeError, match="hydrogens"):
        FeaturizerOptions("complete", hydrogens=1)
    with pytest.raises(ValueError, match="positions"):
        mol_from_xyz(["C", "H"], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="symbols"):
        mol_from_xyz(["Cl"], np.zeros((1, 3)))
    assert FeaturizerOptions().key() == "complete_h" and FeaturizerOptions("bins", False).key() == "bins_noh"
    assert [FeaturizerOptions(e).edge_dim for e in ("complete", "bonds", "bins")] == [5, 4, 14]


def test_nan_coordinates_are_named_as_such(raw, record_property):
    record_property("reliability", {
        "area": "QM9 featurizer", "case": "a molecule with a NaN coordinate",
        "outcome": "ValueError 'non-finite (NaN or infinite) coordinates' naming the atom (recorded as that "
                   "molecule's failure reason when building the dataset), not a bonding problem"})  # fmt: skip
    from gnnkit.data.qm9 import _featurize_rows

    symbols, positions = parse_molecule(raw.elements[METHANE], raw.xyz[METHANE])
    positions[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite \(NaN or infinite\) coordinates for 1 atom\(s\): 2 "):
        mol_from_xyz(symbols, positions, raw.smiles[METHANE])
    mol, *_ = build(raw, METHANE)
    mol.GetConformer().SetAtomPosition(3, (float("inf"), 0.0, 0.0))
    with pytest.raises(ValueError, match="non-finite"):
        featurize(mol, FeaturizerOptions())
    xyz = str(positions.tolist())  # qm9pack's column format, with the NaN
    job = (FeaturizerOptions(), [(METHANE, raw.elements[METHANE], xyz, raw.smiles[METHANE])])
    ((row, arrays, source, note),), _ = _featurize_rows(job)
    assert arrays is None and source == "failed" and "non-finite" in note
