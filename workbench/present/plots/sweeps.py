"""A metric against a factor: one line per policy with its interval band, facets for a
second factor (never merged into one line)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import is_share, label, line, policies, rgba, policy_color, themed, title


def sweep_lines(table: pd.DataFrame, metric: str = "accept_throughput_per_ms",
                param: str = "") -> go.Figure:
    """``metric`` against the swept value, one line per policy (from ``sweep(...).table``)."""
    if "value" not in table.columns or metric not in table.columns:
        raise ValueError(f"sweep_lines needs a sweep table with a {metric!r} column "
                         "(workbench.sweep(...).table)")
    fig = go.Figure()
    names = policies(table)
    for policy, g in table.groupby("policy", sort=False):
        fig.add_trace(go.Scatter(x=g["value"], y=g[metric], mode="lines+markers",
                                 name=str(policy), line=line(policy, names)))
    fig.update_xaxes(title_text=label(param) if param else "swept value")
    fig.update_yaxes(title_text=label(metric), rangemode="tozero")
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    return themed(fig, f"How does {title(metric)} change with {title(param) or 'the parameter'}?",
                  f"mean over {reps} replication(s) per point")


def _facet_titles(facet: str, values) -> list[str]:
    """``factor = value`` per panel; the value alone beyond three panels (the subtitle
    names the factor), so titles do not run into each other."""
    return [f"{title(facet)} = {v}" if len(values) <= 3 else str(v) for v in values]


def _band(fig, g, x, policy, names, row=None, col=None, legend=True):
    g = g.sort_values(x)
    kw = dict(row=row, col=col) if row else {}
    c = policy_color(policy)
    if g["ci_low"].notna().any():
        xs = np.concatenate([g[x].to_numpy(), g[x].to_numpy()[::-1]])
        ys = np.concatenate([g["ci_high"].to_numpy(), g["ci_low"].to_numpy()[::-1]])
        fig.add_trace(go.Scatter(x=xs, y=ys, fill="toself", fillcolor=rgba(c, 0.15),
                                 mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
                                 legendgroup=policy), **kw)
    fig.add_trace(go.Scatter(x=g[x], y=g["mean"], mode="lines+markers", name=policy,
                             line=line(policy, names), legendgroup=policy, showlegend=legend,
                             customdata=np.stack([g["ci_low"], g["ci_high"], g["n"]], axis=-1),
                             hovertemplate="%{y:.4g} [%{customdata[0]:.4g}, "
                                           "%{customdata[1]:.4g}] n=%{customdata[2]}"), **kw)


def interval_lines(stats: pd.DataFrame, metric: str, x: str, facet: str | None = None,
                   log_x: bool = False) -> go.Figure:
    """``metric`` against factor ``x``, one line per policy with its 95 % t-interval as a
    band (from ``Comparison.stats()`` or ``workbench.results(name, table="stats")``).
    ``facet``: a second factor, one panel per value. Any other factor must be fixed first
    (filter the table): lines are never merged over it."""
    s = stats[stats["metric"] == metric] if "metric" in stats.columns else stats.iloc[0:0]
    if s.empty or x not in s.columns or (facet and facet not in s.columns):
        raise ValueError(f"interval_lines needs a stats table with metric {metric!r} and "
                         f"columns {x!r}{' and ' + repr(facet) if facet else ''} "
                         "(Comparison.stats())")
    dup = s.groupby([c for c in ("policy", x, facet) if c]).size()
    if (dup > 1).any():
        raise ValueError(f"interval_lines: several rows per policy and {x}: another factor "
                         "varies; filter it or pass it as facet")
    from plotly.subplots import make_subplots
    fvals = list(dict.fromkeys(s[facet])) if facet else [None]
    fig = make_subplots(rows=1, cols=len(fvals), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=_facet_titles(facet, fvals) if facet else None)
    for j, fv in enumerate(fvals):
        sub = s[s[facet] == fv] if facet else s
        names = policies(s)
        for policy in names:
            g = sub[sub["policy"].astype(str) == policy]
            if len(g):
                _band(fig, g, x, policy, names, 1, j + 1, legend=j == 0)
    fig.update_xaxes(title_text=label(x), type="log" if log_x else None)
    fig.update_yaxes(title_text=label(metric), row=1, col=1,
                     tickformat=".0%" if is_share(metric) else None)
    fig.update_layout(width=max(800, (420 if len(fvals) <= 3 else 280) * len(fvals) + 150),
                      height=480)
    n = int(s["n"].max())
    return themed(fig, f"How does {title(metric)} change with {title(x)}?",
                  f"mean and 95 % t-interval (band) over {n} replication(s) per point" +
                  (f"; one panel per {title(facet)}" if facet else ""))


sweep_bands = interval_lines
