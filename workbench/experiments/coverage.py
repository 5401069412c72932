"""Layer 6: the measured coverage of every interval kind the workbench prints, on known
distributions (numpy only, no model runs): many simulated comparisons at once go through
the very functions the tables use (:func:`~.stats.describe`,
:func:`~.stats.paired_diff`, :func:`~.stats.latency_intervals`), and the share of
intervals that contain the true value is counted. tests/test_coverage.py requires at least
93 % for the nominal 95 %; docs/metrics.md prints this table (regenerated, not pasted).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .definitions import kind
from .intervals import holm_rows, mean_rows, paired_p_rows
from .stats import ALPHA, INTERVAL_NAMES, TAIL_MIN_BEYOND, interval_rows

REPS = (3, 5)


def per_run_metrics(trials: int, reps: int, rng) -> list[dict]:
    """Outcomes, counts, shares and amounts per run from known distributions, each trial
    through :func:`~.stats.interval` (what :func:`~.stats.describe` prints per cell).
    Rows with ``asserted`` False are the limits: a t-interval over 3-5 replications of a
    metric skewed like gamma(shape 4) (skewness 1.0) covers about 93 %, like gamma(shape
    2) (skewness 1.4) about 92 %."""
    cases = [  # (summary column whose kind picks the interval, case, draw, truth, asserted)
        *[("vm_bugged", f"outcome, p={p}", lambda p=p: rng.random((trials, reps)) < p, p, True)
          for p in (0.1, 0.5, 0.9)],
        *[("kicks", f"count, Poisson mean {m}", lambda m=m: rng.poisson(m, (trials, reps)),
           m, True) for m in (0.3, 3, 30)],
        ("kicks", "count, negative binomial mean 20, sd 10",
         lambda: rng.negative_binomial(5, 0.2, (trials, reps)), 20.0, True),
        ("host_busy_rate", "share, beta(8, 80)", lambda: rng.beta(8, 80, (trials, reps)),
         8 / 88, True),
        ("host_retry_cpu_us", "amount, normal(100, 30)",
         lambda: rng.normal(100, 30, (trials, reps)), 100.0, True),
        ("host_retry_cpu_us", "amount, gamma(shape 8), skewness 0.7",
         lambda: rng.gamma(8, 12.5, (trials, reps)), 100.0, True),
        ("host_retry_cpu_us", "amount, gamma(shape 4), skewness 1.0 (limit)",
         lambda: rng.gamma(4, 25, (trials, reps)), 100.0, False),
        ("host_retry_cpu_us", "amount, gamma(shape 2), skewness 1.4 (limit)",
         lambda: rng.gamma(2, 50, (trials, reps)), 100.0, False),
    ]
    rows = []
    for metric, label, draw, truth, asserted in cases:
        _, _, lo, hi = interval_rows(draw().astype(float), metric)
        rows.append({"interval": INTERVAL_NAMES[kind(metric)], "case": label, "reps": reps,
                     "coverage": float(np.mean((lo <= truth) & (truth <= hi))),
                     "asserted": asserted})
    return rows


def paired(trials: int, reps: int, rng) -> list[dict]:
    """Paired differences under common random numbers (a workload effect both policies
    see, a shift of 2, skewed noise): the t-interval of :func:`~.stats.paired_diff`; and,
    with no difference at all, how often Holm's correction stars any of a family of 9
    (1 minus the family-wise error; at least 95 % nominal)."""
    work = rng.normal(0, 10, (trials, reps))
    d = (work + 2 + rng.gamma(2, 0.5, (trials, reps)) - 1) - (work + rng.normal(0, 1, (trials, reps)))
    _, _, lo, hi = mean_rows(d)
    rows = [{"interval": "paired t", "case": "difference, shift 2, common workload",
             "reps": reps, "coverage": float(np.mean((lo <= 2) & (2 <= hi))),
             "asserted": True}]
    families = rng.normal(0, 1, (trials, 9, reps))        # 9 null differences per table
    clean = ~(holm_rows(paired_p_rows(families)) < ALPHA).any(axis=-1)
    rows.append({"interval": "Holm over a family of 9", "case": "no difference: no star",
                 "reps": reps, "coverage": float(np.mean(clean)), "asserted": True})
    return rows


def tails(trials: int, reps: int, rng) -> list[dict]:
    """Each run's p99 and p99.9 of lognormal latencies with a per-run random level, at
    the fewest ops per run the tables print an interval for: the t-interval of the mean
    of the runs' percentiles (``stats.latency_intervals``)."""
    rows = []
    for name, q in (("p99", 0.99), ("p999", 0.999)):
        m = int(np.ceil(TAIL_MIN_BEYOND / (1 - q)))
        n = max(200, trials * 500 // m)             # about the same number of draws
        per_run = lambda k: np.quantile(                         # noqa: E731
            np.exp(rng.normal(0, 0.3, (k, 1)) + rng.normal(0, 0.6, (k, m))), q, axis=1)
        truth = np.mean([per_run(2000).mean() for _ in range(4)])
        _, _, lo, hi = mean_rows(per_run(n * reps).reshape(n, reps), low=0.0)
        rows.append({"interval": f"tail {name} of each run, t", "case": f"lognormal, {m} "
                     "ops per run, run level sd 0.3", "reps": reps,
                     "coverage": float(np.mean((lo <= truth) & (truth <= hi))),
                     "asserted": True})
    return rows


def coverage(trials: int = 10000, seed: int = 2026, reps=REPS) -> pd.DataFrame:
    """One row per interval kind, case and number of replications: the share of
    ``trials`` nominal 95 % intervals that contain the true value (paired and tails: a
    quarter as many); ``asserted``: the cases tests/test_coverage.py holds to >= 93 %."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in reps:
        rows += (per_run_metrics(trials, r, rng) + paired(trials // 4, r, rng)
                 + tails(trials // 4, r, rng))
    return pd.DataFrame(rows, columns=["interval", "case", "reps", "coverage", "asserted"])


__all__ = ["coverage"]
