"""Layer 7: figures. A DataFrame from ``workbench.run``/``compare`` in, a plotly figure out;
nothing here runs a simulation. One theme, so every figure of a report looks alike."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .metrics import HOSTILE_ROLES

THEME = dict(template="plotly_white", font=dict(family="DejaVu Sans, Arial", size=13),
             margin=dict(l=70, r=30, t=70, b=60), legend=dict(title_text="policy"))
# One colour per policy label in every figure of every session: the shipped presets have
# fixed colours; any other label gets one from its name (a stable hash, not the order).
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#EECA3B")
PRESET_COLORS = {"upstream": "#4C78A8", "patch-09-21": "#E45756", "zero-tolerance": "#54A24B",
                 "sean-per-path": "#F58518", "host-priority-retry": "#B279A2",
                 "vm-spinlock": "#9D755D", "paolo-bounded": "#72B7B2",
                 "mmu-lock-write": "#EECA3B", "blind-retry-all": "#FF9DA6"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def policy_color(label: str) -> str:
    """The colour of a policy label, the same in every figure, notebook and panel."""
    import zlib
    label = str(label)
    return PRESET_COLORS.get(label) or PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def _line(label: str, i: int) -> dict:
    """Colour by label; a dash style by position, so lines that overlap stay visible."""
    return dict(color=policy_color(label), dash=DASHES[i % len(DASHES)])


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
    """Share of the ``op`` operations that *succeeded* within x µs, one line per policy (log
    x). Operations that ended otherwise (an exit to userspace, a bugged VM, a fault given
    up) are not successes, however fast: the legend counts them apart. The hostile vCPUs'
    own operations are left out."""
    ops = ops[(ops["op"] == op) & ~ops.get("role", pd.Series("", index=ops.index)).isin(HOSTILE_ROLES)]
    fig = go.Figure()
    counts = []
    for i, (policy, g) in enumerate(ops.groupby("policy", sort=False)):
        ok = g[g["outcome"] == "ok"]
        failed = len(g) - len(ok)
        counts.append(f"{policy} {len(ok)}" + (f" (+{failed} failed)" if failed else ""))
        lat = np.sort(ok["latency_us"].to_numpy())
        name = f"{policy}" + (f" ({failed} not ok, not drawn)" if failed else "")
        fig.add_trace(go.Scatter(x=lat, y=np.arange(1, len(lat) + 1) / max(1, len(g)),
                                 mode="lines", name=name, line_shape="hv", line=_line(policy, i)))
    if ops.empty:
        return _themed(_empty(fig, f"no {op} operations in these runs"),
                       f"How long {op.replace('_', ' ')} takes, by policy")
    fig.update_xaxes(type="log", title_text=f"{op} latency of successful operations (µs, log scale)")
    fig.update_yaxes(title_text="share of all operations that succeeded within x",
                     range=[0, 1.02])
    return _themed(fig, f"How long {op.replace('_', ' ')} takes, by policy",
                   "successes only: further left is faster, a line that stops below 1 is the "
                   f"share that failed (n per policy: {', '.join(counts)})")


def fairness(vcpus: pd.DataFrame) -> go.Figure:
    """Useful work per vCPU (pages accepted, conversions finished), one dot per vCPU and
    replication, grouped by role and policy, with Jain's index per policy in the legend: a
    starved vCPU is a dot far below its group. Hostile vCPUs are left out. Takes the
    ``vcpus`` table of runs (``RunResult.vcpus``, concatenated over runs)."""
    from .metrics import jain
    v = vcpus[~vcpus["role"].isin(HOSTILE_ROLES)] if "role" in vcpus.columns else vcpus
    fig = go.Figure()
    if v.empty or "useful_work" not in v.columns:
        return _themed(_empty(fig, "no well-behaved vCPUs in these runs"),
                       "Who gets work done: useful work per vCPU")
    for i, (policy, g) in enumerate(v.groupby("policy", sort=False)):
        worst = min((jain(r["useful_work"]) for _, r in g.groupby(["role", "replication"])
                     if len(r) > 1), default=1.0)
        fig.add_trace(go.Box(x=g["role"], y=g["useful_work"], name=f"{policy} (Jain {worst:.3f})",
                             boxpoints="all", jitter=0.4, pointpos=0, fillcolor="rgba(0,0,0,0)",
                             line=dict(color=policy_color(policy)),
                             marker=dict(color=policy_color(policy), size=6),
                             hovertext=g["vcpu"]))
    fig.update_layout(boxmode="group")
    fig.update_xaxes(title_text="vCPU role")
    fig.update_yaxes(title_text="useful work per vCPU (pages accepted or conversions)",
                     rangemode="tozero")
    return _themed(fig, "Who gets work done: useful work per vCPU, by policy",
                   "one dot per vCPU and replication; Jain's index is the worst role's "
                   "(1 = all equal, 1/n = one vCPU does everything)")


OUTCOME_COLUMNS = {"host_busy_rate": "BUSY share of host calls",
                   "guest_busy_rate": "BUSY share of the guest's TDCALLs", "kicks": "all-vCPU kicks",
                   "error_exits": "error exits to userspace", "ioctl_errors": "failed ioctls",
                   "vm_bugged": "runs with the VM bugged", "guest_panics": "runs with a guest panic",
                   "hp_timeouts": "HOST_PRIORITY timeouts", "zero_step_armings": "zero-step armings"}


def outcomes(table: pd.DataFrame, columns=None) -> go.Figure:
    """A small horizontal bar chart per outcome, one bar per policy in its colour (from
    ``Comparison.table``). Outcomes where every policy scores 0 are not drawn; the
    subtitle names them."""
    from plotly.subplots import make_subplots
    cols = [c for c in (columns or OUTCOME_COLUMNS) if c in table.columns]
    zero = [c for c in cols if not np.nanmax(np.abs(table[c].to_numpy(dtype=float)), initial=0)]
    cols = [c for c in cols if c not in zero]
    if table.empty or not cols:
        return _themed(_empty(go.Figure(), "nothing to show: every outcome is 0 for every policy"
                              if zero else "nothing to show: no runs or no such columns"),
                       "What each policy costs and risks")
    ncols = 4
    nrows = -(-len(cols) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.16, subplot_titles=[OUTCOME_COLUMNS.get(c, c) for c in cols])
    policies = table["policy"].astype(str).tolist()[::-1]
    colors = [policy_color(p) for p in policies]
    for i, c in enumerate(cols):
        row, col = divmod(i, ncols)
        values = table[c].to_numpy()[::-1]
        fig.add_trace(go.Bar(y=policies, x=values, orientation="h", showlegend=False,
                             marker_color=colors, hovertemplate="%{y}: %{x:.3g}<extra></extra>"),
                      row=row + 1, col=col + 1)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=230 * nrows + 90)
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    none = f"; 0 for every policy: {', '.join(OUTCOME_COLUMNS.get(c, c) for c in zero)}" if zero else ""
    return _themed(fig, "What each policy costs and risks",
                   f"mean per run over {reps} replication(s); 'runs' counts replications{none}")


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
    for i, (policy, g) in enumerate(table.groupby("policy", sort=False)):
        fig.add_trace(go.Scatter(x=g["value"], y=g[metric], mode="lines+markers",
                                 name=str(policy), line=_line(policy, i)))
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
    for i, (policy, g) in enumerate(s.groupby("policy", sort=False)):
        g = g.sort_values(x)
        fig.add_trace(go.Scatter(
            x=g[x], y=g["mean"], mode="lines+markers", name=str(policy), line=_line(policy, i),
            error_y=dict(type="data", symmetric=False, array=g["ci_high"] - g["mean"],
                         arrayminus=g["mean"] - g["ci_low"])))
    fig.update_xaxes(title_text=x, type="log" if log_x else None)
    fig.update_yaxes(title_text=metric.replace("_", " "))
    n = int(s["n"].max())
    return _themed(fig, f"{metric.replace('_', ' ')} against {x}",
                   f"mean and 95 % t-interval over {n} replication(s) per point")


def counterexample(trace: pd.DataFrame) -> go.Figure:
    """A race finder's counterexample as a run timeline: one row per actor, each module
    call a bar from its start to its end (red: BUSY), the policy's actions and the stop as
    marks (``workbench.replay.trace_table``)."""
    fig = go.Figure()
    calls = trace[trace["call"].str.startswith(("TDH", "TDG"))]
    for busy, g in calls.groupby(calls["status"].str.contains("BUSY")):
        fig.add_trace(go.Bar(
            base=g["t_start_us"], x=(g["t_end_us"] - g["t_start_us"]).clip(lower=0.05),
            y=g["actor"], orientation="h", name="BUSY" if busy else "granted",
            marker_color="#d62728" if busy else "#7f7f7f",
            text=g["step"].astype(str) + " " + g["call"], hovertext=g["status"]))
    marks = trace[~trace.index.isin(calls.index) | (trace["action"] != "")]
    fig.add_trace(go.Scatter(x=marks["t_end_us"], y=marks["actor"], mode="markers+text",
                             text=marks["action"].str.slice(0, 30), textposition="top center",
                             name="policy action / stop", marker_symbol="x"))
    fig.update_xaxes(title_text="simulated time (µs)")
    return _themed(fig, "The counterexample, step by step",
                   f"{len(trace)} steps; red: a call the TDX module refused with BUSY",
                   legend="")

