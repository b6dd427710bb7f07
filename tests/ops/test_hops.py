"""Hop distances, TDGNN tree operators and neighbourhood homophily against dense references."""

import networkx as nx
import pytest
import torch

from gnnkit.ops import (
    gcn_adjacency,
    hop_distances,
    khop_neighbourhood,
    neighbourhood_homophily,
    tree_decomposition,
)


def random_digraph(n: int, p: float, seed: int, self_loops: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    adj = torch.rand(n, n, generator=g) < p
    adj.fill_diagonal_(False)
    idx = torch.randperm(n, generator=g)[:self_loops]
    adj[idx, idx] = True  # a few existing self-loops, as in the Geom-GCN graphs
    return adj.nonzero().t().contiguous()


def nx_distances(edge_index, n, cutoff):
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edge_index.t().tolist())
    out = torch.full((n, n), -1, dtype=torch.long)
    for s, lengths in nx.all_pairs_shortest_path_length(g, cutoff=cutoff):
        for v, d in lengths.items():
            out[s, v] = d
    return out


def dense_ahat(edge_index, n):
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edge_index[0], edge_index[1]] = 1.0
    a.fill_diagonal_(1.0)
    deg = a.sum(0)  # in-degree (target index), self-loop included
    dis = deg.pow(-0.5)
    # P[t, s] = w(s -> t): what one round of source -> target propagation applies
    return (dis[:, None] * a * dis[None, :]).t()


@pytest.mark.parametrize("seed,n,p", [(0, 12, 0.15), (1, 20, 0.08), (2, 9, 0.3)])
def test_hop_distances_match_networkx(seed, n, p):
    ei = random_digraph(n, p, seed)
    for cutoff in (1, 3, 10):
        assert torch.equal(hop_distances(ei, n, cutoff, block_size=5), nx_distances(ei, n, cutoff))
    sub = torch.tensor([3, 0, 7])
    assert torch.equal(hop_distances(ei, n, 4, sources=sub), nx_distances(ei, n, 4)[sub])


def test_gcn_adjacency_matches_pyg():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    ei = random_digraph(15, 0.2, 3)
    idx, w = gcn_adjacency(ei, 15)
    ref_idx, ref_w = gcn_norm(ei, None, 15, add_self_loops=True)
    ours = torch.sparse_coo_tensor(idx, w, (15, 15)).to_dense()
    ref = torch.sparse_coo_tensor(ref_idx, ref_w, (15, 15)).to_dense()
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("seed,n,p,K", [(0, 14, 0.12, 10), (4, 18, 0.1, 5), (5, 10, 0.25, 3)])
def test_tree_decomposition_matches_dense(seed, n, p, K, symmetric):
    ei = random_digraph(n, p, seed)
    graph = torch.cat([ei, ei.flip(0)], 1).unique(dim=1) if symmetric else ei
    dist = nx_distances(graph, n, K)
    P = dense_ahat(graph, n)
    powers = [torch.linalg.matrix_power(P, m) for m in range(1, K + 1)]
    ops = tree_decomposition(ei, n, max_hops=K, symmetric=symmetric, dtype=torch.float64, block_size=4)
    assert len(ops) == K
    for level, (idx, w) in enumerate(ops, start=1):
        # dense T^l ⊙ E^{l,K}: T^l[s, v] = [dist(s -> v) == l] (+ the diagonal for l = 1)
        t = (dist == level) | ((dist == 0) if level == 1 else torch.zeros_like(dist, dtype=torch.bool))
        e = sum(powers[level - 1 :])
        expected = torch.where(t, e, torch.zeros_like(e))
        got = torch.zeros(n, n, dtype=torch.float64)
        got.index_put_((idx[0], idx[1]), w, accumulate=True)
        torch.testing.assert_close(got, expected)
        assert bool((w != 0).all())
        # each (s, v) pair at most once
        assert torch.unique(idx[0] * n + idx[1]).numel() == idx.size(1)


