"""A race finder's counterexample (``workbench.replay.trace_table``) drawn as the run
timeline of :func:`~workbench.plots.timeline.run_timeline`: the same lanes, leaf colours and
BUSY marks, with each step's number on its call and the policy's actions marked."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import PALETTE, empty, themed
from .timeline import _actor_order, _segments

HEAD = "The counterexample, step by step"


def counterexample(trace: pd.DataFrame) -> go.Figure:
    """One lane per actor; each module call a bar coloured by leaf with its step number,
    BUSY replies a red x, the policy's actions and the stop as marks."""
    calls = trace[trace["call"].str.startswith(("TDH", "TDG"))]
    if calls.empty:
        return themed(empty(go.Figure(), "no calls in this trace"), HEAD)
    fig = go.Figure()
    for i, (leaf, g) in enumerate(calls.groupby("call", sort=True)):
        x, y = _segments(g, "actor")
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=leaf,
                                 line=dict(width=8, color=PALETTE[i % len(PALETTE)])))
    fig.add_trace(go.Scatter(x=calls["t_end_us"], y=calls["actor"], mode="text",
                             text=calls["step"].astype(str), textposition="top center",
                             showlegend=False, hoverinfo="skip"))
    busy = calls[calls["status"].str.contains("BUSY")]
    fig.add_trace(go.Scatter(
        x=busy["t_start_us"], y=busy["actor"], mode="markers", name=f"BUSY ({len(busy)})",
        marker=dict(symbol="x", color="#D62728", size=11),
        text=busy["call"] + " on " + busy["lock"],
        hovertemplate="%{text} BUSY at %{x:.2f} µs<extra>%{y}</extra>"))
    own = ~trace.index.isin(calls.index)
    marks = trace[own | (trace["action"] != "")]
    label = marks["action"].where(~own[marks.index], marks["call"] + " " + marks["action"])
    fig.add_trace(go.Scatter(x=marks["t_end_us"], y=marks["actor"], mode="markers+text",
                             hovertext=label, text=[""] * (len(marks) - 1) + [label.iloc[-1][:40]],
                             textposition="bottom left", name="policy action / stop",
                             marker=dict(symbol="diamond", color="#000000", size=9)))
    lanes = _actor_order(trace["actor"])
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1], title_text="")
    fig.update_xaxes(title_text="simulated time (µs)")
    fig.update_layout(height=max(360, 34 * len(lanes) + 160))
    return themed(fig, HEAD, f"{len(trace)} steps; red x: a call the TDX module refused "
                  "with BUSY; numbers: the trace's steps", legend="SEAMCALL / TDCALL")
