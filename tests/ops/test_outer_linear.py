"""outer_linear_unchecked: W vec(S[v]) fused and blocked (CPU eager path of EdgeNetworkConv)
against the dense reference, with blocks small enough to split slabs and buckets; gradcheck."""

import pytest
import torch

from gnnkit.ops import CSR, DegreeBuckets, outer_aggregate
from gnnkit.ops import _torch_kernels
from gnnkit.ops.outer_linear import fused_outer_linear_applies, outer_linear_unchecked

pytestmark = pytest.mark.usefixtures("one_thread")


def _graph(dtype=torch.float64):
    """Two complete graphs (5 and 7 atoms: slabs), a random sparse part with a padded high-degree
    hub (degree buckets) and isolated targets; K = 4, d = 3, d' = 2."""
    blocks, start = [], 0
    for n in (5, 7):
        ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        blocks.append(torch.stack([ii[ii != jj], jj[ii != jj]]) + start)
        start += n
    g = torch.Generator().manual_seed(0)
    n = start + 14
    rand = torch.randint(start + 1, n, (2, 40), generator=g)
    hub = torch.stack([torch.randint(0, n, (45,), generator=g), torch.full((45,), start + 2)])
    ei = torch.cat(blocks + [rand, hub], 1)
    ei = ei[:, ei[1] != start + 1]  # a target without in-edges inside the sparse part
    k, d, d_out = 4, 3, 2
    z = torch.randn(ei.size(1), k, dtype=dtype, generator=g)
    h = torch.randn(n, d, dtype=dtype, generator=g)
    w = torch.randn(d_out, k * d, dtype=dtype, generator=g)
    return ei, z, h, w


@pytest.fixture(params=[1 << 30, 1], ids=["one-block", "tiny-blocks"])
def block_bytes(request, monkeypatch):
    """The default block size holds the whole test graph; one byte gives one target per block."""
    monkeypatch.setattr(_torch_kernels, "_OUTER_BLOCK_BYTES", request.param)
    return request.param


def test_matches_aggregate_then_linear(block_bytes):
    ei, z, h, w = _graph()
    csr = CSR.from_edge_index(ei, h.size(0))
    buckets = DegreeBuckets.from_csr(csr)
    assert buckets.slabs and buckets.nodes and buckets.isolated.numel()  # every kind of group
    assert fused_outer_linear_applies(z, h, buckets)
    out = outer_linear_unchecked(csr, csr.permute(z), h, w, buckets)
    s = outer_aggregate(csr, z, h)
    torch.testing.assert_close(out, s.reshape(s.size(0), -1) @ w.t())
    assert out[buckets.isolated].abs().max() == 0


def test_gradcheck(block_bytes):
    ei, z, h, w = _graph()
    csr = CSR.from_edge_index(ei, h.size(0))
    buckets = DegreeBuckets.from_csr(csr)
    zs = csr.permute(z)
    args = [t.clone().requires_grad_() for t in (zs, h, w)]
    assert torch.autograd.gradcheck(lambda a, b, c: outer_linear_unchecked(csr, a, b, c, buckets), args)
    # Only some inputs needing a gradient.
    hw = [h.clone().requires_grad_(), w]
    assert torch.autograd.gradcheck(lambda b: outer_linear_unchecked(csr, zs, b, w, buckets), hw[:1])


def test_gradients_match_the_two_step_form():
    ei, z, h, w = _graph(torch.float32)
    csr = CSR.from_edge_index(ei, h.size(0))
    buckets = DegreeBuckets.from_csr(csr)
    zs = csr.permute(z)
    g = torch.randn(h.size(0), w.size(0))
    a = [t.clone().requires_grad_() for t in (zs, h, w)]
    b = [t.clone().requires_grad_() for t in (z, h, w)]
    outer_linear_unchecked(csr, *a, buckets).backward(g)
    s = outer_aggregate(csr, *b[:2])
    (s.reshape(s.size(0), -1) @ b[2].t()).backward(g)
    for x, y in zip(a, [csr.permute(b[0].grad), b[1].grad, b[2].grad]):
        torch.testing.assert_close(x.grad, y)


def test_no_edges():
    csr = CSR.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 3)
    buckets = DegreeBuckets.from_csr(csr)
    z, h, w = torch.zeros(0, 4, requires_grad=True), torch.randn(3, 2, requires_grad=True), torch.randn(5, 8, requires_grad=True)
    out = outer_linear_unchecked(csr, z, h, w, buckets)
    assert out.shape == (3, 5) and out.abs().max() == 0
    out.sum().backward()
    assert h.grad.abs().max() == 0 and w.grad.abs().max() == 0 and z.grad.shape == (0, 4)


def test_applies_only_on_the_eager_float_cpu_path():
    ei, z, h, w = _graph(torch.float32)
    buckets = DegreeBuckets.from_csr(CSR.from_edge_index(ei, h.size(0)))
    assert fused_outer_linear_applies(z, h, buckets)
    assert not fused_outer_linear_applies(z, h, None)
    assert not fused_outer_linear_applies(z.bfloat16(), h.bfloat16(), buckets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_outer_linear_applies(z, h, buckets)


def test_applies_only_where_s_reaches_the_threshold(monkeypatch):
    import gnnkit.ops.outer_linear as ol

    ei, z, h, w = _graph(torch.float32)
    n = h.size(0)
    buckets = DegreeBuckets.from_csr(CSR.from_edge_index(ei, n))
    s_bytes = n * z.size(1) * h.size(1) * 4
    monkeypatch.setattr(ol, "FUSED_MIN_S_BYTES", s_bytes)
    assert fused_outer_linear_applies(z, h, buckets, n)
    monkeypatch.setattr(ol, "FUSED_MIN_S_BYTES", s_bytes + 1)
    assert not fused_outer_linear_applies(z, h, buckets, n)
    assert fused_outer_linear_applies(z, h, buckets)  # no size given: the other conditions only
    # the default: the quick QM9 batch (601 atoms, K = 128, d = 64: 19.7 MB) keeps two steps, the
    # 128-molecule benchmark batch (2388 atoms: 78 MB) is fused
    zq, hq = torch.zeros(1, 128), torch.zeros(1, 64)
    monkeypatch.setattr(ol, "FUSED_MIN_S_BYTES", 32 << 20)
    assert not fused_outer_linear_applies(zq, hq, buckets, 601)
    assert fused_outer_linear_applies(zq, hq, buckets, 2388)


def test_second_derivative_is_refused():
    """The kernels write into buffers, so the backward is not itself differentiable: asking for a
    second derivative raises instead of silently dropping terms."""
    ei, z, h, w = _graph()
    csr = CSR.from_edge_index(ei, h.size(0))
    buckets = DegreeBuckets.from_csr(csr)
    hh = h.clone().requires_grad_()
    out = outer_linear_unchecked(csr, csr.permute(z), hh, w.clone().requires_grad_(), buckets)
    (gh,) = torch.autograd.grad(out.square().sum(), hh, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gh.sum().backward()
