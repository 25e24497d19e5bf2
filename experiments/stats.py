"""Statistics for comparison reports: bootstrap intervals, paired tests, McNemar, percentiles, plain-words verdicts.

Everything is deterministic: resampling uses a fixed seed, so a report reads the same every time it is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_SEED = 20240601
DEFAULT_RESAMPLES = 10_000
ALPHA = 0.05
_EXACT_PERMUTATION_MAX_N = 16  # 2**16 sign patterns: enumerate exactly below this many non-zero differences
_CHUNK = 500_000  # resampled values per chunk, to bound memory


@dataclass(frozen=True)
class Interval:
    mean: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    n: int
    mean_a: float | None
    mean_b: float | None
    mean_diff: float | None  # mean of (b - a)
    ci_low: float | None  # bootstrap 95% CI of the mean difference
    ci_high: float | None
    p_value: float | None
    test: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class McNemarResult:
    n: int
    a_only: int  # pairs where only A passed
    b_only: int  # pairs where only B passed
    both: int
    neither: int
    p_value: float | None
    test: str = "mcnemar_exact"

    def as_dict(self) -> dict:
        return asdict(self)


def _array(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=float)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("values must be finite numbers")
    return arr


def _bootstrap_means(arr: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = arr.size
    per_chunk = max(1, _CHUNK // n)
    means = np.empty(n_resamples, dtype=float)
    done = 0
    while done < n_resamples:
        take = min(per_chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(take, n))
        means[done : done + take] = arr[idx].mean(axis=1)
        done += take
    return means


def bootstrap_ci(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Mean with a percentile-bootstrap confidence interval. n=0 → all None; constant data → a zero-width interval."""
    arr = _array(values)
    if arr.size == 0:
        return Interval(mean=None, low=None, high=None, n=0)
    mean = float(arr.mean())
    if arr.size == 1 or np.all(arr == arr[0]):
        return Interval(mean=mean, low=mean, high=mean, n=int(arr.size))
    means = _bootstrap_means(arr, n_resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean=mean, low=float(low), high=float(high), n=int(arr.size))


