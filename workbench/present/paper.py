"""The paper's figures and tables, rebuilt from the results store (``notebooks/05-paper``,
``make paper``): each experiment is run through the store (only the runs not yet stored
are computed), then every figure is written as HTML and PNG and every table as CSV and
LaTeX, with a ``paper.json`` that lists them and the lock file they were built under."""
from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata
from pathlib import Path

from ..core.version import __version__
from . import plots
from .plots.style import is_share, label
from ..experiments.designs import factor_column, load_experiment
from ..core.safeio import ConfigError, out_path

MAIN = {"name": "paper-main", "scenario": "malicious-accept",
        "policies": ["upstream", "zero-tolerance", "patch-09-21", "host-priority-retry"],
        "reps": 3, "seed": 0, "sets": {"horizon_us": 20000}}
# the 2 MB and UPM scenarios (docs/findings.md §9): scenario -> (policies, the op whose
# latency is drawn); an outcome chart and a latency chart each
SCENARIOS = {
    "hugepage-split": (["upstream", "non-blocking-resize", "split-read-lock", "patch-09-21"],
                       "conversion"),
    "zap-under-read-lock": (["upstream", "split-read-lock", "non-blocking-resize",
                             "zero-tolerance", "patch-09-21"], "conversion"),
    "upm-parallel": (["upstream", "zero-tolerance", "patch-09-21", "sean-per-path"],
                     "fault_wait"),
}
# stored experiment -> (metric, x factor, facet factor or None[, one figure per value of
# this factor]) of each figure
SWEEPS = {"zero-step-window": [("zero_step_armings", "timings.sept_add_us", None),
                               ("fault_wait_p99_us", "timings.sept_add_us", None)],
          "hp-what-if": [("zap_4k_p99_us", "vcpus.1.per_page", "module.host_priority"),
                         ("accept_throughput_per_ms", "vcpus.1.per_page",
                          "module.host_priority")],
          "scale": [("zap_4k_p99_us", "vcpus.1.count", None),
                    ("host_retry_cpu_us", "vcpus.1.count", None)],
          "lazy-accept-scaling": [
              (m, "vcpus.0.count", "shared.off", "memory_mb")
              for m in ("accept_throughput_per_ms", "accept_4K_p99_us")]}
# The paper's cut of a shared design, so that `make paper` fits in 5 minutes on 2 cores:
# lazy-accept-scaling's 64- and 32-vCPU runs are most of the paper's work, and of its seven
# `shared.off` variants the paper keeps those that move the curve (docs/findings.md §10:
# each of the other four changes throughput by under 1 %); `workbench sweep
# lazy-accept-scaling` still runs all seven.
PAPER_FACTORS = {"lazy-accept-scaling": {"shared.off": ["none", "hot_lines", "all"]}}
# experiments whose x factor doubles (1 to 64 vCPUs): a log x axis
LOG_X = {"lazy-accept-scaling"}
TABLE_METRICS = ["zap_4k_p99_us", "wb_fault_wait_p99_us", "conversion_p99_us",
                 "accept_throughput_per_ms", "host_contested_share", "longest_wait_us",
                 "wait_spread", "kicks", "error_exits", "vm_bugged", "td_failed",
                 "zero_step_armings"]
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s;#]+)")


def experiments(reps=None, horizon_us: float = 0.0, values_per_factor: int = 0) -> list[dict]:
    """The paper's experiments as mappings, named ``paper-*`` so that smaller variants
    never replace an experiment of the same name in the store. ``reps``, a shorter
    ``horizon_us`` and the first ``values_per_factor`` values of each factor make a quick
    version (0: as designed)."""
    out = [dict(MAIN)]
    out += [{"name": f"paper-{s}", "scenario": s, "policies": pols, "reps": 3, "seed": 0}
            for s, (pols, _) in SCENARIOS.items()]
    for name in SWEEPS:
        e = load_experiment(name).model_dump(mode="json", exclude={"source"})
        e["factors"] = {**e["factors"], **PAPER_FACTORS.get(name, {})}
        out.append({**{k: v for k, v in e.items() if v is not None}, "name": f"paper-{name}"})
    for e in out:
        if reps:
            e["reps"], e["precision"] = reps, None
        if horizon_us:
            e["sets"] = {**(e.get("sets") or {}), "horizon_us": horizon_us}
        if values_per_factor:
            e["factors"] = {k: v[:values_per_factor] if isinstance(v, list) else v
                            for k, v in (e.get("factors") or {}).items()}
        if e.get("precision") is None:
            e.pop("precision", None)
    return out


def lock_record(lock) -> dict:
    """Which lock file the paper was built under: its path and sha256, and every pinned
    package whose installed version differs (empty: the environment matches the lock)."""
    p = Path(lock)
    if not p.is_file():
        return {"lock": str(p), "sha256": None, "note": "no lock file (make lock writes one)"}
    text = p.read_text()
    differ = {}
    for line in text.splitlines():
        m = _PIN.match(line.strip())
        if not m:
            continue
        name = m.group(1).split("[")[0]
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != m.group(2):
            differ[name] = {"locked": m.group(2), "installed": have}
    return {"lock": str(p), "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "pins": sum(bool(_PIN.match(x.strip())) for x in text.splitlines()),
            "differs_from_installed": differ}


