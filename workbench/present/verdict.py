"""One verdict line per policy of a comparison: what broke first, else the tail and the
fairness. The panel's status line and the review file both take their lines from
:func:`verdict_lines`, the one place to swap for the statistics' own verdicts."""
from __future__ import annotations

import math

from .plots.dashboard import main_op
from .plots.latency import op_name, split
from .plots.style import policies

# (summary column, what a run with a non-zero value means), the worst first
BROKEN = (("vm_bugged", "VM bugged"), ("td_failed", "TD failed"),
          ("guest_panics", "guest panicked"))


def verdict_lines(c, op: str | None = None) -> dict[str, str]:
    """``{policy label: line}``. A policy that broke the VM or the TD in any run says so,
    with in how many runs, and its latency is not compared (a broken run's numbers stop
    early); else the ``op`` tail (p99 of successes, failures counted apart), the error
    exits a run and Jain's index of useful work."""
    s = c.summary
    op = op or main_op(c.ops)
    tails = {p: (ok, failed, n) for p, ok, failed, n in split(c.ops, op)}
    out = {}
    for p in policies(s):
        runs = s[s["policy"].astype(str) == p]
        n = len(runs)
        broken = [f"{what} in {int((runs[col] > 0).sum())} of {n} runs"
                  for col, what in BROKEN if col in runs and (runs[col] > 0).any()]
        if broken:
            out[p] = f"{p}: {'; '.join(broken)}; latency not compared"
            continue
        parts = []
        ok, failed, total = tails.get(p, ((), 0, 0))
        if len(ok):
            p99 = float(_quantile(ok, 0.99))
            parts.append(f"{op_name(op)} p99 {p99:.3g} µs"
                         + (f", {failed} of {total} failed" if failed else ", none failed"))
        exits = runs["error_exits"].mean() if "error_exits" in runs else 0.0
        parts.append(f"{exits:.3g} error exits a run" if exits else "no error exits")
        if "jain_work" in runs and runs["jain_work"].notna().any():
            parts.append(f"Jain's index {runs['jain_work'].mean():.3f}")
        out[p] = f"{p}: {'; '.join(parts)} ({n} run{'s' if n != 1 else ''})"
    return out


def _quantile(sorted_values, q: float) -> float:
    """The ``q`` quantile of sorted values (linear interpolation, as pandas)."""
    x = (len(sorted_values) - 1) * q
    lo = math.floor(x)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (x - lo)
