"""One run over time: what each vCPU and host thread was doing, BUSY marked."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import PALETTE, empty, themed

BUSY = ("TDX_OPERAND_BUSY", "TDX_OPERAND_BUSY_HOST_PRIORITY")


def busy_timeline(calls: pd.DataFrame, bins: int = 40) -> go.Figure:
    """BUSY statuses over time, by SEAMCALL/TDCALL leaf and operand, for one run."""
    busy = calls[calls["status_name"].isin(BUSY)]
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
    return themed(fig, "When did the TDX module say BUSY, and to whom?",
                  f"{len(busy)} BUSY of {len(calls)} calls; TDG.* are the guest's own TDCALLs",
                  legend="call (operand)")


def _segments(df: pd.DataFrame, lane: str):
    """x and y of many horizontal segments in one trace (None between two)."""
    n = len(df)
    x = np.empty(3 * n, dtype=object)
    y = np.empty(3 * n, dtype=object)
    x[0::3], x[1::3], x[2::3] = df["t_start_us"].to_numpy(), df["t_end_us"].to_numpy(), None
    y[0::3] = y[1::3] = df[lane].to_numpy()
    y[2::3] = None
    return x, y


def _actor_order(actors) -> list[str]:
    import re

    def key(a):
        m = re.search(r"(\d+)$", a)
        return (":" in a, a.split(":")[0] if ":" in a else "", int(m.group(1)) if m else -1, a)
    return sorted(set(actors), key=key)


def run_timeline(run, t0_us: float = 0.0, t1_us: float | None = None,
                 max_calls: int = 20000) -> go.Figure:
    """One run (a :class:`~workbench.experiments.RunResult`): per vCPU and host thread (a
    lane each), every SEAMCALL/TDCALL as a short bar coloured by leaf, BUSY replies
    marked with a red x, and the operations (faults, zaps, conversions) as pale bands
    behind them. Zoom in to see a stall propagate; ``t0_us``/``t1_us`` cut a window."""
    calls, ops = run.calls, run.ops
    t1 = t1_us if t1_us is not None else float(calls["t_end_us"].max()) if len(calls) else 0.0
    calls = calls[(calls["t_end_us"] >= t0_us) & (calls["t_start_us"] <= t1)]
    ops = ops[(ops["t_end_us"] >= t0_us) & (ops["t_start_us"] <= t1)]
    head = "What was each vCPU and host thread doing? (one run)"
    if calls.empty:
        return themed(empty(go.Figure(), "no calls in this window"), head)
    cut = len(calls) > max_calls
    calls = calls.iloc[:max_calls]
    fig = go.Figure()
    for i, (op, g) in enumerate(ops.groupby("op", sort=True)):
        x, y = _segments(g, "actor")
        fig.add_trace(go.Scattergl(x=x, y=y, mode="lines", name=f"op: {op}", opacity=0.25,
                                   line=dict(width=18, color=PALETTE[(i + 5) % len(PALETTE)]),
                                   hoverinfo="skip", legendgroup="ops"))
    for i, (leaf, g) in enumerate(calls.groupby("leaf", sort=True)):
        x, y = _segments(g, "caller")
        fig.add_trace(go.Scattergl(x=x, y=y, mode="lines", name=leaf,
                                   line=dict(width=8, color=PALETTE[i % len(PALETTE)])))
    busy = calls[calls["status_name"].isin(BUSY)]
    fig.add_trace(go.Scattergl(
        x=busy["t_start_us"], y=busy["caller"], mode="markers", name=f"BUSY ({len(busy)})",
        marker=dict(symbol="x", color="#D62728", size=9),
        text=busy["leaf"] + " " + busy["operand"].astype(str),
        hovertemplate="%{text} BUSY at %{x:.2f} µs<extra>%{y}</extra>"))
    lanes = _actor_order([*calls["caller"], *ops["actor"]])
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1], title_text="")
    fig.update_xaxes(title_text="simulated time (µs)", range=[t0_us, t1])
    fig.update_layout(height=max(360, 34 * len(lanes) + 160))
    m = run.manifest
    return themed(fig, head, f"{m.get('policy', {}).get('preset', '')} on "
                  f"{m.get('scenario', {}).get('name', '')}, seed {m.get('seed', '')}; red x: "
                  "a BUSY reply; pale bands: operations" +
                  (f"; first {max_calls} calls only (cut a window)" if cut else ""),
                  legend="SEAMCALL / TDCALL")
