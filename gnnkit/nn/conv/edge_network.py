"""Edge network convolution of Gilmer et al. 2017 ("Neural Message Passing for Quantum
Chemistry", ICML), computed without the ``E x d x d`` tensor of per-edge matrices."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing
from gnnkit.ops import cpu_buckets


class EdgeNetworkConv(MessagePassing):
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

    On the base: :meth:`edge_features` is the edge MLP's hidden activation ``z`` (computed once
    per forward), :meth:`message_and_aggregate` the fused outer-product aggregation and
    :meth:`update` the root weight and bias. For several steps with tied weights (Gilmer's MPNN),
    build the :class:`gnnkit.nn.Graph` once, call :meth:`prepare` (CPU degree buckets) and
    :meth:`edge_features` once, and repeat :meth:`propagate`.

    Args:
        channels: input node feature size ``d``.
        edge_dim: edge feature size.
        hidden: hidden size ``K`` of the edge MLP (one hidden layer with ReLU).
        aggr: ``"sum"`` or ``"mean"`` over the incoming edges (no in-edges gives 0).
        out_channels: output size ``d'`` (default ``channels``).
        root_weight: add ``x_v R`` (a linear map of the node's own features), as NNConv's default.
        bias: add a learnable bias.

    Shapes:
        x ``[N, d]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` -> ``[N, d']``.

    Cost:
        Per step ``2 E K d`` flops for ``S`` and ``2 N K d d'`` for the node-level product, versus
        ``2 E K d d'`` for NNConv's per-edge matrices. Memory ``N K d`` instead of ``E d d'``.
    """

    edge_input = "edge_attr"

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
        for name, value in (("channels", channels), ("edge_dim", edge_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if aggr not in ("sum", "mean"):
            raise ValueError(f"aggr must be 'sum' or 'mean', got {aggr!r}")
        super().__init__(aggr)
        self.channels, self.edge_dim, self.hidden = channels, edge_dim, hidden
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

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src.dim() != 2 or x_src.size(1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {tuple(x_src.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        """Checks the edge features; adds the CPU degree buckets (built on the host, so not while
        compiling, where the kernel groups the targets itself)."""
        if graph.edge_attr is None:
            raise ValueError("EdgeNetworkConv needs edge features: pass edge_attr")
        if graph.edge_attr.dim() != 2 or graph.edge_attr.size(1) != self.edge_dim:
            raise ValueError(f"edge_attr must have shape [E, {self.edge_dim}], got {tuple(graph.edge_attr.shape)}")
        if graph.buckets is None and not torch.compiler.is_compiling():
            buckets = cpu_buckets(graph.csr)
            graph = graph if buckets is None else graph.replace(buckets=buckets)
        return graph

    def edge_features(self, graph: Graph) -> Tensor:
        """``z = ReLU(Linear(edge_attr))``, ``[E, K]`` in CSR order."""
        return self.edge_mlp(graph.edge_attr)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        csr, z = graph.csr, edge
        dtype = torch.promote_types(z.dtype, x_src.dtype)  # under autocast the edge MLP may give bf16
        z, x_src = z.to(dtype), x_src.to(dtype)
        # An explainer's mask scales both terms through the base's primitives:
        # mask_e A(e) x_w = W2 (mask_e z_e) x_w + b2 (mask_e x_w).
        d, d_out, k = self.channels, self.out_channels, self.hidden
        if self.aggr == "mean":
            # Scale the K-vectors of the edges (E x K work) rather than S (N x K x d).
            inv_deg = 1.0 / csr.degree(z.dtype).clamp(min=1)
            z = z * inv_deg.index_select(0, csr.row).unsqueeze(1)
        s = self.outer_aggregate(z, x_src, graph)  # [N, K, d]
        # edge_out.weight row i * d' + o holds A[i, o]; reorder it to act on S's (k, i) layout.
        w = self.edge_out.weight.view(d, d_out, k).permute(1, 2, 0).reshape(d_out, k * d)
        out = F.linear(s.view(s.size(0), k * d), w.to(s.dtype))
        x_aggr = self.spmm(x_src, graph, reduce=self.aggr)
        return out + x_aggr @ self.edge_out.bias.view(d, d_out).to(x_aggr.dtype)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        if self.root is not None:
            aggregated = aggregated + self.root(x_dst)
        return aggregated + self.bias if self.bias is not None else aggregated

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {self.out_channels}, edge_dim={self.edge_dim}, hidden={self.hidden}, "
            f"aggr={self.aggr!r}, root_weight={self.root is not None}"
        )
