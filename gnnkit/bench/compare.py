"""Comparing models over repeated seeds: mean ± std, and rankings that claim only what the
spread allows.

With a handful of seeds a difference of means smaller than the spread is noise. Here each model
gets the interval ``mean ± std`` (sample standard deviation over its seeds); a model is ranked
below another only when their intervals are disjoint, and every pair of overlapping intervals is
listed as "no ranking claimed". ``mean ± std`` of three seeds is a rough interval, not a test:
the reports say so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation of one quantity over seeds (``std`` is ``None`` for a
    single value); ``n`` values were finite, ``missing`` were not (a diverged run)."""

    mean: float | None
    std: float | None
    n: int
    missing: int = 0

    @property
    def low(self) -> float | None:
        return None if self.mean is None or self.std is None else self.mean - self.std

    @property
    def high(self) -> float | None:
        return None if self.mean is None or self.std is None else self.mean + self.std

    def format(self, digits: int = 4) -> str:
        """``"0.5123 ± 0.0310"``, ``"0.5123"`` for one value, ``"n/a"`` for none; ``" (1 of 3
        diverged)"`` is appended when values are missing."""
        if self.mean is None:
            text = "n/a"
        elif self.std is None:
            text = f"{self.mean:.{digits}f}"
        else:
            text = f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        if self.missing:
            text += f" ({self.missing} of {self.n + self.missing} not finite)"
        return text


def summarize(values: Iterable[float | None]) -> SeedSummary:
    """:class:`SeedSummary` of ``values``; ``None`` and non-finite values count as missing."""
    values = list(values)
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    missing = len(values) - len(finite)
    if not finite:
        return SeedSummary(None, None, 0, missing)
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return SeedSummary(statistics.fmean(finite), std, len(finite), missing)


@dataclass(frozen=True)
class Ranking:
    """Where one model stands (lower values are better, e.g. an MAE).

    Attributes:
        rank: 1 + the number of models whose interval lies entirely below this one's; ``None``
            when this model has no interval (one seed, or no finite value).
        overlaps: models whose interval overlaps this one's, so that no ranking is claimed
            between them (all others when this model has no interval).
    """

    rank: int | None
    overlaps: tuple[str, ...]


def rank_by_intervals(summaries: Mapping[str, SeedSummary]) -> dict[str, Ranking]:
    """Rankings of the models in ``summaries`` by their ``mean ± std`` intervals.

    Example: intervals a = [1, 2], b = [1.5, 3], c = [2.5, 4] give ranks a 1, b 1, c 2 (only a
    lies entirely below c) and overlaps a-b and b-c.

    Raises:
        TypeError: a value is not a :class:`SeedSummary`.
    """
    names = list(summaries)
    for name in names:
        if not isinstance(summaries[name], SeedSummary):
            raise TypeError(f"summaries[{name!r}] must be a SeedSummary (see summarize), got {type(summaries[name]).__name__}")
    out: dict[str, Ranking] = {}
    for name in names:
        s = summaries[name]
        if s.low is None:
            out[name] = Ranking(None, tuple(n for n in names if n != name))
            continue
        below = overlaps = ()
        for other in names:
            if other == name:
                continue
            o = summaries[other]
            if o.low is None:
                overlaps += (other,)
            elif o.high < s.low:
                below += (other,)
            elif o.low <= s.high and s.low <= o.high:
                overlaps += (other,)
        out[name] = Ranking(1 + len(below), overlaps)
    return out


def overlapping_pairs(rankings: Mapping[str, Ranking]) -> list[tuple[str, str]]:
    """Each unordered pair of models between which no ranking is claimed, in the order of
    ``rankings``."""
    names = list(rankings)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if b in rankings[a].overlaps or a in rankings[b].overlaps:
                pairs.append((a, b))
    return pairs



def seed_band(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]], points: int = 60
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean, lowest and highest over seeds of curves ``(x, y)`` sampled at different ``x`` (e.g.
    validation MAE at each seed's own evaluation times), linearly interpolated onto ``points``
    common ``x`` in the range all curves cover. One curve is returned as it is; curves whose
    ranges do not overlap give the single point where the last one starts. Empty curves are
    ignored; ``None`` if none is left.

    Shapes:
        each ``x``, ``y``: ``[n_i]``, ``x`` increasing -> ``x, mean, low, high``: ``[points]``
        (``[n]`` for one curve, ``[1]`` without overlap).
    """
    arrays = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not arrays:
        return None
    if len(arrays) == 1:
        x, y = arrays[0]
        return x, y, y, y
    lo, hi = max(x[0] for x, _ in arrays), min(x[-1] for x, _ in arrays)
    grid = np.linspace(lo, hi, points) if lo < hi else np.array([lo])
    ys = np.array([np.interp(grid, x, y) for x, y in arrays])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


__all__ = ["SeedSummary", "summarize", "Ranking", "rank_by_intervals", "overlapping_pairs", "seed_band"]
