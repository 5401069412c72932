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


STORE = ("results store folder (default: data/results in a source checkout, the user data "
         "folder when installed; $WORKBENCH_RESULTS overrides it)")


def build_parser() -> Parser:
    p = Parser(prog="workbench", description="Simulate how KVM handles TDX_OPERAND_BUSY.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    sub.add_parser("scenarios", help="which workloads are there, and what question does each "
                                     "answer?")
    sub.add_parser("policies", help="which presets and policies are there, what does each do "
                                    "with a BUSY, and where in the LKML debate is it from?")
    sub.add_parser("calibration", help="which timings does the model use, and is each exact, "
                                       "published or a guess (with its range)?")
    helps = {"run": "what happens in one run of a scenario under one policy? (its summary; "
                    "--out keeps every table)",
             "compare": "how do policies differ on the same replications of a scenario? "
                        "(means, 95 %% intervals, paired differences with --baseline)",
             "trace": "where does one run's time go, call by call? (Chrome trace-event JSON "
                      "for ui.perfetto.dev)"}
    for name in ("run", "compare", "trace"):
        c = sub.add_parser(name, help=helps[name])
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
    sw = sub.add_parser("sweep", help="how does a result change with one parameter (--param), "
                                      "or across an experiment's factors? (an experiment "
                                      "runs into the results store and resumes)")
    sw.add_argument("scenario", help="an experiment (name in data/experiments or YAML path), "
                                     "or with --param a scenario name or YAML path")
    sw.add_argument("--param", help="e.g. vcpus.1.count or timings.sept_add_us")
    sw.add_argument("--values", help="comma-separated values")
    sw.add_argument("--store", help=STORE + "; experiments only")
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
    sw.add_argument("--allow-dirty", action="store_true",
                    help="store runs from a checkout with uncommitted changes (marked dirty)")
    rp = sub.add_parser("reproduce", help="run a stored experiment again from its manifest "
                                          "and compare the tables bit for bit")
    rp.add_argument("manifest", help="an experiment's manifest.json")
    rp.add_argument("--store", required=True, help="a new results store to run into")
    rp.add_argument("--engine", choices=("serial", "processes", "dask"), default=None)
    rp.add_argument("--workers", type=int, default=None)
    rp.add_argument("--allow-dirty", action="store_true",
                    help="run from a checkout with uncommitted changes")
    fi = sub.add_parser("findings", help="run the findings (data/findings) through the store "
                                         "and write their sections of docs/findings.md")
    fi.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="one finding (repeatable; default: all)")
    fi.add_argument("--check", action="store_true",
                    help="run nothing: say which sections differ from the stored results")
    fi.add_argument("--store")
    fi.add_argument("--docs", help="the document to write (default docs/findings.md)")
    fi.add_argument("--engine", choices=("serial", "processes", "dask"), default=None)
    fi.add_argument("--workers", type=int, default=None)
    fi.add_argument("--allow-dirty", action="store_true",
                    help="store runs from a checkout with uncommitted changes (marked dirty)")
    rs = sub.add_parser("results", help="list the stored experiments, or show one with "
                                        "intervals (the first line says where the store is)")
    rs.add_argument("experiment", nargs="?")
    rs.add_argument("--store", help=STORE)
    rs.add_argument("--baseline", help="also show paired differences against this policy")
    ex = sub.add_parser("export", help="write a stored experiment's table for a paper (CSV, "
                                       "Parquet or LaTeX)")
    ex.add_argument("experiment")
    ex.add_argument("--format", choices=("csv", "parquet", "latex"), default="csv")
    ex.add_argument("--out", help="file to write (default: in the store beside the results);"
                                  " an existing file is never replaced")
    ex.add_argument("--metrics", help="comma-separated metrics (latex default: the headline "
                                      "ones)")
    ex.add_argument("--store", help=STORE)
    for c in (sub.choices["compare"], rs):
        c.add_argument("--warmup-us", type=float, default=None,
                       help="leave out operations that started before this time")
    sub.choices["compare"].add_argument(
        "--baseline", help="policy to difference the others against, replication by "
                           "replication (paired, common random numbers)")
    sub.choices["compare"].add_argument(
        "--victims", action="store_true",
        help="also run every replication without the hostile vCPUs: victim_slowdown is the "
             "well-behaved vCPUs' work without the attacker over their work with it")
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
    rb.add_argument("--reps", type=int, default=3,
                    help="replications per policy and calibration: a calibration decides a "
                         "ranking only beyond its replication interval (default 3; 1 "
                         "decides nothing)")
    rb.add_argument("--seed", type=int, default=0)
    rb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rb.add_argument("--workers", type=int, default=None)
    rb.add_argument("--allow-dirty", action="store_true",
                    help="store from a checkout with uncommitted changes (marked dirty)")
    rb.add_argument("--store", help=STORE + " to keep the run in")
    rb.add_argument("--name", help="name of the stored run (default: scenario-metric-hash)")
    cb = sub.add_parser("calibrate", help="turn SEAMCALL durations measured on your machine "
                                          "into a calibration file (samples: CSV or parquet "
                                          "with quantity and us or ns, 20 or more each)")
    cb.add_argument("--from", dest="samples", required=True, metavar="SAMPLES",
                    help="measured durations: a column quantity (a calibration row or a leaf "
                         "such as TDH.MEM.PAGE.AUG) and a column us (or ns)")
    cb.add_argument("--out", required=True, help="calibration YAML to write (never replaced);"
                                                 " the samples go beside it")
    cb.add_argument("--base", default="default", help="calibration the other rows come from")
    cb.add_argument("--source", help="where the samples come from (machine, kernel, probe)")
    va = sub.add_parser("validate", help="how far is the model from published end-to-end "
                                         "measurements? (measured, model, ratio)")
    va.add_argument("--calibration", help="calibration name or YAML (default: the scenarios')")
    va.add_argument("--small", action="store_true", help="2 ms horizons (a quick check)")
    va.add_argument("--reps", type=int, default=1)
    va.add_argument("--seed", type=int, default=0)
    va.add_argument("--folder", help="validation entries (default: the shipped ones, "
                                     "data/validation)")
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
    """``explore`` and ``replay``: the race finder (workbench.racefinder)."""
    e = sub.add_parser("explore", help="search the schedules of a small scenario for one "
                                       "that breaks a policy; print the shrunk counterexample")
    e.add_argument("scenario", nargs="?",
                   help="a scenario, best a small one (malicious-accept-small); none with "
                        "--mutants")
    e.add_argument("--policy", default="upstream")
    e.add_argument("--schedules", type=int, default=400)
    e.add_argument("--strategy", choices=("random", "pct", "bounded", "guided"),
                   default="random")
    e.add_argument("--swarm", type=int, default=3,
                   help="guided: variants of the scenario's knobs searched besides it")
    e.add_argument("--max-seconds", type=float, default=None,
                   help="end the search after this many seconds (between batches)")
    e.add_argument("--coverage", action="store_true",
                   help="also print the states reached (call x status x retry) against "
                        "those of ordinary runs of the full-size scenario")
    e.add_argument("--mutants", action="store_true",
                   help="score the race finder: search each planted-bug policy's scenario "
                        "(--max-seconds each, default 60) and upstream on every small one")
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
    r = sub.add_parser("replay", help="does a counterexample still fail? (reruns its replay "
                                      "file bit for bit)")
    r.add_argument("file")
    r.add_argument("--steps", type=int, default=60, help="trace steps to print (0: all)")
    r.add_argument("--predicate", metavar="MODULE:FUNCTION",
                   help="the predicate the counterexample was found with (a replay file "
                        "names it, never imports it)")
    r.add_argument("--import", dest="imports", action="append", default=[],
                   metavar="MODULE", help="import a module that registers policies")
