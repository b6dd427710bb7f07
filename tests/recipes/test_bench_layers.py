"""Smoke test of recipes/bench_layers.py (gnnkit/bench/bench_layers.py): runs end to end on tiny
sizes and prints the tables; the work figures and the memory probe it reports."""

import re

import torch

from gnnkit.bench import bench_layers as layers
from gnnkit.bench.probes import peak_tensor_bytes


def test_quick_run_writes_the_table(tmp_path, load_recipe):
    bench = load_recipe("bench_layers")
    out, js = tmp_path / "bench.md", tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        table = bench.main(["--quick", "--threads", "1", "--out", str(out), "--json", str(js), "--profile", "--ceiling",
                            "--block-sizes", "1,0.5"])
    finally:
        torch.set_num_threads(threads)
    assert out.read_text() == table
    rows = [line for line in table.splitlines() if line.startswith("| layer") or line.startswith("| model")]
    assert len(rows) == 6  # 4 variants + 2 ratio rows
    match = re.search(r"max \|gnnkit - pyg\| = ([0-9.eE+-]+?)\. Time", table)
    assert match is not None and float(match.group(1)) < 1e-4
    # Every variant row: time, GFLOP with its source, GFLOP/s and % of the same run's peak.
    peak = float(re.search(r"Matrix-multiply peak of this run: \*\*([0-9.]+) GFLOP/s", table).group(1))
    assert peak > 0
    for line in rows[:4]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        ms, work, rate, percent = float(cells[2]), cells[3], float(cells[4]), float(cells[5].rstrip(" %"))
        assert re.fullmatch(r"[0-9.e+-]+ \((cost model|counted)\)", work)
        # the printed ms has one decimal (+-0.05 ms) and the GFLOP 3 significant digits: so much may the
        # recomputed rate differ from the printed one (quick runs take under a millisecond)
        assert abs(rate - float(work.split()[0]) / (ms / 1e3)) <= rate * (0.05 / ms + 0.005) + 0.05 + 1e-6
        assert abs(percent - 100 * rate / peak) < 0.2
    assert "| node product [N, Kd] x [Kd, d]" in table and "| 256 x 256 x 256 |" in table
    # --profile: both batches, the breakdown by kind, the short-call share and the product shapes.
    assert table.count("| kind of op |") == 2 and table.count("Op calls under 1 ms each") == 2
    assert "### 32 molecules (quick QM9 job's batch size)" in table
    import json

    result = json.loads(js.read_text())
    assert result["peak_gflops"] == max(result["matmul_gflops"].values())
    assert set(result["percent_of_peak"]) == {"layer/gnnkit", "layer/pyg", "model/gnnkit", "model/pyg"}
    # --ceiling and --block-sizes: their sections, figures, and the block size put back afterwards.
    assert "## Where the rest goes" in table and "| **all of them** |" in table
    assert result["ceiling"]["products_ms"] > 0 and result["ceiling"]["step_ms"] > result["ceiling"]["kernel_ms"] >= 0
    assert "## Block size of the fused kernel" in table and set(result["block_sizes_ms"]) == {"1", "0.5"}
    assert all(len(ts) == 10 for ts in result["block_sizes_ms"].values())
    from gnnkit.ops import _torch_kernels

    assert _torch_kernels._OUTER_BLOCK_BYTES == 8 << 20


def test_bad_block_sizes_are_refused(load_recipe, capsys, monkeypatch):
    import pytest

    bench = load_recipe("bench_layers")
    for bad in ("2,x", "0", "4,-1"):
        with pytest.raises(SystemExit):
            bench.main(["--quick", "--block-sizes", bad])
        assert "--block-sizes" in capsys.readouterr().err
    # Off CPU the two options would have nothing to time: refused, not skipped (a GPU, as the recipe sees it).
    monkeypatch.setattr(layers.Config, "resolved_device", lambda self: torch.device("cuda"))
    for args in (["--ceiling"], ["--block-sizes", "2,8"]):
        with pytest.raises(SystemExit):
            bench.main(["--quick", "--device", "cuda", *args])
        assert "use them with --device cpu" in capsys.readouterr().err


def test_gnnkit_work_is_the_cost_model():
    cfg = layers.Config(molecules=3, min_atoms=3, max_atoms=5, channels=8, edge_hidden=8)
    batch = layers.make_batch(cfg)
    modules = {}
    steps = layers._steps(cfg, batch, modules)
    work, source = layers.work_gflop("model/gnnkit", modules["model/gnnkit"], steps["model/gnnkit"], batch)
    n, e, g = batch.num_nodes, batch.edge_index.size(1), batch.num_graphs
    assert source == "cost model" and work == modules["model/gnnkit"].flops(n, e, g, backward=True) / 1e9
    work, source = layers.work_gflop("layer/pyg", modules["layer/pyg"], steps["layer/pyg"], batch)
    assert source == "counted" and work > 0
    assert all(p.grad is None for p in modules["layer/pyg"].parameters())  # counting leaves no gradients behind


def test_peak_tensor_bytes_sees_an_allocation():

    def alloc():
        t = torch.empty(1 << 20)  # 4 MiB
        t.fill_(1.0)

    assert peak_tensor_bytes(alloc) >= 4 << 20
