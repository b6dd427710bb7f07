"""Graph readouts: node states -> one vector per graph.

Every readout has one call signature, ``readout(x, batch, num_graphs, x0=None)``:

* ``batch`` is PyG's ``Batch.batch`` (the graph of every node; its values are checked; ``None``
  for one graph) or a validated :class:`gnnkit.nn.Graph`, whose batch vector and graph count are
  used as they are (nothing read on the host);
* ``num_graphs`` may be left out with a batch vector, as with PyG's aggregations: it is then
  read from ``batch`` (a host sync and a ``torch.compile`` graph break, so pass it in a model);
* ``x0`` (keyword) are the initial node states ``h^0``. Only the gated readout reads them (Gilmer
  et al. 2017, eq. 4 gates on ``[h^T, h^0]``); the others accept and ignore them, so a model calls
  whichever readout it was built with the same way.

So the readouts are interchangeable in a model. A graph without nodes reads out as 0 for
sum/mean/max/gated and as the zero-input LSTM state for Set2Set.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import fx_proxy, record_call
from gnnkit.ops import scatter_softmax_unchecked, scatter_unchecked
from gnnkit.ops._checks import check_count, check_float, check_index, check_range


class Readout(nn.Module):
    """Base class: checks the inputs once, then :meth:`reduce` works on trusted tensors.

    Shapes:
        x ``[N, F]``, batch ``[N]`` (or a Graph of ``N`` nodes) -> ``[num_graphs, F_out]``.
    """

    def forward(self, x: Tensor, batch: Tensor | Graph | None = None, num_graphs: int | None = None, *, x0: Tensor | None = None) -> Tensor:
        proxy = fx_proxy(x, batch, x0)
        if proxy is not None:  # traced by torch.fx: one call_module node, like a message-passing layer
            return record_call(self, proxy, (x, batch) + ((num_graphs,) if num_graphs is not None else ()), {"x0": x0} if x0 is not None else {})
        check_float("x", x)
        if isinstance(batch, Graph):
            index, n = batch.batch, batch.num_graphs
            if index is None:
                raise ValueError("the graph has no batch vector; build it with Graph.from_edge_index/from_data")
            if num_graphs is not None and num_graphs != n:
                raise ValueError(f"num_graphs={num_graphs} but the graph holds {n} graphs")
        else:
            if batch is None:  # PyG's index=None: one graph
                batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
                num_graphs = 1 if num_graphs is None else num_graphs
            check_index("batch", batch)
            if num_graphs is None:  # as PyG's aggregations: read from the index (a host sync; pass it to avoid)
                num_graphs = int(batch.max()) + 1 if batch.numel() else 0
            n = check_count("num_graphs", num_graphs)
            index = batch.long()
            check_range("batch", index, n, "num_graphs")
        if index.shape != (x.size(0),):
            raise ValueError(f"batch must have shape [N] = [{x.size(0)}] (one graph id per row of x), got {tuple(index.shape)}")
        if x0 is not None and x0.size(0) != x.size(0):
            raise ValueError(f"x0 must have {x.size(0)} rows (one per node), got {tuple(x0.shape)}")
        return self.reduce(x, index, n, x0)

    def reduce(self, x: Tensor, index: Tensor, num_graphs: int, x0: Tensor | None) -> Tensor:
        """The readout on checked inputs (``index`` int64 in ``[0, num_graphs)``)."""
        raise NotImplementedError  # abstract: every readout below implements it


class _Reduce(Readout):
    reduce_op: str = "sum"

    def reduce(self, x: Tensor, index: Tensor, num_graphs: int, x0: Tensor | None) -> Tensor:
        return scatter_unchecked(x, index, num_graphs, self.reduce_op)


class SumReadout(_Reduce):
    """Sum of node states per graph."""

    reduce_op = "sum"


class MeanReadout(_Reduce):
    """Mean of node states per graph."""

    reduce_op = "mean"


class MaxReadout(_Reduce):
    """Feature-wise maximum of node states per graph."""

    reduce_op = "max"


class Set2Set(Readout):
    """Set2Set readout (Vinyals et al. 2016, "Order Matters"), as used by Gilmer et al. 2017.

    For ``processing_steps`` rounds: ``q = LSTM(q*)``, attention ``a_i = softmax_i(x_i . q)``
    within each graph, ``r = sum_i a_i x_i``, ``q* = [q, r]``. The output ``q*`` has
    ``2 * in_channels`` features. Takes ``torch_geometric.nn.aggr.Set2Set``'s parameters and
    parameter names (an ``nn.LSTM`` called ``lstm``), so a PyG state dict loads directly. ``lstm``
    holds only the weights of that one-layer LSTM (initialised as ``nn.LSTM``'s) and the one step
    per round is written out, because ``torch.compile`` does not trace ``nn.LSTM`` modules.

    Args:
        in_channels: node feature size ``F``.
        processing_steps: number of processing steps ``M``.
        **kwargs: PyG passes these to its ``nn.LSTM``; the one-layer LSTM here honours only their
            defaults (``num_layers=1``, ``bias=True``, ``dropout=0``, ``bidirectional=False``,
            ``proj_size=0``, ``batch_first``): any other value raises ``ValueError``.

    Called as PyG's aggregation ``set2set(x, index)`` (the graph count is then read from
    ``index``), or as every gnnkit readout, ``set2set(x, batch, num_graphs)``.

    Shapes:
        x ``[N, F]``, batch ``[N]`` -> ``[num_graphs, 2F]``.
    """

    _LSTM_DEFAULTS = {"num_layers": 1, "bias": True, "dropout": 0.0, "bidirectional": False, "proj_size": 0}

    def __init__(self, in_channels: int, processing_steps: int, **kwargs: Any) -> None:
        super().__init__()
        if isinstance(processing_steps, bool) or not isinstance(processing_steps, int) or processing_steps < 1:
            raise ValueError(f"processing_steps must be >= 1, got {processing_steps!r}")
        for key, value in kwargs.items():
            if key == "batch_first":  # a layout flag of nn.LSTM's input; no call here sees it
                continue
            if key not in self._LSTM_DEFAULTS:
                raise TypeError(f"Set2Set got an unexpected keyword argument {key!r}")
            if value != self._LSTM_DEFAULTS[key]:
                raise ValueError(f"Set2Set runs a one-layer LSTM step: {key}={value!r} is not supported (only {self._LSTM_DEFAULTS[key]!r})")
        self.channels, self.steps = in_channels, processing_steps
        self.in_channels, self.processing_steps = in_channels, processing_steps  # PyG's names
        self.out_channels = 2 * in_channels
        self.lstm = _LSTMWeights(2 * in_channels, in_channels)

    def reset_parameters(self) -> None:
        self.lstm.reset_parameters()

    def reduce(self, x: Tensor, index: Tensor, num_graphs: int, x0: Tensor | None) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {tuple(x.shape)}")
        q, c = x.new_zeros(num_graphs, self.channels), x.new_zeros(num_graphs, self.channels)
        q_star = x.new_zeros(num_graphs, self.out_channels)
        for _ in range(self.steps):
            q, c = self._lstm_step(q_star, q, c)
            e = (x * q.index_select(0, index)).sum(dim=-1, keepdim=True)
            a = scatter_softmax_unchecked(e, index, num_graphs)
            r = scatter_unchecked(a * x, index, num_graphs, "sum")
            q_star = torch.cat([q, r], dim=-1)
        return q_star

    def _lstm_step(self, inp: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step of ``self.lstm`` (gates in torch's order: input, forget, cell, output)."""
        lstm = self.lstm
        gates = F.linear(inp, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"


class _LSTMWeights(nn.Module):
    """The parameters of a one-layer ``nn.LSTM(input_size, hidden_size)``, with its names and
    initialisation, for a hand-written step."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # as nn.LSTM
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class GatedReadout(Readout):
    """Gated graph readout of Li et al. 2016 in the form of Gilmer et al. 2017, eq. 4:

    ``R = sum_v sigmoid(i([h_v^T, h_v^0])) * j(h_v^T)``

    with ``i`` and ``j`` linear maps. ``h^0`` (the initial node states, passed as ``x0``) enters
    the gate only; pass ``init_channels=0`` to gate on ``h^T`` alone. ``form="li"`` gives Li et
    al.'s own graph-level output (their eq. 7), where ``j`` also reads ``h^0`` and two ``tanh``
    bound the result: ``R = tanh(sum_v sigmoid(i([h_v^T, h_v^0])) * tanh(j([h_v^T, h_v^0])))``.

    Args:
        channels: size of the final node states ``h^T``.
        out_channels: size of the graph vector.
        init_channels: size of ``h^0`` (0 to leave it out).
        form: ``"gilmer"`` (eq. 4 of Gilmer et al.) or ``"li"`` (eq. 7 of Li et al.).

    Shapes:
        x ``[N, channels]``, x0 ``[N, init_channels]``, batch ``[N]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(self, channels: int, out_channels: int, init_channels: int = 0,
                 form: Literal["gilmer", "li"] = "gilmer") -> None:  # fmt: skip
        super().__init__()
        if form not in ("gilmer", "li"):
            raise ValueError(f"form must be 'gilmer' or 'li', got {form!r}")
        self.channels, self.out_channels, self.init_channels, self.form = channels, out_channels, init_channels, form
        self.gate = nn.Linear(channels + init_channels, out_channels)
        self.value = nn.Linear(channels + (init_channels if form == "li" else 0), out_channels)

    def reduce(self, x: Tensor, index: Tensor, num_graphs: int, x0: Tensor | None) -> Tensor:
        if self.init_channels:
            if x0 is None:
                raise ValueError("GatedReadout was built with init_channels > 0: pass x0 (the initial node states)")
            if x0.dim() != 2 or x0.size(1) != self.init_channels:
                raise ValueError(f"x0 must have shape [{x.size(0)}, {self.init_channels}], got {tuple(x0.shape)}")
            gate_in = torch.cat([x, x0], dim=-1)
        else:
            gate_in = x
        if self.form == "li":
            gated = torch.sigmoid(self.gate(gate_in)) * torch.tanh(self.value(gate_in))
            return torch.tanh(scatter_unchecked(gated, index, num_graphs, "sum"))
        return scatter_unchecked(torch.sigmoid(self.gate(gate_in)) * self.value(x), index, num_graphs, "sum")

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, out_channels={self.out_channels}, init_channels={self.init_channels}, "
                f"form={self.form!r}")  # fmt: skip
