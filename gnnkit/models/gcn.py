"""Graph convolutional networks of Kipf & Welling 2017 ("Semi-Supervised Classification with
Graph Convolutional Networks", ICLR): the 2-layer node classifier and a graph-level variant."""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.models._base import GraphModel
from gnnkit.nn import GCNConv, MaxReadout, MeanReadout, SumReadout, feature_dropout

_READOUTS: dict[str, type[nn.Module]] = {"sum": SumReadout, "mean": MeanReadout, "max": MaxReadout}


class GCN(GraphModel):
    """Kipf & Welling's 2-layer GCN node classifier:
    ``logits = Â ReLU(Â dropout(X) W1) W2`` with dropout before each layer (their setting:
    ``hidden=16``, ``dropout=0.5``). Returns one row of logits per node (apply ``log_softmax`` /
    ``cross_entropy`` outside). Uses ``data.edge_weight`` if the data carries one. Both layers
    share the normalised graph ``Â``, computed once by :meth:`prepare`.

    Args:
        in_channels: node feature size.
        out_channels: number of classes.
        hidden: hidden size.
        dropout: dropout probability on the input of each layer.
        cached: let each layer also keep ``Â`` of the first graph (PyG semantics).

    Shapes:
        data.x ``[N, in_channels]`` (dense or sparse COO), data.edge_index ``[2, E]`` ->
        ``[N, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 16, dropout: float = 0.5, cached: bool = False) -> None:
        super().__init__()
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.dropout = dropout
        self.conv1 = GCNConv(in_channels, hidden, cached=cached)
        self.conv2 = GCNConv(hidden, out_channels, cached=cached)

    def param_groups(self, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Kipf's optimiser setting: weight decay on the first layer only."""
        return [
            {"params": list(self.conv1.parameters()), "weight_decay": weight_decay},
            {"params": list(self.conv2.parameters()), "weight_decay": 0.0},
        ]

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        x = feature_dropout(self.node_input(graph), self.dropout, self.training)  # x may be sparse COO
        x = F.relu(self.conv1(x, graph))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, graph)


class GCNGraph(GraphModel):
    """Graph-level GCN: ``num_layers`` GCN layers with ReLU, a readout over each graph's nodes
    and an MLP head ``Linear(hidden, hidden) -> ReLU -> Linear(hidden, out_channels)``.

    Args:
        in_channels: node feature size.
        out_channels: number of predicted targets.
        hidden: hidden size of every layer.
        num_layers: number of GCN layers (Kipf: 2).
        readout: ``"mean"``, ``"sum"`` or ``"max"``.
        dropout: dropout probability between layers.

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]``, data.batch ``[N]`` ->
        ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 64,
        num_layers: int = 2,
        readout: Literal["mean", "sum", "max"] = "mean",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers!r}")
        if readout not in _READOUTS:
            raise ValueError(f"readout must be one of {tuple(_READOUTS)}, got {readout!r}")
        self.dropout = dropout
        sizes = [in_channels] + [hidden] * num_layers
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.readout = _READOUTS[readout]()
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_channels))

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        x = self.node_input(graph)
        for conv in self.convs:
            x = F.relu(conv(F.dropout(x, self.dropout, self.training), graph))
        return self.head(self.readout(x, graph))


__all__ = ["GCN", "GCNGraph"]
