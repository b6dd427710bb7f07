"""A user's CSV of molecules: bad rows reported by number, elements, coordinates, splits."""

import csv

import numpy as np
import pytest

from gnnkit.data.molecule_csv import check_fractions, csv_header, load_molecule_csv, murcko_scaffold, split_molecules
from gnnkit.data.qm9 import parse_molecule, read_raw


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_bad_rows_are_reported_by_row_number(tmp_path):
    rows = [
        ["CCO", "1.5", "x"],  # 1
        ["C1CC", "2.0", "x"],  # 2: unparsable SMILES
        ["CCN", "", "x"],  # 3: missing target
        ["CCC", "abc", "x"],  # 4: not a number
        ["", "1.0", "x"],  # 5: empty SMILES
        ["CC(C)O", "inf", "x"],  # 6: not finite
        ["CCCl", "3.0", "x"],  # 7: Cl is fine: elements come from the data
        ["c1ccccc1", "4.0"],  # 8: a cell short
        ["OCC=O", "NaN", "x"],  # 9: NaN counts as missing
        ["C[N+](C)(C)C", "5.0", "x"],  # 10: charged: fine
    ]
    table = load_molecule_csv(write_csv(tmp_path / "m.csv", ["smiles", "y", "other"], rows), "smiles", ["y"])
    assert table.total_rows == 10 and table.rows == [1, 7, 10] and len(table) == 3
    reasons = {s.row: s.reason for s in table.skipped}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 8, 9]
    assert "does not parse" in reasons[2] and reasons[3] == "missing target 'y'" and "'abc' is not a number" in reasons[4]
    assert reasons[5] == "empty SMILES" and "not finite" in reasons[6] and "2 cells" in reasons[8]
    assert reasons[9] == "missing target 'y'"
    assert table.options.elements == ("H", "C", "N", "O", "Cl") and table.options.edges == "bonds"
    assert table.geometry == "none" and table.data[1].y.tolist() == [[3.0]] and table.data[1].row.tolist() == [7]
    assert "skipped 7 of 10 rows" in table.skipped_summary() and "row 2: SMILES 'C1CC' does not parse" in table.skipped_summary()
    assert table.data[0].x.shape[1] == 5 + 8 and table.data[0].pos is None


def test_fixed_elements_skip_the_others(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["smiles", "y"], [["CCO", 1], ["CCCl", 2], ["CCS", 3]])
    table = load_molecule_csv(path, "smiles", ["y"], elements=("H", "C", "N", "O", "F"))
    assert table.rows == [1] and [s.row for s in table.skipped] == [2, 3]
    assert "element Cl not supported" in table.skipped[0].reason


def test_coordinates_inline_and_from_files_and_embedded(tmp_path):
    raw = read_raw(max_rows=12)
    rows = []
    for r in range(3, 9):
        symbols, positions = parse_molecule(raw.elements[r], raw.xyz[r])
        block = f"{len(symbols)}\n\n" + "\n".join(f"{s} {x} {y} {z}" for s, (x, y, z) in zip(symbols, positions))
        if r == 3:  # a file beside the CSV
            (tmp_path / "m3.xyz").write_text(block)
            block = "m3.xyz"
        rows.append([raw.smiles[r], raw.targets[r, 4], block])
    rows.append(["CCO", 1.0, ""])  # no coordinates
    rows.append(["CCO", 1.0, "missing.xyz"])
    path = write_csv(tmp_path / "m.csv", ["smiles", "gap", "xyz"], rows)
    table = load_molecule_csv(path, "smiles", ["gap"], xyz_column="xyz", edges="complete")
    assert table.rows == [1, 2, 3, 4, 5, 6] and table.geometry == "given"
    assert [s.row for s in table.skipped] == [7, 8] and "empty cell" in table.skipped[0].reason
    assert "missing.xyz not found" in table.skipped[1].reason
    symbols, positions = parse_molecule(raw.elements[3], raw.xyz[3])
    np.testing.assert_allclose(table.data[0].pos.numpy(), positions, atol=1e-5)
    assert table.data[0].edge_attr.shape[1] == 5 and table.data[0].y.tolist() == [[raw.targets[3, 4]]]
    embedded = load_molecule_csv(path, "smiles", ["gap"], embed=True, edges="complete")
    assert embedded.geometry == "embedded" and len(embedded) == 8 and embedded.data[0].pos.shape[1] == 3


def test_argument_errors(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["smiles", "y"], [["CCO", 1]])
    with pytest.raises(ValueError, match=r"no column\(s\) 'z'; the columns are smiles, y"):
        load_molecule_csv(path, "smiles", ["z"])
    with pytest.raises(ValueError, match="carry distances"):
        load_molecule_csv(path, "smiles", ["y"], edges="complete")
    with pytest.raises(ValueError, match="exclude each other"):
        load_molecule_csv(path, "smiles", ["y"], xyz_column="smiles", embed=True)
    with pytest.raises(ValueError, match="at least one target"):
        load_molecule_csv(path, "smiles", [])
    with pytest.raises(FileNotFoundError):
        load_molecule_csv(tmp_path / "none.csv", "smiles", ["y"])
    bad = write_csv(tmp_path / "bad.csv", ["smiles", "y"], [["C1CC", 1], ["CCO", ""]])
    with pytest.raises(ValueError, match="(?s)no usable molecule.*row 1: SMILES 'C1CC' does not parse"):
        load_molecule_csv(bad, "smiles", ["y"])


