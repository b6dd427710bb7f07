"""Smoke test of recipes/bench_layers.py: runs end to end on tiny sizes and prints the tables."""

import re

import torch


def test_quick_run_writes_the_table(tmp_path, load_recipe):
    bench = load_recipe("bench_layers")
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


def test_peak_tensor_bytes_sees_an_allocation(load_recipe):
    bench = load_recipe("bench_layers")

    def alloc():
        t = torch.empty(1 << 20)  # 4 MiB
        t.fill_(1.0)

    assert bench.peak_tensor_bytes(alloc) >= 4 << 20
