"""Compressed sparse row view of a graph, sorted by target node.

A PyG ``edge_index`` is a ``2 x E`` tensor with row 0 = source and row 1 = target. Messages flow
from source to target, so aggregation is a reduction over segments of edges that share a target.
``CSR`` sorts the edges by target once (a stable sort, so the result is deterministic) and keeps
what the kernels and their backward passes need. Build it once per batch and reuse it across
message-passing steps and layers.

Building reads no tensor value on the host: offsets come from ``searchsorted`` on the sorted
targets, and every size is a tensor shape (``num_dst = rowptr.size(0) - 1``). The one host read
is the optional range check of :meth:`CSR.from_edge_index` (``validate=True``), which is where
user input enters; everything downstream trusts the CSR.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from gnnkit.ops._checks import check_count, check_index, check_range


def _offsets(sorted_index: Tensor, num_rows: int) -> Tensor:
    """``[num_rows + 1]`` segment offsets of a sorted index (no bincount: that would read the
    index's maximum on the host)."""
    bounds = torch.arange(num_rows + 1, device=sorted_index.device, dtype=sorted_index.dtype)
    return torch.searchsorted(sorted_index, bounds)


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
        t_rowptr: ``[num_src + 1]`` offsets of the transpose (edges sorted by source).
        t_col: ``[E]`` target node of each edge in source order.
        t_perm: ``[E]`` position in the target-sorted order of each source-sorted edge.

    ``num_src``, ``num_dst`` and ``num_edges`` are read from the shapes, so they stay symbolic
    under ``torch.compile(dynamic=True)``.
    """

    rowptr: Tensor
    col: Tensor
    row: Tensor
    perm: Tensor
    t_rowptr: Tensor
    t_col: Tensor
    t_perm: Tensor

    @staticmethod
    def from_edge_index(edge_index: Tensor, num_nodes: int | tuple[int, int], validate: bool = True) -> "CSR":
        """Builds the CSR of ``edge_index``.

        Args:
            edge_index: ``[2, E]`` integer tensor, row 0 = source, row 1 = target.
            num_nodes: number of nodes, or ``(num_src, num_dst)`` for a bipartite graph.
            validate: check that every id lies in ``[0, num_nodes)`` (one reduction and, on a
                GPU, one host sync). Pass ``False`` only for indices gnnkit built itself.

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
        if validate:
            check_range("edge_index[0] (sources)", src, num_src, src_name)
            check_range("edge_index[1] (targets)", dst, num_dst, dst_name)
        return CSR.from_trusted(src, dst, num_src, num_dst)

    @staticmethod
    def from_trusted(src: Tensor, dst: Tensor, num_src: int, num_dst: int) -> "CSR":
        """The CSR of int64 ``src -> dst`` edges known to be in range (no checks, no host sync)."""
        # Sort once by (dst, src): stable and deterministic, and neighbours of a target are
        # visited in source order, which keeps gathers of x[col] cache-friendly.
        perm = torch.sort(dst * max(num_src, 1) + src, stable=True).indices
        row, col = dst[perm], src[perm]
        t_perm = torch.sort(col * max(num_dst, 1) + row, stable=True).indices
        return CSR(
            rowptr=_offsets(row, num_dst),
            col=col,
            row=row,
            perm=perm,
            t_rowptr=_offsets(col[t_perm], num_src),
            t_col=row[t_perm],
            t_perm=t_perm,
        )

    @property
    def num_src(self) -> int:
        return self.t_rowptr.size(0) - 1

    @property
    def num_dst(self) -> int:
        return self.rowptr.size(0) - 1

    @property
    def num_edges(self) -> int:
        return self.col.size(0)

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

    def to(self, device: torch.device | str | None = None, non_blocking: bool = False, **_: object) -> "CSR":
        """Moves every index tensor (the signature PyG's ``Data.to`` calls on its attributes)."""
        return CSR(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})
