"""GCNConv / GCN with sparse node features, and feature_dropout on sparse inputs."""

import pytest
import torch

from gnnkit.models import build_model
from gnnkit.nn import GCNConv, feature_dropout


def _sparse_features(n=30, f=40, density=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, f, generator=g, dtype=torch.float64) * (torch.rand(n, f, generator=g) < density)
    return x


def test_gcnconv_sparse_equals_dense_with_grad():
    x = _sparse_features()
    ei = torch.randint(0, 30, (2, 80), generator=torch.Generator().manual_seed(1))
    conv = GCNConv(40, 8).double()
    dense = conv(x, ei)
    (dense ** 2).sum().backward()
    g_dense = conv.lin.weight.grad.clone()
    conv.zero_grad()
    sparse = conv(x.to_sparse(), ei)
    (sparse ** 2).sum().backward()
    torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(conv.lin.weight.grad, g_dense)


def test_feature_dropout_sparse():
    x = _sparse_features(200, 50, 0.2).to_sparse()
    assert feature_dropout(x, 0.5, False) is x
    torch.manual_seed(0)
    out = feature_dropout(x, 0.5, True).coalesce()
    vals, kept = out.values(), out.values() != 0
    # zeros stay zeros (same pattern), survivors are scaled by 1 / (1 - p), about half survive
    assert torch.equal(out.indices(), x.coalesce().indices())
    torch.testing.assert_close(vals[kept], 2 * x.coalesce().values()[kept])
    assert 0.4 < kept.double().mean().item() < 0.6
    dense = torch.ones(4, 4)
    assert torch.equal(feature_dropout(dense, 0.3, False), dense)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            feature_dropout(x, bad, False)  # checked in eval mode too, and for sparse inputs


def test_gcnconv_sparse_wrong_width():
    with pytest.raises(ValueError, match=r"x must have shape \[N, 40\]"):
        GCNConv(40, 8)(_sparse_features(30, 41).to_sparse(), torch.zeros(2, 0, dtype=torch.long))


def test_gcn_model_sparse_features_eval_equals_dense():
    from types import SimpleNamespace

    x = _sparse_features()
    ei = torch.randint(0, 30, (2, 80), generator=torch.Generator().manual_seed(2))
    model = build_model("gcn", 40, 3, hidden=8).double().eval()
    torch.testing.assert_close(model(SimpleNamespace(x=x.to_sparse(), edge_index=ei)), model(SimpleNamespace(x=x, edge_index=ei)))
