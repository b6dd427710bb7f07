"""How fast the MPNN step could be with the products it is made of: each product of the fused
edge-network kernel (:func:`gnnkit.ops.outer_linear.outer_linear_unchecked`, forward and backward)
timed alone on the shapes it has on a given batch, against the matrix-multiply peak.

The kernel's products, per target block of ``r`` rows (``K`` the edge MLP's hidden size, ``d``
the node width, ``deg`` a target's in-degree), are those of
:func:`gnnkit.ops._torch_kernels.outer_linear_fwd` / ``outer_linear_bwd``:

* ``S``: per target ``[K, deg] x [deg, d]`` (batched over a slab of equal-degree targets), in the
  forward and again in the backward (recomputed instead of stored);
* the node product ``[r, K d] x [K d, d]`` (forward), the weight gradient ``[d, r] x [r, K d]``
  (accumulated), ``dL/dS = [r, d] x [d, K d]``;
* per target ``grad z = [deg, d] x [d, K]`` and the messages ``[deg, K] x [K, d]`` that sum into
  ``grad h``.

Timed here one op at a time over the kernel's own blocks (:func:`gnnkit.ops._torch_kernels._outer_blocks`)
with nothing else in between (no gathers, allocations, autograd), so their sum is what the step
would take if everything but these products were free: a bound from below on its time, and from
above on its share of the peak.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor

from gnnkit.nn import Graph
from gnnkit.ops import DegreeBuckets
from gnnkit.ops import _torch_kernels as _kernels
from gnnkit.ops._torch_kernels import _block_rows, _outer_blocks
from gnnkit.ops.outer_linear import FUSED_MIN_S_BYTES, fused_outer_linear_applies

# product -> (label, whether its flops are in the model's cost model)
PRODUCTS = {
    "s": ("S = sum z ⊗ h, per target [K, deg] x [deg, d] (forward)", True),
    "s_again": ("S again in the backward (recomputed, not stored)", False),
    "node": ("node product [r, K d] x [K d, d] (forward)", True),
    "grad_w": ("weight gradient [d, r] x [r, K d]", True),
    "grad_s": ("dL/dS = [r, d] x [d, K d]", True),
    "grad_z": ("grad z, per target [deg, d] x [d, K]", True),
    "msg": ("messages for grad h, per target [deg, K] x [K, d]", True),
}


def fused_product_times(
    graph: Graph, hidden: int, channels: int, repeats: int = 5, seed: int = 0, between: Callable[[], None] | None = None
) -> dict[str, dict]:
    """Each product of the fused kernel on ``graph`` (one layer step, forward + backward), timed
    alone: ``{product: {"ms": median over repeats, "gflop": work}}``. Random inputs of the real
    shapes (``hidden`` = ``K``, ``channels`` = ``d`` = ``d'``). ``between``, if given, runs after
    each pass (warm-up included): what is compared with these times is measured interleaved with
    them, under the same load (this VM's speed drifts by 20-30 % within minutes)."""
    csr = graph.csr
    # Every run of equal in-degree targets as a slab (the kernel sends runs shorter than 4 to
    # degree buckets, the same products batched through gathers): on the benchmark's complete
    # graphs every molecule is one slab either way.
    buckets = DegreeBuckets.from_csr(csr, min_slab=1)
    k, d = hidden, channels
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(csr.num_edges, k, generator=gen).relu()
    h_src = torch.randn(csr.num_edges, d, generator=gen)  # the gathered source rows
    w = torch.randn(d, k * d, generator=gen) / (k * d) ** 0.5
    g = torch.randn(csr.num_dst, d, generator=gen)
    rows = _block_rows(k, d, z.element_size())
    blocks = _outer_blocks(buckets, rows)
    out, grad_w = torch.empty(csr.num_dst, d), torch.zeros_like(w)
    grad_z, msg = torch.empty_like(z), torch.empty_like(h_src)
    s_buf, g_buf = z.new_empty(rows, k, d), z.new_empty(rows, k * d)
    times: dict[str, list[float]] = {p: [] for p in PRODUCTS}

    def one_pass() -> dict[str, float]:
        acc = dict.fromkeys(PRODUCTS, 0.0)

        def timed(name: str, fn: Callable[[], Tensor]) -> None:
            t0 = time.perf_counter()
            fn()
            acc[name] += time.perf_counter() - t0

        for n0, r, pieces, _ in blocks:
            s, gs, gb, at = s_buf[:r], g_buf[:r], g[n0 : n0 + r], 0
            for _, b, e0, deg in pieces:
                e = slice(e0, e0 + b * deg)
                timed("s", lambda: torch.bmm(z[e].view(b, deg, k).transpose(1, 2), h_src[e].view(b, deg, d), out=s[at : at + b]))
                at += b
            timed("node", lambda: torch.mm(s.view(r, k * d), w.t(), out=out[n0 : n0 + r]))
            timed("grad_w", lambda: torch.addmm(grad_w, gb.t(), s.view(r, k * d), out=grad_w))
            timed("grad_s", lambda: torch.mm(gb, w, out=gs))
            at = 0
            for _, b, e0, deg in pieces:
                e, gp = slice(e0, e0 + b * deg), gs.view(r, k, d)[at : at + b]
                timed("grad_z", lambda: torch.bmm(h_src[e].view(b, deg, d), gp.transpose(1, 2), out=grad_z[e].view(b, deg, k)))
                timed("msg", lambda: torch.bmm(z[e].view(b, deg, k), gp, out=msg[e].view(b, deg, d)))
                at += b
        acc["s_again"] = acc["s"]  # the same products on the same shapes
        return acc

    for i in range(repeats + 1):  # the first pass warms up
        for name, seconds in one_pass().items():
            if i:
                times[name].append(seconds)
        if between is not None:
            between()
    e_kd = 2 * csr.num_edges * k * d
    n_kdd = 2 * csr.num_dst * k * d * d
    work = {"s": e_kd, "s_again": e_kd, "node": n_kdd, "grad_w": n_kdd, "grad_s": n_kdd, "grad_z": e_kd, "msg": e_kd}
    return {p: {"ms": statistics.median(times[p]) * 1e3, "gflop": work[p] / 1e9} for p in PRODUCTS}


@contextmanager
def kernel_timer() -> Iterator[list[float]]:
    """Wraps the fused kernel (``outer_linear_fwd`` / ``outer_linear_bwd``) for the block, adding
    the wall time of each of its calls to the yielded ``[seconds]``; puts the kernel back after."""
    fwd, bwd = _kernels.outer_linear_fwd, _kernels.outer_linear_bwd
    inside = [0.0]

    def timed(fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - t0

        return wrapper

    _kernels.outer_linear_fwd, _kernels.outer_linear_bwd = timed(fwd), timed(bwd)
    try:
        yield inside
    finally:
        _kernels.outer_linear_fwd, _kernels.outer_linear_bwd = fwd, bwd


def ceiling_lines(
    graph: Graph, hidden: int, channels: int, steps: int, model_gflop: float, peak: float,
    step: Callable[[], None], repeats: int = 5,
) -> tuple[list[str], dict]:  # fmt: skip
    """The markdown section and its figures: each product for the whole model step (``steps``
    layer steps), their sum, the best share of the peak the model step could reach if nothing but
    these products took time (``model_gflop`` from the cost model), and the step (``step``, the
    model's forward + backward) split into these products, the rest of the fused kernel, and the
    rest of the model (:func:`kernel_timer`), measured interleaved with the products."""
    step_ms, kernel_ms = [], []
    with kernel_timer() as inside:

        def timed_step() -> None:
            inside[0] = 0.0
            t0 = time.perf_counter()
            step()
            step_ms.append((time.perf_counter() - t0) * 1e3)
            kernel_ms.append(inside[0] * 1e3)

        per_layer = fused_product_times(graph, hidden, channels, repeats, between=timed_step)
    step_ms, kernel_ms = statistics.median(step_ms[1:]), statistics.median(kernel_ms[1:])  # the first warms up
    lines = [
        "| product (each of the model's steps, forward + backward) | GFLOP | in the cost model | ms | GFLOP/s | % of peak |",
        "|---|---:|---|---:|---:|---:|",
    ]
    total_ms = total_gflop = 0.0
    for name, (label, counted) in PRODUCTS.items():
        ms, gflop = per_layer[name]["ms"] * steps, per_layer[name]["gflop"] * steps
        rate = gflop / (ms / 1e3)
        total_ms += ms
        total_gflop += gflop
        lines.append(f"| {label} | {gflop:.3g} | {'yes' if counted else 'no'} | {ms:.1f} | {rate:.1f} | {100 * rate / peak:.0f} % |")
    rate = total_gflop / (total_ms / 1e3)
    lines.append(f"| **all of them** | {total_gflop:.3g} | | **{total_ms:.1f}** | {rate:.1f} | {100 * rate / peak:.0f} % |")
    bound = model_gflop / (total_ms / 1e3)
    s_mb = graph.csr.num_dst * hidden * channels * 4 / 2**20
    # the layer's own test of whether it runs the fused kernel at this size (float32, CPU)
    fused = fused_outer_linear_applies(torch.empty(0, hidden), torch.empty(0, channels),
                                       DegreeBuckets.from_csr(graph.csr), graph.csr.num_dst)  # fmt: skip
    figures = {
        "fused_path": fused, "s_mb": s_mb, "products_ms": total_ms, "products_gflop": total_gflop,
        "model_gflop": model_gflop, "bound_gflops": bound, "bound_percent_of_peak": 100 * bound / peak,
        "step_ms": step_ms, "kernel_ms": kernel_ms, "kernel_rest_ms": kernel_ms - total_ms, "model_rest_ms": step_ms - kernel_ms,
        "per_product": {name: {"ms": v["ms"] * steps, "gflop": v["gflop"] * steps} for name, v in per_layer.items()},
    }  # fmt: skip
    lines += [
        "",
        f"If nothing but these products took time, the step's {model_gflop:.3g} GFLOP (cost model) would run at "
        f"{bound:.1f} GFLOP/s = **{100 * bound / peak:.1f} % of the peak** at most.",
        "",
        f"Where the step's time goes (the model's forward + backward run {repeats} times between the passes over the "
        "products above, the fused kernel's calls timed; medians):",
        "",
        "| part of the step | ms | share |",
        "|---|---:|---:|",
        f"| the products above, timed alone | {total_ms:.1f} | {100 * total_ms / step_ms:.0f} % |",
        f"| the fused kernel outside these products (source gathers, the sparse sum of the messages into grad h, "
        f"allocation, its Python loop; near 0 it is within the timing noise) | {kernel_ms - total_ms:.1f} | "
        f"{100 * (kernel_ms - total_ms) / step_ms:.0f} % |",
        f"| the rest of the model (edge MLP, GRU, Set2Set, input and head layers, autograd) | {step_ms - kernel_ms:.1f} | "
        f"{100 * (step_ms - kernel_ms) / step_ms:.0f} % |",
        f"| **the step** | **{step_ms:.1f}** | 100 % |",
    ]
    if not fused:
        lines += ["", f"(At this batch S is {s_mb:.1f} MB, under the {FUSED_MIN_S_BYTES / 2**20:g} MB from which the "
                  "layer runs the fused kernel: the model runs the two-step path, the same products with S stored, "
                  "so the fused kernel's share is 0.)"]  # fmt: skip
    return lines, figures
