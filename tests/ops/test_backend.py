"""One kernel interface: both backends implement every kernel declared in _library.KERNELS with
its argument list, and every kernel and differentiable op is a registered torch.library op."""

import inspect

import torch

from gnnkit.ops import _backend, _library, _torch_kernels, _triton_kernels
from gnnkit.ops._backend import kernels_for, use_backend

KERNEL_NAMES = tuple(_library.KERNELS)


def _params(fn):
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_both_backends_implement_the_interface_with_its_signatures():
    assert set(KERNEL_NAMES) == {"scatter_fwd", "segment_fwd", "spmm_fwd", "spmm_max_bwd", "edge_dot", "outer_fwd", "outer_bwd"}
    for module in (_torch_kernels, _triton_kernels):
        for name in KERNEL_NAMES:
            impl = getattr(module, name, None)
            assert callable(impl), f"{module.__name__} lacks {name}"
            assert _params(impl) == _params(_library.KERNELS[name].shape), f"{module.__name__}.{name} signature"


def test_every_primitive_is_a_registered_op():
    ops = {"scatter", "segment", "spmm", "spmm_fwd", "spmm_max_bwd", "edge_dot", "outer", "outer_bwd"}
    assert {op.name for op in _library.OPS} == {"scatter", "segment", "spmm", "outer"}
    ops |= set(KERNEL_NAMES)
    for name in ops:
        assert hasattr(torch.ops.gnnkit, name), name


def test_dispatch():
    t = torch.zeros(1)
    assert kernels_for(t) is _torch_kernels
    with use_backend("triton"):
        assert kernels_for(t) is _triton_kernels
    assert _backend.get_backend() == "auto"
