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

from ..core.config import ConfigError, as_overrides, load_calibration
from ..core.scenarios import load_scenario


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
    from ..experiments.comparison import compare
    rows, metrics = [], [metric] if isinstance(metric, str) else list(metric)
    for i, timings in calibrations.iterrows():
        overrides = {**as_overrides(sets),
                     **{f"timings.{k}": float(v) for k, v in timings.items()}}
        c = compare(scenario, policies, reps=reps, seed=seed, sets=overrides, engine=engine,
                    workers=workers)
        unknown = [m for m in metrics if m not in c.summary.columns]
        if unknown:
            raise ConfigError(f"robustness: unknown metric {unknown[0]!r}")
        means = c.summary.groupby("policy", sort=False)[metrics].mean()
        rows += [{"sample": i, "policy": p, **{m: float(v[m]) for m in metrics}}
                 for p, v in means.iterrows()]
    return pd.DataFrame(rows)


@dataclass
class Robustness:
    """The calibrations drawn, the metric per policy under each, and the analysis."""
    metric: str
    calibrations: pd.DataFrame     # one row per sample: the drawn timings
    values: pd.DataFrame           # sample, policy, metric
    lower_is_better: bool = True
    spec: dict | None = None       # what made it: scenario, policies, samples, seed, ...

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
        try:
            s1 = np.asarray(rbd_fast.analyze(problem, X, y, M=m, print_to_console=False,
                                             seed=0)["S1"], dtype=float)
        except ZeroDivisionError:    # SALib's bootstrap on a handful of samples
            return np.full(X.shape[1], np.nan)
    return np.where(np.isfinite(s1), s1, np.nan)


def _unpinned(cfg, bounds: dict, named) -> dict:
    """The ranges to draw: a timing the scenario (or a ``--set timings.X``) pins is part of
    the question (touch-storm's 30 us SEPT.ADD window), not a guess, unless named."""
    return bounds if named else {k: v for k, v in bounds.items() if k not in cfg.timings}


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
    cal = design(_unpinned(cfg, ranges(calibration, timings), timings), samples, seed)
    values = simulate(cfg, list(policies), metric, cal, reps=reps, seed=seed, engine=engine,
                      workers=workers)
    spec = {"scenario": cfg.name, "policies": [str(p) for p in policies], "samples": samples,
            "timings": list(cal.columns), "reps": reps, "seed": seed,
            "sets": as_overrides(sets), "calibration": calibration}
    return Robustness(metric, cal, values, lower_is_better, spec)


# -- the headline comparisons ------------------------------------------------------------
# The comparisons behind the README's and docs/findings.md's conclusions: (claim, scenario,
# metric, the policy claimed better, the one claimed worse, lower is better).
HEADLINES = (
    ("upstream's zaps beat zero tolerance's under ACCEPT spam", "malicious-accept",
     "zap_4k_p99_us", "upstream", "zero-tolerance", True),
    ("patch 09/21 as written bugs the VM where upstream does not", "malicious-accept",
     "vm_bugged", "upstream", "patch-09-21", True),
    ("zero tolerance turns contention into error exits", "conversion-storm", "error_exits",
     "upstream", "zero-tolerance", True),
    ("the series waits less than upstream on an armed vCPU", "zero-step",
     "fault_wait_p99_us", "patch-09-21", "upstream", True),
    ("resuming the guest arms zero-step, local retry does not", "touch-storm",
     "zero_step_armings", "upstream", "sean-per-path", True),
    ("serialising S-EPT calls costs fault throughput", "fault-storm",
     "accept_throughput_per_ms", "upstream", "vm-spinlock", False),
)


def headline_holds(samples: int = 16, *, seed: int = 0, reps: int = 1, sets=None,
                   timings=None, headlines=HEADLINES, workers=None) -> pd.DataFrame:
    """For each headline comparison: in how many of ``samples`` calibrations drawn over the
    guessed ranges the claimed ranking holds (ties apart), with a 95 % interval. One set of
    runs per scenario serves every headline on it."""
    from scipy.stats import binomtest
    by_scenario: dict = {}
    for h in headlines:
        by_scenario.setdefault(h[1], []).append(h)
    rows = []
    for scenario, hs in by_scenario.items():
        cfg = load_scenario(scenario, sets)
        cal = design(_unpinned(cfg, ranges(names=timings), timings), samples, seed)
        policies = list(dict.fromkeys(p for h in hs for p in h[3:5]))
        values = simulate(cfg, policies, [h[2] for h in hs], cal, reps=reps, seed=seed,
                          workers=workers)
        for claim, _, metric, better, worse, lower in hs:
            w = values.pivot(index="sample", columns="policy", values=metric)
            d = (w[better] - w[worse]) * (1 if lower else -1)
            holds, n = int((d < 0).sum()), int((d != 0).sum())
            ci = binomtest(holds, n).proportion_ci() if n else None
            rows.append({"claim": claim, "scenario": scenario, "metric": metric,
                         "better": better, "worse": worse, "calibrations": len(d),
                         "ties": len(d) - n, "holds_share": holds / n if n else np.nan,
                         "ci_low": ci.low if ci else np.nan,
                         "ci_high": ci.high if ci else np.nan})
    return pd.DataFrame(rows)


