"""Molecules from outside QM9: SMILES embedding, XYZ and SDF readers, element sets, and that a QM9
molecule read back from its coordinates gives the graph the QM9 featurizer gives."""

import numpy as np
import pytest
import torch

from gnnkit.data.molecule import (
    ATOM_FEATURES,
    FeaturizerOptions,
    atom_feature_names,
    atom_features,
    featurize,
    mol_from_smiles,
    mol_from_xyz,
)
from gnnkit.data.molecule_io import (
    has_3d_coordinates,
    mol_record,
    molecule_data,
    parse_xyz_block,
    read_sdf,
    read_smiles_file,
    read_xyz,
    smiles_record,
)
from gnnkit.data.qm9 import parse_molecule, read_raw

BENZENE, PYRIDINE, ZWITTERION = 208, 209, 263


@pytest.fixture(scope="module")
def raw():
    return read_raw(max_rows=300)


def xyz_text(symbols, positions, comment=""):
    return f"{len(symbols)}\n{comment}\n" + "".join(f"{s} {x:.10f} {y:.10f} {z:.10f}\n" for s, (x, y, z) in zip(symbols, positions))


def test_unsupported_element_names_it():
    """The issue's example: featurize of CCCl used to fail with 'tuple.index(x): x not in tuple'."""
    mol, _ = mol_from_smiles("CCCl")
    with pytest.raises(ValueError, match=r"element Cl not supported: the featurizer knows H, C, N, O, F only; found Cl \(atom 2\)"):
        featurize(mol, FeaturizerOptions())
    with pytest.raises(ValueError, match="elements Cl, S not supported"):
        atom_features(mol_from_smiles("ClCS", embed=False)[0])


def test_element_sets_change_only_the_one_hot_block():
    mol, _ = mol_from_smiles("OCCCl", embed=False)
    qm9 = FeaturizerOptions("bonds")
    wide = FeaturizerOptions("bonds", elements=("H", "C", "N", "O", "F", "Cl"))
    assert wide.num_atom_features == 14 and qm9.num_atom_features == len(ATOM_FEATURES) == 13
    assert atom_feature_names(wide.elements) == ("H", "C", "N", "O", "F", "Cl", *ATOM_FEATURES[5:])
    x = featurize(mol, wide)["x"]
    cl = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "Cl"][0]
    assert x[cl, 5] == 1 and x[cl, 6] == 17 and x[:, :6].sum(1).tolist() == [1.0] * mol.GetNumAtoms()
    ethanol, _ = mol_from_smiles("CCO", embed=False)
    np.testing.assert_array_equal(np.delete(atom_features(ethanol, wide.elements), 5, axis=1), atom_features(ethanol))
    assert wide.key() == "bonds_h_H-C-N-O-F-Cl" and qm9.key() == "bonds_h"  # QM9 cache names unchanged
    counts = featurize(mol, wide)["atom_counts"]
    assert counts.tolist() == [[5, 2, 0, 1, 0, 1]]  # whole molecule (C2H5OCl), per element
    with pytest.raises(ValueError, match="including 'H'"):
        FeaturizerOptions(elements=("C", "O"))
    with pytest.raises(TypeError, match="element symbols"):
        FeaturizerOptions(elements="HCNO")


def test_smiles_embedding_is_deterministic_and_3d():
    a, note = mol_from_smiles("CC(=O)Nc1ccccc1")
    b, _ = mol_from_smiles("CC(=O)Nc1ccccc1")
    assert note.startswith("ETKDGv3") and "MMFF94" in note
    assert has_3d_coordinates(a) and a.GetNumAtoms() == 19  # C8H9NO, explicit hydrogens
    np.testing.assert_array_equal(a.GetConformer().GetPositions(), b.GetConformer().GetPositions())
    pos = a.GetConformer().GetPositions()
    d = np.linalg.norm(pos[0] - pos[1])
    assert 1.4 < d < 1.6  # a C-C single bond after MMFF
    with pytest.raises(ValueError, match="does not parse"):
        mol_from_smiles("C1CC")
    with pytest.raises(ValueError, match="does not parse"):
        mol_from_smiles("")
    with pytest.raises(TypeError, match="str"):
        mol_from_smiles(None)
    assert mol_from_smiles("CCO", embed=False)[0].GetNumConformers() == 0


def test_smiles_graph_equals_qm9_graph_up_to_atom_order(raw):
    """Same chemistry from the SMILES as from QM9's coordinates: equal atom features and the same
    multiset of bonds (atom order differs)."""
    for row in (BENZENE, PYRIDINE, ZWITTERION, 30, 120):
        symbols, positions = parse_molecule(raw.elements[row], raw.xyz[row])
        qm9, _, _ = mol_from_xyz(symbols, positions, raw.smiles[row])
        mine, _ = mol_from_smiles(raw.smiles[row])
        a, b = atom_features(qm9), atom_features(mine)
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist())), raw.smiles[row]
        ga, gb = featurize(qm9, FeaturizerOptions("bonds")), featurize(mine, FeaturizerOptions("bonds"))
        key = lambda g, x: sorted((tuple(x[s]), tuple(x[d]), tuple(e)) for s, d, e in zip(*g["edge_index"], g["edge_attr"].tolist()))  # noqa: E731
        assert key(ga, a.tolist()) == key(gb, b.tolist()), raw.smiles[row]


