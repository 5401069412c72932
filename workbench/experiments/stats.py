"""Layer 6: statistics across replications (``scipy.stats`` does the arithmetic).

- :func:`describe`: per group and metric, the mean, standard deviation and a t-interval
  over replications (one row per group and metric, a tidy table).
- :func:`paired_diff`: per-replication differences against a baseline policy. Replication
  r of every policy runs on the same seed (common random numbers), so the difference is
  taken replication by replication and its t-interval is usually much narrower than the
  interval of a difference of two independent means (:func:`welch_interval`).
- :func:`latency_intervals`: tail percentiles of latency pooled over replications with a
  seeded bootstrap interval that resamples whole replications (the ops of one run are not
  independent of each other, the runs are).

An interval with fewer than two finite values is NaN; a metric that never varies has an
interval of zero width.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from ..core.config import ConfigError

LEVEL = 0.95
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


def describe(summary: pd.DataFrame, by=(), metrics=None, level: float = LEVEL) -> pd.DataFrame:
    """One row per group (``by`` plus ``policy``) and metric: ``n`` (replications with a
    finite value), ``mean``, ``sd``, ``ci_low``, ``ci_high`` (t-interval at ``level``)."""
    keys = [*by, "policy"]
    metrics = list(metrics) if metrics is not None else metric_columns(summary, keys)
    rows = []
    for key, g in _groups(summary, keys):
        for m in metrics:
            n, mean, sd, lo, hi = t_interval(g[m].astype(float), level)
            rows.append({**dict(zip(keys, key)), "metric": m, "n": n, "mean": mean, "sd": sd,
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=[*keys, "metric", "n", "mean", "sd", "ci_low",
                                       "ci_high"])


def paired_diff(summary: pd.DataFrame, baseline: str, by=(), metrics=None,
                level: float = LEVEL) -> pd.DataFrame:
    """Per group, policy other than ``baseline`` and metric: the mean of the
    per-replication differences ``policy - baseline`` with its t-interval, and whether the
    interval excludes zero. Replications are matched on (``by``, ``replication``, ``seed``);
    the Welch interval of the unpaired difference is given beside it for comparison."""
    if baseline not in set(summary["policy"]):
        raise ConfigError(f"baseline {baseline!r} is not one of the compared policies "
                          f"({', '.join(dict.fromkeys(summary['policy']))})")
    by = list(by)
    metrics = list(metrics) if metrics is not None else metric_columns(summary, by)
    match = [*by, "replication", "seed"]
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
            for m in metrics:
                d = g[m].astype(float) - g[f"{m}@base"].astype(float)
                n, mean, sd, lo, hi = t_interval(d, level)
                wl, wh = welch_interval(o[m].astype(float), b[m].astype(float), level)
                rows.append({**dict(zip(by, key)), "policy": pol, "baseline": baseline,
                             "metric": m, "n": n, "diff": mean, "sd": sd, "ci_low": lo,
                             "ci_high": hi,
                             "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
                             "unpaired_low": wl, "unpaired_high": wh})
    return pd.DataFrame(rows, columns=[*by, "policy", "baseline", "metric", "n", "diff", "sd",
                                       "ci_low", "ci_high", "excludes_zero", "unpaired_low",
                                       "unpaired_high"])


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


def latency_intervals(ops: pd.DataFrame, by=(), quantiles=None, *, seed: int = 0,
                      n_resamples: int = 999, level: float = LEVEL) -> pd.DataFrame:
    """Per group (``by``, ``policy``, ``op``) and tail quantile: the pooled percentile of
    ``latency_us`` with a seeded replication-bootstrap interval. Hostile roles' own
    operations are left out as in :func:`workbench.metrics.latency_table`."""
    from .metrics import HOSTILE_ROLES
    quantiles = quantiles or TAILS
    if "role" in ops.columns:
        ops = ops[~ops["role"].isin(HOSTILE_ROLES)]
    keys = [*by, "policy", "op"]
    rows = []
    for key, g in _groups(ops, keys):
        per_rep = [r["latency_us"].to_numpy() for _, r in g.groupby("replication", sort=True)]
        for name, q in quantiles.items():
            est, lo, hi = bootstrap_quantile(per_rep, q, seed=seed, n_resamples=n_resamples,
                                             level=level)
            rows.append({**dict(zip(keys, key)), "quantile": name, "n": len(g),
                         "reps": len(per_rep), "value_us": est, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=[*keys, "quantile", "n", "reps", "value_us", "ci_low",
                                       "ci_high"])


def _cell(r, digits: int, missing: str) -> str:
    """``mean [low, high]`` of one :func:`describe` row (the mean alone without an
    interval, ``missing`` without a mean)."""
    if not np.isfinite(r["mean"]):
        return missing
    if not np.isfinite(r["ci_low"]):
        return f"{r['mean']:.{digits}g}"
    return f"{r['mean']:.{digits}g} [{r['ci_low']:.{digits}g}, {r['ci_high']:.{digits}g}]"


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
    per-op latency columns of the summary (``{op}_n``, ``{op}_{q}_us``, ``{op}_max_us``)
    from the rest, as :func:`workbench.metrics.summary_row` computes them. Other summary
    columns (counters over the whole run) are left as they are."""
    from .metrics import LATENCY_OPS, QUANTILES
    if not np.isfinite(warmup_us) or warmup_us < 0:
        raise ConfigError(f"warmup_us must be a finite number >= 0, not {warmup_us!r}")
    kept = ops[ops["t_start_us"] >= warmup_us].reset_index(drop=True)
    s = summary.copy()
    groups = {k: g["latency_us"] for k, g in kept.groupby(["run_id", "op"], sort=False)}
    for op in LATENCY_OPS:
        cols = {"n": f"{op}_n", "max": f"{op}_max_us",
                **{q: f"{op}_{q}_us" for q in QUANTILES}}
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
