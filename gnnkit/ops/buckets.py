"""Target nodes grouped by in-degree, for the batched GEMMs of the CPU outer-product aggregation.

The grouping is built on the host (it loops over the distinct degrees) once per graph, carried in
the graph context, and handed to the kernel packed into one int64 tensor (:meth:`DegreeBuckets.packed`)
so that it crosses the ``torch.library`` boundary as a tensor whose length may vary from batch to
batch without recompiling a compiled model. The CUDA path does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gnnkit.ops.csr import CSR

# Degrees up to this value get a bucket each (exact, no padding); larger ones share geometric
# buckets with at most 1/_OCTAVE_SPLITS relative padding, so a power-law graph needs few GEMMs.
_EXACT_DEGREE = 32
_OCTAVE_SPLITS = 8
# Runs of at least this many consecutive equal-degree targets are processed in place (views, no
# gathers): on QM9-sized batches 16% faster than degree buckets with one thread. (With 2 threads
# on an oversubscribed machine the comparison was inconclusive, within run-to-run noise.)
_MIN_SLAB = 4


@dataclass(frozen=True, eq=False)
class DegreeBuckets:
    """Target nodes grouped by in-degree.

    Two kinds of groups:

    * **slabs**: runs of at least ``min_slab`` consecutive targets with the same in-degree (e.g.
      the atoms of one molecule in a batch of complete graphs). Their edges are one contiguous
      range of the CSR order, so ``z``, ``S`` and the gradients are read and written as views,
      without gathers or copies.
    * **buckets**: the other targets, grouped by in-degree (exact up to ``_EXACT_DEGREE``,
      larger degrees rounded up to ``_OCTAVE_SPLITS`` steps per power of two and padded).

    Attributes:
        slabs: per slab, ``(first_node, num_nodes, first_edge, degree)``.
        nodes: per bucket, ``[B]`` target nodes.
        edges: per bucket, ``[B, L]`` positions (in the CSR's sorted order) of each node's in-edges,
            padded to the bucket width ``L`` with a valid position.
        mask: per bucket, ``[B, L]`` bool, False on padding (``None`` when the bucket has none).
        isolated: ``[I]`` targets without in-edges (their ``S`` is 0).
        num_edges / num_dst: size of the graph the buckets were built for.
        packed: the same packed into one int64 tensor (see :meth:`pack`), built once.
    """

    slabs: tuple[tuple[int, int, int, int], ...]
    nodes: tuple[Tensor, ...]
    edges: tuple[Tensor, ...]
    mask: tuple[Tensor | None, ...]
    isolated: Tensor
    num_edges: int
    num_dst: int
    packed: Tensor | None = None

    def __post_init__(self) -> None:
        if self.packed is None:
            object.__setattr__(self, "packed", self.pack())

    @staticmethod
    def from_csr(csr: CSR, min_slab: int | None = None) -> "DegreeBuckets":
        """Groups the targets of ``csr`` (host work: a loop over the distinct degrees).

        Args:
            csr: the graph.
            min_slab: shortest run of consecutive equal-degree targets processed as a slab
                (default 4); larger values send short runs to the degree buckets (fewer, larger
                GEMMs, at the cost of gathers).
        """
        return DegreeBuckets.from_rowptr(csr.rowptr, min_slab)

    @staticmethod
    def from_rowptr(rowptr: Tensor, min_slab: int | None = None) -> "DegreeBuckets":
        """:meth:`from_csr` from the CSR's offsets alone."""
        if min_slab is None:
            min_slab = _MIN_SLAB
        deg = rowptr[1:] - rowptr[:-1]
        # Slabs: long runs of equal, non-zero degree among consecutive targets.
        run_deg, run_len = torch.unique_consecutive(deg, return_counts=True)
        run_start = torch.cumsum(run_len, 0) - run_len
        long_run = (run_len >= min_slab) & (run_deg > 0)
        in_slab = torch.repeat_interleave(long_run, run_len, output_size=deg.numel())
        slabs = tuple(
            (s, n, int(rowptr[s]), d)
            for s, n, d in zip(run_start[long_run].tolist(), run_len[long_run].tolist(), run_deg[long_run].tolist())
        )
        width = deg.clone()
        big = deg > _EXACT_DEGREE
        if bool(big.any()):
            # Round large degrees up to one of _OCTAVE_SPLITS steps per power of two.
            d = deg[big].double()
            step = torch.exp2(torch.floor(torch.log2(d)) - torch.log2(torch.tensor(float(_OCTAVE_SPLITS))))
            width[big] = (torch.ceil(d / step) * step).long()
        width[in_slab] = 0  # handled by slabs
        nodes, edges, masks = [], [], []
        order = torch.argsort(width, stable=True)
        widths, counts = torch.unique_consecutive(width[order], return_counts=True)
        start = 0
        for w, c in zip(widths.tolist(), counts.tolist()):
            sel = order[start : start + c]
            start += c
            if w == 0:
                continue  # isolated targets (S is 0) and slab members
            offs = torch.arange(w, device=deg.device)
            pos = rowptr[sel].unsqueeze(1) + offs
            valid = offs < deg[sel].unsqueeze(1)
            if bool(valid.all()):
                masks.append(None)
            else:
                masks.append(valid)
                pos = torch.where(valid, pos, rowptr[sel].unsqueeze(1))
            nodes.append(sel)
            edges.append(pos)
        isolated = torch.nonzero(deg == 0).view(-1)
        return DegreeBuckets(slabs, tuple(nodes), tuple(edges), tuple(masks), isolated, int(rowptr[-1]), deg.numel())

    def pack(self) -> Tensor:
        """The grouping as one int64 tensor (what the ``gnnkit::outer*`` ops take)::

            [num_edges, num_dst, S, K, I, slabs (S x 4), isolated (I), headers (K x [B, L, masked]),
             then per bucket: nodes (B), edges (B * L), mask (B * L, only if masked)]
        """
        parts = [
            torch.tensor([self.num_edges, self.num_dst, len(self.slabs), len(self.nodes), self.isolated.numel()]),
            torch.tensor(self.slabs, dtype=torch.long).view(-1),
            self.isolated.cpu(),
            torch.tensor([[n.numel(), e.size(1), m is not None] for n, e, m in zip(self.nodes, self.edges, self.mask)], dtype=torch.long).view(-1),
        ]
        for nodes, edges, mask in zip(self.nodes, self.edges, self.mask):
            parts += [nodes.cpu(), edges.reshape(-1).cpu()] + ([mask.reshape(-1).long().cpu()] if mask is not None else [])
        return torch.cat([p.long() for p in parts]).to(self.isolated.device)

    @staticmethod
    def unpack(packed: Tensor) -> "DegreeBuckets":
        """Inverse of :meth:`pack` (host reads of a CPU tensor, inside the CPU kernel)."""
        num_edges, num_dst, n_slabs, n_buckets, n_iso = packed[:5].tolist()
        at = 5
        slabs = tuple(tuple(s) for s in packed[at : at + 4 * n_slabs].view(-1, 4).tolist())
        at += 4 * n_slabs
        isolated = packed[at : at + n_iso]
        at += n_iso
        headers = packed[at : at + 3 * n_buckets].view(-1, 3).tolist()
        at += 3 * n_buckets
        nodes, edges, masks = [], [], []
        for b, width, masked in headers:
            nodes.append(packed[at : at + b])
            edges.append(packed[at + b : at + b + b * width].view(b, width))
            at += b + b * width
            if masked:
                masks.append(packed[at : at + b * width].view(b, width).bool())
                at += b * width
            else:
                masks.append(None)
        return DegreeBuckets(slabs, tuple(nodes), tuple(edges), tuple(masks), isolated, num_edges, num_dst, packed)  # type: ignore[arg-type]

    def to(self, device: torch.device | str | None = None, non_blocking: bool = False, **_: object) -> "DegreeBuckets":
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return DegreeBuckets(
            self.slabs,
            tuple(mv(t) for t in self.nodes),  # type: ignore[misc]
            tuple(mv(t) for t in self.edges),  # type: ignore[misc]
            tuple(mv(t) for t in self.mask),
            self.isolated.to(device, non_blocking=non_blocking),
            self.num_edges,
            self.num_dst,
            self.packed.to(device, non_blocking=non_blocking) if self.packed is not None else None,
        )
