"""TDGNN against a dense computation, sparse == dense features, equivariance, TDGNN-w scalars."""

import pytest
import torch

from gnnkit.models import build_model
from gnnkit.models.tdgnn import TDGNN, TreeOperators
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
    ops = TDGNN.operators(ei, n, levels)
    z = model.lin2(torch.relu(model.lin1(x)))
    w = model.level_weight if weighted else torch.ones(len(levels) + 1)
    expected = w[0] * z + sum(w[i + 1] * m.float() @ z for i, m in enumerate(dense_ops(ei, n, levels)))
    torch.testing.assert_close(model(x, ops), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x.to_sparse(), ops), expected, rtol=1e-5, atol=1e-6)


def test_permutation_equivariance():
    n, levels = 14, [1, 3]
    ei, x = graph(n, seed=3), features(n)
    perm = torch.randperm(n)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    model = TDGNN(7, 4, levels, hidden=6).eval()
    out = model(x, TDGNN.operators(ei, n, levels))
    out_p = model(x[perm], TDGNN.operators(inv[ei], n, levels))
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
    loss = torch.nn.functional.cross_entropy(model(x.to_sparse(), TDGNN.operators(ei, n, levels)), y)
    loss.backward()
    assert model.level_weight.grad is not None and model.lin1.weight.grad.abs().sum() > 0
    s = build_model("tdgnn-s", 7, 3, levels=levels, hidden=8)
    assert s.level_weight is None and len(s.param_groups(0.1, 0.2, 0.3)) == 2


def test_errors():
    with pytest.raises(ValueError, match="levels"):
        TDGNN(3, 2, levels=[])
    with pytest.raises(ValueError, match="dropout1"):
        TDGNN(3, 2, dropout1=1.0)
    model = TDGNN(3, 2, levels=[1, 2])
    ei = graph(5)
    with pytest.raises(ValueError, match="levels"):
        model(torch.rand(5, 3), TDGNN.operators(ei, 5, [1]))
    with pytest.raises(TypeError, match="TreeOperators"):
        model(torch.rand(5, 3), [])
    with pytest.raises(ValueError, match="rows"):
        TDGNN.operators(ei, 5, [1, 2]).propagate(torch.rand(4, 2))
    with pytest.raises(ValueError, match="level"):
        TreeOperators.from_pairs([], 5)


def test_stacked_operator_gradcheck_float64():
    n, levels = 8, [1, 2, 3]
    ei = graph(n, p=0.3, seed=5)
    pairs = [(i, w.double()) for i, w in tree_decomposition(ei, n, levels, 4, dtype=torch.float64)]
    ops = TreeOperators.from_pairs(pairs, n)
    z = torch.randn(n, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ops.propagate(t), (z,))
    dense = torch.stack([m.double() for m in dense_ops(ei, n, levels, 4)])
    torch.testing.assert_close(ops.propagate(z), dense @ z)
