"""A GRU as message passing.

A recurrent network reads a sequence along a path graph: the state of position ``t`` is a
function of its input and the state arriving from ``t - 1``. Written as synchronous message
passing with weights shared across nodes and steps::

    m_v = AGG_{u -> v} h_u
    h_v <- GRUCell(x_v, m_v)

On a path graph (:func:`gnnkit.data.path_graph`) the first ``k`` positions of every sequence are
final after ``k`` steps, so ``max(lengths)`` steps reproduce ``torch.nn.GRU`` exactly (Cho et al.
2014, "Learning Phrase Representations using RNN Encoder-Decoder"). Unlike GG-NN (Li et al.
2016), whose GRU takes the aggregated message as input and the node's own state as memory, here
the memory is what the predecessors send and the input is the node's own feature.

On the base, one call is one step with the bipartite node input ``(h, x)``: messages come from the
states ``h`` (the source side), the update reads each node's own input ``x`` (the target side).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gnnkit.nn.graph import Graph
from gnnkit.nn.message_passing import Aggr, MessagePassing, as_graph


class GRUMessagePassing(MessagePassing):
    """Iterated GRU message passing; equals ``nn.GRU`` (one layer, one direction) on a path graph.

    Args:
        in_channels: input feature size (``nn.GRU``'s ``input_size``).
        hidden_channels: state size (``hidden_size``).
        aggr: how the states of several predecessors are combined (a path has one).
        bias: learn ``bias_ih`` and ``bias_hh``.

    Parameters are named and laid out as in ``nn.GRUCell`` (gates in order reset, update, new):
    ``weight_ih`` ``[3H, in]``, ``weight_hh`` ``[3H, H]``, ``bias_ih`` / ``bias_hh`` ``[3H]``.

    Call ``layer((h, x), edge_index)`` for one step from states ``h`` with inputs ``x``, or
    :meth:`unroll` for ``num_steps`` steps from ``h = 0``.

    Shapes:
        h ``[N, hidden_channels]``, x ``[N, in_channels]``, edge_index ``[2, E]`` ->
        ``[N, hidden_channels]``.

    Cost:
        Per step an ``N x in x 3H`` input projection, a gather and segment sum of ``E x H`` and an
        ``N x H x 3H`` matmul. On a path this is ``max(lengths)`` times the work of ``nn.GRU``:
        the layer shows the equivalence, it is not a fast RNN.
    """

    def __init__(self, in_channels: int, hidden_channels: int, aggr: Aggr = "sum", bias: bool = True) -> None:
        super().__init__(aggr)
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_channels, in_channels))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_channels, hidden_channels))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_channels)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_channels)  # as nn.GRU
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @classmethod
    def from_gru(cls, gru: nn.GRU, layer: int = 0, reverse: bool = False) -> "GRUMessagePassing":
        """The layer with the weights of one layer and direction of ``gru``. Run it on
        ``path_graph(lengths, reverse=reverse)``."""
        if not isinstance(gru, nn.GRU):
            raise TypeError(f"gru must be an nn.GRU, got {type(gru).__name__}")
        if not 0 <= layer < gru.num_layers:
            raise ValueError(f"layer must be in [0, {gru.num_layers}), got {layer}")
        if reverse and not gru.bidirectional:
            raise ValueError("reverse=True needs a bidirectional gru")
        if gru.proj_size:
            raise ValueError("gru must not use proj_size")
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        w_ih = getattr(gru, "weight_ih" + suffix)
        out = cls(w_ih.size(1), gru.hidden_size, bias=gru.bias).to(device=w_ih.device, dtype=w_ih.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if gru.bias else ()):
                getattr(out, name).copy_(getattr(gru, name + suffix))
        return out

    def check_input(self, x_src: Tensor, x_dst: Tensor) -> None:
        n, hid = x_dst.size(0), self.hidden_channels
        if x_dst.dim() != 2 or x_dst.size(1) != self.in_channels:
            raise ValueError(f"x must have shape [N, {self.in_channels}], got {tuple(x_dst.shape)}")
        if x_src.shape != (n, hid):
            raise ValueError(f"h must have shape [{n}, {hid}], got {tuple(x_src.shape)}")

    def message_and_aggregate(self, x_src: Tensor, x_dst: Tensor, edge: Tensor | None, graph: Graph) -> Tensor:
        return self.aggregate(x_src.index_select(0, graph.csr.col), graph)  # states sent along edges

    def update(self, x_dst: Tensor, aggregated: Tensor) -> Tensor:
        # nn.GRUCell's equations with the node's input x and the predecessors' state m as memory.
        gi = nn.functional.linear(x_dst, self.weight_ih, self.bias_ih)
        gh = nn.functional.linear(aggregated, self.weight_hh, self.bias_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * aggregated

    def unroll(self, x: Tensor, edge_index: Tensor | Graph, num_steps: int, h: Tensor | None = None) -> Tensor:
        """Runs ``num_steps`` synchronous steps from state ``h`` (zeros if ``None``)."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"num_steps must be an int >= 0, got {num_steps!r}")
        if h is None:
            h = x.new_zeros(x.size(0), self.hidden_channels)
        self.check_input(h, x)
        graph = as_graph(edge_index, x.size(0))  # built once, reused by every step
        for _ in range(num_steps):
            h = self.propagate((h, x), graph, None)
        return h

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.hidden_channels}, aggr={self.aggr!r}"
