"""Message passing with one weight matrix per edge type.

``x'_v = b + W_0 x_v + sum_r AGG_{(u -> v) of type r} W_r x_u`` (Schlichtkrull et al. 2018,
"Modeling Relational Data with Graph Convolutional Networks", eq. 2: with ``aggr="mean"`` the
per-relation mean ``1/c_{v,r}``), with PyG's ``RGCNConv`` parameters and results. On a grid graph whose edge types are the relative
offsets of a stencil (:func:`gnnkit.data.grid_graph`), it computes exactly what a convolution
computes: a CNN is this layer with the graph fixed to a lattice.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gnnkit.nn.conv.ggnn import check_edge_types
from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import Aggr, MessagePassing
from gnnkit.ops._checks import values_checked


class RelationalConv(MessagePassing):
    """Relational graph convolution: a separate linear map for every edge type, then aggregation.

    Takes ``torch_geometric.nn.RGCNConv``'s parameters in its order, with its defaults and
    meanings, and equals it with the same weights (same names and layouts: ``weight``, ``comp``,
    ``root``, ``bias``).

    Args:
        in_channels: input feature size, or ``(in_src, in_dst)`` for bipartite graphs (``in_dst``
            feeds the root weight only). For featureless input it is the number of nodes.
        out_channels: output feature size.
        num_relations: number of edge types ``R``; ``edge_type`` holds values in ``[0, R)``.
        num_bases: basis decomposition ``W_r = sum_b comp[r, b] weight[b]`` (``weight`` is then
            ``[num_bases, in, out]`` and ``comp`` ``[R, num_bases]``).
        num_blocks: block-diagonal decomposition (``weight`` ``[R, num_blocks, in / num_blocks,
            out / num_blocks]``); both sizes must be divisible. Not with ``num_bases``, and not
            for featureless input (as in PyG).
        aggr: how each relation's messages into a node are reduced, before the relations are
            summed (PyG's meaning): ``"mean"`` (the default, ``1/c_{v,r}`` of the paper),
            ``"add"``/``"sum"``, ``"max"`` or ``"min"``; a relation without edges into a node
            gives 0.
        root_weight: add a separate self-connection ``x_v W_0`` (not needed on a grid graph,
            whose centre offset is a self-loop edge).
        is_sorted: the edges come sorted by ``edge_type`` (PyG's hint for its segment kernel).
            gnnkit does not need that order; with ``True`` the claim is checked and an unsorted
            ``edge_type`` raises ``ValueError`` (where PyG would compute with a wrong segmentation).
        bias: learn an additive bias.
        per_relation: keyword only, gnnkit's: ``False`` reduces all incoming messages ``W_r x_u``
            (of every type) at once, e.g. ``aggr="mean"`` over all edges, as the edge-type message
            of :class:`gnnkit.models.MPNN` does; the same as ``True`` for ``"sum"``.
        **kwargs: PyG's base options: ``flow``; ``node_dim``, ``decomposed_layers=1``.

    Call as PyG's: ``conv(x, edge_index, edge_type)`` with ``x`` node features ``[N, in]``, a node
    index vector ``[N]`` (the features are then learned embeddings: row ``x[u]`` of each ``W_r``),
    ``None`` (the same with ``x = arange(in_channels)``), or a pair of these (``(None, idx)``);
    or with a sparse ``adj_t`` whose values are the edge types.

    Shapes:
        x ``[N, in_channels]`` (or ``[N]`` indices), edge_index ``[2, E]``, edge_type ``[E]``
        -> ``[N_dst, out_channels]``.

    Cost:
        Sum (or ``per_relation=False``): one ``N x in x (R * out)`` matmul, then a gather and
        segment reduction of ``E x out``. Mean/max/min per relation: a gather and scatter of
        ``E x in`` into ``N x R x in``, then one ``N x (R * in) x out`` matmul.
    """

    edge_input = "edge_type"

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        num_relations: int,
        num_bases: int | None = None,
        num_blocks: int | None = None,
        aggr: Aggr = "mean",
        root_weight: bool = True,
        is_sorted: bool = False,
        bias: bool = True,
        *,
        per_relation: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(aggr, **kwargs)
        in_src, in_dst = in_channels if isinstance(in_channels, tuple) else (in_channels, in_channels)
        checks = [("in_channels", in_src), ("in_channels", in_dst), ("out_channels", out_channels), ("num_relations", num_relations)]
        checks += [(k, v) for k, v in (("num_bases", num_bases), ("num_blocks", num_blocks)) if v is not None]
        for name, value in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_bases is not None and num_blocks is not None:
            raise ValueError("Can not apply both basis-decomposition and block-diagonal-decomposition at the same time.")
        if num_blocks is not None and (in_src % num_blocks or out_channels % num_blocks):
            raise ValueError(f"num_blocks={num_blocks} must divide in_channels={in_src} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.num_relations = in_channels, out_channels, num_relations
        self.in_src, self.in_dst = in_src, in_dst
        self.num_bases, self.num_blocks, self.is_sorted, self.per_relation = num_bases, num_blocks, is_sorted, per_relation
        if num_bases is not None:
            self.weight = nn.Parameter(torch.empty(num_bases, in_src, out_channels))
            self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
        elif num_blocks is not None:
            shape = (num_relations, num_blocks, in_src // num_blocks, out_channels // num_blocks)
            self.weight = nn.Parameter(torch.empty(shape))
            self.register_parameter("comp", None)
        else:
            self.weight = nn.Parameter(torch.empty(num_relations, in_src, out_channels))
            self.register_parameter("comp", None)
        self.root = nn.Parameter(torch.empty(in_dst, out_channels)) if root_weight else None
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The fan-in of a convolution with the same stencil, so a CNN built from this layer starts
        # where nn.Conv2d starts.
        bound = 1.0 / math.sqrt(self.in_src * self.num_relations)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.comp is not None:
            nn.init.xavier_uniform_(self.comp)
        if self.root is not None:
            nn.init.uniform_(self.root, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def relation_weights(self) -> Tensor:
        """The ``[R, in_src, out]`` matrix of every relation, whatever the decomposition."""
        r, out = self.num_relations, self.out_channels
        if self.num_bases is not None:
            return (self.comp @ self.weight.reshape(self.num_bases, -1)).view(r, self.in_src, out)
        if self.num_blocks is not None:
            return torch.stack([torch.block_diag(*w_r.unbind(0)) for w_r in self.weight.unbind(0)])
        return self.weight

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
        layer = cls(conv.in_channels, conv.out_channels, w.size(2), aggr="sum", root_weight=False, bias=conv.bias is not None)
        layer = layer.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w.permute(2, 1, 0))
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer

    def featureless_input(self) -> Tensor:
        """``x=None``: every node is its own index, ``arange(in_channels)`` (as RGCNConv)."""
        return torch.arange(self.in_src, device=self.weight.device)

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        for which, t, width in (("x", x_src, self.in_src), ("x_dst", x_dst, self.in_dst)):
            if t is None or (which == "x_dst" and t is x_src and width == self.in_src):
                continue
            if t.is_floating_point():
                if t.dim() != 2 or t.size(1) != width:
                    raise ValueError(f"{which} must have shape [N, {width}], got {tuple(t.shape)}")
                continue
            if t.dim() != 1 or t.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{which} must be float features [N, {width}] or an int64 node index vector [N], got {t.dtype} {tuple(t.shape)}")
            if self.num_blocks is not None:
                raise ValueError("Block-diagonal decomposition not supported for non-continuous input features.")
            if t.numel() and values_checked():
                lo, hi = (int(v) for v in torch.aminmax(t))
                if lo < 0 or hi >= width:
                    raise ValueError(f"{which} holds node indices, which must lie in [0, in_channels={width}), got [{lo}, {hi}]")

    def prepare(self, graph: Graph) -> Graph:
        check_edge_types(graph, self.num_relations, "RelationalConv")
        if self.is_sorted and graph.num_edges and values_checked():
            # the claim is about edge_index order; graph.edge_type is in CSR order
            given = torch.empty_like(graph.edge_type).index_copy_(0, graph.csr.perm, graph.edge_type)
            if bool((given[1:] < given[:-1]).any()):
                raise ValueError("is_sorted=True, but edge_type is not sorted")
        return graph

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor | None, edge: Tensor | None, graph: Graph) -> Tensor:
        # Every reduction is the base's aggregate, so an explainer's mask scales each edge's message
        # on every path (one reduction, per relation, featureless).
        r, out, csr = self.num_relations, self.out_channels, graph.csr
        w = self.relation_weights()
        one_reduction = self.aggr == "sum" or not self.per_relation
        src_key = csr.col * r + edge  # row (source, relation) of a per-node, per-relation table
        dst_key = csr.row * r + edge  # group (target, relation) of a reduction per relation
        if not x_src.is_floating_point():
            # node indices: W_r[x_u] are the (learned) features of source u under relation r
            table = w.index_select(1, x_src.long()).transpose(0, 1).reshape(-1, out)
            messages = table.index_select(0, src_key)
            if one_reduction:
                return self.aggregate(messages, graph)
            per_rel = self.aggregate(messages, graph, group=dst_key, num_groups=csr.num_dst * r)
            return per_rel.view(csr.num_dst, r, out).sum(1)
        if one_reduction:
            # Transform every node once per relation, then each edge picks its (source, type) row:
            # cheaper than a per-edge matmul whenever E > N, as on grids (E ~ R * N).
            h = (x_src @ w.permute(1, 0, 2).reshape(self.in_src, r * out)).view(-1, out)
            return self.aggregate(h.index_select(0, src_key), graph)
        # PyG's order for mean/max/min: reduce each relation's source features (the messages), then transform.
        per_rel = self.aggregate(x_src.index_select(0, csr.col), graph, group=dst_key, num_groups=csr.num_dst * r)
        return per_rel.view(csr.num_dst, r * self.in_src) @ w.reshape(r * self.in_src, out)

    def update(self, x_dst: Tensor | None, aggregated: Tensor) -> Tensor:
        if self.root is not None and x_dst is not None:  # an (x_src, None) pair has no root term, as in PyG
            if x_dst.is_floating_point():
                aggregated = aggregated + x_dst @ self.root
            else:
                aggregated = aggregated + self.root.index_select(0, x_dst.long())
        return aggregated + self.bias if self.bias is not None else aggregated

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, num_relations={self.num_relations})"
