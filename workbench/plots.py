"""Layer 7: figures. A DataFrame from ``workbench.run``/``compare`` in, a plotly figure out;
nothing here runs a simulation. One theme, so every figure of a report looks alike."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .metrics import HOSTILE_ROLES

THEME = dict(template="plotly_white", font=dict(family="DejaVu Sans, Arial", size=13),
             margin=dict(l=70, r=30, t=70, b=60), legend=dict(title_text="policy"))


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=15, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _themed(fig: go.Figure, title: str, subtitle: str = "", legend: str = "policy") -> go.Figure:
    text = f"{title}<br><sup>{subtitle}</sup>" if subtitle else title
    fig.update_layout(title=dict(text=text, x=0.01), **THEME)
    fig.update_layout(legend_title_text=legend)
    return fig


def latency_ecdf(ops: pd.DataFrame, op: str = "private_fault") -> go.Figure:
    """Share of ``op`` operations finished within x µs, one line per policy (log x).
    The hostile vCPUs' own operations are left out."""
    ops = ops[(ops["op"] == op) & ~ops.get("role", pd.Series("", index=ops.index)).isin(HOSTILE_ROLES)]
    fig = go.Figure()
    for policy, g in ops.groupby("policy", sort=False):
        lat = np.sort(g["latency_us"].to_numpy())
        fig.add_trace(go.Scatter(x=lat, y=np.arange(1, len(lat) + 1) / len(lat),
                                 mode="lines", name=str(policy), line_shape="hv"))
    if ops.empty:
        return _themed(_empty(fig, f"no {op} operations in these runs"),
                       f"How long {op.replace('_', ' ')} takes, by policy")
    fig.update_xaxes(type="log", title_text=f"{op} latency (µs, log scale)")
    fig.update_yaxes(title_text="share finished within x", range=[0, 1.02])
    n = ops.groupby("policy").size()
    return _themed(fig, f"How long {op.replace('_', ' ')} takes, by policy",
                   "further left is faster; a long tail to the right is what a p99 hides "
                   f"(n per policy: {', '.join(f'{p} {k}' for p, k in n.items())})")


OUTCOME_COLUMNS = {"host_busy_rate": "BUSY share of host calls",
                   "guest_busy_rate": "BUSY share of the guest's TDCALLs", "kicks": "all-vCPU kicks",
                   "error_exits": "error exits to userspace", "ioctl_errors": "failed ioctls",
                   "vm_bugged": "runs with the VM bugged", "guest_panics": "runs with a guest panic",
                   "hp_timeouts": "HOST_PRIORITY timeouts", "zero_step_armings": "zero-step armings"}


def outcomes(table: pd.DataFrame, columns=None) -> go.Figure:
    """A small horizontal bar chart per outcome, one bar per policy (from
    ``Comparison.table``); a panel where every policy scores 0 says so."""
    from plotly.subplots import make_subplots
    cols = [c for c in (columns or OUTCOME_COLUMNS) if c in table.columns]
    if table.empty or not cols:
        return _themed(_empty(go.Figure(), "nothing to show: no runs or no such columns"),
                       "What each policy costs and risks")
    ncols = 4
    nrows = -(-len(cols) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.16, subplot_titles=[OUTCOME_COLUMNS.get(c, c) for c in cols])
    policies = table["policy"].astype(str).tolist()[::-1]
    for i, c in enumerate(cols):
        row, col = divmod(i, ncols)
        values = table[c].to_numpy()[::-1]
        fig.add_trace(go.Bar(y=policies, x=values, orientation="h", showlegend=False,
                             marker_color="#4C78A8", hovertemplate="%{y}: %{x:.3g}<extra></extra>"),
                      row=row + 1, col=col + 1)
        if not np.nanmax(np.abs(values), initial=0):
            fig.update_xaxes(range=[0, 1], showticklabels=False, row=row + 1, col=col + 1)
            fig.add_annotation(text="0 for every policy", showarrow=False, x=0.5, y=0.5,
                               xref=f"x{i + 1 if i else ''} domain", yref=f"y{i + 1 if i else ''} domain",
                               font=dict(color="#888"))
    fig.update_annotations(font_size=12)
    fig.update_layout(height=230 * nrows + 90)
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    return _themed(fig, "What each policy costs and risks",
                   f"mean per run over {reps} replication(s); 'runs' counts replications")