def test_xyz_of_a_qm9_molecule_gives_the_qm9_graph(raw, tmp_path):
    symbols, positions = parse_molecule(raw.elements[BENZENE], raw.xyz[BENZENE])
    expected = featurize(mol_from_xyz(symbols, positions, raw.smiles[BENZENE])[0], FeaturizerOptions())
    path = tmp_path / "benzene.xyz"
    path.write_text(xyz_text(symbols, positions, "benzene"))
    (record,) = read_xyz(path)
    assert record.ok and record.name == "benzene.xyz:1" and record.title == "benzene" and record.geometry == "given"
    got = molecule_data(record, FeaturizerOptions())
    for key in ("x", "edge_index", "z", "atom_counts"):
        np.testing.assert_array_equal(getattr(got, key).numpy(), expected[key], err_msg=key)
    np.testing.assert_allclose(got.edge_attr.numpy(), expected["edge_attr"], atol=1e-6)


def test_xyz_frames_bad_frames_and_formats(raw, tmp_path):
    frames = [parse_molecule(raw.elements[r], raw.xyz[r]) for r in (0, 2)]
    text = "".join(xyz_text(s, p) for s, p in frames)
    # Atomic numbers, lower-case symbols and Mathematica exponents are read; extra columns ignored.
    text += "3\nwater again\n8 0.0 0.0 0.1173*^0 -0.5\nh 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
    text += "2\nbroken\nC 0.0 0.0\nO 0 0 1.2\n"
    path = tmp_path / "mols.xyz"
    path.write_text(text)
    records = read_xyz(path)
    assert [r.ok for r in records] == [True, True, True, False]
    assert records[2].mol.GetNumAtoms() == 3 and [a.GetSymbol() for a in records[2].mol.GetAtoms()] == ["O", "H", "H"]
    assert "expected 'symbol x y z'" in records[3].error and "the rest of the file is not read" in records[3].error
    path.write_text(xyz_text(["Xx"], np.zeros((1, 3))))
    assert "not an element symbol" in read_xyz(path)[0].error
    path.write_text("hello\n")
    assert "expected the atom count" in read_xyz(path)[0].error
    # Two hydrogens far apart: no bonds can be assigned, said per record.
    path.write_text(xyz_text(["H", "H", "H"], np.array([[0, 0, 0], [4.0, 0, 0], [8.0, 0, 0]])))
    assert "no bonds could be assigned" in read_xyz(path)[0].error
    symbols, positions, comment = parse_xyz_block("C 0 0 0\nO 0 0 1.2")
    assert symbols == ["C", "O"] and positions.shape == (2, 3) and comment == ""
    with pytest.raises(ValueError, match="count line says 3"):
        parse_xyz_block("3\n\nC 0 0 0\n")


