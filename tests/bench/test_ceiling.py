"""gnnkit.bench.ceiling: the fused kernel's products timed alone, and the bound on the step."""

import pytest
import torch

from gnnkit.bench.ceiling import PRODUCTS, ceiling_lines, fused_product_times
from gnnkit.bench.synthetic import synthetic_batch
from gnnkit.nn import Graph

pytestmark = pytest.mark.usefixtures("one_thread")


def _graph():
    return Graph.from_data(synthetic_batch(4, 3, 7, 0, atom_features=5))


def test_every_product_is_timed_with_the_work_of_its_shapes():
    graph = _graph()
    k, d = 8, 4
    times = fused_product_times(graph, k, d, repeats=2)
    assert set(times) == set(PRODUCTS)
    e, n = graph.csr.num_edges, graph.csr.num_dst
    for name in ("s", "s_again", "grad_z", "msg"):
        assert times[name]["gflop"] == pytest.approx(2 * e * k * d / 1e9)
    for name in ("node", "grad_w", "grad_s"):
        assert times[name]["gflop"] == pytest.approx(2 * n * k * d * d / 1e9)
    assert all(t["ms"] > 0 for t in times.values())
    assert times["s_again"]["ms"] == times["s"]["ms"]


def test_the_bound_is_the_model_work_over_the_products_time():
    graph = _graph()
    lines, figures = ceiling_lines(graph, 8, 4, steps=3, model_gflop=0.01, model_ms=50.0, peak=100.0, repeats=2)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| product")]
    assert len(rows) == len(PRODUCTS) + 1 and rows[-1].startswith("| **all of them**")
    per = figures["per_product"]
    assert figures["products_ms"] == pytest.approx(sum(v["ms"] for v in per.values()))
    assert figures["bound_gflops"] == pytest.approx(0.01 / (figures["products_ms"] / 1e3))
    assert figures["bound_percent_of_peak"] == pytest.approx(figures["bound_gflops"])  # peak 100
    assert figures["rest_ms"] == pytest.approx(50.0 - figures["products_ms"])
    # three steps: three times one layer step's work
    assert per["node"]["gflop"] == pytest.approx(3 * 2 * graph.csr.num_dst * 8 * 4 * 4 / 1e9)
    assert not figures["fused_path"] and "two-step path" in lines[-1]  # a tiny S: the layer would not fuse
