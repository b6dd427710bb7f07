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
from typing import Callable

import torch
from torch import Tensor

from gnnkit.nn import Graph
from gnnkit.ops import DegreeBuckets
from gnnkit.ops._torch_kernels import _block_rows, _outer_blocks
from gnnkit.ops.outer_linear import FUSED_MIN_S_BYTES

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


def fused_product_times(graph: Graph, hidden: int, channels: int, repeats: int = 5, seed: int = 0) -> dict[str, dict]:
    """Each product of the fused kernel on ``graph`` (one layer step, forward + backward), timed
    alone: ``{product: {"ms": median over repeats, "gflop": work}}``. Random inputs of the real
    shapes (``hidden`` = ``K``, ``channels`` = ``d`` = ``d'``)."""
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

    one_pass()  # warm-up
    for _ in range(repeats):
        for name, seconds in one_pass().items():
            times[name].append(seconds)
    e_kd = 2 * csr.num_edges * k * d
    n_kdd = 2 * csr.num_dst * k * d * d
    work = {"s": e_kd, "s_again": e_kd, "node": n_kdd, "grad_w": n_kdd, "grad_s": n_kdd, "grad_z": e_kd, "msg": e_kd}
    return {p: {"ms": statistics.median(times[p]) * 1e3, "gflop": work[p] / 1e9} for p in PRODUCTS}


def ceiling_lines(
    graph: Graph, hidden: int, channels: int, steps: int, model_gflop: float, model_ms: float, peak: float, repeats: int = 5
) -> tuple[list[str], dict]:
    """The markdown section and its figures: each product for the whole model step (``steps``
    layer steps), their sum, and the best share of the peak the model step could reach if nothing
    but these products took time (``model_gflop`` from the cost model, ``model_ms`` measured)."""
    per_layer = fused_product_times(graph, hidden, channels, repeats)
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
    fused = s_mb * 2**20 >= FUSED_MIN_S_BYTES
    figures = {"fused_path": fused, "s_mb": s_mb,
        "products_ms": total_ms, "products_gflop": total_gflop, "model_ms": model_ms, "model_gflop": model_gflop,
        "bound_gflops": bound, "bound_percent_of_peak": 100 * bound / peak, "rest_ms": model_ms - total_ms,
        "per_product": {name: {"ms": v["ms"] * steps, "gflop": v["gflop"] * steps} for name, v in per_layer.items()},
    }  # fmt: skip
    lines += [
        "",
        f"These products alone take {total_ms:.1f} ms of the model step's {model_ms:.1f} ms (measured above). "
        f"If nothing else took time, the step's {model_gflop:.3g} GFLOP (cost model) would run at "
        f"{bound:.1f} GFLOP/s = **{100 * bound / peak:.1f} % of the peak** at most; the other "
        f"{model_ms - total_ms:.1f} ms are the rest of the step (the edge MLP, GRU, Set2Set, gathers, "
        "the sparse sum of the messages into grad h, allocation, autograd and Python).",
        "" if fused else "",
    ]
    if not fused:
        lines[-1] = (f"(At this batch S is {s_mb:.1f} MB, under the {FUSED_MIN_S_BYTES / 2**20:g} MB from which the "
                     "layer runs the fused kernel: the model runs the two-step path, the same products with S stored.)")
    else:
        lines.pop()
    return lines, figures