def test_tree_decomposition_directed_zero_weights_and_subset():
    # path 0 -> 1 -> 2: BFS from 0 reaches 1 and 2, but no walk 1 -> 0 exists, so weight 0
    ei = torch.tensor([[0, 1], [1, 2]])
    full = tree_decomposition(ei, 3, max_hops=3, drop_zeros=False)
    idx1, w1 = full[0]
    pairs = {tuple(p): float(x) for p, x in zip(idx1.t().tolist(), w1)}
    assert pairs[(0, 1)] == 0.0 and pairs[(0, 0)] > 0
    kept = tree_decomposition(ei, 3, max_hops=3)
    assert all(float(w.abs().min()) > 0 for _, w in kept if w.numel())
    sub = tree_decomposition(ei, 3, levels=[2], max_hops=3, drop_zeros=False)
    assert torch.equal(sub[0][0], full[1][0]) and torch.allclose(sub[0][1], full[1][1])


def test_tree_decomposition_errors():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="levels"):
        tree_decomposition(ei, 3, levels=[0], max_hops=3)
    with pytest.raises(ValueError, match="levels"):
        tree_decomposition(ei, 3, levels=[4], max_hops=3)
    with pytest.raises(ValueError, match="edge_index"):
        tree_decomposition(ei, 2)
    with pytest.raises(TypeError, match="edge_index"):
        tree_decomposition(ei.float(), 3)
    with pytest.raises(ValueError, match="max_hops"):
        hop_distances(ei, 3, 0)
    with pytest.raises(TypeError, match="dtype"):
        tree_decomposition(ei, 3, dtype=torch.long)


@pytest.mark.parametrize("hops,include_self", [(1, False), (2, False), (2, True), (3, True)])
def test_khop_neighbourhood_and_homophily_direct_count(hops, include_self):
    from torch_geometric.utils import k_hop_subgraph

    n = 16
    ei = random_digraph(n, 0.12, 7, self_loops=0)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (n,), generator=g)
    neigh = khop_neighbourhood(ei, n, hops, include_self=include_self, block_size=3)
    nh = neighbourhood_homophily(neigh, y, n)
    for i in range(n):
        subset = set(k_hop_subgraph(i, hops, ei, num_nodes=n)[0].tolist())
        if not include_self:
            subset.discard(i)
        got = set(neigh[0, neigh[1] == i].tolist())
        assert got == subset
        if subset:
            counts = torch.bincount(y[list(subset)], minlength=3)
            assert nh[i].item() == pytest.approx(counts.max().item() / len(subset), abs=1e-12)
        else:
            assert nh[i].item() == 1.0
    # one-hot float labels give the same; a second one in a row is counted as well
    onehot = torch.nn.functional.one_hot(y, 3).float()
    torch.testing.assert_close(neighbourhood_homophily(neigh, onehot, n), nh)


def test_homophily_errors():
    neigh = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match="labels"):
        neighbourhood_homophily(neigh, torch.tensor([0, 1, 2]), 2)
    with pytest.raises(TypeError, match="labels"):
        neighbourhood_homophily(neigh, torch.ones(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="hops"):
        khop_neighbourhood(neigh, 2, 0)


def test_khop_neighbourhood_reference_lowest_id_drop():
    from torch_geometric.utils import k_hop_subgraph

    n = 16
    ei = random_digraph(n, 0.12, 8, self_loops=0)
    neigh = khop_neighbourhood(ei, n, 2, drop_lowest_id=True, block_size=5)
    for i in range(n):
        ref = k_hop_subgraph(i, 2, ei, num_nodes=n)[0][1:]  # rockcor/NHGCN cal_nei_index, includeself=0
        assert sorted(neigh[0, neigh[1] == i].tolist()) == ref.tolist()
    with pytest.raises(ValueError, match="drop_lowest_id"):
        khop_neighbourhood(ei, n, 2, include_self=True, drop_lowest_id=True)
