"""outer_aggregate: S[v] = sum_{w -> v} z_e ⊗ h_w against a dense reference, gradcheck, errors."""

import pytest
import torch

from gnnkit.bench.synthetic import complete_edges
from gnnkit.ops import CSR, DegreeBuckets, outer_aggregate, use_backend


pytestmark = pytest.mark.usefixtures("one_thread")


def _graph(n=14, e=60, hub_degree=45, dtype=torch.float64):
    """Random edges plus one high-degree target (geometric, padded bucket) and isolated node 0."""
    ei = torch.randint(1, n, (2, e))
    hub = torch.stack([torch.randint(1, n, (hub_degree,)), torch.full((hub_degree,), 2)])
    ei = torch.cat([ei, hub], 1)
    ei = ei[:, ei[1] != 1]  # node 1: no in-edges, but out-edges
    k, d = 5, 3
    z = torch.randn(ei.size(1), k, dtype=dtype)
    h = torch.randn(n, d, dtype=dtype)
    return ei, z, h


def _reference(ei, z, h, n, reduce):
    out = torch.zeros(n, z.size(1), h.size(1), dtype=z.dtype).index_add(0, ei[1], z[:, :, None] * h[ei[0]][:, None, :])
    if reduce == "mean":
        out = out / torch.bincount(ei[1], minlength=n).clamp(min=1).to(z.dtype).view(-1, 1, 1)
    return out


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_matches_dense_reference(reduce):
    ei, z, h = _graph()
    n = h.size(0)
    csr = CSR.from_edge_index(ei, n)
    out = outer_aggregate(csr, z, h, reduce)
    torch.testing.assert_close(out, _reference(ei, z, h, n, reduce))
    assert out[[0, 1]].abs().max() == 0  # isolated targets give 0
    # z already in the CSR's order, and reused buckets, give the same result.
    buckets = DegreeBuckets.from_csr(csr)
    out2 = outer_aggregate(csr, csr.permute(z), h, reduce, z_order="csr", buckets=buckets)
    torch.testing.assert_close(out2, out)


def test_buckets_pad_large_degrees():
    ei, z, h = _graph(hub_degree=45)
    deg = torch.bincount(ei[1], minlength=h.size(0))
    buckets = DegreeBuckets.from_csr(CSR.from_edge_index(ei, h.size(0)))
    for nodes, pos, mask in zip(buckets.nodes, buckets.edges, buckets.mask):
        width, d = pos.size(1), deg[nodes]
        assert bool((d <= width).all())
        if width <= 32:
            assert bool((d == width).all()) and mask is None  # small degrees: exact buckets
        else:
            assert bool((width - d < d / 8).all())  # large degrees: at most 1/8 padding
            assert torch.equal(mask.sum(1), d) if mask is not None else bool((d == width).all())
    assert sum(n.numel() for n in buckets.nodes) == int((deg > 0).sum())
    assert max(pos.size(1) for pos in buckets.edges) > 32


def _complete_batch(sizes):
    blocks, offset = [], 0
    for n in sizes:
        blocks.append(complete_edges(n) + offset)
        offset += n
    return torch.cat(blocks, 1), offset


