"""Layers: the graph context, the message -> aggregate -> update base, convolutions and readouts."""

from gnnkit.nn.conv import (
    EdgeNetworkConv,
    GCNConv,
    GGNNConv,
    GINConv,
    GRUMessagePassing,
    LiGRUCell,
    NHConv,
    RelationalConv,
    TreeConv,
    feature_dropout,
    gcn_operator,
    homophily_channels,
    symmetric_norm,
    tree_edges,
    tree_operator,
    with_self_loops,
)
from gnnkit.nn.compose import Bidirectional, GRUUpdate, MasterNode, Towers
from gnnkit.nn.graph import Graph, OperatorKey
from gnnkit.nn.message_passing import GraphState, MessagePassing, as_graph
from gnnkit.nn.readout import GatedReadout, MaxReadout, MeanReadout, Readout, Set2Set, SumReadout

__all__ = [
    "Graph",
    "OperatorKey",
    "MessagePassing",
    "GraphState",
    "as_graph",
    "GRUUpdate",
    "MasterNode",
    "Towers",
    "Bidirectional",
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
    "Readout",
    "SumReadout",
    "MeanReadout",
    "MaxReadout",
    "Set2Set",
    "GatedReadout",
]
