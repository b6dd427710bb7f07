"""Multi-hop graph operators precomputed with sparse products: hop distances, the tree-decomposed
propagation matrices of TDGNN and the neighbourhood homophily of NHGCN.

All functions work on blocks of source nodes: a dense ``[N, B]`` frontier (one column per source)
is pushed through the graph with :func:`gnnkit.ops.spmm`, so a multi-source BFS over ``B``
sources costs one sparse product per hop and memory stays at ``O(N * B)`` instead of ``O(N^2)``.
The block size is chosen from an element budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from gnnkit.ops._checks import check_count, check_index, check_range
from gnnkit.ops.csr import CSR
from gnnkit.ops.spmm import spmm

__all__ = [
    "hop_distances",
    "gcn_adjacency",
    "tree_decomposition",
    "khop_neighbourhood",
    "neighbourhood_homophily",
]

_DEFAULT_BUDGET = 1 << 25  # dense elements held at once per block (~128 MB of float32)


def _check_graph(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, int]:
    check_index("edge_index", edge_index)
    num_nodes = check_count("num_nodes", num_nodes)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    edge_index = edge_index.long()
    check_range("edge_index", edge_index, num_nodes, "num_nodes")
    return edge_index, num_nodes


def _check_hops(name: str, hops: int) -> int:
    hops = check_count(name, hops)
    if not 1 <= hops <= 1000:
        raise ValueError(f"{name} must be in [1, 1000], got {hops}")
    return hops


def _block_size(num_nodes: int, per_column: int, block_size: int | None) -> int:
    if block_size is not None:
        block_size = check_count("block_size", block_size)
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        return block_size
    return max(1, min(max(num_nodes, 1), _DEFAULT_BUDGET // max(num_nodes * per_column, 1)))


def _bfs_blocks(
    csr: CSR, num_nodes: int, sources: Tensor, max_hops: int, block: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yields ``(block_sources, dist)`` with ``dist[v, b]`` the hop distance ``sources[b] -> v``
    along the edges of ``csr`` (``-1``: not reached within ``max_hops``)."""
    for start in range(0, sources.numel(), block):
        src = sources[start : start + block]
        cols = torch.arange(src.numel(), device=src.device)
        frontier = torch.zeros(num_nodes, src.numel(), device=src.device)
        frontier[src, cols] = 1.0
        reached = frontier.bool()
        dist = torch.full((num_nodes, src.numel()), -1, dtype=torch.int16, device=src.device)
        dist[src, cols] = 0
        for hop in range(1, max_hops + 1):
            new = (spmm(csr, frontier) > 0) & ~reached
            if not bool(new.any()):
                break
            dist[new] = hop
            reached |= new
            frontier = new.to(frontier.dtype)
        yield src, dist


def hop_distances(
    edge_index: Tensor,
    num_nodes: int,
    max_hops: int,
    sources: Tensor | None = None,
    block_size: int | None = None,
) -> Tensor:
    """Shortest-path hop distances from each source along the directed edges ``src -> dst``.

    A breadth-first search from many sources at once: the frontier of a block of sources is a
    dense ``[N, B]`` indicator, advanced by one sparse product per hop.

    Args:
        edge_index: ``[2, E]`` edges, row 0 = source, row 1 = target.
        num_nodes: number of nodes ``N``.
        max_hops: search depth; farther nodes get ``-1``.
        sources: ``[S]`` source nodes (default: all nodes in order).
        block_size: sources per block (default: from a memory budget).

    Returns:
        ``[S, N]`` int64 tensor, ``out[i, v]`` = distance ``sources[i] -> v``, 0 on the source
        itself, ``-1`` if ``v`` is not reached within ``max_hops``.

    Shapes:
        edge_index ``[2, E]``, sources ``[S]`` -> ``[S, N]``.
    """
    edge_index, num_nodes = _check_graph(edge_index, num_nodes)
    max_hops = _check_hops("max_hops", max_hops)
    if sources is None:
        sources = torch.arange(num_nodes, device=edge_index.device)
    else:
        check_index("sources", sources)
        sources = sources.long().view(-1)
        check_range("sources", sources, num_nodes, "num_nodes")
    csr = CSR.from_edge_index(edge_index, num_nodes)
    block = _block_size(num_nodes, 4, block_size)
    parts = [dist.t().long() for _, dist in _bfs_blocks(csr, num_nodes, sources, max_hops, block)]
    if not parts:
        return torch.empty(0, num_nodes, dtype=torch.long, device=edge_index.device)
    return torch.cat(parts, dim=0)