def busy_timeline(calls: pd.DataFrame, bins: int = 40) -> go.Figure:
    """BUSY statuses over time, by SEAMCALL/TDCALL leaf and operand, for one run."""
    busy = calls[calls["status_name"].isin(["TDX_OPERAND_BUSY", "TDX_OPERAND_BUSY_HOST_PRIORITY"])]
    span = float(calls["t_end_us"].max()) if len(calls) else 1.0
    width = max(1.0, float(np.ceil(span / bins)))
    fig = go.Figure()
    for (leaf, operand), g in busy.groupby(["leaf", "operand"]):
        t = (g["t_start_us"] // width) * width
        counts = t.value_counts().sort_index()
        fig.add_trace(go.Bar(x=(counts.index + width / 2) / 1000.0, y=counts.to_numpy(),
                             width=width / 1000.0, name=f"{leaf} ({operand})"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="simulated time (ms)")
    fig.update_yaxes(title_text=f"BUSY per {width:g} µs")
    return _themed(fig, "When the TDX module said BUSY, and to whom",
                   f"{len(busy)} BUSY of {len(calls)} calls; TDG.* are the guest's own TDCALLs",
                   legend="call (operand)")


def sweep_lines(table: pd.DataFrame, metric: str = "accept_throughput_per_ms",
                param: str = "") -> go.Figure:
    """``metric`` against the swept value, one line per policy (from ``sweep(...).table``)."""
    if "value" not in table.columns or metric not in table.columns:
        raise ValueError(f"sweep_lines needs a sweep table with a {metric!r} column "
                         "(workbench.sweep(...).table)")
    fig = go.Figure()
    for policy, g in table.groupby("policy", sort=False):
        fig.add_trace(go.Scatter(x=g["value"], y=g[metric], mode="lines+markers",
                                 name=str(policy)))
    fig.update_xaxes(title_text=param or "swept value")
    fig.update_yaxes(title_text=metric.replace("_", " "), rangemode="tozero")
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    return _themed(fig, f"{metric.replace('_', ' ')} as {param or 'the parameter'} grows",
                   f"mean over {reps} replication(s) per point")


def interval_lines(stats: pd.DataFrame, metric: str, x: str, log_x: bool = False
                   ) -> go.Figure:
    """``metric`` against factor ``x``, one line per policy, with its 95 % t-interval as
    error bars (from ``Comparison.stats()`` or ``workbench.results(name, table="stats")``).
    Other factors of the design must be fixed first (filter the table)."""
    s = stats[stats["metric"] == metric] if "metric" in stats.columns else stats.iloc[0:0]
    if s.empty or x not in s.columns:
        raise ValueError(f"interval_lines needs a stats table with metric {metric!r} and a "
                         f"column {x!r} (Comparison.stats())")
    fig = go.Figure()
    for policy, g in s.groupby("policy", sort=False):
        g = g.sort_values(x)
        fig.add_trace(go.Scatter(
            x=g[x], y=g["mean"], mode="lines+markers", name=str(policy),
            error_y=dict(type="data", symmetric=False, array=g["ci_high"] - g["mean"],
                         arrayminus=g["mean"] - g["ci_low"])))
    fig.update_xaxes(title_text=x, type="log" if log_x else None)
    fig.update_yaxes(title_text=metric.replace("_", " "))
    n = int(s["n"].max())
    return _themed(fig, f"{metric.replace('_', ' ')} against {x}",
                   f"mean and 95 % t-interval over {n} replication(s) per point")
