"""Graph readouts: node states -> one vector per graph.

All readouts share one call signature, ``readout(x, batch, num_graphs)``, where ``batch[i]`` is the
graph of node ``i`` (PyG's ``Batch.batch``), so they are interchangeable in a model. A graph
without nodes reads out as 0 for sum/mean/max and as the zero-input LSTM state for Set2Set.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gnnkit.ops import scatter, scatter_softmax


class _Reduce(nn.Module):
    reduce: str = "sum"

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Shapes: x ``[N, F]``, batch ``[N]`` -> ``[num_graphs, F]``."""
        return scatter(x, batch, num_graphs, self.reduce)


class SumReadout(_Reduce):
    """Sum of node states per graph."""

    reduce = "sum"


class MeanReadout(_Reduce):
    """Mean of node states per graph."""

    reduce = "mean"


class MaxReadout(_Reduce):
    """Feature-wise maximum of node states per graph."""

    reduce = "max"


class Set2Set(nn.Module):
    """Set2Set readout (Vinyals et al. 2016, "Order Matters"), as used by Gilmer et al. 2017.

    For ``steps`` rounds: ``q = LSTM(q*)``, attention ``a_i = softmax_i(x_i . q)`` within each
    graph, ``r = sum_i a_i x_i``, ``q* = [q, r]``. The output ``q*`` has ``2 * channels``
    features. Parameter names match ``torch_geometric.nn.aggr.Set2Set`` (an ``nn.LSTM`` called
    ``lstm``), so a PyG state dict loads directly.

    Args:
        channels: node feature size ``F``.
        steps: number of processing steps ``M``.

    Shapes:
        x ``[N, F]``, batch ``[N]`` -> ``[num_graphs, 2F]``.
    """

    def __init__(self, channels: int, steps: int) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.channels, self.steps = channels, steps
        self.out_channels = 2 * channels
        self.lstm = nn.LSTM(2 * channels, channels)

    def reset_parameters(self) -> None:
        self.lstm.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {tuple(x.shape)}")
        h = (x.new_zeros(1, num_graphs, self.channels), x.new_zeros(1, num_graphs, self.channels))
        q_star = x.new_zeros(num_graphs, self.out_channels)
        for _ in range(self.steps):
            q, h = self.lstm(q_star.unsqueeze(0), h)
            q = q.squeeze(0)
            e = (x * q.index_select(0, batch)).sum(dim=-1, keepdim=True)
            a = scatter_softmax(e, batch, num_graphs)
            r = scatter(a * x, batch, num_graphs, "sum")
            q_star = torch.cat([q, r], dim=-1)
        return q_star

    def extra_repr(self) -> str:
        return f"channels={self.channels}, steps={self.steps}"


class GatedReadout(nn.Module):
    """Gated graph readout of Li et al. 2016 in the form of Gilmer et al. 2017, eq. 4:

    ``R = sum_v sigmoid(i([h_v^T, h_v^0])) * j(h_v^T)``

    with ``i`` and ``j`` linear maps. ``h^0`` (the initial node states) enters the gate only; pass
    ``init_channels=0`` to gate on ``h^T`` alone.

    Args:
        channels: size of the final node states ``h^T``.
        out_channels: size of the graph vector.
        init_channels: size of ``h^0`` (0 to leave it out).

    Shapes:
        x ``[N, channels]``, x0 ``[N, init_channels]``, batch ``[N]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(self, channels: int, out_channels: int, init_channels: int = 0) -> None:
        super().__init__()
        self.channels, self.out_channels, self.init_channels = channels, out_channels, init_channels
        self.gate = nn.Linear(channels + init_channels, out_channels)
        self.value = nn.Linear(channels, out_channels)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int, x0: Tensor | None = None) -> Tensor:
        if self.init_channels:
            if x0 is None:
                raise ValueError("GatedReadout was built with init_channels > 0: pass x0 (the initial node states)")
            if x0.shape != (x.size(0), self.init_channels):
                raise ValueError(f"x0 must have shape [{x.size(0)}, {self.init_channels}], got {tuple(x0.shape)}")
            gate_in = torch.cat([x, x0], dim=-1)
        else:
            gate_in = x
        return scatter(torch.sigmoid(self.gate(gate_in)) * self.value(x), batch, num_graphs, "sum")

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_channels={self.out_channels}, init_channels={self.init_channels}"