def test_sdf_3d_2d_missing_hydrogens_and_bad_entry(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol3d, _ = mol_from_smiles("CCO")
    mol3d.SetProp("_Name", "ethanol")
    flat = Chem.MolFromSmiles("c1ccccc1O")
    AllChem.Compute2DCoords(flat)  # a 2D drawing, no hydrogens
    block = Chem.MolToMolBlock(mol3d) + "$$$$\n" + Chem.MolToMolBlock(flat) + "$$$$\n"
    block += "broken\n  nonsense\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n$$$$\n"
    path = tmp_path / "mols.sdf"
    path.write_text(block)
    records = read_sdf(path)
    assert [r.ok for r in records] == [True, True, False] and "could not be read" in records[2].error
    eth, phenol = records[0], records[1]
    assert eth.title == "ethanol" and eth.geometry == "given" and eth.note == ""
    np.testing.assert_allclose(eth.mol.GetConformer().GetPositions(), mol3d.GetConformer().GetPositions(), atol=1e-4)
    assert phenol.geometry == "none" and "hydrogen(s) added" in phenol.note and "2D coordinates only" in phenol.note
    assert phenol.mol.GetNumAtoms() == 13
    with pytest.raises(ValueError, match="2D coordinates only.*needs 3D coordinates"):
        molecule_data(phenol, FeaturizerOptions("complete"))
    graph = molecule_data(phenol, FeaturizerOptions("bonds"))  # the chemical graph needs no geometry
    assert graph.x.shape == (13, 13) and graph.pos is None
    with pytest.raises(FileNotFoundError):
        read_sdf(tmp_path / "none.sdf")


def test_records_and_data():
    bad = smiles_record("C1CC")
    assert not bad.ok and "does not parse" in bad.error and bad.mol is None
    with pytest.raises(ValueError, match="does not parse"):
        molecule_data(bad, FeaturizerOptions())
    good = smiles_record("CCO")
    data = molecule_data(good, FeaturizerOptions("bins"), y=[1.5, 2.0])
    assert data.edge_type.shape == (72,) and data.y.dtype == torch.float64 and data.y.tolist() == [[1.5, 2.0]]
    assert data.atom_counts.tolist() == [[6, 2, 0, 1, 0]] and data.pos.shape == (9, 3)
    assert not mol_record("CCO").ok  # not an RDKit Mol


def test_smiles_file_keeps_triple_bonds(tmp_path, record_property):
    record_property("reliability", {
        "area": "predict.py / SMILES files", "case": "`--smiles-file` with triple bonds (`C#CC1CC2(CN2)C=C1`, "
        "`NCC1(CC2CN12)C#N`), names after a tab or spaces, `#` comment lines",
        "outcome": "each line read whole: the SMILES is the first field, the name the rest (RDKit's "
                   "SmilesMolSupplier convention); only lines starting with '#' are comments (`#` used to cut "
                   "every SMILES, predicting methane for the first)"})  # fmt: skip
    from rdkit import Chem

    path = tmp_path / "c.smi"
    path.write_text("# candidates: SMILES name\nC#CC1CC2(CN2)C=C1 first\n  NCC1(CC2CN12)C#N\tsecond one\n\nC#N\n"
                    "  # indented comment\n")
    records = read_smiles_file(path, embed=False)
    assert [r.name for r in records] == ["first", "second one", "c.smi:5"] and all(r.ok for r in records)
    canon = lambda s: Chem.MolToSmiles(Chem.MolFromSmiles(s))  # noqa: E731
    assert [Chem.MolToSmiles(Chem.RemoveHs(r.mol)) for r in records] == [canon("C#CC1CC2(CN2)C=C1"),
                                                                        canon("NCC1(CC2CN12)C#N"), "C#N"]  # fmt: skip


def _sdf_block(smiles: str) -> str:
    from rdkit import Chem

    mol, _ = mol_from_smiles(smiles)
    mol.SetProp("_Name", smiles)
    return Chem.MolToMolBlock(mol) + "> <id>\n" + smiles + "\n\n"


@pytest.mark.parametrize("fault", ["truncated middle entry", "no final $$$$"])
def test_sdf_every_entry_gets_a_record(tmp_path, fault, record_property):
    record_property("reliability", {
        "area": "predict.py / SDF", "case": f"SDF of 3 entries, {'the 2nd cut after its 8th line' if fault.startswith('trunc') else 'the last without its $$$$ line'}",
        "outcome": "one record per entry: the damaged entry is an error row naming it, the others are read (the "
                   "entry after a truncated one used to disappear)"})  # fmt: skip
    from rdkit import Chem

    blocks = [_sdf_block(s) for s in ("CCO", "c1ccccc1", "CC(=O)O")]
    if fault.startswith("truncated"):
        blocks[1] = "".join(blocks[1].splitlines(keepends=True)[:8])
    text = "$$$$\n".join(blocks) + ("$$$$\n" if fault.startswith("truncated") else "")
    path = tmp_path / "three.sdf"
    path.write_text(text)
    records = read_sdf(path)
    assert [r.name for r in records] == ["three.sdf:1", "three.sdf:2", "three.sdf:3"]
    assert records[0].title == "CCO" and records[2].title == "CC(=O)O" and records[2].ok
    if fault.startswith("truncated"):
        assert not records[1].ok and "entry 2 could not be read: it is truncated" in records[1].error
        assert len([m for m in Chem.SDMolSupplier(str(path), removeHs=False)]) < 3  # the reproduction: RDKit's reader
    else:
        assert all(r.ok for r in records)


def test_formal_charge_is_an_opt_in_atom_feature(record_property):
    record_property("reliability", {
        "area": "featurizer", "case": "`[Fe+2]` and `[Fe+3]`; `[Na+].[Cl-]` and `[Na].[Cl]`",
        "outcome": "with FeaturizerOptions(formal_charge=True) (train_molecules.py --formal-charge, recorded in the "
                   "checkpoint) their graphs differ in a last atom-feature column; by default (QM9) the features and "
                   "cache key are as before"})  # fmt: skip
    elements = ("H", "Na", "Cl", "Fe")
    plain, charged = FeaturizerOptions("bonds", elements=elements), FeaturizerOptions("bonds", elements=elements, formal_charge=True)
    graph = lambda s, o: molecule_data(smiles_record(s, embed=False), o)  # noqa: E731
    assert torch.equal(graph("[Fe+2]", plain).x, graph("[Fe+3]", plain).x)  # the reproduction: the same graph
    a, b = graph("[Fe+2]", charged).x, graph("[Fe+3]", charged).x
    assert a.shape == (1, len(elements) + 9) and a[0, -1] == 2 and b[0, -1] == 3 and torch.equal(a[:, :-1], b[:, :-1])
    assert graph("[Na+].[Cl-]", charged).x[:, -1].tolist() == [1.0, -1.0]
    assert graph("[Na].[Cl]", charged).x[:, -1].tolist() == [0.0, 0.0]
    assert charged.num_atom_features == plain.num_atom_features + 1 == len(elements) + 9
    assert FeaturizerOptions().key() == "complete_h" and FeaturizerOptions(formal_charge=True).key() == "complete_h_charge"
    with pytest.raises(TypeError, match="formal_charge"):
        FeaturizerOptions(formal_charge=1)
