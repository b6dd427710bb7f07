"""Gilmer et al. 2017, Section 5, on the base: the master node, towers and the directed form
against dense transcriptions of the paper's equations written here (per molecule, loops over
nodes and edges, the GRU written out), and the graph-network step against a naive per-graph loop.
Batches hold several molecules, so a graph state leaking between them would show."""

import pytest
import torch
from torch import nn

from gnnkit.models._inputs import edge_type_from_one_hot, with_virtual_edges
from gnnkit.nn import Bidirectional, EdgeNetworkConv, Graph, GRUUpdate, MasterNode, MessagePassing, Towers

pytestmark = pytest.mark.usefixtures("one_thread")
D, DE, K, DM = 6, 3, 4, 5


def _batch(sizes=(4, 1, 5), seed=0, p=0.5, directed=False):
    """Random molecules (edges within each, ``p`` dense), edge features ``[E, DE]``, float64."""
    g = torch.Generator().manual_seed(seed)
    edges, batch, start = [], [], 0
    for i, n in enumerate(sizes):
        for a in range(n):
            for b in range(n):
                if a != b and (directed or a < b) and torch.rand(1, generator=g).item() < p:
                    edges.append((start + a, start + b))
                    if not directed:
                        edges.append((start + b, start + a))
        batch += [i] * n
        start += n
    ei = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    attr = torch.rand(ei.size(1), DE, generator=g, dtype=torch.float64)
    x = torch.randn(start, D, generator=g, dtype=torch.float64)
    graph = Graph.from_edge_index(ei, start, edge_attr=attr, batch=torch.tensor(batch), num_graphs=len(sizes))
    return x, ei, attr, torch.tensor(batch), graph


def _gru(cell: nn.GRUCell, m, h):
    """``torch.nn.GRUCell``'s equations (Cho et al. 2014) written out, gates in order r, z, n."""
    w_ir, w_iz, w_in = cell.weight_ih.chunk(3)
    w_hr, w_hz, w_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    r = torch.sigmoid(w_ir @ m + b_ir + w_hr @ h + b_hr)
    z = torch.sigmoid(w_iz @ m + b_iz + w_hz @ h + b_hz)
    n = torch.tanh(w_in @ m + b_in + r * (w_hn @ h + b_hn))
    return (1 - z) * n + z * h


def _edge_matrix(conv: EdgeNetworkConv, e):
    """Gilmer's edge network ``A(e)``: an MLP of the edge features reshaped to ``d x d'`` (the
    message is ``h_w A(e)``, NNConv's layout)."""
    lin1, lin2 = conv.edge_mlp[0], conv.edge_out
    hidden = torch.relu(lin1.weight @ e + lin1.bias)
    return (lin2.weight @ hidden + lin2.bias).view(conv.channels, conv.out_channels)


def _enn_messages(conv: EdgeNetworkConv, h, ei, attr, reverse=False):
    """``m_v = sum_{w -> v} h_w A(e_wv) + b`` (``reverse``: over the out-edges ``v -> w``)."""
    m = torch.zeros(h.size(0), conv.out_channels, dtype=h.dtype)
    for k in range(ei.size(1)):
        w, v = ei[0, k].item(), ei[1, k].item()
        if reverse:
            w, v = v, w
        m[v] += h[w] @ _edge_matrix(conv, attr[k])
    return m + conv.bias


