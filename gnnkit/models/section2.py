"""The models of Gilmer et al. 2017's Section 2 that gnnkit did not already have, each a short
composition on the message-passing base (GG-NN is :class:`gnnkit.models.GGNN`, GCN
:class:`gnnkit.models.GCNGraph`, the edge network :class:`gnnkit.models.MPNN`)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.models._base import GraphModel
from gnnkit.nn import (
    ChebConv,
    DTNNConv,
    DuvenaudConv,
    GaussianDistances,
    Graph,
    InteractionConv,
    MaxReadout,
    MeanReadout,
    SumReadout,
    WeaveConv,
)

_READOUTS: dict[str, type[nn.Module]] = {"sum": SumReadout, "mean": MeanReadout, "max": MaxReadout}


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")


def _edge_dim(edge_dim: int | None, model: str) -> int:
    if isinstance(edge_dim, bool) or not isinstance(edge_dim, int) or edge_dim < 1:
        raise ValueError(f"{model} reads edge features: pass edge_dim (a positive int), got {edge_dim!r}")
    return edge_dim


def _head(channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, out_channels))


class NeuralFingerprint(GraphModel):
    """Convolutional (neural) fingerprints of Duvenaud et al. 2015 (arXiv:1509.09292), Gilmer's
    Section 2 form::

        M_t = (h_w, e_vw);   U_t = σ(H_t^{deg(v)} m_v);   R = f(sum_{v,t} softmax(W_t h_v^t))

    ``steps`` :class:`gnnkit.nn.DuvenaudConv` layers with their own weights (the radius ``R`` of
    Algorithm 2; ``h^0 = x``, with the node's own state added, as Algorithm 2), each followed by
    its output map ``W_t`` and a softmax over the fingerprint's ``fingerprint`` entries; the
    fingerprint (sum over nodes and steps ``t = 1..T``) goes through ``f = Linear -> ReLU ->
    Linear``. Meant for the chemical graph (``--edges bonds``): on a complete graph every atom has
    the same degree.

    Args:
        in_channels: atom feature size.
        out_channels: number of predicted targets.
        edge_dim: bond feature size (None or 0: none).
        channels: state size.
        steps: radius ``T``.
        fingerprint: fingerprint length ``S``.
        max_degree: largest degree with its own ``H`` (Duvenaud: 5).
        act: ``σ`` of the update (``"sigmoid"``, ``"relu"``, ``"tanh"``).

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]``, data.edge_attr ``[E, edge_dim]`` ->
        ``[num_graphs, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int | None = None, channels: int = 64,
                 steps: int = 3, fingerprint: int = 128, max_degree: int = 5,
                 act: Literal["sigmoid", "relu", "tanh"] = "sigmoid") -> None:  # fmt: skip
        super().__init__()
        _check_steps(steps)
        sizes = [in_channels] + [channels] * steps
        self.convs = nn.ModuleList(DuvenaudConv(a, b, edge_dim or 0, max_degree, act=act) for a, b in zip(sizes[:-1], sizes[1:]))
        self.outputs = nn.ModuleList(nn.Linear(channels, fingerprint) for _ in range(steps))  # W_t
        self.readout = SumReadout()
        self.head = _head(fingerprint, channels, out_channels)

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        h, fp = self.node_input(graph), 0.0
        for conv, out in zip(self.convs, self.outputs):
            h = conv.propagate(h, graph, conv.edge_features(graph))
            fp = fp + torch.softmax(out(h), dim=-1)
        return self.head(self.readout(fp, graph))


