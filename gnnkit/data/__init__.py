"""gnnkit.data."""

from gnnkit.data.grid import grid_graph, grid_offsets, path_graph

__all__ = [
    "grid_graph",
    "grid_offsets",
    "path_graph",
]
