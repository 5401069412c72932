"""The review file: one self-contained HTML page a presenter sends before a design review
(``workbench review`` and the panel's **Review file** button). No server and no network:
plotly.js is inlined once, every figure is a fixed size that fits a screen 1,024 px wide
and an A4 landscape page. On the first screen: the question the scenario answers, a
verdict line per policy, latency and fairness side by side; below: where the time goes,
the outcomes, what robustness says about the ranking and the provenance."""
from __future__ import annotations

import html
import re
import shlex
import sys
from pathlib import Path

from . import plots
from .plots.style import themed
from ..core.safeio import out_path
from .verdict import verdict_lines

HALF_W, FULL_W, FIG_H = 500, 1010, 400
CSS = """
body {font-family: 'DejaVu Sans', Arial, sans-serif; color: #222; margin: 12px auto;
      max-width: 1030px; padding: 0 10px; font-size: 14px; line-height: 1.35;}
h1 {font-size: 21px; margin: 0 0 4px;} h2 {font-size: 17px; margin: 18px 0 4px;}
h3 {font-size: 14px; margin: 0;} .sub {color: #555; font-size: 12px; margin: 0 0 2px;}
.question {margin: 0 0 6px;} ul.verdicts {margin: 0 0 8px; padding-left: 18px;}
ul.verdicts li {margin: 1px 0;} .swatch {display: inline-block; width: 11px; height: 11px;
      margin-right: 5px; vertical-align: -1px;}
.pair {display: flex; gap: 10px;} .pair > div {width: 500px;}
table {border-collapse: collapse; font-size: 12px;} td, th {border: 1px solid #ccc;
      padding: 2px 6px; text-align: left;} code {font-size: 12px;}
@page {size: A4 landscape; margin: 8mm;}
@media print {body {margin: 0; max-width: none;} .figure {break-inside: avoid;}
              h2 {break-after: avoid;} .modebar-container {display: none;}}
"""


def review_html(c, *, command: str | None = None, robustness=None, op: str | None = None,
                title: str | None = None) -> str:
    """The review page of a :class:`~workbench.experiments.Comparison` (with its ``vcpus``
    table where it has one). ``robustness``: a :class:`~workbench.analysis.robustness.
    Robustness` run on the same policies, or None (the page says none was run)."""
    m = c.manifest or {}
    cfg = _scenario(m.get("scenario") or c.summary["scenario"].iloc[0])
    scenario = str(cfg.get("name"))
    question = " ".join(str(cfg.get("question") or "").split())
    op = op or plots.main_op(c.ops)
    verdicts = verdict_lines(c, op)
    vcpus = getattr(c, "vcpus", None)
    has_v = vcpus is not None and len(vcpus)
    latency = _tail(c.ops, op, list(verdicts))
    fairness = plots.fairness(vcpus) if has_v else plots.jain_interval(c.summary)
    fairness.update_yaxes(title_text="useful work per vCPU" if has_v else "Jain's index")
    figs = [_figure(latency, HALF_W, FIG_H, first=True), _figure(fairness, HALF_W, FIG_H)]
    below = []
    if has_v:
        below.append(_figure(plots.time_breakdown(vcpus), FULL_W, 380))
    out = plots.outcomes(c.table)
    below.append(_figure(out, FULL_W, int(out.layout.height or 360)))
    reps = m.get("reps") or int(c.summary.groupby("policy")["replication"].nunique().max())
    head = title or f"Design review: {scenario}"
    items = "".join(f"<li><span class='swatch' style='background:{plots.policy_color(p)}'>"
                    f"</span>{html.escape(line)}</li>" for p, line in verdicts.items())
    return "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(head)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(head)}</h1>",
        f"<p class='question'><b>The question:</b> {html.escape(question or '(not given)')}</p>",
        f"<h3>Verdict per policy ({reps} replication(s) each, on the same seeds)</h3>",
        f"<ul class='verdicts'>{items}</ul>",
        f"<div class='pair'>{figs[0]}{figs[1]}</div>",
        *below,
        "<h2>Does the ranking hold over plausible timings?</h2>",
        _robustness(robustness, scenario, list(verdicts)),
        *(["<p><b>Read with the verdicts:</b> a policy whose runs broke (a bugged VM, a "
           "failed TD) stops early, and its latency can rank it well.</p>"]
          if robustness is not None and any(v.endswith("latency not compared")
                                            for v in verdicts.values()) else []),
        "<h2>Provenance</h2>", _provenance(c, command, cfg),
        "</body></html>"])


def write_review(c, path, **kw) -> Path:
    """Write :func:`review_html` to ``path`` (``.html``); returns the path."""
    p = out_path(path, "review file")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(review_html(c, **kw), encoding="utf-8")
    return p


