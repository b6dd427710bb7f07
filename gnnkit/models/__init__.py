"""Whole networks and :func:`build_model`.

Models take a PyG ``Batch`` (``x``, ``edge_index``, ``edge_attr``, ``batch``) and return one row
per graph (graph-level models) or per node (node classifiers).

To register a model, import its builder below and add one line to ``MODELS``. A builder has the
signature ``builder(in_channels, out_channels, edge_dim=None, **config) -> nn.Module``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from gnnkit.models._inputs import edge_type_from_one_hot, graph_inputs
from gnnkit.models.baselines import GridCNN, SeqRNN, build_cnn, build_rnn
from gnnkit.models.gcn import GCN, GCNGraph, build_gcn, build_gcn_graph
from gnnkit.models.ggnn import GGNN, build_ggnn
from gnnkit.models.mpnn import MPNN, build_mpnn
from gnnkit.models.nhgcn import NHGCN, build_nhgcn
from gnnkit.models.tdgnn import TDGNN, build_tdgnn_s, build_tdgnn_w

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mpnn": build_mpnn,
    "ggnn": build_ggnn,
    "gcn": build_gcn,
    "gcn-graph": build_gcn_graph,
    "cnn": build_cnn,
    "rnn": build_rnn,
    "tdgnn-s": build_tdgnn_s,
    "tdgnn-w": build_tdgnn_w,
    "nhgcn": build_nhgcn,
}


def build_model(name: str, in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> nn.Module:
    """Builds the model registered as ``name`` in :data:`MODELS`.

    Args:
        name: a key of :data:`MODELS` (``"mpnn"``, ``"ggnn"``, ``"gcn"``, ``"gcn-graph"``, ...).
        in_channels: node feature size.
        out_channels: number of outputs per graph (or per node).
        edge_dim: edge feature size, for models that read ``edge_attr``.
        **config: model-specific options (see each model's docstring).

    Raises:
        ValueError: ``name`` is not registered.
        TypeError: ``config`` holds an option the model does not take.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name](in_channels, out_channels, edge_dim=edge_dim, **config)


__all__ = [
    "MODELS",
    "build_model",
    "MPNN",
    "GGNN",
    "GCN",
    "GCNGraph",
    "TDGNN",
    "NHGCN",
    "GridCNN",
    "SeqRNN",
    "graph_inputs",
    "edge_type_from_one_hot",
]
