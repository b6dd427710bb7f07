"""Weight sharing made visible: a CNN is message passing on a grid graph with one weight per
offset, and an RNN is message passing along a path graph. Both must agree with torch's layers.

The graph builders live in gnnkit.data (above nn); tests may import both.
"""

import pytest
import torch
from torch import nn

from gnnkit.data import grid_graph, grid_offsets, path_graph
from gnnkit.nn import GRUMessagePassing, RelationalConv


def _nodes(images: torch.Tensor) -> torch.Tensor:
    return images.movedim(1, -1).reshape(-1, images.size(1))


def _images(nodes: torch.Tensor, like: torch.Tensor, channels: int) -> torch.Tensor:
    b, _, *shape = like.shape
    return nodes.view(b, *shape, channels).movedim(-1, 1)


# ---------------------------------------------------------------------------------------- grids


def test_grid_graph_edges_and_types():
    h, w = 4, 5
    edge_index, edge_type = grid_graph((h, w), 3)
    offsets = grid_offsets(3, 2)
    assert offsets.tolist()[4] == [0, 0]
    # One edge per (target, offset) whose source lies inside the grid.
    expected = sum((h - abs(di)) * (w - abs(dj)) for di, dj in offsets.tolist())
    assert edge_index.shape == (2, expected) and edge_type.shape == (expected,)
    src, dst = edge_index
    for r, (di, dj) in enumerate(offsets.tolist()):
        sel = edge_type == r
        ds, dd = src[sel], dst[sel]
        assert torch.equal(ds // w - dd // w, torch.full_like(ds, di))
        assert torch.equal(ds % w - dd % w, torch.full_like(ds, dj))
    assert torch.equal(src[edge_type == 4], dst[edge_type == 4])  # centre = self-loop
    # Corner pixel 0 sees 4 of the 9 offsets (the others fall into the zero padding).
    assert int((dst == 0).sum()) == 4


def test_grid_graph_batch_is_disjoint_copies():
    one, t1 = grid_graph((3, 3))
    two, t2 = grid_graph((3, 3), batch_size=2)
    assert torch.equal(two[:, : one.size(1)], one) and torch.equal(two[:, one.size(1) :], one + 9)
    assert torch.equal(t2, t1.repeat(2))


@pytest.mark.parametrize("padding", [1, "same"])
def test_relational_conv_equals_conv2d(padding):
    conv = nn.Conv2d(3, 4, 3, padding=padding).double()
    images = torch.randn(2, 3, 5, 6, dtype=torch.double)
    edge_index, edge_type = grid_graph((5, 6), 3, batch_size=2)

    # Copy the weights by hand: edge type r = kernel position r in row-major order.
    layer = RelationalConv(3, 4, num_relations=9, aggr="sum", root_weight=False).double()
    with torch.no_grad():
        for r, (ki, kj) in enumerate((i, j) for i in range(3) for j in range(3)):
            layer.weight[r] = conv.weight[:, :, ki, kj].T
        layer.bias.copy_(conv.bias)
    out = _images(layer(_nodes(images), edge_index, edge_type), images, 4)
    torch.testing.assert_close(out, conv(images), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        RelationalConv.from_conv(conv)(_nodes(images), edge_index, edge_type), _nodes(conv(images))
    )


def test_relational_conv_gradients_equal_conv2d():
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    layer = RelationalConv.from_conv(conv)
    images = torch.randn(1, 2, 4, 4, dtype=torch.double, requires_grad=True)
    x = _nodes(images.detach()).requires_grad_()
    edge_index, edge_type = grid_graph((4, 4))
    target = torch.randn(1, 3, 4, 4, dtype=torch.double)
    (conv(images) * target).sum().backward()
    (layer(x, edge_index, edge_type) * _nodes(target)).sum().backward()
    torch.testing.assert_close(x.grad, _nodes(images.grad))
    torch.testing.assert_close(layer.weight.grad, conv.weight.grad.flatten(2).permute(2, 1, 0))
    torch.testing.assert_close(layer.bias.grad, conv.bias.grad)


def test_relational_conv_equals_conv3d_and_dilated_conv2d():
    conv3 = nn.Conv3d(2, 3, 3, padding=1).double()
    vol = torch.randn(2, 2, 3, 4, 3, dtype=torch.double)
    ei, et = grid_graph((3, 4, 3), 3, batch_size=2)
    out = RelationalConv.from_conv(conv3)(_nodes(vol), ei, et)
    torch.testing.assert_close(out, _nodes(conv3(vol)))

    conv5 = nn.Conv2d(2, 2, 5, padding=4, dilation=2).double()
    img = torch.randn(1, 2, 7, 6, dtype=torch.double)
    ei, et = grid_graph((7, 6), 5, dilation=2)
    torch.testing.assert_close(RelationalConv.from_conv(conv5)(_nodes(img), ei, et), _nodes(conv5(img)))


def test_relational_conv_matches_dense_reference_and_pyg():
    from torch_geometric.nn import RGCNConv

    n, e, r = 7, 20, 3
    x = torch.randn(n, 4, dtype=torch.double)
    edge_index = torch.randint(0, n, (2, e))
    edge_type = torch.randint(0, r, (e,))
    layer = RelationalConv(4, 5, r, aggr="sum", root_weight=True).double()
    dense = x @ layer.root + layer.bias
    for t in range(r):
        a = torch.zeros(n, n, dtype=torch.double)
        sel = edge_type == t
        a.index_put_((edge_index[1, sel], edge_index[0, sel]), torch.ones(int(sel.sum()), dtype=torch.double), accumulate=True)
        dense = dense + a @ x @ layer.weight[t]
    torch.testing.assert_close(layer(x, edge_index, edge_type), dense)

    pyg = RGCNConv(4, 5, r, aggr="add", root_weight=True).double()
    with torch.no_grad():
        pyg.weight.copy_(layer.weight)
        pyg.root.copy_(layer.root)
        pyg.bias.copy_(layer.bias)
    torch.testing.assert_close(layer(x, edge_index, edge_type), pyg(x, edge_index, edge_type))

    perm = torch.randperm(n)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    torch.testing.assert_close(layer(x[perm], inv[edge_index], edge_type), layer(x, edge_index, edge_type)[perm])


def test_relational_conv_errors():
    layer = RelationalConv(2, 2, 3)
    x, ei = torch.randn(3, 2), torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="edge_type"):
        layer(x, ei, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="edge_type"):
        layer(x, ei, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.randn(3, 5), ei, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_relations"):
        RelationalConv(2, 2, 0)
    with pytest.raises(ValueError, match="stride"):
        RelationalConv.from_conv(nn.Conv2d(2, 2, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="same"):
        RelationalConv.from_conv(nn.Conv2d(2, 2, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        grid_graph((3, 3), 2)
    with pytest.raises(ValueError, match="shape"):
        grid_graph((3, 0))


# ---------------------------------------------------------------------------------------- paths


def test_path_graph():
    assert path_graph([3, 0, 2]).tolist() == [[0, 1, 3], [1, 2, 4]]
    assert path_graph(3, reverse=True).tolist() == [[1, 2], [0, 1]]
    assert path_graph([1, 1]).shape == (2, 0)
    with pytest.raises(ValueError, match="lengths"):
        path_graph([2, -1])
    with pytest.raises(TypeError, match="lengths"):
        path_graph([1.5])


def test_gru_message_passing_equals_gru():
    gru = nn.GRU(3, 5, batch_first=True).double()
    seq = torch.randn(2, 6, 3, dtype=torch.double)
    expected, h_n = gru(seq)
    layer = GRUMessagePassing.from_gru(gru)
    out = layer.unroll(seq.reshape(-1, 3), path_graph([6, 6]), num_steps=6)
    torch.testing.assert_close(out.view(2, 6, 5), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.view(2, 6, 5)[:, -1], h_n[0])
    # Fewer steps: exactly the first k positions are final.
    partial = layer.unroll(seq.reshape(-1, 3), path_graph([6, 6]), num_steps=3).view(2, 6, 5)
    torch.testing.assert_close(partial[:, :3], expected[:, :3])
    assert not torch.allclose(partial[:, 3:], expected[:, 3:])


def test_gru_message_passing_equals_bidirectional_two_layer_gru_on_ragged_batch():
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    lengths = [5, 2, 4]
    seqs = [torch.randn(n, 3, dtype=torch.double) for n in lengths]
    packed = nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(gru(packed)[0], batch_first=True)

    fwd, bwd, steps = path_graph(lengths), path_graph(lengths, reverse=True), max(lengths)
    h = torch.cat(seqs)
    for layer in range(2):
        h = torch.cat(
            [
                GRUMessagePassing.from_gru(gru, layer).unroll(h, fwd, steps),
                GRUMessagePassing.from_gru(gru, layer, reverse=True).unroll(h, bwd, steps),
            ],
            dim=1,
        )
    for s, part in enumerate(h.split(lengths)):
        torch.testing.assert_close(part, expected[s, : lengths[s]])


def test_gru_message_passing_one_step_is_the_base_forward():
    gru = nn.GRU(3, 4).double()
    layer = GRUMessagePassing.from_gru(gru)
    x, graph = torch.randn(5, 3, dtype=torch.double), path_graph(5)
    h = torch.zeros(5, 4, dtype=torch.double)
    for _ in range(5):
        h = layer((h, x), graph)  # forward = one step from states h with inputs x
    torch.testing.assert_close(h, layer.unroll(x, graph, 5))


def test_gru_message_passing_gradients_equal_gru():
    gru = nn.GRU(2, 3, batch_first=True).double()
    layer = GRUMessagePassing.from_gru(gru)
    seq = torch.randn(1, 4, 2, dtype=torch.double, requires_grad=True)
    x = seq.detach().reshape(-1, 2).requires_grad_()
    gru(seq)[0].pow(2).sum().backward()
    layer.unroll(x, path_graph(4), 4).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, seq.grad.view(-1, 2))
    torch.testing.assert_close(layer.weight_hh.grad, gru.weight_hh_l0.grad)
    torch.testing.assert_close(layer.bias_ih.grad, gru.bias_ih_l0.grad)


def test_gru_message_passing_errors():
    layer = GRUMessagePassing(2, 3)
    with pytest.raises(ValueError, match="num_steps"):
        layer.unroll(torch.randn(4, 2), path_graph(4), -1)
    with pytest.raises(ValueError, match="h must have shape"):
        layer.unroll(torch.randn(4, 2), path_graph(4), 2, h=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="h must have shape"):
        layer((torch.zeros(4, 2), torch.randn(4, 2)), path_graph(4))  # one step: (states, inputs)
    with pytest.raises(ValueError, match="reverse"):
        GRUMessagePassing.from_gru(nn.GRU(2, 3), reverse=True)
    with pytest.raises(TypeError, match="gru"):
        GRUMessagePassing.from_gru(nn.LSTM(2, 3))
