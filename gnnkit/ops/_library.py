"""The kernels as ``torch.library`` custom ops, with their backward passes.

Each primitive of :class:`gnnkit.ops._backend.Kernels` is one op in the ``gnnkit`` namespace whose
implementation asks :func:`gnnkit.ops._backend.kernels_for` for the torch or Triton kernel at run
time. Registered ops are opaque to ``torch.compile``: a compiled graph keeps them as single nodes
(with the fake implementations below giving their output shapes), so layers and models built on
them compile with ``fullgraph=True`` and dynamic shapes, forward and backward.

The four differentiable ops (``scatter``, ``segment``, ``spmm``, ``outer``) register their
gradients with :func:`torch.library.register_autograd`; the backward passes call the other ops, so
they stay deterministic (no floating-point atomics) on both backends. Ops cannot return ``None``:
a missing ``arg`` or gradient travels as an empty tensor.

Autocast does not reach into a custom op, but its thread-local state would still recast the aten
calls inside the torch kernels (aten's sparse CPU products have no bfloat16 kernel): every
implementation runs with autocast off (:func:`_kernels`), and half-precision inputs are handled
by the kernels themselves (float32 accumulation, output in the input dtype).

Eager calls on ordinary tensors skip the dispatcher (:func:`call`): a Python custom op costs about
75 us per call on CPU in its dispatch alone, close to the 92 us of a Cora-sized spmm forward. There
the same implementations, setup and backward functions run through a plain
:class:`torch.autograd.Function`, and backward passes call the implementations directly. Under
``torch.compile``, ``torch.fx`` or on fake/functional tensors the registered ops are used, so
compiled graphs keep them as single nodes.

These are internal: the public functions in :mod:`gnnkit.ops` check their arguments and call them
through :func:`call`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.ops._backend import Kernels, kernels_for

_LIB = "gnnkit"


class _kernels:
    """``with _kernels(t) as k``: the kernels for ``t``, called with autocast switched off (entered
    only when autocast is on: the context costs microseconds, a fair part of a small op)."""

    __slots__ = ("kernels", "no_autocast")

    def __init__(self, t: Tensor) -> None:
        self.kernels: Kernels = kernels_for(t)
        self.no_autocast = torch.autocast(t.device.type, enabled=False) if _autocast_on(t.device.type) else None

    def __enter__(self) -> Kernels:
        if self.no_autocast is not None:
            self.no_autocast.__enter__()
        return self.kernels

    def __exit__(self, *exc: object) -> None:
        if self.no_autocast is not None:
            self.no_autocast.__exit__(*exc)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return True


def _empty_long(like: Tensor) -> Tensor:
    return torch.empty(0, dtype=torch.long, device=like.device)


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    return t if t is not None else like.new_empty(0)


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


def _grad_from_arg(grad_out: Tensor, arg: Tensor, n_rows: int) -> Tensor:
    # arg == n_rows marks an empty segment: its gradient lands in a spare row that is dropped.
    grad = grad_out.new_zeros((n_rows + 1, *grad_out.shape[1:]))
    grad.scatter_(0, arg, grad_out)
    return grad[:n_rows]


# ------------------------------------------------------------------------------ raw primitives


def _spmm_fwd_impl(rowptr: Tensor, col: Tensor, weight: Tensor | None, x: Tensor, reduce: str) -> tuple[Tensor, Tensor]:
    with _kernels(x) as k:
        out, arg = k.spmm_fwd(rowptr, col, weight, x, reduce)
    return out, arg if arg is not None else _empty_long(x)


spmm_fwd = torch.library.custom_op(f"{_LIB}::spmm_fwd", _spmm_fwd_impl, mutates_args=())


@spmm_fwd.register_fake
def _(rowptr, col, weight, x, reduce):
    out = x.new_empty(rowptr.shape[0] - 1, x.shape[1])
    arg = x.new_empty(out.shape, dtype=torch.long) if reduce == "max" else x.new_empty(0, dtype=torch.long)
    return out, arg


def _spmm_max_bwd_impl(
    rowptr: Tensor,
    row: Tensor,
    col: Tensor,
    t_rowptr: Tensor,
    t_col: Tensor,
    t_perm: Tensor,
    weight: Tensor | None,
    x: Tensor,
    arg: Tensor,
    grad_out: Tensor,
    need_x: bool,
    need_w: bool,
) -> tuple[Tensor, Tensor]:
    with _kernels(x) as k:
        gx, gw = k.spmm_max_bwd(rowptr, row, col, t_rowptr, t_col, t_perm, weight, x, arg, grad_out, need_x, need_w)
    return _or_empty(gx, x), _or_empty(gw, x)


spmm_max_bwd = torch.library.custom_op(f"{_LIB}::spmm_max_bwd", _spmm_max_bwd_impl, mutates_args=())


@spmm_max_bwd.register_fake
def _(rowptr, row, col, t_rowptr, t_col, t_perm, weight, x, arg, grad_out, need_x, need_w):
    gx = torch.empty_like(x) if need_x else x.new_empty(0)
    gw = torch.empty_like(weight) if need_w and weight is not None else x.new_empty(0)
    return gx, gw


def _edge_dot_impl(row: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    with _kernels(a) as k:
        return k.edge_dot(row, col, a, b)


edge_dot = torch.library.custom_op(f"{_LIB}::edge_dot", _edge_dot_impl, mutates_args=())


@edge_dot.register_fake
def _(row, col, a, b):
    return a.new_empty(row.shape[0])


def _outer_bwd_impl(
    rowptr: Tensor,
    col: Tensor,
    t_rowptr: Tensor,
    t_perm: Tensor,
    z: Tensor,
    h: Tensor,
    g: Tensor,
    need_z: bool,
    need_h: bool,
    buckets: Tensor,
) -> tuple[Tensor, Tensor]:
    with _kernels(z) as k:
        gz, gh = k.outer_bwd(rowptr, col, t_rowptr, t_perm, z, h, g, need_z, need_h, buckets)
    return _or_empty(gz, z), _or_empty(gh, z)


outer_bwd = torch.library.custom_op(f"{_LIB}::outer_bwd", _outer_bwd_impl, mutates_args=())


@outer_bwd.register_fake
def _(rowptr, col, t_rowptr, t_perm, z, h, g, need_z, need_h, buckets):
    return (torch.empty_like(z) if need_z else z.new_empty(0)), (torch.empty_like(h) if need_h else z.new_empty(0))


# ---------------------------------------------------------------------------- scatter, segment


def _scatter_impl(src: Tensor, index: Tensor, num_segments: int, reduce: str) -> tuple[Tensor, Tensor]:
    """Used for max/min (both backends) and for every reduction on the Triton backend; the torch
    backend's sum/mean are plain aten ops (see :func:`gnnkit.ops.reduce._scatter`)."""
    with _kernels(src) as k:
        out, arg = k.scatter_fwd(src, index, num_segments, reduce)
    return out, arg if arg is not None else _empty_long(src)


