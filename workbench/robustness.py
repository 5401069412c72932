"""Layer 6: does a conclusion survive the guesses? Rankings of policies across plausible
calibrations.

Every ``guess`` row of the calibration has a plausible range (``range: [low, high]``, with
its reasoning). :func:`robustness` draws ``samples`` calibrations over those ranges (a
seeded Latin hypercube, log-uniform where a range spans more than a factor of two), runs
every policy under each with common random numbers, and reports, per pair of policies, the
share of calibrations in which the ranking on the metric holds (with a Clopper-Pearson
interval), the timings the difference is most sensitive to (first-order RBD-FAST indices
from SALib, and Spearman's rank correlation), and where a ranking flips.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import ConfigError, load_calibration
from .scenarios import load_scenario


def ranges(calibration: str = "default", names=None) -> dict[str, tuple[float, float]]:
    """``{quantity: (low, high)}`` of the guessed quantities that have a range (all of them,
    or ``names``)."""
    _, meta = load_calibration(calibration)
    out = {k: tuple(q["range"]) for k, q in meta.items()
           if q.get("status") == "guess" and q.get("range") and q["range"][0] < q["range"][1]}
    if names:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise ConfigError(f"robustness: {unknown[0]!r} is not a guessed quantity with a range")
        out = {n: out[n] for n in names}
    return out


def design(bounds: dict, samples: int, seed: int = 0) -> pd.DataFrame:
    """A seeded Latin hypercube over ``bounds``: one row per calibration."""
    from scipy.stats import qmc
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 4:
        raise ConfigError(f"samples must be a whole number >= 4, not {samples!r}")
    names = list(bounds)
    u = qmc.LatinHypercube(d=len(names), seed=seed).random(samples)
    cols = {}
    for j, n in enumerate(names):
        lo, hi = bounds[n]
        log = lo > 0 and hi / lo > 2
        cols[n] = np.exp(np.log(lo) + u[:, j] * np.log(hi / lo)) if log else lo + u[:, j] * (hi - lo)
    return pd.DataFrame(cols)


def simulate(scenario, policies, metric: str, calibrations: pd.DataFrame, *, reps: int = 1,
             seed: int = 0, sets=None, engine=None, workers=None) -> pd.DataFrame:
    """The metric's mean over ``reps`` replications for every policy under every
    calibration (one ``compare`` each: common random numbers within a calibration)."""
    from .experiments import compare
    rows = []
    for i, timings in calibrations.iterrows():
        overrides = {**(sets or {}), **{f"timings.{k}": float(v) for k, v in timings.items()}}
        c = compare(scenario, policies, reps=reps, seed=seed, sets=overrides, engine=engine,
                    workers=workers)
        if metric not in c.summary.columns:
            raise ConfigError(f"robustness: unknown metric {metric!r}")
        means = c.summary.groupby("policy", sort=False)[metric].mean()
        rows += [{"sample": i, "policy": p, metric: float(v)} for p, v in means.items()]
    return pd.DataFrame(rows)


@dataclass
class Robustness:
    """The calibrations drawn, the metric per policy under each, and the analysis."""
    metric: str
    calibrations: pd.DataFrame     # one row per sample: the drawn timings
    values: pd.DataFrame           # sample, policy, metric
    lower_is_better: bool = True

    def wide(self) -> pd.DataFrame:
        return self.values.pivot(index="sample", columns="policy", values=self.metric)

    def rankings(self) -> pd.DataFrame:
        """Per pair (a, b): how often a ranks better than b, with a 95 % interval."""
        from scipy.stats import binomtest
        w, rows = self.wide(), []
        for a, b in itertools.combinations(w.columns, 2):
            d = (w[a] - w[b]).dropna()
            better = int((d < 0).sum() if self.lower_is_better else (d > 0).sum())
            ties = int((d == 0).sum())
            n = len(d) - ties
            ci = binomtest(better, n).proportion_ci() if n else None
            rows.append({"a": a, "b": b, "samples": len(d), "ties": ties,
                         "a_better_share": better / n if n else np.nan,
                         "ci_low": ci.low if ci else np.nan, "ci_high": ci.high if ci else np.nan,
                         "holds_everywhere": n > 0 and better in (0, n)})
        return pd.DataFrame(rows)

    def sensitivity(self) -> pd.DataFrame:
        """Per pair and timing: SALib's first-order RBD-FAST index of the difference a - b,
        and Spearman's rank correlation of the timing with it; most sensitive first."""
        from SALib.analyze import rbd_fast
        from scipy.stats import spearmanr
        w, X = self.wide(), self.calibrations
        problem = {"num_vars": X.shape[1], "names": list(X.columns),
                   "bounds": [[float(X[c].min()), float(X[c].max())] for c in X.columns]}
        rows = []
        for a, b in itertools.combinations(w.columns, 2):
            y = (w[a] - w[b]).reindex(X.index).to_numpy(dtype=float)
            ok = np.isfinite(y)
            if ok.sum() < 4 or np.ptp(y[ok]) == 0:
                continue
            s1 = _rbd_fast(rbd_fast, problem, X[ok].to_numpy(), y[ok])
            for j, name in enumerate(X.columns):
                rho = spearmanr(X.loc[ok, name], y[ok]).statistic
                rows.append({"a": a, "b": b, "timing": name, "s1": float(s1[j]),
                             "spearman": float(rho)})
        out = pd.DataFrame(rows, columns=["a", "b", "timing", "s1", "spearman"])
        return out.sort_values(["a", "b", "s1"], ascending=[True, True, False],
                               kind="stable", ignore_index=True, na_position="last")

    def flips(self) -> pd.DataFrame:
        """Per pair whose ranking does not hold everywhere: its most sensitive timing and
        the value where the ranking changes (the midpoint between the two sides' medians
        of that timing), with each side's range."""
        sens, w, X, rows = self.sensitivity(), self.wide(), self.calibrations, []
        for r in self.rankings().itertuples():
            if r.holds_everywhere or not r.samples:
                continue
            top = sens[(sens["a"] == r.a) & (sens["b"] == r.b)]
            if top.empty:
                continue
            t = top.iloc[0]["timing"]
            d = (w[r.a] - w[r.b]).reindex(X.index)
            a_side = X.loc[d < 0 if self.lower_is_better else d > 0, t]
            b_side = X.loc[d > 0 if self.lower_is_better else d < 0, t]
            rows.append({"a": r.a, "b": r.b, "timing": t,
                         "flip_near": float((a_side.median() + b_side.median()) / 2),
                         "a_better_when": f"{a_side.min():.3g}-{a_side.max():.3g}",
                         "b_better_when": f"{b_side.min():.3g}-{b_side.max():.3g}"})
        return pd.DataFrame(rows, columns=["a", "b", "timing", "flip_near", "a_better_when",
                                           "b_better_when"])


