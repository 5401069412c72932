"""Layer 6: do the fairness metrics tell presets apart beyond replication noise?

:func:`separation` runs presets on a contested scenario (common random numbers) and, for
every pair of presets and fairness metric, takes the paired per-replication difference
over the replications complete for both; a pair is *separated* on a metric where Holm's
correction over that metric's family (every pair of presets on the scenario) leaves
p < 0.05. The measured table is in docs/findings.md ("Fairness that tells presets
apart"); ``python -m workbench.analysis.fairness`` regenerates it.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..core.records import HOSTILE_ROLES
from ..core.scenarios import load_scenario
from ..experiments.comparison import compare
from ..experiments.intervals import holm, mean_interval, paired_p_value
from ..experiments.stats import ALPHA, complete

METRICS = ("host_contested_share", "longest_wait_us", "wait_spread", "jain_work",
           "victim_slowdown")


def pair_table(summary: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """Per pair of policies and metric: the mean paired difference a - b over the
    replications complete for both, its t-interval, p and Holm-adjusted p over the
    table, and ``separated``."""
    s = summary.assign(_ok=complete(summary))
    pols = list(dict.fromkeys(s["policy"]))
    rows = []
    for a, b in itertools.combinations(pols, 2):
        both = s[s["policy"] == a].merge(s[s["policy"] == b], on=["replication", "seed"],
                                         suffixes=("@a", "@b"))
        both = both[both["_ok@a"] & both["_ok@b"]]
        for m in metrics:
            if f"{m}@a" not in both.columns:
                continue
            d = (both[f"{m}@a"] - both[f"{m}@b"]).astype(float)
            n, mean, _, lo, hi = mean_interval(d)
            rows.append({"a": a, "b": b, "metric": m, "pairs": n, "diff": mean,
                         "ci_low": lo, "ci_high": hi, "p": paired_p_value(d)})
    out = pd.DataFrame(rows, columns=["a", "b", "metric", "pairs", "diff", "ci_low",
                                      "ci_high", "p"])
    return with_holm(out)


def with_holm(t: pd.DataFrame) -> pd.DataFrame:
    """``p_holm`` (Holm over each scenario's and metric's pairs) and ``separated``."""
    t = t.copy()
    keys = [k for k in ("scenario", "metric") if k in t.columns]
    t["p_holm"] = np.nan
    for _, g in t.groupby(keys, sort=False):
        t.loc[g.index, "p_holm"] = holm(g["p"].to_numpy(dtype=float))
    t["separated"] = t["p_holm"].lt(ALPHA)
    return t


def separation(scenario: str, presets, *, reps: int = 5, seed: int = 7, sets=None,
               workers=None) -> pd.DataFrame:
    """:func:`pair_table` of ``presets`` on ``scenario`` (with ``victim_slowdown`` where
    the scenario has hostile vCPUs), tagged with the scenario."""
    cfg = load_scenario(scenario, sets)
    hostile = any(g.role in HOSTILE_ROLES for g in cfg.vcpus)
    c = compare(scenario, list(presets), reps=reps, seed=seed, sets=sets, workers=workers,
                record="summary", victims=hostile)
    return pair_table(c.summary).assign(scenario=scenario)


def separated_counts(t: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and metric: pairs separated of pairs compared, and which."""
    rows = []
    for (sc, m), g in t.groupby(["scenario", "metric"], sort=False):
        ok = g[g["pairs"] >= 2]
        sep = ok[ok["separated"]]
        rows.append({"scenario": sc, "metric": m, "separated": len(sep), "pairs": len(ok),
                     "presets apart": sorted(set(sep["a"]) | set(sep["b"])),
                     "which": "; ".join(f"{a} vs {b} ({d:+.3g})" for a, b, d in
                                        zip(sep["a"], sep["b"], sep["diff"]))})
    return pd.DataFrame(rows)


PRESETS = ("upstream", "sean-per-path", "host-priority-retry", "vm-spinlock",
           "paolo-bounded", "mmu-lock-write", "blind-retry-all")
SCENARIOS = ("malicious-accept", "conversion-storm", "zero-step", "upm-parallel")


def markdown(t: pd.DataFrame) -> str:
    """The docs table: per scenario and metric, pairs separated and the presets apart."""
    c = separated_counts(with_holm(t))
    rows = ["| scenario | metric | pairs separated | presets apart (mean paired difference "
            "a - b) |", "|---|---|---|---|"]
    rows += [f"| {r['scenario']} | `{r['metric']}` | {r['separated']} of {r['pairs']} | "
             f"{r['which'] or '-'} |" for _, r in c.iterrows()]
    return "\n".join(rows)


if __name__ == "__main__":     # ~10 min on a loaded 2-core machine
    table = pd.concat([separation(s, PRESETS, reps=5, seed=7, sets={"horizon_us": 8000})
                       for s in SCENARIOS], ignore_index=True)
    print(markdown(table))


__all__ = ["pair_table", "separation", "separated_counts", "with_holm", "markdown", "METRICS"]
