"""``gnnkit node`` and ``gnnkit benchmark``: dispatched by the gnnkit command to gnnkit.cli.node /
gnnkit.cli.benchmark (the same code as their recipes); usage errors exit 2 with the reason, and a
table is collected from finished rows without training."""

import json

from gnnkit.cli.main import main


def test_usage_errors_exit_2_with_the_reason(capsys):
    assert main(["node", "--model", "gcn"]) == 2
    assert "gnnkit node: error: give --all or all of --model/--dataset/--splits (missing: dataset, splits)" in capsys.readouterr().err
    assert main(["benchmark", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gnnkit benchmark") and "seeds" in err
    assert main(["benchmark", "--models", "mpnn,transformer"]) == 2
    assert "unknown model 'transformer'" in capsys.readouterr().err


def test_node_collect_tabulates_finished_rows(tmp_path, capsys):
    row = {"model": "gcn", "dataset": "cora", "splits": "public", "accs": [80.5, 81.5], "mean": 81.0, "std": 0.5,
           "paper": 81.5, "reference_run": None, "seconds": 3.0, "hparams": {"lr": 0.01}}  # fmt: skip
    (tmp_path / "gcn-cora-public").mkdir()
    (tmp_path / "gcn-cora-public" / "result.json").write_text(json.dumps(row))
    table = tmp_path / "table.md"
    assert main(["node", "--collect", str(tmp_path), "--write-table", str(table)]) == 0
    assert "| gcn | cora | public | 2 | 81.00 ± 0.50 | 81.50 | n/a | -0.50 | 3 |" in capsys.readouterr().out
    assert "| gcn | cora | public | 2 | 81.00 ± 0.50 |" in table.read_text()
    (tmp_path / "gcn-cora-public" / "result.json").write_text("{")
    assert main(["node", "--collect", str(tmp_path)]) == 2
    assert "result.json: not valid JSON" in capsys.readouterr().err
