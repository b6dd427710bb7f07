"""Graphs that make the weight sharing of CNNs and RNNs visible.

A convolution is message passing on a grid graph whose edges are typed by relative offset: with
one weight matrix per offset (:class:`gnnkit.nn.RelationalConv`) it is exactly ``nn.Conv2d``.
A recurrent network is message passing on a path graph: iterating a GRU update along the path
(:class:`gnnkit.nn.GRUMessagePassing`) is exactly ``nn.GRU``. The builders here produce the
``edge_index`` (and edge types) for those layers.

Node order is row-major, as ``Tensor.reshape`` lays out a grid: for images ``[B, C, *shape]``,
``x = images.movedim(1, -1).reshape(-1, C)`` gives node ``b * prod(shape) + ravel(position)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _as_tuple(name: str, value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a sequence of {dims} ints, got {value!r}")
    return values


def grid_offsets(kernel_size: int | Sequence[int], dims: int = 2, dilation: int = 1) -> Tensor:
    """The relative offsets of a ``kernel_size`` stencil, one row per edge type.

    Row ``r`` is the offset of kernel position ``r`` in row-major order, so edge type ``r``
    corresponds to ``conv.weight.flatten(2)[:, :, r]`` of a convolution with that kernel.

    Shapes:
        -> ``[prod(kernel_size), dims]`` (int64).
    """
    ks = _as_tuple("kernel_size", kernel_size, dims)
    if any(k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"kernel_size must be odd and positive (centred stencil), got {kernel_size!r}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    ranges = [range(-(k // 2), k // 2 + 1) for k in ks]
    return torch.tensor(list(itertools.product(*ranges)), dtype=torch.long).view(-1, dims) * dilation


def grid_graph(
    shape: Sequence[int],
    kernel_size: int | Sequence[int] = 3,
    batch_size: int = 1,
    dilation: int = 1,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A regular grid as a graph: pixels (voxels) are nodes, one edge type per relative offset.

    For every target pixel ``p`` and every stencil offset ``o`` with ``p + o`` inside the grid,
    there is an edge ``p + o -> p`` of type ``r(o)`` (the offset's row in :func:`grid_offsets`).
    The centre offset is a self-loop. Offsets falling outside the grid have no edge, which is
    what zero ("same") padding computes.

    Args:
        shape: the grid's spatial size, e.g. ``(H, W)`` or ``(D, H, W)``.
        kernel_size: odd stencil size per dimension.
        batch_size: number of disjoint copies (a batch of images), numbered consecutively.
        dilation: spacing of the stencil (as ``nn.Conv2d``'s ``dilation``).
        device: where to build the tensors.

    Returns:
        ``(edge_index, edge_type)``: ``[2, E]`` with row 0 = source, row 1 = target, and ``[E]``.

    Shapes:
        -> edge_index ``[2, E]``, edge_type ``[E]`` with ``E <= batch_size * prod(shape) * prod(kernel_size)``.
    """
    shape = tuple(shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"shape must be a non-empty sequence of positive ints, got {shape!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    offsets = grid_offsets(kernel_size, len(shape), dilation).to(device)
    n = math.prod(shape)
    size = torch.tensor(shape, device=device)
    strides = torch.tensor([math.prod(shape[i + 1 :]) for i in range(len(shape))], device=device)
    dst = torch.arange(n, device=device)
    coord = (dst.unsqueeze(1) // strides) % size  # [n, dims]

    srcs, dsts, types = [], [], []
    for r, off in enumerate(offsets):
        c = coord + off
        inside = ((c >= 0) & (c < size)).all(dim=1)
        srcs.append((c[inside] * strides).sum(dim=1))
        dsts.append(dst[inside])
        types.append(torch.full((int(inside.sum()),), r, dtype=torch.long, device=device))
    src, tgt, edge_type = torch.cat(srcs), torch.cat(dsts), torch.cat(types)

    shift = (torch.arange(batch_size, device=device) * n).repeat_interleave(src.numel())
    edge_index = torch.stack([src.repeat(batch_size) + shift, tgt.repeat(batch_size) + shift])
    return edge_index, edge_type.repeat(batch_size)


def path_graph(
    lengths: int | Sequence[int] | Tensor, reverse: bool = False, device: torch.device | str | None = None
) -> Tensor:
    """Disjoint directed paths ``0 -> 1 -> ... -> L-1``, one per sequence.

    Sequence ``s`` occupies nodes ``sum(lengths[:s]) ... sum(lengths[:s+1]) - 1`` (the rows of the
    concatenated, unpadded sequences).

    Args:
        lengths: the length of each sequence (an int for a single sequence). Zero is allowed.
        reverse: point the edges backwards (``t + 1 -> t``), for the backward direction of a
            bidirectional RNN.
        device: where to build the tensor.

    Shapes:
        -> edge_index ``[2, sum(lengths) - number of non-empty sequences]``.
    """
    if isinstance(lengths, int) and not isinstance(lengths, bool):
        lengths = [lengths]
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.dim() != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an int or a 1-D sequence of ints, got {lengths!r}")
    if bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    lengths = lengths.long()
    total = int(lengths.sum())
    node = torch.arange(total, device=device)
    ends = torch.cumsum(lengths, 0)
    # An edge t -> t + 1 exists unless t is the last node of its sequence.
    is_last = torch.zeros(total + 1, dtype=torch.bool, device=device)
    is_last[ends[lengths > 0] - 1] = True
    src = node[~is_last[:total]]
    edge_index = torch.stack([src, src + 1])
    return edge_index.flip(0) if reverse else edge_index
