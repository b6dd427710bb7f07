"""The Section 2 models (nfp, interaction, weave, dtnn, chebnet) read out and step as their papers
say: each model against its equations composed here from the (separately tested) layers, plus
their input errors and a few training steps."""

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from gnnkit.bench.synthetic import complete_edges
from gnnkit.models import DTNN, MODELS, ChebNet, InteractionNetwork, NeuralFingerprint, Weave, build_model

pytestmark = pytest.mark.usefixtures("one_thread")
IN, EDGE = 6, 5
D = torch.float64


def _molecule(n: int, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=D) * 2
    ei = complete_edges(n)
    attr = torch.rand(ei.size(1), EDGE, generator=g, dtype=D)
    return Data(x=torch.randn(n, IN, generator=g, dtype=D), edge_index=ei, edge_attr=attr, pos=pos)


def test_nfp_fingerprint_sums_softmax_outputs_over_nodes_and_steps():
    model = NeuralFingerprint(IN, 2, EDGE, channels=5, steps=3, fingerprint=4, max_degree=2).double()
    data = _molecule(5, 0)
    h, fp = data.x, torch.zeros(4, dtype=D)
    for conv, w in zip(model.convs, model.outputs):
        h = conv(h, data.edge_index, data.edge_attr)
        fp = fp + torch.softmax(w(h), dim=1).sum(0)  # sum_{v,t} softmax(W_t h_v^t)
    torch.testing.assert_close(model(data), model.head(fp)[None])


def test_interaction_network_feeds_the_atom_features_to_every_update():
    model = InteractionNetwork(IN, 2, EDGE, channels=5, steps=3, hidden=4).double()
    data = _molecule(5, 1)
    h = torch.relu(model.lin_in(data.x))
    for _ in range(3):
        h = model.conv(torch.cat([h, data.x], 1), data.edge_index, data.edge_attr)  # U = NN(h_v, x_v, m_v)
    torch.testing.assert_close(model(data), model.head(h.sum(0))[None])  # R = f(sum_v h_v^T)


def test_weave_updates_node_and_edge_states_every_step():
    model = Weave(IN, 2, EDGE, channels=5, edge_channels=3, steps=3).double()
    data = _molecule(5, 2)
    src, dst = data.edge_index
    h, e = data.x, data.edge_attr
    for conv in model.convs:
        h_next = conv(h, data.edge_index, e)
        if conv.update_edges:  # e_vw^{t+1} from e^t, h_v^t, h_w^t, in edge_index order here
            e = conv.edge_update(e, h[src], h[dst], None)
        h = h_next
    torch.testing.assert_close(model(data), model.head(h.sum(0))[None])
    assert [c.update_edges for c in model.convs] == [True, True, False]


def test_dtnn_equations_on_gaussian_expanded_distances():
    model = DTNN(IN, 2, channels=4, steps=2, factors=3, hidden=5, mu_max=8.0).double()
    data = _molecule(4, 3)
    n = 4
    centers = -1.0 + 0.2 * torch.arange(46, dtype=D)  # -1 .. 8 Å
    c = data.x @ model.embed.weight.t()  # c_i^0 = C_{Z_i}
    conv = model.conv
    for _ in range(2):
        new = c.clone()
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                d_hat = torch.exp(-((data.pos[i] - data.pos[j]).norm() - centers) ** 2 / (2 * 0.2**2))
                factor = (conv.lin_cf.weight @ c[j] + conv.lin_cf.bias) * (conv.lin_df.weight @ d_hat + conv.lin_df.bias)
                new[i] = new[i] + torch.tanh(conv.lin_fc.weight @ factor)
        c = new
    energy = model.out(c).sum(0)  # E = sum_i NN(c_i^T)
    torch.testing.assert_close(model(data), energy[None])


def test_chebnet_is_its_layers_then_readout():
    model = ChebNet(IN, 2, channels=5, steps=2, K=3).double()
    data = _molecule(5, 4)
    h = data.x
    for conv in model.convs:
        h = torch.relu(conv(h, data.edge_index))
    torch.testing.assert_close(model(data), model.head(h.sum(0))[None])


def test_models_need_their_inputs():
    data = _molecule(4, 5)
    with pytest.raises(ValueError, match=r"data.pos of shape \[N, 3\]"):
        DTNN(IN, 1)(Data(x=data.x.float(), edge_index=data.edge_index))
    with pytest.raises(ValueError, match="data.edge_attr"):
        Weave(IN, 1, EDGE)(Data(x=data.x.float(), edge_index=data.edge_index))
    with pytest.raises(ValueError, match="edge_dim"):
        build_model("interaction", IN, 1)
    with pytest.raises(ValueError, match="edge_dim"):
        build_model("weave", IN, 1, edge_dim=0)
    with pytest.raises(ValueError, match="steps"):
        build_model("nfp", IN, 1, edge_dim=EDGE, steps=0)
    with pytest.raises(ValueError, match="readout"):
        build_model("chebnet", IN, 1, readout="set2set")
    with pytest.raises(TypeError, match="reads no edge features"):
        build_model("dtnn", IN, 1, edge_dim=EDGE)


@pytest.mark.parametrize("name", ["nfp", "interaction", "weave", "dtnn", "chebnet"])
def test_a_few_steps_fit_a_tiny_batch(name):
    torch.manual_seed(0)
    edge_dim = EDGE if MODELS[name].edge_features else None
    model = build_model(name, IN, 1, edge_dim=edge_dim, channels=8)
    batch = Batch.from_data_list([_molecule(n, s) for s, n in enumerate([3, 5, 4, 6])])
    for key in ("x", "edge_attr", "pos"):
        batch[key] = batch[key].float()
    graph = model.prepare(batch)
    y = torch.tensor([[1.0], [-1.0], [0.5], [2.0]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = (model(graph) - y).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0]
