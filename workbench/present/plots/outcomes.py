"""Costs and correctness outcomes per policy; outcomes 0 for every policy are not drawn."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import bar_marker, empty, is_share, themed, title

OUTCOMES = ("host_busy_rate", "guest_busy_rate", "retries_zap", "kicks", "error_exits", "ioctl_errors",
            "vm_bugged", "guest_panics", "td_failed", "hp_timeouts", "zero_step_armings",
            "demote_busy")
OUTCOME_COLUMNS = {c: title(c) for c in OUTCOMES}


def nonzero(table: pd.DataFrame, columns=None) -> tuple[list[str], list[str]]:
    """(outcomes some policy scores non-zero, outcomes 0 for every policy)."""
    cols = [c for c in (columns or OUTCOMES) if c in table.columns]
    zero = [c for c in cols if not np.nanmax(np.abs(table[c].to_numpy(dtype=float)), initial=0)]
    return [c for c in cols if c not in zero], zero


def bar(table: pd.DataFrame, c: str, horizontal: bool = True) -> go.Bar:
    pols = table["policy"].astype(str).tolist()
    vals = table[c].to_numpy(dtype=float)
    fmt = "%{x:.1%}" if horizontal else "%{y:.1%}"
    fmt = fmt if is_share(c) else fmt.replace(".1%", ".3g")
    kw = dict(y=pols[::-1], x=vals[::-1], orientation="h") if horizontal else dict(x=pols, y=vals)
    marker = bar_marker(pols[::-1] if horizontal else pols)
    return go.Bar(**kw, showlegend=False, marker=marker,
                  hovertemplate=("%{y}: " if horizontal else "%{x}: ") + fmt + "<extra></extra>")


def outcomes(table: pd.DataFrame, columns=None) -> go.Figure:
    """A small horizontal bar chart per outcome, one bar per policy in its colour (from
    ``Comparison.table``). Outcomes where every policy scores 0 are not drawn; the
    subtitle names them."""
    from plotly.subplots import make_subplots
    cols, zero = nonzero(table, columns)
    head = "What does each policy cost, and what does it break?"
    if table.empty or not cols:
        return themed(empty(go.Figure(), "nothing to show: every outcome is 0 for every policy"
                            if zero else "nothing to show: no runs or no such columns"), head)
    ncols = min(4, len(cols))
    nrows = -(-len(cols) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.16, subplot_titles=[title(c) for c in cols])
    for i, c in enumerate(cols):
        row, col = divmod(i, ncols)
        fig.add_trace(bar(table, c), row=row + 1, col=col + 1)
        if is_share(c):
            fig.update_xaxes(tickformat=".2~%", row=row + 1, col=col + 1)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=230 * nrows + 110)
    reps = int(table["reps"].max()) if "reps" in table.columns else 1
    none = f"; 0 for every policy: {', '.join(title(c) for c in zero)}" if zero else ""
    return themed(fig, head, f"mean per run over {reps} replication(s); 'runs' counts "
                  f"replications{none}")
