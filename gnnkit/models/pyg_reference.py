"""Reference models from the PyG ecosystem, wrapped to gnnkit's model interface.

Each wrapper is built as ``builder(in_channels, out_channels, edge_dim=None, **config)`` and
called as ``model(batch)`` on a PyG ``Batch``, like the models of :data:`gnnkit.models.MODELS`,
so a benchmark trains them with the same split, target normalisation and loop as gnnkit's own
(``recipes/benchmark.py``). The layers inside are PyG's, unchanged:

* :class:`PygQM9NNConv` -- the model of PyG's ``examples/qm9_nn_conv.py`` (NNConv + GRU +
  Set2Set; Gilmer et al. 2017 as PyG's common QM9 baseline), on the complete graph with
  ``(distance, bond one-hot)`` edge features.
* :class:`PygSchNet` -- ``torch_geometric.nn.models.SchNet`` (Schuett et al. 2017, "SchNet: A
  continuous-filter convolutional neural network for modeling quantum interactions") on atomic
  numbers and positions. Its interaction graph is :class:`CompleteInteractionGraph` (all atom
  pairs of a molecule within the cutoff, from ``pos`` and ``batch`` in plain torch), because
  PyG 2.8's default ``radius_graph`` needs pyg-lib.
* :class:`PygDimeNetPlusPlus` -- ``torch_geometric.nn.models.DimeNetPlusPlus`` (Gasteiger et
  al. 2020, "Fast and uncertainty-aware directional message passing for non-equilibrium
  molecules"). PyG builds its graph with ``radius_graph`` (pyg-lib's ``radius`` op) and its
  triplets with ``torch_sparse.SparseTensor``; :func:`dimenet_missing` says which of these is
  not installed, and building the model without them raises ``ImportError``.

:class:`PygQM9NNConv` is registered in :data:`gnnkit.models.MODELS` as ``"pyg-nnconv"`` (it takes
gnnkit's graph inputs, so ``gnnkit train qm9 --model pyg-nnconv`` trains it); :data:`REFERENCE_MODELS`
maps the names of the two that read atomic numbers and positions instead, ``"schnet"`` and
``"dimenet++"``, to their builders.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import NNConv
from torch_geometric.nn.aggr import Set2Set as PygSet2Set



class PygQM9NNConv(nn.Module):
    """The model of PyG's ``examples/qm9_nn_conv.py``, our transcription with PyG's layers:
    ``out = ReLU(Linear(x))``, then ``steps`` rounds of ``m = ReLU(NNConv_mean(out))`` and a GRU
    (one NNConv and one GRU shared by all rounds), Set2Set and ``Linear(2d, d) -> ReLU ->
    Linear(d, out_channels)``. The NNConv's edge network is ``Linear(edge_dim, edge_hidden) ->
    ReLU -> Linear(edge_hidden, d * d)``: it materialises an ``E x d x d`` weight tensor in every
    round (where :class:`gnnkit.models.MPNN` computes the edge MLP's hidden activation once).

    Defaults are the example's: ``channels=64``, ``edge_hidden=128``, ``steps=3``,
    ``set2set_steps=3``.

    Args:
        in_channels: atom feature size.
        out_channels: number of predicted targets.
        edge_dim: edge feature size (required).
        channels: node state size ``d``.
        edge_hidden: hidden size of the edge network.
        steps: message-passing rounds.
        set2set_steps: Set2Set processing steps.

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]``, data.edge_attr ``[E, edge_dim]``,
        data.batch ``[N]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int | None = None,
        channels: int = 64,
        edge_hidden: int = 128,
        steps: int = 3,
        set2set_steps: int = 3,
    ) -> None:
        super().__init__()
        if edge_dim is None:
            raise ValueError("PygQM9NNConv needs edge_dim (the edge feature size)")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("edge_dim", edge_dim),
                            ("channels", channels), ("edge_hidden", edge_hidden), ("steps", steps),
                            ("set2set_steps", set2set_steps)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.steps = steps
        self.lin0 = nn.Linear(in_channels, channels)
        edge_net = nn.Sequential(nn.Linear(edge_dim, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, channels * channels))
        self.conv = NNConv(channels, channels, edge_net, aggr="mean")
        self.gru = nn.GRU(channels, channels)
        self.set2set = PygSet2Set(channels, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * channels, channels)
        self.lin2 = nn.Linear(channels, out_channels)

    def forward(self, data: Any) -> Tensor:
        x, edge_index, edge_attr = data.x, data.edge_index, getattr(data, "edge_attr", None)
        if edge_attr is None:
            raise ValueError("PygQM9NNConv needs data.edge_attr")
        batch = getattr(data, "batch", None)
        if batch is None:  # a bare Data is one graph
            batch, num_graphs = torch.zeros(x.size(0), dtype=torch.long, device=x.device), 1
        else:
            num_graphs = data.num_graphs
        out = F.relu(self.lin0(x))
        h = out.unsqueeze(0)
        for _ in range(self.steps):
            m = F.relu(self.conv(out, edge_index, edge_attr))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        out = self.set2set(out, batch, dim_size=num_graphs)
        return self.lin2(F.relu(self.lin1(out)))


