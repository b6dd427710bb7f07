"""gnnkit.bench.ceiling: the fused kernel's products timed alone, and the bound on the step."""

import time

import pytest
import torch

from gnnkit.bench.ceiling import PRODUCTS, ceiling_lines, fused_product_times, kernel_timer
from gnnkit.bench.synthetic import synthetic_batch
from gnnkit.nn import Graph
from gnnkit.ops import DegreeBuckets, _torch_kernels
from gnnkit.ops.outer_linear import outer_linear_unchecked

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


def _kernel_step(graph, k=8, d=4):
    """A stand-in for a model step: the fused kernel's forward and backward, then other work."""
    csr = graph.csr
    buckets = DegreeBuckets.from_csr(csr)
    z = torch.randn(csr.num_edges, k, requires_grad=True)
    h = torch.randn(csr.num_dst, d, requires_grad=True)
    w = torch.randn(d, k * d, requires_grad=True)

    def step():
        outer_linear_unchecked(csr, z, h, w, buckets).sum().backward()
        time.sleep(0.02)  # "the rest of the model"

    return step


def test_kernel_timer_times_the_kernel_inside_a_step_and_puts_it_back():
    graph = _graph()
    step = _kernel_step(graph)
    fwd, bwd = _torch_kernels.outer_linear_fwd, _torch_kernels.outer_linear_bwd
    with kernel_timer() as inside:
        t0 = time.perf_counter()
        step()
        total = time.perf_counter() - t0
    assert 0 < inside[0] < total - 0.019  # the kernel's calls, not the sleep
    assert (_torch_kernels.outer_linear_fwd, _torch_kernels.outer_linear_bwd) == (fwd, bwd)


def test_the_bound_is_the_model_work_over_the_products_time():
    graph = _graph()
    lines, figures = ceiling_lines(graph, 8, 4, steps=3, model_gflop=0.01, peak=100.0, step=_kernel_step(graph), repeats=2)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| product", "| part"))]
    assert rows[len(PRODUCTS)].startswith("| **all of them**") and rows[-1].startswith("| **the step**")
    per = figures["per_product"]
    assert figures["products_ms"] == pytest.approx(sum(v["ms"] for v in per.values()))
    assert figures["bound_gflops"] == pytest.approx(0.01 / (figures["products_ms"] / 1e3))
    assert figures["bound_percent_of_peak"] == pytest.approx(figures["bound_gflops"])  # peak 100
    assert figures["step_ms"] >= 20 and 0 < figures["kernel_ms"] < figures["step_ms"]
    assert figures["model_rest_ms"] == pytest.approx(figures["step_ms"] - figures["kernel_ms"])
    assert figures["kernel_rest_ms"] == pytest.approx(figures["kernel_ms"] - figures["products_ms"])
    # three steps: three times one layer step's work
    assert per["node"]["gflop"] == pytest.approx(3 * 2 * graph.csr.num_dst * 8 * 4 * 4 / 1e9)
    assert not figures["fused_path"] and "two-step path" in lines[-1]  # a tiny S: the layer would not fuse


def test_between_runs_after_every_pass():
    calls = []
    fused_product_times(_graph(), 8, 4, repeats=3, between=lambda: calls.append(1))
    assert len(calls) == 4  # the warm-up pass and three timed ones
