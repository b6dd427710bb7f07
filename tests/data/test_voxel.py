import math

import pytest
import torch

from gnnkit.data.voxel import ELEMENTS, Voxelize, random_rotation, voxelize


def _molecules():
    # Two small molecules (methanol-like and an HCN/F mix), Angstrom.
    pos = torch.tensor(
        [[0.0, 0.0, 0.0], [1.4, 0.1, 0.0], [-0.5, 0.9, 0.2], [-0.4, -0.9, 0.3], [1.8, 0.9, -0.5],
         [0.3, 0.2, 0.1], [1.5, -0.7, 0.8], [2.4, -1.2, 1.4], [-0.8, 0.6, -0.9]]
    )  # fmt: skip
    z = torch.tensor([6, 8, 1, 1, 1, 6, 7, 9, 1])
    batch = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    return pos, z, batch


def _counts(z, batch, num_graphs):
    counts = torch.zeros(num_graphs, len(ELEMENTS))
    for zi, bi in zip(z.tolist(), batch.tolist()):
        counts[bi, ELEMENTS.index(zi)] += 1
    return counts


def test_grid_shape_and_per_element_mass():
    pos, z, batch = _molecules()
    grid = voxelize(pos, z, batch, 2, grid_size=12, resolution=0.8, sigma=0.6)
    assert grid.shape == (2, 5, 12, 12, 12) and grid.dtype == pos.dtype
    assert bool((grid >= 0).all())
    torch.testing.assert_close(grid.sum(dim=(2, 3, 4)), _counts(z, batch, 2))
    single = voxelize(pos[:5], z[:5], grid_size=12, resolution=0.8, sigma=0.6)
    torch.testing.assert_close(single, grid[:1])


def test_mass_is_kept_for_an_atom_outside_the_box():
    pos = torch.tensor([[0.0, 0.0, 0.0], [30.0, 0.0, 0.0]])
    grid = voxelize(pos, torch.tensor([6, 1]), grid_size=8)
    assert torch.isfinite(grid).all()
    torch.testing.assert_close(grid.sum(dim=(2, 3, 4)), torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]))


def test_centred_and_translation_invariant():
    pos, z, batch = _molecules()
    pos64 = pos.double()
    grid = voxelize(pos64, z, batch, 2, grid_size=20, resolution=0.5, sigma=0.5)
    shifted = voxelize(pos64 + torch.tensor([3.0, -2.0, 7.5], dtype=torch.double), z, batch, 2,
                       grid_size=20, resolution=0.5, sigma=0.5)  # fmt: skip
    torch.testing.assert_close(grid, shifted)
    # The density's centre of mass is the molecule's (unweighted) centre: the grid centre.
    axis = (torch.arange(20, dtype=torch.double) - 9.5) * 0.5
    total = grid.sum(dim=1)  # [B, G, G, G]
    com_x = (total.sum(dim=(2, 3)) * axis).sum(dim=1) / total.sum(dim=(1, 2, 3))
    assert com_x.abs().max() < 1e-3


def test_rotation_invariance_of_the_total_and_rotated_density():
    pos, z, batch = _molecules()
    rot = random_rotation(2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.det(rot), torch.ones(2))
    plain = voxelize(pos, z, batch, 2)
    rotated = voxelize(pos, z, batch, 2, rotation=rot)
    assert not torch.allclose(plain, rotated, atol=1e-3)
    torch.testing.assert_close(rotated.sum(dim=(2, 3, 4)), plain.sum(dim=(2, 3, 4)))
    torch.testing.assert_close(rotated.sum(dim=(1, 2, 3, 4)), torch.tensor([5.0, 4.0]))

    # A quarter turn about z maps the (symmetric) grid onto itself: x' = -y, y' = x.
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    turned = voxelize(pos.double(), z, batch, 2, rotation=quarter.double())
    expected = torch.rot90(voxelize(pos.double(), z, batch, 2), k=1, dims=(2, 3))
    torch.testing.assert_close(turned, expected)


def test_transform_and_augmentation():
    from torch_geometric.data import Data

    pos, z, _ = _molecules()
    data = Data(pos=pos[:5], z=z[:5])
    out = Voxelize(grid_size=10)(data.clone())
    assert out.grid.shape == (1, 5, 10, 10, 10)
    gen = torch.Generator().manual_seed(0)
    aug = Voxelize(random_rotate=True, generator=gen, grid_size=10)
    a, b = aug(data.clone()).grid, aug(data.clone()).grid
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a.sum(dim=(2, 3, 4)), b.sum(dim=(2, 3, 4)))


def test_errors():
    pos, z, batch = _molecules()
    with pytest.raises(ValueError, match="elements"):
        voxelize(pos, torch.tensor([6, 8, 1, 1, 17, 6, 7, 9, 1]), batch, 2)
    with pytest.raises(ValueError, match="pos"):
        voxelize(pos[:, :2], z)
    with pytest.raises(ValueError, match="z must"):
        voxelize(pos, z[:3])
    with pytest.raises(ValueError, match="num_graphs"):
        voxelize(pos, z, batch)
    with pytest.raises(ValueError, match="rotation"):
        voxelize(pos, z, batch, 2, rotation=torch.eye(3).expand(1, 3, 3))
    with pytest.raises(ValueError, match="grid_size"):
        voxelize(pos, z, grid_size=0)
    assert math.isclose(float(voxelize(pos, z, batch, 2).sum()), 9.0, rel_tol=1e-5)
