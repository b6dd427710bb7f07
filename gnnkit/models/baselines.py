"""Non-graph baselines: a CNN over grids and an RNN over token sequences.

They are what the GNNs are compared against (``recipes/benchmark.py``). For QM9 the grid is a
per-element density voxelisation of the 3D molecule (:func:`gnnkit.data.voxelize`) and the
sequence is the atom-level SMILES (:class:`gnnkit.data.SmilesVocab`). Both read their input from
a PyG batch (``data.grid``; ``data.tokens`` and ``data.num_tokens``) or from plain tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL: dict[str, dict[int, type[nn.Module]]] = {
    "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d},
    "avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d},
}
_RNN: dict[str, type[nn.Module]] = {"gru": nn.GRU, "lstm": nn.LSTM}


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _head(in_features: int, hidden: int, out_channels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_channels))


class GridCNN(nn.Module):
    """A convolutional network over 1D/2D/3D grids with a regression/classification head
    (LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition"; on molecular
    voxel grids as in Wallach et al. 2015, "AtomNet").

    Each block is ``conv (same padding) -> batch norm -> ReLU -> pool (stride 2)``; then a global
    average over the remaining positions and ``Linear -> ReLU -> dropout -> Linear``. The global
    average makes the network accept any grid size that survives the poolings.

    Args:
        in_channels: grid channels (5 for the QM9 voxeliser: H, C, N, O, F).
        out_channels: number of outputs.
        dim: spatial dimensions of the grid (1, 2 or 3).
        channels: output channels of each block.
        kernel_size: odd convolution kernel size.
        pool: ``"max"`` or ``"avg"`` pooling inside the blocks.
        hidden: width of the head.
        dropout: dropout probability in the head.
        batch_norm: use batch normalisation after each convolution.

    Shapes:
        grid ``[B, in_channels, *spatial]`` (or ``data.grid``) -> ``[B, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int = 3,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        pool: Literal["max", "avg"] = "max",
        hidden: int = 128,
        dropout: float = 0.0,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        _positive("in_channels", in_channels)
        _positive("out_channels", out_channels)
        _positive("hidden", hidden)
        if dim not in _CONV:
            raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
        if pool not in _POOL:
            raise ValueError(f"pool must be one of {tuple(_POOL)}, got {pool!r}")
        channels = tuple(channels)
        if not channels:
            raise ValueError("channels must name at least one block")
        for c in channels:
            _positive("channels", c)
        _positive("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.in_channels, self.dim = in_channels, dim
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers.append(_CONV[dim](prev, c, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(_NORM[dim](c))
            layers += [nn.ReLU(), _POOL[pool][dim](2)]
            prev = c
        self.features = nn.Sequential(*layers)
        self.min_size = 2 ** len(channels)
        self.head = _head(prev, hidden, out_channels, dropout)

    def forward(self, data: Any) -> Tensor:
        grid = data if isinstance(data, Tensor) else getattr(data, "grid", None)
        if not isinstance(grid, Tensor):
            raise TypeError("GridCNN takes a grid tensor or a batch with a data.grid tensor (see gnnkit.data.Voxelize)")
        if grid.dim() != self.dim + 2 or grid.size(1) != self.in_channels:
            raise ValueError(
                f"grid must have shape [B, {self.in_channels}] + {self.dim} spatial sizes, got {tuple(grid.shape)}"
            )
        if min(grid.shape[2:]) < self.min_size:
            raise ValueError(f"every spatial size must be >= {self.min_size} (one halving per block), got {tuple(grid.shape[2:])}")
        h = self.features(grid)
        return self.head(h.flatten(2).mean(dim=2))


class SeqRNN(nn.Module):
    """A recurrent network over token sequences with a regression/classification head: embedding,
    a (bidirectional) GRU (Cho et al. 2014) or LSTM (Hochreiter & Schmidhuber 1997), a readout
    over the sequence and ``Linear -> ReLU -> dropout -> Linear`` (on SMILES as in Goh et al.
    2017, "SMILES2Vec").

    Args:
        in_channels: vocabulary size (token ids are in ``[0, in_channels)``).
        out_channels: number of outputs.
        embed_dim: token embedding size.
        hidden: recurrent state size (per direction); also the width of the head.
        num_layers: stacked recurrent layers.
        cell: ``"gru"`` or ``"lstm"``.
        bidirectional: also read the sequence backwards and concatenate both directions.
        readout: ``"last"`` (the final state of each direction of the top layer) or ``"mean"``
            (the mean of the top layer's outputs over the real, unpadded positions).
        dropout: dropout between recurrent layers and in the head.
        pad_index: the padding id (embedded as zeros; never read, sequences are packed).

    Shapes:
        tokens ``[B, L]`` (int64, right-padded), lengths ``[B]`` (or ``data.tokens`` and
        ``data.num_tokens``) -> ``[B, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dim: int = 64,
        hidden: int = 128,
        num_layers: int = 2,
        cell: Literal["gru", "lstm"] = "gru",
        bidirectional: bool = True,
        readout: Literal["last", "mean"] = "last",
        dropout: float = 0.0,
        pad_index: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels), ("out_channels", out_channels), ("embed_dim", embed_dim),
            ("hidden", hidden), ("num_layers", num_layers),
        ):  # fmt: skip
            _positive(name, value)
        if cell not in _RNN:
            raise ValueError(f"cell must be one of {tuple(_RNN)}, got {cell!r}")
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
        if not 0 <= pad_index < in_channels:
            raise ValueError(f"pad_index must be in [0, in_channels={in_channels}), got {pad_index}")
        self.vocab_size, self.pad_index, self.readout = in_channels, pad_index, readout
        self.embed = nn.Embedding(in_channels, embed_dim, padding_idx=pad_index)
        self.rnn = _RNN[cell](
            embed_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )  # fmt: skip
        directions = 2 if bidirectional else 1
        self.head = _head(hidden * directions, hidden, out_channels, dropout)

    def forward(self, data: Any, lengths: Tensor | None = None) -> Tensor:
        if isinstance(data, Tensor):
            tokens = data
            if lengths is None:
                lengths = (tokens != self.pad_index).sum(dim=1)
        else:
            tokens, lengths = getattr(data, "tokens", None), getattr(data, "num_tokens", None)
            if not isinstance(tokens, Tensor) or not isinstance(lengths, Tensor):
                raise TypeError("SeqRNN takes a token tensor or a batch with data.tokens and data.num_tokens (see gnnkit.data.EncodeSmiles)")
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be an int64 [B, L] tensor, got {tokens.dtype} {tuple(tokens.shape)}")
        lengths = lengths.view(-1)
        if lengths.shape != (tokens.size(0),):
            raise ValueError(f"lengths must have shape [{tokens.size(0)}], got {tuple(lengths.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens must be ids in [0, {self.vocab_size})")
        lengths_cpu = lengths.cpu()  # pack_padded_sequence wants them on the host
        if lengths_cpu.numel() and (int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > tokens.size(1)):
            raise ValueError(f"lengths must be in [1, {tokens.size(1)}]")

        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths_cpu, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        if self.readout == "last":
            h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
            directions = 2 if self.rnn.bidirectional else 1
            g = h_n[-directions:].transpose(0, 1).reshape(tokens.size(0), -1)
        else:
            padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.size(1))
            g = padded.sum(dim=1) / lengths.to(padded.dtype).unsqueeze(1)  # padded positions are 0
        return self.head(g)


__all__ = ["GridCNN", "SeqRNN"]
