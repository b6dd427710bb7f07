"""Tree Decomposed Graph Neural Network (Wang & Derr, CIKM 2021, "Tree Decomposed Graph Neural
Network"; reference code yuwvandy/TDGNN).

``Z = MLP(X)`` once, then ``out = Z + sum_{l in levels} (T^l ⊙ E^{l,K}) Z`` (TDGNN-s) or
``out = w_0 Z + sum_i w_i (T^{l_i} ⊙ E^{l_i,K}) Z`` with free scalars ``w`` (TDGNN-w). The
operators come from :func:`gnnkit.ops.tree_decomposition`; build them once per graph with
:meth:`TDGNN.operators` (or :meth:`TreeOperators.from_pairs`) and pass them to every forward
call. All levels are stacked into one constant sparse matrix with a prebuilt transpose, so a
forward/backward pass costs one sparse product each way.

Choices taken from the reference code (the paper leaves them open):

* the MLP is ``Linear(dropout_2(ReLU(Linear(dropout_1(X)))))``, propagation happens once after it;
* the identity term ``Z`` is always there, and the self-loop weight ``sum_{m=1..K} (Â^m)[s, s]``
  sits inside level 1 (so it is only used when ``1 in levels``);
* ``K`` (``max_hops``) is both the BFS depth and the largest power of ``Â``; the reference's
  ``--K`` flag is unused, its ``tree_layer`` (10) plays this role;
* on directed graphs the operators are not symmetrised (see :func:`gnnkit.ops.tree_decomposition`);
* TDGNN-w's scalars start at 1, are not softmax-normalised and get their own weight decay
  (``wd3``, see :meth:`TDGNN.param_groups`).

Sparse ``x`` (a COO tensor) is supported: dropout then acts on the stored values, which is the
same distribution as dense dropout on a matrix whose other entries are zero, and the first
linear map becomes a sparse product (bag-of-words features are ~1% dense).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.nn import feature_dropout
from gnnkit.ops import tree_decomposition



class _ConstantSpMM(torch.autograd.Function):
    """``a @ x`` for a constant sparse ``a`` whose transpose ``a_t`` is prebuilt, so the backward
    is one more sparse product (no gradient for the weights, no per-call re-sorting)."""

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor, a_t: Tensor) -> Tensor:
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return torch.sparse.mm(ctx.a_t, grad.contiguous()), None, None


@dataclass(frozen=True, eq=False)
class TreeOperators:
    """The levels ``T^l ⊙ E^{l,K}`` stacked into one ``[L * N, N]`` sparse CSR matrix (block ``i``
    = level ``levels[i]``, rows = targets), with its transpose, so that one sparse product
    propagates ``Z`` through every level. Build with :meth:`TDGNN.operators` or
    :meth:`from_pairs`.

    Attributes:
        stacked: ``[L * N, N]`` sparse CSR, ``stacked[i * N + v, s]`` = weight of ``s -> v`` in
            level ``levels[i]``.
        stacked_t: its transpose ``[N, L * N]`` (sparse CSR).
        num_levels: ``L``.
        num_nodes: ``N``.
    """

    stacked: Tensor
    stacked_t: Tensor
    num_levels: int
    num_nodes: int

    @staticmethod
    def from_pairs(pairs: Sequence[tuple[Tensor, Tensor]], num_nodes: int) -> "TreeOperators":
        """From the ``(edge_index, weight)`` list of :func:`gnnkit.ops.tree_decomposition`."""
        if not pairs:
            raise ValueError("pairs must hold at least one level")
        rows, cols, vals = [], [], []
        for i, (index, weight) in enumerate(pairs):
            rows.append(index[1] + i * num_nodes)
            cols.append(index[0])
            vals.append(weight)
        row, col, val = torch.cat(rows), torch.cat(cols), torch.cat(vals)
        shape = (len(pairs) * num_nodes, num_nodes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            a = torch.sparse_coo_tensor(torch.stack([row, col]), val, shape).coalesce().to_sparse_csr()
            a_t = torch.sparse_coo_tensor(torch.stack([col, row]), val, shape[::-1]).coalesce().to_sparse_csr()
        return TreeOperators(a, a_t, len(pairs), num_nodes)

    def to(self, device: torch.device | str) -> "TreeOperators":
        return TreeOperators(self.stacked.to(device), self.stacked_t.to(device), self.num_levels, self.num_nodes)

    def propagate(self, z: Tensor) -> Tensor:
        """``[L, N, C]``: ``z`` propagated through each level."""
        if z.size(0) != self.num_nodes:
            raise ValueError(f"z has {z.size(0)} rows but the operators are built for {self.num_nodes} nodes")
        a, a_t = self.stacked.to(z.dtype), self.stacked_t.to(z.dtype)
        return _ConstantSpMM.apply(z.contiguous(), a, a_t).view(self.num_levels, self.num_nodes, -1)


class TDGNN(nn.Module):
    """TDGNN node classifier. Returns logits (the reference applies ``log_softmax`` and
    ``nll_loss``, which is ``cross_entropy`` on these logits).

    Args:
        in_channels: node feature size.
        out_channels: number of classes.
        levels: the tree levels ``l`` used (the reference's ``--layers``).
        hidden: hidden size of the MLP.
        weighted: ``False`` for TDGNN-s (plain sum), ``True`` for TDGNN-w (learnable scalars).
        dropout1: dropout on the input features.
        dropout2: dropout on the hidden layer.

    Shapes:
        x ``[N, in_channels]`` (dense or sparse COO), :class:`TreeOperators` over ``L =
        len(levels)`` levels -> ``[N, out_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        levels: Sequence[int] = (1, 2, 3, 4),
        hidden: int = 64,
        weighted: bool = False,
        dropout1: float = 0.5,
        dropout2: float = 0.5,
    ) -> None:
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or min(levels) < 1:
            raise ValueError(f"levels must be a non-empty list of ints >= 1, got {levels}")
        for name, p in (("dropout1", dropout1), ("dropout2", dropout2)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.levels, self.weighted = levels, weighted
        self.dropout1, self.dropout2 = dropout1, dropout2
        self.lin1 = nn.Linear(in_channels, hidden)
        self.lin2 = nn.Linear(hidden, out_channels)
        self.level_weight = nn.Parameter(torch.ones(len(levels) + 1)) if weighted else None

    @staticmethod
    def operators(
        edge_index: Tensor,
        num_nodes: int,
        levels: Sequence[int],
        max_hops: int = 10,
        symmetric: bool = False,
    ) -> TreeOperators:
        """Builds the stacked operators of ``levels`` with :func:`gnnkit.ops.tree_decomposition`."""
        pairs = tree_decomposition(edge_index, num_nodes, levels, max_hops, symmetric)
        return TreeOperators.from_pairs(pairs, num_nodes)

    def param_groups(self, wd1: float, wd2: float, wd3: float = 0.0) -> list[dict[str, Any]]:
        """Adam parameter groups with the reference's three weight decays."""
        groups = [
            {"params": list(self.lin1.parameters()), "weight_decay": wd1},
            {"params": list(self.lin2.parameters()), "weight_decay": wd2},
        ]
        if self.level_weight is not None:
            groups.append({"params": [self.level_weight], "weight_decay": wd3})
        return groups

    def forward(self, x: Tensor, operators: TreeOperators) -> Tensor:
        if not isinstance(operators, TreeOperators):
            raise TypeError(f"operators must be TreeOperators (see TDGNN.operators), got {type(operators).__name__}")
        if operators.num_levels != len(self.levels):
            raise ValueError(f"expected operators for {len(self.levels)} levels {self.levels}, got {operators.num_levels}")
        x = feature_dropout(x, self.dropout1, self.training)  # x may be sparse COO
        h = torch.sparse.mm(x, self.lin1.weight.t()) + self.lin1.bias if x.is_sparse else self.lin1(x)
        z = self.lin2(F.dropout(F.relu(h), self.dropout2, self.training))
        hz = operators.propagate(z)  # [L, N, C]
        w = self.level_weight
        if w is None:
            return z + hz.sum(0)
        return w[0] * z + (w[1:].view(-1, 1, 1) * hz).sum(0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, weighted={self.weighted}, dropout=({self.dropout1}, {self.dropout2})"


def build_tdgnn_s(in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> TDGNN:
    """``build_model("tdgnn-s", ...)``: :class:`TDGNN` with ``weighted=False``."""
    return TDGNN(in_channels, out_channels, weighted=False, **config)


def build_tdgnn_w(in_channels: int, out_channels: int, edge_dim: int | None = None, **config: Any) -> TDGNN:
    """``build_model("tdgnn-w", ...)``: :class:`TDGNN` with ``weighted=True``."""
    return TDGNN(in_channels, out_channels, weighted=True, **config)


__all__ = ["TDGNN", "TreeOperators", "build_tdgnn_s", "build_tdgnn_w"]