def _tail(ops, op: str, names):
    """The tail of ``op`` alone (the failures are counted in the legend and the verdicts):
    at half a page wide, a bar chart of failures beside it would squash both."""
    import plotly.graph_objects as go

    from .plots.latency import ccdf_traces, op_name
    fig = go.Figure(ccdf_traces(ops, op))
    if not fig.data:
        return plots.latency_ccdf(ops, op)      # says there is no such op
    drawn = {t.name.split(" (")[0] for t in fig.data if len(t.x)}
    none = [n for n in names if n not in drawn]
    fig.update_xaxes(type="log", title_text=f"{op_name(op)} latency of successes (µs, log)")
    fig.update_yaxes(type="log", dtick=1, title_text="share of successes slower than x")
    return themed(fig, f"How long is the tail of the {op_name(op)}, by policy?",
                              "further left and lower is better; failed operations are "
                              "counted in the legend, never drawn as fast"
                              + (f"; no successful {op_name(op)} under {', '.join(none)}"
                                 if none else ""))


def _figure(fig, width: int, height: int, first: bool = False) -> str:
    """A figure at a fixed size, its title as HTML above it (HTML wraps, plotly does not);
    plotly.js inlined with the first figure of the page only."""
    text = fig.layout.title.text or ""
    head, _, sub = text.partition("<br>")
    sub = re.sub(r"</?sup>", "", sub).replace("<br>", " ")
    fig = fig.update_layout(title=None, width=width, height=height, autosize=False,
                            margin=dict(t=30, b=50, l=60, r=20),
                            legend=dict(orientation="h", yref="container", y=0,
                                        yanchor="bottom", x=0))
    legend_px = 30 + 18 * max(1, len([t for t in fig.data if t.showlegend is not False]) // 2)
    fig.update_layout(margin_b=60 + legend_px)
    div = fig.to_html(full_html=False, include_plotlyjs=bool(first), validate=False,
                      config={"displaylogo": False, "responsive": False})
    return (f"<div class='figure'><h3>{head}</h3><p class='sub'>{sub}</p>{div}</div>")


def _robustness(r, scenario: str, labels: list[str]) -> str:
    if r is None:
        pols = ",".join(x.split(" · ")[0] for x in labels)
        return ("<p>None was run for this file. <code>workbench robustness "
                f"{html.escape(scenario)} --policies {html.escape(pols)} --samples 16</code> "
                "ranks the policies under calibrations drawn over the guessed timings' "
                "ranges (<code>workbench review ... --samples N</code> puts a few in this "
                "file).</p>")
    t = r.rankings()
    better = "lower" if r.lower_is_better else "higher"
    rows = "".join(
        f"<tr><td>{html.escape(str(x.a))}</td><td>{html.escape(str(x.b))}</td>"
        f"<td>{x.a_better_share:.0%} [{x.ci_low:.0%}, {x.ci_high:.0%}]</td>"
        f"<td>{'yes' if x.holds_everywhere else 'no'}</td></tr>" for x in t.itertuples())
    n = len(r.calibrations)
    return (f"<p>{html.escape(str(r.metric))} ({better} is better) under {n} calibrations "
            f"drawn over {r.calibrations.shape[1]} guessed timings"
            + (" (few samples: a first look, not a finding)" if n < 16 else "") + ":</p>"
            "<table><tr><th>a</th><th>b</th><th>a ranks better in (95 % interval)</th>"
            f"<th>in every sample</th></tr>{rows}</table>")


def _scenario(scenario) -> dict:
    """The scenario as a mapping: ``compare`` keeps all of it in its manifest, the panel
    its name (loaded again here; a file moved since gives the name alone)."""
    if isinstance(scenario, dict):
        return scenario
    from ..core.scenarios import load_scenario
    try:
        return load_scenario(str(scenario)).model_dump(mode="json")
    except Exception:
        return {"name": str(scenario)}


def _provenance(c, command: str | None, cfg: dict) -> str:
    from ..experiments.store import git_state
    from ..core.version import __version__
    m = c.manifest or {}
    prov = m.get("provenance") or {}
    git = {k: prov.get(k) for k in ("git_commit", "git_dirty")} if prov.get("git_commit") \
        else git_state()
    s = c.summary
    cal = sorted({str(x.get("sets", {}).get("calibration", cfg.get("calibration")))
                  for x in m.get("columns", [])}) or [str(cfg.get("calibration", "default"))]
    seeds = sorted({int(x) for x in s["seed"]}) if "seed" in s else []
    rows = [("scenario", cfg.get("name")),
            ("policies", "; ".join(dict.fromkeys(s["policy"].astype(str)))),
            ("commit", f"{git.get('git_commit') or 'unknown'}"
                       + (" (with uncommitted changes)" if git.get("git_dirty") else "")),
            ("workbench", __version__), ("calibration", ", ".join(cal)),
            ("root seed", m.get("seed")), ("run seeds", ", ".join(map(str, seeds))),
            ("replications", m.get("reps")), ("runs", len(s)),
            ("command", command or " ".join(shlex.quote(a) for a in sys.argv))]
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"
