"""CSR.from_edge_index: sorted order, offsets, permutation and transpose against direct counts."""

import pytest
import torch

from gnnkit.ops import CSR


def random_edge_index(num_src: int, num_dst: int, num_edges: int, isolated: int = 0) -> torch.Tensor:
    """Random multigraph (duplicates and self-loops allowed); the last ``isolated`` nodes on each
    side have no edge at all."""
    src = torch.randint(0, max(num_src - isolated, 1), (num_edges,))
    dst = torch.randint(0, max(num_dst - isolated, 1), (num_edges,))
    return torch.stack([src, dst])


def check_csr(csr: CSR, edge_index: torch.Tensor, num_src: int, num_dst: int) -> None:
    src, dst = edge_index.long()
    n_edges = src.numel()
    assert csr.num_src == num_src and csr.num_dst == num_dst and csr.num_edges == n_edges
    # perm reorders edge_index into (row=target, col=source), sorted by (target, source).
    assert torch.equal(csr.row, dst[csr.perm]) and torch.equal(csr.col, src[csr.perm])
    assert torch.equal(torch.sort(csr.perm).values, torch.arange(n_edges))
    keys = csr.row * max(num_src, 1) + csr.col
    assert bool((keys[1:] >= keys[:-1]).all())
    # Stable: equal (target, source) pairs keep edge_index order.
    same = keys[1:] == keys[:-1]
    assert bool((csr.perm[1:][same] > csr.perm[:-1][same]).all())
    expected_rowptr = torch.zeros(num_dst + 1, dtype=torch.long)
    for v in range(num_dst):
        expected_rowptr[v + 1] = expected_rowptr[v] + int((dst == v).sum())
    assert torch.equal(csr.rowptr, expected_rowptr)
    for v in range(num_dst):
        assert bool((csr.row[csr.rowptr[v] : csr.rowptr[v + 1]] == v).all())
    # Transpose: edges in source order, t_perm points into the target-sorted order.
    assert torch.equal(torch.sort(csr.t_perm).values, torch.arange(n_edges))
    assert torch.equal(csr.t_col, csr.row[csr.t_perm])
    t_src = csr.col[csr.t_perm]
    t_keys = t_src * max(num_dst, 1) + csr.t_col
    assert bool((t_keys[1:] >= t_keys[:-1]).all())
    expected_t = torch.zeros(num_src + 1, dtype=torch.long)
    for u in range(num_src):
        expected_t[u + 1] = expected_t[u] + int((src == u).sum())
    assert torch.equal(csr.t_rowptr, expected_t)
    assert torch.equal(csr.degree(torch.long), expected_rowptr[1:] - expected_rowptr[:-1])


@pytest.mark.parametrize(
    "num_nodes,num_edges,isolated",
    [(20, 60, 4), (7, 0, 0), (0, 0, 0), (1, 3, 0), (1, 0, 0), (30, 200, 0)],
    ids=["isolated", "no-edges", "empty", "single-self-loops", "single-bare", "dense-multi"],
)
def test_from_edge_index(num_nodes, num_edges, isolated):
    edge_index = random_edge_index(num_nodes, num_nodes, num_edges, isolated)
    csr = CSR.from_edge_index(edge_index, num_nodes)
    check_csr(csr, edge_index, num_nodes, num_nodes)


def test_bipartite_and_int32():
    edge_index = random_edge_index(9, 4, 25).int()
    csr = CSR.from_edge_index(edge_index, (9, 4))
    check_csr(csr, edge_index, 9, 4)
    assert csr.rowptr.dtype == torch.long and csr.col.dtype == torch.long


def test_permute_reorders_edge_tensors():
    edge_index = random_edge_index(10, 10, 30)
    csr = CSR.from_edge_index(edge_index, 10)
    attr = torch.randn(30, 3)
    assert torch.equal(csr.permute(attr), attr[csr.perm])
    with pytest.raises(ValueError, match="per-edge tensor has 29 rows"):
        csr.permute(attr[:29])


def test_to_keeps_fields():
    csr = CSR.from_edge_index(random_edge_index(5, 5, 8), 5)
    moved = csr.to("cpu")
    assert moved.num_src == 5 and torch.equal(moved.rowptr, csr.rowptr) and moved.device.type == "cpu"
