"""A race finder's counterexample (``workbench.replay.trace_table``) as a timeline."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import themed


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
    return themed(fig, "The counterexample, step by step",
                   f"{len(trace)} steps; red: a call the TDX module refused with BUSY",
                   legend="")
