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
    where, hidden = _step_labels(calls)
    for pos in ("top center", "bottom center"):
        g = calls[where == pos]
        fig.add_trace(go.Scatter(x=g["t_end_us"], y=g["actor"], mode="text",
                                 text=g["step"].astype(str), textposition=pos,
                                 showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=calls["t_end_us"], y=calls["actor"], mode="markers",
                             marker=dict(size=6, opacity=0), showlegend=False,
                             text=calls["step"].astype(str) + ": " + calls["call"],
                             hovertemplate="step %{text}<extra>%{y}</extra>"))
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
                  "with BUSY; numbers: the trace's steps"
                  + (f" ({hidden} too close to another to print: hover)" if hidden else ""),
                  legend="SEAMCALL / TDCALL")


def _step_labels(calls: pd.DataFrame, per_lane: int = 40) -> tuple[pd.Series, int]:
    """Where each call's step number goes: above its bar, below it when the label above
    would touch the previous one on its lane, nowhere when both would (the hover still
    has it); labels count as touching within 1/``per_lane`` of the time span. Returns the
    positions and how many are not printed."""
    span = float(calls["t_end_us"].max() - calls["t_start_us"].min()) or 1.0
    gap = span / per_lane
    where = pd.Series("", index=calls.index)
    for _, g in calls.sort_values("t_end_us").groupby("actor", sort=False):
        last = {"top center": -float("inf"), "bottom center": -float("inf")}
        for i, t in zip(g.index, g["t_end_us"]):
            pos = next((p for p in last if t - last[p] >= gap), "")
            if pos:
                last[pos] = t
            where[i] = pos
    return where, int((where == "").sum())
