"""One figure for 2-6 policy sets: latency, fairness and outcomes in aligned columns."""
from __future__ import annotations

import plotly.graph_objects as go

from .fairness import breakdown_traces, fairness_traces, work_traces
from .latency import ccdf_traces, op_name
from ...experiments.verdicts import verdict_lines
from .outcomes import OUTCOMES, bar, nonzero

# starvation, beside the outcomes (means over complete runs: Comparison.table)
STARVATION = ("longest_wait_us", "wait_spread")
from .style import is_share, policies, themed, title

MAX_POLICIES = 6


def main_op(ops) -> str:
    """The op a comparison is about: the 4 KB zap when there are zaps, else the
    guest-visible fault wait, else the first op."""
    present = set(ops["op"]) if len(ops) else set()
    return next((o for o in ("zap_4k", "fault_wait") if o in present),
                next(iter(sorted(present)), "zap_4k"))


def _wrap(text: str, width: int = 22, all_lines: bool = False) -> str:
    """A title broken at the last space before ``width`` (once, or on every line), so it
    does not run into its neighbour or out of the figure."""
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width + 1)
    if cut < 0:
        return text
    rest = text[cut + 1:]
    return f"{text[:cut]}<br>{_wrap(rest, width, True) if all_lines else rest}"


def dashboard(c, op: str | None = None) -> go.Figure:
    """A :class:`~workbench.experiments.Comparison` of 2-6 policy sets in one figure. Top
    row: the tail of ``op`` (successes only, failures in the legend) | useful work per
    vCPU by policy (from ``c.vcpus`` when the comparison has it) | Jain's index with its
    interval. Bottom row: where the vCPUs' time goes, then one panel per outcome that is
    non-zero for some policy. Policy axes share one order; a legend click hides a
    policy's line everywhere it is grouped."""
    from plotly.subplots import make_subplots
    names = policies(c.summary)
    if not 1 <= len(names) <= MAX_POLICIES:
        raise ValueError(f"dashboard: give 1 to {MAX_POLICIES} policy sets, not {len(names)}")
    op = op or main_op(c.ops)
    table = c.table
    head = [getattr(c, "headline", None)] if getattr(c, "headline", None) else []
    cols, zero = nonzero(table, list(dict.fromkeys([*head, *OUTCOMES, *STARVATION])))
    ops = c.complete_ops() if hasattr(c, "complete_ops") else c.ops
    vcpus = getattr(c, "vcpus", None)
    has_v = vcpus is not None and len(vcpus)
    n_bottom = len(cols) + bool(has_v)
    step = max(1, -(-n_bottom // 3))      # top panels span `step` bottom columns each
    width = 3 * step
    specs = [[{"colspan": step} if i % step == 0 else None for i in range(width)],
             [{} if i < n_bottom else None for i in range(width)]]
    tops = [f"{op_name(op)} tail: share of successes slower than x",
            "useful work per vCPU" if has_v else "useful work: per-vCPU data not in this comparison",
            "fairness over complete runs (95 % interval): filled, Jain's index; open, "
            "host's share of acquisitions after a BUSY"]
    bottoms = [_wrap(t) for t in (["where vCPU time goes"] if has_v else [])
               + [title(x) for x in cols]]
    fig = make_subplots(rows=2, cols=width, specs=specs, subplot_titles=tops + bottoms,
                        row_heights=[0.58, 0.42], vertical_spacing=0.2,
                        horizontal_spacing=0.06 if width <= 4 else 0.035)
    for t in ccdf_traces(ops, op, group=True):
        fig.add_trace(t, row=1, col=1)
    fig.update_xaxes(type="log", title_text="µs (log)", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    if has_v:
        for t in work_traces(vcpus, legend=False, group=True):
            fig.add_trace(t, row=1, col=1 + step)
        fig.update_layout(boxmode="group")
    for t in fairness_traces(c.summary):
        fig.add_trace(t, row=1, col=1 + 2 * step)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1 + 2 * step)
    fig.update_xaxes(categoryorder="array", categoryarray=names, tickangle=30, row=1,
                     col=1 + 2 * step)
    col = 1
    if has_v:
        for t in breakdown_traces(vcpus, legend=True):
            fig.add_trace(t, row=2, col=1)
        fig.update_yaxes(tickformat=".0%", range=[0, 1], row=2, col=1)
        col = 2
    for x in cols:
        fig.add_trace(bar(table, x, horizontal=False), row=2, col=col)
        if is_share(x):
            fig.update_yaxes(tickformat=".2~%", row=2, col=col)
        col += 1
    fig.update_xaxes(categoryorder="array", categoryarray=names, row=2)
    fig.update_xaxes(tickangle=30, row=2)
    fig.update_layout(barmode="stack", height=820, width=max(1100, 190 * width),
                      legend=dict(orientation="h", y=-0.18, x=0))
    fig.update_annotations(font_size=12)
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    none = ("<br>" + _wrap("0 for every policy (not drawn): "
                           + ", ".join(title(x) for x in zero), 130, all_lines=True)
            if zero else "")
    stops = [v for v in verdict_lines(c.summary) if "ran to the horizon" not in v]
    verdicts = ("<br>" + "<br>".join(_wrap(v, 130, all_lines=True) for v in stops)
                if stops else "")
    fig.update_layout(margin=dict(t=100 + 16 * (none + verdicts).count("<br>")))
    fig = themed(fig, "Latency, fairness and costs side by side",
                  f"{len(names)} policy sets, {reps} replication(s) each on the same seeds; "
                  f"latency and fairness over complete runs only, failures never drawn as "
                  f"fast{verdicts}{none}")
    # the subtitle grows downwards from the top, never into the panel titles
    return fig.update_layout(title_yref="container", title_y=1.0, title_yanchor="top",
                             title_pad_t=24)
