"""Process groups and samplers for DDP (``torchrun``), and loaders that work with or without it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler
from torch_geometric.loader import DataLoader


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Joins the process group ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``): NCCL for CUDA devices, gloo otherwise. Without those
    variables (a plain ``python`` run) returns a single-process :class:`DistInfo`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return DistInfo(rank, world, local)


def current_dist() -> DistInfo:
    """The :class:`DistInfo` of an initialised process group (single process if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank ``r`` of ``k`` gets items ``r, r + k, r + 2k, ...`` in order,
    with no padding, so that summed metrics count every item exactly once."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class ChunkSampler(Sampler[int]):
    """Epochs of ``epoch_size`` samples cut from an endless stream of shuffled passes.

    Pass ``p`` (0, 1, ...) is the permutation of ``range(length)`` drawn from ``seed + p``; the
    passes are laid end to end and epoch ``e`` (1-based, set by :meth:`set_epoch`) is positions
    ``[(e - 1) * epoch_size, e * epoch_size)`` of that stream, so every sample is seen once per
    pass and the order depends only on ``(seed, epoch)``: a resumed run continues where it
    stopped without saving loader state. Under DDP each rank takes every ``world_size``-th
    index of the epoch from ``rank``. Lets a training loop evaluate (and checkpoint) more often
    than once per pass over a large training set.

    Args:
        length: dataset size.
        epoch_size: samples per epoch, all ranks together (``1..``; may exceed ``length``).
        seed: base seed of the permutations.
        rank, world_size: this process's shard.
    """

    def __init__(self, length: int, epoch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if isinstance(epoch_size, bool) or not isinstance(epoch_size, int) or epoch_size < 1:
            raise ValueError(f"epoch_size must be an int >= 1, got {epoch_size!r}")
        self.length, self.epoch_size, self.seed, self.rank, self.world_size = length, epoch_size, seed, rank, world_size
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _permutation(self, p: int) -> Tensor:
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + p))

    def __iter__(self) -> Iterator[int]:
        start = (max(self.epoch, 1) - 1) * self.epoch_size
        p, offset = divmod(start, self.length)
        parts, need = [], self.epoch_size
        while need > 0:
            part = self._permutation(p)[offset : offset + need]
            parts.append(part)
            need -= len(part)
            p, offset = p + 1, 0
        return iter(torch.cat(parts)[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.epoch_size, self.world_size))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    dist_info: DistInfo | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    epoch_size: int | None = None,
) -> DataLoader:
    """A PyG ``DataLoader`` whose order depends only on ``(seed, epoch)``.

    Training loaders (``shuffle=True``) use a ``DistributedSampler`` even in one process: it draws
    the permutation of epoch ``e`` from ``seed + e`` (the loop calls ``set_epoch``), so a resumed
    run sees the same batches as an uninterrupted one without saving loader state. With
    ``epoch_size`` a training loader's epoch is that many molecules of an endless stream of
    shuffled passes instead (:class:`ChunkSampler`). Evaluation loaders use :class:`ShardSampler`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = dist_info or current_dist()
    if epoch_size is not None and not shuffle:
        raise ValueError("epoch_size applies to training loaders (shuffle=True)")
    if epoch_size is not None:
        sampler: Sampler[int] = ChunkSampler(len(dataset), epoch_size, seed, info.rank, info.world_size)
    elif shuffle:
        sampler = DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed, drop_last=False
        )
    else:
        sampler = ShardSampler(len(dataset), info.rank, info.world_size)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, persistent_workers=num_workers > 0,
    )  # fmt: skip


__all__ = ["ChunkSampler", "DistInfo", "ShardSampler", "current_dist", "init_distributed", "make_loader"]
