"""The outer-product aggregation fused with the linear map that follows it, blocked for the cache (CPU).

:class:`gnnkit.nn.EdgeNetworkConv` computes ``out[v] = W · vec(S[v])`` with
``S[v] = sum_{e = (w -> v)} z_e ⊗ h_w``. Computed in two steps, ``S`` is an ``N x K x d`` tensor
(78 MB for 128 QM9-sized complete graphs at K = 128, d = 64) written once and read once per step,
and so is its gradient: each is a fresh allocation (page faults: the memory is returned to the
system after every step) and a pass through main memory. :func:`outer_linear_unchecked` computes
the same product block by block of target nodes (CPU kernels ``outer_linear_fwd`` /
``outer_linear_bwd`` in :mod:`gnnkit.ops._torch_kernels`), each block's ``S`` and ``dL/dS`` in a
buffer of about 8 MB that stays in the last-level cache; the backward recomputes the block's ``S`` for the
weight gradient (``2 E K d`` more flops) instead of storing it.

This is a CPU fast path for eager mode: it needs the host-side :class:`gnnkit.ops.DegreeBuckets`
and is not a ``torch.library`` op, so layers use it only where :func:`fused_outer_linear_applies`
says so (CPU tensors on the torch backend, float32/float64, not while compiling or under autocast); elsewhere
they call :func:`gnnkit.ops.outer_aggregate_unchecked` and a dense product, with the same result
up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from gnnkit.ops import _torch_kernels as kernels
from gnnkit.ops._backend import uses_triton
from gnnkit.ops.buckets import DegreeBuckets
from gnnkit.ops.csr import CSR


class _OuterLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, h: Tensor, w: Tensor, csr: CSR, buckets: DegreeBuckets) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, h, w)
        ctx.csr, ctx.buckets = csr, buckets
        return kernels.outer_linear_fwd(csr.rowptr, csr.col, z, h, w, buckets)

    @staticmethod
    @once_differentiable  # the kernels write into buffers: a second derivative is refused, not wrong
    def backward(ctx, g: Tensor):  # type: ignore[override]
        z, h, w = ctx.saved_tensors
        csr = ctx.csr
        need_z, need_h, need_w = ctx.needs_input_grad[:3]
        gz, gh, gw = kernels.outer_linear_bwd(
            csr.rowptr, csr.col, csr.t_rowptr, csr.t_perm, z, h, w, g.contiguous(), need_z, need_h, need_w, ctx.buckets
        )
        return gz, gh, gw, None, None


# The fused path pays off where the two-step form's S (and its gradient) is a large fresh
# allocation: above glibc's largest mmap threshold (32 MB on 64-bit) every step maps and faults
# it in anew. Below it, the idle-machine profile at the quick QM9 job's batch (32 molecules,
# S = 19.7 MB) found the blocked products slower than one large product (214 vs 150 ms a step,
# recipes/results/bench_layers_cpu.md), so smaller S keeps the two-step form.
FUSED_MIN_S_BYTES = 32 << 20


def fused_outer_linear_applies(z: Tensor, h: Tensor, buckets: DegreeBuckets | None, num_dst: int | None = None) -> bool:
    """Whether :func:`outer_linear_unchecked` can run and is worth it: CPU degree buckets present
    (built by the layer's ``prepare`` outside compilation), tensors on the torch backend in
    float32/float64, eager mode, autocast off, and (when ``num_dst`` is given) ``S``
    (``num_dst x K x d``) at least :data:`FUSED_MIN_S_BYTES`."""
    if num_dst is not None and num_dst * z.size(1) * h.size(1) * z.element_size() < FUSED_MIN_S_BYTES:
        return False
    return (
        buckets is not None
        and not torch.compiler.is_compiling()
        and z.dtype in (torch.float32, torch.float64)
        and h.dtype == z.dtype
        and not uses_triton(z)
        and not torch.is_autocast_enabled(z.device.type)  # autocast: the product's dtype as F.linear gives it
    )


def outer_linear_unchecked(csr: CSR, z_sorted: Tensor, h: Tensor, w: Tensor, buckets: DegreeBuckets) -> Tensor:
    """``out[v] = w @ vec(S[v])``, ``S[v] = sum_{e = (u -> v)} z[e] ⊗ h[u]`` (``vec`` in ``S``'s
    ``(k, i)`` row-major order), without storing ``S``; differentiable in ``z``, ``h`` and ``w``.
    No argument checks (see :func:`fused_outer_linear_applies` for where it runs).

    Args:
        csr: the graph.
        z_sorted: ``[E, K]`` per-edge vectors in ``csr``'s sorted order.
        h: ``[num_src, d]`` source features.
        w: ``[d', K * d]`` weight.
        buckets: :class:`DegreeBuckets` of ``csr``.

    Shapes:
        z_sorted ``[E, K]``, h ``[num_src, d]``, w ``[d', K * d]`` -> ``[num_dst, d']``.

    Cost:
        ``2 E K d + 2 N K d d'`` flops forward, ``6 E K d + 4 N K d d'`` backward (``S``
        recomputed once); memory ``N d'`` for the output plus ``E (K + d)`` gathered and
        per-edge rows and two ``~8 MB`` block buffers.
    """
    return _OuterLinear.apply(z_sorted.contiguous(), h.contiguous(), w.contiguous(), csr, buckets)
