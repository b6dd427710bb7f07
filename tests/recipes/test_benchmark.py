"""recipes/benchmark.py end to end on a tiny real QM9 slice: every architecture and reference, 2 seeds,
both budgets, a user's model imported from a spec; outputs only under --out."""

import hashlib
import json
import math
import pathlib
import re
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import global_add_pool

from gnnkit.bench.compare import SeedSummary, overlapping_pairs, rank_by_intervals, summarize
from gnnkit.models.pyg_reference import dimenet_missing

REPO = pathlib.Path(__file__).resolve().parents[2]


class TinyUserModel(nn.Module):
    """A user's model with the documented interface: (in_channels, out_channels, edge_dim) and
    ``model(batch) -> [num_graphs, out_channels]`` on the complete-graph batch."""

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int | None = None) -> None:
        super().__init__()
        self.node, self.edge = nn.Linear(in_channels, 8), nn.Linear(edge_dim, 8)
        self.out = nn.Linear(16, out_channels)

    def forward(self, batch):
        n = batch.num_graphs
        h = global_add_pool(F.relu(self.node(batch.x)), batch.batch, size=n)
        e = global_add_pool(F.relu(self.edge(batch.edge_attr)), batch.batch[batch.edge_index[0]], size=n)
        return self.out(torch.cat([h, e], dim=1))


USER_SPEC = f"{pathlib.Path(__file__).resolve()}:TinyUserModel"


