"""MessagePassing base: message -> aggregate -> update against a naive loop."""

import pytest
import torch
from torch import Tensor

from gnnkit.nn import Graph, MessagePassing
from gnnkit.ops import CSR


class ScaledMessage(MessagePassing):
    """m_uv = edge_attr * x_u + x_v, update h' = h + m (exercises every hook)."""

    def message(self, x_src: Tensor, x_dst: Tensor, edge_attr: Tensor | None) -> Tensor:
        return edge_attr * x_src + x_dst

    def update(self, x: Tensor, aggregated: Tensor) -> Tensor:
        return x + aggregated


def _graph(n: int = 7, e: int = 15):
    # node n-1 gets no in-edges: an isolated target
    src = torch.randint(0, n, (e,))
    dst = torch.randint(0, n - 1, (e,))
    return torch.stack([src, dst]), torch.randn(n, 4), torch.randn(e, 1)


def _naive(x, edge_index, edge_attr, aggr):
    out = torch.zeros_like(x)
    for v in range(x.size(0)):
        ids = (edge_index[1] == v).nonzero().flatten()
        if ids.numel() == 0:
            continue
        msgs = edge_attr[ids] * x[edge_index[0, ids]] + x[v]
        out[v] = {"sum": msgs.sum(0), "mean": msgs.mean(0), "max": msgs.max(0).values, "min": msgs.min(0).values}[aggr]
    return x + out


@pytest.mark.parametrize("aggr", ["sum", "mean", "max", "min"])
def test_message_passing_matches_naive(aggr):
    edge_index, x, edge_attr = _graph()
    layer = ScaledMessage(aggr)
    torch.testing.assert_close(layer(x, edge_index, edge_attr), _naive(x, edge_index, edge_attr, aggr))


def test_prebuilt_csr_and_graph_equal_edge_index():
    edge_index, x, edge_attr = _graph()
    layer = ScaledMessage("sum")
    csr = CSR.from_edge_index(edge_index, x.size(0))
    ref = layer(x, edge_index, edge_attr)
    torch.testing.assert_close(layer(x, csr, edge_attr), ref)
    graph = Graph.from_edge_index(edge_index, x.size(0), edge_attr=edge_attr)
    torch.testing.assert_close(layer(x, graph), ref)
    torch.testing.assert_close(layer(x, edge_index, edge_attr=edge_attr), ref)
    # the unchecked step models repeat is the same computation
    torch.testing.assert_close(layer.propagate(x, graph, layer.edge_features(graph)), ref)


def test_forward_mutates_nothing():
    edge_index, x, edge_attr = _graph()
    copies = [t.clone() for t in (edge_index, x, edge_attr)]
    ScaledMessage("mean")(x, edge_index, edge_attr)
    for before, after in zip(copies, (edge_index, x, edge_attr)):
        assert torch.equal(before, after)


def test_permutation_equivariance():
    edge_index, x, edge_attr = _graph()
    layer = ScaledMessage("sum")
    perm = torch.randperm(x.size(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out_perm = layer(x[perm], inv[edge_index], edge_attr)
    torch.testing.assert_close(out_perm, layer(x, edge_index, edge_attr)[perm])


def test_bipartite_default_message():
    src = torch.tensor([0, 1, 2, 2])
    dst = torch.tensor([0, 0, 1, 1])
    x_src, x_dst = torch.randn(3, 2), torch.randn(2, 2)
    out = MessagePassing("sum")((x_src, x_dst), torch.stack([src, dst]))
    torch.testing.assert_close(out, torch.stack([x_src[0] + x_src[1], 2 * x_src[2]]))


def test_zero_edges_and_single_node():
    layer = ScaledMessage("max")
    x = torch.randn(1, 3)
    out = layer(x, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 1))
    torch.testing.assert_close(out, x)


def test_errors():
    edge_index, x, edge_attr = _graph()
    with pytest.raises(ValueError, match="aggr"):
        MessagePassing("median")
    graph = Graph.from_edge_index(edge_index, x.size(0), edge_attr=edge_attr)
    with pytest.raises(ValueError, match="graph was built for 7 -> 7 nodes"):
        ScaledMessage()(torch.randn(8, 4), graph)
    with pytest.raises(TypeError, match="given twice"):
        ScaledMessage()(x, edge_index, edge_attr, edge_attr=edge_attr)
    with pytest.raises(TypeError, match="when building the Graph"):
        ScaledMessage()(x, graph, edge_attr)
    with pytest.raises(ValueError, match="edge_index"):
        ScaledMessage()(x, torch.tensor([[0], [99]]), edge_attr[:1])
    with pytest.raises(ValueError, match="edge_attr has 14 rows but edge_index has 15 edges"):
        ScaledMessage()(x, edge_index, edge_attr[:-1])


def test_message_count_is_the_in_degree_or_the_masked_sum():
    edge_index, x, _ = _graph()
    graph = Graph.from_edge_index(edge_index, x.size(0))
    layer = MessagePassing()
    degree = torch.zeros(x.size(0)).index_add_(0, edge_index[1], torch.ones(edge_index.size(1)))
    torch.testing.assert_close(layer.message_count(graph, torch.float32), degree)  # node n-1: 0
    mask = torch.rand(edge_index.size(1))  # edge_index order
    masked = graph.replace(edge_mask=mask.index_select(0, graph.csr.perm))
    expect = torch.zeros(x.size(0)).index_add_(0, edge_index[1], mask)
    torch.testing.assert_close(layer.message_count(masked, torch.float32), expect)


class _OrderedEdges(MessagePassing):
    """Messages are the edge states; the edge update adds 1 to them."""

    def edge_update(self, edge, x_src, x_dst, u):
        return edge + 1.0

    def message(self, x_src, x_dst, edge):
        return edge


@pytest.mark.parametrize("old", [False, True])
def test_step_messages_read_the_updated_or_the_input_edge_states(old):
    edge_index, x, edge = _graph()
    graph = Graph.from_edge_index(edge_index, x.size(0), edge_attr=edge)
    layer = type("Layer", (_OrderedEdges,), {"messages_read_old_edges": old})()
    h, e, u = layer.step(x, graph, graph.edge_attr)
    torch.testing.assert_close(e, graph.edge_attr + 1.0)  # the returned edges are the updated ones
    read = graph.edge_attr if old else graph.edge_attr + 1.0
    expect = torch.zeros(x.size(0), 1).index_add_(0, graph.csr.row, read)
    torch.testing.assert_close(h, expect)
    assert u is None
