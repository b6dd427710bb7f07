"""Layers: the message -> aggregate -> update base, convolutions and readouts."""

from gnnkit.nn.conv import GCNConv, add_remaining_self_loops, feature_dropout, gcn_norm
from gnnkit.nn.conv import GRUMessagePassing, RelationalConv
from gnnkit.nn.conv import EdgeNetworkConv, GGNNConv, LiGRUCell
from gnnkit.nn.message_passing import MessagePassing, as_csr
from gnnkit.nn.readout import GatedReadout, MaxReadout, MeanReadout, Set2Set, SumReadout

__all__ = [
    "MessagePassing",
    "as_csr",
    "GCNConv",
    "feature_dropout",
    "gcn_norm",
    "add_remaining_self_loops",
    "RelationalConv",
    "GRUMessagePassing",
    "EdgeNetworkConv",
    "GGNNConv",
    "LiGRUCell",
    "SumReadout",
    "MeanReadout",
    "MaxReadout",
    "Set2Set",
    "GatedReadout",
]
