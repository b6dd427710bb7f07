"""The full-data equal-wall-clock presets of recipes/qm9.py (``full``: gnnkit's MPNN, ``full-pyg``:
PyG's qm9_nn_conv example) at tiny scale with seconds of budget, resumed, and the report of
recipes/qm9_report.py on the runs they wrote."""

import json

import numpy as np
import pytest

# Tiny sizes on real QM9 molecules; the presets' time budget and epoch size are overridden.
TINY = ["--train-size", "48", "--eval-size", "16", "--batch-size", "16", "--channels", "16", "--steps", "2",
        "--model-option", "edge_hidden=16", "--device", "cpu", "--no-progress", "--time-budget", "3",
        "--epoch-size", "32"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("qm9")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from gnnkit.data import QM9, load_split

    root = tmp_path_factory.mktemp("qm9_full_data")
    split = load_split()
    QM9(root, subset=np.concatenate([split["train"][:48], split["val"][:16], split["test"][:16]]), log=False)
    return root


def test_presets_settings(recipe, tmp_path):
    full = recipe.parse_args(["--preset", "full", "--out", str(tmp_path / "a")])
    assert (full.model, full.train_size, full.eval_size, full.time_budget, full.epoch_size) == ("mpnn", None, None, 3600.0, 20_000)
    assert full.schedule in ("linear", "cosine")  # decays within the budget
    assert full.model_options == {"message_scale": 1 / 18, "edge_hidden": 64}  # the pilots' choice
    pyg = recipe.parse_args(["--preset", "full-pyg", "--out", str(tmp_path / "b")])
    assert (pyg.model, pyg.channels, pyg.batch_size, pyg.lr, pyg.grad_clip, pyg.train_size, pyg.time_budget) == (
        "pyg-nnconv", 64, 128, 1e-3, None, None, 3600.0)
    with pytest.raises(SystemExit):
        recipe.parse_args(["--preset", "full-pyg", "--model", "mpnn"])
    for bad in (["--time-budget", "0"], ["--epoch-size", "0"]):
        with pytest.raises(SystemExit):
            recipe.parse_args([*bad, "--out", str(tmp_path / "c")])


def test_full_presets_resume_and_report(recipe, load_recipe, data_root, tmp_path, capsys):
    runs = {}
    for preset in ("full", "full-pyg"):
        out = tmp_path / preset
        argv = [*TINY, "--preset", preset, "--data-root", str(data_root), "--out", str(out)]
        if preset == "full":  # killed after its first epoch of one batch, then resumed: the clock continues
            cut = recipe.main(recipe.parse_args([*argv, "--epoch-size", "16", "--stop-after-epoch", "1"]))
            assert cut["status"] == "interrupted" and cut["train_seconds"] < 3
            argv += ["--epoch-size", "16", "--resume"]
        done = recipe.main(recipe.parse_args(argv))
        assert done["status"] == "completed" and done["time_budget"] == 3 and done["test_mae"] > 0
        assert done["parameters"] > 0 and done["machine_load"]["load_average"] is not None
        runs[preset] = out
    log = (tmp_path / "full" / "log.csv").read_text().splitlines()
    assert "train_seconds" in log[0] and "train_molecules_per_second" in log[0]

    report = load_recipe("qm9_report")
    stem = tmp_path / "results" / "qm9_full_cpu"
    paths = report.main([str(runs["full"]), str(runs["full-pyg"]), "--out", str(stem)])
    assert [p.rsplit(".", 1)[1] for p in paths] == ["md", "json", "png"]
    data = json.loads(stem.with_suffix(".json").read_text())
    rows = {r["run"]: r for r in data["runs"]}
    assert rows["full"]["model"] == "mpnn" and rows["full-pyg"]["model"] == "pyg-nnconv"
    for r in rows.values():
        assert r["train_seconds"] >= 3 and r["test_mae_ratio"] == pytest.approx(r["test_mae"] / 0.043)
        assert r["epochs"] >= 1 and r["passes"] > 0 and r["molecules_per_second"] > 0
    assert len(data["curves"]["full"]["seconds"]) == rows["full"]["epochs"]
    md = stem.with_suffix(".md").read_text()
    assert "| full | mpnn |" in md and "| full-pyg | pyg-nnconv |" in md and "load average" in md
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_report_errors(load_recipe, tmp_path, capsys):
    report = load_recipe("qm9_report")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert "result.json" in capsys.readouterr().err
    run = tmp_path / "old"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"test_mae": 1.0, "target": "u0"}))
    (run / "log.csv").write_text("epoch,train_loss,val_mae_u0\n1,0.5,0.3\n")
    with pytest.raises(SystemExit):
        report.main([str(run), "--out", str(tmp_path / "r")])
    assert "train_seconds" in capsys.readouterr().err
