"""Whole networks and the one model registry, :data:`MODELS`.

Graph models (:class:`MPNN`, :class:`GGNN`, :class:`GCN`, :class:`GCNGraph`, :class:`TDGNN`,
:class:`NHGCN`, and the rest of Gilmer et al. 2017's Section 2: :class:`NeuralFingerprint`,
:class:`InteractionNetwork`, :class:`Weave`, :class:`DTNN`, :class:`ChebNet`) are compositions on the message-passing base: ``model(data)`` takes a PyG
``Data``/``Batch`` (or a :class:`gnnkit.nn.Graph` from ``model.prepare(data)``) and returns one row
per graph (graph-level models) or per node (node classifiers). The baselines :class:`GridCNN`
and :class:`SeqRNN` take voxel grids and token sequences.

To register a model, add one line to ``MODELS``: a :class:`ModelSpec` naming its class (whose
constructor is ``cls(in_channels, out_channels, [edge_dim,] **options)``), its task and input.
Recipes build every model through :func:`build_model` and read what to feed it from the spec.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from gnnkit.models._base import GraphModel
from gnnkit.models._inputs import edge_type_from_one_hot
from gnnkit.models.baselines import GridCNN, SeqRNN
from gnnkit.models.gcn import GCN, GCNGraph
from gnnkit.models.ggnn import GGNN
from gnnkit.models.mpnn import MPNN
from gnnkit.models.nhgcn import NHGCN, HomophilySplit
from gnnkit.models.pyg_reference import PygQM9NNConv
from gnnkit.models.section2 import DTNN, ChebNet, InteractionNetwork, NeuralFingerprint, Weave
from gnnkit.models.tdgnn import TDGNN, TreeDecomposition


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is and takes.

    Attributes:
        cls: the model class.
        task: ``"graph"`` (one row per graph) or ``"node"`` (one row per node).
        inputs: what ``model(data)`` reads: ``"graph"`` (``x``, ``edge_index`` ...), ``"grid"``
            (``data.grid``, see :class:`gnnkit.data.Voxelize`) or ``"tokens"`` (``data.tokens``,
            see :class:`gnnkit.data.EncodeSmiles`).
        edge_features: the model reads ``data.edge_attr``, so :func:`build_model` passes it
            ``edge_dim``.
        defaults: constructor options this registry entry fixes (e.g. TDGNN-w's ``weighted``).
        summary: one line for listings.
    """

    cls: type[nn.Module]
    task: Literal["graph", "node"]
    inputs: Literal["graph", "grid", "tokens"]
    edge_features: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def options(self) -> tuple[str, ...]:
        """The constructor options a user may set (``in_channels``, ``out_channels``,
        ``edge_dim`` and the entry's fixed ``defaults`` excluded)."""
        params = inspect.signature(self.cls.__init__).parameters
        fixed = {"self", "in_channels", "out_channels", "edge_dim", *self.defaults}
        return tuple(n for n, p in params.items() if n not in fixed and p.kind is not p.VAR_KEYWORD)


MODELS: dict[str, ModelSpec] = {
    "mpnn": ModelSpec(MPNN, "graph", "graph", edge_features=True, summary="Gilmer et al. 2017: edge network + GRU + set2set"),
    "ggnn": ModelSpec(GGNN, "graph", "graph", edge_features=True, summary="Li et al. 2016: typed messages + GRU + gated readout"),
    "gcn": ModelSpec(GCN, "node", "graph", summary="Kipf & Welling 2017: 2-layer node classifier"),
    "gcn-graph": ModelSpec(GCNGraph, "graph", "graph", summary="GCN layers + mean/sum/max readout + MLP"),
    "tdgnn-s": ModelSpec(TDGNN, "node", "graph", defaults={"weighted": False}, summary="Wang & Derr 2021, sum of tree levels"),
    "tdgnn-w": ModelSpec(TDGNN, "node", "graph", defaults={"weighted": True}, summary="Wang & Derr 2021, weighted tree levels"),
    "nfp": ModelSpec(NeuralFingerprint, "graph", "graph", edge_features=True, summary="Duvenaud et al. 2015: degree-wise convolutional fingerprints"),
    "interaction": ModelSpec(InteractionNetwork, "graph", "graph", edge_features=True, summary="Battaglia et al. 2016: interaction network"),
    "weave": ModelSpec(Weave, "graph", "graph", edge_features=True, summary="Kearnes et al. 2016: weave, node and edge states"),
    "dtnn": ModelSpec(DTNN, "graph", "graph", summary="Schütt et al. 2017: deep tensor network on Gaussian-expanded distances"),
    "chebnet": ModelSpec(ChebNet, "graph", "graph", summary="Defferrard et al. 2016: Chebyshev spectral filters"),
    "nhgcn": ModelSpec(NHGCN, "node", "graph", summary="Gong et al. 2023: homophily-split channels"),
    "pyg-nnconv": ModelSpec(PygQM9NNConv, "graph", "graph", edge_features=True,
                            summary="PyG's examples/qm9_nn_conv.py (NNConv mean + GRU + Set2Set), the reference"),
    "cnn": ModelSpec(GridCNN, "graph", "grid", summary="a CNN over voxel grids"),
    "rnn": ModelSpec(SeqRNN, "graph", "tokens", summary="a GRU/LSTM over SMILES tokens"),
}


def build_model(name: str, in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> nn.Module:
    """Builds the model registered as ``name`` in :data:`MODELS`.

    Args:
        name: a key of :data:`MODELS` (``"mpnn"``, ``"ggnn"``, ``"gcn"``, ``"gcn-graph"``, ...).
        in_channels: node feature size (grid channels for ``"cnn"``, vocabulary size for ``"rnn"``).
        out_channels: number of outputs per graph (or per node).
        edge_dim: edge feature size, for models whose spec has ``edge_features`` (others refuse it).
        **config: model options (``MODELS[name].options()``; see each model's docstring).

    Raises:
        ValueError: ``name`` is not registered.
        TypeError: ``config`` holds an option the model does not take (the message lists the
            valid ones), or ``edge_dim`` is given to a model that reads no edge features.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    spec = MODELS[name]
    unknown = sorted(set(config) - set(spec.options()))
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {unknown}; valid options: {list(spec.options())}")
    kwargs = {**spec.defaults, **config}
    if spec.edge_features:
        kwargs["edge_dim"] = edge_dim
    elif edge_dim is not None:
        raise TypeError(f"model {name!r} reads no edge features; pass edge_dim=None")
    return spec.cls(in_channels, out_channels, **kwargs)


__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "GraphModel",
    "MPNN",
    "GGNN",
    "GCN",
    "GCNGraph",
    "TDGNN",
    "TreeDecomposition",
    "NHGCN",
    "HomophilySplit",
    "NeuralFingerprint",
    "InteractionNetwork",
    "Weave",
    "DTNN",
    "ChebNet",
    "GridCNN",
    "SeqRNN",
    "edge_type_from_one_hot",
]
