"""Layer 6: statistics across replications (``scipy.stats`` does the arithmetic).

- :func:`describe`: per group and metric, the mean, standard deviation and the interval
  of the metric's kind (``definitions.kind``: Clopper-Pearson for outcomes, "k of n runs";
  counts never below 0; latency and fairness over complete runs only, with ``runs`` and
  ``complete`` beside them). One row per group and metric, a tidy table.
- :func:`paired_diff`: per-replication differences against a baseline policy. Replication
  r of every policy runs on the same seed (common random numbers), so the difference is
  taken replication by replication and its t-interval is usually much narrower than the
  interval of a difference of two independent means (:func:`welch_interval`). Latency
  and fairness pair complete runs only; outcomes are not differenced (their exact rates
  and the verdict lines compare them). Stars are Holm-corrected over the table's family.
- :func:`latency_intervals`: the tail percentiles (p99, p99.9) of each complete run, their
  mean over replications with a t-interval, printed only where every run had at least
  :data:`TAIL_MIN_BEYOND` operations beyond that percentile (its tested coverage).

An interval with fewer than two finite values is NaN.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats as st

from ..core.config import ConfigError
from .definitions import MIN_COMPLETE, complete, complete_only, kind, usable  # noqa: F401
from .intervals import (count_rows, holm, mean_interval, mean_rows, paired_p_value,
                        proportion_rows)

LEVEL = 0.95
ALPHA = 0.05        # a paired difference is starred where its Holm-adjusted p is below
# a run's tail percentile gets an interval only if every run had this many ops beyond it
TAIL_MIN_BEYOND = 5
# identifying columns of a summary row: never treated as metrics
ID_COLUMNS = ("run_id", "scenario", "policy", "seed", "replication", "param", "value")


def t_interval(x, level: float = LEVEL) -> tuple[int, float, float, float, float]:
    """``(n, mean, sd, low, high)`` of the finite values of ``x``: the t-interval of the
    mean at ``level``."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return 0, np.nan, np.nan, np.nan, np.nan
    mean = float(x.mean())
    if n < 2:
        return n, mean, np.nan, np.nan, np.nan
    sd = float(x.std(ddof=1))
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return n, mean, sd, mean - half, mean + half


def welch_interval(x, y, level: float = LEVEL) -> tuple[float, float]:
    """The Welch t-interval of ``mean(x) - mean(y)`` treating the samples as independent
    (what one would get without common random numbers)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return np.nan, np.nan
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = np.sqrt(vx + vy)
    d = float(x.mean() - y.mean())
    if se == 0:
        return d, d
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    return d - half, d + half


def metric_columns(df: pd.DataFrame, exclude=()) -> list[str]:
    """The numeric columns of a summary table that are metrics (not identifiers, not the
    grouping columns ``exclude``); works on whatever metric set the model produces."""
    skip = set(ID_COLUMNS) | set(exclude)
    return [c for c in df.columns if c not in skip
            and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))]


def _groups(df: pd.DataFrame, keys: list[str]):
    if not keys:
        yield (), df
        return
    for key, g in df.groupby(keys, sort=False, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), g


def interval_rows(x, metric: str, level: float = LEVEL):
    """``(mean, sd, low, high)`` arrays, one per row of ``x`` (replications along the last
    axis, all finite), with the interval of the metric's kind: Clopper-Pearson for an
    outcome (its mean is the share of runs), the count hull, a t-interval clipped to the
    metric's range."""
    x = np.asarray(x, dtype=float)
    k = kind(metric)
    if k == "outcome":
        hits = (x > 0).sum(axis=-1)
        lo, hi = proportion_rows(hits, x.shape[-1], level)
        return hits / x.shape[-1], np.full(lo.shape, np.nan), lo, hi
    if k == "count":
        return count_rows(x, level)
    if k == "share" or metric in UNIT_FAIRNESS:
        return mean_rows(x, level, 0.0, 1.0)
    return mean_rows(x, level, LOWEST.get(metric, 0.0))