SMILES = ["c1ccccc1O", "c1ccccc1N", "c1ccccc1C", "C1CCCCC1O", "C1CCCCC1N", "CCO", "CCN", "CCC", "CCCC", "CC=O",
          "c1ccncc1", "c1ccncc1C", "C1CC1", "C1CC1O", "O=C1CCCC1", "CC(C)O", "OCCO", "NCCN", "C#N", "CC#N"]  # fmt: skip


def test_random_split_is_seeded_and_covers_everything():
    a, b = split_molecules(SMILES, "random", (0.6, 0.2, 0.2), seed=1), split_molecules(SMILES, "random", (0.6, 0.2, 0.2), seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [len(a[k]) for k in ("train", "val", "test")] == [12, 4, 4]
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(len(SMILES)))
    c = split_molecules(SMILES, "random", (0.6, 0.2, 0.2), seed=2)
    assert not np.array_equal(a["train"], c["train"])


def test_scaffold_split_keeps_scaffold_groups_together():
    parts = split_molecules(SMILES, "scaffold", (0.6, 0.2, 0.2))
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(SMILES)))
    where = {}
    for name, idx in parts.items():
        for i in idx:
            where.setdefault(murcko_scaffold(SMILES[i]), set()).add(name)
    assert all(len(v) == 1 for v in where.values())  # no scaffold in two splits
    assert where[""] == {"train"}  # the largest group (acyclic) trains
    assert all(len(parts[k]) > 0 for k in parts)
    assert murcko_scaffold("c1ccccc1CCO") == "c1ccccc1"


def test_split_errors():
    with pytest.raises(ValueError, match="summing to 1"):
        check_fractions((0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="three positive numbers"):
        check_fractions((0.9, 0.1))
    with pytest.raises(ValueError, match="at least 3 molecules"):
        split_molecules(["C", "CC"])
    with pytest.raises(ValueError, match="scaffold split left"):
        split_molecules(["CCO", "CCN", "CCC", "CCCC"], "scaffold")  # one scaffold group
    with pytest.raises(ValueError, match="'random' or 'scaffold'"):
        split_molecules(SMILES, "cluster")


def test_csv_with_a_byte_order_mark(tmp_path, record_property):
    record_property("reliability", {
        "area": "train_molecules.py / CSV", "case": "a CSV starting with a UTF-8 byte-order mark (as spreadsheet "
                                                   "programs write it)",
        "outcome": "read as without it (read with utf-8-sig); it used to be \"no column(s) 'smiles'; the columns "
                   "are \\ufeffsmiles, y\""})  # fmt: skip
    path = tmp_path / "bom.csv"
    path.write_bytes("smiles,y\r\nCCO,1.5\r\nc1ccccc1,2\r\n".encode("utf-8-sig"))
    assert csv_header(path) == ["smiles", "y"]
    table = load_molecule_csv(path, "smiles", ["y"])
    assert table.smiles == ["CCO", "c1ccccc1"] and not table.skipped


def test_duplicates_stay_in_one_split(record_property):
    record_property("reliability", {
        "area": "train_molecules.py / splits", "case": "a CSV holding each of 10 molecules 5 times (as `CCO` and "
                                                       "`OCC`: same canonical SMILES), random and scaffold split",
        "outcome": "a warning counts the repeats; every group of duplicates lies in one split (10 of 10 test "
                   "molecules used to be training molecules too)"})  # fmt: skip
    from rdkit import Chem

    base = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1", "C1CCCCC1", "CC(=O)O", "c1ccncc1", "CCOC", "C1CCOC1"]
    variants = [Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True, canonical=False) for s in base]
    smiles = [*base * 4, *variants]
    for method in ("random", "scaffold"):
        with pytest.warns(UserWarning, match=r"40 molecule\(s\) repeat another .* in 10 group\(s\)"):
            parts = split_molecules(smiles, method, (0.6, 0.2, 0.2), seed=0)
        where = {}
        for name, rows in parts.items():
            for i in rows:
                key = Chem.MolToSmiles(Chem.MolFromSmiles(smiles[i]))
                where.setdefault(key, set()).add(name)
        assert len(where) == 10 and all(len(v) == 1 for v in where.values())
        assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(50))
        assert all(len(v) > 0 for v in parts.values())


def test_split_without_duplicates_is_unchanged(recwarn):
    parts = split_molecules(SMILES, "random", (0.6, 0.2, 0.2), seed=1)
    perm = np.random.default_rng(1).permutation(len(SMILES))
    n_train = len(parts["train"])
    assert parts["train"].tolist() == perm[:n_train].tolist() and not recwarn.list


