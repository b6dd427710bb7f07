"""Smoke test of recipes/node_classification.py: every model trains a few epochs on Texas and Cora
(the committed raw files, copied to a temp dir) and beats the majority-class baseline clearly."""

import json

import pytest

from gnnkit.bench import node_classification as runner


@pytest.fixture(scope="module")
def recipe(load_recipe):
    return load_recipe("node_classification")


@pytest.fixture(scope="module")
def root(node_data_root):
    return node_data_root


# (model, dataset, splits, epochs, smaller settings so that CI stays fast, minimum test accuracy)
CASES = [
    ("gcn", "texas", "geom-gcn", 30, {"lr": 0.05}, 45.0),
    ("tdgnn-s", "texas", "geom-gcn", 30, {}, 65.0),
    ("tdgnn-w", "texas", "geom-gcn", 30, {}, 65.0),
    ("nhgcn", "texas", "random", 20, {"hidden": 64}, 65.0),
    ("nhgcn", "texas", "random", 20, {"hidden": 64, "nh_variant": "as_described", "ego": "linear"}, 65.0),
    ("gcn", "cora", "public", 25, {"lr": 0.05}, 50.0),
    ("tdgnn-s", "cora", "public", 50, {"levels": [1, 2], "max_hops": 3, "lr": 0.05}, 50.0),
    ("tdgnn-w", "cora", "geom-gcn", 20, {"levels": [1, 2], "max_hops": 3, "lr": 0.05}, 50.0),
    ("nhgcn", "cora", "random", 8, {"hidden": 32}, 50.0),
]


@pytest.mark.parametrize("model,dataset,splits,epochs,hparams,min_acc", CASES)
def test_recipe_trains(recipe, root, tmp_path, model, dataset, splits, epochs, hparams, min_acc):
    # Chance (uniform) is 20% on Texas, 14% on Cora; the majority class is 55% / 30%.
    cfg = recipe.RunConfig(
        model, dataset, splits, data_root=str(root), out=str(tmp_path), num_splits=1, epochs=epochs, hparams=hparams
    )
    result = recipe.run(cfg)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert set(saved) >= {"model", "dataset", "splits", "accs", "mean", "std", "paper", "seconds"}
    assert saved["model"] == model and saved["dataset"] == dataset and saved["splits"] == splits
    assert len(saved["accs"]) == 1 and saved["std"] == 0.0
    assert result["mean"] >= min_acc, result


def test_cli_table_and_errors(recipe, root, tmp_path, capsys):
    table = runner.markdown_table(
        [{"model": "gcn", "dataset": "cora", "splits": "public", "accs": [80.5, 81.5], "mean": 81.0, "std": 0.5, "paper": 81.5,
          "reference_run": None, "seconds": 3.0}]
    )
    assert "| gcn | cora | public | 2 | 81.00 ± 0.50 | 81.50 | n/a | -0.50 | 3 |" in table
    with pytest.raises(SystemExit):
        recipe.main(["--model", "gcn"])
    with pytest.raises(ValueError, match="public"):
        recipe.run(recipe.RunConfig("gcn", "texas", "public", data_root=str(root)))
    with pytest.raises(ValueError, match="--model"):
        recipe.run(recipe.RunConfig("gat", "texas", "random", data_root=str(root)))
    out = recipe.main(
        ["--model", "tdgnn-s", "--dataset", "texas", "--splits", "geom-gcn", "--data-root", str(root), "--num-splits", "2",
         "--epochs", "5", "--out", str(tmp_path / "run1"), "--set", "levels=[1]", "--set", "hidden=8"]
    )
    assert len(out[0]["accs"]) == 2 and out[0]["paper"] == 82.95
    assert out[0]["hparams"]["levels"] == [1] and out[0]["hparams"]["hidden"] == 8
    printed = capsys.readouterr().out
    assert "tdgnn-s texas geom-gcn: " in printed and "(paper: 82.95)" in printed
    config = json.loads(recipe.CONFIG.read_text())
    config["all"] = {"tdgnn-s": {"geom-gcn": ["texas"]}, "nhgcn": {"random": ["texas"]}}
    (tmp_path / "small.json").write_text(json.dumps(config))
    everything = recipe.main(
        ["--all", "--config", str(tmp_path / "small.json"), "--data-root", str(root), "--num-splits", "1", "--epochs", "3",
         "--set", "hidden=8", "--out", str(tmp_path / "all")]
    )
    assert [(r["model"], r["splits"]) for r in everything] == [("tdgnn-s", "geom-gcn"), ("nhgcn", "random")]
    assert "| nhgcn | texas | random | 1 |" in (tmp_path / "all" / "node_classification_all.md").read_text()
    collected = recipe.main(["--collect", str(tmp_path), "--write-table", str(tmp_path / "tables" / "table.md")])
    assert collected[0]["accs"] == out[0]["accs"]
    assert "| tdgnn-s | texas | geom-gcn |" in (tmp_path / "tables" / "table.md").read_text()