scatter = torch.library.custom_op(f"{_LIB}::scatter", _scatter_impl, mutates_args=())


@scatter.register_fake
def _(src, index, num_segments, reduce):
    out = src.new_empty((num_segments, *src.shape[1:]))
    arg = src.new_empty(out.shape, dtype=torch.long) if reduce in ("max", "min") else src.new_empty(0, dtype=torch.long)
    return out, arg


def _scatter_setup(ctx, inputs, output):
    src, index, num_segments, reduce = inputs
    ctx.reduce, ctx.n_rows, ctx.num_segments = reduce, src.shape[0], num_segments
    ctx.save_for_backward(index, output[1])


def _scatter_backward(ctx, grad_out, grad_arg):
    index, arg = ctx.saved_tensors
    if ctx.reduce in ("max", "min"):
        return _grad_from_arg(grad_out, arg, ctx.n_rows), None, None, None
    if ctx.reduce == "mean":  # divide the [S, *] gradient before gathering it to [E, *]
        ones = torch.ones(index.shape[0], dtype=grad_out.dtype, device=index.device)
        count = grad_out.new_zeros(ctx.num_segments).index_add_(0, index, ones).clamp_(min=1)
        grad_out = grad_out / _bcast(count, grad_out)
    return grad_out.index_select(0, index), None, None, None


torch.library.register_autograd(f"{_LIB}::scatter", _scatter_backward, setup_context=_scatter_setup)