# Explicit splits: a column of labels or a splits file of row indices (chemprop's format).
from gnnkit.data.molecule_csv import (  # noqa: E402
    check_split_indices,
    count_rows,
    explicit_split,
    read_splits_file,
    split_from_column,
)

MOLS = ["CCO", "CCN", "CCC", "C1CC", "CCCl", "OCCO", "CC=O", "CC#N"]  # row 4 (index 3) does not parse


def test_split_column(tmp_path):
    labels = ["train", "Train", "val", "test", "TRAIN", "validation", "test", "valid"]
    path = write_csv(tmp_path / "m.csv", ["smiles", "y", "fold"], [[s, "1", f] for s, f in zip(MOLS, labels)])
    assert count_rows(path) == 8
    indices = split_from_column(path, "fold")
    assert indices == {"train": [0, 1, 4], "val": [2, 5, 7], "test": [3, 6]}
    table = load_molecule_csv(path, "smiles", ["y"])
    parts = explicit_split(table, indices, "--split-column fold")
    # positions into the table (row 4 was skipped: test keeps only index 6 -> row 7)
    assert [table.rows[i] for i in parts["train"]] == [1, 2, 5] and [table.rows[i] for i in parts["test"]] == [7]
    assert [table.smiles[i] for i in parts["val"]] == ["CCC", "OCCO", "CC#N"]


def test_split_column_with_an_unknown_label(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["smiles", "y", "fold"], [["CCO", "1", "train"], ["CCN", "1", "holdout"],
                                                                   ["CCC", "1", ""]])  # fmt: skip
    with pytest.raises(ValueError, match=r"must hold train, val or test in every row \(2 do not: row 2: 'holdout'; row 3: ''\)"):
        split_from_column(path, "fold")
    with pytest.raises(ValueError, match="no column"):
        split_from_column(path, "split")


def test_splits_file_in_chemprop_format(tmp_path):
    f = tmp_path / "splits.json"
    f.write_text('[{"train": "0-2,4", "val": [5, 7], "test": "6"}]')
    assert read_splits_file(f) == {"train": [0, 1, 2, 4], "val": [5, 7], "test": [6]}
    f.write_text('{"train": [0], "val": [1], "test": [2]}')  # one object without the list: also fine
    assert read_splits_file(f)["test"] == [2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not JSON"),
        ('[{"train": [0], "val": [1], "test": [2]}, {"train": [0], "val": [1], "test": [2]}]', "holds 2 splits"),
        ('{"train": [0], "val": [1]}', "must have the keys train, val and test (missing test)"),
        ('{"train": [0], "valid": [1], "test": [2]}', "missing val; unknown valid"),
        ('{"train": [0.5], "val": [1], "test": [2]}', "must be a list of row indices"),
        ('{"train": "0-x", "val": [1], "test": [2]}', "'train' has '0-x', not an index or a range"),
        ('{"train": "5-2", "val": [1], "test": [2]}', "'5-2'"),
        ("[1]", "must hold"),
        ("\"x\"", "got a str"),
    ],
)
def test_bad_splits_files(tmp_path, text, message):
    f = tmp_path / "splits.json"
    f.write_text(text)
    with pytest.raises(ValueError, match=re_escape(message)):
        read_splits_file(f)


def re_escape(text):
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ({"train": [0, 1], "val": [2, 9], "test": [3]}, "val has row indices out of range (9); the CSV has 8 data rows, indices 0-7"),
        ({"train": [0, -1], "val": [2], "test": [3]}, "train has row indices out of range (-1)"),
        ({"train": [0, 1], "val": [1], "test": [3]}, "row index 1 is in both train and val"),
        ({"train": [0, 0], "val": [1], "test": [3]}, "row index 0 is twice in train"),
        ({"train": [0, 1], "val": [], "test": [3]}, "the val split is empty"),
    ],
)
def test_bad_explicit_splits(indices, message):
    with pytest.raises(ValueError, match=re_escape("splits.json: " + message)):
        check_split_indices(indices, 8, "splits.json")


def test_a_split_left_without_usable_molecules(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["smiles", "y"], [[s, "1"] for s in MOLS])
    table = load_molecule_csv(path, "smiles", ["y"])
    with pytest.raises(ValueError, match=r"no usable molecule in the test split \(all its 1 row\(s\) were skipped"):
        explicit_split(table, {"train": [0, 1], "val": [2], "test": [3]}, "s.json")
    with pytest.warns(UserWarning, match="1 molecule\\(s\\) appear in more than one split"):
        table2 = load_molecule_csv(write_csv(tmp_path / "d.csv", ["smiles", "y"], [["CCO", "1"], ["OCC", "2"], ["CCN", "3"]]),
                                   "smiles", ["y"])  # fmt: skip
        explicit_split(table2, {"train": [0], "val": [1], "test": [2]}, "s.json")  # CCO and OCC: one molecule