def _rbd_fast(rbd_fast, problem: dict, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """First-order indices, with the number of harmonics the sample size supports (RBD-FAST
    needs well over 2M samples; with fewer the indices are noise: NaN when it cannot
    estimate them at all)."""
    import warnings
    m = min(10, max(1, (len(y) - 1) // 4))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        s1 = np.asarray(rbd_fast.analyze(problem, X, y, M=m, print_to_console=False,
                                         seed=0)["S1"], dtype=float)
    return np.where(np.isfinite(s1), s1, np.nan)


def robustness(scenario, policies, metric: str | None = None, *, samples: int = 16,
               timings=None, reps: int = 1, seed: int = 0, sets=None, engine=None,
               workers=None, calibration: str = "default",
               lower_is_better: bool = True) -> Robustness:
    """Draw ``samples`` calibrations over the guessed ranges (or only ``timings``) and rank
    ``policies`` on ``metric`` (default: the scenario's headline) under each."""
    cfg = load_scenario(scenario, sets)
    metric = metric or cfg.headline
    if len(list(policies or [])) < 2:
        raise ConfigError("robustness needs at least two policies")
    cal = design(ranges(calibration, timings), samples, seed)
    values = simulate(cfg, list(policies), metric, cal, reps=reps, seed=seed, engine=engine,
                      workers=workers)
    return Robustness(metric, cal, values, lower_is_better)


__all__ = ["Robustness", "robustness", "ranges", "design", "simulate"]
