"""Convolutional fingerprints of Duvenaud et al. 2015 ("Convolutional Networks on Graphs for
Learning Molecular Fingerprints", NeurIPS; arXiv:1509.09292), one layer of Algorithm 2."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import MessagePassing

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": F.relu, "tanh": torch.tanh}


class DuvenaudConv(MessagePassing):
    """One step of a neural fingerprint, in Gilmer et al.'s (2017) terms::

        M_t(h_v, h_w, e_vw) = (h_w, e_vw)                     (concatenation)
        U_t(h_v, m_v)      = σ(H_t^{deg(v)} ((h_v, 0) + m_v) + b)

    with one matrix ``H_t^N`` per node degree ``N`` (in-degree, clamped to ``max_degree``), as
    Algorithm 2 of Duvenaud et al. (``v = r_a + sum_i r_i; r_a = σ(v H_L^N)``) with the bond
    features of their code summed beside the atoms'. ``root=False`` drops the node's own state
    (Gilmer's transcription, ``σ(H^{deg(v)} m_v)``); ``bias=False`` drops ``b`` (Algorithm 2 has
    none).

    With ``edge_dim=0`` and ``root=True`` this is ``sigmoid(torch_geometric.nn.MFConv(x))`` when
    MFConv's self and neighbour weights of each degree are the same matrix (MFConv learns two:
    ``W_1^{deg} h_v + W_2^{deg} sum_w h_w``, with no bond features and no nonlinearity).

    On the base: :meth:`message_and_aggregate` sums the neighbours' states with the base's sparse
    product and the bond features with its segment sum (:meth:`~MessagePassing.spmm`,
    :meth:`~MessagePassing.aggregate`: no ``E x F`` tensor, an explainer's mask applied there), then
    applies ``H^{deg(v)}`` (all degrees' maps in one matmul, each node picking its row: no host
    sync); :meth:`update` applies ``σ``. The degree matrix sits in ``message_and_aggregate``, not
    in the update: the base's ``node_update(x_dst, aggregated, u)`` sees node states and the graph
    state but not the graph, and ``deg(v)`` is the graph's (the number of edges, unmasked: an
    explainer scales messages, it does not change which matrix a node uses).

    Args:
        in_channels: node state size.
        out_channels: new state size.
        edge_dim: bond feature size (0: no edge features).
        max_degree: largest degree with its own matrix; higher degrees share it.
        root: add the node's own state to the summed neighbours (Duvenaud's Algorithm 2).
        act: ``"sigmoid"`` (the paper's σ), ``"relu"`` (their code) or ``"tanh"``.
        bias: learn ``b``.

    Shapes:
        x ``[N, in_channels]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]`` ->
        ``[N, out_channels]``.
    """

    edge_input = "edge_attr"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int = 0,
        max_degree: int = 5,
        root: bool = True,
        act: Literal["sigmoid", "relu", "tanh"] = "sigmoid",
        bias: bool = True,
    ) -> None:
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("edge_dim", edge_dim, 0), ("max_degree", max_degree, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if act not in _ACTIVATIONS:
            raise ValueError(f"act must be one of {tuple(_ACTIVATIONS)}, got {act!r}")
        super().__init__("sum")
        self.in_channels, self.out_channels, self.edge_dim = in_channels, out_channels, edge_dim
        self.max_degree, self.root, self.act = max_degree, root, act
        self.weight = nn.Parameter(torch.empty(max_degree + 1, in_channels + edge_dim, out_channels))  # H^0..H^D
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels + self.edge_dim)  # nn.Linear's, per degree
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def check_input(self, x_src: Tensor, x_dst: Tensor | None) -> None:
        if x_dst is None and self.root:
            raise ValueError("DuvenaudConv with root=True adds the targets' own states: pass x_dst, not (x_src, None)")
        for name, x in (("x", x_src), ("x_dst", x_dst)):
            if x is not None and (x.dim() != 2 or x.size(1) != self.in_channels):
                raise ValueError(f"{name} must have shape [N, {self.in_channels}], got {tuple(x.shape)}")

    def prepare(self, graph: Graph) -> Graph:
        if self.edge_dim:
            e = graph.edge_attr
            if e is None:
                raise ValueError(f"DuvenaudConv was built with edge_dim={self.edge_dim}: pass edge_attr")
            if e.dim() != 2 or e.size(1) != self.edge_dim:
                raise ValueError(f"edge_attr must have shape [E, {self.edge_dim}], got {tuple(e.shape)}")
        return graph

    def edge_features(self, graph: Graph) -> Tensor | None:
        return graph.edge_attr if self.edge_dim else None

    def message(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None) -> Tensor:
        """``M = (h_w, e_vw)`` (the unfused form; :meth:`message_and_aggregate` sums the parts)."""
        return x_src if edge is None else torch.cat([x_src, edge.to(x_src.dtype)], dim=-1)

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        m = self.spmm(x_src, graph)  # sum_w h_w
        if self.root:
            m = m + x_dst
        if edge is not None:  # sum_w e_vw: the bond block of the concatenated message
            m = torch.cat([m, self.aggregate(edge.to(m.dtype), graph)], dim=-1)
        return self.per_degree(m, graph)

    def per_degree(self, m: Tensor, graph: Graph) -> Tensor:
        """``H^{deg(v)} m_v`` for every node: every degree's map in one matmul, then each node
        takes its degree's block."""
        rowptr, d, out = graph.csr.rowptr, self.max_degree + 1, self.out_channels
        degree = (rowptr[1:] - rowptr[:-1]).clamp(max=self.max_degree)
        w = self.weight.to(m.dtype).permute(1, 0, 2).reshape(m.size(1), d * out)
        mapped = (m @ w).view(-1, d, out)
        return mapped.gather(1, degree.view(-1, 1, 1).expand(-1, 1, out)).squeeze(1)

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        if self.bias is not None:
            aggregated = aggregated + self.bias
        return _ACTIVATIONS[self.act](aggregated)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, edge_dim={self.edge_dim}, max_degree={self.max_degree}, "
                f"root={self.root}, act={self.act!r}")  # fmt: skip
