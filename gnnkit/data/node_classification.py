"""Node-classification benchmarks and their split protocols.

Graphs come from PyG's own dataset classes (``Planetoid``, ``WebKB``,
``WikipediaNetwork(geom_gcn_preprocess=True)``, ``Actor``) under one data root laid out as::

    <root>/planetoid/{Cora,CiteSeer}/raw           (+ <name>/geom-gcn/raw for the Geom-GCN splits)
    <root>/webkb/{cornell,texas,wisconsin}/raw
    <root>/wikipedia/{chameleon,squirrel}/geom_gcn/raw
    <root>/actor/raw

The root follows :func:`gnnkit.data.paths.data_root`: the ``root`` argument, else ``$GNNKIT_DATA``,
else the checkout's ``datasets/`` (which holds the raw files of Cora, CiteSeer, Cornell, Texas,
Wisconsin and Actor), else ``~/.cache/gnnkit``. A graph whose raw files are not under the root
(chameleon and squirrel are not committed) is downloaded by PyG on first use; when that fails
(offline), the error names the missing files and the folder they were expected in. Features are
always row-normalised (PyG's ``NormalizeFeatures``, as TDGNN, NHGCN and Kipf's GCN all do).

Split protocols (masks have shape ``[N, S]``, one column per split):

* ``"public"``: the Planetoid split of Yang et al. 2016 (Cora and CiteSeer only), ``S = 1``.
* ``"geom-gcn"``: the 10 split files of Pei et al. 2020 (about 48/32/20 despite their
  ``0.6_0.2`` names; for Cora/CiteSeer through ``Planetoid(split="geom-gcn")``).
* ``"random"``: NHGCN's protocol (rockcor/NHGCN ``random_planetoid_splits``): for split ``i`` the
  torch generator is seeded with ``42 + i``; each class gives ``round(0.6 N / C)`` random nodes to
  training (all of its nodes if it has fewer), the rest is shuffled, the first ``round(0.2 N)``
  go to validation and the remainder to test. The same sequence of ``randperm`` calls as the
  reference, so the splits are the reference's.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Literal

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnkit.data.files import NoPickleDataset
from gnnkit.data.paths import data_root

__all__ = [
    "NODE_DATASETS",
    "SPLITS",
    "data_root",
    "load_node_dataset",
    "raw_files",
    "random_splits",
    "undirected_graph",
    "graph_cache_dir",
    "graph_key",
]

NODE_DATASETS: tuple[str, ...] = ("cora", "citeseer", "cornell", "texas", "wisconsin", "chameleon", "squirrel", "actor")
SPLITS: tuple[str, ...] = ("public", "geom-gcn", "random")
_PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer"}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in NODE_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {NODE_DATASETS}")
    return name.lower()


def _pyg_dataset(name: str, root: pathlib.Path, geom_gcn: bool):
    from torch_geometric.datasets import Actor, Planetoid, WebKB, WikipediaNetwork
    from torch_geometric.transforms import NormalizeFeatures

    norm = NormalizeFeatures()
    # PyG's classes with the files they read from the data root loaded weights_only (no full pickle).
    if name in _PLANETOID:
        split = "geom-gcn" if geom_gcn else "public"
        return _no_pickle(Planetoid)(str(root / "planetoid"), _PLANETOID[name], split=split, transform=norm)
    if name in ("cornell", "texas", "wisconsin"):
        return _no_pickle(WebKB)(str(root / "webkb"), name, transform=norm)
    if name in ("chameleon", "squirrel"):
        return _no_pickle(WikipediaNetwork)(str(root / "wikipedia"), name, geom_gcn_preprocess=True, transform=norm)
    return _no_pickle(Actor)(str(root / "actor"), transform=norm)


def _no_pickle(cls: type) -> type:
    """``cls`` (a PyG dataset class) with :class:`gnnkit.data.files.NoPickleDataset` in front,
    made once and kept as a module attribute (so that its objects pickle by name)."""
    name = f"NoPickle{cls.__name__}"
    if name not in globals():
        globals()[name] = type(name, (NoPickleDataset, cls), {"__module__": __name__, "__qualname__": name})
    return globals()[name]


def _dataset_dir(name: str, root: pathlib.Path) -> pathlib.Path:
    if name in _PLANETOID:
        return root / "planetoid" / _PLANETOID[name]
    if name in ("cornell", "texas", "wisconsin"):
        return root / "webkb" / name
    if name in ("chameleon", "squirrel"):
        return root / "wikipedia" / name / "geom_gcn"
    return root / "actor"


def raw_files(name: str, split: str, root: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The raw files PyG reads for ``name`` under split protocol ``split`` (the ``raw/`` folder
    of the layout in the module docstring, including the Geom-GCN split files)."""
    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = _dataset_dir(name, data_root(root))
    if name in _PLANETOID:
        geom_gcn = split == "geom-gcn"
        raw = folder / "geom-gcn" / "raw" if geom_gcn else folder / "raw"
        names = [f"ind.{name}.{part}" for part in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")]
        # Planetoid(split="geom-gcn") also reads the ten split files, though it only checks ind.*.
        names += [f"{name}_split_0.6_0.2_{i}.npz" for i in range(10)] if geom_gcn else []
        return [raw / n for n in names]
    prefix = "film" if name == "actor" else name
    names = ["out1_node_feature_label.txt", "out1_graph_edges.txt"] + [f"{prefix}_split_0.6_0.2_{i}.npz" for i in range(10)]
    return [folder / "raw" / n for n in names]


def _load_pyg(name: str, split: str, root: pathlib.Path):
    """PyG's dataset, which downloads missing raw files; a failed download (no network) becomes a
    FileNotFoundError that names the missing files instead of a URLError."""
    missing = [p for p in raw_files(name, split, root) if not p.is_file()]
    if not missing:
        return _pyg_dataset(name, root, geom_gcn=split == "geom-gcn")
    try:
        return _pyg_dataset(name, root, geom_gcn=split == "geom-gcn")
    except Exception as e:  # noqa: BLE001 - urllib, fsspec and aiohttp each raise their own errors
        still = [p for p in missing if not p.is_file()]
        if not still:
            raise  # the download worked; the failure is elsewhere
        shown = ", ".join(p.name for p in still[:4]) + (f" and {len(still) - 4} more" if len(still) > 4 else "")
        raise FileNotFoundError(
            f"{name}: {len(still)} raw file(s) missing in {still[0].parent} (data root {root}): {shown}; "
            f"PyG did not get them ({type(e).__name__}: {e}). Put PyG's raw files there, or pass "
            "root= / --data-root, or set GNNKIT_DATA, to a folder laid out as planetoid/, webkb/, wikipedia/, "
            "actor/ (see gnnkit.data.node_classification)"
        ) from e


def random_splits(
    y: Tensor,
    num_classes: int,
    num_splits: int = 10,
    train_rate: float = 0.6,
    val_rate: float = 0.2,
    base_seed: int = 42,
) -> tuple[Tensor, Tensor, Tensor]:
    """NHGCN's class-balanced random splits (see the module docstring), split ``i`` seeded with
    ``base_seed + i``.

    Returns:
        ``(train_mask, val_mask, test_mask)``, each ``[N, num_splits]`` bool.
    """
    if y.dim() != 1:
        raise ValueError(f"y must have shape [N], got {tuple(y.shape)}")
    if not 0 < train_rate < 1 or not 0 <= val_rate < 1 or train_rate + val_rate > 1:
        raise ValueError(f"need 0 < train_rate, 0 <= val_rate, train_rate + val_rate <= 1; got {train_rate}, {val_rate}")
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    n = y.numel()
    per_class = int(round(train_rate * n / num_classes))
    n_val = int(round(val_rate * n))
    masks = torch.zeros(3, n, num_splits, dtype=torch.bool)
    for s in range(num_splits):
        g = torch.Generator().manual_seed(base_seed + s)
        by_class = []
        for c in range(num_classes):
            idx = (y == c).nonzero().view(-1)
            by_class.append(idx[torch.randperm(idx.numel(), generator=g)])
        train = torch.cat([i[:per_class] for i in by_class])
        rest = torch.cat([i[per_class:] for i in by_class])
        rest = rest[torch.randperm(rest.numel(), generator=g)]
        masks[0, train, s] = True
        masks[1, rest[:n_val], s] = True
        masks[2, rest[n_val:], s] = True
    return masks[0], masks[1], masks[2]


def undirected_graph(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Drops self-loops, adds the reverse of every edge and removes duplicates (what NHGCN's own
    WebKB loader does to the Geom-GCN graphs)."""
    keep = edge_index[0] != edge_index[1]
    ei = edge_index[:, keep]
    both = torch.cat([ei, ei.flip(0)], dim=1)
    key = torch.unique(both[0] * num_nodes + both[1])
    return torch.stack([key // num_nodes, key % num_nodes])


def load_node_dataset(
    name: str,
    split: Literal["public", "geom-gcn", "random"] = "geom-gcn",
    root: str | os.PathLike | None = None,
    graph: Literal["as_loaded", "undirected"] = "as_loaded",
) -> Data:
    """Loads a benchmark graph with row-normalised features and the masks of a split protocol.

    Args:
        name: one of :data:`NODE_DATASETS` (case-insensitive).
        split: ``"public"`` (Cora/CiteSeer only), ``"geom-gcn"`` or ``"random"``.
        root: data root (default: :func:`gnnkit.data.paths.data_root`, i.e. ``$GNNKIT_DATA``, else
            the checkout's ``datasets/``, else ``~/.cache/gnnkit``).
        graph: ``"as_loaded"`` keeps PyG's edges (the Geom-GCN graphs are directed and keep their
            self-loops); ``"undirected"`` applies :func:`undirected_graph`.

    Returns:
        A PyG ``Data`` with ``x`` ``[N, F]``, ``y`` ``[N]`` (int64), ``edge_index``,
        ``train_mask``/``val_mask``/``test_mask`` ``[N, S]`` and ``num_classes``.

    Raises:
        ValueError: unknown name/split/graph, or ``"public"`` for a non-Planetoid graph.
        FileNotFoundError: raw files are missing under the root and PyG could not download them
            (the message lists them).
    """
    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if graph not in ("as_loaded", "undirected"):
        raise ValueError(f"graph must be 'as_loaded' or 'undirected', got {graph!r}")
    if split == "public" and name not in _PLANETOID:
        raise ValueError(f"split='public' exists only for {tuple(_PLANETOID)}, not {name!r}")
    base = data_root(root)
    dataset = _load_pyg(name, split, base)
    src = dataset[0]
    data = Data(x=src.x, y=src.y.long(), edge_index=src.edge_index, num_nodes=src.num_nodes)
    data.num_classes = int(data.y.max()) + 1
    if graph == "undirected":
        data.edge_index = undirected_graph(data.edge_index, data.num_nodes)
    if split == "random":
        data.train_mask, data.val_mask, data.test_mask = random_splits(data.y, data.num_classes)
    else:
        for key in ("train_mask", "val_mask", "test_mask"):
            mask = src[key].bool()
            data[key] = mask.view(-1, 1) if mask.dim() == 1 else mask
    data.name = name
    data.cache_dir = str(graph_cache_dir(name, base))
    return data


def graph_cache_dir(name: str, root: str | os.PathLike | None = None) -> pathlib.Path:
    """``<dataset folder>/cache`` under the data root: where precomputed graph operators are kept
    (gitignored under ``datasets/``)."""
    return _dataset_dir(_check_name(name), data_root(root)) / "cache"


def graph_key(edge_index: Tensor, num_nodes: int, *extra: object) -> str:
    """A short hash of a graph and of the options of an operator built from it."""
    h = hashlib.sha1()
    h.update(edge_index.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr((num_nodes, *extra)).encode())
    return h.hexdigest()[:16]
