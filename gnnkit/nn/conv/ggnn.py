"""Gated graph neural network propagation of Li et al. 2016 ("Gated Graph Sequence Neural
Networks", ICLR). For a one-directional per-edge-type message see
:class:`gnnkit.nn.RelationalConv`."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from gnnkit.nn.message_passing import as_csr
from gnnkit.ops import CSR, segment
from gnnkit.ops._checks import check_index, check_range


def _check_edge_type(edge_type: object, csr: CSR, num_edge_types: int) -> Tensor:
    check_index("edge_type", edge_type)
    if edge_type.shape != (csr.num_edges,):
        raise ValueError(f"edge_type must have shape [E] = [{csr.num_edges}], got {tuple(edge_type.shape)}")
    check_range("edge_type", edge_type, num_edge_types, "num_edge_types")
    return edge_type.long()


def _typed_sum(h: Tensor, weight: Tensor, src: Tensor, etype: Tensor, rowptr: Tensor, aggr: str) -> Tensor:
    """``out[v] = AGG_{e in segment v} weight[etype[e]] @ h[src[e]]``: every node is mapped by every
    type once (``N x T x d'``), then rows are gathered per edge (``E x d'``, like any message)."""
    num_types, d_out, d_in = weight.shape
    mapped = (h @ weight.reshape(num_types * d_out, d_in).t()).view(h.size(0) * num_types, d_out)
    return segment(mapped.index_select(0, src * num_types + etype), rowptr, aggr)


class LiGRUCell(nn.Module):
    """The GRU update as written by Li et al. 2016 (eq. 3-6)::

        z = sigmoid(W_z a + U_z h),  r = sigmoid(W_r a + U_r h)
        h~ = tanh(W a + U (r * h)),  h' = (1 - z) * h + z * h~

    It differs from ``torch.nn.GRUCell`` only in where the reset gate acts: here on ``h`` before
    ``U``, in ``GRUCell`` on ``U h + b`` after it.

    Shapes:
        a ``[N, input_size]``, h ``[N, hidden_size]`` -> ``[N, hidden_size]``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.lin_a = nn.Linear(input_size, 3 * hidden_size)  # W_z, W_r, W (with the biases)
        self.lin_h = nn.Linear(hidden_size, 2 * hidden_size, bias=False)  # U_z, U_r
        self.lin_rh = nn.Linear(hidden_size, hidden_size, bias=False)  # U

    def forward(self, a: Tensor, h: Tensor) -> Tensor:
        az, ar, an = self.lin_a(a).chunk(3, dim=-1)
        hz, hr = self.lin_h(h).chunk(2, dim=-1)
        z = torch.sigmoid(az + hz)
        r = torch.sigmoid(ar + hr)
        cand = torch.tanh(an + self.lin_rh(r * h))
        return h + z * (cand - h)


class GGNNConv(nn.Module):
    """Gated graph neural network propagation (Li et al. 2016), ``steps`` rounds with shared weights.

    ``h^0`` is ``x`` zero-padded to ``channels``. Each step::

        a_v = [sum_{(w -> v)} W_in[t] h_w ,  sum_{(v -> w)} W_out[t] h_w] + b     (2 * channels)
        h_v = GRU(a_v, h_v)

    with one matrix per edge type ``t`` and per direction (incoming / outgoing edges), and the GRU
    of :class:`LiGRUCell`. Both directions use one :class:`gnnkit.ops.CSR` (its transpose gives
    the outgoing edges).

    Args:
        channels: state size ``d`` (must be >= the input feature size).
        num_edge_types: number of discrete edge types.
        steps: number of propagation steps ``T``.
        aggr: ``"sum"`` (Li et al.) or ``"mean"``.

    Shapes:
        x ``[N, F <= d]``, edge_index ``[2, E]``, edge_type ``[E]`` -> ``[N, d]``.
    """

    def __init__(self, channels: int, num_edge_types: int, steps: int, aggr: Literal["sum", "mean"] = "sum") -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if num_edge_types < 1:
            raise ValueError(f"num_edge_types must be >= 1, got {num_edge_types}")
        if aggr not in ("sum", "mean"):
            raise ValueError(f"aggr must be 'sum' or 'mean', got {aggr!r}")
        self.channels, self.num_edge_types, self.steps, self.aggr = channels, num_edge_types, steps, aggr
        self.weight_in = nn.Parameter(torch.empty(num_edge_types, channels, channels))
        self.weight_out = nn.Parameter(torch.empty(num_edge_types, channels, channels))
        self.bias = nn.Parameter(torch.zeros(2 * channels))
        self.gru = LiGRUCell(2 * channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.channels)
        nn.init.uniform_(self.weight_in, -bound, bound)
        nn.init.uniform_(self.weight_out, -bound, bound)
        nn.init.zeros_(self.bias)
        for m in (self.gru.lin_a, self.gru.lin_h, self.gru.lin_rh):
            m.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | CSR,
        edge_type: Tensor,
        edge_order: Literal["edge_index", "csr"] = "edge_index",
    ) -> Tensor:
        if x.dim() != 2 or x.size(1) > self.channels:
            raise ValueError(
                f"x must have shape [N, F] with F <= channels={self.channels}, got {tuple(x.shape)}"
            )
        csr = as_csr(edge_index, x.size(0))
        etype = _check_edge_type(edge_type, csr, self.num_edge_types)
        if edge_order == "edge_index":
            etype = csr.permute(etype)
        elif edge_order != "csr":
            raise ValueError(f"edge_order must be 'edge_index' or 'csr', got {edge_order!r}")
        etype_t = etype.index_select(0, csr.t_perm)
        h = torch.nn.functional.pad(x, (0, self.channels - x.size(1)))
        for _ in range(self.steps):
            a_in = _typed_sum(h, self.weight_in, csr.col, etype, csr.rowptr, self.aggr)
            a_out = _typed_sum(h, self.weight_out, csr.t_col, etype_t, csr.t_rowptr, self.aggr)
            h = self.gru(torch.cat([a_in, a_out], dim=-1) + self.bias, h)
        return h

    def extra_repr(self) -> str:
        return f"{self.channels}, num_edge_types={self.num_edge_types}, steps={self.steps}, aggr={self.aggr!r}"
