"""recipes/predict.py on a tiny QM9 checkpoint: predictions on QM9 molecules equal the model's own
evaluation; SMILES, XYZ and SDF inputs; per-row errors; arguments checked before anything loads."""

import csv
import json

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import gnnkit.cli.predict as predict_cli  # the recipe's implementation (patched there)

TINY = ["--train-size", "48", "--eval-size", "16", "--batch-size", "16", "--channels", "16", "--steps", "2",
        "--model-option", "edge_hidden=16", "--device", "cpu", "--no-progress", "--epochs", "2"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(load_recipe, tmp_path_factory):
    """A tiny QM9 U0 run (real molecules): its folder, the dataset and the split rows."""
    from gnnkit.data import QM9, load_split

    qm9 = load_recipe("qm9")
    root, out = tmp_path_factory.mktemp("predict_data"), tmp_path_factory.mktemp("predict_run") / "u0"
    split = load_split()
    rows = {"train": split["train"][:48], "val": split["val"][:16], "test": split["test"][:16]}
    dataset = QM9(root, subset=np.concatenate(list(rows.values())), log=False)
    result = qm9.main(qm9.parse_args([*TINY, "--data-root", str(root), "--out", str(out)]))
    return out, dataset, rows, result


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("predict")


@pytest.fixture(scope="module")
def test_molecules(run):
    """The test molecules, built from QM9's coordinates as the dataset built them."""
    from gnnkit.data.molecule import SOURCE_XYZ, mol_from_xyz
    from gnnkit.data.qm9 import parse_molecule, read_raw

    _, dataset, rows, _ = run
    raw = read_raw(max_rows=int(rows["test"].max()) + 1)
    out = []
    for r in rows["test"]:
        symbols, positions = parse_molecule(raw.elements[r], raw.xyz[r])
        mol, source, _ = mol_from_xyz(symbols, positions, raw.smiles[r])
        out.append({"row": int(r), "symbols": symbols, "positions": positions, "smiles": raw.smiles[r], "mol": mol,
                    "from_xyz": source == SOURCE_XYZ})  # fmt: skip
    return out


def own_evaluation(run):
    """The model's own test predictions: the weights of best_model.pt rebuilt by hand, on the
    dataset's graphs, decoded by a normaliser fitted as the recipe fits it."""
    from gnnkit.data import TargetNormalizer
    from gnnkit.models import build_model

    out, dataset, rows, _ = run
    model = build_model("mpnn", 13, 1, edge_dim=5, channels=16, steps=2, edge_hidden=16)
    model.load_state_dict(torch.load(out / "best_model.pt", weights_only=True)["model"])
    model.eval()
    norm = TargetNormalizer.fit(dataset.graph_attr("y", rows["train"]), dataset.graph_attr("atom_counts", rows["train"]), [7], [True])
    batch = Batch.from_data_list(list(dataset.select(rows["test"])))
    with torch.no_grad():
        return norm.decode(model(batch), batch)[:, 0], batch.y[:, 7]


def test_api_predictions_equal_the_models_own_evaluation(run, test_molecules):
    from gnnkit.predict import load_predictor

    out, _, _, result = run
    expected, truth = own_evaluation(run)
    predictor = load_predictor(out)
    assert predictor.targets == ["u0"] and predictor.units == ["eV"] and predictor.geometry == "dft"
    rows = predictor.predict([m["mol"] for m in test_molecules])
    got = torch.tensor([r.values["u0"] for r in rows], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-6)
    # ... and their MAE is the test MAE the run reported at its best epoch.
    assert float((got - truth).abs().mean()) == pytest.approx(result["test_mae"], rel=1e-6)


def xyz_file(path, molecules):
    with open(path, "w") as f:
        for m in molecules:
            f.write(f"{len(m['symbols'])}\nQM9 row {m['row']}\n")
            f.writelines(f"{s} {x:.10f} {y:.10f} {z:.10f}\n" for s, (x, y, z) in zip(m["symbols"], m["positions"]))
    return path


def sdf_file(path, molecules):
    from rdkit import Chem

    writer = Chem.SDWriter(str(path))
    for m in molecules:
        writer.write(m["mol"])
    writer.close()
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_xyz_sdf_smiles_and_bad_rows(recipe, run, test_molecules, tmp_path, capsys):
    out = run[0]
    expected, _ = own_evaluation(run)
    xyz = xyz_file(tmp_path / "test.xyz", test_molecules)
    sdf = sdf_file(tmp_path / "test.sdf", test_molecules[:4])
    argv = ["--checkpoint", str(out), "--smiles", "CCO", "CCCl", "--xyz", str(xyz), "--smiles", "C1CC",
            "--sdf", str(sdf), "--out", str(tmp_path / "preds.csv")]  # fmt: skip
    result = recipe.main(recipe.parse_args(argv))
    rows = read_rows(tmp_path / "preds.csv")
    n = len(test_molecules)
    assert len(rows) == len(result) == 2 + n + 1 + 4
    assert [r["index"] for r in rows] == [str(i) for i in range(len(rows))]
    assert [r["input"] for r in rows] == ["smiles"] * 2 + ["xyz"] * n + ["smiles"] + ["sdf"] * 4  # command-line order
    assert list(rows[0]) == ["index", "input", "name", "smiles", "u0 (eV)", "status", "error", "note", "out_of_domain"]
    assert rows[0]["status"] == "ok" and float(rows[0]["u0 (eV)"]) < 0
    assert "not the B3LYP/6-31G(2df,p) geometry" in rows[0]["note"]
    assert rows[1]["status"] == "error" and "element Cl not supported" in rows[1]["error"] and rows[1]["u0 (eV)"] == ""
    assert rows[2 + n]["status"] == "error" and "does not parse" in rows[2 + n]["error"]
    # XYZ: bonds from the coordinates, the same graph as the dataset's where QM9 took that route too.
    assert sum(m["from_xyz"] for m in test_molecules) >= n - 2
    for k, m in enumerate(test_molecules):
        row = rows[2 + k]
        assert row["status"] == "ok" and row["name"] == f"test.xyz:{k + 1}"
        if m["from_xyz"]:
            assert float(row["u0 (eV)"]) == pytest.approx(float(expected[k]), rel=1e-9, abs=1e-6)
    # SDF keeps 4 decimals of the coordinates: equal to about 1e-3 eV.
    for k in range(4):
        assert float(rows[3 + n + k]["u0 (eV)"]) == pytest.approx(float(expected[k]), abs=5e-3)
    printed = capsys.readouterr().out
    assert f"{len(rows) - 2} of {len(rows)} molecules predicted, 2 failed" in printed and "B3LYP" in printed


def test_smiles_file_and_overwrite(recipe, run, tmp_path):
    smi = tmp_path / "c.smi"
    smi.write_text("# candidates\nCCO ethanol\n\nc1ccccc1  benzene\nXX\n")
    dest = tmp_path / "p.csv"
    recipe.main(recipe.parse_args(["--checkpoint", str(run[0] / "best_model.pt"), "--smiles-file", str(smi), "--out", str(dest)]))
    rows = read_rows(dest)
    assert [r["name"] for r in rows] == ["ethanol", "benzene", "c.smi:5"] and [r["status"] for r in rows] == ["ok", "ok", "error"]
    with pytest.raises(SystemExit):
        recipe.parse_args(["--checkpoint", str(run[0]), "--smiles", "C", "--out", str(dest)])
    recipe.main(recipe.parse_args(["--checkpoint", str(run[0]), "--smiles", "C", "--out", str(dest), "--overwrite"]))
    assert len(read_rows(dest)) == 1


def test_checkpoint_without_a_card_is_refused(recipe, run, tmp_path):
    ck = torch.load(run[0] / "best_model.pt", weights_only=True)
    torch.save({"model": ck["model"], "epoch": ck["epoch"]}, tmp_path / "best_model.pt")
    cfg = recipe.parse_args(["--checkpoint", str(tmp_path), "--smiles", "C", "--out", str(tmp_path / "p.csv")])
    with pytest.raises(ValueError, match="written before gnnkit stored the model's configuration"):
        recipe.main(cfg)
    assert not (tmp_path / "p.csv").exists()
    # As a command: a one-line error and exit status 2, no traceback.
    import os
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(repo / "recipes" / "predict.py"), "--checkpoint", str(tmp_path), "--smiles", "C",
                           "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)})  # fmt: skip
    assert proc.returncode == 2 and "predict.py: error:" in proc.stderr and "Traceback" not in proc.stderr


BAD_ARGS = [
    ([], "give at least one input"),
    (["--smiles", "C", "--checkpoint", "no/such/run"], "--checkpoint no/such/run: no such file or folder"),
    (["--xyz", "no/such.xyz"], "--xyz no/such.xyz: no such file"),
    (["--smiles", "C", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--smiles", "C", "--device", "gpu"], "--device 'gpu'"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGS, ids=[" ".join(a) or "no input" for a, _ in BAD_ARGS])
def test_bad_arguments_fail_before_anything_loads(recipe, run, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(predict_cli, "load_predictor", lambda *a, **k: pytest.fail("checkpoint loaded"))
    base = ["--checkpoint", str(run[0])] if "--checkpoint" not in argv else []
    with pytest.raises(SystemExit) as exit_:
        recipe.parse_args([*base, *argv, "--out", str(tmp_path / "p.csv")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_out_must_be_a_file(recipe, run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        recipe.parse_args(["--checkpoint", str(run[0]), "--smiles", "C", "--out", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_result_json_names_the_gilmer_reference(run):
    saved = json.loads((run[0] / "result.json").read_text())
    assert saved["paper"]["gilmer_enn_s2s_ratio"] == 0.45


def test_qm9_model_flags_molecules_outside_its_domain(recipe, run, tmp_path, capsys, record_property):
    record_property("reliability", {
        "area": "predict.py", "case": "a QM9 model (neutral single molecules, at most 9 heavy atoms) asked for "
        "`[OH-]`, `[NH4+]`, `O.O.O`, `CC.CC` and a 30-carbon chain",
        "outcome": "each row predicted with status ok and its out_of_domain column naming the reason (net charge, "
                   "fragments, heavy atoms; the domain is read from the training SMILES into best_model.pt); "
                   "a note counts them; `CCO` unflagged"})  # fmt: skip
    dest = tmp_path / "p.csv"
    recipe.main(recipe.parse_args(["--checkpoint", str(run[0]), "--smiles", "CCO", "[OH-]", "[NH4+]", "O.O.O", "CC.CC",
                                   "C" * 30, "--out", str(dest)]))  # fmt: skip
    rows = read_rows(dest)
    assert [r["status"] for r in rows] == ["ok"] * 6
    assert [r["out_of_domain"] for r in rows] == [
        "", "net charge -1 (training molecules: 0)", "net charge +1 (training molecules: 0)",
        "3 fragments (training molecules: at most 1)", "2 fragments (training molecules: at most 1)",
        "30 heavy atoms (training molecules: at most 9)"]  # fmt: skip
    assert "5 molecule(s) lie outside the training molecules' domain" in capsys.readouterr().out


def test_smiles_file_with_triple_bonds_predicts_the_same_as_smiles(recipe, run, tmp_path, record_property):
    record_property("reliability", {
        "area": "predict.py / SMILES files", "case": "the same molecules (with triple bonds) given with `--smiles` and "
                                                     "in a `--smiles-file`",
        "outcome": "identical predictions and canonical SMILES (the file used to cut `C#CC1CC2(CN2)C=C1` to `C`, "
                   "predicting methane with status ok)"})  # fmt: skip
    molecules = ["C#CC1CC2(CN2)C=C1", "NCC1(CC2CN12)C#N", "CC#N"]
    smi = tmp_path / "m.smi"
    smi.write_text("".join(f"{m} mol{k}\n" for k, m in enumerate(molecules)))
    a = recipe.main(recipe.parse_args(["--checkpoint", str(run[0]), "--smiles", *molecules, "--out", str(tmp_path / "a.csv")]))
    b = recipe.main(recipe.parse_args(["--checkpoint", str(run[0]), "--smiles-file", str(smi), "--out", str(tmp_path / "b.csv")]))
    assert [r.smiles for r in a] == [r.smiles for r in b] and all(r.error is None for r in b)
    assert [r.values for r in a] == [r.values for r in b] and [r.name for r in b] == ["mol0", "mol1", "mol2"]
