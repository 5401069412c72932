"""One figure for 2-6 policy sets: latency, fairness and outcomes in aligned columns."""
from __future__ import annotations

import plotly.graph_objects as go

from .fairness import breakdown_traces, fairness_traces, work_traces
from .latency import ccdf_traces, op_name
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


# pixel sizes of the dashboard's grid: it has no fixed width (it fills its container, 1,024
# to 1,920 px wide) and three panels per row whatever the number of outcomes, so nothing
# is cut at any width; the height follows the number of rows
GRID_COLS = 3
TOP_PX, ROW_PX, GAP_PX, LEGEND_PX = 300, 190, 115, 190
EXPORT_WIDTH = 1280
TITLE_CHARS, SUB_CHARS = 26, 80   # panel titles and subtitle lines wrap here (560 px wide)


def dashboard(c, op: str | None = None) -> go.Figure:
    """A :class:`~workbench.experiments.Comparison` of 1-6 policy sets in one figure, three
    panels a row. Top row: the tail of ``op`` (successes only, failures in the legend) |
    useful work per vCPU by policy (from ``c.vcpus`` when the comparison has it) | Jain's
    index with its interval. Then where the vCPUs' time goes and one panel per outcome
    that is non-zero for some policy, three a row. Policy axes share one order; a legend
    click hides a policy's line everywhere it is grouped. The width is the container's
    (``EXPORT_WIDTH`` when written to an image; titles wrap so that 560 px hold them); one
    legend under the panels, the policies first, then the vCPU states: plotly makes room
    for it however many rows it takes at the width drawn."""
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
    rows = 1 + -(-n_bottom // GRID_COLS)
    cells = [(1 + (i // GRID_COLS) + 1, 1 + i % GRID_COLS) for i in range(n_bottom)]
    specs = [[{} for _ in range(GRID_COLS)]] + [
        [{} if (r, k) in cells else None for k in range(1, GRID_COLS + 1)]
        for r in range(2, rows + 1)]
    tops = [f"{op_name(op)} tail: share of successes slower than x",
            "useful work per vCPU" if has_v else "useful work: per-vCPU data not in this comparison",
            "Jain's index of useful work (95 % interval)"]
    bottoms = (["where vCPU time goes"] if has_v else []) + [title(x) for x in cols]
    subtitle = _wrap(f"{len(names)} policy sets, "
                     f"{int(table['reps'].max()) if 'reps' in table.columns else 1} "
                     "replication(s) each on the same seeds; failures are named in the "
                     "legend, never drawn as fast", SUB_CHARS, all_lines=True)
    if zero:
        subtitle += "<br>" + _wrap("0 for every policy (not drawn): "
                                   + ", ".join(title(x) for x in zero), SUB_CHARS, all_lines=True)
    head_px = 100 + 17 * subtitle.count("<br>")
    plot_px = TOP_PX + (rows - 1) * ROW_PX + (rows - 1) * GAP_PX
    fig = make_subplots(rows=rows, cols=GRID_COLS, specs=specs,
                        subplot_titles=[_wrap(t, TITLE_CHARS, True) for t in tops + bottoms],
                        row_heights=[TOP_PX] + [ROW_PX] * (rows - 1),
                        vertical_spacing=GAP_PX / plot_px if rows > 1 else 0.0,
                        horizontal_spacing=0.07)
    for t in ccdf_traces(ops, op, group=True):
        fig.add_trace(t, row=1, col=1)
    fig.update_xaxes(type="log", title_text="µs (log)", row=1, col=1)
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)
    if has_v:
        for t in work_traces(vcpus, legend=False, group=True):
            fig.add_trace(t, row=1, col=2)
        fig.update_layout(boxmode="group")
    for t in fairness_traces(c.summary):
        fig.add_trace(t, row=1, col=3)
    fig.update_yaxes(range=[0, 1.05], row=1, col=3)
    fig.update_xaxes(categoryorder="array", categoryarray=names, row=1, col=3)
    for x, (r, k) in zip((["breakdown"] if has_v else []) + cols, cells):
        if x == "breakdown":
            for t in breakdown_traces(vcpus, legend=True):
                fig.add_trace(t, row=r, col=k)
            fig.update_yaxes(tickformat=".0%", range=[0, 1], row=r, col=k)
            continue
        fig.add_trace(bar(table, x, horizontal=False), row=r, col=k)
        if is_share(x):
            fig.update_yaxes(tickformat=".2~%", row=r, col=k)
    for r in range(2, rows + 1):
        fig.update_xaxes(categoryorder="array", categoryarray=names, row=r)
    fig.update_xaxes(tickangle=45, tickfont_size=11, labelalias=_aliases(names),
                     selector=lambda a: a.anchor and a.type != "log")
    fig.update_layout(barmode="stack", height=head_px + plot_px + 110 + LEGEND_PX,
                      autosize=True, width=None)
    fig.update_annotations(font_size=12)
    fig = themed(fig, "Latency, fairness and costs side by side", subtitle,
                 legend="policy · vCPU state")
    # the title and subtitle grow downwards from the top; the legend hangs under the
    # bottom row's tick labels and plotly widens the bottom margin to hold all its rows
    return fig.update_layout(
        margin=dict(t=head_px, b=60), title_yref="container", title_y=1.0,
        title_yanchor="top", title_pad_t=22,
        legend=dict(orientation="h", yref="paper", y=-95 / plot_px, yanchor="top", x=0,
                    xanchor="left", font_size=12, title_side="top left"))


def _aliases(names) -> dict:
    """Tick text of a policy label broken before its switches (``host-priority-retry<br>HP
    off``), so a tick takes two short lines instead of one long one."""
    return {n: n.replace(" · ", "<br>", 1) for n in names if " · " in n}