def test_all_parallel_and_resume(recipe, root, tmp_path):
    """``--all --jobs 2`` runs the rows in worker processes (a real CLI run: spawned workers import
    the script as ``__main__``); ``--resume`` over the same ``--out`` reuses the finished rows, a
    changed setting is refused under ``--resume`` and rerun with ``--overwrite``."""
    import subprocess
    import sys

    config = json.loads(recipe.CONFIG.read_text())
    config["all"] = {"gcn": {"geom-gcn": ["texas"]}, "tdgnn-w": {"geom-gcn": ["texas"]}, "nhgcn": {"random": ["texas"]}}
    (tmp_path / "small.json").write_text(json.dumps(config))
    base = [sys.executable, str(recipe.__file__), "--all", "--config", str(tmp_path / "small.json"), "--data-root", str(root),
            "--num-splits", "2", "--epochs", "3", "--set", "hidden=8", "--out", str(tmp_path / "runs")]
    first = subprocess.run(base + ["--jobs", "2"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (tmp_path / "runs" / "node_classification_all.md").read_text()
    assert "--jobs 2 --threads 1" in table and "for 3 rows run here" in table
    for row in ("| gcn | texas | geom-gcn | 2 |", "| tdgnn-w | texas | geom-gcn | 2 |", "| nhgcn | texas | random | 2 |"):
        assert row in table
    saved = json.loads((tmp_path / "runs" / "tdgnn-w-texas-geom-gcn" / "result.json").read_text())
    second = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing") == 3
    again = (tmp_path / "runs" / "node_classification_all.md").read_text()
    assert "for 0 rows run here (3 rows reused" in again and again.split("\n\n", 2)[2] == table.split("\n\n", 2)[2]
    # a changed note ("source") is not a changed setting: still reused
    config["settings"]["gcn"]["*"]["*"]["source"] = "edited note"
    (tmp_path / "small.json").write_text(json.dumps(config))
    noted = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=300)
    assert noted.returncode == 0 and noted.stdout.count("reusing") == 3, noted.stderr[-3000:]
    # a different setting is a different row: refused under --resume (naming it), rerun with --overwrite
    refused = subprocess.run(base + ["--set", "lr=0.02", "--resume"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.count("hparams.lr (saved: ") == 3, refused.stderr[-3000:]
    assert "tdgnn-w-texas-geom-gcn/result.json was written with other settings: hparams.lr (saved: 0.01, now: 0.02)" in refused.stderr
    third = subprocess.run(base + ["--set", "lr=0.02", "--overwrite"], capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "reusing" not in third.stdout
    assert json.loads((tmp_path / "runs" / "tdgnn-w-texas-geom-gcn" / "result.json").read_text())["hparams"]["lr"] == 0.02
    assert saved["hparams"]["lr"] == 0.01
    with pytest.raises(SystemExit):
        recipe.main(["--all", "--jobs", "0", "--data-root", str(root), "--out", str(tmp_path / "j")])


def test_offline_missing_graph(recipe, tmp_path):
    """Offline (as the suite runs), a graph that is not under --data-root fails with the missing
    raw files and their folder instead of a URLError."""
    with pytest.raises(FileNotFoundError, match=r"chameleon: 12 raw file\(s\) missing in .*wikipedia.chameleon.geom_gcn.raw"):
        recipe.main(["--model", "gcn", "--dataset", "chameleon", "--splits", "geom-gcn", "--data-root", str(tmp_path),
                     "--num-splits", "1", "--epochs", "1"])
