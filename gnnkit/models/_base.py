"""What every graph model shares: turning its input into a prepared :class:`gnnkit.nn.Graph`.

A model's ``forward`` takes a PyG ``Data``/``Batch`` or a ``Graph`` that :meth:`GraphModel.prepare`
built. ``prepare`` validates the input once (the host reads happen here), lets the model add what
it reads from its data (:meth:`GraphModel.graph_from_data`: edge types, TDGNN's tree operator,
NHGCN's channels) and lets every layer add its per-graph precomputation. Preparing once and
passing the ``Graph`` to every step (what :func:`gnnkit.train.fit` does) keeps the forward and
backward pass free of host syncs, so the model compiles with ``fullgraph=True``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gnnkit.nn import Graph, MessagePassing


class GraphModel(nn.Module):
    """Base class of the graph models (see the module docstring)."""

    def graph_from_data(self, data: Any) -> Graph:
        """The validated graph of ``data`` with what this model reads from it (default:
        :meth:`Graph.from_data`)."""
        return Graph.from_data(data)

    def prepare(self, data: Any) -> Graph:
        """``data`` as a prepared :class:`Graph` (returned as it is when already prepared)."""
        graph = data if isinstance(data, Graph) else self.graph_from_data(data)
        for layer in self.modules():
            if isinstance(layer, MessagePassing):
                graph = layer.prepare(graph)
        return graph

    def node_input(self, graph: Graph):
        if graph.x is None:
            raise ValueError(f"{type(self).__name__} needs node features: the data has no x")
        return graph.x
