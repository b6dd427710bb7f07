"""NHGCN channel graphs and forward pass against dense computations."""

import pytest
import torch

from gnnkit.models import build_model
from gnnkit.models.nhgcn import NHGCN


def graph(n=10, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    adj = torch.rand(n, n, generator=g) < p
    adj[0, 0] = adj[3, 3] = True  # existing self-loops are replaced (or dropped)
    return adj.nonzero().t().contiguous()


def dense(graph_, n):
    csr, w = graph_
    m = torch.zeros(n, n)
    m[csr.row, csr.col] = w  # [target, source]
    return m


def dense_channel(ei, n, keep_src, add_self):
    """The reference's agg_norm(adj_t, mask, 'source'): A[t, s] * mask[s], diagonal set to 1 (or
    removed), D^-1/2 A D^-1/2 with row sums."""
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a = a * keep_src.float()[None, :]
    a.fill_diagonal_(1.0 if add_self else 0.0)
    d = a.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("add_self", [True, False])
def test_channel_graphs_match_reference_normalisation(add_self):
    n = 10
    ei = graph(n)
    high = torch.rand(n) < 0.5
    g_l, g_h = NHGCN.channel_graphs(ei, n, high, add_self)
    torch.testing.assert_close(dense(g_l, n), dense_channel(ei, n, high, add_self))
    torch.testing.assert_close(dense(g_h, n), dense_channel(ei, n, ~high, add_self))


@pytest.mark.parametrize("ego", ["reference", "linear"])
def test_forward_matches_dense(ego):
    n, f = 10, 6
    ei = graph(n)
    x = torch.rand(n, f) * (torch.rand(n, f) < 0.4)
    high = torch.rand(n) < 0.5
    model = NHGCN(f, 3, hidden=8, dropout=0.5, final_dropout=0.5, ego=ego).eval()
    with torch.no_grad():
        model.lam.copy_(torch.tensor([0.3, -0.2, 0.1]))
    g_l, g_h = NHGCN.channel_graphs(ei, n, high)
    a_l, a_h = dense(g_l, n), dense(g_h, n)
    x_l = a_l @ torch.relu(a_l @ x @ model.w1_l) @ model.w2_l
    x_h = a_h @ torch.relu(a_h @ x @ model.w1_h) @ model.w2_h
    x_ego = x_h if ego == "reference" else torch.relu(x @ model.w_x)
    lam = torch.softmax(model.lam, 0)
    expected = model.lin(torch.relu(lam[0] * x_ego + lam[1] * x_l + lam[2] * x_h))
    torch.testing.assert_close(model(x, g_l, g_h), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model(x.to_sparse(), g_l, g_h), expected, rtol=1e-4, atol=1e-5)


def test_gradients_and_registry():
    n, f = 10, 6
    ei = graph(n)
    model = build_model("nhgcn", f, 3, hidden=8)
    assert torch.equal(model.lam.detach(), torch.zeros(3)) and model.w_x is None
    g_l, g_h = NHGCN.channel_graphs(ei, n, torch.ones(n, dtype=torch.bool))
    out = model(torch.rand(n, f).to_sparse(), g_l, g_h)
    torch.nn.functional.cross_entropy(out, torch.randint(0, 3, (n,))).backward()
    for p in (model.w1_l, model.w1_h, model.w2_l, model.w2_h, model.lam):
        assert p.grad is not None


def test_errors():
    with pytest.raises(ValueError, match="ego"):
        NHGCN(3, 2, ego="paper")
    with pytest.raises(ValueError, match="final_dropout"):
        NHGCN(3, 2, final_dropout=1.5)
    with pytest.raises(ValueError, match="high"):
        NHGCN.channel_graphs(graph(5), 5, torch.ones(4, dtype=torch.bool))