def interval(values, metric: str, level: float = LEVEL) -> tuple[int, float, float, float, float]:
    """``(n, mean, sd, low, high)`` of the finite ``values`` of one group, with the
    interval of the metric's kind (:func:`interval_rows`)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return 0, np.nan, np.nan, np.nan, np.nan
    return (len(x), *(float(v) for v in interval_rows(x, metric, level)))


UNIT_FAIRNESS = ("jain_work", "host_contested_share")    # fairness metrics in [0, 1]
LOWEST = {"wait_spread": 1.0}          # the smallest value a metric can take (else 0)


_TAIL = re.compile(r"^(?P<who>wb_)?(?P<op>.+)_(?P<q>p99|p999|max)_us$")


def ops_needed(metric: str) -> tuple[str, float] | None:
    """For a run's tail percentile (``zap_4k_p99_us``, ``wb_fault_wait_p999_us``, ``*_max_us``):
    the summary column counting that run's ops and how many it needs for an interval of
    tested coverage (:data:`TAIL_MIN_BEYOND` beyond the percentile; a maximum never has
    one). None for other metrics."""
    m = _TAIL.match(metric)
    if not m or kind(metric) != "latency":
        return None
    q = {"p99": 0.99, "p999": 0.999, "max": 1.0}[m["q"]]
    need = np.inf if q == 1.0 else float(np.ceil(TAIL_MIN_BEYOND / (1 - q)))
    return f"{m['who'] or ''}{m['op']}_n", need


def _enough_ops(g: pd.DataFrame, metric: str) -> tuple[bool, float]:
    """(every run of ``g`` has the ops ``metric``'s interval needs, how many that is)."""
    need = ops_needed(metric)
    if need is None:
        return True, np.nan
    col, k = need
    ok = col in g.columns and len(g) and bool((g[col].astype(float) >= k).all())
    return ok, k


def describe(summary: pd.DataFrame, by=(), metrics=None, level: float = LEVEL) -> pd.DataFrame:
    """One row per group (``by`` plus ``policy``) and metric: ``runs`` (replications),
    ``complete`` (runs that reached the horizon), ``n`` (the values it is computed over:
    for latency and fairness the complete runs, none if fewer than two remain where some
    stopped),
    ``mean``, ``sd``, ``ci_low``, ``ci_high`` (the interval of the metric's kind at
    ``level``; an outcome's mean is the share of runs, ``k`` of them) and ``interval``
    (its kind's name)."""
    keys = [*by, "policy"]
    metrics = list(metrics) if metrics is not None else metric_columns(summary, keys)
    ok = complete(summary)
    rows = []
    for key, g in _groups(summary, keys):
        for m in metrics:
            use = g.loc[usable(ok[g.index])] if complete_only(m) else g
            n, mean, sd, lo, hi = interval(use[m].astype(float), m, level)
            enough, need = _enough_ops(use, m)
            if not enough:
                lo = hi = np.nan
            rows.append({**dict(zip(keys, key)), "metric": m, "runs": len(g),
                         "complete": int(ok[g.index].sum()), "n": n,
                         "mean": mean, "sd": sd, "ci_low": lo, "ci_high": hi,
                         "k": int(round(mean * n)) if kind(m) == "outcome" and n else np.nan,
                         "interval": INTERVAL_NAMES[kind(m)] if enough else
                         f"none: needs >= {need:.0f} ops a run" if np.isfinite(need) else
                         "none (a maximum)"})
    return pd.DataFrame(rows, columns=[*keys, "metric", "runs", "complete", "n", "mean", "sd",
                                       "ci_low", "ci_high", "k", "interval"])


INTERVAL_NAMES = {"outcome": "Clopper-Pearson", "count": "t or exact Poisson, >= 0",
                  "share": "t, in [0, 1]", "amount": "t, >= 0", "latency": "t, >= 0",
                  "fairness": "t, >= 0"}


def paired_diff(summary: pd.DataFrame, baseline: str, by=(), metrics=None,
                level: float = LEVEL) -> pd.DataFrame:
    """Per group, policy other than ``baseline`` and metric: the mean of the
    per-replication differences ``policy - baseline`` with its t-interval, its p-value
    (paired t-test), the Holm-adjusted p over every row of the table (the family, its size
    in ``family``) and ``star`` (adjusted p < 0.05). Replications are matched on (``by``,
    ``replication``, ``seed``); latency and fairness pair complete runs only. Outcome
    metrics (0/1 per run) are left out: compare them by their exact rates. The Welch
    interval of the unpaired difference is given beside it for comparison."""
    if baseline not in set(summary["policy"]):
        raise ConfigError(f"baseline {baseline!r} is not one of the compared policies "
                          f"({', '.join(dict.fromkeys(summary['policy']))})")
    by = list(by)
    metrics = list(metrics) if metrics is not None else metric_columns(summary, by)
    metrics = [m for m in metrics if kind(m) != "outcome"]
    match = [*by, "replication", "seed"]
    ok = complete(summary)
    use = pd.concat([usable(ok[g.index]) for _, g in _groups(summary, [*by, "policy"])])
    summary = summary.assign(_complete=use.reindex(summary.index))
    base = summary[summary["policy"] == baseline]
    rows = []
    for pol in dict.fromkeys(summary["policy"]):
        if pol == baseline:
            continue
        other = summary[summary["policy"] == pol]
        both = other.merge(base, on=match, suffixes=("", "@base"))
        for key, g in _groups(both, by):
            b = base
            for k, v in zip(by, key):
                b = b[b[k] == v]
            o = other
            for k, v in zip(by, key):
                o = o[o[k] == v]
            pairs = g[g["_complete"] & g["_complete@base"]]
            for m in metrics:
                gm, om, bm = (pairs, o[o["_complete"]], b[b["_complete"]]) \
                    if complete_only(m) else (g, o, b)
                d = gm[m].astype(float) - gm[f"{m}@base"].astype(float)
                n, mean, sd, lo, hi = mean_interval(d, level)
                need = ops_needed(m)
                if need and not (_enough_ops(om, m)[0] and _enough_ops(bm, m)[0]):
                    lo = hi = np.nan      # no tested interval: no p either (not in the family)
                    d = d.iloc[:1]
                wl, wh = welch_interval(om[m].astype(float), bm[m].astype(float), level)
                rows.append({**dict(zip(by, key)), "policy": pol, "baseline": baseline,
                             "metric": m, "pairs": len(g), "n": n, "diff": mean, "sd": sd,
                             "ci_low": lo, "ci_high": hi,
                             "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
                             "p": paired_p_value(d), "unpaired_low": wl,
                             "unpaired_high": wh})
    cols = [*by, "policy", "baseline", "metric", "pairs", "n", "diff", "sd", "ci_low",
            "ci_high", "excludes_zero", "p", "p_holm", "star", "family", "unpaired_low",
            "unpaired_high"]
    out = pd.DataFrame(rows, columns=[c for c in cols if c not in ("p_holm", "star",
                                                                      "family")])
    out["p_holm"] = holm(out["p"].to_numpy(dtype=float)) if len(out) else []
    out["star"] = out["p_holm"].lt(ALPHA)
    out["family"] = int(np.isfinite(out["p"].to_numpy(dtype=float)).sum()) if len(out) else 0
    return out[cols]


def bootstrap_quantile(samples: list[np.ndarray], q: float, *, seed: int = 0,
                       n_resamples: int = 999, level: float = LEVEL) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of the ``q`` quantile of the pooled ``samples`` (one array
    per replication); the percentile bootstrap resamples whole replications (seeded)."""
    samples = [np.asarray(s, dtype=float) for s in samples if len(s)]
    if not samples:
        return np.nan, np.nan, np.nan
    est = float(np.quantile(np.concatenate(samples), q))
    if len(samples) < 2:
        return est, np.nan, np.nan

    memo: dict = {}   # few replications give few distinct resamples: compute each once

    def stat(idx):
        key = tuple(np.sort(np.asarray(idx, dtype=int)))
        if key not in memo:
            memo[key] = np.quantile(np.concatenate([samples[i] for i in key]), q)
        return memo[key]

    res = st.bootstrap((np.arange(len(samples)),), stat, vectorized=False,
                       n_resamples=n_resamples, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return est, float(ci.low), float(ci.high)


TAILS = {"p99": 0.99, "p999": 0.999}


def latency_intervals(ops: pd.DataFrame, by=(), quantiles=None, *, summary=None,
                      level: float = LEVEL, **_ignored) -> pd.DataFrame:
    """Per group (``by``, ``policy``, ``op``) and tail quantile: the quantile of each
    complete run's well-behaved ops (``summary`` says which runs are complete; hostile
    roles' own operations are left out), their mean over replications (``value_us``) and
    its t-interval. The interval is NaN (``enough`` False) unless every run had at least
    :data:`TAIL_MIN_BEYOND` ops beyond the quantile (``min_ops``: the ops per run that
    needs): below that its coverage was measured under 93 % (docs/metrics.md)."""
    from .metrics import HOSTILE_ROLES
    quantiles = quantiles or TAILS
    if "role" in ops.columns:
        ops = ops[~ops["role"].isin(HOSTILE_ROLES)]
    if summary is not None and len(ops):
        done = set(summary.loc[complete(summary), "run_id"])
        ops = ops[ops["run_id"].isin(done)]
    keys = [*by, "policy", "op"]
    rows = []
    for key, g in _groups(ops, keys):
        per_rep = [r["latency_us"].to_numpy() for _, r in g.groupby("replication", sort=True)]
        fewest = min(len(x) for x in per_rep)
        for name, q in quantiles.items():
            vals = [float(np.quantile(x, q)) for x in per_rep]
            need = int(np.ceil(TAIL_MIN_BEYOND / (1 - q)))
            n, mean, _, lo, hi = mean_interval(vals, level, 0.0)
            enough = fewest >= need
            rows.append({**dict(zip(keys, key)), "quantile": name, "n": len(g),
                         "reps": len(per_rep), "value_us": mean,
                         "ci_low": lo if enough else np.nan,
                         "ci_high": hi if enough else np.nan,
                         "enough": bool(enough and n >= 2), "min_ops": need})
    return pd.DataFrame(rows, columns=[*keys, "quantile", "n", "reps", "value_us", "ci_low",
                                       "ci_high", "enough", "min_ops"])


def _cell(r, digits: int, missing: str) -> str:
    """``mean [low, high]`` of one :func:`describe` row (the mean alone without an
    interval, ``missing`` without a mean); an outcome as ``k of n [low, high]`` (its
    share's exact interval); a metric over complete runs says how many were, when not
    all."""
    runs, done = r.get("runs", r["n"]), r.get("complete", r["n"])
    note = (f" ({int(done)} of {int(runs)} complete)"
            if complete_only(r["metric"]) and done < runs else "")
    if not np.isfinite(r["mean"]):
        return missing + note
    if kind(r["metric"]) == "outcome":
        return (f"{int(r['k'])} of {int(r['n'])} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
    if not np.isfinite(r["ci_low"]):
        why = str(r.get("interval", ""))
        note = note or (f" (no interval: {why[6:]})" if why.startswith("none:") else "")
        return f"{r['mean']:.{digits}g}" + note
    return (f"{r['mean']:.{digits}g} [{r['ci_low']:.{digits}g}, {r['ci_high']:.{digits}g}]"
            + note)


def with_intervals(desc: pd.DataFrame, by=(), metrics=None, digits: int = 3) -> pd.DataFrame:
    """A wide, printable table from :func:`describe`: one row per group, one column per
    metric holding ``mean [low, high]``."""
    keys = [*by, "policy"]
    if metrics is not None:
        desc = desc[desc["metric"].isin(metrics)]

    d = desc.assign(cell=desc.apply(_cell, axis=1, digits=digits, missing="-")
                    if len(desc) else [])
    order = list(dict.fromkeys(d["metric"]))
    wide = d.pivot_table(index=keys, columns="metric", values="cell", aggfunc="first",
                         sort=False)
    return wide.reindex(columns=order).reset_index().rename_axis(columns=None)


def _tex(text) -> str:
    text = str(text)
    out = []
    for ch in text:
        out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                    "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\~{}",
                    "^": r"\^{}"}.get(ch, ch))
    return "".join(out)


PACKAGES = ("booktabs",)


def plain_number(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits in positional notation, never ``1e-05``:
    ``0.0000123``, ``29.2``, ``3,303`` (numbers of ``digits`` or more integer digits are
    rounded to a whole number, with thousands separators)."""
    if not np.isfinite(x):
        return "--"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False,
                                      trim="-")


def latex_table(desc: pd.DataFrame, by=(), metrics=None, caption: str = "",
                digits: int = 3, label=None, scale=None) -> str:
    """A booktabs LaTeX table from :func:`describe` that fits ``\\columnwidth``: per metric
    a row naming it with its unit (``label(metric)``), then one row per group and policy
    with the mean and its 95 % t-interval, numbers in positional notation (never
    ``1e-05``). ``scale(metric)`` multiplies a metric's numbers (100 for a share shown in
    percent). The packages it needs are named in a comment on its first line."""
    label = label or (lambda m: str(m).replace("_", " "))
    scale = scale or (lambda m: 1.0)
    if metrics is not None:
        desc = desc[desc["metric"].isin(metrics)]
    order = list(dict.fromkeys(desc["metric"]))
    setting = len(by) > 0
    head = ([r"\parbox[b]{2.2cm}{\raggedright " + _breakable(", ".join(label(b) for b in by))
             + "}"]
            if setting else []) + ["Policy", "Mean", r"95\,\% interval"]
    needs = ", ".join(r"\usepackage{" + p + "}" for p in PACKAGES)
    lines = [f"% needs: {needs}", r"\begin{table}", r"\centering", r"\footnotesize",
             r"\setlength{\tabcolsep}{3pt}",
             r"\begin{tabular}{@{}" + ("p{2.2cm}" if setting else "") + "p{2.3cm}rr@{}}",
             r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for i, m in enumerate(order):
        if i:
            lines.append(r"\addlinespace")
        lines.append(r"\multicolumn{" + str(len(head)) + r"}{@{}l}{\textit{"
                     + _tex(label(m)) + r"}} \\")
        k, last = scale(m), None
        for _, r in desc[desc["metric"] == m].iterrows():
            cells = []
            if setting:
                where = ", ".join(_value(r[b]) for b in by)
                cells.append(_breakable(where) if where != last else "")
                last = where
            ci = (plain_number(r["ci_low"] * k, digits) + "--"
                  + plain_number(r["ci_high"] * k, digits)
                  if np.isfinite(r["ci_low"]) else "--")
            cells += [_breakable(r["policy"]), plain_number(r["mean"] * k, digits), ci]
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + _tex(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _breakable(text) -> str:
    """``_tex(text)`` that may break after ``_ . = + ,`` (a narrow column's
    ``HOST_PRIORITY``, ``shared.off`` or ``upstream+fault=resume-guest``)."""
    out = _tex(text)
    for ch in (r"\_", ".", "=", "+", ","):
        out = out.replace(ch, ch + r"\allowbreak{}")
    return out


def _value(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return plain_number(v) if isinstance(v, float) else str(v)


# -- warm-up -------------------------------------------------------------------------------
def warmup_cut(summary: pd.DataFrame, ops: pd.DataFrame, warmup_us: float
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop the operations that started before ``warmup_us`` and recompute each run's
    per-op latency columns of the summary (``{op}_n``, ``{op}_{q}_us``, ``{op}_max_us``
    and their ``wb_`` twins over the well-behaved vCPUs) from the rest, as :func:`workbench.metrics.summary_row` computes them. Other summary
    columns (counters over the whole run) are left as they are."""
    from .metrics import HOSTILE_ROLES, LATENCY_OPS, QUANTILES
    if not np.isfinite(warmup_us) or warmup_us < 0:
        raise ConfigError(f"warmup_us must be a finite number >= 0, not {warmup_us!r}")
    kept = ops[ops["t_start_us"] >= warmup_us].reset_index(drop=True)
    s = summary.copy()
    wb = kept[~kept["role"].isin(HOSTILE_ROLES)] if "role" in kept.columns else kept
    for prefix, src in (("", kept), ("wb_", wb)):     # all vCPUs; the well-behaved ones
        groups = {k: g["latency_us"] for k, g in src.groupby(["run_id", "op"], sort=False)}
        for op in LATENCY_OPS:
            cols = {"n": f"{prefix}{op}_n", "max": f"{prefix}{op}_max_us",
                    **{q: f"{prefix}{op}_{q}_us" for q in QUANTILES}}
            if not all(c in s.columns for c in cols.values()):
                continue
            for i, run in s["run_id"].items():
                lat = groups.get((run, op))
                n = 0 if lat is None else len(lat)
                s.at[i, cols["n"]] = n
                s.at[i, cols["max"]] = float(lat.max()) if n else np.nan
                for q, p in QUANTILES.items():
                    s.at[i, cols[q]] = float(lat.quantile(p)) if n else np.nan
    return s, kept


def op_rate(ops: pd.DataFrame, bin_us: float, by=()) -> pd.DataFrame:
    """Operations started per ms in bins of ``bin_us``, per group (``by``, ``policy``,
    ``op``), averaged over replications: where the rate flattens, the warm-up is over."""
    keys = [*by, "policy", "op"]
    if ops.empty:
        return pd.DataFrame(columns=[*keys, "t_us", "per_ms"])
    reps = ops.groupby([*by, "policy"], sort=False)["replication"].nunique()
    b = (ops["t_start_us"] // bin_us * bin_us).rename("t_us")
    n = ops.groupby([*(ops[k] for k in keys), b], sort=False).size().rename("count")
    out = n.reset_index()
    r = out.set_index([*by, "policy"]).index.map(reps)
    out["per_ms"] = out["count"] / np.asarray(r, dtype=float) / (bin_us / 1000.0)
    return out.drop(columns="count").sort_values([*keys, "t_us"], kind="stable",
                                                 ignore_index=True)


def settle_time(ops: pd.DataFrame, bin_us: float, tol: float = 0.2) -> float:
    """The start of the first bin from which every later bin's operation rate (all ops,
    all groups pooled, the last bin left out as partial) stays within ``tol`` of the mean
    rate of the second half: a suggested ``warmup_us``."""
    if ops.empty:
        return 0.0
    rate = (ops["t_start_us"] // bin_us).value_counts().sort_index()
    full = np.arange(rate.index.min(), rate.index.max())   # the last bin may be partial
    if len(full) < 2:
        return 0.0
    r = rate.reindex(full, fill_value=0).to_numpy(dtype=float)
    ref = r[len(r) // 2:].mean()
    ok = np.abs(r - ref) <= tol * ref
    bad = np.nonzero(~ok)[0]
    first = 0 if len(bad) == 0 else bad[-1] + 1
    return float(full[min(first, len(full) - 1)] * bin_us)
