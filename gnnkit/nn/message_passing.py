"""The message -> aggregate -> update base class.

One layer of message passing (Gilmer et al. 2017, eq. 1-2)::

    m_v = AGG_{u -> v} message(h_u, h_v, e_uv)
    h_v' = update(h_v, m_v)

Subclasses override plain methods with fixed signatures; nothing is inferred from argument names.
Per-edge tensors inside the layer are in the CSR's target-sorted order, so that ``aggregate`` is
a segment reduction with no atomics. ``message_and_aggregate`` is the hook a subclass overrides
with a fused kernel (e.g. :func:`gnnkit.ops.spmm`) that never builds the per-edge messages.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from gnnkit.ops import CSR, segment

Aggr = Literal["sum", "mean", "max", "min"]
_AGGRS: tuple[str, ...] = ("sum", "mean", "max", "min")


def as_csr(edge_index: Tensor | CSR, num_src: int, num_dst: int | None = None) -> CSR:
    """Returns ``edge_index`` as a :class:`CSR`, building it if given a ``[2, E]`` tensor."""
    if isinstance(edge_index, CSR):
        if edge_index.num_src != num_src or (num_dst is not None and edge_index.num_dst != num_dst):
            raise ValueError(
                f"CSR was built for {edge_index.num_src}->{edge_index.num_dst} nodes, "
                f"but x has {num_src} rows"
            )
        return edge_index
    size = num_src if num_dst is None or num_dst == num_src else (num_src, num_dst)
    return CSR.from_edge_index(edge_index, size)


class MessagePassing(nn.Module):
    """Base class for message-passing layers.

    Args:
        aggr: how messages arriving at a node are reduced: ``"sum"``, ``"mean"``, ``"max"`` or
            ``"min"``. A node with no incoming edge aggregates to 0.

    Call as ``layer(x, edge_index, edge_attr)`` with PyG conventions (``edge_index[0]`` =
    source, ``edge_index[1]`` = target, ``edge_attr`` in ``edge_index`` order), or pass a
    prebuilt :class:`gnnkit.ops.CSR` instead of ``edge_index`` to reuse it across layers.
    ``x`` may be a ``(x_src, x_dst)`` pair for bipartite graphs.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]``, edge_attr ``[E, D]`` -> ``[N, F']``.
    """

    def __init__(self, aggr: Aggr = "sum") -> None:
        super().__init__()
        if aggr not in _AGGRS:
            raise ValueError(f"aggr must be one of {_AGGRS}, got {aggr!r}")
        self.aggr = aggr

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor],
        edge_index: Tensor | CSR,
        edge_attr: Tensor | None = None,
    ) -> Tensor:
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        csr = as_csr(edge_index, x_src.size(0), x_dst.size(0))
        if edge_attr is not None:
            edge_attr = csr.permute(edge_attr)
        aggregated = self.message_and_aggregate(x_src, x_dst, edge_attr, csr)
        return self.update(x_dst, aggregated)

    def message(self, x_src: Tensor, x_dst: Tensor, edge_attr: Tensor | None) -> Tensor:
        """Per-edge messages ``[E, F]`` from gathered source and target rows (sorted order)."""
        return x_src

    def aggregate(self, messages: Tensor, csr: CSR) -> Tensor:
        """Reduces the ``[E, F]`` sorted messages into ``[num_dst, F]``."""
        return segment(messages, csr.rowptr, self.aggr)

    def message_and_aggregate(
        self, x_src: Tensor, x_dst: Tensor, edge_attr: Tensor | None, csr: CSR
    ) -> Tensor:
        """Gathers endpoint features, builds messages and aggregates them. Override with a fused
        kernel where the messages need not exist as an ``E x F`` tensor."""
        messages = self.message(x_src.index_select(0, csr.col), x_dst.index_select(0, csr.row), edge_attr)
        return self.aggregate(messages, csr)

    def update(self, x: Tensor, aggregated: Tensor) -> Tensor:
        """New node states from the old target features and the aggregated messages."""
        return aggregated

    def extra_repr(self) -> str:
        return f"aggr={self.aggr!r}"
