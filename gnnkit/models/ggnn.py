"""Graph-level gated graph neural network (Li et al. 2016, "Gated Graph Sequence Neural
Networks", ICLR) with the gated readout, the GG-NN baseline of Gilmer et al. 2017."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from gnnkit.models._inputs import graph_inputs, resolve_edge_type
from gnnkit.nn import GatedReadout, GGNNConv
from gnnkit.ops import CSR


class GGNN(nn.Module):
    """GG-NN for graph-level prediction: ``h^0`` = ``x`` zero-padded to ``channels``,
    :class:`gnnkit.nn.GGNNConv` (``steps`` propagation steps, per-edge-type maps for incoming and
    outgoing edges, GRU update), then the gated readout
    ``R = sum_v sigmoid(i([h_v^T, h_v^0])) * j(h_v^T)`` (:class:`gnnkit.nn.GatedReadout`) and an
    MLP head ``ReLU -> Linear(readout_channels, out_channels)``.

    Edge types come from ``data.edge_type`` if present, else from the one-hot block in the last
    ``num_bond_types`` columns of ``edge_attr`` (argmax; an all-zero block is the extra type
    ``num_bond_types``), as in :class:`gnnkit.models.MPNN`.

    Args:
        in_channels: node feature size (must be <= ``channels``, since ``h^0`` is zero-padded).
        out_channels: number of predicted targets.
        channels: node state size.
        steps: propagation steps.
        readout_channels: size of the gated readout's graph vector.
        aggr: ``"sum"`` (Li et al.) or ``"mean"``.
        num_bond_types: size of the one-hot block of ``edge_attr``.
        num_edge_types: number of edge types (default ``num_bond_types + 1``).

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int = 64,
        steps: int = 3,
        readout_channels: int = 128,
        aggr: Literal["sum", "mean"] = "sum",
        num_bond_types: int = 4,
        num_edge_types: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels > channels:
            raise ValueError(
                f"in_channels={in_channels} > channels={channels}: GG-NN zero-pads the input, so "
                "channels must be at least the input size"
            )
        self.in_channels, self.channels, self.num_bond_types = in_channels, channels, num_bond_types
        self.num_edge_types = num_bond_types + 1 if num_edge_types is None else num_edge_types
        self.conv = GGNNConv(channels, self.num_edge_types, steps, aggr=aggr)
        self.readout = GatedReadout(channels, readout_channels, init_channels=in_channels)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(readout_channels, out_channels))

    def forward(self, data: Any) -> Tensor:
        x, edge_index, edge_attr, batch, num_graphs = graph_inputs(data)
        if x.size(1) != self.in_channels:
            raise ValueError(f"data.x must have {self.in_channels} features, got {x.size(1)}")
        csr = CSR.from_edge_index(edge_index, x.size(0))
        edge_type = resolve_edge_type(data, edge_attr, self.num_bond_types)
        h = self.conv(x, csr, edge_type)
        # h^0 is x zero-padded: its padding adds nothing to the gate, so the gate reads x.
        return self.head(self.readout(h, batch, num_graphs, x0=x))


def build_ggnn(in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> GGNN:
    """``build_model("ggnn", ...)``: see :class:`GGNN`. ``edge_dim`` is checked against the
    one-hot block size but otherwise unused (GG-NN reads only the edge type)."""
    num_bond_types = config.get("num_bond_types", 4)
    if edge_dim is not None and edge_dim < num_bond_types and "num_edge_types" not in config:
        raise ValueError(f"edge_dim={edge_dim} is smaller than num_bond_types={num_bond_types}")
    return GGNN(in_channels, out_channels, **config)


__all__ = ["GGNN", "build_ggnn"]
