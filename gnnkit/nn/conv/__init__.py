"""Convolution layers on the message-passing base."""

from gnnkit.nn.conv.edge_network import EdgeNetworkConv
from gnnkit.nn.conv.gcn import GCNConv, add_remaining_self_loops, feature_dropout, gcn_norm
from gnnkit.nn.conv.ggnn import GGNNConv, LiGRUCell
from gnnkit.nn.conv.recurrent import GRUMessagePassing
from gnnkit.nn.conv.relational import RelationalConv

__all__ = ["GCNConv", "gcn_norm", "feature_dropout", "add_remaining_self_loops", "RelationalConv", "GRUMessagePassing", "EdgeNetworkConv", "GGNNConv", "LiGRUCell"]
