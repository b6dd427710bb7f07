"""Smoke test of recipes/bench_layers.py: runs end to end on tiny sizes and prints the tables."""

import importlib.util
import pathlib
import re
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bench_layers", REPO / "recipes" / "bench_layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_layers"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_the_table(tmp_path):
    bench = _load()
    out = tmp_path / "bench.md"
    threads = torch.get_num_threads()
    try:
        table = bench.main(["--quick", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert out.read_text() == table
    rows = [line for line in table.splitlines() if line.startswith("| layer") or line.startswith("| model")]
    assert len(rows) == 6  # 4 variants + 2 ratio rows
    match = re.search(r"max \|gnnkit - pyg\| = ([0-9.eE+-]+?)\. Time", table)
    assert match is not None and float(match.group(1)) < 1e-4


def test_peak_tensor_bytes_sees_an_allocation():
    bench = _load()

    def alloc():
        t = torch.empty(1 << 20)  # 4 MiB
        t.fill_(1.0)

    assert bench.peak_tensor_bytes(alloc) >= 4 << 20
