"""Every Triton kernel under TRITON_INTERPRET=1 on CPU tensors against the torch path.

The conftest sets TRITON_INTERPRET=1 before triton is imported; ``use_backend("triton")`` routes
CPU tensors to the Triton kernels. Graphs are tiny because the interpreter is slow. Max/min
``arg`` outputs must agree exactly, so that the shared backward is identical.
"""

import pytest
import torch

from gnnkit.ops import CSR, _torch_kernels, scatter, scatter_softmax, segment, spmm, use_backend
from gnnkit.ops import _triton_kernels

REDUCES = ["sum", "mean", "max", "min"]


def assert_same(got, want, atol=1e-6, rtol=1e-5):
    out, arg = got
    ref_out, ref_arg = want
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=rtol)
    if ref_arg is None:
        assert arg is None
    else:
        assert torch.equal(arg, ref_arg)


def graph(num_nodes: int, num_edges: int, isolated: int = 0) -> CSR:
    edge_index = torch.randint(0, max(num_nodes - isolated, 1), (2, num_edges))
    return CSR.from_edge_index(edge_index, num_nodes)


# (rows, trailing shape, num_segments): includes empty segments, no rows, no segments, one segment,
# more features than one BLOCK_F tile (130 > 128) and segments longer than one BLOCK_E chunk.
SCATTER_CASES = [(30, (3,), 12), (24, (2, 2), 5), (0, (3,), 4), (0, (2,), 0), (7, (1,), 1), (9, (130,), 3)]


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("rows,trailing,num_segments", SCATTER_CASES)
def test_scatter_fwd(reduce, rows, trailing, num_segments):
    src = torch.randn(rows, *trailing)
    index = torch.randint(0, max(num_segments - 1, 1), (rows,))
    assert_same(
        _triton_kernels.scatter_fwd(src, index, num_segments, reduce),
        _torch_kernels.scatter_fwd(src, index, num_segments, reduce),
    )


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_fwd(reduce):
    src = torch.randn(50, 2, 3)
    rowptr = torch.tensor([0, 0, 3, 40, 40, 41, 50])  # empty, short, long (> BLOCK_E), single
    assert_same(_triton_kernels.segment_fwd(src, rowptr, reduce), _torch_kernels.segment_fwd(src, rowptr, reduce))
    empty = torch.zeros(1, dtype=torch.long)
    assert_same(
        _triton_kernels.segment_fwd(src[:0], empty, reduce), _torch_kernels.segment_fwd(src[:0], empty, reduce)
    )


@pytest.mark.parametrize("reduce", REDUCES)
def test_ties_and_infinities_match(reduce):
    src = torch.tensor([[2.0, -float("inf")], [2.0, -float("inf")], [1.0, float("inf")], [1.0, float("inf")]])
    index = torch.tensor([0, 0, 1, 1])
    assert_same(_triton_kernels.scatter_fwd(src, index, 3, reduce), _torch_kernels.scatter_fwd(src, index, 3, reduce))
    rowptr = torch.tensor([0, 2, 4, 4])
    csr_like = (rowptr, torch.tensor([0, 1, 2, 3]))
    if reduce in ("sum", "max"):  # aten keeps arg = E for a row of -inf; the kernel must too
        x = src.clone()
        assert_same(
            _triton_kernels.spmm_fwd(*csr_like, None, x, reduce), _torch_kernels.spmm_fwd(*csr_like, None, x, reduce)
        )


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("num_nodes,num_edges,isolated,feats", [(16, 50, 3, 5), (6, 0, 0, 4), (0, 0, 0, 3), (1, 3, 0, 2), (4, 6, 0, 130)])
def test_spmm_fwd(reduce, weighted, num_nodes, num_edges, isolated, feats):
    csr = graph(num_nodes, num_edges, isolated)
    x = torch.randn(num_nodes, feats)
    weight = torch.randn(num_edges) if weighted else None
    assert_same(
        _triton_kernels.spmm_fwd(csr.rowptr, csr.col, weight, x, reduce),
        _torch_kernels.spmm_fwd(csr.rowptr, csr.col, weight, x, reduce),
    )


