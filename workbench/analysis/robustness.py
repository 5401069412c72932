"""Layer 6: does a conclusion survive the guesses? Rankings of policies across plausible
calibrations.

Every ``guess`` row of the calibration has a plausible range (``range: [low, high]``, with
its reasoning). :func:`robustness` draws ``samples`` calibrations over those ranges (a
seeded Latin hypercube, log-uniform where a range spans more than a factor of two), runs
every policy under each with common random numbers, ``reps`` replications each, and
reports, per pair of policies, the share of calibrations in which the ranking on the
metric holds (with a Clopper-Pearson interval), the timings the difference is most
sensitive to (first-order RBD-FAST indices from SALib, and Spearman's rank correlation),
and where a ranking flips.

A calibration decides a ranking only where the difference exceeds that calibration's own
replication noise (:func:`decide`): the paired 95 % t-interval of the per-replication
differences excludes zero (outcomes, 0/1 per run: Fisher's exact test, p < 0.05).
Otherwise it is **undecided**, counted and shown, never a win for either side. One
replication per calibration decides nothing. Latency and fairness count complete runs only.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.config import ConfigError, as_overrides, load_calibration
from ..core.limits import MAX_SAMPLES, check_runs
from ..core.safeio import short
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
    if isinstance(samples, bool) or not isinstance(samples, int) or not \
            4 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"samples must be a whole number from 4 to {MAX_SAMPLES:,}, not "
                          f"{short(samples)}")
    names = list(bounds)
    u = qmc.LatinHypercube(d=len(names), seed=seed).random(samples)
    cols = {}
    for j, n in enumerate(names):
        lo, hi = bounds[n]
        log = lo > 0 and hi / lo > 2
        cols[n] = np.exp(np.log(lo) + u[:, j] * np.log(hi / lo)) if log else lo + u[:, j] * (hi - lo)
    return pd.DataFrame(cols)


def simulate(scenario, policies, metric: str, calibrations: pd.DataFrame, *, reps: int = 3,
             seed: int = 0, sets=None, engine=None, workers=None) -> pd.DataFrame:
    """The metric of every replication of every policy under every calibration (one
    ``compare`` each: common random numbers within a calibration): one row per sample,
    policy and replication; latency and fairness NaN for a run that stopped early."""
    from ..experiments.comparison import compare
    from ..experiments.definitions import complete_only
    from ..experiments.stats import complete
    rows, metrics = [], [metric] if isinstance(metric, str) else list(metric)
    for i, timings in calibrations.iterrows():
        overrides = {**as_overrides(sets),
                     **{f"timings.{k}": float(v) for k, v in timings.items()}}
        c = compare(scenario, policies, reps=reps, seed=seed, sets=overrides, engine=engine,
                    workers=workers)
        unknown = [m for m in metrics if m not in c.summary.columns]
        if unknown:
            raise ConfigError(f"robustness: unknown metric {unknown[0]!r}")
        s, ok = c.summary, complete(c.summary)
        rows += [{"sample": i, "policy": r["policy"], "replication": int(r["replication"]),
                  **{m: float(r[m]) if ok[j] or not complete_only(m) else np.nan
                     for m in metrics}}
                 for j, r in s.iterrows()]
    return pd.DataFrame(rows)


def decide(a, b, metric: str, lower_is_better: bool = True) -> str:
    """Which of two policies ranks better under one calibration, from their
    per-replication values (paired by position; NaN: a run that does not count): ``a``,
    ``b``, ``tie`` (every replication equal) or ``undecided`` (the difference is within
    the replication noise: the paired 95 % t-interval contains 0, or for an outcome
    Fisher's exact p >= 0.05; fewer than two usable pairs decide nothing)."""
    from scipy.stats import fisher_exact
    from ..experiments.definitions import kind
    from ..experiments.intervals import mean_interval
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sign = 1 if lower_is_better else -1
    if kind(metric) == "outcome":
        a, b = a[np.isfinite(a)] > 0, b[np.isfinite(b)] > 0
        if not len(a) or not len(b):
            return "undecided"
        if a.sum() * len(b) == b.sum() * len(a):
            return "tie" if a.all() == b.all() and len(set(a) | set(b)) == 1 else "undecided"
        p = fisher_exact([[a.sum(), len(a) - a.sum()], [b.sum(), len(b) - b.sum()]]).pvalue
        if p >= 0.05:
            return "undecided"
        return "a" if sign * (a.mean() - b.mean()) < 0 else "b"
    ok = np.isfinite(a) & np.isfinite(b)
    d = (a - b)[ok]
    if len(d) and not d.any():
        return "tie"
    n, mean, _, lo, hi = mean_interval(d)
    if n < 2 or not np.isfinite(lo) or lo <= 0 <= hi:
        return "undecided"
    return "a" if sign * mean < 0 else "b"


def decisions(values: pd.DataFrame, metric: str, a: str, b: str,
              lower_is_better: bool = True) -> pd.Series:
    """Per sample: :func:`decide` for policies ``a`` and ``b`` (values without a
    ``replication`` column are exact, noise-free: ranked by their sign)."""
    out = {}
    for i, g in values.groupby("sample", sort=True):
        va = g.loc[g["policy"] == a].sort_values("replication" if "replication" in g else "policy")
        vb = g.loc[g["policy"] == b].sort_values("replication" if "replication" in g else "policy")
        if "replication" not in values.columns:
            d = (float(va[metric].mean()) - float(vb[metric].mean())) * (1 if lower_is_better else -1)
            out[i] = "tie" if d == 0 else "a" if d < 0 else "b" if d > 0 else "undecided"
        else:
            out[i] = decide(va[metric].to_numpy(), vb[metric].to_numpy(), metric,
                            lower_is_better)
    return pd.Series(out, name="decision")


@dataclass
class Robustness:
    """The calibrations drawn, the metric per policy under each, and the analysis."""
    metric: str
    calibrations: pd.DataFrame     # one row per sample: the drawn timings
    values: pd.DataFrame           # sample, policy, metric
    lower_is_better: bool = True
    spec: dict | None = None       # what made it: scenario, policies, samples, seed, ...

    def wide(self) -> pd.DataFrame:
        """Per sample and policy: the metric's mean over replications (that count)."""
        return self.values.pivot_table(index="sample", columns="policy", values=self.metric,
                                       aggfunc="mean", sort=False, dropna=False)

    def rankings(self) -> pd.DataFrame:
        """Per pair (a, b): in how many calibrations a ranks better, b ranks better, they
        tie, or the difference is within the replication noise (``undecided``); the
        share of the decided ones where a ranks better, with a 95 % interval."""
        from scipy.stats import binomtest
        pols, rows = list(dict.fromkeys(self.values["policy"])), []
        for a, b in itertools.combinations(pols, 2):
            d = decisions(self.values, self.metric, a, b, self.lower_is_better)
            na, nb = int((d == "a").sum()), int((d == "b").sum())
            n = na + nb
            ci = binomtest(na, n).proportion_ci() if n else None
            rows.append({"a": a, "b": b, "samples": len(d), "ties": int((d == "tie").sum()),
                         "undecided": int((d == "undecided").sum()), "a_better": na,
                         "b_better": nb, "a_better_share": na / n if n else np.nan,
                         "ci_low": ci.low if ci else np.nan, "ci_high": ci.high if ci else np.nan,
                         "holds_everywhere": n > 0 and na in (0, n)
                         and not (d == "undecided").any()})
        return pd.DataFrame(rows, columns=["a", "b", "samples", "ties", "undecided",
                                           "a_better", "b_better", "a_better_share",
                                           "ci_low", "ci_high", "holds_everywhere"])

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
               timings=None, reps: int = 3, seed: int = 0, sets=None, engine=None,
               workers=None, calibration: str | None = None,
               lower_is_better: bool = True) -> Robustness:
    """Draw ``samples`` calibrations over the guessed ranges (or only ``timings``) of
    ``calibration`` (default: the scenario's, e.g. ``--set calibration=X``) and rank
    ``policies`` on ``metric`` (default: the scenario's headline) under each."""
    cfg = load_scenario(scenario, sets)
    metric = metric or cfg.headline
    if isinstance(policies, str) or len(list(policies or [])) < 2:
        raise ConfigError("robustness needs a list of at least two policies")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be a whole number >= 1, not {short(reps)}")
    calibration = calibration or cfg.calibration
    cal = design(_unpinned(cfg, ranges(calibration, timings), timings), samples, seed)
    check_runs(samples * len(list(policies)) * reps)     # samples x policies x reps
    if calibration != cfg.calibration:    # run under the calibration drawn over
        cfg = load_scenario(cfg, {"calibration": calibration})
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


