"""The CSV-default measurement (python -m gnnkit.cli.csv_models) end to end at a tiny size: the
QM9-derived CSV, every (model, seed) run at equal time through gnnkit train csv, the report."""

import csv
import json

import pytest

from gnnkit.cli import csv_models

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_equal_time_comparison(tmp_path, capsys, monkeypatch):
    import numpy as np

    # the CSV's molecules: QM9 rows 100-159 here (the real run takes the committed split's first
    # --rows training molecules, spread over the whole file, which takes a while to read)
    monkeypatch.setattr(csv_models, "load_split", lambda: {"train": np.arange(100, 160)})
    out = tmp_path / "cmp"
    assert csv_models.command(["--rows", "60", "--models", "gcn-graph,nfp", "--seeds", "2", "--budget-seconds", "0.3",
                               "--epoch-size", "24", "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    with open(out / "qm9_gap.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and set(rows[0]) == {"smiles", "gap"}
    from gnnkit.data.qm9 import read_raw

    raw = read_raw(max_rows=160)
    assert [r["smiles"] for r in rows] == raw.smiles[100:160] and float(rows[0]["gap"]) == raw.targets[100, 4]
    record = json.loads((out / "csv_models.json").read_text())
    assert [(r["model"], r["seed"]) for r in record["runs"]] == [("gcn-graph", 0), ("nfp", 0), ("gcn-graph", 1), ("nfp", 1)]
    assert all(r["status"] == "completed" and r["test_mae"] > 0 and r["seconds"] > 0 for r in record["runs"])
    # every run trains for the whole budget: no epoch cap stops a fast model early (30 epochs of 48
    # molecules take gcn-graph well under 0.3 s)
    assert all(r["seconds"] >= 0.3 for r in record["runs"])
    for model in ("gcn-graph", "nfp"):
        mine = [r["test_mae"] for r in record["runs"] if r["model"] == model]
        assert record["summaries"][model]["mean"] == pytest.approx(sum(mine) / 2)
    text = (out / "csv_models.md").read_text()
    assert "| gcn-graph |" in text and "| nfp |" in text and "0.3 s of training per run" in text
    assert text in capsys.readouterr().out


def test_bad_options(capsys, tmp_path):
    with pytest.raises(SystemExit):
        csv_models.command(["--models", "mpnn,dtnn", "--out", str(tmp_path / "x")])
    assert "--models: distinct names among" in capsys.readouterr().err
