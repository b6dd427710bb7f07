"""Message passing with one weight matrix per edge type.

``x'_v = b + W_0 x_v + AGG_{(u -> v, r)} W_r x_u`` (Schlichtkrull et al. 2018, "Modeling
Relational Data with Graph Convolutional Networks", eq. 2, with a plain sum over all incoming
edges instead of the per-relation mean). On a grid graph whose edge types are the relative
offsets of a stencil (:func:`gnnkit.data.grid_graph`), it computes exactly what a convolution
computes: a CNN is this layer with the graph fixed to a lattice.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gnnkit.nn.conv.ggnn import check_edge_types
from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import Aggr, MessagePassing


class RelationalConv(MessagePassing):
    """Relational graph convolution: a separate linear map for every edge type, then aggregation.

    Args:
        in_channels: input feature size.
        out_channels: output feature size.
        num_relations: number of edge types ``R``; ``edge_type`` holds values in ``[0, R)``.
        aggr: reduction over all incoming edges (of every type): ``"sum"`` (the default, which
            matches a convolution and ``torch_geometric.nn.RGCNConv(aggr="add")``), ``"mean"``,
            ``"max"`` or ``"min"``.
        root_weight: add a separate self-connection ``W_0 x_v`` (not needed on a grid graph,
            whose centre offset is a self-loop edge).
        bias: learn an additive bias.

    Parameter layout is that of ``torch_geometric.nn.RGCNConv``: ``weight`` ``[R, in, out]``,
    ``root`` ``[in, out]``, ``bias`` ``[out]``.

    Shapes:
        x ``[N, in_channels]``, edge_index ``[2, E]``, edge_type ``[E]`` -> ``[N, out_channels]``.

    Cost:
        One ``N x in x (R * out)`` matmul, then a gather and segment reduction of ``E x out``.
    """

    edge_input = "edge_type"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_relations: int,
        aggr: Aggr = "sum",
        root_weight: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__(aggr)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("num_relations", num_relations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels, self.out_channels, self.num_relations = in_channels, out_channels, num_relations
        self.weight = nn.Parameter(torch.empty(num_relations, in_channels, out_channels))
        self.root = nn.Parameter(torch.empty(in_channels, out_channels)) if root_weight else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The fan-in of a convolution with the same stencil, so a CNN built from this layer starts
        # where nn.Conv2d starts.
        bound = 1.0 / math.sqrt(self.in_channels * self.num_relations)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.root is not None:
            nn.init.uniform_(self.root, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> "RelationalConv":
        """The layer that computes ``conv`` on :func:`gnnkit.data.grid_graph` with the same
        kernel size and dilation: edge type ``r`` gets kernel position ``r`` (row-major).

        Raises:
            ValueError: ``conv`` is grouped, strided, or not zero-padded to keep the size.
        """
        if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            raise TypeError(f"conv must be an nn.Conv1d/2d/3d, got {type(conv).__name__}")
        same = tuple(d * (k // 2) for k, d in zip(conv.kernel_size, conv.dilation))
        if conv.groups != 1 or any(s != 1 for s in conv.stride) or conv.padding_mode != "zeros":
            raise ValueError("conv must have groups=1, stride=1 and padding_mode='zeros'")
        if any(k % 2 == 0 for k in conv.kernel_size) or (conv.padding != "same" and tuple(conv.padding) != same):
            raise ValueError(f"conv must have an odd kernel and 'same' padding {same}, got {conv.padding}")
        w = conv.weight.detach().flatten(2)  # [out, in, R]
        layer = cls(conv.in_channels, conv.out_channels, w.size(2), bias=conv.bias is not None)
        layer = layer.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w.permute(2, 1, 0))
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src.dim() != 2 or x_src.size(1) != self.in_channels:
            raise ValueError(f"x must have shape [N, {self.in_channels}], got {tuple(x_src.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        check_edge_types(graph, self.num_relations, "RelationalConv")
        return graph

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        # Transform every node once per relation, then each edge picks its (source, type) row:
        # cheaper than a per-edge matmul whenever E > N, as on grids (E ~ R * N).
        r, out = self.num_relations, self.out_channels
        h = (x_src @ self.weight.permute(1, 0, 2).reshape(self.in_channels, r * out)).view(-1, out)
        messages = h.index_select(0, graph.csr.col * r + edge)
        return self.aggregate(messages, graph)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        if self.root is not None:
            aggregated = aggregated + x_dst @ self.root
        return aggregated + self.bias if self.bias is not None else aggregated

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_relations={self.num_relations}, "
            f"aggr={self.aggr!r}, root_weight={self.root is not None}"
        )
