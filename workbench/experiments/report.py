"""Layer 6: a comparison as text, the same for ``workbench compare``, ``Comparison.report()``
and the notebooks: verdict lines first, then outcomes and costs, pooled latency over
complete runs, intervals of each metric's kind and, given a baseline, the paired
differences with Holm's correction stated."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .definitions import complete_only, kind
from .metrics import HEADLINE, LATENCY_OPS
from .verdicts import verdict_lines


def fmt(df: pd.DataFrame) -> str:
    with pd.option_context("display.width", 200, "display.max_columns", 60,
                           "display.float_format", lambda x: f"{x:.3g}"):
        return df.to_string(index=False)


def headline_of(c) -> str | None:
    """The scenario's headline metric (``headline:`` in its YAML), if the comparison knows
    its scenario."""
    return getattr(c, "headline", None)


def headline_metrics(c) -> list[str]:
    """The metrics a comparison's tables show: the scenario's headline first, then
    :data:`HEADLINE`, those the runs have."""
    first = [headline_of(c)] if headline_of(c) else []
    return [m for m in dict.fromkeys([*first, *HEADLINE])
            if m in c.summary.columns and m != "policy"]


def interval_table(c, metrics) -> pd.DataFrame:
    """One line per metric, one column per policy (and group): ``mean [low, high]`` in the
    interval of the metric's kind; an outcome as ``k of n [low, high]``."""
    from .stats import with_intervals
    wide = with_intervals(c.stats(metrics), by=c.by)
    keys = [*c.by, "policy"]
    cols = [" ".join(str(v) for v in r) for r in wide[keys].itertuples(index=False)]
    t = wide.drop(columns=keys).T
    t.columns = cols
    return t.rename_axis("metric").reset_index()


def diff_table(c, baseline: str, metrics) -> tuple[pd.DataFrame, int, int]:
    """The paired differences as printed, the family size and how many are starred."""
    d = c.diff(baseline, metrics)
    fin = np.isfinite(d["ci_low"])
    d["paired diff [95 % CI]"] = [
        f"{x:.3g} [{lo:.3g}, {hi:.3g}]{' *' if z else ''}" if f else
        ("-" if not np.isfinite(x) else f"{x:.3g}")
        for x, lo, hi, z, f in zip(d["diff"], d["ci_low"], d["ci_high"], d["star"], fin)]
    d["p (Holm)"] = [f"{p:.2g}" if np.isfinite(p) else "-" for p in d["p_holm"]]
    d["pairs"] = [f"{n} of {k}" if complete_only(m) and n < k else f"{n}"
                  for n, k, m in zip(d["n"], d["pairs"], d["metric"])]
    fam = int(d["family"].iloc[0]) if len(d) else 0
    return (d[[*c.by, "policy", "metric", "pairs", "paired diff [95 % CI]", "p (Holm)"]],
            fam, int(d["star"].sum()))


def comparison_report(c, baseline: str | None = None) -> str:
    """The whole text of a comparison (what ``workbench compare`` prints after its first
    line)."""
    head = headline_of(c)
    metrics, zero = [], []
    for m in headline_metrics(c):
        v = c.summary[m].astype(float)
        (zero if m != head and not np.nanmax(np.abs(v), initial=0) else metrics).append(m)
    out = ["Verdicts (a run that stopped early is an outcome, never a latency sample):",
           *(f"  {line}" for line in verdict_lines(c.summary, c.by))]
    if head:
        out.append(f"Headline metric of the scenario: {head}")
    if zero:
        out.append(f"0 in every run of every policy (left out below): {', '.join(zero)}")
    t = c.table
    t = t.drop(columns=[x for x in t.columns if x in zero or (kind(x) == "latency" and x != head)])
    out += ["", "Outcomes (runs that ended so, of reps), costs (mean per run over all runs; "
                "a run that stopped early ran shorter) and latency and fairness (mean over "
                "complete runs):", fmt(t)]
    lat = c.latency
    lat = lat[lat["op"].isin(LATENCY_OPS)] if len(lat) else lat
    out += ["", "Latency per operation (us; the ops of all complete replications pooled; the "
                "hostile vCPUs' own operations left out):",
            fmt(lat.sort_values([*c.by, "op", "policy"], kind="stable")) if len(lat)
            else "(no ops kept: record='summary', or no complete run)"]
    out += ["", "Mean [95 % interval] over replications (outcomes: k of n runs, Clopper-"
                "Pearson; counts: t or exact Poisson, never below 0; latency and fairness: "
                "complete runs only):", fmt(interval_table(c, metrics))]
    tails = c.tails()
    if len(tails):
        short = tails[~tails["enough"]]
        if len(short):
            need = short.groupby("quantile")["min_ops"].first()
            out += ["", "Tail intervals (p99, p99.9 of each run): "
                    + "; ".join(f"{q} printed only where every complete run has >= {n} ops"
                                for q, n in need.items())
                    + f" (coverage tested >= 93 % there); {len(short)} of {len(tails)} "
                      "not printed for lack of ops"]
    if baseline:
        d, fam, stars = diff_table(c, baseline, metrics)
        out += ["", f"Paired differences against {baseline} (policy - {baseline}, per "
                    f"replication; latency and fairness over pairs of complete runs; 95 % "
                    f"t-intervals; * Holm-adjusted p < 0.05 over this table's family of {fam} "
                    f"differences: {stars} starred; outcomes are compared by the verdicts "
                    "and their exact rates above):", fmt(d)]
    return "\n".join(out)


__all__ = ["comparison_report", "headline_metrics", "interval_table", "diff_table", "fmt"]
