"""Edge network convolution of Gilmer et al. 2017 ("Neural Message Passing for Quantum
Chemistry", ICML), computed without the ``E x d x d`` tensor of per-edge matrices."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import init as nn_init

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing, canonical_aggr
from gnnkit.ops import cpu_buckets, outer_aggregate_flops


class EdgeNetworkConv(MessagePassing):
    """Edge network message passing: ``x'_v = AGG_{w -> v} A(e_vw) x_w (+ x_v R + b)``.

    ``A(e)`` is an MLP of the edge features whose output is reshaped to ``d x d'``. Its last layer
    is linear (``A(e) = W2 z_e + b2``, ``z_e`` the hidden activation), so the aggregation is
    reassociated: ``sum_w A(e_vw) x_w = W2' · (sum_w z_vw ⊗ x_w) + B2 · (sum_w x_w)``. The
    ``K x d`` matrices ``S_v = sum_w z_vw ⊗ x_w`` come from :func:`gnnkit.ops.outer_aggregate`
    (a segmented product per target; nothing of size ``E x d x d`` or ``E x K x d`` exists), and
    the ``d x d`` work happens once per node instead of once per edge.

    Takes ``torch_geometric.nn.NNConv``'s parameters in its order, with its defaults, and equals it
    with the same weights: ``EdgeNetworkConv(d, d', nn=Sequential(Linear(edge_dim, K), ReLU(),
    Linear(K, d * d')))`` is ``NNConv(d, d', nn=...)`` with ``nn[:-1]`` kept as ``edge_mlp``,
    ``nn[-1]`` as ``edge_out`` (same ``[d * d', K]`` layout), ``root`` as NNConv's ``lin`` and
    ``bias`` as its ``bias``. The reassociation needs the last module of ``nn`` to be an
    ``nn.Linear(K, d * d')``; any other ``nn`` is refused (use PyG's ``NNConv`` for it).

    On the base: :meth:`edge_features` is the edge MLP's hidden activation ``z`` (computed once
    per forward), :meth:`message_and_aggregate` the fused outer-product aggregation and
    :meth:`update` the root weight and bias. For several steps with tied weights (Gilmer's MPNN),
    build the :class:`gnnkit.nn.Graph` once, call :meth:`prepare` (CPU degree buckets) and
    :meth:`edge_features` once, and repeat :meth:`propagate`.

    Args:
        in_channels: input node feature size ``d``, or ``(d_src, d_dst)`` for bipartite graphs
            (``d_dst`` feeds the root weight only).
        out_channels: output size ``d'``.
        nn: the edge network, an ``nn.Sequential`` ending in ``nn.Linear(K, d_src * d')``
            (default: built from ``edge_dim`` and ``hidden`` as ``Linear(edge_dim, hidden), ReLU(),
            Linear(hidden, d_src * d')``).
        aggr: ``"add"`` (= ``"sum"``) or ``"mean"`` over the incoming edges (no in-edges gives 0).
        root_weight: add ``x_v R`` (a linear map of the target's own features), NNConv's default.
        bias: add a learnable bias.
        edge_dim: edge feature size, for the default ``nn`` (keyword only).
        hidden: hidden size ``K`` of the default ``nn`` (keyword only).
        **kwargs: PyG's base options: ``flow``; ``node_dim=-2``, ``decomposed_layers=1``.

    Call as PyG's: ``conv(x, edge_index, edge_attr, size=None)``, with a sparse ``adj_t`` whose
    values are the edge features, or with an ``(x_src, x_dst)`` / ``(x_src, None)`` pair.

    Shapes:
        x ``[N, d]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` -> ``[N, d']``.

    Cost:
        Per step ``2 E K d`` flops for ``S`` and ``2 N K d d'`` for the node-level product, versus
        ``2 E K d d'`` for NNConv's per-edge matrices. Memory ``N K d`` instead of ``E d d'``.
    """

    edge_input = "edge_attr"

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        nn: torch.nn.Module | None = None,
        aggr: Literal["add", "sum", "mean"] = "add",
        root_weight: bool = True,
        bias: bool = True,
        *,
        edge_dim: int | None = None,
        hidden: int | None = None,
        **kwargs: Any,
    ) -> None:
        in_src, in_dst = in_channels if isinstance(in_channels, tuple) else (in_channels, in_channels)
        for name, value in (("in_channels", in_src), ("in_channels", in_dst), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (or a pair of them), got {value!r}")
        super().__init__(aggr, **kwargs)
        canonical_aggr(aggr, ("sum", "mean"), "EdgeNetworkConv")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.channels = in_src  # the width the edge matrices act on
        if nn is None:
            if edge_dim is None:
                raise TypeError("EdgeNetworkConv needs nn (NNConv's edge network) or edge_dim= (for the default one)")
            hidden = 128 if hidden is None else hidden
            for name, value in (("edge_dim", edge_dim), ("hidden", hidden)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive int, got {value!r}")
            edge_mlp = torch.nn.Sequential(torch.nn.Linear(edge_dim, hidden), torch.nn.ReLU())
            edge_out = torch.nn.Linear(hidden, in_src * out_channels)
        else:
            if edge_dim is not None or hidden is not None:
                raise TypeError("pass either nn or edge_dim/hidden (which build the default nn), not both")
            edge_mlp, edge_out = split_edge_network(nn, in_src * out_channels)
            first = edge_mlp[0] if len(edge_mlp) else edge_out
            edge_dim = first.in_features if isinstance(first, torch.nn.Linear) else None
        self.edge_dim, self.hidden = edge_dim, edge_out.in_features
        self.edge_mlp, self.edge_out = edge_mlp, edge_out
        self.root = torch.nn.Linear(in_dst, out_channels, bias=False) if root_weight else None
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def nn(self) -> torch.nn.Sequential:
        """The edge network as one module, ``Sequential(*edge_mlp, edge_out)`` (NNConv's ``nn``;
        the same submodules, so the same parameters)."""
        return torch.nn.Sequential(*self.edge_mlp, self.edge_out)

    def reset_parameters(self) -> None:
        for m in (*self.edge_mlp, self.edge_out):
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
        if self.root is not None:
            self.root.reset_parameters()
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.channels)
            nn_init.uniform_(self.bias, -bound, bound)

    def edge_hidden(self, edge_attr: Tensor) -> Tensor:
        """The edge MLP's hidden activation ``z`` (``[E, K]``, same edge order as ``edge_attr``)."""
        self._check_edge_attr(edge_attr)
        return self._run_edge_mlp(edge_attr)

    def _run_edge_mlp(self, edge_attr: Tensor) -> Tensor:
        """``edge_mlp(edge_attr)``, its first layer as ``addmm(b, e, W^T)`` when that is a plain
        ``nn.Linear`` on narrow edge features (no hooks, in < out features): the same product, but
        autograd then forms the weight gradient as ``(e^T G)^T``, a ``[edge_dim, E] x [E, K]``
        product, instead of ``G^T e`` (``[K, E] x [E, edge_dim]``), which BLAS runs about 10x
        slower on CPU at E = 45k, K = 128, edge_dim = 5."""
        mlp = self.edge_mlp
        first = mlp[0] if len(mlp) else None
        if (
            type(first) is not torch.nn.Linear
            or first.in_features >= first.out_features
            or edge_attr.dim() != 2
            or mlp._forward_hooks or mlp._forward_pre_hooks or first._forward_hooks or first._forward_pre_hooks
        ):
            return mlp(edge_attr)
        w = first.weight.t().contiguous()  # a row-major mat2: autograd then takes (e^T G)^T
        out = edge_attr.mm(w) if first.bias is None else torch.addmm(first.bias, edge_attr, w)
        for m in list(mlp)[1:]:
            out = m(out)
        return out

    def _check_edge_attr(self, edge_attr: Tensor) -> None:
        if edge_attr.dim() != 2 or (self.edge_dim is not None and edge_attr.size(1) != self.edge_dim):
            raise ValueError(f"edge_attr must have shape [E, {self.edge_dim or 'edge_dim'}], got {tuple(edge_attr.shape)}")

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        if x_src.dim() != 2 or x_src.size(1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {tuple(x_src.shape)}")
        in_dst = self.in_channels[1] if isinstance(self.in_channels, tuple) else self.in_channels
        if x_dst is not None and x_dst is not x_src and (x_dst.dim() != 2 or x_dst.size(1) != in_dst):
            raise ValueError(f"x_dst must have shape [M, {in_dst}], got {tuple(x_dst.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        """Checks the edge features; adds the CPU degree buckets (built on the host, so not while
        compiling, where the kernel groups the targets itself)."""
        if graph.edge_attr is None:
            raise ValueError("EdgeNetworkConv needs edge features: pass edge_attr")
        self._check_edge_attr(graph.edge_attr)
        if graph.buckets is None and not torch.compiler.is_compiling():
            buckets = cpu_buckets(graph.csr)
            graph = graph if buckets is None else graph.replace(buckets=buckets)
        return graph

    def edge_features(self, graph: Graph) -> Tensor:
        """``z = ReLU(Linear(edge_attr))``, ``[E, K]`` in CSR order."""
        return self._run_edge_mlp(graph.edge_attr)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        csr, z = graph.csr, edge
        dtype = torch.promote_types(z.dtype, x_src.dtype)  # under autocast the edge MLP may give bf16
        z, x_src = z.to(dtype), x_src.to(dtype)
        # An explainer's mask scales both terms through the base's primitives:
        # mask_e A(e) x_w = W2 (mask_e z_e) x_w + b2 (mask_e x_w).
        d, d_out, k = self.channels, self.out_channels, self.hidden
        # edge_out.weight row i * d' + o holds A[i, o]; reorder it to act on S's (k, i) layout.
        w = self.edge_out.weight.view(d, d_out, k).permute(1, 2, 0).reshape(d_out, k * d)
        out = self.outer_linear(z, x_src, w, graph)  # W' vec(S_v), S_v = sum_w z_vw ⊗ x_w
        if self.aggr == "mean":
            # The sum is linear in z: scale its N x d' rows rather than the E x K vectors.
            out = out * (1.0 / csr.degree(out.dtype).clamp(min=1)).unsqueeze(1)
        x_aggr = self.spmm(x_src, graph, reduce=self.aggr)
        return out + x_aggr @ self.edge_out.bias.view(d, d_out).to(x_aggr.dtype)

    def update(self, x_dst: Tensor | None, aggregated: Tensor) -> Tensor:
        if self.root is not None and x_dst is not None:  # an (x_src, None) pair has no root term, as in PyG
            aggregated = aggregated + self.root(x_dst)
        return aggregated + self.bias if self.bias is not None else aggregated

    def flops(self, num_nodes: int, num_edges: int, backward: bool = False, edge_mlp: bool = True) -> int:
        """Cost model of one forward (``backward=True``: forward + backward) in floating-point
        operations, counting the products (a multiply-add is 2; element-wise work not counted).

        Forward: edge MLP ``2 E e K`` per Linear before the last (``edge_mlp=False`` leaves it out: a model that computes it
        once for several steps counts it once), ``S`` ``2 E K d`` (:func:`gnnkit.ops.outer_aggregate_flops`),
        the node-level product ``2 N K d d'``, the bias term ``2 E d + 2 N d d'`` and the root
        weight ``2 N d d'``. Backward: twice each product, except the edge MLP's first layer,
        whose input (the edge features) needs no gradient."""
        d, d_out, k = self.channels, self.out_channels, self.hidden
        node = 2 * num_nodes * d * d_out * (k + 1 + (self.root is not None)) + 2 * num_edges * d
        total = outer_aggregate_flops(num_edges, k, d, backward) + (3 * node if backward else node)
        if edge_mlp:  # every Linear of the edge MLP before its last (which S reassociates)
            mlp = sum(2 * num_edges * m.in_features * m.out_features for m in self.edge_mlp if isinstance(m, torch.nn.Linear))
            total += mlp * (2 if backward else 1)
        return total

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, aggr={self.aggr_name}, nn={self.nn})"


def split_edge_network(net: torch.nn.Module, width: int) -> tuple[torch.nn.Sequential, torch.nn.Linear]:
    """``(edge_mlp, edge_out)``: an NNConv edge network split before its last ``Linear``, whose
    output must be ``width = d_src * d'`` (the reassociation of :class:`EdgeNetworkConv` needs it).

    Raises:
        ValueError: ``net`` is not an ``nn.Sequential`` ending in such an ``nn.Linear``.
    """
    last = net[-1] if isinstance(net, torch.nn.Sequential) and len(net) else net
    if not isinstance(last, torch.nn.Linear) or isinstance(last, torch.nn.LazyLinear):
        raise ValueError(
            "EdgeNetworkConv needs nn to be an nn.Sequential whose last module is an nn.Linear(K, in_channels * "
            f"out_channels) (it aggregates before that last linear map), got {type(net).__name__}; "
            "use torch_geometric.nn.NNConv for any other edge network"
        )
    if last.out_features != width:
        raise ValueError(f"the last Linear of nn must output in_channels * out_channels = {width} features, got {last.out_features}")
    head = list(net[:-1]) if isinstance(net, torch.nn.Sequential) else []
    return torch.nn.Sequential(*head), last