def _tree(root: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_benchmark_end_to_end_with_seeds_budgets_and_a_user_model(tmp_path, monkeypatch, one_thread, load_recipe):
    bench = load_recipe("benchmark")
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    committed = _tree(REPO / "recipes" / "results")
    repo_runs = _tree(REPO / "runs") if (REPO / "runs").exists() else None
    models = ["mpnn", "ggnn", "gcn-graph", "cnn", "rnn", "pyg-nnconv", "schnet", USER_SPEC]
    config = bench.parse_args(
        ["--models", ",".join(models), "--seeds", "2", "--train-size", "24", "--eval-size", "16", "--batch-size", "8",
         "--budget-seconds", "0.3", "--time-evals", "2", "--epochs", "2", "--data-root", str(tmp_path / "qm9"),
         "--out", str(out), "--device", "cpu"]
    )  # fmt: skip
    results = bench.main(config)

    data = json.loads((out / "benchmark_U0.json").read_text())
    assert data == json.loads(json.dumps(results))
    assert list(data["models"]) == models and data["sizes"] == {"train": 24, "val": 16, "test": 16}
    for name, m in data["models"].items():
        assert len(data["runs"][name]) == 2 and [r["seed"] for r in data["runs"][name]] == [0, 1]
        for budget in ("time", "epochs"):
            test = m[budget]["test_mae"]
            assert test["n"] == 2 and math.isfinite(test["mean"]) and test["mean"] > 0 and test["std"] >= 0, name
            assert m[budget]["complete"] and m[budget]["mae_over_chemical_accuracy"] == pytest.approx(test["mean"] / 0.043)
            assert data["rankings"][budget]["rank"][name] >= 1
        for run in data["runs"][name]:
            # One run serves both budgets: 2 time points and 2 epoch points, each budget's result read off them.
            assert sorted(p["budget"] for p in run["curve"]) == ["epochs", "epochs", "time", "time"]
            assert run["budgets"]["epochs"]["molecules"] == 48 and run["budgets"]["epochs"]["epochs"] == 2
            assert run["budgets"]["time"]["seconds"] >= 0.3 * 0.5 and run["molecules_per_second"] > 0
            assert run["parameters"] > 0 and (run["peak_memory_mb"] is None or run["peak_memory_mb"] >= 0)
            assert (out / "runs" / bench.run_folder(name) / f"seed{run['seed']}" / "log.csv").is_file()
    assert data["models"]["mpnn"]["config"] == {"channels": 32, "edge_hidden": 64}  # quick widths
    load = data["machine_load"]
    assert isinstance(load["shared"], bool) and load["load_average"]["start"] is not None

    # The aggregates and ranks are those of the runs' own values; the report's cells are the JSON's.
    md = (out / "benchmark_U0.md").read_text()
    assert "recipes/benchmark.py --models" in md and "intervals overlap" in md
    rows = _table_rows(md)
    assert list(rows) == models
    for budget, col in (("time", 3), ("epochs", 5)):
        seeds = {name: summarize(r["budgets"][budget]["test_mae"] for r in data["runs"][name]) for name in models}
        assert {name: data["models"][name][budget]["test_mae"] for name in models} == {n: asdict(s) for n, s in seeds.items()}
        ranks = rank_by_intervals(seeds)
        assert data["rankings"][budget]["rank"] == {name: r.rank for name, r in ranks.items()}
        assert data["rankings"][budget]["overlapping"] == [list(p) for p in overlapping_pairs(ranks)]
        for name in models:
            ratio = seeds[name].mean / 0.043
            assert rows[name][col] == f"{seeds[name].format(4)} ({ratio:.1f}x)", rows[name]  # mean ± std
            assert rows[name][col + 1] == str(ranks[name].rank)
    for name in models:
        assert rows[name][2] == f"{data['models'][name]['parameters']:,}"
        assert rows[name][9] == SeedSummary(**data["models"][name]["molecules_per_second"]).format(0)
    if load["shared"]:
        assert "Warning: the machine was shared" in md
    assert (out / "benchmark_U0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Written only under --out (and the dataset cache under --data-root): nothing in the working
    # directory, the committed results or the repository's runs/.
    assert not any(cwd.iterdir())
    assert {p.name for p in tmp_path.iterdir()} == {"out", "qm9", "cwd"}
    assert _tree(REPO / "recipes" / "results") == committed
    assert (_tree(REPO / "runs") if (REPO / "runs").exists() else None) == repo_runs
    with pytest.raises(ValueError, match="not an empty folder"):
        bench.main(config)


def test_presets_overrides_and_errors(load_recipe, monkeypatch, capsys):
    bench = load_recipe("benchmark")
    quick = bench.parse_args([])
    assert (quick.train_size, quick.eval_size, quick.seeds, quick.budget_seconds, quick.epochs) == (500, 300, 3, 45.0, 3)
    assert quick.models == ("mpnn", "ggnn", "gcn-graph", "cnn", "rnn", "pyg-nnconv", "schnet")
    assert quick.out == "runs/benchmark" and quick.widths == "quick" and quick.schedule == "constant"
    assert set(quick.not_run) == {"dimenet++"}  # the table says why it is not there
    sec2 = bench.parse_args(["--preset", "section2"])
    assert (sec2.train_size, sec2.eval_size, sec2.seeds, sec2.epochs, sec2.budget_seconds) == (2000, 500, 3, 5, 100.0)
    assert set(sec2.models) == set(quick.models) | {"nfp", "interaction", "weave", "dtnn", "chebnet"}
    gpu = bench.parse_args(["--preset", "gpu", "--seeds", "2"])
    assert (gpu.train_size, gpu.eval_size, gpu.budget_seconds, gpu.epochs, gpu.seeds) == (None, None, 1800.0, 10, 2)
    assert gpu.widths == "default" and gpu.device == "cuda" and gpu.loader_workers == 4
    if dimenet_missing():  # a preset's reference that cannot run here is listed as not run
        assert "dimenet++" not in gpu.models and "pyg-lib" in gpu.not_run["dimenet++"]
        with pytest.raises(SystemExit):
            bench.parse_args(["--models", "mpnn,dimenet++"])
        assert "dimenet++ cannot run here" in capsys.readouterr().err
    else:
        assert "dimenet++" in gpu.models
    assert bench.parse_args(["--train-size", "all", "--grad-clip", "none"]).train_size is None
    assert bench.model_config("schnet", "default") == {} and bench.model_config(USER_SPEC, "quick") == {}

    for argv, match in (
        (["--models", "mpnn,transformer"], "unknown model 'transformer'"),
        (["--models", "mpnn,mpnn"], "repeats"),
        (["--models", "no_such_pkg_xyz.mod:Net"], "cannot import module"),
        (["--models", f"{USER_SPEC[: -len('TinyUserModel')]}Missing"], "has no attribute"),
        (["--target", "U7"], "target"),
        (["--budget-seconds", "0"], "budget_seconds"),
        (["--seeds", "0"], "seeds"),
    ):
        with pytest.raises(SystemExit) as exit_:
            bench.parse_args(argv)
        assert exit_.value.code == 2 and re.search(match, capsys.readouterr().err)
    for argv in (["--train-size", "0"], ["--preset", "tpu"], ["--schedule", "linear"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)


def test_section2_models_end_to_end(tmp_path, monkeypatch, one_thread, load_recipe):
    """The Section 2 models through the section2 preset's protocol (both budgets), at tiny size."""
    bench = load_recipe("benchmark")
    monkeypatch.chdir(tmp_path)
    models = ["nfp", "interaction", "weave", "dtnn", "chebnet"]
    config = bench.parse_args(
        ["--preset", "section2", "--models", ",".join(models), "--seeds", "1", "--train-size", "24", "--eval-size", "16",
         "--batch-size", "8", "--budget-seconds", "0.2", "--time-evals", "2", "--epochs", "2",
         "--data-root", str(tmp_path / "qm9"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    )  # fmt: skip
    data = bench.main(config)
    assert list(data["models"]) == models
    for name, m in data["models"].items():
        assert m["inputs"] == ("bonds" if name in ("nfp", "chebnet") else "graph")
        for budget in ("time", "epochs"):
            assert m[budget]["complete"] and math.isfinite(m[budget]["test_mae"]["mean"]), name
    md = (tmp_path / "out" / "benchmark_U0.md").read_text()
    assert all(f"| {name} |" in md for name in models)


def test_gilmer_preset_end_to_end(tmp_path, one_thread, load_recipe):
    """The Table 7-8 ablation preset at a tiny size: every row runs on the same molecules, and the
    report sets the paper's ratios beside ours with ± std."""
    bench = load_recipe("benchmark")
    out = tmp_path / "out"
    config = bench.parse_args(
        ["--preset", "gilmer", "--seeds", "2", "--train-size", "16", "--eval-size", "8", "--batch-size", "8",
         "--budget-seconds", "0.2", "--time-evals", "1", "--epochs", "1", "--data-root", str(tmp_path / "qm9"),
         "--out", str(out), "--device", "cpu"]
    )  # fmt: skip
    assert config.models == tuple(bench.GILMER_ROWS) and config.target == "U0"
    results = bench.main(config)
    assert list(results["models"]) == list(bench.GILMER_ROWS)
    configs = {name: m["config"] for name, m in results["models"].items()}
    assert configs["ggnn-chemical"]["virtual_edges"] is False and configs["ggnn+s2s+towers8"]["towers"] == 8
    params = {name: m["parameters"] for name, m in results["models"].items()}
    assert params["ggnn-chemical"] == params["ggnn+virtual"] < params["ggnn+virtual+master"]  # one model, two graphs
    assert params["ggnn+s2s"] != params["ggnn+s2s+towers8"]
    md = (out / "benchmark_U0.md").read_text()
    section = md.split("Beside Gilmer et al. 2017")[1]
    for name, paper in bench.PAPER_RATIOS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        assert f"{paper['average']:.2f}" in row and row.count("±") == 2


def test_bad_values_are_usage_errors_before_a_user_model_is_imported(load_recipe, tmp_path, monkeypatch, capsys,
                                                                      record_property):  # fmt: skip
    record_property("reliability", {
        "area": "benchmark.py", "case": "`--seeds 0` together with `--models mpnn,usermod:Net` (a module that "
                                        "announces its import)",
        "outcome": "usage error naming seeds (exit 2), and the user's module is not imported: every other value is "
                   "checked first (it used to be a traceback, after importing the module)"})  # fmt: skip
    bench = load_recipe("benchmark")
    (tmp_path / "usermod_announces.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nNet = object\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["--models", "mpnn,usermod_announces:Net", "--seeds", "0"])
    assert exit_.value.code == 2 and "seeds" in capsys.readouterr().err
    assert not (tmp_path / "imported").exists()


def _run(seed: int, time_mae: float, epochs_mae: float, rate: float) -> dict:
    budget = {"val_mae": None, "point": 0, "molecules": 100, "complete": True}
    return {
        "seed": seed, "parameters": 1234, "inputs": "graph", "config": {"channels": 8},
        "budgets": {"time": {**budget, "test_mae": time_mae, "seconds": 10.0 + seed, "epochs": 2.0 + seed},
                    "epochs": {**budget, "test_mae": epochs_mae, "seconds": 20.0 + 2 * seed, "epochs": 3.0}},
        "molecules_per_second": rate, "peak_memory_mb": 50.0 + seed, "train_seconds": 30.0, "molecules_seen": 300,
        "curve": [{"budget": "time", "seconds": 5.0, "molecules": 50, "val_mae": 3.0},
                  {"budget": "epochs", "seconds": 10.0, "molecules": 100, "val_mae": 2.0}],
    }  # fmt: skip


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.split("| model | inputs |")[1].split("\n\n")[0].splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def test_aggregate_rankings_and_report_rows_on_constructed_seed_values(tmp_path):
    """Known per-seed MAEs through aggregate -> rankings -> write_report: each mean ± std, each
    rank (intervals a = [1, 3], b = [5, 7], c = [2.5, 4.5]: a and c overlap, both lie below b) and
    each report cell is the value the JSON holds."""
    from gnnkit.bench import benchmark as bm
    from gnnkit.bench.probes import LoadSample, MachineLoad

    maes = {"a": ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]), "b": ([5.0, 6.0, 7.0], [1.0, 1.5, 2.0]), "c": ([2.5, 3.5, 4.5], [9.0, 10.0, 11.0])}
    runs = {m: [_run(s, t[s], e[s], 100.0 * (s + 1)) for s in range(3)] for m, (t, e) in maes.items()}
    models = {m: bm.aggregate(r, 0.043) for m, r in runs.items()}
    assert models["a"]["time"]["test_mae"] == {"mean": 2.0, "std": 1.0, "n": 3, "missing": 0}
    assert models["b"]["epochs"]["test_mae"] == {"mean": 1.5, "std": 0.5, "n": 3, "missing": 0}
    assert models["c"]["time"]["mae_over_chemical_accuracy"] == pytest.approx(3.5 / 0.043)
    assert models["a"]["time"]["seconds"]["mean"] == 11.0 and models["a"]["epochs"]["epochs"]["mean"] == 3.0
    assert models["a"]["molecules_per_second"]["mean"] == 200.0 and models["a"]["peak_memory_mb"] == 52.0
    ranks = bm.rankings(models)
    assert ranks["time"]["rank"] == {"a": 1, "b": 3, "c": 1}
    assert ranks["time"]["overlapping"] == [("a", "c")]
    # equal epochs: b [1, 2] < a [4, 4] (one point, std 0) < c [9, 11]
    assert ranks["epochs"]["rank"] == {"a": 2, "b": 1, "c": 3} and ranks["epochs"]["overlapping"] == []

    load = MachineLoad(samples=[LoadSample(0.0, [0.1] * 3, 100.0, 10.0), LoadSample(10.0, [0.2] * 3, 100.5, 20.0)])
    config = {"seeds": 3, "preset": "quick", "widths": "quick", "batch_size": 32, "lr": 1e-3, "schedule": "constant",
              "grad_clip": 5.0, "budget_seconds": 45.0, "time_evals": 3, "epochs": 3}  # fmt: skip
    results = {
        "command": "python recipes/benchmark.py --seeds 3", "device": "CPU (test)", "threads": 1, "torch": torch.__version__,
        "commit": None, "date": "2026-01-01 00:00 UTC", "target": "U0", "unit": "eV", "chemical_accuracy": 0.043,
        "sizes": {"train": 100, "val": 10, "test": 10}, "config": config, "machine_load": load.summary(), "not_run": {},
        "models": models, "rankings": ranks, "notes": ["a note"], "runs": runs,
    }  # fmt: skip
    md_path, json_path, png_path = bm.write_report(results, tmp_path)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(results))
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = md_path.read_text()
    assert "Warning: the machine was shared" not in md  # 0.05 other cores: idle
    rows = _table_rows(md)
    assert list(rows) == ["a", "b", "c"]
    assert rows["a"] == ["a", "complete graph", "1,234", "2.0000 ± 1.0000 (46.5x)", "1", "4.0000 ± 0.0000 (93.0x)", "2",
                         "3.0 ± 1.0", "22.0 ± 2.0", "200 ± 100", "52"]  # fmt: skip
    assert rows["b"][3:7] == ["6.0000 ± 1.0000 (139.5x)", "3", "1.5000 ± 0.5000 (34.9x)", "1"]
    assert rows["c"][3:7] == ["3.5000 ± 1.0000 (81.4x)", "1", "10.0000 ± 1.0000 (232.6x)", "3"]
    assert "- Equal time, intervals overlap (no ranking claimed between them): a ~ c." in md
    assert "- Equal epochs, intervals overlap (no ranking claimed between them): none: every pair of intervals is disjoint." in md