def figures(name: str, c, per_vcpu=None, max_panels: int | None = None) -> dict:
    """The figures of one stored experiment (``per_vcpu``: a Comparison with ``vcpus`` of
    the same runs, for the per-vCPU figures the store does not keep). ``max_panels``: the
    print set, where a figure of more panels is split into figures of at most that many
    (``-1``, ``-2``, ...) and the dashboard, whose panels are figures of their own, is
    left out."""
    short = name.removeprefix("paper-")
    if short == "main":
        op = plots.main_op(c.ops)
        figs = {"main-dashboard": plots.dashboard(per_vcpu or c),
                "main-tail": plots.latency_ccdf(c.complete_ops(), op),
                "main-percentiles": plots.percentile_bars(c.complete_ops(), op),
                "main-jain": plots.jain_interval(c.summary),
                **_outcomes("main-outcomes", c.table, max_panels)}
        if max_panels:
            del figs["main-dashboard"]
        if per_vcpu is not None:
            figs["main-useful-work"] = plots.fairness(per_vcpu.vcpus)
            figs["main-time-breakdown"] = plots.time_breakdown(per_vcpu.vcpus)
        return figs
    if short in SCENARIOS:
        return {**_outcomes(f"{short}-outcomes", c.table, max_panels),
                f"{short}-latency": plots.percentile_bars(c.complete_ops(), SCENARIOS[short][1])}
    stats, figs = c.stats(), {}
    for metric, x, f, *split in SWEEPS[short]:
        name = f"{short}-{metric.replace('_', '-')}"
        parts = _split(stats, split[0]) if split else {"": stats}
        for suffix, s in parts.items():
            fcol = factor_column(f) if f else None
            groups = _chunks(list(dict.fromkeys(s[fcol])), max_panels) if fcol else [None]
            for i, vals in enumerate(groups):
                part = s if vals is None else s[s[fcol].isin(vals)]
                fig = plots.interval_lines(part, metric, factor_column(x), facet=fcol,
                                           log_x=x.startswith("timings.") or short in LOG_X)
                figs[name + suffix + (f"-{i + 1}" if len(groups) > 1 else "")] = fig
    return figs


def _chunks(values: list, n: int | None) -> list:
    return [values] if not n or len(values) <= n else \
        [values[i:i + n] for i in range(0, len(values), n)]


def _outcomes(name: str, table, max_panels) -> dict:
    """The outcome chart, or (``max_panels``) charts of at most that many outcomes each."""
    cols, _ = plots.nonzero(table, None)
    groups = _chunks(cols, max_panels)
    if len(groups) <= 1:
        return {name: plots.outcomes(table)}
    return {f"{name}-{i + 1}": plots.outcomes(table, g) for i, g in enumerate(groups)}


def _split(stats, factor: str) -> dict:
    """One stats table per value of ``factor`` (``-memory-mb-256``)."""
    col = factor_column(factor)
    tag = factor.replace("_", "-").replace(".", "-")
    return {f"-{tag}-{v}": stats[stats[col] == v] for v in dict.fromkeys(stats[col])}


def tables(name: str, c, folder: Path) -> list[Path]:
    """Per experiment: the intervals (CSV, LaTeX with the verdict lines in the caption)
    and the verdicts (text): the scenario's headline first, latency and fairness over
    complete runs only."""
    from ..experiments.report import headline_of
    from ..experiments.stats import latex_table
    from ..experiments.verdicts import verdict_lines
    metrics = [m for m in dict.fromkeys([*([headline_of(c)] if headline_of(c) else []),
                                         *TABLE_METRICS]) if m in c.summary.columns]
    desc = c.stats(metrics)
    short = name.removeprefix("paper-")
    csv, tex = folder / f"{short}-table.csv", folder / f"{short}-table.tex"
    txt = folder / f"{short}-verdicts.txt"
    lines = verdict_lines(c.summary, c.by)
    desc.to_csv(csv, index=False)
    txt.write_text("\n".join(lines) + "\n")
    reps = len((c.manifest.get("seeds") or {}).get("replications") or []) or \
        int(c.summary["replication"].nunique())
    tex.write_text(latex_table(desc, by=list(c.by), label=label,
                               scale=lambda m: 100.0 if is_share(m) else 1.0,
                               caption=f"{short}. " + "; ".join(lines) + f". Mean and 95 % "
                               f"interval over {reps} replications (outcomes: runs of n, "
                               "Clopper-Pearson; counts never below 0; latency and fairness "
                               "over complete runs only)."))
    return [csv, tex, txt]


def check_out(folder=None) -> Path:
    """The figures folder (default ``data/figures`` of this checkout): new, or one this
    tool wrote (it holds a ``paper.json``)."""
    from ..core.paths import output_root
    p = out_path(folder or output_root() / "figures", "out")
    if p.exists() and (not p.is_dir() or (any(p.iterdir()) and not (p / "paper.json").exists())):
        raise ConfigError(f"out {p}: holds files this tool did not write (no paper.json); "
                          "choose a new or empty folder")
    return p


def record(folder: Path, written: list[Path], lock: dict, params: dict) -> Path:
    from ..experiments.store import provenance
    versions = {}
    for pkg in ("pandas", "plotly", "numpy", "simpy", "scipy", "kaleido"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    m = {"workbench": __version__, "params": params, "lock": lock, "versions": versions,
         "provenance": provenance(),
         "files": sorted({p.name for p in written} | ({"plotly.min.js"} & {
             p.name for p in folder.iterdir()}))}
    path = folder / "paper.json"
    path.write_text(json.dumps(m, indent=1, default=str))
    return path
