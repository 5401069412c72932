"""Layer 6: the interval kinds the workbench prints, each with its coverage tested
(``tests/test_coverage.py`` draws from known distributions and requires >= 93 % for a
nominal 95 %; docs/metrics.md gives the measured coverage).

- :func:`mean_interval`: a t-interval of the mean of per-replication values, clipped to
  the values a metric can take (a rate between 0 and 1, a duration or count >= 0).
- :func:`count_interval`: for counts per run (kicks, error exits): the hull of the
  t-interval and the exact Poisson (Garwood) interval of the mean, never below 0, so a
  rare event seen in no replication still gets an upper bound.
- :func:`proportion_interval`: Clopper-Pearson for "runs that ended in X" (k of n).
- :func:`paired_p_value` and :func:`holm`: the paired t-test of a difference and Holm's
  step-down correction over a table's family of differences.
- :func:`tail_interval`: a pooled tail percentile (p99, p99.9) with a replication
  bootstrap, printed only from :data:`TAIL_MIN_REPS` replications on (below that its
  coverage was measured at 70-90 %).
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st

LEVEL = 0.95
# the replications from which the pooled-tail bootstrap reaches >= 93 % coverage on the
# known distributions of tests/test_coverage.py (measured: docs/metrics.md)
TAIL_MIN_REPS = 20


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def mean_interval(x, level: float = LEVEL, low: float = -np.inf, high: float = np.inf
                  ) -> tuple[int, float, float, float, float]:
    """``(n, mean, sd, low, high)``: the t-interval of the mean of the finite values of
    ``x``, clipped to ``[low, high]`` (the range the metric can take)."""
    x = _finite(x)
    n = len(x)
    if n == 0:
        return 0, np.nan, np.nan, np.nan, np.nan
    mean = float(x.mean())
    if n < 2:
        return n, mean, np.nan, np.nan, np.nan
    sd = float(x.std(ddof=1))
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return n, mean, sd, max(mean - half, low), min(mean + half, high)


def poisson_interval(total: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Garwood) interval of a Poisson mean per run from ``total`` events over
    ``n`` runs."""
    a = 1 - level
    k = int(round(total))
    lo = 0.0 if k == 0 else st.chi2.ppf(a / 2, 2 * k) / 2
    hi = st.chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    return float(lo / n), float(hi / n)


def count_interval(x, level: float = LEVEL) -> tuple[int, float, float, float, float]:
    """``(n, mean, sd, low, high)`` of a count per run: the hull of the t-interval (right
    when counts vary more than Poisson) and the exact Poisson interval (right when they are
    rare), never below 0."""
    n, mean, sd, lo, hi = mean_interval(x, level, low=0.0)
    if n == 0:
        return n, mean, sd, lo, hi
    plo, phi = poisson_interval(float(_finite(x).sum()), n, level)
    if n < 2:
        return n, mean, sd, plo, phi
    return n, mean, sd, min(lo, plo), max(hi, phi)


def proportion_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Clopper-Pearson (exact binomial) interval of a proportion, ``k`` of ``n``."""
    if n == 0:
        return np.nan, np.nan
    ci = st.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def paired_p_value(d) -> float:
    """Two-sided p-value that the mean of the paired differences ``d`` is 0: the t-test;
    where every difference is equal (no spread to estimate), the exact sign test instead
    (all n pairs on one side: 2 * 0.5**n), so n equal differences never look certain."""
    d = _finite(d)
    n = len(d)
    if n < 2:
        return np.nan
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else float(min(1.0, 2 * 0.5 ** n))
    return float(st.ttest_1samp(d, 0.0).pvalue)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values of a family (NaN stays NaN and is not counted
    in the family)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def tail_interval(samples, q: float, *, seed: int = 0, n_resamples: int = 999,
                  level: float = LEVEL, min_reps: int = TAIL_MIN_REPS
                  ) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of the ``q`` quantile of the pooled ``samples`` (one array
    per replication). The interval (a percentile bootstrap over whole replications) is
    NaN below ``min_reps`` replications, where its coverage is not what it claims."""
    from .stats import bootstrap_quantile
    samples = [np.asarray(s, dtype=float) for s in samples if len(s)]
    if not samples:
        return np.nan, np.nan, np.nan
    if len(samples) < min_reps:
        return float(np.quantile(np.concatenate(samples), q)), np.nan, np.nan
    return bootstrap_quantile(samples, q, seed=seed, n_resamples=n_resamples, level=level)