def headline_holds(samples: int = 16, *, seed: int = 0, reps: int = 4, sets=None,
                   timings=None, headlines=HEADLINES, workers=None) -> pd.DataFrame:
    """For each headline comparison: in how many of ``samples`` calibrations drawn over the
    guessed ranges the claimed ranking holds beyond that calibration's replication noise,
    fails beyond it, ties, or is undecided (:func:`decide`); the share of the decided ones
    where it holds, with a 95 % interval. One set of runs per scenario serves every
    headline on it. (4 replications: the fewest at which an outcome seen in every run of
    one policy and in none of the other's is decided, Fisher's p = 0.029.)"""
    from scipy.stats import binomtest
    by_scenario: dict = {}
    for h in headlines:
        by_scenario.setdefault(h[1], []).append(h)
    rows = []
    for scenario, hs in by_scenario.items():
        cfg = load_scenario(scenario, sets)
        cal = design(_unpinned(cfg, ranges(cfg.calibration, timings), timings), samples, seed)
        policies = list(dict.fromkeys(p for h in hs for p in h[3:5]))
        values = simulate(cfg, policies, [h[2] for h in hs], cal, reps=reps, seed=seed,
                          workers=workers)
        for claim, _, metric, better, worse, lower in hs:
            d = decisions(values, metric, better, worse, lower)
            holds, fails = int((d == "a").sum()), int((d == "b").sum())
            n = holds + fails
            ci = binomtest(holds, n).proportion_ci() if n else None
            rows.append({"claim": claim, "scenario": scenario, "metric": metric,
                         "better": better, "worse": worse, "calibrations": len(d),
                         "holds": holds, "fails": fails,
                         "undecided": int((d == "undecided").sum()),
                         "ties": int((d == "tie").sum()),
                         "holds_share": holds / n if n else np.nan,
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

    def part(text) -> str:       # what NAME accepts, short enough for a folder name
        return re.sub(r"[^A-Za-z0-9_.-]", "_", str(text))[:80]
    stem = part(spec.get("scenario", "robustness")).lstrip("_.-") or "robustness"
    return f"{stem}-{part(r.metric)}-{h[:8]}"


def save(r: Robustness, name: str | None = None, store=None, allow_dirty: bool = False) -> str:
    """Store ``r`` (its calibrations, values and what made it) as robustness run
    ``name``; returns the name. The analysis is recomputed from them on :func:`load`.
    Refused from a checkout with uncommitted changes unless ``allow_dirty``."""
    import json

    from ..experiments.fingerprint import check_clean
    from ..experiments.store import FORMAT, MAX_NAME, NAME, Store, provenance
    tree = check_clean(allow_dirty)
    name = name or default_name(r)
    if not isinstance(name, str) or not NAME.match(name) or len(name) > MAX_NAME:
        raise ConfigError(f"robustness name {short(name)}: letters, digits, '.', '_' and '-' "
                          f"only, at most {MAX_NAME} characters")
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