def swings(r: Robustness, a: str, b: str, top: int = 10) -> pd.DataFrame:
    """Per timing: the mean of ``a - b`` over the calibrations in the lowest and in the
    highest third of that timing's range, with its sensitivity; most sensitive first."""
    w, X = r.wide(), r.calibrations
    d = (w[a] - w[b]).reindex(X.index)
    sens = r.sensitivity()
    sens = sens[(sens["a"] == a) & (sens["b"] == b)].set_index("timing")
    rows = []
    for t in X.columns:
        q = X[t].rank(pct=True)
        lo, hi = d[q <= 1 / 3].mean(), d[q > 2 / 3].mean()
        rows.append({"timing": t, "low": float(lo), "high": float(hi),
                     "s1": float(sens["s1"].get(t, np.nan)) if len(sens) else np.nan,
                     "spearman": float(sens["spearman"].get(t, np.nan)) if len(sens) else np.nan})
    out = pd.DataFrame(rows)
    out["swing"] = (out["high"] - out["low"]).abs()
    return out.sort_values(["s1", "swing"], ascending=False, na_position="last",
                           kind="stable").head(top).reset_index(drop=True)



# -- in the results store ------------------------------------------------------------------
def default_name(r: Robustness) -> str:
    """``<scenario>-<metric>-<hash of what made it>``: the same question stores once."""
    import hashlib
    import re
    from ..experiments.store import canonical
    spec = r.spec or {}
    h = hashlib.sha256(canonical([spec, r.metric, r.lower_is_better]).encode()).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", str(spec.get("scenario", "robustness")))
    return f"{stem}-{r.metric}-{h[:8]}"


def save(r: Robustness, name: str | None = None, store=None, allow_dirty: bool = False) -> str:
    """Store ``r`` (its calibrations, values and what made it) as robustness run
    ``name``; returns the name. The analysis is recomputed from them on :func:`load`.
    Refused from a checkout with uncommitted changes unless ``allow_dirty``."""
    import json

    from ..experiments.fingerprint import check_clean
    from ..experiments.store import FORMAT, NAME, Store, provenance
    tree = check_clean(allow_dirty)
    name = name or default_name(r)
    if not NAME.match(name):
        raise ConfigError(f"robustness name {name!r}: letters, digits, '.', '_' and '-' only")
    st = store if isinstance(store, Store) else Store(store)
    manifest = {"format": FORMAT, "kind": "robustness", "name": name, "metric": r.metric,
                "lower_is_better": r.lower_is_better, **(r.spec or {}),
                "provenance": {**provenance(), **tree}}
    cal = r.calibrations.rename_axis("sample").reset_index()
    with st:
        st.put_file(name, "calibrations.parquet", lambda p: cal.to_parquet(p, index=False),
                    kind="robustness")
        st.put_file(name, "values.parquet", lambda p: r.values.to_parquet(p, index=False),
                    kind="robustness")
        st.put_file(name, "manifest.json",
                    lambda p: p.write_text(json.dumps(manifest, indent=1, default=str)),
                    kind="robustness")
    return name


def load(name: str, store=None) -> Robustness:
    """A stored robustness run, as :func:`robustness` returned it."""
    from ..experiments.store import Store
    st = store if isinstance(store, Store) else Store(store)
    m, cal, values = st.get_robustness(name)
    spec = {k: v for k, v in m.items()
            if k not in ("format", "kind", "name", "metric", "lower_is_better", "provenance")}
    return Robustness(m["metric"], cal.set_index("sample"), values,
                      bool(m.get("lower_is_better", True)), spec)


def stored(store=None) -> pd.DataFrame:
    """One row per stored robustness run."""
    from ..experiments.store import Store
    st = store if isinstance(store, Store) else Store(store)
    rows = []
    for name in st.robustness_runs():
        m = st.get_robustness(name)[0]
        rows.append({"robustness": name, "scenario": m.get("scenario"),
                     "metric": m["metric"], "policies": ",".join(m.get("policies") or []),
                     "samples": m.get("samples"), "seed": m.get("seed"),
                     "finished": (m.get("provenance") or {}).get("finished")})
    return pd.DataFrame(rows, columns=["robustness", "scenario", "metric", "policies",
                                       "samples", "seed", "finished"])


__all__ = ["Robustness", "robustness", "ranges", "design", "simulate", "save", "load",
           "stored", "swings", "HEADLINES", "headline_holds"]

