"""scatter / segment / scatter_softmax against python-loop references, and gradcheck in float64."""

import pytest
import torch

from gnnkit.ops import scatter, scatter_softmax, segment

REDUCES = ["sum", "mean", "max", "min"]


def naive_scatter(src: torch.Tensor, index: torch.Tensor, num_segments: int, reduce: str) -> torch.Tensor:
    out = src.new_zeros((num_segments, *src.shape[1:]))
    for s in range(num_segments):
        rows = src[index == s]
        if rows.size(0) == 0:
            continue  # empty segment: 0 for every reduction
        if reduce == "sum":
            out[s] = rows.sum(0)
        elif reduce == "mean":
            out[s] = rows.mean(0)
        elif reduce == "max":
            out[s] = rows.max(0).values
        else:
            out[s] = rows.min(0).values
    return out


def rowptr_to_index(rowptr: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(rowptr.numel() - 1), rowptr[1:] - rowptr[:-1])


def distinct(*shape: int, dtype=torch.float64) -> torch.Tensor:
    """Values at least 0.1 apart (no ties), so max/min stay differentiable under gradcheck."""
    n = 1
    for d in shape:
        n *= d
    return (torch.randperm(n).to(dtype) * 0.1 - 0.05 * n).view(*shape)


# (rows, trailing shape, num_segments, segments left empty at the end)
CASES = [
    (40, (5,), 12, 3),
    (40, (3, 2), 9, 2),  # multi-dim trailing features
    (0, (4,), 5, 0),  # zero rows: every segment empty
    (0, (4,), 0, 0),  # empty graph
    (6, (2,), 1, 0),  # a single segment (single node)
    (1, (), 3, 0),  # 1-D src
]


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("rows,trailing,num_segments,empty", CASES)
def test_scatter_matches_naive(reduce, rows, trailing, num_segments, empty):
    src = torch.randn(rows, *trailing)
    index = torch.randint(0, max(num_segments - empty, 1), (rows,))
    out = scatter(src, index, num_segments, reduce)
    assert out.shape == (num_segments, *trailing)
    torch.testing.assert_close(out, naive_scatter(src, index, num_segments, reduce))
    torch.testing.assert_close(scatter(src, index.int(), num_segments, reduce), out)


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("rows,trailing,num_segments,empty", CASES)
def test_segment_matches_naive(reduce, rows, trailing, num_segments, empty):
    index = torch.sort(torch.randint(0, max(num_segments - empty, 1), (rows,))).values
    rowptr = torch.zeros(num_segments + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(index, minlength=num_segments)[:num_segments], 0)
    src = torch.randn(rows, *trailing)
    out = segment(src, rowptr, reduce)
    torch.testing.assert_close(out, naive_scatter(src, index, num_segments, reduce))
    torch.testing.assert_close(segment(src, rowptr.int(), reduce), out)


@pytest.mark.parametrize("reduce", REDUCES)
def test_scatter_gradcheck(reduce):
    src = distinct(30, 3).requires_grad_()
    index = torch.randint(0, 10, (30,))  # segments 10, 11 stay empty
    assert torch.autograd.gradcheck(lambda s: scatter(s, index, 12, reduce), (src,))


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_gradcheck(reduce):
    src = distinct(20, 2, 2).requires_grad_()
    rowptr = torch.tensor([0, 0, 4, 11, 11, 20])
    assert torch.autograd.gradcheck(lambda s: segment(s, rowptr, reduce), (src,))


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_ties_send_gradient_to_first_row(reduce):
    src = torch.tensor([[1.0], [3.0], [3.0], [-2.0], [-2.0]], requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1])
    scatter(src, index, 2, reduce).sum().backward()
    expected = [[0.0], [1.0], [0.0], [1.0], [0.0]] if reduce == "max" else [[1.0], [0.0], [0.0], [1.0], [0.0]]
    assert src.grad.tolist() == expected


def test_empty_segments_give_zero_and_no_gradient():
    src = torch.randn(4, 2, requires_grad=True)
    index = torch.tensor([0, 0, 2, 2])
    for reduce in REDUCES:
        out = scatter(src, index, 4, reduce)
        assert torch.equal(out[1], torch.zeros(2)) and torch.equal(out[3], torch.zeros(2))
        (grad,) = torch.autograd.grad(out[[1, 3]].sum(), src)
        assert torch.equal(grad, torch.zeros_like(src))


@pytest.mark.parametrize("reduce,fill", [("max", -float("inf")), ("min", float("inf"))])
def test_all_infinite_segment_keeps_value_and_gets_no_gradient(reduce, fill):
    src = torch.tensor([[fill], [fill], [1.0]], requires_grad=True)
    out = scatter(src, torch.tensor([0, 0, 1]), 2, reduce)
    assert out.tolist() == [[fill], [1.0]]
    out.sum().backward()
    assert src.grad.tolist() == [[0.0], [0.0], [1.0]]


def naive_softmax(src: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    out = torch.empty_like(src)
    for s in range(num_segments):
        mask = index == s
        if mask.any():
            out[mask] = torch.softmax(src[mask], dim=0)
    return out


@pytest.mark.parametrize("rows,trailing,num_segments", [(30, (4,), 8), (0, (3,), 2), (5, (), 1)])
def test_scatter_softmax_matches_naive(rows, trailing, num_segments):
    src = torch.randn(rows, *trailing) * 5
    index = torch.randint(0, max(num_segments - 1, 1), (rows,))
    out = scatter_softmax(src, index, num_segments)
    torch.testing.assert_close(out, naive_softmax(src, index, num_segments))
    sums = scatter(out, index, num_segments, "sum")
    nonempty = torch.bincount(index, minlength=num_segments) > 0
    torch.testing.assert_close(sums[nonempty], torch.ones_like(sums[nonempty]))


def test_scatter_softmax_large_inputs_are_stable():
    src = torch.tensor([1000.0, 1001.0, -1000.0])
    out = scatter_softmax(src, torch.tensor([0, 0, 1]), 2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([1 / (1 + torch.e), torch.e / (1 + torch.e), 1.0]))


def test_scatter_softmax_gradcheck():
    src = torch.randn(25, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (25,))
    assert torch.autograd.gradcheck(lambda s: scatter_softmax(s, index, 7), (src,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_mean_counts_exactly(dtype):
    # 3000 rows in one segment: a count kept in float16 would round (2049 is not representable).
    src = torch.ones(3000, 2, dtype=dtype)
    out = scatter(src, torch.zeros(3000, dtype=torch.long), 2, "mean")
    assert out.dtype == dtype and out.tolist() == [[1.0, 1.0], [0.0, 0.0]]
