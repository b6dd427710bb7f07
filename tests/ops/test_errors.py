"""Every documented bad input raises the documented error, naming the argument."""

import pytest
import torch

from gnnkit.ops import CSR, scatter, scatter_softmax, segment, set_backend, spmm, use_backend
from gnnkit.ops._checks import check_same_device


def small_csr() -> CSR:
    return CSR.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)


@pytest.mark.parametrize(
    "edge_index,num_nodes,error,match",
    [
        (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 2, TypeError, "edge_index must be an int64 or int32"),
        ([[0, 1], [1, 0]], 2, TypeError, "edge_index must be a torch.Tensor"),
        (torch.tensor([[0, 1], [1, 0], [0, 0]]), 2, ValueError, r"edge_index must have shape \[2, E\]"),
        (torch.tensor([0, 1]), 2, ValueError, r"edge_index must have shape \[2, E\]"),
        (torch.tensor([[0, -1], [1, 0]]), 2, ValueError, r"edge_index\[0\] \(sources\) contains a negative"),
        (torch.tensor([[0, 1], [1, 5]]), 2, ValueError, r"edge_index\[1\] \(targets\) contains 5.*num_nodes=2"),
        (torch.tensor([[0, 1], [1, 0]]), 2.0, TypeError, "num_nodes must be an int"),
        (torch.tensor([[0, 1], [1, 0]]), True, TypeError, "num_nodes must be an int"),
        (torch.tensor([[0, 1], [1, 0]]), -1, ValueError, "num_nodes must be >= 0"),
        (torch.tensor([[0, 1], [1, 0]]), (2, 2, 2), ValueError, "num_src, num_dst"),
        (torch.tensor([[0, 2], [1, 0]]), (3, 1), ValueError, r"edge_index\[1\] \(targets\) contains 1.*num_nodes\[1\]=1"),
        (torch.tensor([[0, 3], [0, 0]]), (3, 1), ValueError, r"edge_index\[0\] \(sources\) contains 3.*num_nodes\[0\]=3"),
    ],
)
def test_csr_errors(edge_index, num_nodes, error, match):
    with pytest.raises(error, match=match):
        CSR.from_edge_index(edge_index, num_nodes)


SRC = torch.randn(4, 3)
INDEX = torch.tensor([0, 1, 1, 2])


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((SRC.long(), INDEX, 3, "sum"), TypeError, "src must be a floating-point tensor"),
        ((SRC.numpy(), INDEX, 3, "sum"), TypeError, "src must be a torch.Tensor"),
        ((torch.tensor(1.0), INDEX, 3, "sum"), ValueError, "src must have at least 1 dimension"),
        ((SRC, INDEX.float(), 3, "sum"), TypeError, "index must be an int64 or int32"),
        ((SRC, INDEX.short(), 3, "sum"), TypeError, "index must be an int64 or int32"),
        ((SRC, INDEX[:3], 3, "sum"), ValueError, r"index must have shape \[src.size\(0\)\] = \[4\]"),
        ((SRC, INDEX.view(2, 2), 3, "sum"), ValueError, "index must have shape"),
        ((SRC, torch.tensor([0, -1, 1, 2]), 3, "sum"), ValueError, "index contains a negative value"),
        ((SRC, INDEX, 2, "sum"), ValueError, "index contains 2, which is out of range for num_segments=2"),
        # mean and max take other code paths (index_add_'s own bounds check vs. a check up front)
        ((SRC, torch.tensor([0, -1, 1, 2]), 3, "mean"), ValueError, "index contains a negative value"),
        ((SRC, INDEX, 2, "mean"), ValueError, "index contains 2, which is out of range for num_segments=2"),
        ((SRC, INDEX, 2, "max"), ValueError, "index contains 2, which is out of range for num_segments=2"),
        ((SRC, INDEX, -1, "sum"), ValueError, "num_segments must be >= 0"),
        ((SRC, INDEX, 3.0, "sum"), TypeError, "num_segments must be an int"),
        ((SRC, INDEX, 3, "prod"), ValueError, "reduce must be one of"),
    ],
)
def test_scatter_errors(args, error, match):
    with pytest.raises(error, match=match):
        scatter(*args)


def test_scatter_num_segments_may_be_a_scalar_tensor():
    torch.testing.assert_close(scatter(SRC, INDEX, torch.tensor(3)), scatter(SRC, INDEX, 3))
    with pytest.raises(TypeError, match="num_segments must be an int, got a tensor of shape"):
        scatter(SRC, INDEX, torch.tensor([3, 4]))


def test_scatter_softmax_checks_its_arguments():
    with pytest.raises(ValueError, match="index contains 3"):
        scatter_softmax(SRC, torch.tensor([0, 1, 2, 3]), 3)


