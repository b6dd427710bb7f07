"""Voxeliser: molecules as 3D density grids with one channel per element, the input of the CNN
baseline.

Each atom is a Gaussian of width ``sigma`` centred on its position, after the molecule has been
centred (mean of the atom positions at the grid centre) and optionally rotated. The Gaussian is
separable, so each atom is an outer product of three 1D profiles, and each profile is normalised
over the grid (a softmax along the axis): every atom carries exactly unit mass into its
element's channel, whatever the resolution, and an atom beyond the box edge piles its mass onto
the boundary voxels instead of vanishing. The sum of channel ``c`` is therefore the number of
atoms of element ``c``, for any rotation. (A voxel grid per element channel as in Wallach et al.
2015, "AtomNet", and Kuzminykh et al. 2018, "3D Molecular Representations Based on the Wave
Transform for Convolutional Neural Networks".)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ELEMENTS: tuple[int, ...] = (1, 6, 7, 8, 9)  # H, C, N, O, F: the elements of QM9


def random_rotation(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float) -> Tensor:
    """``n`` rotation matrices drawn uniformly (Haar measure) from SO(3).

    QR of a Gaussian matrix, with the signs fixed so that ``R`` is unique (Mezzadri 2007), then
    one column flipped where the determinant is -1.

    Shapes:
        -> ``[n, 3, 3]``.
    """
    a = torch.randn(n, 3, 3, generator=generator, dtype=torch.double)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q.to(dtype)


def voxelize(
    pos: Tensor,
    z: Tensor,
    batch: Tensor | None = None,
    num_graphs: int | None = None,
    grid_size: int = 16,
    resolution: float = 0.75,
    sigma: float = 0.6,
    elements: Sequence[int] = ELEMENTS,
    rotation: Tensor | None = None,
) -> Tensor:
    """Turns molecules into ``[B, len(elements), G, G, G]`` density grids.

    Args:
        pos: atom positions (Angstrom for QM9).
        z: atomic numbers; every one must be in ``elements``.
        batch: molecule of each atom (PyG's ``Batch.batch``); ``None`` for a single molecule.
        num_graphs: number of molecules ``B`` (required with ``batch``; passing it avoids a
            device sync).
        grid_size: voxels per side ``G``.
        resolution: voxel edge length, in the units of ``pos``; the box spans
            ``grid_size * resolution``.
        sigma: Gaussian width, in the units of ``pos``.
        elements: the atomic number of each channel.
        rotation: ``[B, 3, 3]`` rotation matrices applied about each molecule's centre (e.g.
            :func:`random_rotation` for augmentation); ``None`` for no rotation.

    Raises:
        ValueError: shapes disagree, a parameter is not positive, or an atomic number is not in
            ``elements``.

    Shapes:
        pos ``[A, 3]``, z ``[A]``, batch ``[A]``, rotation ``[B, 3, 3]`` -> ``[B, C, G, G, G]``.

    Cost:
        ``A * G^3`` multiply-adds for the outer products; memory ``A * G^3`` floats.
    """
    if not isinstance(pos, Tensor) or not pos.is_floating_point() or pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"pos must be a floating-point [A, 3] tensor, got {getattr(pos, 'shape', pos)!r}")
    if not isinstance(z, Tensor) or z.shape != (pos.size(0),) or z.is_floating_point():
        raise ValueError(f"z must be an integer tensor of shape [{pos.size(0)}], got {getattr(z, 'shape', z)!r}")
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int, got {grid_size!r}")
    if not resolution > 0 or not sigma > 0:
        raise ValueError(f"resolution and sigma must be > 0, got {resolution} and {sigma}")
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        num_graphs = 1 if num_graphs is None else num_graphs
    elif num_graphs is None:
        raise ValueError("num_graphs is required when batch is given")
    if batch.shape != z.shape:
        raise ValueError(f"batch must have shape [{pos.size(0)}], got {tuple(batch.shape)}")

    table = torch.full((max(max(elements), int(z.max()) if z.numel() else 0) + 1,), -1, dtype=torch.long, device=z.device)
    table[torch.tensor(list(elements), device=z.device)] = torch.arange(len(elements), device=z.device)
    if z.numel() and (int(z.min()) < 0 or bool((table[z] < 0).any())):
        bad = sorted(set(z[(z < 0) | (table[z.clamp(min=0)] < 0)].tolist()))
        raise ValueError(f"z contains atomic numbers {bad} that have no channel in elements={tuple(elements)}")
    channel = table[z]

    # Centre each molecule on the mean of its atom positions.
    count = torch.zeros(num_graphs, dtype=pos.dtype, device=pos.device).index_add_(0, batch, torch.ones_like(pos[:, 0]))
    centre = torch.zeros(num_graphs, 3, dtype=pos.dtype, device=pos.device).index_add_(0, batch, pos)
    centre = centre / count.clamp(min=1).unsqueeze(1)
    p = pos - centre[batch]
    if rotation is not None:
        if rotation.shape != (num_graphs, 3, 3):
            raise ValueError(f"rotation must have shape [{num_graphs}, 3, 3], got {tuple(rotation.shape)}")
        p = torch.einsum("aij,aj->ai", rotation.to(p)[batch], p)

    axis = (torch.arange(grid_size, dtype=pos.dtype, device=pos.device) - (grid_size - 1) / 2) * resolution
    # Normalised 1D profiles per atom and axis: a softmax over the grid is the discrete Gaussian.
    profile = torch.softmax(-((p.unsqueeze(-1) - axis) ** 2) / (2 * sigma**2), dim=-1)  # [A, 3, G]
    density = torch.einsum("ai,aj,ak->aijk", profile[:, 0], profile[:, 1], profile[:, 2])
    out = pos.new_zeros(num_graphs * len(elements), grid_size, grid_size, grid_size)
    out.index_add_(0, batch * len(elements) + channel, density)
    return out.view(num_graphs, len(elements), grid_size, grid_size, grid_size)


class Voxelize:
    """PyG transform: stores ``data.grid`` ``[1, C, G, G, G]`` from ``data.pos`` and ``data.z``
    (see :func:`voxelize`), so that a DataLoader batch carries ``[B, C, G, G, G]`` grids.

    Args:
        random_rotate: draw a fresh uniform rotation each time the molecule is read (training
            augmentation).
        generator: random source for the rotations.
        **kwargs: ``grid_size``, ``resolution``, ``sigma``, ``elements`` of :func:`voxelize`.
    """

    def __init__(self, random_rotate: bool = False, generator: torch.Generator | None = None, **kwargs) -> None:
        self.random_rotate, self.generator, self.kwargs = random_rotate, generator, kwargs

    def __call__(self, data):
        rotation = random_rotation(1, self.generator) if self.random_rotate else None
        data.grid = voxelize(data.pos, data.z, rotation=rotation, **self.kwargs)
        return data

    def __repr__(self) -> str:
        return f"Voxelize(random_rotate={self.random_rotate}, {self.kwargs})"
