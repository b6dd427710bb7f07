"""Smoke test of recipes/benchmark.py: every architecture end to end on a tiny real QM9 slice."""

import json
import math

import pytest


def test_benchmark_recipe_smoke(tmp_path, one_thread, load_recipe):
    bench = load_recipe("benchmark")
    out = tmp_path / "results"
    config = bench.parse_args(
        ["--target", "U0", "--train-size", "32", "--eval-size", "16", "--batch-size", "16",
         "--budget-minutes", "0.01", "--evals", "2", "--data-root", str(tmp_path / "qm9"), "--out", str(out), "--device", "cpu"]
    )  # fmt: skip
    assert config.models == ("mpnn", "ggnn", "gcn", "cnn", "rnn")
    results = bench.main(config)

    data = json.loads((out / "benchmark_U0.json").read_text())
    assert data == json.loads(json.dumps(results))
    assert set(data["models"]) == {"mpnn", "ggnn", "gcn", "cnn", "rnn"}
    assert data["sizes"] == {"train": 32, "val": 16, "test": 16}
    for name, r in data["models"].items():
        assert math.isfinite(r["test_mae"]) and r["test_mae"] > 0, name
        assert r["mae_over_chemical_accuracy"] == pytest.approx(r["test_mae"] / 0.043)
        assert r["parameters"] > 0 and r["molecules_seen"] >= 16 and r["molecules_per_second"] > 0
        assert len(r["curve"]) == 2 and r["curve"][0][0] < r["curve"][1][0]
        assert r["peak_memory_mb"] is None or r["peak_memory_mb"] >= 0
    md = (out / "benchmark_U0.md").read_text()
    assert "recipes/benchmark.py --target U0" in md
    for name in data["models"]:
        assert f"| {name} |" in md
    assert (out / "benchmark_U0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timed_chunks_and_config_errors(monkeypatch, load_recipe):
    bench = load_recipe("benchmark")
    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])

    class Batch:
        num_graphs = 2

    class Loader:
        sampler = None

        def __init__(self, batch_seconds):
            self.batch_seconds = batch_seconds

        def __len__(self):
            return 3

        def __iter__(self):
            for _ in range(3):
                clock[0] += self.batch_seconds  # the consumer's training step, on the fake clock
                yield Batch()

    chunks = bench.TimedChunks(Loader(0.01), seconds=0.05)
    first, second = list(chunks), list(chunks)
    # Each chunk runs on into the next pass of the 3-batch loader and stops at its time mark.
    assert len(first) == len(second) == 5 and chunks.molecules == 20
    assert chunks.marks == pytest.approx([0.05, 0.10])
    # A batch slower than a chunk: one batch per chunk, never an empty one.
    slow = bench.TimedChunks(Loader(0.2), seconds=0.05)
    assert [len(list(slow)) for _ in range(3)] == [1, 1, 1]
    monkeypatch.undo()

    with pytest.raises(ValueError, match="models"):
        bench.parse_args(["--models", "mpnn,transformer"])
    with pytest.raises(ValueError, match="target"):
        bench.parse_args(["--target", "U7"])
    with pytest.raises(ValueError, match="budget"):
        bench.parse_args(["--budget-minutes", "0"])
    quick = bench.parse_args([])
    assert (quick.train_size, quick.eval_size) == (10_000, 500)
    full = bench.parse_args(["--train-size", "all"])
    assert (full.train_size, full.eval_size) == (None, None)
    assert bench.parse_args(["--train-size", "50", "--eval-size", "20"]).eval_size == 20
    with pytest.raises(SystemExit):
        bench.parse_args(["--train-size", "0"])
