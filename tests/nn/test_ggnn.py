"""GGNNConv against a dense transcription of Li et al. 2016, eq. 1-6."""

import pytest
import torch

from gnnkit.nn import GGNNConv, Graph, LiGRUCell


pytestmark = pytest.mark.usefixtures("one_thread")


def _dense_ggnn(conv: GGNNConv, x, edge_index, edge_type, steps):
    n, d, num_types = x.size(0), conv.channels, conv.num_edge_types
    a_in = torch.zeros(num_types, n, n, dtype=x.dtype)  # a_in[t, v, w]: edges w -> v of type t
    for (w, v), t in zip(edge_index.t().tolist(), edge_type.tolist()):
        a_in[t, v, w] += 1
    a_out = a_in.transpose(1, 2)  # edges v -> w seen from v
    gru = conv.gru
    w_z, w_r, w_h = gru.lin_a.weight.split(d)
    b_z, b_r, b_h = gru.lin_a.bias.split(d)
    u_z, u_r = gru.lin_h.weight.split(d)
    u_h = gru.lin_rh.weight
    h = torch.cat([x, x.new_zeros(n, d - x.size(1))], 1)  # h^0: zero-padded annotation
    for _ in range(steps):
        incoming = sum(a_in[t] @ h @ conv.weight_in[t].t() for t in range(num_types))
        outgoing = sum(a_out[t] @ h @ conv.weight_out[t].t() for t in range(num_types))
        a = torch.cat([incoming, outgoing], 1) + conv.bias  # eq. 2: a_v in R^{2D}
        z = torch.sigmoid(a @ w_z.t() + b_z + h @ u_z.t())  # eq. 3
        r = torch.sigmoid(a @ w_r.t() + b_r + h @ u_r.t())  # eq. 4
        h_tilde = torch.tanh(a @ w_h.t() + b_h + (r * h) @ u_h.t())  # eq. 5
        h = (1 - z) * h + z * h_tilde  # eq. 6
    return h


def _graph(n=9, e=30, types=3):
    ei = torch.randint(0, n - 1, (2, e))  # node n-1 is isolated
    return ei, torch.randint(0, types, (e,)), torch.randn(n, 4, dtype=torch.float64)


def _pad(x, d=6):
    return torch.nn.functional.pad(x, (0, d - x.size(1)))


def _steps(conv, x, ei, et, steps):
    """GG-NN's propagation: ``steps`` steps of one layer from the zero-padded annotation."""
    graph = Graph.from_edge_index(ei, x.size(0), edge_type=et)
    h = _pad(x)
    for _ in range(steps):
        h = conv(h, graph)
    return h


@pytest.mark.parametrize("steps", [1, 3])
def test_matches_dense_equations(steps):
    ei, et, x = _graph()
    conv = GGNNConv(6, 3).double()
    with torch.no_grad():
        conv.bias.normal_()  # non-zero bias, so its placement is checked too
    torch.testing.assert_close(_steps(conv, x, ei, et, steps), _dense_ggnn(conv, x, ei, et, steps))


def test_graph_and_edge_index_give_the_same_result():
    ei, et, x = _graph()
    conv = GGNNConv(6, 3).double()
    graph = Graph.from_edge_index(ei, x.size(0), edge_type=et)
    torch.testing.assert_close(conv(_pad(x), graph), conv(_pad(x), ei, et))
    torch.testing.assert_close(conv.propagate(_pad(x), graph, graph.edge_type), conv(_pad(x), ei, edge_type=et))


def test_permutation_equivariance_and_gradients():
    ei, et, x = _graph()
    conv = GGNNConv(6, 3).double()
    perm = torch.randperm(x.size(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    torch.testing.assert_close(_steps(conv, x[perm], inv[ei], et, 2), _steps(conv, x, ei, et, 2)[perm])
    _steps(conv, x, ei, et, 2).sum().backward()
    assert conv.weight_out.grad.abs().sum() > 0 and conv.gru.lin_rh.weight.grad.abs().sum() > 0


def test_li_gru_cell_differs_from_torch_gru_only_in_the_reset_gate_placement():
    cell = LiGRUCell(4, 3).double()
    a, h = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    ref = torch.nn.GRUCell(4, 3).double()
    # torch's gate order is (r, z, n) and its z keeps the old state (h' = (1 - z) n + z h), so its
    # z is Li's 1 - z: sigmoid(-x), negated weights.
    with torch.no_grad():
        w_z, w_r, w_h = cell.lin_a.weight.split(3)
        b_z, b_r, b_h = cell.lin_a.bias.split(3)
        u_z, u_r = cell.lin_h.weight.split(3)
        ref.weight_ih.copy_(torch.cat([w_r, -w_z, w_h]))
        ref.bias_ih.copy_(torch.cat([b_r, -b_z, b_h]))
        ref.weight_hh.copy_(torch.cat([u_r, -u_z, cell.lin_rh.weight]))
        ref.bias_hh.zero_()
    # Without hidden-side bias the two agree where r * (U h) == U (r * h), e.g. at h = 0.
    zero = torch.zeros_like(h)
    torch.testing.assert_close(cell(a, zero), ref(a, zero))
    assert not torch.allclose(cell(a, h), ref(a, h))


def test_errors():
    ei, et, x = _graph()
    x = _pad(x)
    conv = GGNNConv(6, 3).double()
    with pytest.raises(ValueError, match="channels"):
        conv(torch.randn(9, 7, dtype=torch.float64), ei, et)
    with pytest.raises(ValueError, match="edge_type"):
        conv(x, ei, et[:-1])
    with pytest.raises(ValueError, match="edge_type"):
        conv(x, ei, et + 3)
    with pytest.raises(TypeError, match="edge_type"):
        conv(x, ei, et.float())
    with pytest.raises(ValueError, match="needs edge types"):
        conv(x, ei)
    with pytest.raises(ValueError, match="num_edge_types"):
        GGNNConv(6, 0)
    with pytest.raises(ValueError, match="channels"):
        GGNNConv(0, 3)  # a clear error, not a ZeroDivisionError in the initialiser
