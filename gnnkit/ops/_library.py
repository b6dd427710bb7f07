"""The kernel layer's op table: every op declared once, both execution paths built from it.

**Kernels.** A primitive that both backends implement is declared once, by its shape function
under :func:`kernel`. That function's annotated argument list is *the* argument list of the
kernel: the ``torch.library`` schema is inferred from it, :mod:`gnnkit.ops._torch_kernels` (CPU)
and :mod:`gnnkit.ops._triton_kernels` (CUDA) each define a function of the same name with the same
arguments (tests/ops/test_backend.py checks both against it), and its body, which allocates the
outputs without computing them, is the fake implementation that gives ``torch.compile`` their
shapes. Each kernel becomes the op ``torch.ops.gnnkit.<name>``, whose implementation takes the
torch or Triton function from :func:`gnnkit.ops._backend.kernels_for` at run time. Ops cannot
return ``None``: an output a backend leaves out (``arg`` of a sum, a gradient not asked for)
travels as an empty tensor.

**Differentiable ops.** :data:`OPS` holds one :class:`Op` row per differentiable op: the kernel
its forward runs, the tensors only its backward needs (passed after the kernel's arguments), its
``setup_context`` and its backward. From each row :func:`_build` makes both paths:

* the registered op (``custom_op`` + ``register_fake`` + ``register_autograd``). Registered ops
  are opaque to ``torch.compile``: a compiled graph keeps them as single nodes, so layers and
  models built on them compile with ``fullgraph=True`` and dynamic shapes, forward and backward;
* the eager path (:func:`call`): a Python custom op costs about 75 us per call on CPU in its
  dispatch alone, close to the 92 us of a Cora-sized spmm forward, so on ordinary tensors the
  same implementation, setup and backward run through a plain :class:`torch.autograd.Function`,
  and backward passes call the kernels' implementations directly (:func:`_ops`). Under
  ``torch.compile``, ``torch.fx`` or on fake/functional tensors the registered ops are used.

The backward passes call kernels only (no floating-point atomics), so they stay deterministic on
both backends.

Autocast does not reach into a custom op, but its thread-local state would still recast the aten
calls inside the torch kernels (aten's sparse CPU products have no bfloat16 kernel): every
implementation runs with autocast off (:class:`_kernels`), and half-precision inputs are handled
by the kernels themselves (float32 accumulation, output in the input dtype).

These are internal: the public functions in :mod:`gnnkit.ops` check their arguments and call them
through :func:`call`. Adding an op: see :mod:`gnnkit.ops._backend`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Callable

import torch
from torch import Tensor

from gnnkit.ops._backend import kernels_for

_LIB = "gnnkit"


class _kernels:
    """``with _kernels(t) as k``: the kernels for ``t``, called with autocast switched off (entered
    only when autocast is on: the context costs microseconds, a fair part of a small op)."""

    __slots__ = ("kernels", "no_autocast")

    def __init__(self, t: Tensor) -> None:
        self.kernels: ModuleType = kernels_for(t)
        self.no_autocast = torch.autocast(t.device.type, enabled=False) if _autocast_on(t.device.type) else None

    def __enter__(self) -> ModuleType:
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


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


def _grad_from_arg(grad_out: Tensor, arg: Tensor, n_rows: int) -> Tensor:
    # arg == n_rows marks an empty segment: its gradient lands in a spare row that is dropped.
    grad = grad_out.new_zeros((n_rows + 1, *grad_out.shape[1:]))
    grad.scatter_(0, arg, grad_out)
    return grad[:n_rows]


def _arg(out: Tensor, present: bool) -> Tensor:
    """The fake ``arg`` of a max/min (``out``'s shape, int64), or the empty one of a sum/mean."""
    return out.new_empty(out.shape if present else (0,), dtype=torch.long)


def _grad(like: Tensor | None, needed: bool, data: Tensor) -> Tensor:
    """A fake gradient shaped like ``like``, or the empty placeholder when it is not computed."""
    return torch.empty_like(like) if needed and like is not None else data.new_empty(0)


# ------------------------------------------------------------------------------------ kernels


@dataclass(frozen=True)
class Kernel:
    """One primitive of both backends, as declared by :func:`kernel`.

    Attributes:
        name: the op name and the function name in each backend module.
        shape: the declaration: argument list (the op schema) and fake implementation.
        run: the implementation: the current backend's function on the first ``arity`` arguments,
            ``None`` outputs made empty.
        arity: number of arguments.
    """

    name: str
    shape: Callable[..., object]
    run: Callable[..., object]
    arity: int


KERNELS: dict[str, Kernel] = {}


def _runner(name: str, on: int, arity: int, absent: torch.dtype | None, pair: bool) -> Callable[..., object]:
    """The implementation of kernel ``name``: the backend chosen by argument ``on``, called with
    the first ``arity`` arguments (a differentiable op passes its backward's tensors after them;
    a full slice of a tuple is the tuple itself); a ``None`` output of a pair becomes an empty
    tensor of dtype ``absent`` (default: argument ``on``'s)."""
    if not pair:

        def run(*args):
            with _kernels(args[on]) as k:
                return getattr(k, name)(*args[:arity])

        return run

    def run_pair(*args):
        data = args[on]
        with _kernels(data) as k:
            a, b = getattr(k, name)(*args[:arity])
        return (a if a is not None else data.new_empty(0, dtype=absent)), (
            b if b is not None else data.new_empty(0, dtype=absent)
        )

    return run_pair


def kernel(on: str, absent: torch.dtype | None = None) -> Callable[[Callable], Kernel]:
    """Declares the kernel named like the decorated shape function and registers it as an op.

    Args:
        on: the argument whose device (and the backend setting) picks the implementation.
        absent: dtype of an output a backend returns as ``None`` (default: ``on``'s dtype).
    """

    def declare(shape: Callable) -> Kernel:
        sig = inspect.signature(shape)
        returns = str(sig.return_annotation).replace(" ", "")
        if returns not in ("Tensor", "tuple[Tensor,Tensor]"):
            raise TypeError(f"kernel {shape.__name__} must return Tensor or tuple[Tensor, Tensor], got {returns}")
        pair = returns != "Tensor"
        run = _runner(shape.__name__, list(sig.parameters).index(on), len(sig.parameters), absent, pair)
        schema = torch.library.infer_schema(shape, mutates_args=())
        op = torch.library.custom_op(f"{_LIB}::{shape.__name__}", run, mutates_args=(), schema=schema)
        op.register_fake(shape)
        k = KERNELS[shape.__name__] = Kernel(shape.__name__, shape, run, len(sig.parameters))
        return k

    return declare


@kernel(on="src", absent=torch.long)
def scatter_fwd(src: Tensor, index: Tensor, num_segments: int, reduce: str) -> tuple[Tensor, Tensor]:
    """``out[s] = reduce{src[i] : index[i] == s}``; ``arg`` for max/min."""
    out = src.new_empty((num_segments, *src.shape[1:]))
    return out, _arg(out, reduce in ("max", "min"))


@kernel(on="src", absent=torch.long)
def segment_fwd(src: Tensor, rowptr: Tensor, reduce: str) -> tuple[Tensor, Tensor]:
    """``out[s] = reduce(src[rowptr[s]:rowptr[s+1]])``; ``arg`` for max/min."""
    out = src.new_empty((rowptr.shape[0] - 1, *src.shape[1:]))
    return out, _arg(out, reduce in ("max", "min"))


@kernel(on="x", absent=torch.long)
def spmm_fwd(rowptr: Tensor, col: Tensor, weight: Tensor | None, x: Tensor, reduce: str) -> tuple[Tensor, Tensor]:
    """``out[v] = reduce_{e in rowptr[v]:rowptr[v+1]} weight[e] * x[col[e]]``; ``arg`` (max) is
    the edge position ``e``."""
    out = x.new_empty(rowptr.shape[0] - 1, x.shape[1])
    return out, _arg(out, reduce == "max")


@kernel(on="x")
def spmm_max_bwd(
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
    """Gradients ``(grad_x, grad_w)`` of ``spmm_fwd(..., "max")``: each output element's gradient
    goes to the edge ``arg`` that won it."""
    return _grad(x, need_x, x), _grad(weight, need_w, x)


@kernel(on="a")
def edge_dot(row: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``out[e] = sum_f a[row[e], f] * b[col[e], f]`` (SDDMM)."""
    return a.new_empty(row.shape[0])


@kernel(on="z")
def outer_fwd(rowptr: Tensor, col: Tensor, z: Tensor, h: Tensor, buckets: Tensor) -> Tensor:
    """``S[v] = sum_{e in rowptr[v]:rowptr[v+1]} z[e] ⊗ h[col[e]]`` (``z`` in CSR order);
    ``buckets``: :attr:`gnnkit.ops.DegreeBuckets.packed`, or empty (the CPU kernel then groups
    the targets itself)."""
    return z.new_empty(rowptr.shape[0] - 1, z.shape[1], h.shape[1])


@kernel(on="z")
def outer_bwd(
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
    """Gradients ``(grad_z, grad_h)`` of ``outer_fwd`` for ``g = dL/dS``."""
    return _grad(z, need_z, z), _grad(h, need_h, z)


# ------------------------------------------------------------------------- differentiable ops


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


def _spmm_setup(ctx, inputs, output):
    rowptr, col, weight, x, reduce, row, t_rowptr, t_col, t_perm = inputs
    ctx.reduce, ctx.has_weight = reduce, weight is not None
    ctx.save_for_backward(rowptr, col, row, t_rowptr, t_col, t_perm, weight if weight is not None else x.new_empty(0), x, output[1])


def _spmm_backward(ctx, grad_out, grad_arg):
    rowptr, col, row, t_rowptr, t_col, t_perm, weight, x, arg = ctx.saved_tensors
    weight = weight if ctx.has_weight else None
    need_w = ctx.needs_input_grad[2] and weight is not None
    need_x = ctx.needs_input_grad[3]
    grad_out = grad_out.contiguous()
    grad_x = grad_w = None
    if ctx.reduce == "max":
        gx, gw = _ops(grad_out).spmm_max_bwd(
            rowptr, row, col, t_rowptr, t_col, t_perm, weight, x, arg, grad_out, need_x, need_w
        )
        return None, None, (gw if need_w else None), (gx if need_x else None), None, None, None, None, None
    if ctx.reduce == "mean":
        grad_out = grad_out / (rowptr[1:] - rowptr[:-1]).clamp(min=1).to(grad_out.dtype).unsqueeze(1)
    if need_x:
        w_t = weight.index_select(0, t_perm) if weight is not None else None
        grad_x = _ops(grad_out).spmm_fwd(t_rowptr, t_col, w_t, grad_out, "sum")[0]
    if need_w:
        grad_w = _ops(grad_out).edge_dot(row, col, grad_out, x)
    return None, None, grad_w, grad_x, None, None, None, None, None


def _outer_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _outer_backward(ctx, grad_out):
    rowptr, col, z, h, buckets, t_rowptr, t_perm = ctx.saved_tensors
    need_z, need_h = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
    gz, gh = _ops(grad_out).outer_bwd(rowptr, col, t_rowptr, t_perm, z, h, grad_out.contiguous(), need_z, need_h, buckets)
    return None, None, (gz if need_z else None), (gh if need_h else None), None, None, None


@dataclass(frozen=True)
class Op:
    """One differentiable op: ``torch.ops.gnnkit.<name>(*kernel's arguments, *extra)``.

    Attributes:
        name: the op's name.
        kernel: the kernel its forward runs on the leading arguments.
        extra: names of the tensors only the backward needs (e.g. the CSR transpose), passed
            after the kernel's arguments.
        setup: ``setup_context(ctx, inputs, output)``.
        backward: ``backward(ctx, *grad_outputs)``, one gradient (or ``None``) per input.
    """

    name: str
    kernel: Kernel
    extra: tuple[str, ...]
    setup: Callable[..., None]
    backward: Callable[..., tuple]


OPS: tuple[Op, ...] = (
    Op("scatter", KERNELS["scatter_fwd"], (), _scatter_setup, _scatter_backward),
    Op("segment", KERNELS["segment_fwd"], (), _segment_setup, _segment_backward),
    Op("spmm", KERNELS["spmm_fwd"], ("row", "t_rowptr", "t_col", "t_perm"), _spmm_setup, _spmm_backward),
    Op("outer", KERNELS["outer_fwd"], ("t_rowptr", "t_perm"), _outer_setup, _outer_backward),
)
# ------------------------------------------------------------------- eager calls, no dispatcher

_PLAIN_TYPES = (Tensor, torch.nn.Parameter)
_NOT_TENSORS = (str, int, float, bool, type(None))


def _plain(*args: object) -> bool:
    """True in eager mode when every tensor argument is an ordinary tensor (no fake, functional,
    fx proxy or other subclass): then the implementations may be called directly."""
    if torch.compiler.is_compiling():
        return False
    return all(type(a) in _PLAIN_TYPES for a in args if not isinstance(a, _NOT_TENSORS))


# The kernels' implementations, for backward passes in eager mode (no dispatcher round trip).
_Direct = SimpleNamespace(**{name: k.run for name, k in KERNELS.items()})


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


def _build(op: Op) -> tuple[Callable[..., object], type[torch.autograd.Function]]:
    """Registers ``torch.ops.gnnkit.<op.name>`` from its row and returns the eager path's
    implementation and autograd Function (same kernel, setup and backward)."""
    k, n = op.kernel, op.kernel.arity
    impl = k.run  # it passes the kernel its own arguments only
    schema = torch.library.infer_schema(k.shape, mutates_args=())
    args, returns = schema.split(") -> ", 1)
    schema = args + "".join(f", Tensor {name}" for name in op.extra) + ") -> " + returns
    registered = torch.library.custom_op(f"{_LIB}::{op.name}", impl, mutates_args=(), schema=schema)
    registered.register_fake(lambda *args: k.shape(*args[:n]))
    registered.register_autograd(op.backward, setup_context=op.setup)
    return impl, _eager_function(op.name, impl, op.setup, op.backward)


_DIFFERENTIABLE = {op.name: _build(op) for op in OPS}


def call(name: str, *args):
    """Runs the differentiable op ``name`` (a row of :data:`OPS`; arguments: the kernel's, then
    the row's ``extra`` tensors): the registered ``torch.ops.gnnkit`` op when traced or compiled,
    else its implementation directly (through an autograd Function when an input requires grad).
    Same kernels, same results."""
    if not _plain(*args):
        return getattr(torch.ops.gnnkit, name)(*args)
    impl, function = _DIFFERENTIABLE[name]
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return function.apply(*args)
    return impl(*args)
