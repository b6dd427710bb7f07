"""Target normalisation fitted on training data.

For extensive targets (those that grow with the molecule: energies, ZPVE, Cv, ...) a per-element
linear reference is subtracted first: ``y_ref = counts @ w`` where ``counts`` holds the number of
H, C, N, O, F atoms of each molecule and ``w`` is the least-squares fit on the training split (no
intercept). On U0 that reference alone leaves about 0.9 eV MAE, so the network learns the
remaining, much smaller, part. Then each target (or residual) is standardised with the training
mean and standard deviation. Reference and statistics are computed in float64, so that U0
(about -11,000 eV) keeps its last digits; the network sees float32 values of order 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


class TargetNormalizer(nn.Module):
    """Maps selected columns of ``batch.y`` to standardised float32 targets and back.

    Build it with :meth:`fit`. Buffers (saved in ``state_dict``): ``columns [T]``,
    ``weights [5, T]`` (per-element reference, zero for intensive targets), ``mean [T]``,
    ``std [T]``.

    The batch-level methods (``encode``, ``decode``, ``truth``) read ``batch.y`` and
    ``batch.atom_counts``, as :class:`gnnkit.train.fit` expects.

    Shapes:
        normalize: y ``[B, C]`` (all columns), counts ``[B, 5]`` -> ``[B, T]`` float32.
        denormalize: pred ``[B, T]``, counts ``[B, 5]`` -> ``[B, T]`` float64, physical units.
    """

    def __init__(self, columns: Sequence[int], weights: Tensor, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        t = len(columns)
        if weights.dim() != 2 or weights.size(1) != t or mean.shape != (t,) or std.shape != (t,):
            raise ValueError(f"weights must be [K, {t}] and mean/std [{t}], got {tuple(weights.shape)}, {tuple(mean.shape)}, {tuple(std.shape)}")
        if bool((std <= 0).any()):
            raise ValueError("std must be positive (a target is constant on the training data)")
        self.register_buffer("columns", torch.as_tensor(list(columns), dtype=torch.long))
        self.register_buffer("weights", weights.to(torch.float64))
        self.register_buffer("mean", mean.to(torch.float64))
        self.register_buffer("std", std.to(torch.float64))

    @classmethod
    def fit(cls, y: np.ndarray | Tensor, counts: np.ndarray | Tensor, columns: Sequence[int],
            extensive: Sequence[bool]) -> TargetNormalizer:  # fmt: skip
        """Fits the reference and statistics on training targets.

        Args:
            y: targets of the training molecules, all columns.
            counts: element counts of those molecules.
            columns: which columns of ``y`` to predict.
            extensive: per selected column, whether to subtract the per-element reference.

        Shapes:
            y ``[M, C]``, counts ``[M, K]``.
        """
        y = np.asarray(torch.as_tensor(y, dtype=torch.float64))
        counts = np.asarray(torch.as_tensor(counts, dtype=torch.float64))
        columns = list(columns)
        if len(extensive) != len(columns):
            raise ValueError(f"extensive must have one flag per column ({len(columns)}), got {len(extensive)}")
        if y.ndim != 2 or counts.ndim != 2 or len(y) != len(counts) or len(y) < 2:
            raise ValueError(f"y [M, C] and counts [M, K] need the same M >= 2, got {y.shape} and {counts.shape}")
        sel = y[:, columns]
        weights = np.zeros((counts.shape[1], len(columns)))
        ext = np.flatnonzero(np.asarray(extensive, dtype=bool))
        if ext.size:
            # Elements absent from the training data get weight 0 (lstsq's minimum-norm solution).
            weights[:, ext] = np.linalg.lstsq(counts, sel[:, ext], rcond=None)[0]
        resid = sel - counts @ weights
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return cls(columns, t(weights), t(resid.mean(0)), t(resid.std(0)))

    def reference(self, counts: Tensor) -> Tensor:
        """Per-element reference ``counts @ weights`` (float64)."""
        return counts.to(torch.float64) @ self.weights

    def target(self, y: Tensor) -> Tensor:
        """The selected columns in physical units (float64)."""
        return y.index_select(1, self.columns).to(torch.float64)

    def normalize(self, y: Tensor, counts: Tensor) -> Tensor:
        """Standardised targets (float32) from all columns ``y`` and element counts."""
        return ((self.target(y) - self.reference(counts) - self.mean) / self.std).to(torch.float32)

    def denormalize(self, pred: Tensor, counts: Tensor) -> Tensor:
        """Physical-unit predictions (float64) from standardised ones."""
        return pred.to(torch.float64) * self.std + self.mean + self.reference(counts)

    # The batch-level interface the training loop uses (gnnkit.train.Targets).
    def encode(self, batch) -> Tensor:
        return self.normalize(batch.y, batch.atom_counts)

    def decode(self, pred: Tensor, batch) -> Tensor:
        return self.denormalize(pred, batch.atom_counts)

    def truth(self, batch) -> Tensor:
        return self.target(batch.y)

    def extra_repr(self) -> str:
        return f"columns={self.columns.tolist()}"


__all__ = ["TargetNormalizer"]