class InteractionNetwork(GraphModel):
    """Interaction network of Battaglia et al. 2016 (arXiv:1612.00222), Gilmer's Section 2 form::

        M = NN(h_v, h_w, e_vw);   U = NN(h_v, x_v, m_v);   R = f(sum_v h_v^T)

    ``h^0 = ReLU(Linear(x))``, ``steps`` applications of one :class:`gnnkit.nn.InteractionConv`
    (tied weights, as Battaglia's network applied at every time step) with the atom features
    ``x`` as the external input ``x_v`` of every step, a sum over nodes and ``f = Linear -> ReLU
    -> Linear``.

    Args:
        in_channels: atom feature size (also ``x_v``'s).
        out_channels: number of predicted targets.
        edge_dim: edge feature size.
        channels: state size.
        steps: message-passing steps ``T``.
        hidden: hidden size of the relational and object networks.

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]``, data.edge_attr ``[E, edge_dim]`` ->
        ``[num_graphs, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int | None = None, channels: int = 64,
                 steps: int = 3, hidden: int = 64) -> None:  # fmt: skip
        super().__init__()
        _check_steps(steps)
        self.steps = steps
        self.lin_in = nn.Linear(in_channels, channels)
        self.conv = InteractionConv(channels, _edge_dim(edge_dim, "InteractionNetwork"), x_channels=in_channels, hidden=hidden)
        self.readout = SumReadout()
        self.head = _head(channels, channels, out_channels)

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        x = self.node_input(graph)
        h, edge = F.relu(self.lin_in(x)), self.conv.edge_features(graph)
        for _ in range(self.steps):
            h = self.conv.propagate(torch.cat([h, x], dim=-1), graph, edge)
        return self.head(self.readout(h, graph))


class DTNN(GraphModel):
    """Deep tensor neural network of Schütt et al. 2017 (arXiv:1609.08259), Gilmer's Section 2
    form::

        M = tanh(W^fc ((W^cf h_w + b_1) ⊙ (W^df e_vw + b_2)));   U = h_v + m_v;   R = sum_v NN(h_v^T)

    ``h^0 = Linear(x)`` without bias (the paper's per-element embedding ``c_{Z_i}`` when ``x``
    is an element one-hot), ``e_vw`` the distance ``|pos_v - pos_w|`` expanded in Gaussians
    (:class:`gnnkit.nn.GaussianDistances`, the paper's GDB-9 grid), ``steps`` interaction passes
    of one :class:`gnnkit.nn.DTNNConv` (tied, as Gilmer writes ``M`` without ``t``) and the
    per-atom output ``NN = Linear -> tanh -> Linear`` summed over atoms. Reads ``data.pos``, not
    the edge features; run it on the complete graph (the paper's all pairs).

    Args:
        in_channels: atom feature size.
        out_channels: number of predicted targets.
        channels: basis size (the paper's 30).
        steps: interaction passes ``T``.
        factors: factor size (the paper's 60).
        hidden: hidden size of the per-atom output network.
        mu_min, mu_max, gaussian_step, sigma: the Gaussian grid in Å (:class:`GaussianDistances`).

    Shapes:
        data.x ``[N, in_channels]``, data.pos ``[N, 3]``, data.edge_index ``[2, E]`` ->
        ``[num_graphs, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 30, steps: int = 3, factors: int = 60,
                 hidden: int = 15, mu_min: float = -1.0, mu_max: float = 20.0, gaussian_step: float = 0.2,
                 sigma: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        _check_steps(steps)
        self.steps = steps
        self.embed = nn.Linear(in_channels, channels, bias=False)
        self.expand = GaussianDistances(mu_min, mu_max, gaussian_step, sigma)
        self.conv = DTNNConv(channels, self.expand.num_gaussians, factors)
        self.out = nn.Sequential(nn.Linear(channels, hidden), nn.Tanh(), nn.Linear(hidden, out_channels))
        self.readout = SumReadout()

    def graph_from_data(self, data: Any) -> Graph:
        """The graph with the interatomic distances as ``edge_weight`` (CSR order)."""
        pos = getattr(data, "pos", None)
        if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(1) != 3:
            raise ValueError("DTNN needs atom positions: data.pos of shape [N, 3]")
        graph = Graph.from_data(data)
        if pos.size(0) != graph.num_nodes:
            raise ValueError(f"data.pos has {pos.size(0)} rows but the graph has {graph.num_nodes} nodes")
        csr = graph.csr
        distance = (pos.index_select(0, csr.col) - pos.index_select(0, csr.row)).norm(dim=-1)
        return graph.replace(edge_weight=distance)

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        if graph.edge_weight is None:
            raise ValueError("DTNN reads the distances from the graph's edge_weight: call it on data or on model.prepare(data)")
        h = self.embed(self.node_input(graph))
        expanded = graph.replace(edge_attr=self.expand(graph.edge_weight.to(h.dtype)))
        edge = self.conv.edge_features(expanded)  # W^df e_vw + b_2, once for all passes
        for _ in range(self.steps):
            h = self.conv.propagate(h, expanded, edge)
        return self.readout(self.out(h), graph)


class ChebNet(GraphModel):
    """Spectral graph network with Chebyshev filters (Defferrard et al. 2016, arXiv:1606.09375;
    Bruna et al. 2014's spectral convolution made ``K``-local), Gilmer's Section 2 form::

        M_t = C^t_vw h_w  (C^t = sum_k Θ_k^t T_k(L~));   U_t = σ(m_v)   (σ = ReLU here)

    ``steps`` :class:`gnnkit.nn.ChebConv` layers with ReLU, a readout over each graph's nodes and
    ``f = Linear -> ReLU -> Linear`` (Gilmer gives no ``R`` for the spectral models). Ignores
    edge features; meant for the chemical graph (``--edges bonds``).

    Args:
        in_channels: node feature size.
        out_channels: number of predicted targets.
        channels: width of every layer.
        steps: number of layers.
        K: filter size (order + 1).
        readout: ``"sum"``, ``"mean"`` or ``"max"``.

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 64, steps: int = 2, K: int = 3,
                 readout: Literal["sum", "mean", "max"] = "sum") -> None:  # fmt: skip
        super().__init__()
        _check_steps(steps)
        if readout not in _READOUTS:
            raise ValueError(f"readout must be one of {tuple(_READOUTS)}, got {readout!r}")
        sizes = [in_channels] + [channels] * steps
        self.convs = nn.ModuleList(ChebConv(a, b, K) for a, b in zip(sizes[:-1], sizes[1:]))
        self.readout = _READOUTS[readout]()
        self.head = _head(channels, channels, out_channels)

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        h = self.node_input(graph)
        for conv in self.convs:
            h = F.relu(conv.propagate(h, graph, None))
        return self.head(self.readout(h, graph))


class Weave(GraphModel):
    """Weave network of Kearnes et al. 2016 (arXiv:1603.00856), Gilmer's Section 2 form::

        M_t = e_vw^t;   U_t = α(W_1 (α(W_0 h_v), m_v));   e_vw^{t+1} = α(W_4 (α(W_2 e_vw^t), α(W_3 (h_v, h_w))))

    ``steps`` :class:`gnnkit.nn.WeaveConv` steps with their own weights, each the base's
    graph-network step (:meth:`gnnkit.nn.MessagePassing.step`) updating the node and edge states
    (``h^0 = x``, ``e^0 = edge_attr``; the last step updates nodes only), then
    ``R = f(sum_v h_v^T)`` with ``f = Linear -> ReLU -> Linear`` (Kearnes et al. read out with a
    Gaussian-membership histogram of the atom features instead; Gilmer gives no ``R``).

    Args:
        in_channels: atom feature size.
        out_channels: number of predicted targets.
        edge_dim: pair feature size.
        channels: atom state size.
        edge_channels: pair state size.
        steps: number of weave steps (Kearnes: 2 to 4).

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]``, data.edge_attr ``[E, edge_dim]`` ->
        ``[num_graphs, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int | None = None, channels: int = 64,
                 edge_channels: int = 32, steps: int = 2) -> None:  # fmt: skip
        super().__init__()
        _check_steps(steps)
        edge_dim = _edge_dim(edge_dim, "Weave")
        nodes, edges = [in_channels] + [channels] * steps, [edge_dim] + [edge_channels] * steps
        self.convs = nn.ModuleList(
            WeaveConv(nodes[t], edges[t], nodes[t + 1], edges[t + 1], update_edges=t < steps - 1) for t in range(steps)
        )
        self.readout = SumReadout()
        self.head = _head(channels, channels, out_channels)

    def graph_from_data(self, data: Any) -> Graph:
        graph = Graph.from_data(data)
        if graph.edge_attr is None:
            raise ValueError("Weave needs data.edge_attr (the initial pair features)")
        return graph

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        h, e = self.node_input(graph), self.convs[0].edge_features(graph)
        for conv in self.convs:  # the base's graph-network step: node and edge states from step t
            h, e, _ = conv.step(h, graph, e)
        return self.head(self.readout(h, graph))


__all__ = ["NeuralFingerprint", "InteractionNetwork", "DTNN", "ChebNet", "Weave"]