def permutation_test(
    diffs: Sequence[float], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> float:
    """Two-sided paired sign-flip permutation test of mean(diffs) == 0.

    Exact (every sign pattern) when there are at most 16 non-zero differences; otherwise Monte Carlo with the
    (count + 1) / (resamples + 1) correction, so the p-value is never 0."""
    arr = _array(diffs)
    nonzero = arr[arr != 0]
    if nonzero.size == 0:
        return 1.0
    observed = abs(nonzero.sum())
    tolerance = 1e-9 * max(1.0, observed)
    if nonzero.size <= _EXACT_PERMUTATION_MAX_N:
        m = nonzero.size
        patterns = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        sums = np.abs(patterns @ nonzero)
        return float(np.mean(sums >= observed - tolerance))
    rng = np.random.default_rng(seed)
    count = 0
    per_chunk = max(1, _CHUNK // nonzero.size)
    done = 0
    while done < n_resamples:
        take = min(per_chunk, n_resamples - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(take, nonzero.size))
        count += int(np.sum(np.abs(signs @ nonzero) >= observed - tolerance))
        done += take
    return (count + 1) / (n_resamples + 1)


def paired_comparison(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedComparison:
    """Compare paired scores (same items): mean difference b - a with a bootstrap CI and a permutation p-value."""
    arr_a, arr_b = _array(a), _array(b)
    if arr_a.size != arr_b.size:
        raise ValueError("paired samples must have the same length")
    if arr_a.size == 0:
        return PairedComparison(0, None, None, None, None, None, None, "paired_permutation")
    diffs = arr_b - arr_a
    ci = bootstrap_ci(diffs, n_resamples=n_resamples, seed=seed)
    return PairedComparison(
        n=int(arr_a.size),
        mean_a=float(arr_a.mean()),
        mean_b=float(arr_b.mean()),
        mean_diff=float(diffs.mean()),
        ci_low=ci.low,
        ci_high=ci.high,
        p_value=permutation_test(diffs, n_resamples=n_resamples, seed=seed),
        test="paired_permutation",
    )


def mcnemar(a_passed: Sequence[bool], b_passed: Sequence[bool]) -> McNemarResult:
    """Exact McNemar test on paired pass/fail outcomes (binomial test on the discordant pairs)."""
    from scipy.stats import binomtest

    if len(a_passed) != len(b_passed):
        raise ValueError("paired samples must have the same length")
    a_only = sum(1 for x, y in zip(a_passed, b_passed, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a_passed, b_passed, strict=True) if y and not x)
    both = sum(1 for x, y in zip(a_passed, b_passed, strict=True) if x and y)
    neither = len(a_passed) - a_only - b_only - both
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(binomtest(b_only, discordant, 0.5).pvalue)
    return McNemarResult(
        n=len(a_passed), a_only=a_only, b_only=b_only, both=both, neither=neither, p_value=min(1.0, p_value)
    )


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95)) -> dict[str, float | None]:
    """{"p50": ..., "p95": ...} with linear interpolation; None for an empty sample."""
    arr = _array(values)
    if arr.size == 0:
        return {f"p{p:g}": None for p in points}
    return {f"p{p:g}": float(v) for p, v in zip(points, np.percentile(arr, list(points)), strict=True)}


def format_p(p: float | None) -> str:
    """ "p = 0.01", "p = 0.003", "p < 0.001"; p-values are stated to two significant figures at most."""
    if p is None or math.isnan(p):
        return "p unavailable"
    if p < 0.001:
        return "p < 0.001"
    if p >= 0.1:
        return f"p = {p:.2f}"
    return f"p = {float(f'{p:.2g}'):g}"


def verdict(
    *,
    metric: str,
    p_value: float | None,
    diff: float | None,
    higher_is_better: bool = True,
    a_name: str = "A",
    b_name: str = "B",
    n: int | None = None,
    alpha: float = ALPHA,
) -> str:
    """One sentence a person can act on: "B is better on accuracy, p = 0.01" or
    "no detectable difference on latency (p = 0.42)". `diff` is mean(B) - mean(A)."""
    if n == 0 or p_value is None or diff is None:
        return f"not enough paired data to compare {metric}"
    if p_value < alpha and diff != 0:
        b_better = (diff > 0) == higher_is_better
        winner = b_name if b_better else a_name
        return f"{winner} is better on {metric}, {format_p(p_value)}"
    return f"no detectable difference on {metric} ({format_p(p_value)})"


def join_verdicts(sentences: Sequence[str]) -> str:
    if not sentences:
        return "nothing to compare"
    text = "; ".join(sentences)
    if text.startswith(("no ", "not ")):
        text = text[0].upper() + text[1:]
    return text + "."


@dataclass(frozen=True)
class TwoSampleResult:
    n_a: int
    n_b: int
    value_a: float | None  # rate or mean of A
    value_b: float | None
    diff: float | None  # value_b - value_a
    p_value: float | None
    test: str

    def as_dict(self) -> dict:
        return asdict(self)


def fisher_rates(a_events: int, a_n: int, b_events: int, b_n: int) -> TwoSampleResult:
    """Compare two proportions (unpaired: error rates, thumbs-up rates of live traffic) with Fisher's exact test."""
    from scipy.stats import fisher_exact

    if a_n == 0 or b_n == 0:
        return TwoSampleResult(a_n, b_n, None, None, None, None, "fisher_exact")
    rate_a, rate_b = a_events / a_n, b_events / b_n
    _, p_value = fisher_exact([[a_events, a_n - a_events], [b_events, b_n - b_events]], alternative="two-sided")
    return TwoSampleResult(a_n, b_n, rate_a, rate_b, rate_b - rate_a, min(1.0, float(p_value)), "fisher_exact")


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TwoSampleResult:
    """Compare two unpaired samples (latencies, costs, scores of live traffic): two-sided Mann-Whitney U; the
    reported values are the means."""
    from scipy.stats import mannwhitneyu

    arr_a, arr_b = _array(a), _array(b)
    if arr_a.size == 0 or arr_b.size == 0:
        return TwoSampleResult(int(arr_a.size), int(arr_b.size), None, None, None, None, "mann_whitney_u")
    mean_a, mean_b = float(arr_a.mean()), float(arr_b.mean())
    if np.all(arr_a == arr_a[0]) and np.all(arr_b == arr_a[0]):
        p_value = 1.0
    else:
        p_value = float(mannwhitneyu(arr_a, arr_b, alternative="two-sided").pvalue)
    return TwoSampleResult(int(arr_a.size), int(arr_b.size), mean_a, mean_b, mean_b - mean_a, p_value, "mann_whitney_u")
