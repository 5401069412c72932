"""Figures of ``workbench.robustness``: which conclusions hold across plausible calibrations
(``holds_chart``) and which guessed timings decide a ranking (``tornado``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import THEME, policy_color


def holds_chart(table: pd.DataFrame):
    """"Holds in X % of plausible calibrations", one bar per headline claim with its
    interval, coloured by the policy claimed better."""
    t = table.iloc[::-1]
    fig = go.Figure(go.Bar(
        y=t["claim"], x=100 * t["holds_share"], orientation="h",
        marker_color=[policy_color(p) for p in t["better"]],
        error_x=dict(type="data", symmetric=False, array=100 * (t["ci_high"] - t["holds_share"]),
                     arrayminus=100 * (t["holds_share"] - t["ci_low"])),
        text=[f"{x:.0%} of {h + f} decided, {u} undecided"
              for x, h, f, u in zip(t["holds_share"], t["holds"], t["fails"], t["undecided"])],
        textposition="inside", hovertemplate="%{y}: %{x:.0f} %<extra></extra>"))
    fig.update_xaxes(range=[0, 105], title_text="holds in % of the plausible calibrations "
                                                "that decide it beyond their replication noise "
                                                "(95 % Clopper-Pearson; ties, undecided apart)")
    fig.update_layout(title=dict(text="Which headline conclusions survive the guessed timings"
                                      "<br><sup>calibrations drawn over every guessed timing's "
                                      "range (Latin hypercube)</sup>", x=0.01),
                      height=160 + 60 * len(t), **THEME)
    fig.update_layout(margin=dict(l=360, t=100))
    return fig


def timing_label(name: str) -> str:
    """``sept_add_us`` -> ``sept add (µs)``."""
    name = str(name)
    return f"{name[:-3].replace('_', ' ')} (µs)" if name.endswith("_us") else name.replace("_", " ")


def tornado(r, pairs=None, top: int = 10):
    """A tornado figure per pair of policies: for each of the ``top`` most sensitive
    timings, a bar from the mean difference ``a - b`` when that timing is in the lowest
    third of its range (○) to the mean when it is in the highest third (▶). A bar crossing
    the zero line is a timing over whose range the ranking flips; the part where ``a`` ranks
    better is drawn in ``a``'s colour, the rest in ``b``'s; the flip value found by
    :meth:`Robustness.flips` is written on its timing's row."""
    from ...analysis.robustness import swings
    pairs = list(pairs or [(x.a, x.b) for x in r.rankings().itertuples()])
    rank = r.rankings().set_index(["a", "b"])
    flips = r.flips().set_index(["a", "b"])
    titles = []
    for a, b in pairs:
        share = rank.loc[(a, b), "a_better_share"] if (a, b) in rank.index else np.nan
        titles.append(f"{a} − {b}: {a} ranks better in {share:.0%} of "
                      f"{len(r.calibrations)} calibrations")
    fig = make_subplots(rows=len(pairs), cols=1, subplot_titles=titles,
                        vertical_spacing=0.12 if len(pairs) > 1 else 0.1)
    shown = set()
    for i, (a, b) in enumerate(pairs, start=1):
        sw = swings(r, a, b, top).iloc[::-1]
        labels = [f"{timing_label(t)}  S1 {s:.2f}" if np.isfinite(s) else timing_label(t)
                  for t, s in zip(sw["timing"], sw["s1"])]
        lo_end, hi_end = sw[["low", "high"]].min(axis=1), sw[["low", "high"]].max(axis=1)
        neg = (lo_end.clip(upper=0), hi_end.clip(upper=0))
        pos = (lo_end.clip(lower=0), hi_end.clip(lower=0))
        for who, (start, end) in ((a, neg if r.lower_is_better else pos),
                                  (b, pos if r.lower_is_better else neg)):
            fig.add_trace(go.Bar(y=labels, x=end - start, base=start, orientation="h",
                                 marker_color=policy_color(who), name=f"{who} ranks better",
                                 legendgroup=who,
                                 showlegend=who not in shown and bool((end - start).any()),
                                 hovertemplate=f"{who} ranks better<extra></extra>"),
                          row=i, col=1)
            if (end - start).any():
                shown.add(who)
        for col, sym, name in (("low", "circle-open", "timing low in its range"),
                               ("high", "triangle-right", "timing high in its range")):
            fig.add_trace(go.Scatter(y=labels, x=sw[col], mode="markers", name=name,
                                     marker=dict(symbol=sym, size=9, color="#333"),
                                     legendgroup=col, showlegend=i == 1), row=i, col=1)
        fig.add_vline(x=0, line_dash="dash", line_color="#888", row=i, col=1)
        if (a, b) in flips.index:
            f = flips.loc[(a, b)]
            if f["timing"] in set(sw["timing"]):
                fig.add_annotation(text=f"flips near {f['flip_near']:.3g}", showarrow=False,
                                   x=0, y=labels[list(sw["timing"]).index(f["timing"])],
                                   xanchor="left", yshift=12, row=i, col=1,
                                   font=dict(size=11, color="#555"))
        better = "lower" if r.lower_is_better else "higher"
        fig.update_xaxes(title_text=f"mean {r.metric} of {a} − {b} ({better} is better; "
                                    "0: the ranking flips)", row=i, col=1)
    fig.update_layout(barmode="overlay", height=260 + 280 * len(pairs),
                      title=dict(text=f"Which guessed timings decide the ranking on {r.metric}"
                                 "<br><sup>a bar crossing the dashed line: over that timing's "
                                 "range the ranking flips</sup>", x=0.01), **THEME)
    fig.update_layout(legend_title_text="", margin=dict(t=120))
    return fig
