"""recipes/qm9.py end to end on a small real slice of QM9: smoke, exact resume, DDP (2 gloo ranks)."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "qm9.py"
# A tiny MPNN so that a run takes seconds on a CPU; the data are real QM9 molecules.
TINY = ["--train-size", "48", "--eval-size", "16", "--batch-size", "16", "--channels", "16", "--steps", "2",
        "--model-option", "edge_hidden=16", "--device", "cpu", "--no-progress"]  # fmt: skip
REQUIRED = {"model", "target", "unit", "val_mae", "test_mae", "test_mae_ratio", "epochs", "train_size", "seconds",
            "molecules_per_second"}  # fmt: skip


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("qm9")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The processed cache of the slice the tiny runs use, built once for the module."""
    from gnnkit.data import QM9, load_split

    root = tmp_path_factory.mktemp("qm9_recipe_data")
    split = load_split()
    QM9(root, subset=np.concatenate([split["train"][:48], split["val"][:16], split["test"][:16]]), log=False)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")


def run(recipe, data_root, out, *extra):
    return recipe.main(recipe.parse_args([*TINY, "--data-root", str(data_root), "--out", str(out), *extra]))


def test_parse_args_sizes(recipe):
    quick = recipe.parse_args([])
    assert (quick.train_size, quick.eval_size, quick.model, quick.target, quick.edges) == (5000, 1000, "mpnn", "u0", "complete")
    assert recipe.parse_args(["--train-size", "300"]).eval_size is None  # full validation/test splits
    assert quick.grad_clip == 5.0 and recipe.parse_args(["--grad-clip", "0"]).grad_clip is None
    cfg = recipe.parse_args(["--train-size", "all", "--eval-size", "200", "--model-option", "edge_hidden=8"])
    assert cfg.train_size is None and cfg.eval_size == 200 and cfg.model_options == {"edge_hidden": 8}
    with pytest.raises(ValueError, match="target"):
        recipe.parse_args(["--target", "energy"])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--train-size", "0"])


def test_smoke(recipe, data_root, tmp_path, capsys):
    result = run(recipe, data_root, tmp_path, "--epochs", "2", "--target", "gap")
    saved = json.loads((tmp_path / "result.json").read_text())
    assert REQUIRED <= set(saved) and saved["target"] == "gap" and saved["unit"] == "eV"
    assert saved["train_size"] == 48 and saved["val_size"] == 16 and saved["test_size"] == 16 and saved["epochs"] == 2
    assert saved["test_mae_ratio"] == pytest.approx(saved["test_mae"] / 0.043)
    assert 0 < saved["test_mae"] < 5 and saved["molecules_per_second"] > 0 and saved["loader_molecules_per_second"] > 0
    assert result["val_mae"] == saved["val_mae"]
    with open(tmp_path / "log.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 0 and (tmp_path / "checkpoint.pt").exists()
    assert "x chemical accuracy" in capsys.readouterr().out


def test_resume_matches_uninterrupted(recipe, data_root, tmp_path):
    full = run(recipe, data_root, tmp_path / "full", "--epochs", "2")
    killed = run(recipe, data_root, tmp_path / "killed", "--epochs", "2", "--stop-after-epoch", "1")
    assert killed["interrupted"] and killed["epochs"] == 1
    resumed = run(recipe, data_root, tmp_path / "killed", "--epochs", "2", "--resume")
    for key in ("val_mae", "test_mae", "best_epoch", "epochs", "steps"):
        assert resumed[key] == full[key], key
    with open(tmp_path / "full" / "log.csv") as a, open(tmp_path / "killed" / "log.csv") as b:
        cols = ("epoch", "lr", "train_loss", "val_mae_u0", "test_mae_u0")
        assert [[r[c] for c in cols] for r in csv.DictReader(a)] == [[r[c] for c in cols] for r in csv.DictReader(b)]


def test_ddp_two_gloo_processes(recipe, data_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(RECIPE), *TINY,
           "--data-root", str(data_root), "--out", str(tmp_path / "ddp"), "--epochs", "2"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert saved["world_size"] == 2 and saved["epochs"] == 2
    # Evaluation is sharded without padding: each molecule counted once across the ranks.
    assert saved["val_size"] == 16 and 0 < saved["test_mae"] < 5
    assert proc.stdout.count("x chemical accuracy") == 1  # only rank 0 reports
