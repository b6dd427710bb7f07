"""TDGNN against a dense computation, sparse == dense features, equivariance, TDGNN-w scalars,
the tree-operator transform."""

import pytest
import torch
from torch_geometric.data import Data

from gnnkit.models import TDGNN, TreeDecomposition, build_model
from gnnkit.nn import Graph, TreeConv, tree_edges, tree_operator
from gnnkit.ops import tree_decomposition


def graph(n=12, p=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    adj = torch.rand(n, n, generator=g) < p
    adj.fill_diagonal_(False)
    return adj.nonzero().t().contiguous()


def dense_ops(ei, n, levels, K=10):
    out = []
    for idx, w in tree_decomposition(ei, n, levels, K, dtype=torch.float64):
        m = torch.zeros(n, n, dtype=torch.float64)
        m[idx[1], idx[0]] = w  # out[v] = sum_s w(s, v) z[s]
        out.append(m)
    return out


def features(n, f=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, f, generator=g) < 0.3).float()
    return x / x.sum(1, keepdim=True).clamp(min=1)


@pytest.mark.parametrize("weighted", [False, True])
def test_forward_matches_dense(weighted):
    n, levels = 12, [1, 2, 4]
    ei, x = graph(n), features(n)
    model = TDGNN(7, 3, levels, hidden=5, weighted=weighted, dropout1=0.3, dropout2=0.3).eval()
    if weighted:
        with torch.no_grad():
            model.level_weight.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    data = model.transform()(Data(x=x, edge_index=ei))
    z = model.lin2(torch.relu(model.lin1(x)))
    w = model.level_weight if weighted else torch.ones(len(levels) + 1)
    expected = w[0] * z + sum(w[i + 1] * m.float() @ z for i, m in enumerate(dense_ops(ei, n, levels)))
    torch.testing.assert_close(model(data), expected, rtol=1e-5, atol=1e-6)
    sparse = data.clone()
    sparse.x = x.to_sparse()
    torch.testing.assert_close(model(sparse), expected, rtol=1e-5, atol=1e-6)
    # without the transform the model builds the operator itself; a prepared graph is reused
    torch.testing.assert_close(model(Data(x=x, edge_index=ei)), expected, rtol=1e-5, atol=1e-6)
    prepared = model.prepare(data)
    torch.testing.assert_close(model(prepared), expected, rtol=1e-5, atol=1e-6)


def test_permutation_equivariance():
    n, levels = 14, [1, 3]
    ei, x = graph(n, seed=3), features(n)
    perm = torch.randperm(n)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    model = TDGNN(7, 4, levels, hidden=6).eval()
    out = model(Data(x=x, edge_index=ei))
    out_p = model(Data(x=x[perm], edge_index=inv[ei]))
    torch.testing.assert_close(out_p, out[perm], rtol=1e-5, atol=1e-6)


def test_training_step_and_param_groups():
    n, levels = 12, [1, 2]
    ei, x = graph(n), features(n)
    y = torch.randint(0, 3, (n,))
    model = build_model("tdgnn-w", 7, 3, levels=levels, hidden=8)
    groups = model.param_groups(0.1, 0.2, 0.3)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.2, 0.3]
    assert groups[2]["params"][0] is model.level_weight
    assert torch.equal(model.level_weight.detach(), torch.ones(3))  # free scalars start at 1
    data = model.transform()(Data(x=x.to_sparse(), edge_index=ei))
    loss = torch.nn.functional.cross_entropy(model(data), y)
    loss.backward()
    assert model.level_weight.grad is not None and model.lin1.weight.grad.abs().sum() > 0
    s = build_model("tdgnn-s", 7, 3, levels=levels, hidden=8)
    assert s.level_weight is None and len(s.param_groups(0.1, 0.2, 0.3)) == 2


def test_errors():
    with pytest.raises(ValueError, match="levels"):
        TDGNN(3, 2, levels=[])
    with pytest.raises(ValueError, match="dropout1"):
        TDGNN(3, 2, dropout1=1.0)
    with pytest.raises(ValueError, match="max_hops"):
        TDGNN(3, 2, levels=[11])
    model = TDGNN(3, 2, levels=[1, 2])
    ei = graph(5)
    data = TreeDecomposition([1])(Data(x=torch.rand(5, 3), edge_index=ei))
    with pytest.raises(ValueError, match="apply model.transform"):
        model(data)  # an operator built for other levels
    with pytest.raises(ValueError, match="no TreeConv operator"):
        TreeConv(2)(torch.rand(5, 2), ei)
    dense_ei = graph(6, p=0.5, seed=2)
    op = tree_operator(*tree_edges(dense_ei, 6, [1, 2]), 6)
    assert op.num_edge_types == 2
    with pytest.raises(ValueError, match="2 levels but the layer was built for 1"):
        TreeConv(1)(torch.rand(6, 2), Graph.from_edge_index(dense_ei, 6).with_operator(TreeConv.operator_key, op))
    with pytest.raises(ValueError, match="num_levels"):
        TreeConv(0)


def test_tree_operator_gradcheck_float64():
    n, levels = 8, [1, 2, 3]
    ei = graph(n, p=0.3, seed=5)
    index, weight, level = tree_edges(ei, n, levels, 4, dtype=torch.float64)
    g = Graph.from_edge_index(ei, n).with_operator(TreeConv.operator_key, tree_operator(index, weight, level, n))
    conv = TreeConv(len(levels), weighted=True).double()
    z = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    lw = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64, requires_grad=True)
    # gradients with respect to the features and to the level scalars (through the edge weights)
    run = lambda t, w: torch.func.functional_call(conv, {"level_weight": w}, (t, g))  # noqa: E731
    assert torch.autograd.gradcheck(run, (z, lw))
    dense = torch.stack([m.double() for m in dense_ops(ei, n, levels, 4)])
    torch.testing.assert_close(TreeConv(len(levels))(z, g), z + (dense @ z).sum(0))
    torch.testing.assert_close(run(z, lw), lw[0] * z + (lw[1:].view(-1, 1, 1) * (dense @ z)).sum(0))
