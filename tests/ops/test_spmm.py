"""spmm against a dense adjacency (sum/mean) and a python loop (max), with and without edge
weights, plus gradcheck in float64 with respect to both x and edge_weight."""

import pytest
import torch

from gnnkit.ops import CSR, spmm


def random_graph(num_src: int, num_dst: int, num_edges: int, isolated: int = 0) -> torch.Tensor:
    src = torch.randint(0, max(num_src - isolated, 1), (num_edges,))
    dst = torch.randint(0, max(num_dst - isolated, 1), (num_edges,))
    return torch.stack([src, dst])


def dense_reference(edge_index, x, weight, num_dst, reduce):
    """``out[v] = reduce_{(u -> v)} w * x[u]`` via a dense adjacency (sum/mean) or loops (max)."""
    src, dst = edge_index
    w = weight if weight is not None else x.new_ones(src.numel())
    if reduce in ("sum", "mean"):
        adj = x.new_zeros(num_dst, x.size(0)).index_put_((dst, src), w, accumulate=True)
        out = adj @ x
        if reduce == "mean":
            deg = torch.bincount(dst, minlength=num_dst).clamp(min=1).to(x.dtype)
            out = out / deg.unsqueeze(1)
        return out
    out = x.new_zeros(num_dst, x.size(1))
    for v in range(num_dst):
        edges = (dst == v).nonzero().flatten()
        if edges.numel():
            out[v] = (w[edges].unsqueeze(1) * x[src[edges]]).max(0).values
    return out


GRAPHS = [
    (20, 20, 70, 4),  # random multigraph with isolated nodes
    (8, 8, 0, 0),  # no edges
    (0, 0, 0, 0),  # empty graph
    (1, 1, 2, 0),  # single node with self-loops
    (12, 5, 30, 1),  # bipartite
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("num_src,num_dst,num_edges,isolated", GRAPHS)
def test_spmm_matches_dense(reduce, weighted, num_src, num_dst, num_edges, isolated):
    edge_index = random_graph(num_src, num_dst, num_edges, isolated)
    size = num_src if num_src == num_dst else (num_src, num_dst)
    csr = CSR.from_edge_index(edge_index, size)
    x = torch.randn(num_src, 6)
    weight = torch.rand(num_edges) + 0.5 if weighted else None
    out = spmm(csr, x, weight, reduce)
    assert out.shape == (num_dst, 6)
    torch.testing.assert_close(out, dense_reference(edge_index, x, weight, num_dst, reduce))
    if weighted:  # the same weights given in the CSR's sorted order
        torch.testing.assert_close(spmm(csr, x, csr.permute(weight), reduce, weight_order="csr"), out)


def test_spmm_negative_weights_max():
    edge_index = random_graph(10, 10, 40)
    csr = CSR.from_edge_index(edge_index, 10)
    x, weight = torch.randn(10, 3), torch.randn(40)
    torch.testing.assert_close(spmm(csr, x, weight, "max"), dense_reference(edge_index, x, weight, 10, "max"))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_gradcheck(reduce, weighted):
    edge_index = random_graph(15, 15, 45, isolated=2)
    csr = CSR.from_edge_index(edge_index, 15)
    # Distinct, well-separated values so that max has no ties under the finite differences.
    x = (torch.randperm(15 * 4).double().view(15, 4) * 0.1 + 0.5).requires_grad_()
    if weighted:
        weight = (torch.randperm(45).double() * 0.013 + 0.3).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, w: spmm(csr, x, w, reduce), (x, weight))
    else:
        assert torch.autograd.gradcheck(lambda x: spmm(csr, x, None, reduce), (x,))


@pytest.mark.parametrize("feats", [3, 64])  # the CPU max backward switches method at F = 64
def test_spmm_gradients_match_dense(feats):
    edge_index = random_graph(6, 6, 12)
    csr = CSR.from_edge_index(edge_index, 6)
    x = torch.randn(6, feats, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(12, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(6, feats, dtype=torch.float64)
    for reduce in ("sum", "mean", "max"):
        for inputs in ((x, weight), (x,), (weight,)):
            grads = torch.autograd.grad(spmm(csr, x, weight, reduce), inputs, grad_out)
            refs = torch.autograd.grad(dense_reference(edge_index, x, weight, 6, reduce), inputs, grad_out)
            for g, r in zip(grads, refs):
                torch.testing.assert_close(g, r)


def test_spmm_equals_scatter_of_gathered_messages():
    from gnnkit.ops import scatter

    edge_index = random_graph(25, 25, 80, isolated=3)
    csr = CSR.from_edge_index(edge_index, 25)
    x, weight = torch.randn(25, 5), torch.rand(80)
    messages = x[edge_index[0]] * weight.unsqueeze(1)
    for reduce in ("sum", "mean", "max"):
        torch.testing.assert_close(spmm(csr, x, weight, reduce), scatter(messages, edge_index[1], 25, reduce))
