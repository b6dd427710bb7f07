"""The ``gnnkit`` console command: help, dispatch, exit statuses, and tiny real runs (train on
QM9, train on a CSV, predict) through ``gnnkit.cli.main.main`` and through ``python -m gnnkit``."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gnnkit.cli.main import COMMANDS, main

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_QM9 = ["--train-size", "32", "--eval-size", "8", "--batch-size", "16", "--channels", "8", "--steps", "1",
            "--model-option", "edge_hidden=8", "--device", "cpu", "--epochs", "1"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for words, _, _ in COMMANDS:
        assert f"gnnkit {' '.join(words)}" in text
    assert main([]) == 2  # no command: the same help, exit status 2


@pytest.mark.parametrize("words", [("train", "qm9"), ("train", "csv"), ("predict",)])
def test_each_command_help_is_grouped_with_defaults(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: gnnkit {' '.join(words)} ") and "examples:" in text
    assert "run options:" in text and "(default: " in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "unknown command 'frobnicate' (choose from train, predict, node, benchmark"),
        (["train"], "missing what to train on: choose qm9, csv"),
        (["train", "sdf"], "unknown kind 'sdf': choose qm9, csv"),
        (["train", "csv", "--targets", "y"], "--data is required"),
        (["predict", "--smiles", "C", "--out", "p.csv"], "--checkpoint is required"),
        (["train", "qm9", "--lr", "0"], "--lr must be a finite number > 0"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        status = e.code
    assert status == 2 and message in capsys.readouterr().err


@pytest.fixture(scope="module")
def qm9_root(tmp_path_factory):
    from gnnkit.data import QM9, load_split

    root = tmp_path_factory.mktemp("main_qm9")
    split = load_split()
    QM9(root, subset=np.concatenate([split["train"][:32], split["val"][:8], split["test"][:8]]), log=False)
    return root


def test_train_qm9_then_predict_in_process(qm9_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "qm9", *TINY_QM9, "--data-root", str(qm9_root), "--out", str(run)]) == 0
    saved = json.loads((run / "result.json").read_text())
    assert saved["status"] == "completed" and saved["train_size"] == 32 and (run / "best_model.pt").exists()
    assert main(["predict", "--checkpoint", str(run), "--smiles", "CCO", "XX", "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "error"] and float(rows[0]["u0 (eV)"]) != 0
    # none predicted: exit status 1; an existing --out without --overwrite: 2
    assert main(["predict", "--checkpoint", str(run), "--smiles", "XX", "--out", str(tmp_path / "q.csv")]) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--checkpoint", str(run), "--smiles", "CCO", "--out", str(tmp_path / "p.csv")])
    assert exit_.value.code == 2 and "exists; pass --overwrite" in capsys.readouterr().err


def test_train_csv_as_a_subprocess(tmp_path):
    """``python -m gnnkit train csv`` with a log redirected to a file: the run's lines and no
    progress-bar carriage returns (stderr is not a terminal)."""
    smiles = ["CCO", "CCN", "CCC", "CCCl", "OCCO", "CC=O", "CC#N", "CCCC", "CCOC", "NCCO", "C1CC1", "C1CCC1"]
    data = tmp_path / "m.csv"
    data.write_text("smiles,y\n" + "".join(f"{s},{len(s) * 0.5}\n" for s in smiles))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "gnnkit", "train", "csv", "--data", str(data), "--targets", "y",
                               "--epochs", "2", "--batch-size", "4", "--channels", "8", "--steps", "1",
                               "--device", "cpu", "--out", str(tmp_path / "run")],
                              stdout=log, stderr=subprocess.STDOUT, env=env, timeout=300)  # fmt: skip
    text = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "epoch 2:" in text and "test (" in text and "\r" not in text
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"
    proc = subprocess.run([sys.executable, "-m", "gnnkit", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "gnnkit train csv" in proc.stdout
