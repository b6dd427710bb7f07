"""EdgeNetworkConv == torch_geometric.nn.NNConv with copied weights; z reuse; peak memory."""

import pytest
import torch
from torch import nn
from torch_geometric.nn import NNConv

from gnnkit.bench.probes import peak_tensor_bytes
from gnnkit.bench.synthetic import complete_edges
from gnnkit.nn import EdgeNetworkConv, Graph
from gnnkit.ops import CSR, DegreeBuckets, use_backend


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(d, d_out, edge_dim, hidden, aggr, root):
    ours = EdgeNetworkConv(d, d_out, aggr=aggr, root_weight=root, edge_dim=edge_dim, hidden=hidden)
    mlp = nn.Sequential(nn.Linear(edge_dim, hidden), nn.ReLU(), nn.Linear(hidden, d * d_out))
    pyg = NNConv(d, d_out, mlp, aggr={"sum": "add", "mean": "mean"}[aggr], root_weight=root)
    with torch.no_grad():
        pyg.nn[0].load_state_dict(ours.edge_mlp[0].state_dict())
        pyg.nn[2].load_state_dict(ours.edge_out.state_dict())
        pyg.bias.copy_(ours.bias)
        if root:
            pyg.lin.weight.copy_(ours.root.weight)
    return ours.double(), pyg.double()


