"""Graph-level gated graph neural network (Li et al. 2016, "Gated Graph Sequence Neural
Networks", ICLR) with the gated readout, the GG-NN baseline of Gilmer et al. 2017."""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.models._base import GraphModel
from gnnkit.models._inputs import with_edge_types, with_virtual_edges
from gnnkit.models.mpnn import check_variants, run_steps
from gnnkit.nn import GatedReadout, GGNNConv, Graph, MasterNode, MessagePassing, Set2Set, Towers


class GGNN(GraphModel):
    """GG-NN for graph-level prediction: ``h^0`` = ``x`` zero-padded to ``channels``, ``steps``
    steps of one :class:`gnnkit.nn.GGNNConv` with tied weights (per-edge-type maps for incoming
    and outgoing edges, GRU update), the gated readout
    ``R = sum_v sigmoid(i([h_v^T, h_v^0])) * j(h_v^T)`` (:class:`gnnkit.nn.GatedReadout`) and an
    MLP head ``ReLU -> Linear(readout_channels, out_channels)``; or, with ``readout="set2set"``
    (Table 7's "+ set2set"), :class:`gnnkit.nn.Set2Set` (``2 * channels`` outputs) before the head.

    In Gilmer et al.'s (2017) terms: ``M(h_v, h_w, e_vw) = A_{e_vw} h_w`` (here Li et al.'s two
    directions: incoming and outgoing edges each have their own matrix per type, plus the bias
    ``b`` of Li's eq. 2), ``U = GRU(h_v, m_v)`` with Li's GRU (eq. 3-6, the reset gate on ``h``
    before ``U``), ``R = sum_v σ(i(h_v^T, h_v^0)) ⊙ j(h_v^T)`` (Gilmer's eq. 4; ``readout_form="li"``
    gives Li et al.'s own eq. 7, ``tanh(sum_v σ(i(h_v^T, x_v)) ⊙ tanh(j(h_v^T, x_v)))``, where
    ``h^0`` is ``x`` zero-padded, so ``(h^T, h^0)`` carries the same as ``(h^T, x)``).

    Edge types come from ``data.edge_type`` if present, else from the one-hot block in the last
    ``num_bond_types`` columns of ``edge_attr`` (argmax; an all-zero block is the extra type
    ``num_bond_types``), as in :class:`gnnkit.models.MPNN`. Like MPNN, the model runs its layer's
    steps: the GRU is the layer's update (:class:`gnnkit.nn.GGNNConv`), its edge input comes from
    :meth:`~gnnkit.nn.MessagePassing.edge_features`. GG-NN is directed by construction (separate
    matrices for incoming and outgoing edges, a ``2d`` message channel), Gilmer's directed form.

    Gilmer's Section 5 variants (Table 7's ablation is on GG-NN without spatial information):
    ``virtual_edges`` (``False``: the chemical graph; ``True``: every pair of atoms, non-bonded
    pairs of the extra virtual type; ``None``: the edges as given; on the complete-graph QM9 input
    ``None`` and ``True`` agree), ``master_node=d_master`` (:class:`gnnkit.nn.MasterNode`: read into
    both directions' message, ``2d``) and ``towers=k`` (:class:`gnnkit.nn.Towers` of GG-NN layers
    of width ``d / k``).

    Args:
        in_channels: node feature size (must be <= ``channels``, since ``h^0`` is zero-padded).
        out_channels: number of predicted targets.
        edge_dim: edge feature size (checked against ``num_bond_types``; GG-NN reads only the
            edge types).
        channels: node state size.
        steps: propagation steps.
        readout_channels: size of the gated readout's graph vector.
        readout: ``"gated"`` (Li et al.) or ``"set2set"``.
        set2set_steps: Set2Set processing steps (``readout="set2set"``).
        aggr: ``"sum"`` (Li et al.) or ``"mean"``.
        num_bond_types: size of the one-hot block of ``edge_attr``.
        num_edge_types: number of edge types (default ``num_bond_types + 1``).
        readout_form: ``"gilmer"`` or ``"li"``: the gated readout's form (see above;
            :class:`gnnkit.nn.GatedReadout`); only with ``readout="gated"``.
        virtual_edges: ``None``, ``False`` or ``True`` (see above).
        master_node: ``d_master`` of a master node, or ``None``.
        towers: number of towers ``k`` (1: none).

    Shapes:
        data.x ``[N, in_channels]``, data.edge_index ``[2, E]`` -> ``[num_graphs, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int | None = None,
        channels: int = 64,
        steps: int = 3,
        readout_channels: int = 128,
        readout: Literal["gated", "set2set"] = "gated",
        set2set_steps: int = 3,
        aggr: Literal["sum", "mean"] = "sum",
        num_bond_types: int = 4,
        num_edge_types: int | None = None,
        virtual_edges: bool | None = None,
        master_node: int | None = None,
        towers: int = 1,
        readout_form: Literal["gilmer", "li"] = "gilmer",
    ) -> None:
        super().__init__()
        if in_channels > channels:
            raise ValueError(
                f"in_channels={in_channels} > channels={channels}: GG-NN zero-pads the input, so "
                "channels must be at least the input size"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps!r}")
        if edge_dim is not None and edge_dim < num_bond_types and num_edge_types is None:
            raise ValueError(f"edge_dim={edge_dim} is smaller than num_bond_types={num_bond_types}")
        check_variants(virtual_edges, master_node, towers, channels)
        self.in_channels, self.channels, self.steps = in_channels, channels, steps
        self.num_bond_types, self.virtual_edges = num_bond_types, virtual_edges
        self.num_edge_types = num_bond_types + 1 if num_edge_types is None else num_edge_types
        if towers > 1:
            self.conv: MessagePassing = Towers(lambda c: GGNNConv(c, self.num_edge_types, aggr=aggr), towers, channels)
        elif master_node:
            self.conv = MasterNode(GGNNConv(channels, self.num_edge_types, aggr=aggr), channels, master_node, 2 * channels)
        else:
            self.conv = GGNNConv(channels, self.num_edge_types, aggr=aggr)
        if readout == "gated":
            self.readout: nn.Module = GatedReadout(channels, readout_channels, init_channels=channels, form=readout_form)
        elif readout == "set2set":
            if readout_form != "gilmer":
                raise ValueError(f"readout_form={readout_form!r} is a form of the gated readout; readout='set2set' has none")
            self.readout = Set2Set(channels, set2set_steps)
            readout_channels = 2 * channels
        else:
            raise ValueError(f"readout must be 'gated' or 'set2set', got {readout!r}")
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(readout_channels, out_channels))

    def graph_from_data(self, data: Any) -> Graph:
        graph = Graph.from_data(data)
        if self.virtual_edges is not None:
            graph = with_virtual_edges(graph, self.num_bond_types, self.virtual_edges)
        return with_edge_types(graph, self.num_bond_types)

    def forward(self, data: Any) -> Tensor:
        graph = self.prepare(data)
        x = self.node_input(graph)
        if x.size(1) != self.in_channels:
            raise ValueError(f"data.x must have {self.in_channels} features, got {x.size(1)}")
        h0 = h = F.pad(x, (0, self.channels - x.size(1)))  # Li et al.'s annotation, zero-padded
        h = run_steps(self.conv, h, graph, self.steps)
        return self.head(self.readout(h, graph, x0=h0))


__all__ = ["GGNN"]
