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


def with_virtual_edges(graph: Graph, num_bond_types: int, virtual: bool) -> Graph:
    """The molecular graph for Gilmer's virtual-edge ablation (Section 5.2, Table 7), from the bond
    one-hot block in the last ``num_bond_types`` columns of ``edge_attr``.

    * ``virtual=False``: the chemical graph: only the bonded pairs (a complete-graph input loses
      its non-bonded pairs).
    * ``virtual=True``: every ordered pair of distinct atoms of a molecule is an edge; a
      non-bonded pair is of the extra *virtual* edge type ``num_bond_types`` (pairs missing from
      a chemical-graph input are added with all-zero edge features). Edge types are re-derived
      from the bond block, so a ``"bins"`` input (non-bonded pairs split into 10 distance bins,
      types 4..13) collapses to the one virtual type: ``bins`` is the virtual edge refined by
      distance, the virtual edge is ``bins`` with one bin and no spatial information.

    Edges change per molecule, so this runs where the graph is prepared (it reads the molecule
    sizes on the host), never inside a compiled forward.

    Shapes:
        a graph of ``N`` nodes -> the same nodes, ``E'`` edges with ``edge_type [E']`` in
        ``[0, num_bond_types]``.
    """
    if graph.edge_attr is None or graph.edge_attr.dim() != 2:
        raise ValueError("virtual_edges needs data.edge_attr with the bond one-hot block in its last columns")
    csr, attr = graph.csr, graph.edge_attr
    types = edge_type_from_one_hot(attr, num_bond_types)
    src, dst = csr.col, csr.row
    if not virtual:
        keep = types < num_bond_types
        src, dst, attr, types = src[keep], dst[keep], attr[keep], types[keep]
    else:
        n = graph.num_nodes
        sizes = graph.graph_sizes if graph.graph_sizes is not None else torch.tensor([n], device=graph.device)
        order = torch.sort(graph.batch, stable=True).indices  # nodes grouped by molecule
        start = torch.cumsum(sizes, 0) - sizes
        blocks = sizes * sizes
        total = int(blocks.sum())
        g = torch.repeat_interleave(torch.arange(sizes.numel(), device=graph.device), blocks, output_size=total)
        k = torch.arange(total, device=graph.device) - torch.repeat_interleave(torch.cumsum(blocks, 0) - blocks, blocks, output_size=total)
        i, j = k // sizes[g], k % sizes[g]
        pair_dst, pair_src = order[start[g] + i], order[start[g] + j]
        off = i != j
        pair_dst, pair_src = pair_dst[off], pair_src[off]
        # Existing edges keep their features; a pair without one gets zeros (the virtual type).
        key, pair_key = dst * n + src, pair_dst * n + pair_src
        sorted_key, by_key = torch.sort(key)
        pos = torch.searchsorted(sorted_key, pair_key).clamp(max=max(key.numel() - 1, 0))
        found = sorted_key.index_select(0, pos) == pair_key if key.numel() else torch.zeros_like(pair_key, dtype=torch.bool)
        existing = by_key.index_select(0, pos) if key.numel() else pos
        new_attr = attr.new_zeros(pair_key.numel(), attr.size(1))
        new_attr[found] = attr.index_select(0, existing[found])
        src, dst, attr = pair_src, pair_dst, new_attr
        types = edge_type_from_one_hot(attr, num_bond_types)
    rebuilt = Graph.from_edge_index(
        torch.stack([src, dst]), n if virtual else graph.num_nodes, x=graph.x, edge_attr=attr, edge_type=types,
        batch=graph.batch, num_graphs=graph.num_graphs,
    )  # fmt: skip
    return rebuilt.replace(num_edge_types=num_bond_types + 1)
