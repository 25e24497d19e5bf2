"""Statistics checked against numbers worked out by hand."""

import math

import pytest

from experiments import stats


def test_bootstrap_ci_brackets_the_mean_and_stays_inside_the_data_range():
    ci = stats.bootstrap_ci([1, 2, 3, 4, 5])
    assert ci.mean == 3.0 and ci.n == 5
    assert 1 <= ci.low < 3 < ci.high <= 5


def test_bootstrap_ci_width_matches_the_normal_approximation_for_a_large_sample():
    # 400 coin flips with mean 0.5: standard error sqrt(0.25/400) = 0.025, so the 95% CI is about 0.5 ± 0.049.
    ci = stats.bootstrap_ci([0, 1] * 200)
    assert ci.mean == 0.5
    assert ci.low == pytest.approx(0.451, abs=0.01)
    assert ci.high == pytest.approx(0.549, abs=0.01)


def test_bootstrap_ci_is_deterministic_and_degenerate_cases_are_exact():
    assert stats.bootstrap_ci([0.2, 0.9, 0.4]) == stats.bootstrap_ci([0.2, 0.9, 0.4])
    assert stats.bootstrap_ci([]) == stats.Interval(mean=None, low=None, high=None, n=0)
    assert stats.bootstrap_ci([7]) == stats.Interval(mean=7.0, low=7.0, high=7.0, n=1)
    assert stats.bootstrap_ci([0.5, 0.5, 0.5]) == stats.Interval(mean=0.5, low=0.5, high=0.5, n=3)


def test_bootstrap_ci_refuses_nan():
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, math.nan])


def test_exact_permutation_p_values_worked_by_hand():
    # Five equal positive differences: only "all +" and "all -" of the 32 sign patterns reach |sum| = 5.
    assert stats.permutation_test([1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    # Six: 2 of 64.
    assert stats.permutation_test([1] * 6) == pytest.approx(2 / 64)
    # Zeros do not count as pairs; a balanced set has observed sum 0: every pattern is as extreme.
    assert stats.permutation_test([1, -1, 1, -1, 0, 0]) == 1.0
    assert stats.permutation_test([0, 0, 0]) == 1.0
    # [2, 1, 1]: patterns with |sum| >= 4 are (+,+,+) and (-,-,-) → 2 of 8.
    assert stats.permutation_test([2, 1, 1]) == pytest.approx(2 / 8)


def test_monte_carlo_permutation_detects_a_real_difference_and_not_a_null_one():
    import numpy as np

    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 200)
    shifted = stats.paired_comparison(a, a + 0.05 + rng.normal(0, 0.05, 200))
    assert shifted.p_value < 0.001
    assert shifted.ci_low < 0.05 < shifted.ci_high
    noise = stats.paired_comparison(a, a + rng.normal(0, 0.05, 200))
    assert noise.p_value > 0.05
    assert noise.ci_low < 0 < noise.ci_high


def test_paired_comparison_of_hand_made_scores():
    a = [0, 0, 1, 0, 1, 0]
    b = [1, 1, 1, 1, 1, 1]
    result = stats.paired_comparison(a, b)
    assert result.mean_a == pytest.approx(2 / 6)
    assert result.mean_b == 1.0
    assert result.mean_diff == pytest.approx(4 / 6)
    assert result.p_value == pytest.approx(2 / 16)  # four non-zero differences, all +1
    with pytest.raises(ValueError):
        stats.paired_comparison([1, 2], [1])


def test_mcnemar_exact_binomial_worked_by_hand():
    # 10 discordant pairs, all favouring B: p = 2 * 0.5**10.
    a = [False] * 10 + [True] * 5
    b = [True] * 10 + [True] * 5
    result = stats.mcnemar(a, b)
    assert (result.a_only, result.b_only, result.both, result.neither) == (0, 10, 5, 0)
    assert result.p_value == pytest.approx(2 * 0.5**10)
    # 1 vs 9: p = 2 * (C(10,0) + C(10,1)) / 2**10 = 22/1024.
    a = [True] + [False] * 9
    b = [False] + [True] * 9
    assert stats.mcnemar(a, b).p_value == pytest.approx(22 / 1024)
    # No discordant pairs: nothing to detect.
    assert stats.mcnemar([True, False], [True, False]).p_value == 1.0


def test_percentiles_use_linear_interpolation():
    assert stats.percentiles(list(range(1, 101))) == {"p50": 50.5, "p95": pytest.approx(95.05)}
    assert stats.percentiles([]) == {"p50": None, "p95": None}


@pytest.mark.parametrize(
    ("p", "text"),
    [(0.01, "p = 0.01"), (0.0123, "p = 0.012"), (0.5, "p = 0.50"), (0.0004, "p < 0.001"), (None, "p unavailable")],
)
def test_format_p(p, text):
    assert stats.format_p(p) == text


def test_verdicts_in_plain_words():
    assert stats.verdict(metric="accuracy", p_value=0.01, diff=0.2, b_name="B") == "B is better on accuracy, p = 0.01"
    assert stats.verdict(metric="accuracy", p_value=0.01, diff=-0.2, a_name="A") == "A is better on accuracy, p = 0.01"
    # Lower latency is better: B slower → A wins.
    assert (
        stats.verdict(metric="latency", p_value=0.002, diff=30.0, higher_is_better=False)
        == "A is better on latency, p = 0.002"
    )
    assert stats.verdict(metric="latency", p_value=0.42, diff=3.0) == "no detectable difference on latency (p = 0.42)"
    assert stats.verdict(metric="x", p_value=None, diff=None, n=0) == "not enough paired data to compare x"
    joined = stats.join_verdicts(
        ["B is better on accuracy, p = 0.01", "no detectable difference on latency (p = 0.42)"]
    )
    assert joined == "B is better on accuracy, p = 0.01; no detectable difference on latency (p = 0.42)."


def test_fisher_exact_for_unpaired_rates_worked_by_hand():
    # [[0, 10], [10, 0]]: only this table and its mirror are as extreme: p = 2 / C(20, 10).
    result = stats.fisher_rates(0, 10, 10, 10)
    assert result.value_a == 0.0 and result.value_b == 1.0 and result.diff == 1.0
    assert result.p_value == pytest.approx(2 / 184756)
    assert stats.fisher_rates(5, 10, 5, 10).p_value == 1.0
    assert stats.fisher_rates(0, 0, 1, 2).p_value is None


def test_mann_whitney_worked_by_hand():
    # [1,2,3] vs [4,5,6]: 1 of the C(6,3) = 20 orderings is this extreme on each side: exact p = 2/20.
    result = stats.mann_whitney([1, 2, 3], [4, 5, 6])
    assert result.p_value == pytest.approx(0.1)
    assert (result.value_a, result.value_b, result.diff) == (2.0, 5.0, 3.0)
    assert stats.mann_whitney([1, 1], [1, 1]).p_value == 1.0
    assert stats.mann_whitney([], [1]).p_value is None
