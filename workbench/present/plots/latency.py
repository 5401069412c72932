"""Latency figures: successes only, failures counted apart, never drawn as fast."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...experiments.metrics import HOSTILE_ROLES
from .style import OPS, PATTERNS, bar_marker, empty, line, policies, policy_color, slot, themed


def _own(ops: pd.DataFrame, op: str) -> pd.DataFrame:
    """The ``op`` operations of the well-behaved vCPUs (hostile vCPUs' own ops left out)."""
    role = ops["role"] if "role" in ops.columns else pd.Series("", index=ops.index)
    return ops[(ops["op"] == op) & ~role.isin(HOSTILE_ROLES)]


def split(ops: pd.DataFrame, op: str):
    """Per policy: (policy, latencies of the successes sorted, number of failures, total)."""
    own = _own(ops, op)
    for policy in policies(own):
        g = own[own["policy"].astype(str) == policy]
        ok = np.sort(g.loc[g["outcome"] == "ok", "latency_us"].to_numpy(dtype=float))
        yield policy, ok, len(g) - len(ok), len(g)


def op_name(op: str) -> str:
    return OPS.get(op, op.replace("_", " "))


def latency_ecdf(ops: pd.DataFrame, op: str = "private_fault") -> go.Figure:
    """Share of the ``op`` operations that *succeeded* within x µs, one line per policy (log
    x). Operations that ended otherwise (an exit to userspace, a bugged VM, a fault given
    up) are not successes, however fast: the legend counts them apart. The hostile vCPUs'
    own operations are left out."""
    fig = go.Figure()
    counts = []
    rows = list(split(ops, op))
    names = [r[0] for r in rows]
    for policy, lat, failed, n in rows:
        counts.append(f"{policy} {len(lat)}" + (f" (+{failed} failed)" if failed else ""))
        name = f"{policy}" + (f" ({failed} not ok, not drawn)" if failed else "")
        fig.add_trace(go.Scatter(x=lat, y=np.arange(1, len(lat) + 1) / max(1, n),
                                 mode="lines", name=name, line_shape="hv", line=line(policy, names)))
    head = f"How long does a {op_name(op)} take, by policy?"
    if not fig.data:
        return themed(empty(fig, f"no {op_name(op)} operations in these runs"), head)
    fig.update_xaxes(type="log", title_text=f"{op_name(op)} latency of successes (µs, log)")
    fig.update_yaxes(title_text="share of all operations that succeeded within x",
                     range=[0, 1.02], tickformat=".0%")
    return themed(fig, head, "successes only: a line that stops below 100 % is the share "
                  f"that failed (n per policy: {', '.join(counts)})")


def ccdf_traces(ops: pd.DataFrame, op: str, legend: bool = True, group: bool = False):
    """Successes-only CCDF lines (share of successes slower than x) per policy, each named
    with its failures."""
    out = []
    rows = list(split(ops, op))
    names = [r[0] for r in rows]
    for policy, lat, failed, n in rows:
        if len(lat):
            y = (len(lat) - np.arange(len(lat))) / len(lat)
        else:
            y = np.array([])
        name = policy + (f" ({failed} of {n} failed, not drawn)" if failed else "")
        out.append(go.Scatter(x=lat, y=y, mode="lines", line_shape="hv", name=name,
                              line=line(policy, names), showlegend=legend,
                              legendgroup=policy if group else None,
                              hovertemplate=f"{policy}<br>%{{y:.3%}} slower than %{{x:.3g}} µs"
                                            "<extra></extra>"))
    return out


def latency_ccdf(ops: pd.DataFrame, op: str = "zap_4k") -> go.Figure:
    """The tail: share of successful ``op`` slower than x (log-log), one line per policy;
    beside it, the share of the ``op`` operations that failed (never drawn as fast)."""
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, column_widths=[0.75, 0.25], horizontal_spacing=0.1,
                        subplot_titles=["successes: share slower than x",
                                        "failed (not in the tail)"])
    head = f"How long is the tail of the {op_name(op)}, by policy?"
    rows = list(split(ops, op))
    if not rows:
        return themed(empty(go.Figure(), f"no {op_name(op)} operations in these runs"), head)
    for t in ccdf_traces(ops, op):
        fig.add_trace(t, row=1, col=1)
    names = [p for p, *_ in rows]
    fails = [f / n if n else 0.0 for _, _, f, n in rows]
    fig.add_trace(go.Bar(x=names, y=fails, marker=bar_marker(names),
                         showlegend=False, text=[f"{f}/{n}" for _, _, f, n in rows],
                         hovertemplate="%{x}: %{y:.1%} failed<extra></extra>"), row=1, col=2)
    fig.update_xaxes(type="log", title_text=f"{op_name(op)} latency (µs, log)", row=1, col=1)
    fig.update_yaxes(type="log", title_text="share of successes slower than x (log)",
                     row=1, col=1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=2)
    fig.update_xaxes(tickangle=30, row=1, col=2)
    # the legend (long names: failures counted in them) under the panels, not beside them
    fig.update_layout(height=560, margin_b=80 + 22 * len(rows),
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom"))
    return themed(fig, head, "further left and lower is better; failures are counted on the "
                  "right, never in the tail")


def percentile_bars(ops: pd.DataFrame, op: str = "zap_4k", seed: int = 0,
                    n_resamples: int = 499) -> go.Figure:
    """p50 / p99 / p99.9 / max of the successful ``op`` per policy (log y). With two or
    more replications, p99 and p99.9 carry the replication-bootstrap 95 % interval of
    :func:`workbench.stats.latency_intervals`."""
    from ...experiments.stats import latency_intervals
    own = _own(ops, op)
    ok = own[own["outcome"] == "ok"]
    head = f"{op_name(op)}: median and tail latency of successes, by policy"
    if ok.empty:
        return themed(empty(go.Figure(), f"no successful {op_name(op)} in these runs"), head)
    reps = int(ok.groupby("policy")["replication"].nunique().min()) if "replication" in ok else 1
    tails = (latency_intervals(ok) if reps >= 2
             else pd.DataFrame(columns=["policy", "quantile", "ci_low", "ci_high"]))
    fig = go.Figure()
    qs = {"p50": 0.5, "p99": 0.99, "p999": 0.999, "max": 1.0}
    names = policies(ok)
    for policy in names:
        lat = ok.loc[ok["policy"].astype(str) == policy, "latency_us"]
        y = [float(lat.quantile(q)) for q in qs.values()]
        lo, hi = [], []
        for q, v in zip(qs, y):
            t = tails[(tails["policy"].astype(str) == policy) & (tails["quantile"] == q)]
            ok_ci = len(t) and bool(t["enough"].iloc[0])
            mean = float(t["value_us"].iloc[0]) if ok_ci else v
            lo.append(mean - float(t["ci_low"].iloc[0]) if ok_ci else 0.0)
            hi.append(float(t["ci_high"].iloc[0]) - mean if ok_ci else 0.0)
            y[list(qs).index(q)] = mean
        fig.add_trace(go.Bar(x=["median", "p99", "p99.9", "max"], y=y, name=policy,
                             marker_color=policy_color(policy),
                             marker_pattern_shape=PATTERNS[slot(policy, names)],
                             error_y=dict(type="data", array=hi, arrayminus=lo,
                                          visible=reps >= 2)))
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="log", title_text="latency of successes (µs, log)")
    sub = (f"median, max: pooled over {reps} replications; p99/p99.9 with whiskers: mean of "
           "each run's percentile and its 95 % t-interval, only where every run has enough "
           "ops for its tested coverage (else pooled, no whisker); pass complete runs only "
           "(Comparison.complete_ops())" if reps >= 2 else
           "one replication: no interval (run more replications for one)")
    return themed(fig, head, sub)
