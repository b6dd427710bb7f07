"""The Chebyshev spectral filter of Defferrard et al. 2016 ("Convolutional Neural Networks on
Graphs with Fast Localized Spectral Filtering", NeurIPS; arXiv:1606.09375), the localised form of
Bruna et al. 2014's spectral convolution, written as message passing."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch_geometric.nn import Linear

from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import MessagePassing
from gnnkit.ops import CSR

Normalization = Literal["sym", "rw"] | None


def scaled_laplacian(graph: Graph, normalization: Normalization = "sym", lambda_max: float | None = None) -> Graph:
    """The operator ``L~ = 2 L / lambda_max - I`` of :class:`ChebConv` as a graph: ``graph``'s edges
    (self-loops weighted 0) plus one diagonal entry per node, ``edge_weight`` = the entries of
    ``L~`` (entry ``(v, w)`` on the edge ``w -> v``). Sync-free: no shape depends on the data.

    ``L`` is PyG's ``get_laplacian`` of the graph without its self-loops, with weights ``a_e``
    (``graph.edge_weight``, else 1) and degrees ``d`` summed over each node's outgoing edges:
    ``"sym"``: ``I - D^-1/2 A D^-1/2``; ``"rw"``: ``I - A D^-1`` (PyG's orientation); ``None``:
    ``D - A``. ``lambda_max=None`` takes PyG's default, twice the largest entry of ``L`` (2 for
    ``"sym"`` and ``"rw"``), as a tensor (no host read).

    Returns:
        A :class:`Graph` over ``E + N`` entries; the first ``E`` (in ``graph.csr`` order, before
        the operator's own sort) are the edges, the last ``N`` the diagonal. Its
        :attr:`Graph.origin` maps each entry to its edge (-1 for the diagonal), so an explainer's
        mask scales an edge's entry and leaves the diagonal.
    """
    csr, n, e = graph.csr, graph.csr.num_dst, graph.csr.num_edges
    if normalization not in ("sym", "rw", None):
        raise ValueError(f"normalization must be 'sym', 'rw' or None, got {normalization!r}")
    if lambda_max is not None and not lambda_max > 0:
        raise ValueError(f"lambda_max must be > 0, got {lambda_max}")
    dtype = graph.edge_weight.dtype if graph.edge_weight is not None else (
        graph.x.dtype if graph.x is not None and graph.x.is_floating_point() else torch.get_default_dtype())  # fmt: skip
    w = torch.ones(e, dtype=dtype, device=csr.device) if graph.edge_weight is None else graph.edge_weight
    w = torch.where(csr.row == csr.col, torch.zeros_like(w), w)  # PyG removes self-loops first
    deg = w.new_zeros(n).index_add_(0, csr.col, w)  # over the sources, as get_laplacian
    if normalization == "sym":
        dis = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
        off, diag = -dis.index_select(0, csr.col) * w * dis.index_select(0, csr.row), torch.ones_like(deg)
    elif normalization == "rw":
        inv = deg.reciprocal().masked_fill_(deg == 0, 0.0)
        off, diag = -inv.index_select(0, csr.col) * w, torch.ones_like(deg)
    else:
        off, diag = -w, deg
    entries = torch.cat([off, diag])
    if lambda_max is None:
        scale = 2.0 / (2.0 * entries.max()) if entries.numel() else entries.new_ones(())
    else:
        scale = 2.0 / lambda_max
    entries = entries * scale
    entries = entries.masked_fill(entries.isinf(), 0.0) - torch.cat([torch.zeros_like(off), torch.ones_like(diag)])
    nodes = torch.arange(n, device=csr.device)
    op = CSR.from_trusted(torch.cat([csr.col, nodes]), torch.cat([csr.row, nodes]), n, n)
    origin = torch.cat([torch.arange(e, device=csr.device), nodes.new_full((n,), -1)])
    return Graph(op, edge_weight=entries.index_select(0, op.perm), origin=origin.index_select(0, op.perm))


class ChebConv(MessagePassing):
    """Chebyshev spectral graph convolution, ``x' = sum_{k<K} T_k(L~) x Θ_k + b`` with
    ``T_0 = I``, ``T_1 = L~``, ``T_k = 2 L~ T_{k-1} - T_{k-2}`` and ``L~ = 2 L / lambda_max - I``.

    In Gilmer et al.'s (2017) terms the spectral models are ``M_t(h_v, h_w) = C^t_vw h_w`` with
    ``C^t`` a function of the Laplacian and the learned parameters, and ``U_t = σ(m_v)`` (here
    without ``σ``, as PyG's layer: the model applies it). Here ``C = sum_k Θ_k T_k(L~)`` is
    ``K``-localised, so it is ``K - 1`` sparse products over ``L~``.

    Equal to ``torch_geometric.nn.ChebConv(in_channels, out_channels, K, normalization, bias)``
    with the same weights (``lins.k.weight``, ``bias``; PyG's state dict loads), except that
    ``lambda_max`` is a constructor argument (one value for every graph) rather than a forward
    argument.

    On the base: :meth:`prepare` stores ``L~`` in the :class:`Graph` under :attr:`operator_key`
    (:func:`scaled_laplacian`, shared by every layer of a model with the same settings);
    :meth:`message_and_aggregate` runs the recursion with the base's
    :meth:`~MessagePassing.spmm` over that operator, which applies an explainer's mask to the
    edges' entries of ``L~`` at every product (the diagonal unmasked), as PyG masks each of its
    ``propagate`` calls. When ``out_channels < in_channels`` it maps first and
    sums with Clenshaw's recurrence (``b_k = x Θ_k + 2 L~ b_{k+1} - b_{k+2}``, result
    ``x Θ_0 + L~ b_1 - b_2``), so the ``K - 1`` products run on ``out_channels`` columns.

    Args:
        in_channels: input feature size (-1: lazy, from the first input, as PyG).
        out_channels: output feature size.
        K: filter size (order + 1), ``K >= 1``.
        normalization: ``"sym"`` (default), ``"rw"`` or ``None`` (combinatorial; see
            :func:`scaled_laplacian`).
        bias: learn an additive bias.
        lambda_max: largest eigenvalue used to scale ``L`` (default: twice the largest entry of
            ``L``, PyG's default: 2 for ``"sym"`` and ``"rw"`` with positive weights; for ``None``
            it is twice the largest degree of the whole batch, so a graph's output then depends on
            its batch, as in PyG: pass a value to avoid that).

    Shapes:
        x ``[N, in_channels]``, edge_index ``[2, E]``, edge_weight ``[E]`` -> ``[N, out_channels]``.
    """

    edge_input = "edge_weight"

    def __init__(self, in_channels: int, out_channels: int, K: int, normalization: Normalization = "sym",
                 bias: bool = True, lambda_max: float | None = None) -> None:  # fmt: skip
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"K must be an int >= 1, got {K!r}")
        if normalization not in ("sym", "rw", None):
            raise ValueError(f"normalization must be 'sym', 'rw' or None, got {normalization!r}")
        if lambda_max is not None and not lambda_max > 0:
            raise ValueError(f"lambda_max must be > 0, got {lambda_max}")
        super().__init__("sum")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.normalization, self.lambda_max = normalization, lambda_max
        self.lins = nn.ModuleList(Linear(in_channels, out_channels, bias=False, weight_initializer="glorot") for _ in range(K))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def operator_key(self) -> OperatorKey:
        """The key of ``L~`` in :attr:`Graph.operators` (layers with the same normalisation and
        ``lambda_max`` share one)."""
        return OperatorKey(ChebConv, (self.normalization, self.lambda_max))

    def reset_parameters(self) -> None:
        for lin in self.lins:
            lin.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        if x_src is not x_dst:
            raise ValueError("ChebConv needs one node set (a Laplacian is square): pass x, not a pair")
        if x_src.dim() != 2 or (self.in_channels > 0 and x_src.size(1) != self.in_channels):
            raise ValueError(f"x must have shape [N, {self.in_channels}], got {tuple(x_src.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        key = self.operator_key
        if key in graph.operators:
            return graph
        return graph.with_operator(key, scaled_laplacian(graph, self.normalization, self.lambda_max))

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        key = self.operator_key
        w = graph.operators[key].edge_weight.to(x_src.dtype)

        def lap(v: Tensor) -> Tensor:
            return self.spmm(v, graph, w, key=key)

        if self.K > 1 and 0 < self.out_channels < self.in_channels:  # Clenshaw on the mapped features
            b1, b2 = self.lins[-1](x_src), None
            for lin in reversed(self.lins[1:-1]):
                b1, b2 = lin(x_src) + 2.0 * lap(b1) - (b2 if b2 is not None else 0.0), b1
            return self.lins[0](x_src) + lap(b1) - (b2 if b2 is not None else 0.0)
        t0, out = x_src, self.lins[0](x_src)
        if self.K > 1:
            t1 = lap(x_src)
            out = out + self.lins[1](t1)
            for lin in self.lins[2:]:
                t0, t1 = t1, 2.0 * lap(t1) - t0
                out = out + lin(t1)
        return out

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        return aggregated + self.bias if self.bias is not None else aggregated

    def __repr__(self) -> str:
        """PyG's: ``ChebConv(4, 3, K=2, normalization=sym)``."""
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, K={self.K}, normalization={self.normalization})"
