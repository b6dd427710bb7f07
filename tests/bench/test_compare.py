"""Mean ± std over seeds and interval rankings (gnnkit.bench.compare)."""

import math

import pytest

from gnnkit.bench.compare import SeedSummary, overlapping_pairs, rank_by_intervals, seed_band, summarize


def test_summarize_uses_the_sample_std_and_counts_missing_values():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n, s.missing) == (2.0, 1.0, 3, 0)
    assert (s.low, s.high) == (1.0, 3.0) and s.format(2) == "2.00 ± 1.00"
    one = summarize([0.5])
    assert (one.mean, one.std, one.low) == (0.5, None, None) and one.format(1) == "0.5"
    bad = summarize([1.0, math.nan, None, 3.0])
    assert (bad.mean, bad.n, bad.missing) == (2.0, 2, 2) and bad.format(1) == "2.0 ± 1.4 (2 of 4 not finite)"
    assert summarize([]).format() == "n/a" and summarize([math.inf]).mean is None


def test_rank_counts_only_disjoint_better_intervals():
    s = {"a": SeedSummary(1.5, 0.5, 3), "b": SeedSummary(2.25, 0.75, 3), "c": SeedSummary(3.25, 0.75, 3)}
    ranks = rank_by_intervals(s)  # a = [1, 2], b = [1.5, 3], c = [2.5, 4]
    assert {k: r.rank for k, r in ranks.items()} == {"a": 1, "b": 1, "c": 2}
    assert ranks["b"].overlaps == ("a", "c") and ranks["a"].overlaps == ("b",)
    assert overlapping_pairs(ranks) == [("a", "b"), ("b", "c")]


def test_disjoint_intervals_give_a_strict_ranking_and_one_seed_gives_none():
    s = {"slow": SeedSummary(3.0, 0.1, 3), "fast": SeedSummary(1.0, 0.1, 3), "mid": SeedSummary(2.0, 0.1, 3)}
    ranks = rank_by_intervals(s)
    assert [ranks[k].rank for k in ("fast", "mid", "slow")] == [1, 2, 3]
    assert overlapping_pairs(ranks) == []
    single = rank_by_intervals({"x": SeedSummary(1.0, None, 1), "y": SeedSummary(5.0, 0.1, 3)})
    assert single["x"].rank is None and single["x"].overlaps == ("y",)
    assert single["y"].rank == 1 and single["y"].overlaps == ("x",)  # no claim against a model without an interval
    # Touching intervals overlap.
    touch = rank_by_intervals({"p": SeedSummary(1.0, 0.5, 2), "q": SeedSummary(2.0, 0.5, 2)})
    assert touch["q"].rank == 1 and overlapping_pairs(touch) == [("p", "q")]
    with pytest.raises(TypeError):
        rank_by_intervals({"p": 1.0})


def test_seed_band_interpolates_onto_the_shared_range():
    x, mean, low, high = seed_band([([0.0, 2.0], [2.0, 0.0]), ([1.0, 3.0], [4.0, 2.0])], points=3)
    assert x.tolist() == [1.0, 1.5, 2.0]
    # Seed 0 at 1, 1.5, 2: 1, 0.5, 0; seed 1: 4, 3.5, 3.
    assert mean.tolist() == [2.5, 2.0, 1.5] and low.tolist() == [1.0, 0.5, 0.0] and high.tolist() == [4.0, 3.5, 3.0]
    one = seed_band([([1.0, 2.0], [3.0, 4.0]), ([], [])])
    assert one[0].tolist() == [1.0, 2.0] and one[1].tolist() == one[2].tolist() == [3.0, 4.0]
    apart = seed_band([([0.0, 1.0], [1.0, 1.0]), ([2.0, 3.0], [5.0, 5.0])])
    assert apart[0].tolist() == [2.0] and apart[1].tolist() == [3.0]
    assert seed_band([]) is None
