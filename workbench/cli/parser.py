"""The command line's grammar: every verb, its arguments and what each answers."""
from __future__ import annotations

import argparse

from .common import Parser


def _reps(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number or auto, not {text!r}") from None


def build_parser() -> Parser:
    p = Parser(prog="workbench", description="Simulate how KVM handles TDX_OPERAND_BUSY.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    sub.add_parser("scenarios", help="list the scenarios and the question each answers")
    sub.add_parser("policies", help="list the presets and the registered policies")
    sub.add_parser("calibration", help="show the timing parameters and how sure we are")
    for name in ("run", "compare", "trace"):
        c = sub.add_parser(name, help=f"{name} a scenario" if name != "trace" else
                           "one run as Chrome trace-event JSON (Perfetto opens it)")
        c.add_argument("scenario", help="a scenario name or a YAML path" + (
            ", or a folder written by workbench run --out" if name == "trace" else ""))
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a scenario field, e.g. module.host_priority=false")
        c.add_argument("--out", help="folder to write the parquet tables and manifest to")
        c.add_argument("--import", dest="imports", action="append", default=[],
                       metavar="MODULE", help="import a module that registers policies")
    r = sub.choices["run"]
    r.add_argument("--max-events", type=int, default=None, metavar="N",
                   help="stop the run after N simulated events (default 10,000,000)")
    r.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="stop the run after S seconds of wall-clock time (default 600)")
    r.add_argument("--quiet", action="store_true",
                   help="no progress lines on stderr during a long run")
    r.add_argument("--record", choices=("calls", "ops", "summary"), default="calls",
                   help="what is kept per call and op: calls (every table), ops (no calls "
                        "table) or summary (only the summary row; memory flat in the horizon)")
    sub.choices["trace"].add_argument("--replication", type=int, default=0)
    for name in ("run", "trace"):
        sub.choices[name].add_argument(
            "--policy", help="preset, policy name, mod:Class, per site "
                             "(upstream+fault=resume-guest) or a YAML file holding a policy "
                             "mapping")
    sw = sub.add_parser("sweep", help="run an experiment file into the results store, or "
                                      "compare policies at each value of one parameter")
    sw.add_argument("scenario", help="an experiment (name in data/experiments or YAML path), "
                                     "or with --param a scenario name or YAML path")
    sw.add_argument("--param", help="e.g. vcpus.1.count or timings.sept_add_us")
    sw.add_argument("--values", help="comma-separated values")
    sw.add_argument("--store", help="results store folder (default data/results or "
                                    "$WORKBENCH_RESULTS); experiments only")
    for c in (sub.choices["compare"], sw):
        if c is sw:
            c.add_argument("--seed", type=int, default=None)
            c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
            c.add_argument("--out")
            c.add_argument("--import", dest="imports", action="append", default=[],
                           metavar="MODULE")
        c.add_argument("--policies", required=c is not sw,
                       help="comma-separated presets, policies or per-site specs")
        c.add_argument("--reps", type=_reps if c is sw else int, default=None if c is sw else 3,
                       help="replications" + (" (an experiment: a number or auto)"
                                              if c is sw else ""))
        c.add_argument("--record", choices=("ops", "summary"), default="ops",
                       help="what each run keeps: ops (summary and ops tables) or summary "
                            "(no latency table by op)")
        c.add_argument("--engine", choices=("serial", "processes", "dask"), default=None)
        c.add_argument("--workers", type=int, default=None)
        c.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on an existing Dask cluster (implies --engine dask)")
    rs = sub.add_parser("results", help="list the stored experiments, or show one with "
                                        "intervals")
    rs.add_argument("experiment", nargs="?")
    rs.add_argument("--store")
    rs.add_argument("--baseline", help="also show paired differences against this policy")
    ex = sub.add_parser("export", help="write a stored experiment's table for a paper")
    ex.add_argument("experiment")
    ex.add_argument("--format", choices=("csv", "parquet", "latex"), default="csv")
    ex.add_argument("--out", help="file to write (default: in the store beside the results);"
                                  " an existing file is never replaced")
    ex.add_argument("--metrics", help="comma-separated metrics (latex default: the headline "
                                      "ones)")
    ex.add_argument("--store")
    for c in (sub.choices["compare"], rs):
        c.add_argument("--warmup-us", type=float, default=None,
                       help="leave out operations that started before this time")
    sub.choices["compare"].add_argument(
        "--baseline", help="policy to difference the others against, replication by "
                           "replication (paired, common random numbers)")
    rb = sub.add_parser("robustness", help="does a ranking of policies hold across plausible "
                                           "calibrations (the guessed timings' ranges)?")
    rb.add_argument("scenario")
    rb.add_argument("--policies", required=True, help="comma-separated presets or policies")
    rb.add_argument("--metric", help="summary column to rank on (default: the scenario's "
                                     "headline)")
    rb.add_argument("--higher-is-better", action="store_true")
    rb.add_argument("--samples", type=int, default=16, help="calibrations drawn (Latin "
                                                            "hypercube over the ranges)")
    rb.add_argument("--timings", help="comma-separated quantities to vary (default: every "
                                      "guess with a range)")
    rb.add_argument("--reps", type=int, default=1)
    rb.add_argument("--seed", type=int, default=0)
    rb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rb.add_argument("--workers", type=int, default=None)
    rb.add_argument("--store", help="results store to keep the run in (default data/results "
                                    "or $WORKBENCH_RESULTS)")
    rb.add_argument("--name", help="name of the stored run (default: scenario-metric-hash)")
    cb = sub.add_parser("calibrate", help="build a calibration file from measured samples "
                                          "(CSV or parquet: quantity, us or ns)")
    cb.add_argument("--from", dest="samples", required=True, metavar="SAMPLES",
                    help="measured durations: a column quantity (a calibration row or a leaf "
                         "such as TDH.MEM.PAGE.AUG) and a column us (or ns)")
    cb.add_argument("--out", required=True, help="calibration YAML to write (never replaced);"
                                                 " the samples go beside it")
    cb.add_argument("--base", default="default", help="calibration the other rows come from")
    cb.add_argument("--source", help="where the samples come from (machine, kernel, probe)")
    va = sub.add_parser("validate", help="the model against published end-to-end "
                                         "measurements (data/validation)")
    va.add_argument("--calibration", help="calibration name or YAML (default: the scenarios')")
    va.add_argument("--small", action="store_true", help="2 ms horizons (a quick check)")
    va.add_argument("--reps", type=int, default=1)
    va.add_argument("--seed", type=int, default=0)
    va.add_argument("--folder", help="validation entries (default data/validation)")
    _add_explore(sub)
    _add_review(sub)
    return p


def _add_review(sub) -> None:
    """``review``: the self-contained HTML file a presenter sends before a design review."""
    v = sub.add_parser("review", help="compare policies and write one self-contained HTML "
                                      "file for a design review (opens offline, prints)")
    v.add_argument("scenario", help="a scenario name or a YAML path")
    v.add_argument("--policies", required=True,
                   help="comma-separated presets, policies or per-site specs")
    v.add_argument("--out", required=True, help="HTML file to write (never replaced)")
    v.add_argument("--reps", type=int, default=3)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, e.g. horizon_us=2000")
    v.add_argument("--samples", type=int, default=0,
                   help="also rank the policies under N calibrations drawn over the guessed "
                        "timings (workbench robustness; default 0: none, the file says so)")
    v.add_argument("--import", dest="imports", action="append", default=[],
                   metavar="MODULE", help="import a module that registers policies")


def _add_explore(sub) -> None:
    """``explore`` and ``replay``: the race finder (workbench.explore)."""
    e = sub.add_parser("explore", help="search the schedules of a small scenario for one "
                                       "that breaks a policy; print the shrunk counterexample")
    e.add_argument("scenario", help="a scenario, best a small one (malicious-accept-small)")
    e.add_argument("--policy", default="upstream")
    e.add_argument("--schedules", type=int, default=400)
    e.add_argument("--strategy", choices=("random", "pct", "bounded"), default="random")
    e.add_argument("--depth", type=int, default=3,
                   help="pct: priority-change points + 1; bounded: departures from the "
                        "default schedule")
    e.add_argument("--oracle", action="append", default=[], metavar="NAME[,NAME]",
                   help="vm_bugged, guest_panic, td_dead, error_status, livelock, "
                        "starvation, invariants (default: all)")
    e.add_argument("--predicate", metavar="MODULE:FUNCTION",
                   help="also fail a run when FUNCTION(tables) is true")
    e.add_argument("--livelock-us", type=float, default=None)
    e.add_argument("--starve-us", type=float, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--out", default="counterexample.replay.json",
                   help="replay file to write a counterexample to")
    e.add_argument("--engine", choices=("serial", "processes", "dask"), default=None)
    e.add_argument("--workers", type=int, default=None)
    e.add_argument("--steps", type=int, default=60, help="trace steps to print (0: all)")
    e.add_argument("--shrink-seconds", type=float, default=15.0,
                   help="wall-clock budget of the shrinking")
    e.add_argument("--import", dest="imports", action="append", default=[],
                   metavar="MODULE", help="import a module that registers policies")
    r = sub.add_parser("replay", help="rerun a counterexample's replay file bit for bit")
    r.add_argument("file")
    r.add_argument("--steps", type=int, default=60, help="trace steps to print (0: all)")
    r.add_argument("--import", dest="imports", action="append", default=[],
                   metavar="MODULE", help="import a module that registers policies")
