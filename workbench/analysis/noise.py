"""Layer 6: the noise band of a claim at the default calibration: how far replication
noise and the order of simultaneous events alone move a comparison.

- replications: the paired 95 % t-interval of ``better - worse`` over ``reps``
  replications (common random numbers);
- the order of simultaneous events: the same replications again with the seeded tie
  order of :class:`~workbench.model.clock.FairEnvironment` reseeded (``salts``), every
  other draw unchanged; the band is the range of the mean difference over the salts.

A claim is *outside its noise band* where the paired interval excludes zero and every
reseeded tie order keeps the difference on the same side. docs/findings.md states the
bands (``noise_bands()``: 4 replications, tie orders 0-2, seed 7, 8 ms).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd

from ..experiments.comparison import compare
from ..experiments.definitions import complete_only
from ..experiments.intervals import mean_interval
from ..experiments.stats import complete
from .robustness import HEADLINES, decide


@contextmanager
def tie_order(salt: int):
    """Runs made inside (serially, in this process) break same-instant ties from the
    run's schedule seed XOR ``salt``: only the order of simultaneous events changes.
    A measurement hook for noise bands, never used by a normal run; 0 changes nothing."""
    from ..model import td
    base = td.FairEnvironment

    class Reseeded(base):
        def __init__(self, seed, initial_time=0.0, choices=None):
            super().__init__(seed ^ salt if choices is None else seed, initial_time, choices)

    td.FairEnvironment = Reseeded
    try:
        yield
    finally:
        td.FairEnvironment = base


def _values(c, metric: str, policy: str) -> np.ndarray:
    s = c.summary[c.summary["policy"] == policy].sort_values("replication")
    v = s[metric].astype(float).where(complete(s) | (not complete_only(metric)))
    return v.to_numpy()


def noise_band(scenario: str, metric: str, better: str, worse: str, *, lower: bool = True,
               reps: int = 4, seed: int = 7, sets=None, salts=(1, 2)) -> dict:
    """One claim's band: the means, the paired difference with its interval, the
    difference under each reseeded tie order, and whether the claim is outside both."""
    diffs, decided = [], []
    for salt in (0, *salts):
        with tie_order(salt):
            c = compare(scenario, [better, worse], reps=reps, seed=seed, sets=sets,
                        record="summary")
        a, b = _values(c, metric, better), _values(c, metric, worse)
        ok = np.isfinite(a) & np.isfinite(b)
        diffs.append(float(np.mean(a[ok] - b[ok])) if ok.any() else np.nan)
        decided.append(decide(a, b, metric, lower))
        if salt == 0:
            n, d, _, lo, hi = mean_interval((a - b)[ok])
            means = (float(np.nanmean(a)), float(np.nanmean(b)))
    sign = 1 if lower else -1
    return {"scenario": scenario, "metric": metric, "better": better, "worse": worse,
            "better_mean": means[0], "worse_mean": means[1], "pairs": n, "diff": d,
            "ci_low": lo, "ci_high": hi,
            "tie_orders": ", ".join(f"{x:.3g}" for x in diffs),
            "tie_spread": float(np.nanmax(diffs) - np.nanmin(diffs)),
            "decided": "/".join(decided),
            "outside": all(x == "a" for x in decided)
            and all(np.isfinite(diffs)) and all(sign * x < 0 for x in diffs)}


def noise_bands(headlines=HEADLINES, **kw) -> pd.DataFrame:
    """:func:`noise_band` of every headline claim (``robustness.HEADLINES``)."""
    return pd.DataFrame([{"claim": claim, **noise_band(sc, m, b, w, lower=lo, **kw)}
                         for claim, sc, m, b, w, lo in headlines])


__all__ = ["tie_order", "noise_band", "noise_bands"]
