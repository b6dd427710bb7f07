"""Edge types from a one-hot bond block of the edge features."""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.nn import Graph


def edge_type_from_one_hot(edge_attr: Tensor, num_one_hot: int) -> Tensor:
    """Integer edge types from the last ``num_one_hot`` columns of ``edge_attr`` (a one-hot bond
    type, as in QM9's ``(distance, single, double, triple, aromatic)``).

    Type ``t`` is the argmax of the one-hot block; a row whose block is all zeros (a pair of atoms
    without a bond in a complete graph) gets the extra type ``num_one_hot``. So there are
    ``num_one_hot + 1`` types. Reads no value on the host.

    Shapes:
        edge_attr ``[E, D >= num_one_hot]`` -> ``[E]`` int64.
    """
    if edge_attr.dim() != 2 or edge_attr.size(1) < num_one_hot:
        raise ValueError(
            f"edge_attr must have shape [E, D] with D >= num_one_hot={num_one_hot}, got {tuple(edge_attr.shape)}"
        )
    block = edge_attr[:, edge_attr.size(1) - num_one_hot :]
    has_type = (block > 0).any(dim=1)
    return torch.where(has_type, block.argmax(dim=1), torch.full_like(has_type, num_one_hot, dtype=torch.long))


def with_edge_types(graph: Graph, num_bond_types: int) -> Graph:
    """``graph`` with edge types: its own ``edge_type`` if it carries one (``data.edge_type``),
    else :func:`edge_type_from_one_hot` of its edge features (``num_bond_types + 1`` types)."""
    if graph.edge_type is not None:
        return graph
    if graph.edge_attr is None:
        raise ValueError("per-edge-type messages need data.edge_type or a one-hot data.edge_attr")
    return graph.replace(edge_type=edge_type_from_one_hot(graph.edge_attr, num_bond_types), num_edge_types=num_bond_types + 1)
