"""Edge network convolution of Gilmer et al. 2017 ("Neural Message Passing for Quantum
Chemistry", ICML), computed without the ``E x d x d`` tensor of per-edge matrices."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn.message_passing import as_csr
from gnnkit.ops import CSR, spmm
from gnnkit.ops.edge_network import DegreeBuckets, outer_aggregate


class EdgeNetworkConv(nn.Module):
    """Edge network message passing: ``x'_v = AGG_{w -> v} A(e_vw) x_w (+ x_v R + b)``.

    ``A(e)`` is an MLP of the edge features whose output is reshaped to ``d x d'``. Its last layer
    is linear (``A(e) = W2 z_e + b2``, ``z_e`` the hidden activation), so the aggregation is
    reassociated: ``sum_w A(e_vw) x_w = W2' · (sum_w z_vw ⊗ x_w) + B2 · (sum_w x_w)``. The
    ``K x d`` matrices ``S_v = sum_w z_vw ⊗ x_w`` come from :func:`gnnkit.ops.outer_aggregate`
    (a segmented product per target; nothing of size ``E x d x d`` or ``E x K x d`` exists), and
    the ``d x d`` work happens once per node instead of once per edge.

    The result equals ``torch_geometric.nn.NNConv(d, d', nn=Sequential(Linear(edge_dim, K),
    ReLU(), Linear(K, d * d')), aggr=...)`` with the same weights: ``edge_mlp[0]`` is the first
    ``Linear``, ``edge_out`` the last (same ``[d * d', K]`` layout), ``root`` is NNConv's ``lin``
    and ``bias`` its ``bias``.

    For several message-passing steps with tied weights, compute the hidden activation once with
    :meth:`edge_hidden` and pass it as ``z`` (with a prebuilt :class:`gnnkit.ops.CSR` and
    :class:`gnnkit.ops.DegreeBuckets`) on every step.

    Args:
        channels: input node feature size ``d``.
        edge_dim: edge feature size.
        hidden: hidden size ``K`` of the edge MLP (one hidden layer with ReLU).
        aggr: ``"sum"`` or ``"mean"`` over the incoming edges (no in-edges gives 0).
        out_channels: output size ``d'`` (default ``channels``).
        root_weight: add ``x_v R`` (a linear map of the node's own features), as NNConv's default.
        bias: add a learnable bias.

    Shapes:
        x ``[N, d]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` (or z ``[E, K]``) ->
        ``[N, d']``.

    Cost:
        Per step ``2 E K d`` flops for ``S`` and ``2 N K d d'`` for the node-level product, versus
        ``2 E K d d'`` for NNConv's per-edge matrices. Memory ``N K d`` instead of ``E d d'``.
    """

    def __init__(
        self,
        channels: int,
        edge_dim: int,
        hidden: int = 128,
        aggr: Literal["sum", "mean"] = "sum",
        out_channels: int | None = None,
        root_weight: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("edge_dim", edge_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if aggr not in ("sum", "mean"):
            raise ValueError(f"aggr must be 'sum' or 'mean', got {aggr!r}")
        self.channels, self.edge_dim, self.hidden, self.aggr = channels, edge_dim, hidden, aggr
        self.out_channels = channels if out_channels is None else out_channels
        self.edge_mlp = nn.Sequential(nn.Linear(edge_dim, hidden), nn.ReLU())
        self.edge_out = nn.Linear(hidden, channels * self.out_channels)
        self.root = nn.Linear(channels, self.out_channels, bias=False) if root_weight else None
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.edge_mlp[0].reset_parameters()
        self.edge_out.reset_parameters()
        if self.root is not None:
            self.root.reset_parameters()
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def edge_hidden(self, edge_attr: Tensor) -> Tensor:
        """The edge MLP's hidden activation ``z`` (``[E, K]``, same edge order as ``edge_attr``)."""
        if edge_attr.dim() != 2 or edge_attr.size(1) != self.edge_dim:
            raise ValueError(f"edge_attr must have shape [E, {self.edge_dim}], got {tuple(edge_attr.shape)}")
        return self.edge_mlp(edge_attr)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | CSR,
        edge_attr: Tensor | None = None,
        z: Tensor | None = None,
        edge_order: Literal["edge_index", "csr"] = "edge_index",
        buckets: DegreeBuckets | None = None,
    ) -> Tensor:
        """Args:
            x: ``[N, channels]`` node features.
            edge_index: ``[2, E]`` (row 0 = source) or a prebuilt :class:`gnnkit.ops.CSR`.
            edge_attr: ``[E, edge_dim]`` edge features (ignored when ``z`` is given).
            z: ``[E, hidden]`` precomputed :meth:`edge_hidden` output.
            edge_order: whether ``edge_attr`` / ``z`` follow ``edge_index`` order or the CSR's
                sorted order.
            buckets: precomputed :class:`gnnkit.ops.DegreeBuckets` of the CSR (CPU path).
        """
        if x.dim() != 2 or x.size(1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {tuple(x.shape)}")
        if edge_order not in ("edge_index", "csr"):
            raise ValueError(f"edge_order must be 'edge_index' or 'csr', got {edge_order!r}")
        csr = as_csr(edge_index, x.size(0))
        if z is None:
            if edge_attr is None:
                raise ValueError("pass edge_attr (or a precomputed z = conv.edge_hidden(edge_attr))")
            if edge_order == "edge_index":
                edge_attr = csr.permute(edge_attr)  # permute the narrow input, not z
            z = self.edge_hidden(edge_attr)
        else:
            if z.dim() != 2 or z.shape != (csr.num_edges, self.hidden):
                raise ValueError(f"z must have shape [{csr.num_edges}, {self.hidden}], got {tuple(z.shape)}")
            if edge_order == "edge_index":
                z = csr.permute(z)
        return self.propagate(x, csr, z, buckets)

    def propagate(self, x: Tensor, csr: CSR, z_sorted: Tensor, buckets: DegreeBuckets | None = None) -> Tensor:
        """One step from ``z`` already in ``csr``'s sorted order (no argument checks)."""
        d, d_out, k = self.channels, self.out_channels, self.hidden
        s = outer_aggregate(csr, z_sorted, x, self.aggr, z_order="csr", buckets=buckets)  # [N, K, d]
        # edge_out.weight row i * d' + o holds A[i, o]; reorder it to act on S's (k, i) layout.
        w = self.edge_out.weight.view(d, d_out, k).permute(1, 2, 0).reshape(d_out, k * d)
        out = F.linear(s.view(s.size(0), k * d), w)
        x_aggr = spmm(csr, x, reduce=self.aggr)
        out = out + x_aggr @ self.edge_out.bias.view(d, d_out)
        if self.root is not None:
            out = out + self.root(x)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {self.out_channels}, edge_dim={self.edge_dim}, hidden={self.hidden}, "
            f"aggr={self.aggr!r}, root_weight={self.root is not None}"
        )
