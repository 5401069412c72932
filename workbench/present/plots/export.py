"""Write a figure: HTML always; PNG, SVG or PDF through kaleido (needs a Chromium, e.g.
Debian's ``/usr/bin/chromium``), sized from the figure so nothing is cut."""
from __future__ import annotations

import sys
from pathlib import Path

import plotly.graph_objects as go

from ...core.safeio import ConfigError, out_path

IMAGE = {".png", ".svg", ".pdf"}
DEFAULT_W, DEFAULT_H = 1100, 600


def size(fig: go.Figure) -> tuple[int, int]:
    """Width and height to render at: the figure's own, else a size whose top margin
    holds a two-line title (kaleido's 700x500 default cuts the subtitle)."""
    return int(fig.layout.width or DEFAULT_W), int(fig.layout.height or DEFAULT_H)


def save(fig: go.Figure, path, formats=None, quiet: bool = False) -> list[Path]:
    """Write ``fig`` to ``path`` (its suffix, or ``.html``) plus ``path.with_suffix(f)``
    for each of ``formats`` (e.g. ``("png", "pdf")``). HTML is always written (plotly.js
    in plotly.min.js beside it, so it opens offline). Where no browser exists for the images, one line says
    so and the HTML is still written. Returns the paths written."""
    p = out_path(path)
    wanted = {p.suffix.lower()} | {"." + f.lower().lstrip(".") for f in (formats or ())}
    bad = wanted - IMAGE - {".html", ""}
    if bad:
        raise ConfigError(f"save: cannot write {sorted(bad)[0]} (html, png, svg or pdf)")
    p.parent.mkdir(parents=True, exist_ok=True)
    html = p.with_suffix(".html")
    # plotly.js once per folder (plotly.min.js beside the pages): opens offline, no 4 MB each
    fig.write_html(html, include_plotlyjs="directory", full_html=True)
    written = [html]
    images = [p.with_suffix(s) for s in sorted(wanted & IMAGE)]
    if images:
        written += _images(fig, images, quiet)
    return written


def _images(fig, paths, quiet) -> list[Path]:
    w, h = size(fig)
    out = []
    for p in paths:
        try:
            fig.write_image(p, width=w, height=h)
        except Exception as err:        # no kaleido, no Chromium, or the browser failed
            _no_browser(f"plots.save: {p.name} not written", err, quiet)
            return out
        out.append(p)
    return out


def _no_browser(what: str, err: Exception, quiet: bool) -> None:
    if not quiet:
        print(f"{what}: no browser for image export ({type(err).__name__}); install "
              "Debian's chromium (see README)", file=sys.stderr)


def save_all(figs: dict, folder, formats=("png",), quiet: bool = False) -> list[Path]:
    """Write each figure of ``{name: figure}`` as ``folder/name.html`` and, in one browser
    session for all of them, ``folder/name.<format>`` for each of ``formats``. Returns the
    paths written (the images only where a browser exists; one line says otherwise)."""
    import plotly.io as pio
    folder = out_path(folder, "figures folder")
    written = []
    for name, f in figs.items():
        written += save(f, folder / f"{name}.html")
    exts = ["." + f.lower().lstrip(".") for f in formats or ()]
    bad = set(exts) - IMAGE
    if bad:
        raise ConfigError(f"save_all: cannot write {sorted(bad)[0]} (png, svg or pdf)")
    jobs = [(f, folder / f"{name}{e}") for name, f in figs.items() for e in exts]
    if not jobs:
        return written
    pio.defaults.mathjax = None     # no figure here uses LaTeX; MathJax would be fetched
    try:
        pio.write_images([f for f, _ in jobs], [p for _, p in jobs],
                         width=[size(f)[0] for f, _ in jobs],
                         height=[size(f)[1] for f, _ in jobs])
    except Exception as err:            # no kaleido, no Chromium, or the browser failed
        _no_browser("plots.save_all: images not written", err, quiet)
        return written
    return written + [p for _, p in jobs]
