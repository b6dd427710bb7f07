"""NHGCN channel operators and forward pass against dense computations; the NH split."""

import pytest
import torch
from torch_geometric.data import Data

from gnnkit.models import NHGCN, HomophilySplit, build_model
from gnnkit.nn import Graph, NHConv, homophily_channels
from gnnkit.nn.conv.homophily import CHANNELS


def graph(n=10, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    adj = torch.rand(n, n, generator=g) < p
    adj[0, 0] = adj[3, 3] = True  # existing self-loops are replaced (or dropped)
    return adj.nonzero().t().contiguous()


def dense(op, n):
    m = torch.zeros(n, n)
    m.index_put_((op.csr.row, op.csr.col), op.edge_weight, accumulate=True)  # [target, source]
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
def test_channels_match_reference_normalisation(add_self):
    n = 10
    ei = graph(n)
    high = torch.rand(n) < 0.5
    g = homophily_channels(Graph.from_edge_index(ei, n), high, add_self)
    torch.testing.assert_close(dense(g.operators[CHANNELS["L"]], n), dense_channel(ei, n, high, add_self))
    torch.testing.assert_close(dense(g.operators[CHANNELS["H"]], n), dense_channel(ei, n, ~high, add_self))
    # a new split re-weights the same CSR (no rebuild)
    g2 = homophily_channels(g, ~high, add_self)
    assert g2.operators[CHANNELS["L"]].csr is g.operators[CHANNELS["L"]].csr
    torch.testing.assert_close(dense(g2.operators[CHANNELS["L"]], n), dense_channel(ei, n, ~high, add_self))


@pytest.mark.parametrize("ego", ["reference", "linear"])
def test_forward_matches_dense(ego):
    n, f = 10, 6
    ei = graph(n)
    x = torch.rand(n, f) * (torch.rand(n, f) < 0.4)
    high = torch.rand(n) < 0.5
    model = NHGCN(f, 3, hidden=8, dropout=0.5, final_dropout=0.5, ego=ego).eval()
    with torch.no_grad():
        model.lam.copy_(torch.tensor([0.3, -0.2, 0.1]))
    a_l, a_h = dense_channel(ei, n, high, True), dense_channel(ei, n, ~high, True)
    x_l = a_l @ torch.relu(a_l @ x @ model.w1_l) @ model.w2_l
    x_h = a_h @ torch.relu(a_h @ x @ model.w1_h) @ model.w2_h
    x_ego = x_h if ego == "reference" else torch.relu(x @ model.w_x)
    lam = torch.softmax(model.lam, 0)
    expected = model.lin(torch.relu(lam[0] * x_ego + lam[1] * x_l + lam[2] * x_h))
    data = Data(x=x, edge_index=ei, nh_high=high)
    torch.testing.assert_close(model(data), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model(Data(x=x.to_sparse(), edge_index=ei, nh_high=high)), expected, rtol=1e-4, atol=1e-5)
    prepared = model.prepare(Data(x=x, edge_index=ei))  # starts all high; with_split re-weights
    torch.testing.assert_close(model(model.with_split(prepared, high)), expected, rtol=1e-4, atol=1e-5)


def test_gradients_and_registry():
    n, f = 10, 6
    ei = graph(n)
    model = build_model("nhgcn", f, 3, hidden=8)
    assert torch.equal(model.lam.detach(), torch.zeros(3)) and model.w_x is None
    out = model(Data(x=torch.rand(n, f).to_sparse(), edge_index=ei))
    torch.nn.functional.cross_entropy(out, torch.randint(0, 3, (n,))).backward()
    for p in (model.w1_l, model.w1_h, model.w2_l, model.w2_h, model.lam):
        assert p.grad is not None


def test_homophily_split():
    # two cliques {0,1,2} and {3,4,5} joined by one edge; labels follow the cliques except node 5
    ei = torch.tensor([[0, 1, 0, 2, 1, 2, 3, 4, 3, 5, 4, 5, 2, 3], [1, 0, 2, 0, 2, 1, 4, 3, 5, 3, 5, 4, 3, 2]])
    y = torch.tensor([0, 0, 0, 1, 1, 0])
    logits = torch.nn.functional.one_hot(y, 2).float()
    split = HomophilySplit(ei, 6, hops=1, include_self=False, threshold=1.2, variant="as_described")
    high = split(logits, y, torch.zeros(6, dtype=torch.bool))
    # NH: node 0 sees {1,2} (1.0); node 2 sees {0,1,3} (2/3); node 5 sees {3,4} (1.0)
    assert high.tolist() == [True, True, False, False, False, True]


def test_errors():
    with pytest.raises(ValueError, match="ego"):
        NHGCN(3, 2, ego="paper")
    with pytest.raises(ValueError, match="final_dropout"):
        NHGCN(3, 2, final_dropout=1.5)
    with pytest.raises(ValueError, match="high"):
        homophily_channels(Graph.from_edge_index(graph(5), 5), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"no NHConv\(.L.,\) operator"):
        NHConv("L")(torch.rand(5, 2), graph(5))
    with pytest.raises(ValueError, match="channel"):
        NHConv("M")
    with pytest.raises(ValueError, match="variant"):
        HomophilySplit(graph(5), 5, 1, False, 2.0, variant="paper")
