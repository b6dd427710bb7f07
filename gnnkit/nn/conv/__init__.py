"""Convolution layers, every one a :class:`gnnkit.nn.MessagePassing` subclass."""

from gnnkit.nn.conv.cheb import ChebConv, scaled_laplacian
from gnnkit.nn.conv.dtnn import DTNNConv, GaussianDistances
from gnnkit.nn.conv.duvenaud import DuvenaudConv
from gnnkit.nn.conv.edge_network import EdgeNetworkConv
from gnnkit.nn.conv.gcn import GCNConv, feature_dropout, gcn_operator, symmetric_norm, with_self_loops
from gnnkit.nn.conv.ggnn import GGNNConv, LiGRUCell
from gnnkit.nn.conv.gin import GINConv
from gnnkit.nn.conv.homophily import NHConv, homophily_channels
from gnnkit.nn.conv.interaction import InteractionConv
from gnnkit.nn.conv.gru_message_passing import GRUMessagePassing
from gnnkit.nn.conv.relational import RelationalConv
from gnnkit.nn.conv.tree import TreeConv, tree_edges, tree_operator
from gnnkit.nn.conv.weave import WeaveConv

__all__ = [
    "GCNConv",
    "gcn_operator",
    "symmetric_norm",
    "with_self_loops",
    "feature_dropout",
    "EdgeNetworkConv",
    "GGNNConv",
    "LiGRUCell",
    "GINConv",
    "RelationalConv",
    "GRUMessagePassing",
    "TreeConv",
    "tree_edges",
    "tree_operator",
    "NHConv",
    "homophily_channels",
    "DuvenaudConv",
    "InteractionConv",
    "WeaveConv",
    "DTNNConv",
    "GaussianDistances",
    "ChebConv",
    "scaled_laplacian",
]
