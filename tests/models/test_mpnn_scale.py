"""The MPNN's scale options (message_scale, edge_init_scale), checked against Gilmer's update
transcribed here, and PyG's qm9_nn_conv model in the registry."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnkit.models import MODELS, MPNN, build_model
from gnnkit.models.pyg_reference import PygQM9NNConv

IN, EDGE, D = 6, 5, 8


def molecule(n: int, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    attr = torch.rand(ei.size(1), EDGE, generator=g, dtype=torch.float64) * 3
    return Data(x=torch.randn(n, IN, generator=g, dtype=torch.float64), edge_index=ei, edge_attr=attr)


def gilmer_states(model: MPNN, data: Data, scale: float) -> torch.Tensor:
    """h^T from the paper's equations: m_v = scale * (sum_w A(e_vw) h_w + b), h_v = GRU(m_v, h_v)
    (b: the edge network layer's bias, gnnkit's and NNConv's default)."""
    conv, gru = model.conv.layer, model.conv.gru
    h = torch.relu(model.lin_in(data.x))
    src, dst = data.edge_index
    for _ in range(model.steps):
        a = conv.nn(data.edge_attr).view(-1, D, D)  # A(e): [E, d_in, d_out], NNConv's layout
        per_edge = torch.einsum("ei,eio->eo", h[src], a)
        m = torch.zeros_like(h).index_add_(0, dst, per_edge).add(conv.bias) * scale
        h = gru(m, h)
    return h


@pytest.mark.parametrize("scale", [1.0, 1 / 18])
def test_message_scale_is_a_constant_on_the_summed_message(scale):
    torch.manual_seed(0)
    model = MPNN(IN, 1, edge_dim=EDGE, channels=D, edge_hidden=4, message_scale=scale).double()
    data = molecule(5, 1)
    torch.testing.assert_close(model.node_states(data), gilmer_states(model, data, scale))


def test_edge_init_scale_scales_only_the_edge_networks_output_layer():
    torch.manual_seed(0)
    plain = MPNN(IN, 1, edge_dim=EDGE, channels=D, edge_hidden=4)
    torch.manual_seed(0)
    scaled = MPNN(IN, 1, edge_dim=EDGE, channels=D, edge_hidden=4, edge_init_scale=0.25)
    a, b = plain.state_dict(), scaled.state_dict()
    for key in a:
        factor = 0.25 if "edge_out" in key else 1.0
        torch.testing.assert_close(b[key], a[key] * factor, msg=key)


@pytest.mark.parametrize("option", ["message_scale", "edge_init_scale"])
@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan")])
def test_scale_errors(option, value):
    with pytest.raises(ValueError, match=option):
        MPNN(IN, 1, edge_dim=EDGE, **{option: value})


def test_pyg_nnconv_is_registered():
    model = build_model("pyg-nnconv", IN, 1, edge_dim=EDGE, channels=D, edge_hidden=4)
    assert isinstance(model, PygQM9NNConv) and MODELS["pyg-nnconv"].task == "graph"
    batch = Batch.from_data_list([molecule(3, 0), molecule(4, 1)])
    batch.x, batch.edge_attr = batch.x.float(), batch.edge_attr.float()
    assert model(batch).shape == (2, 1)
