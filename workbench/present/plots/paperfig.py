"""A figure as a paper prints it: vector (PDF and SVG) at a single-column (3.5 in) and a
double-column (7 in) width, every text at least 8 pt at that width.

Kaleido renders a figure of ``W`` px into a PDF page of ``W * 72 / 96`` pt and an SVG of
``W`` CSS px (1/96 in), so a figure meant to print ``w`` inches wide is laid out at
``w * 96`` px and a text of ``s`` px prints at ``s * 72 / 96`` pt. The title goes (a paper
has a caption); subscripts and superscripts, which the browser shrinks, are flattened.
"""
from __future__ import annotations

import math
import re
import textwrap

import plotly.graph_objects as go

PX_PER_IN = 96
MIN_PT = 8.0
FONT_PX = math.ceil(MIN_PT * PX_PER_IN / 72)          # 11 px = 8.25 pt
WIDTHS = {"3.5in": 3.5, "7in": 7.0}
# height over width: a column figure is nearly square, a page-wide one is a strip
ASPECT = {"3.5in": 0.9, "7in": 0.45}
MAX_PANELS = 2           # more subplots than this in one figure: split it (paper.figures)
_TAGS = re.compile(r"</?(sup|sub|b|i|span)[^>]*>")


def pt(px: float) -> float:
    """Printed size in points of ``px`` CSS pixels."""
    return px * 72 / PX_PER_IN


def _flat(text):
    return _TAGS.sub("", text) if isinstance(text, str) else text


def for_paper(fig: go.Figure, width: str = "3.5in") -> go.Figure:
    """A copy of ``fig`` laid out for ``width`` (``3.5in`` or ``7in``): no title, every
    font at least :data:`FONT_PX`, the legend in a row under the plot."""
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {', '.join(WIDTHS)}")
    f = go.Figure(fig)
    w = round(WIDTHS[width] * PX_PER_IN)
    f.update_layout(title_text="", width=w, height=round(w * ASPECT[width]),
                    font=dict(size=FONT_PX), margin=dict(l=60, r=10, t=28, b=10),
                    legend=dict(orientation="h", x=0, xanchor="left", y=-0.22,
                                yanchor="top", title_text="",
                                font=dict(size=FONT_PX)))
    f.update_xaxes(title_font_size=FONT_PX, tickfont_size=FONT_PX, automargin=True,
                   title_standoff=4)
    f.update_yaxes(title_font_size=FONT_PX, tickfont_size=FONT_PX, automargin=True,
                   title_standoff=4)
    for ax in [*f.select_xaxes(), *f.select_yaxes()]:
        if ax.title and ax.title.text:
            ax.title.text = _flat(ax.title.text).replace("<br>", " ")
    _log_ticks(f)
    domains = {tuple(ax.domain or (0, 1)) for ax in f.select_xaxes()}
    across = len(domains)
    narrow = min(hi - lo for lo, hi in domains)
    chars = max(10, int((w - 70) * narrow / (FONT_PX * 0.58)))
    lines = 1
    for a in f.layout.annotations or ():     # subplot titles: the font, wrapped to a panel
        wrapped = textwrap.wrap(_flat(a.text).replace("<br>", " "), chars) or [""]
        a.text, a.font.size = "<br>".join(wrapped), FONT_PX
        lines = max(lines, len(wrapped))
    f.update_layout(margin_t=8 + 15 * lines)
    if across > 1 and width == "3.5in":
        # a narrow panel of bars, one per policy: the colours and the legend name them
        f.for_each_xaxis(lambda ax: ax.update(showticklabels=False)
                         if ax.type == "category" or _categorical(f, ax) else None)
    for t in f.data:
        tf = getattr(t, "textfont", None)
        if tf is not None and tf.size is not None and not isinstance(tf.size, (tuple, list)):
            tf.size = max(tf.size, FONT_PX)
    return f


def _categorical(f: go.Figure, ax) -> bool:
    ref = "x" + (ax.plotly_name.removeprefix("xaxis"))
    return any((t.xaxis or "x") == ref and t.type == "bar" and t.orientation != "h"
               for t in f.data)


def _log_ticks(f: go.Figure) -> None:
    """Explicit 1-2-5 ticks on log axes: the browser draws its own in-between labels of a
    log axis ("2", "5") smaller than the font, under 8 pt in print."""
    import numpy as np
    for letter in "xy":
        for ax_name in [k for k in f.layout.to_plotly_json() if k.startswith(f"{letter}axis")]:
            ax = f.layout[ax_name]
            if ax.type != "log":
                continue
            ref = letter + ax_name.removeprefix(f"{letter}axis")
            vals = [np.asarray(getattr(t, letter), dtype=float) for t in f.data
                    if (getattr(t, f"{letter}axis", None) or letter) == ref
                    and getattr(t, letter, None) is not None]
            v = np.concatenate(vals) if vals else np.array([])
            v = v[np.isfinite(v) & (v > 0)]
            if not len(v):
                continue
            lo, hi = v.min(), v.max()
            ticks = [m * 10.0 ** k for k in range(int(np.floor(np.log10(lo))),
                                                  int(np.ceil(np.log10(hi))) + 1)
                     for m in (1, 2, 5) if lo / 1.05 <= m * 10.0 ** k <= hi * 1.05]
            if len(ticks) < 2:
                ticks = [lo, hi]
            ax.tickvals = ticks
            ax.ticktext = [np.format_float_positional(t, precision=3, fractional=False,
                                                      trim="-") for t in ticks]


def font_sizes(fig: go.Figure) -> list[float]:
    """Every font size (px) the figure's JSON sets, with the layout's base font for text
    that sets none."""
    sizes = []

    def walk(x, key=""):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "size" and "font" in key and isinstance(v, (int, float)):
                    sizes.append(float(v))
                else:
                    walk(v, k)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v, key)
    j = fig.to_plotly_json()
    walk(j["layout"])
    walk(j["data"])
    base = (j["layout"].get("font") or {}).get("size")
    if base is None:
        sizes.append(12.0)           # plotly's default
    return sizes


def panels(fig: go.Figure) -> int:
    """How many subplots (x axes) the figure has."""
    return max(1, sum(1 for _ in fig.select_xaxes()))


def save_paper(figs: dict, folder, quiet: bool = False) -> list:
    """Write each figure of ``{name: figure}`` as ``name-3.5in.pdf``, ``.svg`` and
    ``name-7in.pdf``, ``.svg`` in one browser session. Returns the paths written (none
    where no browser exists; one line says so)."""
    import sys
    from pathlib import Path

    import plotly.io as pio
    pio.defaults.mathjax = None
    folder = Path(folder)
    jobs = [(for_paper(f, w), folder / f"{name}-{w}.{ext}")
            for name, f in figs.items() for w in WIDTHS for ext in ("pdf", "svg")]
    if not jobs:
        return []
    try:
        pio.write_images([f for f, _ in jobs], [p for _, p in jobs],
                         width=[f.layout.width for f, _ in jobs],
                         height=[f.layout.height for f, _ in jobs])
    except Exception as err:            # no kaleido, no Chromium, or the browser failed
        if not quiet:
            print(f"plots.save_paper: PDF/SVG not written: no browser for image export "
                  f"({type(err).__name__}); install Debian's chromium", file=sys.stderr)
        return []
    return [p for _, p in jobs]
