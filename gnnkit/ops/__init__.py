"""Sparse scatter kernels: pure tensor functions, torch on CPU and Triton on CUDA.

Every function dispatches on the device of its input (see :func:`set_backend`); both paths have
the same signature and give the same results. Underneath, each kernel is a ``torch.library``
custom op (``torch.ops.gnnkit.*``), so compiled graphs keep it as one node.

The public functions check their arguments (index values included) and raise ``ValueError`` /
``TypeError`` naming the bad one. The ``*_unchecked`` variants skip every check that would read a
tensor value; they are what layers call on a validated :class:`gnnkit.nn.Graph`.
"""

from gnnkit.ops._backend import get_backend, set_backend, use_backend
from gnnkit.ops.buckets import DegreeBuckets
from gnnkit.ops.csr import CSR
from gnnkit.ops.outer import cpu_buckets, outer_aggregate, outer_aggregate_flops, outer_aggregate_unchecked
from gnnkit.ops.hops import (
    gcn_adjacency,
    hop_distances,
    khop_neighbourhood,
    neighbourhood_homophily,
    tree_decomposition,
)
from gnnkit.ops.reduce import (
    scatter,
    scatter_softmax,
    scatter_softmax_unchecked,
    scatter_unchecked,
    segment,
    segment_unchecked,
)
from gnnkit.ops.spmm import spmm, spmm_unchecked

__all__ = [
    "CSR",
    "scatter",
    "segment",
    "scatter_softmax",
    "spmm",
    "outer_aggregate",
    "outer_aggregate_flops",
    "scatter_unchecked",
    "segment_unchecked",
    "scatter_softmax_unchecked",
    "spmm_unchecked",
    "outer_aggregate_unchecked",
    "DegreeBuckets",
    "cpu_buckets",
    "hop_distances",
    "gcn_adjacency",
    "tree_decomposition",
    "khop_neighbourhood",
    "neighbourhood_homophily",
    "set_backend",
    "get_backend",
    "use_backend",
]
