"""One kernel interface: both backends implement every primitive of Kernels with its signature,
and every primitive is a registered torch.library op."""

import inspect

import torch

from gnnkit.ops import _backend, _torch_kernels, _triton_kernels
from gnnkit.ops._backend import KERNEL_NAMES, Kernels, kernels_for, use_backend


def _params(fn):
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_both_backends_implement_the_interface_with_its_signatures():
    assert set(KERNEL_NAMES) == {"scatter_fwd", "segment_fwd", "spmm_fwd", "spmm_max_bwd", "edge_dot", "outer_fwd", "outer_bwd"}
    for module in (_torch_kernels, _triton_kernels):
        for name in KERNEL_NAMES:
            impl = getattr(module, name, None)
            assert callable(impl), f"{module.__name__} lacks {name}"
            assert _params(impl) == _params(getattr(Kernels, name)), f"{module.__name__}.{name} signature"


def test_every_primitive_is_a_registered_op():
    ops = {"scatter", "segment", "spmm", "spmm_fwd", "spmm_max_bwd", "edge_dot", "outer", "outer_bwd"}
    for name in ops:
        assert hasattr(torch.ops.gnnkit, name), name


def test_dispatch():
    t = torch.zeros(1)
    assert kernels_for(t) is _torch_kernels
    with use_backend("triton"):
        assert kernels_for(t) is _triton_kernels
    assert _backend.get_backend() == "auto"