@pytest.mark.parametrize("num_edges,feats", [(40, 5), (0, 3), (12, 70)])
def test_edge_dot(num_edges, feats):
    csr = graph(10, num_edges)
    a, b = torch.randn(10, feats), torch.randn(10, feats)
    torch.testing.assert_close(
        _triton_kernels.edge_dot(csr.row, csr.col, a, b), _torch_kernels.edge_dot(csr.row, csr.col, a, b)
    )


@pytest.mark.parametrize("feats", [6, 64])  # both methods of the torch path
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_spmm_max_bwd(weighted, feats):
    csr = graph(14, 45, 2)
    x = torch.randn(14, feats)
    weight = torch.randn(45) if weighted else None
    _, arg = _torch_kernels.spmm_fwd(csr.rowptr, csr.col, weight, x, "max")
    grad_out = torch.randn(14, feats)
    args = (csr.rowptr, csr.row, csr.col, csr.t_rowptr, csr.t_col, csr.t_perm, weight, x, arg, grad_out, True, weighted)
    got, want = _triton_kernels.spmm_max_bwd(*args), _torch_kernels.spmm_max_bwd(*args)
    torch.testing.assert_close(got[0], want[0])
    if weighted:
        torch.testing.assert_close(got[1], want[1])
    else:
        assert got[1] is None and want[1] is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    csr = graph(12, 40)
    x = torch.randn(12, 8)
    weight = torch.rand(40)
    out, _ = _triton_kernels.spmm_fwd(csr.rowptr, csr.col, weight.to(dtype), x.to(dtype), "sum")
    ref, _ = _torch_kernels.spmm_fwd(csr.rowptr, csr.col, weight.to(dtype).float(), x.to(dtype).float(), "sum")
    assert out.dtype == dtype
    # fp32 accumulation, then one rounding to the output dtype (an fp16 accumulator would drift).
    torch.testing.assert_close(out, ref.to(dtype))
    src = torch.randn(30, 4).to(dtype)
    index = torch.randint(0, 5, (30,))
    out, arg = _triton_kernels.scatter_fwd(src, index, 6, "max")
    ref, ref_arg = _torch_kernels.scatter_fwd(src.float(), index, 6, "max")
    assert torch.equal(out.float(), ref) and torch.equal(arg, ref_arg)


def _forward_backward(fn, *inputs):
    out = fn(*inputs)
    grad_out = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, inputs, grad_out)
    return out, grads


def _both_backends(fn, *inputs):
    with use_backend("torch"):
        ref = _forward_backward(fn, *inputs)
    with use_backend("triton"):
        got = _forward_backward(fn, *inputs)
    torch.testing.assert_close(got[0], ref[0])
    for g, r in zip(got[1], ref[1]):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("reduce", REDUCES)
def test_public_scatter_segment_through_triton(reduce):
    src = torch.randn(30, 2, 2, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 8, (30,))
    _both_backends(lambda s: scatter(s, index, 10, reduce), src)
    rowptr = torch.tensor([0, 5, 5, 17, 30])
    _both_backends(lambda s: segment(s, rowptr, reduce), src)


def test_public_scatter_softmax_through_triton():
    src = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 8, (30,))
    _both_backends(lambda s: scatter_softmax(s, index, 9), src)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_public_spmm_through_triton(reduce, weighted):
    csr = graph(16, 50, 3)
    x = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    if weighted:
        weight = torch.rand(50, dtype=torch.float64, requires_grad=True)
        _both_backends(lambda x, w: spmm(csr, x, w, reduce), x, weight)
    else:
        _both_backends(lambda x: spmm(csr, x, None, reduce), x)


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_triton_gradcheck(reduce):
    # fast_mode: one random projection instead of the full Jacobian (the interpreter is slow);
    # the full gradcheck runs on the torch path and the backends' gradients are compared above.
    csr = graph(6, 12, 1)
    x = (torch.randperm(12).double().view(6, 2) * 0.1).requires_grad_()
    weight = (torch.randperm(12).double() * 0.02 + 0.5).requires_grad_()
    with use_backend("triton"):
        assert torch.autograd.gradcheck(lambda x, w: spmm(csr, x, w, reduce), (x, weight), fast_mode=True)
        src = (torch.randperm(16).double().view(8, 2) * 0.1).requires_grad_()
        index = torch.randint(0, 4, (8,))
        other = "min" if reduce == "max" else "mean"
        assert torch.autograd.gradcheck(lambda s: scatter(s, index, 5, other), (src,), fast_mode=True)
