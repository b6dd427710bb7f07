"""Sparse scatter kernels: pure tensor functions, torch on CPU and Triton on CUDA.

Every function dispatches on the device of its input (see :func:`set_backend`); both paths have
the same signature and give the same results.
"""

from gnnkit.ops._backend import get_backend, set_backend, use_backend
from gnnkit.ops.csr import CSR
from gnnkit.ops.edge_network import DegreeBuckets, outer_aggregate
from gnnkit.ops.hops import (
    gcn_adjacency,
    hop_distances,
    khop_neighbourhood,
    neighbourhood_homophily,
    tree_decomposition,
)
from gnnkit.ops.reduce import scatter, scatter_softmax, segment
from gnnkit.ops.spmm import spmm

__all__ = [
    "CSR",
    "scatter",
    "segment",
    "scatter_softmax",
    "spmm",
    "outer_aggregate",
    "DegreeBuckets",
    "hop_distances",
    "gcn_adjacency",
    "tree_decomposition",
    "khop_neighbourhood",
    "neighbourhood_homophily",
    "set_backend",
    "get_backend",
    "use_backend",
]
