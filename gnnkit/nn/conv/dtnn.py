"""The interaction pass of the deep tensor neural network of Schütt et al. 2017 ("Quantum-chemical
insights from deep tensor neural networks", Nature Communications 8, 13890; arXiv:1609.08259)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing


class GaussianDistances(nn.Module):
    """DTNN's expansion of a distance in a uniform grid of Gaussians (Schütt et al. 2017, step 2)::

        d_k = exp(-(D - (mu_min + k Δμ))^2 / (2 σ^2)),   0 <= k <= (mu_max - mu_min) / Δμ

    The paper's QM9 (GDB-9) setting is the default: ``mu_min = -1``, ``mu_max = 20`` Å and
    ``Δμ = σ = 0.2`` Å (106 Gaussians).

    Shapes:
        distance ``[E]`` -> ``[E, num_gaussians]``.
    """

    def __init__(self, mu_min: float = -1.0, mu_max: float = 20.0, step: float = 0.2, sigma: float = 0.2) -> None:
        super().__init__()
        if not step > 0 or not sigma > 0 or not mu_max > mu_min:
            raise ValueError(f"need step > 0, sigma > 0 and mu_max > mu_min, got {step}, {sigma}, {mu_min}..{mu_max}")
        count = int(round((mu_max - mu_min) / step)) + 1
        self.register_buffer("centers", mu_min + step * torch.arange(count, dtype=torch.float64), persistent=False)
        self.sigma = float(sigma)

    @property
    def num_gaussians(self) -> int:
        return self.centers.numel()

    def forward(self, distance: Tensor) -> Tensor:
        if distance.dim() != 1:
            raise ValueError(f"distance must have shape [E], got {tuple(distance.shape)}")
        diff = distance.unsqueeze(1) - self.centers.to(distance.dtype)
        return torch.exp(diff.square() / (-2.0 * self.sigma**2))

    def extra_repr(self) -> str:
        c = self.centers
        return f"{c.numel()} Gaussians, centres {float(c[0]):g}..{float(c[-1]):g}, sigma={self.sigma:g}"


class DTNNConv(MessagePassing):
    """One DTNN interaction pass, in Gilmer et al.'s (2017) terms::

        M(h_v, h_w, e_vw) = tanh(W^fc ((W^cf h_w + b_1) ⊙ (W^df e_vw + b_2)))
        U(h_v, m_v)       = h_v + m_v

    (Schütt et al.'s ``v_ij`` and ``c_i^{t+1} = c_i^t + sum_{j != i} v_ij``), with ``e_vw`` the
    distance expanded in Gaussians (:class:`GaussianDistances`). ``W^fc`` has no bias, as in the
    paper. PyG's ``SchNet`` is a different function (its continuous filter is an MLP of the
    expansion, with shifted softplus and a cosine cutoff), so only the expansion is tested
    against PyG (``GaussianSmearing`` on the same grid).

    On the base: :meth:`edge_features` is the distance factor ``W^df e_vw + b_2`` (``[E, factors]``,
    once per forward), :meth:`message_and_aggregate` applies ``W^cf`` once per node before the
    gather (``N x C x F`` flops instead of ``E x C x F``), :meth:`message` is the unfused form and
    :meth:`update` the residual sum.

    Args:
        channels: state size (the paper's 30 basis coefficients).
        edge_dim: size of the distance expansion.
        factors: size of the factor space (the paper's 60 neurons).

    Shapes:
        x ``[N, channels]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` -> ``[N, channels]``.
    """

    edge_input = "edge_attr"

    def __init__(self, channels: int, edge_dim: int, factors: int = 60) -> None:
        for name, value in (("channels", channels), ("edge_dim", edge_dim), ("factors", factors)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        super().__init__("sum")
        self.channels, self.edge_dim, self.factors = channels, edge_dim, factors
        self.lin_cf = nn.Linear(channels, factors)  # W^cf, b^f1
        self.lin_df = nn.Linear(edge_dim, factors)  # W^df, b^f2
        self.lin_fc = nn.Linear(factors, channels, bias=False)  # W^fc

    def reset_parameters(self) -> None:
        for m in (self.lin_cf, self.lin_df, self.lin_fc):
            m.reset_parameters()

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        if x_dst is None:
            raise ValueError("DTNNConv needs x_dst (its update is the residual h_v + m_v): pass x or an (x_src, x_dst) pair, not (x_src, None)")
        for name, x in (("x", x_src), ("x_dst", x_dst)):
            if x.dim() != 2 or x.size(1) != self.channels:
                raise ValueError(f"{name} must have shape [N, {self.channels}], got {tuple(x.shape)}")

    def edge_features(self, graph: Graph) -> Tensor:
        """``W^df e_vw + b_2``, ``[E, factors]`` in CSR order, from the graph's ``edge_attr`` (the
        expanded distances; :class:`gnnkit.models.DTNN` expands them in its forward)."""
        e = graph.edge_attr
        if e is None or e.dim() != 2 or e.size(1) != self.edge_dim:
            raise ValueError(f"DTNNConv needs edge_attr (the expanded distances) of shape [E, {self.edge_dim}], "
                             f"got {None if e is None else tuple(e.shape)}")  # fmt: skip
        return self.lin_df(e)

    def message(self, x_src: Tensor, x_dst: Tensor, edge: Tensor) -> Tensor:
        return torch.tanh(self.lin_fc(self.lin_cf(x_src) * edge))

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor, graph: Graph) -> Tensor:
        factor = self.lin_cf(x_src).index_select(0, graph.csr.col)  # W^cf h_w + b_1, per node, then gathered
        messages = torch.tanh(self.lin_fc(factor * edge.to(factor.dtype)))
        return self.aggregate(messages, graph)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return x_dst + aggregated

    def extra_repr(self) -> str:
        return f"channels={self.channels}, edge_dim={self.edge_dim}, factors={self.factors}"
