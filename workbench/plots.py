"""Layer 7: figures. A DataFrame from ``workbench.run``/``compare`` in, a plotly figure out;
nothing here runs a simulation. One theme, so every figure of a report looks alike."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .metrics import HOSTILE_ROLES

THEME = dict(template="plotly_white", font=dict(family="DejaVu Sans, Arial", size=13),
             margin=dict(l=70, r=30, t=70, b=60), legend=dict(title_text="policy"))


def _themed(fig: go.Figure, title: str, subtitle: str = "") -> go.Figure:
    text = f"{title}<br><sup>{subtitle}</sup>" if subtitle else title
    fig.update_layout(title=dict(text=text, x=0.01), **THEME)
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
    fig.update_xaxes(type="log", title_text=f"{op} latency (µs, log scale)")
    fig.update_yaxes(title_text="share finished within x", range=[0, 1.02])
    n = ops.groupby("policy").size()
    return _themed(fig, f"How long {op.replace('_', ' ')} takes, by policy",
                   "further left is faster; a long tail to the right is what a p99 hides "
                   f"(n per policy: {', '.join(f'{p} {k}' for p, k in n.items())})")


OUTCOME_COLUMNS = {"busy_rate": "BUSY share of host calls", "kicks": "all-vCPU kicks",
                   "error_exits": "error exits to userspace", "ioctl_errors": "failed ioctls",
                   "vm_bugged": "VMs bugged (runs)", "guest_panics": "guest panics (runs)",
                   "hp_timeouts": "HOST_PRIORITY timeouts", "zero_step_armings": "zero-step armings"}


def outcomes(table: pd.DataFrame, columns=None) -> go.Figure:
    """One small bar chart per outcome, policies side by side (from ``Comparison.table``)."""
    from plotly.subplots import make_subplots
    cols = [c for c in (columns or OUTCOME_COLUMNS) if c in table.columns]
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=[OUTCOME_COLUMNS.get(c, c) for c in cols])
    for i, c in enumerate(cols, start=1):
        fig.add_trace(go.Bar(x=table["policy"], y=table[c], showlegend=False,
                             marker_color="#4C78A8"), row=1, col=i)
    fig.update_xaxes(tickangle=-40)
    fig.update_layout(height=380)
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    return _themed(fig, "What each policy costs and risks",
                   f"mean per run over {reps} replication(s); 'runs' counts replications")


def busy_timeline(calls: pd.DataFrame, bin_us: float = 500.0) -> go.Figure:
    """BUSY statuses per time bin, by SEAMCALL/TDCALL leaf, for one run."""
    busy = calls[calls["status_name"].isin(["TDX_OPERAND_BUSY", "TDX_OPERAND_BUSY_HOST_PRIORITY"])]
    fig = go.Figure()
    for leaf, g in busy.groupby("leaf"):
        bins = (g["t_start_us"] // bin_us) * bin_us / 1000.0
        counts = bins.value_counts().sort_index()
        fig.add_trace(go.Bar(x=counts.index, y=counts.to_numpy(), name=str(leaf)))
    fig.update_layout(barmode="stack", legend_title_text="leaf")
    fig.update_xaxes(title_text="simulated time (ms)")
    fig.update_yaxes(title_text=f"BUSY per {bin_us:g} µs")
    return _themed(fig, "When the TDX module said BUSY, and to whom",
                   f"{len(busy)} BUSY of {len(calls)} calls")
