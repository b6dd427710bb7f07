"""Smoke test for recipes/bench_ops.py: every graph, method and reduction end to end in seconds."""

import math

import torch


def test_bench_ops_quick(node_data_root, tmp_path, one_thread, load_recipe):
    bench = load_recipe("bench_ops")
    out = tmp_path / "bench.md"
    cfg = bench.parse_args(["--quick", "--device", "cpu", "--data-root", str(node_data_root), "--out", str(out)])
    cfg.powerlaw_nodes, cfg.powerlaw_edges, cfg.qm9_molecules, cfg.repeats = 300, 1500, 4, 1
    rows = bench.main(cfg)
    assert [(r["graph"], r["reduce"]) for r in rows] == [
        (g, r) for g in ("powerlaw 0k", "Cora", "QM9 batch 4x18") for r in ("sum", "mean", "max")
    ]
    by_graph = {r["graph"]: (r["N"], r["E"]) for r in rows}
    assert by_graph["Cora"] == (2708, 10556)
    assert by_graph["QM9 batch 4x18"] == (4 * 18, 4 * 18 * 17)
    for r in rows:
        for key in ("spmm", "scatter", "pyg", "sparse"):
            assert r[key] > 0 and math.isfinite(r[key])
    text = out.read_text()
    assert text.startswith("# gnnkit ops benchmark")
    assert "command: `python recipes/bench_ops.py --quick" in text and "threads" in text
    assert text.count("| Cora |") == 3 and "max spmm/PyG" in text


def test_graph_builders(load_recipe):
    bench = load_recipe("bench_ops")
    edge_index, n = bench.qm9_batch(3, 4)
    assert n == 12 and edge_index.shape == (2, 3 * 12)
    assert bool((edge_index[0] // 4 == edge_index[1] // 4).all()) and bool((edge_index[0] != edge_index[1]).all())
    edge_index = bench.powerlaw_graph(500, 4000, torch.Generator().manual_seed(0))
    assert edge_index.shape == (2, 4000) and int(edge_index.max()) < 500
    degree = torch.bincount(edge_index[1], minlength=500)
    assert int(degree.max()) > 8 * 4000 / 500  # heavy tail: hubs far above the mean degree
