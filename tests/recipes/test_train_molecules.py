"""recipes/train_molecules.py (= ``gnnkit train csv``, implemented in gnnkit.cli.molecules) end to end
on a tiny CSV made here from real QM9 molecules (with bad rows), its checkpoint used by
recipes/predict.py, argument errors before any molecule is read, and explicit splits."""

import csv
import json

import pytest

import gnnkit.cli.molecules as molecules_cli  # the recipe's implementation (patched there)

TINY = ["--epochs", "2", "--batch-size", "16", "--channels", "16", "--steps", "2", "--model-option", "edge_hidden=16",
        "--device", "cpu", "--no-progress", "--model", "mpnn"]  # fmt: skip
BAD_ROWS = [["C1CC", "1.0", "0.5", ""], ["CCO", "", "0.5", ""], ["CCO", "7.0", "n/a", ""], ["CCO", "oops", "1", ""]]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("train_molecules")


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    """48 QM9 molecules (SMILES, gap, mu, inline XYZ), then the bad rows (rows 49-52)."""
    from gnnkit.data.qm9 import parse_molecule, read_raw

    raw = read_raw(max_rows=100)
    path = tmp_path_factory.mktemp("csv") / "mols.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["smiles", "gap", "mu", "xyz"])
        for r in range(40, 88):
            symbols, positions = parse_molecule(raw.elements[r], raw.xyz[r])
            block = f"{len(symbols)}\nrow {r}\n" + "\n".join(f"{s} {x} {y} {z}" for s, (x, y, z) in zip(symbols, positions))
            writer.writerow([raw.smiles[r], raw.targets[r, 4], raw.targets[r, 0], block])
        writer.writerows(BAD_ROWS)
    return path


def test_default_model_is_chebnet_and_trains(recipe, data_csv, tmp_path):
    """The default model is the one recipes/results/csv_models_gap.md measured most accurate at
    equal time (chebnet); it trains end to end from the defaults."""
    out = tmp_path / "default"
    cfg = recipe.parse_args(["--data", str(data_csv), "--targets", "gap", "--out", str(out), "--epochs", "1",
                             "--device", "cpu", "--no-progress"])  # fmt: skip
    assert cfg.model == "chebnet"
    result = recipe.main(cfg)
    saved = json.loads((out / "result.json").read_text())
    assert saved["status"] == "completed" and result["test"]["gap"]["mae"] > 0


def test_end_to_end_and_predict(recipe, load_recipe, data_csv, tmp_path, capsys):
    out = tmp_path / "run"
    result = recipe.main(recipe.parse_args(["--data", str(data_csv), "--targets", "gap,mu", "--units", "eV,D",
                                            "--out", str(out), *TINY]))  # fmt: skip
    saved = json.loads((out / "result.json").read_text())
    assert saved["status"] == "completed" and saved["rows"] == 52 and saved["molecules"] == 48 and saved["skipped"] == 4
    assert saved["sizes"] == {"train": 38, "val": 5, "test": 5} and saved["edges"] == "bonds" and saved["geometry"] == "none"
    assert set(saved["test"]) == {"gap", "mu"} and all(0 < e["mae"] <= e["rmse"] for e in saved["test"].values())
    assert result["test"] == saved["test"]
    with open(out / "skipped_rows.csv", newline="") as f:
        skipped = list(csv.DictReader(f))
    assert [s["row"] for s in skipped] == ["49", "50", "51", "52"]
    assert "does not parse" in skipped[0]["reason"] and skipped[1]["reason"] == "missing target 'gap'"
    assert skipped[2]["reason"] == "missing target 'mu'" and "'oops' is not a number" in skipped[3]["reason"]
    printed = capsys.readouterr().out
    assert "skipped 4 of 52 rows" in printed and "row 49: SMILES 'C1CC' does not parse" in printed
    with open(out / "test_predictions.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 5 and set(preds[0]) == {"row", "smiles", "gap", "mu", "gap_pred", "mu_pred"}
    # The test MAE reported is that of the saved model's predictions, and equals fit's own evaluation.
    mae = sum(abs(float(p["gap"]) - float(p["gap_pred"])) for p in preds) / len(preds)
    assert mae == pytest.approx(saved["test"]["gap"]["mae"], rel=1e-9)
    log = list(csv.DictReader(open(out / "log.csv")))
    best = [r for r in log if r.get("test_mae_gap")][-1]
    assert float(best["test_mae_gap"]) == pytest.approx(saved["test"]["gap"]["mae"], rel=1e-6)

    predict = load_recipe("predict")
    (tmp_path / "w.xyz").write_text("3\nwater\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    rows = predict.main(predict.parse_args(["--checkpoint", str(out), "--smiles", preds[0]["smiles"], "CCS",
                                            "--xyz", str(tmp_path / "w.xyz"), "--out", str(tmp_path / "p.csv")]))  # fmt: skip
    assert rows[0].values["gap"] == pytest.approx(float(preds[0]["gap_pred"]), rel=1e-6)  # float32, other batch
    assert rows[1].error is not None and "element S not supported" in rows[1].error
    assert rows[2].error is None and rows[2].smiles == "O"  # an XYZ input in the same batch as a SMILES
    with open(tmp_path / "p.csv", newline="") as f:
        assert next(csv.reader(f))[4:6] == ["gap (eV)", "mu (D)"]