class CompleteInteractionGraph(nn.Module):
    """SchNet's ``interaction_graph``: every ordered pair ``(i, j)``, ``i != j``, of atoms of the
    same molecule closer than ``cutoff``, and its distance, from positions and the batch vector
    alone (plain torch, no pyg-lib).

    This is the contract of PyG 2.8's ``SchNet(interaction_graph=...)``: called as
    ``graph(pos, batch)``, it returns ``(edge_index, edge_weight)``. On molecules of at most
    ``max_num_neighbors + 1`` atoms (QM9: 29) it gives the edge set of PyG's default
    ``RadiusInteractionGraph(cutoff, max_num_neighbors)``, which keeps at most that many
    neighbours per atom. Edges are grouped by molecule, then by ``edge_index[0]``.

    Args:
        cutoff: distance cutoff (the units of ``pos``; Angstrom for QM9).

    Shapes:
        pos ``[N, 3]``, batch ``[N]`` (sorted, as in a PyG ``Batch``) -> edge_index ``[2, E]``,
        edge_weight ``[E]``.
    """

    def __init__(self, cutoff: float = 10.0) -> None:
        super().__init__()
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff!r}")
        self.cutoff = float(cutoff)

    def forward(self, pos: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        if pos.dim() != 2 or batch.shape != (pos.size(0),):
            raise ValueError(f"pos must be [N, D] and batch [N], got {tuple(pos.shape)} and {tuple(batch.shape)}")
        n = pos.size(0)
        if n == 0:
            empty = torch.empty(2, 0, dtype=torch.long, device=pos.device)
            return empty, pos.new_empty(0)
        if n > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("batch must be sorted (atoms of each molecule contiguous), as in a PyG Batch")
        # Atom i pairs with every atom of its molecule: its block of size[i] targets starts at first[i].
        counts = torch.bincount(batch)
        first_of_graph = torch.cumsum(counts, 0) - counts
        size, first = counts[batch], first_of_graph[batch]
        src = torch.repeat_interleave(torch.arange(n, device=pos.device), size)
        block_start = torch.cumsum(size, 0) - size
        offset = torch.arange(src.numel(), device=pos.device) - torch.repeat_interleave(block_start, size)
        dst = torch.repeat_interleave(first, size) + offset
        weight = (pos[src] - pos[dst]).norm(dim=-1)
        keep = (src != dst) & (weight < self.cutoff)
        return torch.stack([src[keep], dst[keep]]), weight[keep]

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"


def _atoms(data: Any, model: str) -> tuple[Tensor, Tensor, Tensor]:
    z, pos = getattr(data, "z", None), getattr(data, "pos", None)
    if not isinstance(z, Tensor) or not isinstance(pos, Tensor):
        raise TypeError(f"{model} needs a batch with atomic numbers data.z and positions data.pos")
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(z.size(0), dtype=torch.long, device=z.device)
    return z.long().view(-1), pos, batch


class PygSchNet(nn.Module):
    """PyG's ``SchNet`` on ``data.z``, ``data.pos`` and ``data.batch``, with
    :class:`CompleteInteractionGraph` as its interaction graph; ``in_channels`` and
    ``edge_dim`` are accepted for the common builder interface and unused (SchNet embeds the
    atomic number and reads only distances). Defaults are PyG's (``hidden_channels=128``,
    ``num_filters=128``, ``num_interactions=6``, ``num_gaussians=50``, ``cutoff=10``,
    ``readout="add"``); PyG's SchNet predicts one value, so for ``out_channels > 1`` its last
    linear layer is widened (same initialisation).

    Args:
        in_channels: unused.
        out_channels: number of predicted targets.
        edge_dim: unused.
        hidden_channels, num_filters, num_interactions, num_gaussians, cutoff, readout: as in
            ``torch_geometric.nn.models.SchNet``.

    Shapes:
        data.z ``[N]``, data.pos ``[N, 3]``, data.batch ``[N]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int | None = None,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        cutoff: float = 10.0,
        readout: str = "add",
    ) -> None:
        super().__init__()
        from torch_geometric.nn.models import SchNet

        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
        if readout not in ("add", "mean"):
            raise ValueError(f"readout must be 'add' or 'mean', got {readout!r}")
        self.net = SchNet(
            hidden_channels=hidden_channels, num_filters=num_filters, num_interactions=num_interactions,
            num_gaussians=num_gaussians, cutoff=cutoff, interaction_graph=CompleteInteractionGraph(cutoff),
            readout=readout,
        )  # fmt: skip
        if out_channels != 1:
            self.net.lin2 = nn.Linear(hidden_channels // 2, out_channels)
            nn.init.xavier_uniform_(self.net.lin2.weight)
            nn.init.zeros_(self.net.lin2.bias)

    def forward(self, data: Any) -> Tensor:
        z, pos, batch = _atoms(data, "PygSchNet")
        num_graphs = getattr(data, "num_graphs", None)
        out = self.net(z, pos, batch)
        if num_graphs is not None and out.size(0) != num_graphs:
            # SchNet's readout sizes its output by the last molecule index: pad trailing empty graphs.
            out = torch.cat([out, out.new_zeros(num_graphs - out.size(0), out.size(1))])
        return out


def dimenet_missing() -> str | None:
    """Why PyG's DimeNet++ cannot run here (``None`` when it can): PyG 2.8 builds its graph with
    ``radius_graph`` (pyg-lib's ``radius`` op) and its triplets with ``torch_sparse``."""
    import torch_geometric.typing as pyg_typing

    missing = []
    if not getattr(pyg_typing, "WITH_RADIUS", False):
        missing.append("pyg-lib >= 0.6 (radius_graph)")
    if not getattr(pyg_typing, "WITH_TORCH_SPARSE", False):
        missing.append("torch_sparse (SparseTensor, for the triplets)")
    if importlib.util.find_spec("sympy") is None:
        missing.append("sympy (the spherical basis)")
    return f"PyG's DimeNet++ needs {' and '.join(missing)}" if missing else None


class PygDimeNetPlusPlus(nn.Module):
    """PyG's ``DimeNetPlusPlus`` on ``data.z``, ``data.pos`` and ``data.batch``; ``in_channels``
    and ``edge_dim`` are accepted for the common builder interface and unused. Defaults are those
    of the paper's QM9 runs as in PyG's ``from_qm9_pretrained`` (``hidden_channels=128``,
    ``num_blocks=4``, ``int_emb_size=64``, ``basis_emb_size=8``, ``out_emb_channels=256``,
    ``num_spherical=7``, ``num_radial=6``, ``cutoff=5``).

    Raises:
        ImportError: pyg-lib's ``radius`` op or ``torch_sparse`` is missing (see
            :func:`dimenet_missing`).

    Shapes:
        data.z ``[N]``, data.pos ``[N, 3]``, data.batch ``[N]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int | None = None,
        hidden_channels: int = 128,
        num_blocks: int = 4,
        int_emb_size: int = 64,
        basis_emb_size: int = 8,
        out_emb_channels: int = 256,
        num_spherical: int = 7,
        num_radial: int = 6,
        cutoff: float = 5.0,
    ) -> None:
        super().__init__()
        reason = dimenet_missing()
        if reason is not None:
            raise ImportError(reason)
        from torch_geometric.nn.models import DimeNetPlusPlus

        self.net = DimeNetPlusPlus(
            hidden_channels=hidden_channels, out_channels=out_channels, num_blocks=num_blocks,
            int_emb_size=int_emb_size, basis_emb_size=basis_emb_size, out_emb_channels=out_emb_channels,
            num_spherical=num_spherical, num_radial=num_radial, cutoff=cutoff,
        )  # fmt: skip

    def forward(self, data: Any) -> Tensor:
        z, pos, batch = _atoms(data, "PygDimeNetPlusPlus")
        return self.net(z, pos, batch)


def build_schnet(in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> PygSchNet:
    """The ``"schnet"`` reference: see :class:`PygSchNet`."""
    return PygSchNet(in_channels, out_channels, edge_dim=edge_dim, **config)


def build_dimenet_pp(in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> PygDimeNetPlusPlus:
    """The ``"dimenet++"`` reference: see :class:`PygDimeNetPlusPlus`."""
    return PygDimeNetPlusPlus(in_channels, out_channels, edge_dim=edge_dim, **config)


REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "schnet": build_schnet,
    "dimenet++": build_dimenet_pp,
}

__all__ = [
    "REFERENCE_MODELS",
    "PygQM9NNConv",
    "PygSchNet",
    "PygDimeNetPlusPlus",
    "CompleteInteractionGraph",
    "dimenet_missing",
    "build_schnet",
    "build_dimenet_pp",
]