@pytest.mark.parametrize(
    "src,rowptr,reduce,error,match",
    [
        (SRC.int(), torch.tensor([0, 4]), "sum", TypeError, "src must be a floating-point tensor"),
        (SRC, torch.tensor([0.0, 4.0]), "sum", TypeError, "rowptr must be an int64 or int32"),
        (SRC, torch.tensor([[0, 4]]), "sum", ValueError, "rowptr must be a 1-D tensor"),
        (SRC, torch.tensor([], dtype=torch.long), "sum", ValueError, "rowptr must be a 1-D tensor with at least one"),
        (SRC, torch.tensor([1, 4]), "sum", ValueError, r"rowptr must start at 0 and end at src.size\(0\)=4"),
        (SRC, torch.tensor([0, 3]), "sum", ValueError, r"rowptr must start at 0 and end at src.size\(0\)=4"),
        (SRC, torch.tensor([0, 3, 2, 4]), "sum", ValueError, "rowptr must be non-decreasing"),
        (SRC, torch.tensor([0, 4]), "median", ValueError, "reduce must be one of"),
    ],
)
def test_segment_errors(src, rowptr, reduce, error, match):
    with pytest.raises(error, match=match):
        segment(src, rowptr, reduce)


X = torch.randn(3, 2)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(csr=torch.tensor([[0, 1], [1, 0]]), x=X), TypeError, "csr must be a gnnkit.ops.CSR"),
        (dict(x=X.long()), TypeError, "x must be a floating-point tensor"),
        (dict(x=X[:, 0]), ValueError, "x must have at least 2 dimension"),
        (dict(x=X.view(3, 2, 1)), ValueError, r"x must have shape \[num_nodes, F\]"),
        (dict(x=X[:2]), ValueError, "x has 2 rows but the graph has num_src=3"),
        (dict(x=X, edge_weight=torch.ones(3, dtype=torch.long)), TypeError, "edge_weight must be a floating-point"),
        (dict(x=X, edge_weight=torch.ones(4)), ValueError, r"edge_weight must have shape \[E\] = \[3\]"),
        (dict(x=X, edge_weight=torch.ones(3, 1)), ValueError, r"edge_weight must have shape \[E\]"),
        (dict(x=X, edge_weight=torch.ones(3, dtype=torch.float64)), TypeError, "edge_weight dtype torch.float64"),
        (dict(x=X, reduce="min"), ValueError, r"reduce must be one of \('sum', 'mean', 'max'\)"),
        (dict(x=X, weight_order="sorted"), ValueError, "weight_order must be"),
    ],
)
def test_spmm_errors(kwargs, error, match):
    kwargs.setdefault("csr", small_csr())
    with pytest.raises(error, match=match):
        spmm(**kwargs)


def test_mismatched_devices():
    # A "meta" tensor stands in for a second device on a CPU-only machine.
    meta_src = torch.empty(4, 3, device="meta")
    with pytest.raises(ValueError, match="same device, got src on meta, index on cpu"):
        scatter(meta_src, INDEX, 3)
    with pytest.raises(ValueError, match="same device, got src on meta, rowptr on cpu"):
        segment(meta_src, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="same device, got x on meta, csr on cpu"):
        spmm(small_csr(), torch.empty(3, 2, device="meta"))
    with pytest.raises(ValueError, match="edge_weight on meta"):
        spmm(small_csr(), X, torch.empty(3, device="meta"))
    with pytest.raises(ValueError, match="a on cpu, b on meta"):
        check_same_device(a=X, b=meta_src, c=None)
    check_same_device(a=X, b=None, c=INDEX)


def test_backend_names():
    with pytest.raises(ValueError, match="backend must be one of"):
        set_backend("cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        with use_backend("numpy"):
            pass


def test_torch_backend_cpu_only_reductions_name_the_cause():
    """aten's max/min/mean sparse reductions exist on CPU only: on another device the torch
    kernels say so (a meta tensor stands in for a CUDA one here)."""
    from gnnkit.ops import _torch_kernels

    rowptr, col = torch.tensor([0, 1, 2], device="meta"), torch.tensor([1, 0], device="meta")
    x = torch.empty(2, 3, device="meta")
    for reduce in ("max", "mean"):
        with pytest.raises(ValueError, match="exist on CPU only.*use the Triton backend"):
            _torch_kernels.spmm_fwd(rowptr, col, None, x, reduce)
    with pytest.raises(ValueError, match="max reductions with aten kernels that exist on CPU only"):
        _torch_kernels.segment_fwd(torch.empty(2, 3, device="meta"), rowptr, "max")