def test_slabs_and_buckets_agree():
    ei, n = _complete_batch([5, 5, 1, 6, 3, 7, 7, 7])  # runs of equal degree, and an isolated atom
    csr = CSR.from_edge_index(ei, n)
    slabs = DegreeBuckets.from_csr(csr, min_slab=4)
    buckets = DegreeBuckets.from_csr(csr, min_slab=10**9)
    assert [s[1] for s in slabs.slabs] == [10, 6, 21] and not buckets.slabs
    assert sum(b.numel() for b in slabs.nodes) == 3  # the 3-atom molecule
    z = torch.randn(csr.num_edges, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(n, 4, 3, dtype=torch.float64)
    results = []
    for groups in (slabs, buckets):
        out = outer_aggregate(csr, z, h, "mean", z_order="csr", buckets=groups)
        results.append((out, *torch.autograd.grad(out, (z, h), g)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(results[0][0], _reference(_csr_edges(csr), z, h, n, "mean"))
    assert torch.autograd.gradcheck(lambda a, b: outer_aggregate(csr, a, b, z_order="csr", buckets=slabs), (z, h))


def _csr_edges(csr):
    return torch.stack([csr.col, csr.row])


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_gradcheck(reduce):
    ei, z, h = _graph(n=9, e=25, hub_degree=36)
    csr = CSR.from_edge_index(ei, h.size(0))
    z.requires_grad_(True)
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: outer_aggregate(csr, a, b, reduce), (z, h))


def test_gradient_of_one_input_only():
    ei, z, h = _graph(n=8, e=20, hub_degree=3)
    csr = CSR.from_edge_index(ei, h.size(0))
    h.requires_grad_(True)
    outer_aggregate(csr, z, h).sum().backward()
    ref_h = h.detach().clone().requires_grad_(True)
    _reference(ei, z, ref_h, h.size(0), "sum").sum().backward()
    torch.testing.assert_close(h.grad, ref_h.grad)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_no_edges(backend):
    csr = CSR.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 4)
    h = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(0, 2, requires_grad=True)
    with use_backend(backend):
        out = outer_aggregate(csr, z, h, "mean")
        assert out.shape == (4, 2, 3) and out.abs().max() == 0
        out.sum().backward()
    assert h.grad.abs().max() == 0


@pytest.mark.parametrize(
    "reduce,k,d,hub",
    [("sum", 5, 3, 20), ("mean", 5, 3, 20), ("sum", 70, 3, 2), ("mean", 3, 70, 2)],  # > BLOCK_E edges; > 1 tile
)
def test_triton_interpreter_matches_torch(reduce, k, d, hub):
    ei, _, _ = _graph(n=6, e=14, hub_degree=hub)
    z, h = torch.randn(ei.size(1), k), torch.randn(6, d)
    csr = CSR.from_edge_index(ei, h.size(0))
    z.requires_grad_(True)
    h.requires_grad_(True)
    g = torch.randn(h.size(0), z.size(1), h.size(1))
    out = outer_aggregate(csr, z, h, reduce)
    gz, gh = torch.autograd.grad(out, (z, h), g)
    with use_backend("triton"):
        out_t = outer_aggregate(csr, z, h, reduce)
        gz_t, gh_t = torch.autograd.grad(out_t, (z, h), g)
    torch.testing.assert_close(out_t, out)
    torch.testing.assert_close(gz_t, gz)
    torch.testing.assert_close(gh_t, gh)


def test_errors():
    ei, z, h = _graph(n=6, e=10, hub_degree=2)
    csr = CSR.from_edge_index(ei, h.size(0))
    with pytest.raises(TypeError, match="csr"):
        outer_aggregate(ei, z, h)
    with pytest.raises(ValueError, match="z must have shape"):
        outer_aggregate(csr, z[:-1], h)
    with pytest.raises(ValueError, match="h must have shape"):
        outer_aggregate(csr, z, h[:-1])
    with pytest.raises(TypeError, match="dtype"):
        outer_aggregate(csr, z.float(), h)
    with pytest.raises(TypeError, match="z must be a floating-point"):
        outer_aggregate(csr, z.long(), h)
    with pytest.raises(ValueError, match="reduce"):
        outer_aggregate(csr, z, h, "max")
    with pytest.raises(ValueError, match="z_order"):
        outer_aggregate(csr, z, h, z_order="sorted")
    other = CSR.from_edge_index(ei[:, :-1], h.size(0))
    with pytest.raises(ValueError, match="different graph"):
        outer_aggregate(csr, z, h, buckets=DegreeBuckets.from_csr(other))
    with pytest.raises(TypeError, match="buckets"):
        outer_aggregate(csr, z, h, buckets="auto")