def test_coordinates_column_scaffold_split_and_ggnn(recipe, data_csv, tmp_path):
    out = tmp_path / "xyz"
    args = ["--data", str(data_csv), "--targets", "gap", "--xyz-column", "xyz", "--split", "scaffold", "--model", "ggnn",
            "--out", str(out), *TINY]  # fmt: skip
    args[args.index("--model-option"):args.index("--model-option") + 2] = []  # GG-NN has no edge network
    result = recipe.main(recipe.parse_args(args))
    assert result["status"] == "completed" and result["edges"] == "complete" and result["geometry"] == "given"
    assert result["skipped"] == 4 and sum(result["sizes"].values()) == 48
    from gnnkit.predict import load_predictor

    predictor = load_predictor(out)
    assert predictor.options.needs_coordinates and predictor.geometry == "given"
    (row,) = predictor.predict(["CCO"])
    assert row.error is None and "trained on given coordinates" in row.note


BAD_ARGS = [
    (["--targets", "gap,nope"], "no column(s) 'nope'; the columns are smiles, gap, mu, xyz"),
    (["--targets", "gap", "--smiles-column", "SMILES"], "no column(s) 'SMILES'"),
    (["--targets", "gap,gap"], "each column once"),
    (["--targets", "smiles"], "cannot include the SMILES"),
    (["--targets", "gap", "--extensive", "mu"], "--extensive mu: not among --targets gap"),
    (["--targets", "gap", "--edges", "complete"], "--edges complete carries distances"),
    (["--targets", "gap", "--embed", "--xyz-column", "xyz"], "exclude each other"),
    (["--targets", "gap", "--split-sizes", "0.8,0.3,0.1"], "summing to 1"),
    (["--targets", "gap", "--split", "cluster"], "invalid choice: 'cluster'"),
    (["--targets", "gap", "--units", "eV,D"], "one unit per target"),
    (["--targets", "gap", "--model", "mpnn", "--model-option", "hiden=3"], "unknown --model-option hiden for --model mpnn"),
    (["--targets", "gap", "--model-option", "hidden"], "KEY=VALUE"),
    (["--targets", "gap", "--channels", "0"], "--channels must be an integer >= 1"),
    (["--targets", "gap", "--lr", "-1"], "--lr must be a finite number > 0"),
    (["--targets", "gap", "--device", "gpu"], "gpu"),
    (["--targets", "gap", "--resume", "--overwrite"], "exclude each other"),
    (["--data", "no/such.csv", "--targets", "gap"], "no/such.csv not found"),
    ([], "--targets is required"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGS, ids=[" ".join(a) or "no targets" for a, _ in BAD_ARGS])
def test_bad_arguments_fail_before_any_molecule(recipe, data_csv, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(molecules_cli, "load_molecule_csv", lambda *a, **k: pytest.fail("molecules read"))
    base = [] if "--data" in argv else ["--data", str(data_csv)]
    with pytest.raises(SystemExit) as exit_:
        recipe.parse_args([*base, *argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_non_empty_out_is_refused(recipe, data_csv, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        recipe.parse_args(["--data", str(data_csv), "--targets", "gap", "--out", str(tmp_path)])
    assert "already holds notes.txt" in capsys.readouterr().err


def test_resume_into_a_read_only_out_is_a_usage_error(recipe, data_csv, tmp_path, capsys, monkeypatch, record_property):
    record_property("reliability", {
        "area": "train_molecules.py", "case": "`--resume` into a read-only --out (a read-only mount)",
        "outcome": "usage error 'is not writable' naming --out (exit 2) before any molecule is read (it used to "
                   "train a whole epoch, then fail twice)"})  # fmt: skip
    import errno
    import os

    from gnnkit.train import outdir

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"x")
    real = outdir._probe

    def read_only(folder):
        if folder == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        real(folder)

    monkeypatch.setattr(outdir, "_probe", read_only)
    monkeypatch.setattr(molecules_cli, "load_molecule_csv", lambda *a, **k: pytest.fail("molecules read"))
    with pytest.raises(SystemExit) as exit_:
        recipe.parse_args(["--data", str(data_csv), "--targets", "gap", "--out", str(out), "--resume"])
    assert exit_.value.code == 2 and f"--out {out} is not writable" in capsys.readouterr().err


def test_out_held_by_a_live_run_is_a_usage_error(recipe, data_csv, tmp_path, capsys, record_property):
    record_property("reliability", {
        "area": "train_molecules.py", "case": "a second run (`--overwrite`, then `--resume`) on an --out a live run "
                                              "holds (another real process)",
        "outcome": "usage error naming the holder's pid and host (exit 2), before any molecule is read; the live "
                   "run's files untouched"})  # fmt: skip
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    hold = ("import sys, time\nfrom gnnkit.train.outdir import prepare_out_dir\n"
            "prepare_out_dir(sys.argv[1])\nprint('locked', flush=True)\ntime.sleep(600)\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", hold, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        (out / "result.json").write_text("{}")
        for flag in ("--overwrite", "--resume"):
            with pytest.raises(SystemExit) as exit_:
                recipe.parse_args(["--data", str(data_csv), "--targets", "gap", "--out", str(out), flag])
            assert exit_.value.code == 2 and f"is in use by another run (pid {proc.pid} on host" in capsys.readouterr().err
        assert (out / "result.json").read_text() == "{}"
    finally:
        proc.kill()
        proc.wait()


def test_charged_duplicated_molecules_from_a_spreadsheet_csv(recipe, load_recipe, tmp_path, record_property):
    record_property("reliability", {
        "area": "train_molecules.py", "case": "a CSV with a byte-order mark, every molecule twice (as written and "
                                              "as another SMILES), charged molecules, `--formal-charge`",
        "outcome": "reads the columns; warns about the duplicates and keeps each pair in one split; the checkpoint "
                   "records formal_charge and the training domain, so predict.py featurizes charges the same way"})  # fmt: skip
    from rdkit import Chem

    base = ["CCO", "CCN", "CC[NH3+]", "CC(=O)[O-]", "C[N+](C)(C)C", "c1ccccc1", "c1cc[nH+]cc1", "CCC", "CCCl", "OCCO",
            "CC(=O)O", "NCCN", "[NH4+]", "C[O-]", "CCCC", "CC=O", "CC#N", "C1CC1", "C1CCCC1", "CCOCC"]  # fmt: skip
    rows = []
    for s in base:
        mol = Chem.MolFromSmiles(s)
        y = 0.3 * mol.GetNumAtoms() + Chem.GetFormalCharge(mol)
        rows += [(s, y), (Chem.MolToSmiles(mol, doRandom=True, canonical=False, rootedAtAtom=mol.GetNumAtoms() - 1), y)]
    path = tmp_path / "sheet.csv"
    path.write_bytes(("smiles,y\r\n" + "".join(f"{s},{y}\r\n" for s, y in rows)).encode("utf-8-sig"))
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"20 molecule\(s\) repeat another"):
        result = recipe.main(recipe.parse_args(["--data", str(path), "--targets", "y", "--formal-charge", "--out",
                                                str(out), "--epochs", "1", "--batch-size", "8", "--channels", "8",
                                                "--steps", "1", "--model", "mpnn", "--model-option", "edge_hidden=8", "--device", "cpu",
                                                "--no-progress"]))  # fmt: skip
    assert result["molecules"] == 40 and result["skipped"] == 0
    import torch

    card = torch.load(out / "best_model.pt", weights_only=True)["predictor"]
    assert card["featurizer"]["formal_charge"] is True and card["domain"]["net_charges"] == [-1, 0, 1]
    with open(out / "test_predictions.csv", newline="") as f:
        test = {Chem.MolToSmiles(Chem.MolFromSmiles(r["smiles"])) for r in csv.DictReader(f)}
    assert len(test) * 2 == result["sizes"]["test"]  # each test molecule's duplicate is in test too
    predict = load_recipe("predict")
    got = predict.main(predict.parse_args(["--checkpoint", str(out), "--smiles", "CC[NH3+]", "CCN", "--out",
                                           str(tmp_path / "p.csv")]))  # fmt: skip
    assert got[0].values != got[1].values and got[0].out_of_domain == [] and got[1].out_of_domain == []


# -- explicit splits (a published split reproduced) and the equal-time mode ---------------------------
@pytest.fixture(scope="module")
def fold_csv(data_csv, tmp_path_factory):
    """data_csv plus a 'fold' column: rows 0-29 train, 30-39 val, 40-47 test; the bad rows train."""
    with open(data_csv, newline="") as f:
        rows = list(csv.reader(f))
    path = tmp_path_factory.mktemp("folds") / "mols.csv"
    labels = ["train"] * 30 + ["val"] * 10 + ["test"] * 8 + ["train"] * 4
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*rows[0], "fold"])
        writer.writerows([*r, label] for r, label in zip(rows[1:], labels))
    return path


def test_split_column_and_splits_file_give_the_same_run(recipe, fold_csv, tmp_path):
    by_column = recipe.main(recipe.parse_args(["--data", str(fold_csv), "--targets", "gap", "--split-column", "fold",
                                               "--out", str(tmp_path / "col"), *TINY]))  # fmt: skip
    # the bad rows are labelled train: row 51 (mu missing) is usable for gap, the other three are skipped
    assert by_column["sizes"] == {"train": 31, "val": 10, "test": 8} and by_column["split"] == "split-column"
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps([{"train": "0-29,48-51", "val": list(range(30, 40)), "test": "40-47"}]))
    by_file = recipe.main(recipe.parse_args(["--data", str(fold_csv), "--targets", "gap", "--splits-file", str(splits),
                                             "--out", str(tmp_path / "file"), *TINY]))  # fmt: skip
    assert by_file["sizes"] == by_column["sizes"] and by_file["test"] == by_column["test"]
    with open(tmp_path / "file" / "test_predictions.csv", newline="") as f:
        assert [int(r["row"]) for r in csv.DictReader(f)] == list(range(41, 49))  # indices 40-47 = rows 41-48


SPLIT_ERRORS = [
    (["--split-column", "fold", "--splits-file", "s.json"], "--split-column and --splits-file exclude each other"),
    (["--split-column", "fold", "--split-sizes", "0.5,0.25,0.25"], "--split-sizes sets the seeded split; it does not go"),
    (["--split-column", "fold", "--split", "scaffold"], "--split sets the seeded split"),
    (["--split-column", "nope"], "no column(s) 'nope'"),
    (["--split-column", "gap"], "--split-column gap is the SMILES, coordinates or a target column"),
    (["--splits-file", "no/such.json"], "splits file no/such.json not found"),
]


@pytest.mark.parametrize("argv,message", SPLIT_ERRORS, ids=[" ".join(a) for a, _ in SPLIT_ERRORS])
def test_split_errors_before_any_molecule(recipe, fold_csv, tmp_path, capsys, monkeypatch, argv, message, record_property):
    record_property("reliability", {
        "area": "train_molecules.py", "case": f"`{' '.join(argv)}`",
        "outcome": f"usage error before any molecule is read: \"{message}\""})  # fmt: skip
    monkeypatch.setattr(molecules_cli, "load_molecule_csv", lambda *a, **k: pytest.fail("molecules read"))
    with pytest.raises(SystemExit) as exit_:
        recipe.parse_args(["--data", str(fold_csv), "--targets", "gap", *argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"train": "0-29", "val": "30-39", "test": "40-60"}, "test has row indices out of range (52, 53, 54, 55, 56, ...); "
                                                             "the CSV has 52 data rows, indices 0-51"),
        ({"train": "0-29", "val": "29-39", "test": "40-47"}, "row index 29 is in both train and val"),
        ({"train": "0-29", "val": [], "test": "40-47"}, "the val split is empty"),
        ({"train": "0-29", "val": "30-39"}, "must have the keys train, val and test (missing test)"),
    ],
)
def test_bad_splits_file_is_a_usage_error(recipe, fold_csv, tmp_path, capsys, spec, message):
    splits = tmp_path / "s.json"
    splits.write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as exit_:
        recipe.parse_args(["--data", str(fold_csv), "--targets", "gap", "--splits-file", str(splits), "--out",
                           str(tmp_path / "out")])  # fmt: skip
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_unknown_split_label_is_a_usage_error(recipe, data_csv, tmp_path, capsys):
    path = tmp_path / "m.csv"
    with open(data_csv, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([[*rows[0], "fold"], *([*r, "train" if k != 3 else "holdout"] for k, r in enumerate(rows[1:]))])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--data", str(path), "--targets", "gap", "--split-column", "fold", "--out", str(tmp_path / "o")])
    assert "must hold train, val or test in every row (1 do not: row 4: 'holdout')" in capsys.readouterr().err


def test_time_budget_is_train_qm9s_resumable_decaying_budget(recipe, data_csv, tmp_path, monkeypatch):
    # train csv's --time-budget is TrainConfig.time_budget (as train qm9's): training seconds, --epochs then an upper
    # bound, a linear decay over the time, epochs of --epoch-size molecules, and a killed run resumes (train csv's
    # former wall-clock chunks could not be resumed and allowed a constant or plateau schedule only).
    from gnnkit.cli.options import BUDGET_EPOCHS

    args = ["--data", str(data_csv), "--targets", "gap", "--time-budget", "1", "--epoch-size", "8", "--schedule", "linear",
            "--out", str(tmp_path / "t"), *TINY[2:]]  # fmt: skip
    cfg = recipe.parse_args(args)
    assert (cfg.schedule, cfg.epochs, cfg.time_budget, cfg.epoch_size) == ("linear", BUDGET_EPOCHS, 1.0, 8)
    killed = molecules_cli.TrainConfig
    # killed after its second epoch of 8 molecules, then resumed with the same command: the clock continues
    monkeypatch.setattr(molecules_cli, "TrainConfig", lambda **kw: killed(**kw, stop_after_epoch=2))
    cut = recipe.main(cfg)
    assert cut["status"] == "interrupted" and cut["epochs"] == 2 and not cut["time_budget"]["complete"]
    monkeypatch.setattr(molecules_cli, "TrainConfig", killed)
    result = recipe.main(recipe.parse_args([*args, "--resume"]))
    budget = result["time_budget"]
    assert result["status"] == "completed" and budget["complete"] and budget["seconds"] >= 1.0
    assert result["epochs"] > 2 and budget["molecules"] > 16 and budget["test_mae"]["gap"] == result["test"]["gap"]["mae"] > 0
    log = (tmp_path / "t" / "log.csv").read_text().splitlines()
    assert len(log) == 1 + result["epochs"]  # the resumed run's log continues the killed one's
    with pytest.raises(SystemExit):
        recipe.parse_args([*args[:-len(TINY[2:])], "--time-budget", "0", *TINY[2:]])