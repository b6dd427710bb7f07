"""Compressed sparse row view of a graph, sorted by target node.

A PyG ``edge_index`` is a ``2 x E`` tensor with row 0 = source and row 1 = target. Messages flow
from source to target, so aggregation is a reduction over segments of edges that share a target.
``CSR`` sorts the edges by target once (a stable sort, so the result is deterministic) and keeps
what the kernels and their backward passes need. Build it once per batch and reuse it across
message-passing steps and layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gnnkit.ops._checks import check_count, check_index, check_range


def _rowptr(sorted_index: Tensor, num_rows: int) -> Tensor:
    counts = torch.bincount(sorted_index, minlength=num_rows)
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=sorted_index.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr


@dataclass(frozen=True, eq=False)
class CSR:
    """Edges sorted by target (``dst``), with the transpose for backward passes.

    Attributes:
        rowptr: ``[num_dst + 1]`` offsets; the in-edges of target ``v`` are positions
            ``rowptr[v]:rowptr[v+1]`` of the sorted order.
        col: ``[E]`` source node of each sorted edge.
        row: ``[E]`` target node of each sorted edge (non-decreasing).
        perm: ``[E]`` original edge id of each sorted position: ``t_sorted = t[perm]`` reorders a
            per-edge tensor given in ``edge_index`` order (see :meth:`permute`).
        num_src / num_dst: node counts on each side (equal for an ordinary graph).
        t_rowptr: ``[num_src + 1]`` offsets of the transpose (edges sorted by source).
        t_col: ``[E]`` target node of each edge in source order.
        t_perm: ``[E]`` position in the target-sorted order of each source-sorted edge.
    """

    rowptr: Tensor
    col: Tensor
    row: Tensor
    perm: Tensor
    num_src: int
    num_dst: int
    t_rowptr: Tensor
    t_col: Tensor
    t_perm: Tensor

    @staticmethod
    def from_edge_index(edge_index: Tensor, num_nodes: int | tuple[int, int]) -> "CSR":
        """Builds the CSR of ``edge_index``.

        Args:
            edge_index: ``[2, E]`` integer tensor, row 0 = source, row 1 = target.
            num_nodes: number of nodes, or ``(num_src, num_dst)`` for a bipartite graph.

        Raises:
            TypeError: ``edge_index`` is not an integer tensor or ``num_nodes`` not an int.
            ValueError: ``edge_index`` is not ``2 x E`` or holds ids outside ``[0, num_nodes)``.
        """
        check_index("edge_index", edge_index)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        if isinstance(num_nodes, tuple):
            if len(num_nodes) != 2:
                raise ValueError(f"num_nodes must be an int or a (num_src, num_dst) pair, got {num_nodes}")
            num_src = check_count("num_nodes[0]", num_nodes[0])
            num_dst = check_count("num_nodes[1]", num_nodes[1])
            src_name, dst_name = "num_nodes[0]", "num_nodes[1]"
        else:
            num_src = num_dst = check_count("num_nodes", num_nodes)
            src_name = dst_name = "num_nodes"
        edge_index = edge_index.long()
        src, dst = edge_index[0], edge_index[1]
        check_range("edge_index[0] (sources)", src, num_src, src_name)
        check_range("edge_index[1] (targets)", dst, num_dst, dst_name)

        # Sort once by (dst, src): stable and deterministic, and neighbours of a target are
        # visited in source order, which keeps gathers of x[col] cache-friendly.
        key = dst * max(num_src, 1) + src
        perm = torch.sort(key, stable=True).indices
        row, col = dst[perm], src[perm]
        t_perm = torch.sort(col * max(num_dst, 1) + row, stable=True).indices
        return CSR(
            rowptr=_rowptr(row, num_dst),
            col=col,
            row=row,
            perm=perm,
            num_src=num_src,
            num_dst=num_dst,
            t_rowptr=_rowptr(col[t_perm], num_src),
            t_col=row[t_perm],
            t_perm=t_perm,
        )

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    def permute(self, edge_tensor: Tensor) -> Tensor:
        """Reorders a per-edge tensor from ``edge_index`` order into the sorted order."""
        if edge_tensor.size(0) != self.num_edges:
            raise ValueError(
                f"per-edge tensor has {edge_tensor.size(0)} rows but the graph has {self.num_edges} edges"
            )
        return edge_tensor.index_select(0, self.perm)

    def degree(self, dtype: torch.dtype = torch.float) -> Tensor:
        """In-degree of every target node."""
        return (self.rowptr[1:] - self.rowptr[:-1]).to(dtype)

    def to(self, device: torch.device | str) -> "CSR":
        return CSR(
            **{
                k: (v.to(device) if isinstance(v, Tensor) else v)
                for k, v in self.__dict__.items()
            }
        )