def _segment_impl(src: Tensor, rowptr: Tensor, reduce: str) -> tuple[Tensor, Tensor]:
    with _kernels(src) as k:
        out, arg = k.segment_fwd(src, rowptr, reduce)
    return out, arg if arg is not None else _empty_long(src)


segment = torch.library.custom_op(f"{_LIB}::segment", _segment_impl, mutates_args=())


@segment.register_fake
def _(src, rowptr, reduce):
    out = src.new_empty((rowptr.shape[0] - 1, *src.shape[1:]))
    arg = src.new_empty(out.shape, dtype=torch.long) if reduce in ("max", "min") else src.new_empty(0, dtype=torch.long)
    return out, arg


def _segment_setup(ctx, inputs, output):
    src, rowptr, reduce = inputs
    ctx.reduce, ctx.n_rows = reduce, src.shape[0]
    ctx.save_for_backward(rowptr, output[1])


def _segment_backward(ctx, grad_out, grad_arg):
    rowptr, arg = ctx.saved_tensors
    if ctx.reduce in ("max", "min"):
        return _grad_from_arg(grad_out, arg, ctx.n_rows), None, None
    counts = rowptr[1:] - rowptr[:-1]
    g = grad_out
    if ctx.reduce == "mean":
        g = g / _bcast(counts.clamp(min=1).to(g.dtype), g)
    return torch.repeat_interleave(g, counts, dim=0, output_size=ctx.n_rows), None, None


torch.library.register_autograd(f"{_LIB}::segment", _segment_backward, setup_context=_segment_setup)


# ---------------------------------------------------------------------------------------- spmm


def _spmm_impl(
    rowptr: Tensor,
    col: Tensor,
    row: Tensor,
    t_rowptr: Tensor,
    t_col: Tensor,
    t_perm: Tensor,
    weight: Tensor | None,
    x: Tensor,
    reduce: str,
) -> tuple[Tensor, Tensor]:
    """``reduce_{u -> v} w_uv x[u]`` over a CSR (its transpose is passed for the backward)."""
    with _kernels(x) as k:
        out, arg = k.spmm_fwd(rowptr, col, weight, x, reduce)
    return out, arg if arg is not None else _empty_long(x)


spmm = torch.library.custom_op(f"{_LIB}::spmm", _spmm_impl, mutates_args=())


@spmm.register_fake
def _(rowptr, col, row, t_rowptr, t_col, t_perm, weight, x, reduce):
    out = x.new_empty(rowptr.shape[0] - 1, x.shape[1])
    arg = x.new_empty(out.shape, dtype=torch.long) if reduce == "max" else x.new_empty(0, dtype=torch.long)
    return out, arg


def _spmm_setup(ctx, inputs, output):
    rowptr, col, row, t_rowptr, t_col, t_perm, weight, x, reduce = inputs
    ctx.reduce, ctx.has_weight = reduce, weight is not None
    ctx.save_for_backward(rowptr, col, row, t_rowptr, t_col, t_perm, _or_empty(weight, x), x, output[1])


def _spmm_backward(ctx, grad_out, grad_arg):
    rowptr, col, row, t_rowptr, t_col, t_perm, weight, x, arg = ctx.saved_tensors
    weight = weight if ctx.has_weight else None
    need_w = ctx.needs_input_grad[6] and weight is not None
    need_x = ctx.needs_input_grad[7]
    grad_out = grad_out.contiguous()
    grad_x = grad_w = None
    if ctx.reduce == "max":
        gx, gw = _ops(grad_out).spmm_max_bwd(
            rowptr, row, col, t_rowptr, t_col, t_perm, weight, x, arg, grad_out, need_x, need_w
        )
        return None, None, None, None, None, None, (gw if need_w else None), (gx if need_x else None), None
    if ctx.reduce == "mean":
        grad_out = grad_out / (rowptr[1:] - rowptr[:-1]).clamp(min=1).to(grad_out.dtype).unsqueeze(1)
    if need_x:
        w_t = weight.index_select(0, t_perm) if weight is not None else None
        grad_x = _ops(grad_out).spmm_fwd(t_rowptr, t_col, w_t, grad_out, "sum")[0]
    if need_w:
        grad_w = _ops(grad_out).edge_dot(row, col, grad_out, x)
    return None, None, None, None, None, None, grad_w, grad_x, None


