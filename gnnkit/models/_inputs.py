"""Unpacking a PyG ``Data``/``Batch`` into the tensors the models use, and edge types."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor


class GraphInputs(NamedTuple):
    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor | None
    batch: Tensor
    num_graphs: int


def graph_inputs(data: Any) -> GraphInputs:
    """``(x, edge_index, edge_attr, batch, num_graphs)`` of a PyG ``Batch`` (or a single ``Data``,
    read as one graph).

    Raises:
        TypeError: ``data`` has no ``x`` or ``edge_index`` tensor.
    """
    x = getattr(data, "x", None)
    edge_index = getattr(data, "edge_index", None)
    if not isinstance(x, Tensor) or not isinstance(edge_index, Tensor):
        raise TypeError(f"data must be a PyG Data/Batch with x and edge_index tensors, got {type(data).__name__}")
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        num_graphs = 1
    else:
        num_graphs = getattr(data, "num_graphs", None)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    return GraphInputs(x, edge_index, getattr(data, "edge_attr", None), batch, int(num_graphs))


def edge_type_from_one_hot(edge_attr: Tensor, num_one_hot: int) -> Tensor:
    """Integer edge types from the last ``num_one_hot`` columns of ``edge_attr`` (a one-hot bond
    type, as in QM9's ``(distance, single, double, triple, aromatic)``).

    Type ``t`` is the argmax of the one-hot block; a row whose block is all zeros (a pair of atoms
    without a bond in a complete graph) gets the extra type ``num_one_hot``. So there are
    ``num_one_hot + 1`` types.

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


def resolve_edge_type(data: Any, edge_attr: Tensor | None, num_one_hot: int) -> Tensor:
    """``data.edge_type`` if the batch carries one, else :func:`edge_type_from_one_hot` (the layers
    check the range)."""
    edge_type = getattr(data, "edge_type", None)
    if edge_type is None:
        if edge_attr is None:
            raise ValueError("per-edge-type messages need data.edge_type or a one-hot data.edge_attr")
        edge_type = edge_type_from_one_hot(edge_attr, num_one_hot)
    return edge_type.long()