def _random_graph(n=15, e=50, edge_dim=4):
    ei = torch.randint(0, n - 3, (2, e))  # the last 3 nodes are isolated
    ei = torch.cat([ei, torch.stack([torch.arange(e // 2) % (n - 3), torch.full((e // 2,), 1)])], 1)  # a hub
    return ei, torch.randn(n, 6, dtype=torch.float64), torch.randn(ei.size(1), edge_dim, dtype=torch.float64)


@pytest.mark.parametrize("aggr", ["sum", "mean"])
@pytest.mark.parametrize("root", [False, True])
def test_matches_pyg_nnconv(aggr, root):
    ei, x, ea = _random_graph()
    ours, pyg = _pair(6, 5, 4, 7, aggr, root)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, ref = ours(x1, ei, ea), pyg(x2, ei, ea)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.edge_out.weight.grad, pyg.nn[2].weight.grad)
    torch.testing.assert_close(ours.edge_out.bias.grad, pyg.nn[2].bias.grad)
    torch.testing.assert_close(ours.edge_mlp[0].weight.grad, pyg.nn[0].weight.grad)


def test_precomputed_hidden_and_graph_give_the_same_result():
    ei, x, ea = _random_graph()
    conv = EdgeNetworkConv(6, 6, aggr="mean", root_weight=False, edge_dim=4, hidden=7).double()
    ref = conv(x, ei, ea)
    csr = CSR.from_edge_index(ei, x.size(0))
    torch.testing.assert_close(conv(x, csr, ea), ref)
    graph = Graph.from_edge_index(ei, x.size(0), edge_attr=ea)
    torch.testing.assert_close(conv(x, graph), ref)
    prepared = conv.prepare(graph)
    assert prepared.buckets is not None and conv.prepare(prepared) is prepared  # built once
    z = conv.edge_features(prepared)  # the hidden activation, computed once, reused by every step
    torch.testing.assert_close(z, conv.edge_hidden(csr.permute(ea)))
    torch.testing.assert_close(conv.propagate(x, prepared, z), ref)
    # without buckets (the CUDA path, or while compiling) the kernel groups the targets itself
    torch.testing.assert_close(conv.propagate(x, graph, z), ref)
    with_other = graph.replace(buckets=DegreeBuckets.from_csr(csr, min_slab=10**9))
    torch.testing.assert_close(conv.propagate(x, with_other, z), ref)


def test_triton_path_under_interpreter():
    ei, x, ea = _random_graph(n=6, e=10)
    conv = EdgeNetworkConv(6, 6, aggr="sum", root_weight=False, edge_dim=4, hidden=5)
    x, ea = x.float(), ea.float()
    ref = conv(x, ei, ea)
    with use_backend("triton"):
        out = conv(x, ei, ea)
    torch.testing.assert_close(out, ref)


def test_errors():
    ei, x, ea = _random_graph()
    conv = EdgeNetworkConv(6, 6, root_weight=False, edge_dim=4, hidden=7).double()
    with pytest.raises(ValueError, match="aggr"):
        EdgeNetworkConv(6, 6, aggr="max", edge_dim=4)
    with pytest.raises(ValueError, match="hidden"):
        EdgeNetworkConv(6, 6, edge_dim=4, hidden=0)
    with pytest.raises(ValueError, match="x must have shape"):
        conv(x[:, :5], ei, ea)
    with pytest.raises(ValueError, match="edge_attr must have shape"):
        conv(x, ei, ea[:, :3])
    with pytest.raises(ValueError, match="needs edge features: pass edge_attr"):
        conv(x, ei)
    with pytest.raises(ValueError, match="edge_attr has 3 rows"):
        conv(x, ei, ea[:3])


def test_peak_memory_on_complete_graph_stays_far_below_per_edge_matrices():
    n, d, k = 40, 32, 16
    ei = complete_edges(n)
    e = ei.size(1)
    x = torch.randn(n, d, requires_grad=True)
    ea = torch.randn(e, 5)
    ours = EdgeNetworkConv(d, d, aggr="mean", root_weight=False, edge_dim=5, hidden=k)
    pyg = NNConv(d, d, nn.Sequential(nn.Linear(5, k), nn.ReLU(), nn.Linear(k, d * d)), aggr="mean")
    per_edge_matrices = e * d * d * 4  # the E x d x d float32 tensor NNConv builds
    peak_ours = peak_tensor_bytes(lambda: ours(x, ei, ea).sum().backward())
    peak_pyg = peak_tensor_bytes(lambda: pyg(x, ei, ea).sum().backward())
    assert peak_pyg > per_edge_matrices  # the measurement sees the big tensor when it exists
    assert peak_ours < per_edge_matrices / 4
    # What we do hold: node-level K x d blocks, per-edge vectors of size K or d, parameter grads.
    assert peak_ours < 6 * 4 * (n * k * d + e * (k + d + 5) + k * d * d)


@pytest.mark.parametrize("root", [False, True])
@pytest.mark.parametrize("backward", [False, True])
def test_cost_model_matches_the_counted_products(root, backward, monkeypatch):
    """flops() against torch.utils.flop_counter on a forward (+ backward): the counter sees the
    dense and batched products (the CPU outer aggregation is bmm) but not the CSR spmm (2 E d).
    Complete graphs, so that no degree bucket is padded (padding would add counted products).
    The fused CPU path runs at any size here (its threshold set to 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    import gnnkit.ops.outer_linear

    monkeypatch.setattr(gnnkit.ops.outer_linear, "FUSED_MIN_S_BYTES", 0)

    torch.manual_seed(0)
    conv = EdgeNetworkConv(6, 5, edge_dim=4, hidden=10, root_weight=root)
    blocks, start = [], 0
    for n in (4, 6, 5):
        blocks.append(complete_edges(n) + start)
        start += n
    ei = torch.cat(blocks, 1)
    x, ea = torch.randn(start, 6, requires_grad=True), torch.randn(ei.size(1), 4)
    with FlopCounterMode(display=False) as counter:
        out = conv(x, ei, ea)
        if backward:
            out.sum().backward()
    spmm = 2 * ei.size(1) * 6 * (3 if backward else 1)
    # The CPU backward recomputes S block by block (gnnkit.ops.outer_linear) instead of storing
    # it: 2 E K d counted products that are not work of the model, so not in flops().
    recompute = 2 * ei.size(1) * 10 * 6 if backward else 0
    assert conv.flops(x.size(0), ei.size(1), backward=backward) == counter.get_total_flops() + spmm - recompute
    assert conv.flops(x.size(0), ei.size(1), backward, edge_mlp=False) == conv.flops(
        x.size(0), ei.size(1), backward) - 2 * ei.size(1) * 4 * 10 * (2 if backward else 1)


def test_edge_mlp_first_layer_as_addmm_matches_the_module():
    """The edge MLP's first Linear runs as addmm on a row-major W^T (a faster weight gradient on
    CPU); outputs and gradients equal the module's, and a hooked module is called as it is."""
    torch.manual_seed(0)
    conv = EdgeNetworkConv(4, 3, edge_dim=5, hidden=16)
    ea, g = torch.randn(50, 5), torch.randn(50, 16)
    out = conv.edge_hidden(ea)
    out.backward(g)
    grads = [p.grad.clone() for p in conv.edge_mlp.parameters()]
    conv.zero_grad()
    ref = conv.edge_mlp(ea)
    ref.backward(g)
    torch.testing.assert_close(out, ref)
    for a, p in zip(grads, conv.edge_mlp.parameters()):
        torch.testing.assert_close(a, p.grad)
    seen = []
    conv.edge_mlp[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    torch.testing.assert_close(conv.edge_hidden(ea), ref)
    assert seen == [(50, 16)]


@pytest.mark.parametrize("aggr", ["add", "mean"])
def test_fused_and_two_step_paths_agree(aggr, monkeypatch):
    """The CPU layer below the fused path's size threshold (two steps: S, then one product) and
    above it (gnnkit.ops.outer_linear, blocked) give the same outputs and gradients."""
    import gnnkit.ops.outer_linear

    blocks, start = [], 0
    for n in (4, 7, 5):
        blocks.append(complete_edges(n) + start)
        start += n
    ei = torch.cat(blocks, 1)
    torch.manual_seed(0)
    conv = EdgeNetworkConv(6, 5, edge_dim=4, hidden=10, aggr=aggr)
    x, ea = torch.randn(start, 6, dtype=torch.float64), torch.randn(ei.size(1), 4, dtype=torch.float64)
    conv = conv.double()
    results = []
    for threshold in (1 << 62, 0):
        monkeypatch.setattr(gnnkit.ops.outer_linear, "FUSED_MIN_S_BYTES", threshold)
        conv.zero_grad()
        xi = x.clone().requires_grad_()
        out = conv(xi, ei, ea)
        out.square().sum().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in conv.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = results
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(g1, g2)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b)
