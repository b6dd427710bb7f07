"""Readouts: references, PyG equality, permutation invariance, batched == per-graph."""

import pytest
import torch
from torch_geometric.nn.aggr import Set2Set as PyGSet2Set

from gnnkit.nn import GatedReadout, MaxReadout, MeanReadout, Set2Set, SumReadout


def _batch(sizes: list[int], feats: int = 6, dtype=torch.float) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return torch.randn(int(sum(sizes)), feats, dtype=dtype), batch


SIZES = [3, 1, 0, 5, 2]  # includes a single-node graph and an empty graph


def _readouts(feats: int):
    return [SumReadout(), MeanReadout(), MaxReadout(), Set2Set(feats, processing_steps=3), GatedReadout(feats, 4)]


@pytest.mark.parametrize("cls,fn", [(SumReadout, "sum"), (MeanReadout, "mean"), (MaxReadout, "max")])
def test_simple_readouts_match_loop(cls, fn):
    x, batch = _batch(SIZES)
    out = cls()(x, batch, len(SIZES))
    for g in range(len(SIZES)):
        rows = x[batch == g]
        if rows.numel() == 0:
            expected = torch.zeros(x.size(1))
        else:
            expected = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0).values}[fn]
        torch.testing.assert_close(out[g], expected)


def test_set2set_equals_pyg_with_copied_weights():
    x, batch = _batch([4, 1, 3, 6], feats=8)
    ours, theirs = Set2Set(8, processing_steps=3), PyGSet2Set(8, processing_steps=3)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, batch, 4), theirs(x, batch, dim_size=4))
    x.requires_grad_(True)
    g1 = torch.autograd.grad(ours(x, batch, 4).square().sum(), x)[0]
    g2 = torch.autograd.grad(theirs(x, batch, dim_size=4).square().sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_set2set_empty_graph_is_zero_input_lstm_state():
    x, batch = _batch([2, 0, 3], feats=4)
    s2s = Set2Set(4, processing_steps=2)
    out = s2s(x, batch, 3)
    alone = s2s(x.new_zeros(0, 4), batch.new_zeros(0), 1)
    torch.testing.assert_close(out[1], alone[0])
    assert torch.all(out[1, 4:] == 0)  # no nodes: the attention read-out r is 0


def test_gated_readout_matches_equation():
    x, batch = _batch(SIZES, feats=5)
    x0 = torch.randn(x.size(0), 3)
    ro = GatedReadout(5, 4, init_channels=3)
    out = ro(x, batch, len(SIZES), x0=x0)
    gate = torch.sigmoid(torch.cat([x, x0], 1) @ ro.gate.weight.T + ro.gate.bias)
    value = x @ ro.value.weight.T + ro.value.bias
    expected = torch.zeros(len(SIZES), 4).index_add_(0, batch, gate * value)
    torch.testing.assert_close(out, expected)


def test_gated_readout_li_form_matches_li_et_al_eq_7():
    x, batch = _batch(SIZES, feats=5)
    x0 = torch.randn(x.size(0), 3)
    ro = GatedReadout(5, 4, init_channels=3, form="li")
    hx = torch.cat([x, x0], 1)  # (h_v^T, x_v)
    gated = torch.sigmoid(hx @ ro.gate.weight.T + ro.gate.bias) * torch.tanh(hx @ ro.value.weight.T + ro.value.bias)
    expected = torch.tanh(torch.zeros(len(SIZES), 4).index_add_(0, batch, gated))  # h_G = tanh(sum_v σ(i) ⊙ tanh(j))
    torch.testing.assert_close(ro(x, batch, len(SIZES), x0=x0), expected)
    with pytest.raises(ValueError, match="form"):
        GatedReadout(5, 4, form="tanh")


@pytest.mark.parametrize("idx", range(5))
def test_readouts_are_permutation_invariant(idx):
    x, batch = _batch(SIZES)
    ro = _readouts(x.size(1))[idx]
    perm = torch.randperm(x.size(0))
    torch.testing.assert_close(ro(x[perm], batch[perm], len(SIZES)), ro(x, batch, len(SIZES)))


@pytest.mark.parametrize("idx", range(5))
def test_batched_readout_equals_per_graph(idx):
    x, batch = _batch(SIZES)
    ro = _readouts(x.size(1))[idx]
    out = ro(x, batch, len(SIZES))
    for g in range(len(SIZES)):
        rows = x[batch == g]
        single = ro(rows, torch.zeros(rows.size(0), dtype=torch.long), 1)
        torch.testing.assert_close(out[g : g + 1], single)


def test_set2set_gradcheck_float64():
    x, batch = _batch([3, 2], feats=3, dtype=torch.float64)
    s2s = Set2Set(3, processing_steps=2).double()
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: s2s(t, batch, 2), (x,))


def test_readout_errors():
    x, batch = _batch([2, 2])
    with pytest.raises(ValueError, match="x must have shape"):
        Set2Set(5, processing_steps=2)(x, batch, 2)
    with pytest.raises(ValueError, match="steps"):
        Set2Set(6, processing_steps=0)
    with pytest.raises(ValueError, match="pass x0"):
        GatedReadout(6, 2, init_channels=3)(x, batch, 2)
    with pytest.raises(ValueError, match="x0 must have shape"):
        GatedReadout(6, 2, init_channels=3)(x, batch, 2, x0=torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch contains 1, which is out of range for num_graphs=1"):
        SumReadout()(x, batch, 1)  # batch holds graph 1, but num_graphs says 1 graph
    with pytest.raises(ValueError, match="batch contains 7"):
        Set2Set(6, processing_steps=2)(x, batch + 6, 2)  # a clear error, not an IndexError inside the LSTM loop
    torch.testing.assert_close(SumReadout()(x, batch), SumReadout()(x, batch, 2))  # count read from batch, as PyG
    with pytest.raises(ValueError, match=r"batch must have shape \[N\] = \[4\]"):
        MeanReadout()(x, batch[:3], 2)