def test_master_node_equals_an_explicit_extra_node_with_its_own_gru():
    torch.manual_seed(0)
    x, ei, attr, batch, graph = _batch()
    layer = MasterNode(GRUUpdate(EdgeNetworkConv(D, D, root_weight=False, edge_dim=DE, hidden=K), D), D, DM).double()
    graph = layer.prepare(graph)
    edge = layer.edge_features(graph)
    h, u = x, layer.initial_state(graph, x)
    for _ in range(3):
        h, _, u = layer.step(h, graph, edge, u)

    conv, gru, gru_m = layer.layer.layer, layer.layer.gru, layer.gru
    R, W = layer.read.weight, layer.write.weight  # the special edge type's messages M -> v, v -> M
    for gid in range(3):
        nodes = (batch == gid).nonzero().flatten()
        local = {n.item(): i for i, n in enumerate(nodes)}
        keep = torch.isin(ei[1], nodes)
        ei_g = torch.tensor([[local[s.item()] for s in ei[0, keep]], [local[t.item()] for t in ei[1, keep]]]).reshape(2, -1)
        # The molecule plus one more node M (width d_master) joined to every node.
        hv, hm = x[nodes], torch.zeros(DM, dtype=x.dtype)
        for _ in range(3):
            m = _enn_messages(conv, hv, ei_g, attr[keep])
            m = m + torch.stack([R @ hm for _ in range(hv.size(0))]) if hv.size(0) else m
            m_master = sum((W @ hv[i] for i in range(hv.size(0))), torch.zeros(DM, dtype=x.dtype))
            hv = torch.stack([_gru(gru, m[i], hv[i]) for i in range(hv.size(0))]) if hv.size(0) else hv
            hm = _gru(gru_m, m_master, hm)
        torch.testing.assert_close(h[nodes], hv)
        torch.testing.assert_close(u[gid], hm)