def gcn_adjacency(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Edges and weights of ``Â = D^-1/2 (A + I) D^-1/2`` as PyG's ``gcn_norm`` builds it.

    Self-loops are added to nodes that have none (an existing self-loop is kept once, weight 1);
    the degree is counted on the target index, so on a directed graph ``w(s -> t) =
    d_s^-1/2 d_t^-1/2`` with in-degrees ``d``. Duplicate edges count as often as they occur.

    Returns:
        ``(edge_index, weight)``: ``[2, E']`` edges (non-loop edges first, then one loop per node)
        and their ``[E']`` weights.
    """
    edge_index, num_nodes = _check_graph(edge_index, num_nodes)
    keep = edge_index[0] != edge_index[1]
    nodes = torch.arange(num_nodes, device=edge_index.device)
    index = torch.cat([edge_index[:, keep], torch.stack([nodes, nodes])], dim=1)
    ones = torch.ones(index.size(1), dtype=dtype, device=index.device)
    deg = torch.zeros(num_nodes, dtype=dtype, device=index.device).index_add_(0, index[1], ones)
    dis = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return index, dis[index[0]] * dis[index[1]]


def _symmetrize(edge_index: Tensor, num_nodes: int) -> Tensor:
    both = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    key = torch.unique(both[0] * max(num_nodes, 1) + both[1])
    return torch.stack([key // max(num_nodes, 1), key % max(num_nodes, 1)])


def tree_decomposition(
    edge_index: Tensor,
    num_nodes: int,
    levels: Sequence[int] | None = None,
    max_hops: int = 10,
    symmetric: bool = False,
    drop_zeros: bool = True,
    dtype: torch.dtype = torch.float32,
    block_size: int | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """The tree-decomposed operators ``T^l ⊙ E^{l,K}`` of TDGNN (Wang & Derr, CIKM 2021), as in
    the reference implementation (yuwvandy/TDGNN).

    For every source ``s``, a BFS along the edges ``s -> v`` to depth ``K = max_hops`` puts each
    node ``v`` at shortest distance exactly ``l`` into level ``l`` with the entry ``s -> v`` and
    weight ``sum_{m=l..K} (Â^m)[s, v]``, where ``Â`` is :func:`gcn_adjacency` and ``(Â^m)[s, v]``
    sums the weights of the walks ``v -> ... -> s`` of length ``m`` (the reference propagates an
    identity matrix with PyG's ``source -> target`` message passing). Level 1 also holds the
    self-loop ``s -> s`` with weight ``sum_{m=1..K} (Â^m)[s, s]``.

    On a directed graph (the Geom-GCN WebKB and Actor graphs) the search follows ``s -> v`` while
    the weight reads walks ``v -> s``, so many weights are exactly zero; ``symmetric=True``
    symmetrises the graph first (a different model from the reference on directed graphs).

    Args:
        edge_index: ``[2, E]`` edges, row 0 = source, row 1 = target.
        num_nodes: number of nodes.
        levels: which ``l`` in ``[1, max_hops]`` to build (default: all).
        max_hops: ``K``, both the BFS depth and the largest power of ``Â`` (the reference's
            ``tree_layer``).
        symmetric: add the reverse of every edge first.
        drop_zeros: leave out entries whose weight is exactly zero (they contribute nothing).
        dtype: dtype of the powers of ``Â`` and of the weights.
        block_size: BFS sources per block (default: from a memory budget).

    Returns:
        One ``(edge_index_l, weight_l)`` per requested level, in the order of ``levels``:
        ``edge_index_l`` ``[2, P_l]`` with row 0 = the BFS source ``s`` and row 1 = ``v``, so that
        propagating ``x`` along it gives ``out[v] = sum_s weight * x[s]``.

    Shapes:
        edge_index ``[2, E]`` -> a list of ``([2, P_l], [P_l])``.
    """
    edge_index, num_nodes = _check_graph(edge_index, num_nodes)
    max_hops = _check_hops("max_hops", max_hops)
    if levels is None:
        levels = list(range(1, max_hops + 1))
    levels = [int(level) for level in levels]
    bad = [level for level in levels if not 1 <= level <= max_hops]
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty list of ints in [1, max_hops={max_hops}], got {levels}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    if symmetric:
        edge_index = _symmetrize(edge_index, num_nodes)
    device = edge_index.device
    bfs_csr = CSR.from_edge_index(edge_index, num_nodes)
    hat_index, hat_weight = gcn_adjacency(edge_index, num_nodes, dtype)
    # Y_m[t, b] = (Â^m)[s_b, t] = sum_u w(t -> u) Y_{m-1}[u, b]: aggregate along reversed edges.
    rev_csr = CSR.from_edge_index(hat_index.flip(0), num_nodes)
    rev_weight = rev_csr.permute(hat_weight)
    low = min(levels)
    block = _block_size(num_nodes, max_hops - low + 5, block_size)
    sources = torch.arange(num_nodes, device=device)
    out: dict[int, tuple[list[Tensor], list[Tensor]]] = {level: ([], []) for level in levels}
    for src, dist in _bfs_blocks(bfs_csr, num_nodes, sources, max_hops, block):
        cols = torch.arange(src.numel(), device=device)
        y = torch.zeros(num_nodes, src.numel(), dtype=dtype, device=device)
        y[src, cols] = 1.0
        powers: list[Tensor] = []
        for m in range(1, max_hops + 1):
            y = spmm(rev_csr, y, rev_weight, weight_order="csr")
            powers.append(y if m >= low else y.new_empty(0))
        for level in set(levels):
            suffix = powers[level - 1].clone()  # sum in the order m = l..K, as the reference
            for m in range(level + 1, max_hops + 1):
                suffix += powers[m - 1]
            mask = dist == level
            if level == 1:
                mask |= dist == 0
            if drop_zeros:
                mask &= suffix != 0
            v, b = mask.nonzero(as_tuple=True)
            out[level][0].append(torch.stack([src[b], v]))
            out[level][1].append(suffix[v, b])
    result = []
    for level in levels:
        idx, w = out[level]
        result.append(
            (torch.cat(idx, dim=1), torch.cat(w))
            if idx
            else (torch.empty(2, 0, dtype=torch.long, device=device), torch.empty(0, dtype=dtype, device=device))
        )
    return result


def khop_neighbourhood(
    edge_index: Tensor,
    num_nodes: int,
    hops: int,
    include_self: bool = False,
    block_size: int | None = None,
    drop_lowest_id: bool = False,
) -> Tensor:
    """Pairs ``(u, i)`` such that ``u`` reaches ``i`` by a walk ``u -> ... -> i`` of at most
    ``hops`` edges: the nodes that send messages to ``i`` within ``hops`` rounds (PyG's
    ``k_hop_subgraph(i, hops, edge_index)`` with the default flow).

    Args:
        edge_index: ``[2, E]`` edges, row 0 = source, row 1 = target.
        num_nodes: number of nodes.
        hops: ``k``.
        include_self: count ``i`` as its own neighbour.
        block_size: BFS sources per block (default: from a memory budget).
        drop_lowest_id: with ``include_self=False``, reproduce rockcor/NHGCN exactly: it takes
            ``k_hop_subgraph(i, k, ei)[0][1:]``, and since that subset is sorted by node id, the
            ``[1:]`` drops the lowest-id member, which is ``i`` only when ``i`` has the smallest id
            in its neighbourhood (otherwise ``i`` stays and its lowest-id neighbour goes).

    Returns:
        ``[2, P]`` int64 pairs, row 0 = neighbour ``u``, row 1 = centre ``i`` (usable as an
        ``edge_index`` that aggregates a neighbourhood into its centre), sorted by centre.

    Shapes:
        edge_index ``[2, E]`` -> ``[2, P]``.
    """
    edge_index, num_nodes = _check_graph(edge_index, num_nodes)
    hops = _check_hops("hops", hops)
    csr = CSR.from_edge_index(edge_index.flip(0), num_nodes)  # search backwards from each centre
    block = _block_size(num_nodes, 4, block_size)
    sources = torch.arange(num_nodes, device=edge_index.device)
    parts = []
    if drop_lowest_id and include_self:
        raise ValueError("drop_lowest_id=True reproduces the include_self=False case; pass include_self=False")
    for src, dist in _bfs_blocks(csr, num_nodes, sources, hops, block):
        mask = dist > 0 if not (include_self or drop_lowest_id) else dist >= 0
        b, u = mask.t().nonzero(as_tuple=True)  # sorted by centre, then by neighbour id
        if drop_lowest_id:
            first = torch.ones_like(b, dtype=torch.bool)
            first[1:] = b[1:] != b[:-1]
            b, u = b[~first], u[~first]
        parts.append(torch.stack([u, src[b]]))
    if not parts:
        return torch.empty(2, 0, dtype=torch.long, device=edge_index.device)
    return torch.cat(parts, dim=1)


def neighbourhood_homophily(neighbourhood: Tensor, labels: Tensor, num_nodes: int) -> Tensor:
    """Neighbourhood homophily of NHGCN (Gong et al., CIKM 2023): the share of the majority label
    among a node's neighbours, ``NH_i = max_c |{u in N(i) : y_u = c}| / |N(i)|``.

    Args:
        neighbourhood: ``[2, P]`` pairs ``(u, i)`` from :func:`khop_neighbourhood`.
        labels: ``[N]`` integer labels, or ``[N, C]`` float label indicators (one-hot; a row may
            hold several ones, each counted).
        num_nodes: number of nodes ``N``.

    Returns:
        ``[N]`` float64; a node with an empty neighbourhood gets 1 (as the reference code).

    Shapes:
        neighbourhood ``[2, P]``, labels ``[N]`` or ``[N, C]`` -> ``[N]``.
    """
    neighbourhood, num_nodes = _check_graph(neighbourhood, num_nodes)
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.size(0) != num_nodes or labels.dim() not in (1, 2):
        raise ValueError(f"labels must have shape [N] or [N, C] with N={num_nodes}, got {tuple(labels.shape)}")
    if labels.dim() == 1:
        check_index("labels", labels)
        if labels.numel() and int(labels.min()) < 0:
            raise ValueError("labels must be non-negative class ids")
        num_classes = int(labels.max()) + 1 if labels.numel() else 1
        onehot = torch.zeros(num_nodes, num_classes, device=labels.device)
        onehot[torch.arange(num_nodes, device=labels.device), labels.long()] = 1.0
    else:
        if not labels.is_floating_point():
            raise TypeError(f"[N, C] labels must be a float tensor, got dtype {labels.dtype}")
        onehot = labels
    csr = CSR.from_edge_index(neighbourhood, num_nodes)
    counts = spmm(csr, onehot.float()).double()  # integer counts: exact in float32 below 2^24
    size = csr.degree(torch.float64)
    majority = counts.max(dim=1).values if counts.size(1) else torch.zeros_like(size)
    return torch.where(size > 0, majority / size.clamp(min=1), torch.ones_like(size))
