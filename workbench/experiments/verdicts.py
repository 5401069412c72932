"""Layer 6: one verdict line per policy, which opens every comparison.

A run that stopped before its horizon (VM bugged, guest panic, the VMM or a selftest
stopped it, the run budget) is an outcome, never a latency sample: its few, short
operations would make the policy that broke the VM look fast. So each policy's line says
how its runs ended, and whether its latency and fairness are compared at all:

    upstream: ran to the horizon in 3 of 3 runs
    patch-09-21: VM bugged in 3 of 3 runs (TDX_BUG_ON TDH.MEM.RANGE.BLOCK, median at 135 us); latency not compared

Latency and fairness are computed over the complete runs only, and only where at least
:data:`MIN_COMPLETE` of them are (an interval needs two values).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .definitions import MIN_COMPLETE, complete

REASONS = {"vm_bugged": "VM bugged", "vm_dead": "VM dead", "guest_panic": "guest panic",
           "vmm_stop": "VMM stopped the TD", "test_assert": "selftest assert failed",
           "budget": "run budget reached"}
_STATUS = re.compile(r"\s*0x[0-9A-Fa-f]+")


def _detail(text: str) -> str:
    """A stop's detail without its status value (``TDX_BUG_ON TDH.MEM.RANGE.BLOCK``)."""
    return _STATUS.sub("", str(text)).strip()


def verdicts(summary: pd.DataFrame, by=()) -> pd.DataFrame:
    """One row per group (``by`` plus ``policy``): ``runs``, ``complete``, the stop
    reasons with their counts, the commonest stop detail, the median time of the stops,
    ``compared`` (enough complete runs to compare latency) and the verdict ``line``."""
    keys = [*by, "policy"]
    s = summary.assign(_complete=complete(summary))
    rows = []
    for key, g in s.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        stopped = g[~g["_complete"]]
        reasons = stopped["stopped"].astype(str).value_counts()
        detail = (stopped["stop_detail"].map(_detail).value_counts().index[0]
                  if "stop_detail" in g.columns and len(stopped) else "")
        at = (float(np.nanmedian(stopped["stopped_at_us"].astype(float)))
              if "stopped_at_us" in g.columns and len(stopped) else np.nan)
        row = {**dict(zip(keys, key)), "runs": len(g), "complete": int(g["_complete"].sum()),
               "stops": "; ".join(f"{r} {n}" for r, n in reasons.items()), "detail": detail,
               "stopped_at_median_us": at}
        row["compared"] = row["complete"] in (len(g), *range(MIN_COMPLETE, len(g) + 1))
        row["line"] = _line(row, reasons, keys)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "runs", "complete", "stops", "detail",
                                       "stopped_at_median_us", "compared", "line"])


def _line(row: dict, reasons: pd.Series, keys: list[str]) -> str:
    name = " ".join(f"{k}={row[k]}" for k in keys[:-1])
    name = f"{name} {row['policy']}" if name else str(row["policy"])
    n, k = row["runs"], row["complete"]
    if k == n:
        return f"{name}: ran to the horizon in {n} of {n} runs"
    ends = ", ".join(f"{REASONS.get(r, r)} in {c}" for r, c in reasons.items())
    where = []
    if row["detail"]:
        where.append(row["detail"])
    if np.isfinite(row["stopped_at_median_us"]):
        where.append(f"median at {row['stopped_at_median_us']:.3g} us")
    why = f" ({', '.join(where)})" if where else ""
    tail = ("latency not compared" if not row["compared"]
            else f"latency and fairness over the {k} complete runs")
    return f"{name}: {ends} of {n} runs{why}; {tail}"


def verdict_lines(summary: pd.DataFrame, by=()) -> list[str]:
    """The verdict lines, one per group and policy."""
    return verdicts(summary, by)["line"].tolist()


__all__ = ["verdicts", "verdict_lines", "MIN_COMPLETE"]
