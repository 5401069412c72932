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
- tails (p99, p99.9): the t-interval of the mean of each run's percentile
  (:func:`mean_rows`), printed only where every run has enough ops beyond it
  (``stats.latency_intervals``). The pooled percentile's replication bootstrap
  (``stats.bootstrap_quantile``) is not printed: at 3, 5, 10 and 20 replications it
  covered 62 %, 68 %, 81 % and 88 % (lognormal latencies with a per-run level).

Each comes row-wise (``*_rows``: thousands of groups at once, for the coverage study) and
for one group (what the tables call, with non-finite values left out).
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st

LEVEL = 0.95


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


# -- row-wise: every function takes values of shape (..., n) (one row per group, the n
# replications along the last axis, all finite) and returns arrays; the scalar functions
# below call them with one row, and the coverage study with thousands.
def mean_rows(x, level: float = LEVEL, low: float = -np.inf, high: float = np.inf):
    """``(mean, sd, low, high)`` of each row: the t-interval, clipped to [low, high]."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    if n < 2:
        nan = np.full(mean.shape, np.nan)
        return mean, nan, nan, nan
    sd = x.std(axis=-1, ddof=1)
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return mean, sd, np.maximum(mean - half, low), np.minimum(mean + half, high)


def poisson_rows(total, n: int, level: float = LEVEL):
    """The exact (Garwood) interval of a Poisson mean per run, from ``total`` events over
    ``n`` runs (arrays)."""
    a = 1 - level
    k = np.rint(np.asarray(total, dtype=float))
    lo = np.where(k > 0, st.chi2.ppf(a / 2, 2 * np.maximum(k, 1)) / 2, 0.0)
    hi = st.chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    return lo / n, hi / n


def count_rows(x, level: float = LEVEL):
    """A count per run: the hull of the t-interval (right when counts vary more than
    Poisson) and the exact Poisson interval (right when they are rare), never below 0."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    mean, sd, lo, hi = mean_rows(x, level, low=0.0)
    plo, phi = poisson_rows(x.sum(axis=-1), n, level)
    if n < 2:
        return mean, sd, plo, phi
    return mean, sd, np.minimum(lo, plo), np.maximum(hi, phi)


def proportion_rows(k, n: int, level: float = LEVEL):
    """The Clopper-Pearson (exact binomial) interval of ``k`` of ``n`` (arrays of k)."""
    k = np.asarray(k, dtype=float)
    a = 1 - level
    lo = np.where(k > 0, st.beta.ppf(a / 2, np.maximum(k, 1), n - k + 1), 0.0)
    hi = np.where(k < n, st.beta.ppf(1 - a / 2, k + 1, np.maximum(n - k, 1)), 1.0)
    return lo, hi


def paired_p_rows(d):
    """Two-sided p-value that the mean of each row of paired differences is 0: the
    t-test; where a row's differences are all equal (no spread to estimate), the exact
    sign test instead (all n on one side: 2 * 0.5**n, 1 if they are 0), so n equal
    differences never look certain."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        return np.full(d.shape[:-1], np.nan)
    mean, sd = d.mean(axis=-1), d.std(axis=-1, ddof=1)
    flat = np.ptp(d, axis=-1) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / np.sqrt(n))
    p = 2 * st.t.sf(np.abs(t), n - 1)
    sign = np.where(mean == 0, 1.0, min(1.0, 2 * 0.5 ** n))
    return np.where(flat, sign, p)


def holm_rows(p):
    """Holm's step-down adjusted p-values of each row (a family); NaN stays NaN and is
    not counted in its family."""
    p = np.atleast_2d(np.asarray(p, dtype=float))
    m = np.isfinite(p).sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(np.isfinite(p), p, np.inf), axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    i = np.arange(p.shape[-1])
    adj = np.minimum(1.0, np.maximum.accumulate(np.where(np.isfinite(ps), (m - i) * ps, 0),
                                                axis=-1))
    adj = np.where(np.isfinite(ps), adj, np.nan)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=-1)
    return out


# -- one group at a time (NaN left out): what the tables call --------------------------
def mean_interval(x, level: float = LEVEL, low: float = -np.inf, high: float = np.inf
                  ) -> tuple[int, float, float, float, float]:
    """``(n, mean, sd, low, high)``: the t-interval of the mean of the finite values of
    ``x``, clipped to ``[low, high]`` (the range the metric can take)."""
    x = _finite(x)
    if not len(x):
        return 0, np.nan, np.nan, np.nan, np.nan
    return (len(x), *(float(v) for v in mean_rows(x, level, low, high)))


def count_interval(x, level: float = LEVEL) -> tuple[int, float, float, float, float]:
    """``(n, mean, sd, low, high)`` of a count per run (:func:`count_rows`)."""
    x = _finite(x)
    if not len(x):
        return 0, np.nan, np.nan, np.nan, np.nan
    return (len(x), *(float(v) for v in count_rows(x, level)))


def proportion_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Clopper-Pearson interval of a proportion, ``k`` of ``n``."""
    if n == 0:
        return np.nan, np.nan
    lo, hi = proportion_rows(k, n, level)
    return float(lo), float(hi)


def paired_p_value(d) -> float:
    """The p-value of :func:`paired_p_rows` for the finite values of ``d``."""
    d = _finite(d)
    return float(paired_p_rows(d)) if len(d) >= 2 else np.nan


def holm(p) -> np.ndarray:
    """Holm's adjusted p-values of one family."""
    p = np.asarray(p, dtype=float)
    return holm_rows(p)[0] if p.size else p.copy()