torch.library.register_autograd(f"{_LIB}::spmm", _spmm_backward, setup_context=_spmm_setup)


# ----------------------------------------------------------------------- outer-product aggregation


def _outer_impl(
    rowptr: Tensor, col: Tensor, t_rowptr: Tensor, t_perm: Tensor, z: Tensor, h: Tensor, buckets: Tensor
) -> Tensor:
    """``S[v] = sum_e z[e] ⊗ h[col[e]]`` (``z`` in CSR order)."""
    with _kernels(z) as k:
        return k.outer_fwd(rowptr, col, z, h, buckets)


outer = torch.library.custom_op(f"{_LIB}::outer", _outer_impl, mutates_args=())


@outer.register_fake
def _(rowptr, col, t_rowptr, t_perm, z, h, buckets):
    return z.new_empty(rowptr.shape[0] - 1, z.shape[1], h.shape[1])


def _outer_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _outer_backward(ctx, grad_out):
    rowptr, col, t_rowptr, t_perm, z, h, buckets = ctx.saved_tensors
    need_z, need_h = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
    gz, gh = _ops(grad_out).outer_bwd(rowptr, col, t_rowptr, t_perm, z, h, grad_out.contiguous(), need_z, need_h, buckets)
    return None, None, None, None, (gz if need_z else None), (gh if need_h else None), None


torch.library.register_autograd(f"{_LIB}::outer", _outer_backward, setup_context=_outer_setup)


# ------------------------------------------------------------------- eager calls, no dispatcher

_PLAIN_TYPES = (Tensor, torch.nn.Parameter)
_NOT_TENSORS = (str, int, float, bool, type(None))


def _plain(*args: object) -> bool:
    """True in eager mode when every tensor argument is an ordinary tensor (no fake, functional,
    fx proxy or other subclass): then the implementations may be called directly."""
    if torch.compiler.is_compiling():
        return False
    return all(type(a) in _PLAIN_TYPES for a in args if not isinstance(a, _NOT_TENSORS))


class _Direct:
    """The non-differentiable ops that backward passes call, without the dispatcher."""

    spmm_fwd = staticmethod(_spmm_fwd_impl)
    spmm_max_bwd = staticmethod(_spmm_max_bwd_impl)
    edge_dot = staticmethod(_edge_dot_impl)
    outer_bwd = staticmethod(_outer_bwd_impl)


def _ops(t: Tensor):
    """What a backward pass calls: the implementations in eager mode, the registered ops when traced."""
    return _Direct if _plain(t) else torch.ops.gnnkit


def _eager_function(name, impl, setup, backward) -> type[torch.autograd.Function]:
    """A :class:`torch.autograd.Function` running ``impl`` with the op's own setup and backward."""

    # forward(ctx, ...) rather than a separate setup_context: apply() then skips binding the
    # arguments to forward's signature (inspect.signature on every call).
    def forward(ctx, *args):
        output = impl(*args)
        setup(ctx, args, output)
        if isinstance(output, tuple):
            ctx.mark_non_differentiable(*output[1:])  # the arg index of max/min
        return output

    return type(f"{name}_eager", (torch.autograd.Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


_DIFFERENTIABLE = {
    name: (impl, _eager_function(name, impl, setup, backward))
    for name, impl, setup, backward in (
        ("scatter", _scatter_impl, _scatter_setup, _scatter_backward),
        ("segment", _segment_impl, _segment_setup, _segment_backward),
        ("spmm", _spmm_impl, _spmm_setup, _spmm_backward),
        ("outer", _outer_impl, _outer_setup, _outer_backward),
    )
}


def call(name: str, *args):
    """Runs the differentiable op ``name`` (``scatter``, ``segment``, ``spmm``, ``outer``): the
    registered ``torch.ops.gnnkit`` op when traced or compiled, else its implementation directly
    (through an autograd Function when an input requires grad). Same kernels, same results."""
    if not _plain(*args):
        return getattr(torch.ops.gnnkit, name)(*args)
    impl, function = _DIFFERENTIABLE[name]
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return function.apply(*args)
    return impl(*args)