def test_towers_equal_k_independent_layers_concatenated_and_mixed():
    torch.manual_seed(1)
    x, ei, attr, _, graph = _batch(seed=1)
    towers = Towers(lambda c: GRUUpdate(EdgeNetworkConv(c, c, root_weight=False, edge_dim=DE, hidden=K), c), 2, D).double()
    graph = towers.prepare(graph)
    edge = towers.edge_features(graph)
    h = x
    for _ in range(2):
        h = towers.propagate(h, graph, edge)

    ref = x
    lin1, lin2 = towers.mix[0], towers.mix[2]
    for _ in range(2):
        outs = []
        for i, tower in enumerate(towers.layers):  # own message and update functions per tower
            hi = ref[:, i * (D // 2) : (i + 1) * (D // 2)]
            m = _enn_messages(tower.layer, hi, ei, attr)
            outs.append(torch.stack([_gru(tower.gru, m[v], hi[v]) for v in range(hi.size(0))]))
        cat = torch.cat(outs, dim=1)
        ref = torch.relu(cat @ lin1.weight.t() + lin1.bias) @ lin2.weight.t() + lin2.bias  # g, shared over nodes
    torch.testing.assert_close(h, ref)


def test_directed_form_has_separate_in_and_out_message_functions():
    torch.manual_seed(2)
    x, ei, attr, _, graph = _batch(seed=2, directed=True)
    layer = GRUUpdate(Bidirectional(EdgeNetworkConv(D, D, root_weight=False, edge_dim=DE, hidden=K), EdgeNetworkConv(D, D, root_weight=False, edge_dim=DE, hidden=K)), D, message_channels=2 * D).double()
    graph = layer.prepare(graph)
    out = layer.propagate(x, graph, layer.edge_features(graph))
    bi = layer.layer
    m = torch.cat([_enn_messages(bi.incoming, x, ei, attr), _enn_messages(bi.outgoing, x, ei, attr, reverse=True)], dim=1)
    ref = torch.stack([_gru(layer.gru, m[v], x[v]) for v in range(x.size(0))])
    torch.testing.assert_close(out, ref)


def test_virtual_edges_join_every_pair_by_the_extra_type():
    # A chemical graph (bonds only, one-hot of 4) of two molecules.
    ei = torch.tensor([[0, 1, 1, 2, 4, 5], [1, 0, 2, 1, 5, 4]])
    bond = torch.zeros(6, 4)
    bond[[0, 1], 0], bond[[2, 3], 2], bond[[4, 5], 1] = 1.0, 1.0, 1.0
    batch = torch.tensor([0, 0, 0, 0, 1, 1])
    graph = Graph.from_edge_index(ei, 6, edge_attr=bond, batch=batch, num_graphs=2)
    full = with_virtual_edges(graph, 4, True)
    got = {(s.item(), t.item(), k.item()) for s, t, k in zip(full.csr.col, full.csr.row, full.edge_type)}
    bonded = {(s.item(), t.item()): int(bond[k].argmax()) for k, (s, t) in enumerate(ei.t())}
    expect = {(s, t, bonded.get((s, t), 4)) for s in range(6) for t in range(6) if s != t and batch[s] == batch[t]}
    assert got == expect
    assert full.num_edge_types == 5 and torch.equal(full.edge_type, edge_type_from_one_hot(full.edge_attr, 4))
    # and back: virtual_edges=False on the complete graph is the chemical graph
    chem = with_virtual_edges(full, 4, False)
    assert {(s.item(), t.item()) for s, t in zip(chem.csr.col, chem.csr.row)} == set(bonded)
    with pytest.raises(ValueError, match="virtual_edges needs data.edge_attr"):
        with_virtual_edges(Graph.from_edge_index(ei, 6), 4, True)


class _EdgeStateLayer(MessagePassing):
    """A graph network with every hook: edge states updated from their endpoints and graph state,
    messages from the new edge states, a node update reading the graph state, and a graph update
    reading pooled nodes and edges (Battaglia et al. 2018's full GN block)."""

    graph_reads_edges = True

    def __init__(self) -> None:
        super().__init__("sum")
        self.phi_e = nn.Linear(2 + 2 * D + DM, 2)
        self.msg = nn.Linear(D + 2, D)
        self.phi_v = nn.Linear(2 * D + DM, D)
        self.phi_u = nn.Linear(DM + D + 2, DM)

    def edge_update(self, edge, x_src, x_dst, u):
        return torch.tanh(self.phi_e(torch.cat([edge, x_src, x_dst, u], dim=1)))

    def message(self, x_src, x_dst, edge):
        return self.msg(torch.cat([x_src, edge], dim=1))

    def node_update(self, x_dst, aggregated, u):
        return torch.tanh(self.phi_v(torch.cat([x_dst, aggregated, u], dim=1)))

    def graph_update(self, u, nodes, edges):
        return torch.tanh(self.phi_u(torch.cat([u, nodes, edges], dim=1)))


def test_graph_network_step_equals_a_per_graph_loop():
    torch.manual_seed(3)
    x, ei, attr, batch, graph = _batch(seed=3, directed=True)
    layer = _EdgeStateLayer().double()
    e0 = torch.randn(ei.size(1), 2, dtype=torch.float64)
    u0 = torch.randn(3, DM, dtype=torch.float64)
    h, e, u = x, graph.csr.permute(e0), u0
    for _ in range(2):
        h, e, u = layer.step(h, graph, e, u)

    for gid in range(3):  # each molecule alone, by loops: nothing may leak between them
        hv = {v: x[v] for v in (batch == gid).nonzero().flatten().tolist()}
        ks = [k for k in range(ei.size(1)) if batch[ei[1, k]] == gid]
        ek = {k: e0[k] for k in ks}
        ug = u0[gid]
        for _ in range(2):
            ek = {k: torch.tanh(layer.phi_e(torch.cat([ek[k], hv[ei[0, k].item()], hv[ei[1, k].item()], ug]))) for k in ks}
            agg = {v: torch.zeros(D, dtype=x.dtype) for v in hv}
            for k in ks:
                agg[ei[1, k].item()] = agg[ei[1, k].item()] + layer.msg(torch.cat([hv[ei[0, k].item()], ek[k]]))
            pooled_nodes = sum(hv.values(), torch.zeros(D, dtype=x.dtype))  # the states of step t (synchronous)
            pooled_edges = sum(ek.values(), torch.zeros(2, dtype=x.dtype))
            hv = {v: torch.tanh(layer.phi_v(torch.cat([hv[v], agg[v], ug]))) for v in hv}
            ug = torch.tanh(layer.phi_u(torch.cat([ug, pooled_nodes, pooled_edges])))
        for v, hvv in hv.items():
            torch.testing.assert_close(h[v], hvv)
        for k in ks:
            pos = (graph.csr.perm == k).nonzero().item()
            torch.testing.assert_close(e[pos], ek[k])
        torch.testing.assert_close(u[gid], ug)


class _Steps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = _EdgeStateLayer()

    def forward(self, x, graph, e, u):
        for _ in range(2):
            x, e, u = self.layer.step(x, graph, e, u)
        return torch.cat([x.sum(0), e.sum(0), u.sum(0)])


def test_graph_network_step_compiles(compiles_like_eager):
    module = _Steps()
    inputs = []
    for sizes, seed in (((4, 1, 5), 0), ((7, 3, 2, 6), 1)):  # two batch sizes
        x, ei, attr, batch, graph = _batch(sizes, seed=seed, directed=True)
        x = x.float().requires_grad_(True)
        e = torch.randn(graph.num_edges, 2, requires_grad=True)
        inputs.append((x, graph, e, torch.randn(graph.num_graphs, DM)))
    compiles_like_eager(module, inputs)


def test_variant_errors():
    with pytest.raises(ValueError, match="multiple of towers"):
        Towers(lambda c: GRUUpdate(EdgeNetworkConv(c, c, root_weight=False, edge_dim=DE, hidden=K), c), 4, D)
    with pytest.raises(TypeError, match="MessagePassing layer"):
        GRUUpdate(nn.Linear(2, 2), 2)
    layer = MasterNode(GRUUpdate(EdgeNetworkConv(D, D, root_weight=False, edge_dim=DE, hidden=K), D), D, DM)
    x, ei, attr, _, _ = _batch()
    with pytest.raises(ValueError, match="run step"):
        layer(x.float(), ei, attr.float())
    with pytest.raises(ValueError, match="master_node must be None or a positive int"):
        from gnnkit.models import build_model

        build_model("ggnn", 4, 1, edge_dim=5, channels=8, master_node=0)


def test_wrappers_take_their_layers_per_edge_inputs_and_flow():
    """A wrapper's forward takes what its layers read (PyG's call forms: the inner layer's per-edge
    input third or by keyword, both of a Bidirectional pair), refuses what none reads, and reads
    edge_index in its layers' flow."""
    from gnnkit.nn import GGNNConv, GINConv, RelationalConv

    torch.manual_seed(0)
    x, ei, attr, _, graph = _batch()
    etype = torch.randint(0, 3, (ei.size(1),))
    gru = GRUUpdate(GGNNConv(D, 3), D).double()
    typed = Graph.from_edge_index(ei, x.size(0), edge_type=etype)
    expect = gru.propagate(x, gru.prepare(typed), gru.edge_features(gru.prepare(typed)))
    torch.testing.assert_close(gru(x, ei, etype), expect)
    torch.testing.assert_close(gru(x, ei, edge_type=etype), expect)
    with pytest.raises(TypeError, match="does not use edge_weight"):
        gru(x, ei, edge_type=etype, edge_weight=torch.rand(ei.size(1), dtype=torch.float64))
    both = Bidirectional(EdgeNetworkConv(D, D, edge_dim=DE, hidden=K), RelationalConv(D, D, 3)).double()
    full = Graph.from_edge_index(ei, x.size(0), edge_attr=attr, edge_type=etype)
    full = both.prepare(full)
    torch.testing.assert_close(both(x, ei, attr, edge_type=etype), both.propagate(x, full, both.edge_features(full)))
    towers = Towers(lambda c: RelationalConv(c, c, 3), 2, D).double()
    assert towers.edge_inputs == ("edge_type",)
    towers(x, ei, etype)
    # flow: a wrapper reads edge_index as its layers do; layers of different flows are refused
    t2s = GRUUpdate(GINConv(nn.Linear(D, D), flow="target_to_source"), D).double()
    s2t = GRUUpdate(GINConv(nn.Linear(D, D)), D).double()
    s2t.load_state_dict(t2s.state_dict())
    torch.testing.assert_close(t2s(x, ei), s2t(x, ei.flip(0)))
    with pytest.raises(ValueError, match="one flow"):
        Bidirectional(GINConv(nn.Identity(), flow="target_to_source"), GINConv(nn.Identity()))
