"""The graph context: everything a layer needs to know about a batch's graph, built once.

A :class:`Graph` holds the target-sorted :class:`gnnkit.ops.CSR`, the per-edge tensors already in
that sorted order, the batch vector, optional node features, and whatever layers precompute per
graph (CPU degree buckets, normalised GCN weights, TDGNN's tree operator, NHGCN's channels) as
``operators`` keyed by an :class:`OperatorKey` that the building layer owns. For graph-level state
it holds each node's and each edge's graph id and the number of nodes per graph, so broadcasting a
graph's state to its nodes or edges and pooling them per graph are index operations with the sizes
known (:meth:`Graph.broadcast_nodes`, :meth:`Graph.pool_nodes`, ...), as in jraph's ``GraphsTuple``. It is built, and its values checked, once where user input enters
(:meth:`Graph.from_edge_index`, :meth:`Graph.from_data`); every layer and every step then reuses
it and calls unchecked internals, so nothing downstream reads a tensor value on the host (no GPU
sync, no ``torch.compile`` graph break).

It is immutable: a layer that precomputes something returns a new ``Graph`` (:meth:`with_operator`,
:meth:`replace`), and a forward pass never writes into it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gnnkit.ops import CSR, DegreeBuckets, scatter_unchecked
from gnnkit.ops._checks import check_count, check_float, check_index, check_range, values_checked

EDGE_TENSORS: tuple[str, ...] = ("edge_attr", "edge_weight", "edge_type")
_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)


def is_adjacency(obj: Any) -> bool:
    """Whether ``obj`` is a sparse adjacency matrix: a ``torch.sparse`` COO/CSR tensor, or a PyG /
    torch_sparse ``SparseTensor`` (anything with its ``coo()`` and ``sparse_sizes()`` methods)."""
    if isinstance(obj, Tensor):
        return obj.layout in _SPARSE_LAYOUTS
    return callable(getattr(obj, "coo", None)) and callable(getattr(obj, "sparse_sizes", None))


def adjacency_edges(adj_t: Any) -> tuple[Tensor, Tensor | None, tuple[int, int]]:
    """``(edge_index, values, (num_src, num_dst))`` of a transposed adjacency ``adj_t`` as PyG uses
    it (``T.ToSparseTensor()``): entry ``[i, j]`` is the edge ``j -> i``, so row = target and column
    = source, and the stored values are the per-edge input (weights, or features with a dense
    trailing dimension). Edges come in the matrix's row-major order.

    Raises:
        TypeError: ``adj_t`` is not a sparse adjacency.
    """
    if isinstance(adj_t, Tensor) and adj_t.layout == torch.sparse_csr:
        crow, col, values = adj_t.crow_indices(), adj_t.col_indices(), adj_t.values()
        row = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow[1:] - crow[:-1], output_size=col.numel())
        sizes = (adj_t.size(0), adj_t.size(1))
    elif isinstance(adj_t, Tensor) and adj_t.layout == torch.sparse_coo:
        adj_t = adj_t.coalesce()
        (row, col), values = adj_t.indices(), adj_t.values()
        sizes = (adj_t.size(0), adj_t.size(1))
    elif is_adjacency(adj_t):
        row, col, values = adj_t.coo()
        sizes = tuple(adj_t.sparse_sizes())
    else:
        raise TypeError(f"expected a sparse adjacency (torch.sparse COO/CSR or SparseTensor), got {type(adj_t).__name__}")
    return torch.stack([col, row]).long(), values, (int(sizes[1]), int(sizes[0]))


@dataclass(frozen=True)
class OperatorKey:
    """The key of a per-graph operator in :attr:`Graph.operators`: the class that builds and reads
    it (``owner``) and the settings it depends on (``variant``). A layer exposes its key as an
    attribute (``GCNConv.operator_key``, ``TreeConv.operator_key``), so every reader of an operator
    names the same object, which a type checker can follow (a string key could be misspelt).
    """

    owner: type
    variant: tuple = ()

    def __repr__(self) -> str:
        return f"{self.owner.__name__}{self.variant if self.variant else ''}"


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated graph with its per-edge tensors in CSR (target-sorted) order.

    Attributes:
        csr: the edges sorted by target, with the transpose.
        x: ``[N, F]`` node features, if the graph carries them (models read them; layers take
            node features as an argument).
        edge_attr: ``[E, D]`` (or ``[E]``) edge features, in ``csr`` order.
        edge_weight: ``[E]`` edge weights, in ``csr`` order.
        edge_type: ``[E]`` int64 edge types in ``[0, num_edge_types)``, in ``csr`` order.
        batch: ``[N]`` int64 graph id of every node, in ``[0, num_graphs)``.
        num_graphs: number of graphs in the batch.
        num_edge_types: one more than the largest edge type (0 without types).
        buckets: CPU degree grouping of the targets for :func:`gnnkit.ops.outer_aggregate`.
        operators: further graphs over the same nodes that layers precompute or that a model
            reads from its data (``GCNConv.operator_key``: the normalised graph with self-loops;
            ``TreeConv.operator_key``: TDGNN's tree operator), keyed by :class:`OperatorKey`.
        edge_graph: ``[E]`` int64 graph id of every edge (that of its target), in ``csr`` order.
        graph_sizes: ``[num_graphs]`` int64 number of nodes of every graph.
        origin: for an operator: ``[E_op]`` int64, the ``csr`` position in the graph it was
            built from of the edge each of its entries stands for, -1 for an entry that is no
            edge of that graph (an added self-loop). ``None``: its entries have no such
            correspondence (e.g. multi-hop operators), so an explainer's edge mask cannot reach them.
        edge_mask: ``[E]`` an explainer's edge mask in ``csr`` order, set by
            :class:`gnnkit.nn.MessagePassing` for the duration of one step (never by a user).

    Shapes:
        ``num_src = csr.num_src`` source and ``num_dst = csr.num_dst`` target nodes (equal unless
        the graph is bipartite), ``E = csr.num_edges``.
    """

    csr: CSR
    x: Tensor | None = None
    edge_attr: Tensor | None = None
    edge_weight: Tensor | None = None
    edge_type: Tensor | None = None
    batch: Tensor | None = None
    num_graphs: int = 1
    num_edge_types: int = 0
    buckets: DegreeBuckets | None = None
    operators: Mapping[OperatorKey, "Graph"] = field(default_factory=dict)
    edge_graph: Tensor | None = None
    graph_sizes: Tensor | None = None
    origin: Tensor | None = None
    edge_mask: Tensor | None = None

    # ----------------------------------------------------------------------------- builders

    @staticmethod
    def from_edge_index(
        edge_index: Tensor,
        num_nodes: int | tuple[int, int] | None = None,
        *,
        x: Tensor | None = None,
        edge_attr: Tensor | None = None,
        edge_weight: Tensor | None = None,
        edge_type: Tensor | None = None,
        batch: Tensor | None = None,
        num_graphs: int | None = None,
    ) -> "Graph":
        """Builds and validates the context of a PyG-style graph.

        Args:
            edge_index: ``[2, E]`` int64/int32, row 0 = source, row 1 = target.
            num_nodes: node count, or ``(num_src, num_dst)`` (default: ``x.size(0)``).
            x: ``[N, F]`` node features (dense or sparse COO).
            edge_attr, edge_weight, edge_type: per-edge tensors in ``edge_index`` order.
            batch: ``[N]`` graph id of every node (default: one graph).
            num_graphs: number of graphs (default: ``batch.max() + 1``).

        Raises:
            TypeError / ValueError: a tensor of the wrong type, shape or values, naming it. (Under
            ``torch.compile`` the value checks are skipped: see :mod:`gnnkit.ops._checks`.)
        """
        if num_nodes is None:
            if x is None:
                raise ValueError("pass num_nodes (or x, whose rows are the nodes)")
            num_nodes = x.size(0)
        return Graph.from_csr(
            CSR.from_edge_index(edge_index, num_nodes),
            x=x, edge_attr=edge_attr, edge_weight=edge_weight, edge_type=edge_type, batch=batch, num_graphs=num_graphs,
        )  # fmt: skip

    @staticmethod
    def from_csr(
        csr: CSR,
        *,
        x: Tensor | None = None,
        edge_attr: Tensor | None = None,
        edge_weight: Tensor | None = None,
        edge_type: Tensor | None = None,
        batch: Tensor | None = None,
        num_graphs: int | None = None,
    ) -> "Graph":
        """Like :meth:`from_edge_index` for a prebuilt :class:`gnnkit.ops.CSR` (edge tensors
        still in the original ``edge_index`` order)."""
        if not isinstance(csr, CSR):
            raise TypeError(f"csr must be a gnnkit.ops.CSR, got {type(csr).__name__}")
        e, n = csr.num_edges, csr.num_dst
        if x is not None:
            if not isinstance(x, Tensor):
                raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() < 1 or x.size(0) != csr.num_src:
                raise ValueError(f"x has {x.size(0) if x.dim() else 0} rows but the graph has {csr.num_src} nodes")
        if edge_attr is not None:
            check_float("edge_attr", edge_attr)
            if edge_attr.size(0) != e:
                raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but edge_index has {e} edges")
            edge_attr = csr.permute(edge_attr)
        if edge_weight is not None:
            check_float("edge_weight", edge_weight)
            if edge_weight.shape != (e,):
                raise ValueError(f"edge_weight must have shape [{e}], got {tuple(edge_weight.shape)}")
            edge_weight = csr.permute(edge_weight)
        num_edge_types = 0
        if edge_type is not None:
            check_index("edge_type", edge_type)
            if edge_type.shape != (e,):
                raise ValueError(f"edge_type must have shape [E] = [{e}], got {tuple(edge_type.shape)}")
            edge_type = csr.permute(edge_type.long())
            if e and values_checked():  # while compiling: unknown (0), and layers cannot check the range
                lo, hi = (int(v) for v in torch.aminmax(edge_type))
                if lo < 0:
                    raise ValueError(f"edge_type contains a negative value ({lo})")
                num_edge_types = hi + 1
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=csr.device)
            num_graphs = 1 if num_graphs is None else check_count("num_graphs", num_graphs)
        else:
            check_index("batch", batch)
            if batch.shape != (n,):
                raise ValueError(f"batch must have shape [num_nodes] = [{n}], got {tuple(batch.shape)}")
            batch = batch.long()
            if num_graphs is None:
                num_graphs = int(batch.max()) + 1 if n else 0
            num_graphs = check_count("num_graphs", num_graphs)
            check_range("batch", batch, num_graphs, "num_graphs")
        # Per-graph sizes without a host read: a float-free scatter of ones into num_graphs slots.
        graph_sizes = torch.zeros(num_graphs, dtype=torch.long, device=csr.device).index_add_(0, batch, torch.ones_like(batch))
        return Graph(
            csr, x=x, edge_attr=edge_attr, edge_weight=edge_weight, edge_type=edge_type, batch=batch,
            num_graphs=num_graphs, num_edge_types=num_edge_types, edge_graph=batch.index_select(0, csr.row),
            graph_sizes=graph_sizes,
        )  # fmt: skip

    @staticmethod
    def from_data(data: Any) -> "Graph":
        """The context of a PyG ``Data`` / ``Batch``: ``x``, ``edge_index`` (or the sparse ``adj_t``
        of ``T.ToSparseTensor()``, whose values become ``edge_weight``) and, where present,
        ``edge_attr``, ``edge_weight``, ``edge_type``, ``batch`` (a bare ``Data`` is one graph).

        Raises:
            TypeError: ``data`` has no ``edge_index`` tensor.
        """
        if isinstance(data, Graph):
            return data
        edge_index = getattr(data, "edge_index", None)
        adj_t = getattr(data, "adj_t", None) if edge_index is None else None
        if adj_t is not None and is_adjacency(adj_t):  # T.ToSparseTensor(): its values are edge_weight
            edge_index, values, _ = adjacency_edges(adj_t)
            if getattr(data, "edge_weight", None) is None and values is not None and values.dim() == 1:
                data = data.clone()
                data.edge_weight = values
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"data must be a PyG Data/Batch with an edge_index tensor (or adj_t), got {type(data).__name__}")
        x = getattr(data, "x", None)
        num_nodes = getattr(data, "num_nodes", None)
        if num_nodes is None:
            if not isinstance(x, Tensor):
                raise ValueError("data has no num_nodes and no x to count the nodes")
            num_nodes = x.size(0)
        batch = getattr(data, "batch", None)
        num_graphs = getattr(data, "num_graphs", None) if batch is not None else 1
        return Graph.from_edge_index(
            edge_index, int(num_nodes), x=x if isinstance(x, Tensor) else None,
            edge_attr=getattr(data, "edge_attr", None), edge_weight=getattr(data, "edge_weight", None),
            edge_type=getattr(data, "edge_type", None), batch=batch, num_graphs=num_graphs,
        )  # fmt: skip

    # ------------------------------------------------------------------------------ derived

    def replace(self, **changes: Any) -> "Graph":
        """A copy with some fields replaced (the caller vouches for the new values)."""
        return dataclasses.replace(self, **changes)

    def with_operator(self, key: OperatorKey, operator: "Graph") -> "Graph":
        """A copy that also carries ``operator`` under ``key``."""
        if not isinstance(key, OperatorKey):
            raise TypeError(f"operator keys are OperatorKey objects (e.g. TreeConv.operator_key), got {type(key).__name__}")
        return dataclasses.replace(self, operators={**self.operators, key: operator})

    def operator(self, key: OperatorKey) -> "Graph":
        """The operator under ``key``, with a clear error if it was not prepared."""
        op = self.operators.get(key)
        if op is None:
            raise ValueError(
                f"the graph has no {key!r} operator (it has: {list(self.operators) or 'none'}); "
                "build the graph with the model's or layer's prepare()"
            )
        return op

    # ------------------------------------------------------------------- graph-level state

    def _per_graph(self, name: str) -> Tensor:
        t = getattr(self, name)
        if t is None:
            raise ValueError(f"the graph has no {name}; build it with Graph.from_edge_index/from_data")
        return t

    def broadcast_nodes(self, u: Tensor) -> Tensor:
        """``u[batch]``: every node gets its graph's row of ``u`` (``[num_graphs, *]`` -> ``[N, *]``)."""
        return u.index_select(0, self._per_graph("batch"))

    def broadcast_edges(self, u: Tensor) -> Tensor:
        """Every edge gets its graph's row of ``u`` (``[num_graphs, *]`` -> ``[E, *]``, csr order)."""
        return u.index_select(0, self._per_graph("edge_graph"))

    def pool_nodes(self, x: Tensor, reduce: str = "sum") -> Tensor:
        """Node rows reduced per graph (``[N, *]`` -> ``[num_graphs, *]``; an empty graph gives 0)."""
        return scatter_unchecked(x, self._per_graph("batch"), self.num_graphs, reduce)

    def pool_edges(self, e: Tensor, reduce: str = "sum") -> Tensor:
        """Edge rows (csr order) reduced per graph (``[E, *]`` -> ``[num_graphs, *]``)."""
        return scatter_unchecked(e, self._per_graph("edge_graph"), self.num_graphs, reduce)

    @property
    def num_nodes(self) -> int:
        return self.csr.num_dst

    @property
    def num_edges(self) -> int:
        return self.csr.num_edges

    @property
    def device(self) -> torch.device:
        return self.csr.device

    def to(self, device: torch.device | str | None = None, non_blocking: bool = False, **_: object) -> "Graph":
        """Moves every tensor (the signature PyG's ``Data.to`` calls on its attributes)."""

        def mv(v: Any) -> Any:
            return v.to(device, non_blocking=non_blocking) if v is not None else None

        moved = {f.name: mv(getattr(self, f.name)) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), (Tensor, DegreeBuckets))}  # fmt: skip
        operators = {k: op.to(device, non_blocking) for k, op in self.operators.items()}
        return dataclasses.replace(self, csr=self.csr.to(device, non_blocking), operators=operators, **moved)
