"""Layer 8: the command line (``workbench`` or ``python -m workbench``).

    workbench scenarios
    workbench policies
    workbench run SCENARIO [--seed N] [--policy P] [--set key=value ...] [--out DIR]
    workbench compare SCENARIO --policies a,b,c [--reps R] [--seed N] [--baseline P] [--out DIR]
    workbench sweep EXPERIMENT [--store DIR] [--reps R] [--workers W]
    workbench sweep SCENARIO --param KEY --values a,b --policies p,q [--out DIR]
    workbench results [EXPERIMENT] [--baseline P]
    workbench export EXPERIMENT --format csv|parquet|latex [--out FILE]
    workbench robustness SCENARIO --policies a,b,c [--samples N] [--store DIR] [--name NAME]
    workbench calibrate --from samples.csv --out my-machine.yaml [--source TEXT]
    workbench validate [--calibration C] [--small]
    workbench explore SCENARIO --policy P [--schedules N] [--strategy random|pct|bounded]
    workbench replay FILE
    workbench trace SCENARIO|RUN_DIR [--policy P] [--seed N] [--set k=v] --out run.json

Bad input gives one line on stderr and exit status 2; nothing already on disk is touched.
Ctrl-C prints ``interrupted`` and exits 130 with nothing stored half-way. A run that
reaches its budget (``--max-events``, ``--max-seconds``) stops, says so on stderr and
reports what it simulated (``stopped = "budget"``).
"""
from __future__ import annotations

import argparse
import sys

class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


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
    return p


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


def _predicate(text):
    from .safeio import import_user
    if not text:
        return None
    mod, _, fn = text.partition(":")
    return import_user(mod, f"--predicate {text[:60]!r}", attr=fn)



def cmd_validate(args) -> None:
    from .config import load_calibration
    from .validation import validate
    t = validate(folder=args.folder, calibration=args.calibration, small=args.small,
                 seed=args.seed, reps=args.reps)
    for name in dict.fromkeys(t["calibration"]):
        _, meta = load_calibration(name)
        status = [q["status"] for q in meta.values()]
        print(f"calibration {name}: " + ", ".join(
            f"{status.count(k)} {k}" for k in ("exact", "published", "measured", "guess")
            if status.count(k)) + " rows")
    print(f"{len(t)} published measurements against the model (upstream, {args.reps} "
          f"replication(s), seed {args.seed}{', 2 ms horizons' if args.small else ''}); "
          "ratio = model / measured, a mismatch is information:\n")
    print(_fmt(t[["entry", "measured", "model", "ratio", "unit"]]))
    print()
    for r in t.itertuples():
        print(f"{r.entry}: {r.source}\n  what the model leaves out: {r.gap}")


def cmd_calibrate(args) -> None:
    from .measured import calibrate
    t = calibrate(args.samples, args.out, base=args.base, source=args.source)
    print(f"wrote {args.out} ({len(t)} measured rows; the others as in {args.base}); "
          f"use it with --set calibration={args.out}")
    print(f"changed against {args.base} (us):")
    print(_fmt(t))


def cmd_robustness(args) -> None:
    from .policies.registry import split_specs
    from .robustness import robustness, save
    from .store import NAME, Store
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    if args.name is not None and not NAME.match(args.name):
        raise UsageError(f"--name {args.name!r}: letters, digits, '.', '_' and '-' only")
    st = Store(args.store)     # refused before the work if it is not a store
    timings = [t.strip() for t in args.timings.split(",") if t.strip()] if args.timings else None
    r = robustness(args.scenario, split_specs(args.policies), args.metric,
                   samples=args.samples, timings=timings, reps=args.reps, seed=args.seed,
                   sets=args.set, workers=args.workers,
                   lower_is_better=not args.higher_is_better)
    print(robustness_report(r))
    print(f"\nstored as robustness run {save(r, args.name, st)} in {st.root} "
          "(workbench results lists it)")


def robustness_report(r) -> str:
    """The ranking-stability table, the sensitivity and the flips of a robustness run."""
    s = r.spec or {}
    better = "lower" if r.lower_is_better else "higher"
    out = [f"{s.get('scenario')}: {r.metric} ({better} is better) over {len(r.calibrations)} "
           f"calibrations drawn over {r.calibrations.shape[1]} guessed timings, "
           f"{s.get('reps')} replication(s) each (seed {s.get('seed')})", "",
           "how often a ranks better than b (95 % Clopper-Pearson interval):",
           _fmt(r.rankings())]
    sens = r.sensitivity()
    if len(sens):
        out += ["", "most sensitive timings per pair (first-order RBD-FAST index of a - b; "
                    "Spearman's rho):", _fmt(sens.groupby(["a", "b"], sort=False).head(3))]
        n, d = r.calibrations.shape
        if n < 4 * d:
            out.append(f"(only {n} calibrations for {d} timings: these indices are mostly "
                       "noise; raise --samples or name a few --timings)")
    flips = r.flips()
    if len(flips):
        out += ["", "where a ranking flips:", _fmt(flips)]
    return "\n".join(out)


def _fmt(df):
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_columns", 60,
                           "display.float_format", lambda x: f"{x:.3g}"):
        return df.to_string(index=False)


def cmd_scenarios(args) -> None:
    for name, question in quick_describe():
        print(f"{name:18s} {question}")


def quick_describe() -> list[tuple[str, str]]:
    """``scenarios.describe()`` without importing YAML and pydantic (a listing must start
    at once): the shipped files' ``question: >-`` blocks read as text; any file in another
    shape falls back to the full loader."""
    from pathlib import Path
    out = []
    root = Path(__file__).resolve().parent.parent / "data" / "scenarios"
    # the small variants last, as scenarios.describe() (SUBFOLDERS there: "small")
    for path in sorted(root.glob("*.yaml")) + sorted((root / "small").glob("*.yaml")):
        lines = path.read_text().splitlines()
        head = [i for i, x in enumerate(lines) if x.startswith("question:")]
        if len(head) != 1 or lines[head[0]].split(":", 1)[1].strip() != ">-":
            from .scenarios import describe
            return describe()
        block = []
        for x in lines[head[0] + 1:]:
            if not x.startswith("  "):
                break
            block.append(x.strip())
        out.append((path.stem, " ".join(" ".join(block).split())))
    return out


def cmd_policies(args) -> None:
    from .policies import PRESETS, REGISTRY
    print("presets (one policy per call site: fault, zap, vp_enter, accept):")
    for name, p in PRESETS.items():
        print(f"  {name:20s} {p['doc']}")
    print("policies:")
    for name, cls in sorted(REGISTRY.items()):
        sites = ",".join(s.value for s in cls.sites)
        print(f"  {name:20s} [{sites}] {cls.origin}")


def cmd_calibration(args) -> None:
    from .config import load_calibration
    from .model.versions import DEFAULT_VERSION, VERSIONS
    _, meta = load_calibration()
    for k, q in meta.items():
        print(f"  {k:20s} {q['value']:>9} {q['status']:9s} {q['source']}")
    print(f"TDX module versions (--set module.version=V; default {DEFAULT_VERSION}):")
    for name, v in VERSIONS.items():
        print(f"  {name:8s} zero-step VP.ENTER takes the S-EPT tree {v.zero_step_tree.value}; "
              f"tree lock {'with' if v.tree_lock_hp else 'without'} HOST_PRIORITY; "
              f"ENHANCED_DEMOTE_INTERRUPTIBILITY {'yes' if v.enhanced_demote else 'no'}. "
              f"{v.source}")


def _imports(args) -> None:
    from .safeio import import_user, short
    for m in args.imports:
        import_user(m, f"--import {short(m)}")


def run_report(r) -> str:
    """The short summary ``workbench run`` prints."""
    from .metrics import latency_table
    s = r.summary.iloc[0]
    ended = f"stopped early: {s['stopped']}" if s["stopped"] else "ran to the horizon"
    lat = latency_table(r.ops).drop(columns=["policy"])
    lat_text = (_fmt(lat) if len(lat) else "(no operation finished in this run)"
                if r.manifest.get("record") != "summary" else
                "(not kept: --record summary; the p50/p99 are in the summary table)")
    return "\n".join([
        f"{s['scenario']}  policy={s['policy']}  seed={s['seed']}  simulated "
        f"{s['horizon_us'] / 1000:.1f} ms, {s['calls']} SEAMCALL/TDCALL attempts; the TD {ended}",
        "", "latency per operation (us; the hostile vCPUs' own TDCALLs left out):",
        lat_text, "",
        f"BUSY: host calls {s['host_busy_rate']:.3%}, guest TDCALLs {s['guest_busy_rate']:.3%} "
        f"({s['busy_calls']} BUSY in all)   retries: fault "
        f"{s['retries_fault']}, zap {s['retries_zap']}, vp_enter {s['retries_vp_enter']}   "
        f"kicks {s['kicks']} ({s['ipis']} IPIs)",
        f"exits to userspace {s['exits_to_userspace']} (errors {s['error_exits']}, memory "
        f"faults {s['memory_fault_exits']}, MapGPA {s['map_gpa_exits']})   ioctl errors "
        f"{s['ioctl_errors']}   zero-step armings {s['zero_step_armings']}   HP timeouts "
        f"{s['hp_timeouts']}",
        f"pages accepted {s['pages_accepted']} ({s['accept_throughput_per_ms']:.0f} per ms)   "
        f"pages zapped {s['zapped_pages']}   Jain's fairness of useful work "
        f"{s['jain_work']:.3f}   host CPU lost to retries {s['host_retry_cpu_us']:.0f} us",
        f"hostile vCPUs (left out above): {s['hostile_accepts']} pages accepted, "
        f"TDCALL BUSY rate {s['hostile_busy_rate']:.3%}",
        shared_report(s, r.vcpus),
    ])


def shared_report(s, vcpus) -> str:
    """The time lost to the host's shared resources (model/shared.py) and where the
    vCPUs spent their time."""
    from .model.shared import HOT_LINES
    from .records import VCPU_STATES
    if "hot_line_us" not in s:
        return "shared resources: not in this result"
    lines = ", ".join(f"{n} {s[f'hot_line_{n}_us']:.0f}" for n in HOT_LINES)
    total = sum(vcpus[f"{st}_us"].sum() for st in VCPU_STATES) or 1.0
    share = "  ".join(f"{st} {vcpus[f'{st}_us'].sum() / total:.1%}" for st in VCPU_STATES
                      if vcpus[f"{st}_us"].sum() > 0)
    return (f"shared resources (us lost, all vCPUs): hot lock lines {s['hot_line_us']:.0f} "
            f"({lines}); host page allocation {s['host_alloc_wait_us']:.0f}; memory "
            f"bandwidth {s['mem_bw_wait_us']:.0f}; guest locks {s['guest_lock_us']:.0f}\n"
            f"vCPU time: {share}")


def _policy_arg(text):
    """A ``--policy`` value; a path to a YAML file holds a policy spec (data: it may name
    policies, never import one)."""
    if text and text.endswith((".yaml", ".yml")):
        from .config import read_yaml
        from .policies import resolve_policy
        return resolve_policy(read_yaml(text, "policy file"), imports=False)
    return text


def _check_out(args) -> None:
    if args.out is not None:
        from .experiments import check_out_dir
        check_out_dir(args.out)     # before the work, not after it


def _budget(args):
    from .limits import Budget
    kw = {k: v for k, v in (("max_events", args.max_events),
                            ("max_seconds", args.max_seconds)) if v is not None}
    return Budget(**kw, progress=None if args.quiet else _progress)


def _progress(now_us: float, horizon_us: float, events: int, elapsed_s: float) -> None:
    """One stderr line every few seconds of a long run."""
    print(f"workbench: simulated {now_us / 1000:.4g} of {horizon_us / 1000:.4g} ms "
          f"({now_us / horizon_us:.0%}), {events:,} events, {events / elapsed_s:,.0f} "
          f"events/s, {elapsed_s:.0f} s", file=sys.stderr, flush=True)


def _budget_note(summary) -> None:
    """Say on stderr that a run stopped at its budget."""
    rows = summary[summary["stopped"] == "budget"]
    if len(rows):
        print(f"workbench: {len(rows)} run(s) stopped at the budget; the tables cover only "
              "the simulated time reached (raise --max-events / --max-seconds)",
              file=sys.stderr)


def cmd_trace(args) -> None:
    from pathlib import Path

    from .experiments import RunResult, run
    from .trace import check_trace_out, write_trace
    if not args.out:
        raise UsageError("trace: give --out FILE.json")
    check_trace_out(args.out)
    if Path(args.scenario).is_dir():
        r = RunResult.load(args.scenario)
    else:
        _imports(args)
        r = run(args.scenario, seed=args.seed, policy=_policy_arg(args.policy), sets=args.set,
                replication=args.replication)
    print(f"wrote {write_trace(r, args.out)} ({len(r.calls)} calls, {len(r.ops)} operations; "
          "open it in ui.perfetto.dev or chrome://tracing)")


def cmd_run(args) -> None:
    from .experiments import run
    _imports(args)
    _check_out(args)
    r = run(args.scenario, seed=args.seed, policy=_policy_arg(args.policy), sets=args.set,
            budget=_budget(args), record=args.record)
    print(run_report(r))
    _budget_note(r.summary)
    if args.out:
        print(f"wrote {r.save(args.out)}")


def _warning(message, category, filename, lineno, line=None) -> str:
    return f"workbench: warning: {message}\n"


def _session(cmd):
    """Around a subcommand: warnings print as one line, and a Dask client it connected
    (``--scheduler``) is closed at the end."""
    import functools

    @functools.wraps(cmd)
    def wrapped(args):
        import warnings
        saved, warnings.formatwarning = warnings.formatwarning, _warning
        try:
            return cmd(args)
        finally:
            warnings.formatwarning = saved
            if getattr(args, "client", None) is not None:
                args.client.close()
    return wrapped


@_session
def cmd_compare(args) -> None:
    from .experiments import compare
    from .policies.registry import split_specs
    _imports(args)
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    _check_out(args)
    policies = [_policy_arg(p) for p in split_specs(args.policies)]
    if args.baseline:
        from .policies import resolve_policy
        names = [resolve_policy(p).name for p in policies]
        if resolve_policy(_policy_arg(args.baseline)).name not in names:
            raise UsageError(f"--baseline {args.baseline}: not one of --policies "
                             f"({', '.join(names)})")
    engine, client = _cluster(args)
    c = compare(args.scenario, policies, reps=args.reps, seed=args.seed, sets=args.set,
                engine=engine, workers=args.workers, client=client, record=args.record)
    if args.warmup_us is not None:
        c = c.warmup(args.warmup_us)
    print(f"{args.scenario}: {len(policies)} policies x {args.reps} replications "
          f"(seed {args.seed}, common random numbers)")
    _budget_note(c.summary)
    print("\nOutcomes and costs per run (mean over replications; vm_bugged and guest_panics "
          "count replications):")
    print(_fmt(c.table.drop(columns=[x for x in c.table.columns if x.endswith("_us")
                                     and "retry" not in x])))
    print("\nLatency per operation (us, all replications pooled; the hostile vCPUs' own "
          "TDCALLs left out):")
    lat = c.latency
    lat = lat[lat["op"].isin(["private_fault", "fault_wait", "zap_4k", "conversion", "accept_4K", "vp_enter"])]
    print(_fmt(lat.sort_values(["op", "policy"], kind="stable")))
    print(interval_report(c, args.baseline))
    if args.out:
        print(f"wrote {c.save(args.out)}")


SWEEP_COLUMNS = ["value", "policy", "reps", "host_busy_rate", "guest_busy_rate", "kicks", "error_exits", "vm_bugged",
                 "guest_panics", "zero_step_armings", "accept_throughput_per_ms",
                 "private_fault_p99_us", "zap_4k_p99_us", "conversion_p99_us",
                 "host_retry_cpu_us", "jain_work"]


@_session
def cmd_sweep(args) -> None:
    from .config import parse_value
    from .experiments import sweep
    from .policies.registry import split_specs
    _imports(args)
    if args.param is None:
        return sweep_experiment(args)
    if args.reps == "auto":
        raise UsageError("--reps auto is for experiment files (it needs their precision:)")
    if args.reps is not None and args.reps < 1:
        raise UsageError("--reps must be at least 1")
    if args.values is None or args.policies is None:
        raise UsageError("--param needs --values and --policies")
    if args.store:
        raise UsageError("--store is for experiment files; a --param sweep writes to --out")
    reps, seed = args.reps or 3, args.seed or 0
    _check_out(args)
    values = [parse_value(v.strip()) for v in args.values.split(",") if v.strip()]
    policies = [_policy_arg(p) for p in split_specs(args.policies)]
    engine, client = _cluster(args)
    c = sweep(args.scenario, args.param, values, policies, reps=reps, seed=seed,
              sets=args.set, engine=engine, workers=args.workers, client=client,
              record=args.record)
    print(f"{args.scenario}: {args.param} in {values}, {len(policies)} policies x "
          f"{reps} replications (seed {seed}, common random numbers)")
    t = c.table
    _budget_note(c.summary)
    print(_fmt(t[[x for x in SWEEP_COLUMNS if x in t.columns]]))
    if reps >= 2:
        from .stats import with_intervals
        metrics = [x for x in SWEEP_METRICS if x in c.summary.columns]
        print("\nMean [95 % t-interval] over replications:")
        print(_fmt(with_intervals(c.stats(metrics), by=c.by)))
    if args.out:
        print(f"wrote {c.save(args.out)}")


# the metrics a sweep prints with intervals (those the runs have: names may change)
SWEEP_METRICS = ["busy_rate", "host_busy_rate", "guest_busy_rate", "kicks", "error_exits",
                 "vm_bugged", "zero_step_armings", "accept_throughput_per_ms",
                 "private_fault_p99_us", "zap_4k_p99_us", "conversion_p99_us",
                 "host_retry_cpu_us"]


def _headline(summary) -> list[str]:
    from .metrics import HEADLINE
    return [m for m in HEADLINE if m in summary.columns and m != "policy"]


def interval_report(c, baseline=None) -> str:
    """Means with 95 % t-intervals over replications (one line per metric, one column per
    policy and group) and, given a ``baseline``, the paired differences against it."""
    import numpy as np
    from .stats import with_intervals
    metrics = _headline(c.summary)
    wide = with_intervals(c.stats(metrics), by=c.by)
    keys = [*c.by, "policy"]
    cols = [" ".join(str(v) for v in r) for r in wide[keys].itertuples(index=False)]
    t = wide.drop(columns=keys).T
    t.columns = cols
    out = ["", "Mean [95 % t-interval] over replications:", _fmt(t.rename_axis("metric")
                                                                  .reset_index())]
    if baseline:
        d = c.diff(baseline, metrics)
        fin = np.isfinite(d["ci_low"])
        d["paired diff [95 % CI]"] = [
            f"{x:.3g} [{lo:.3g}, {hi:.3g}]{' *' if z else ''}" if f else
            ("-" if not np.isfinite(x) else f"{x:.3g}")
            for x, lo, hi, z, f in zip(d["diff"], d["ci_low"], d["ci_high"],
                                       d["excludes_zero"], fin)]
        out += ["", f"Paired differences against {baseline} (policy - {baseline}, per "
                    "replication; * the interval excludes zero):",
                _fmt(d[[*c.by, "policy", "metric", "n", "paired diff [95 % CI]"]])]
    return "\n".join(out)


def _cluster(args):
    """``(engine, client)``: a Dask client connected to ``--scheduler``, if given."""
    if not args.scheduler:
        return args.engine, None
    if args.engine not in (None, "dask"):
        raise UsageError("--scheduler needs --engine dask (or no --engine)")
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs the dist extra: pip install -e '.[dist]'") from None
    try:
        args.client = Client(args.scheduler, timeout="10s")   # closed by main()
        return "dask", args.client
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"--scheduler {args.scheduler}: cannot connect "
                         f"({type(err).__name__})") from None


def sweep_experiment(args) -> None:
    from .runner import run_experiment
    for flag in ("values", "policies", "out"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} goes with --param; an experiment file names its own "
                             "factors and policies and writes to the store (--store)")
    engine, client = _cluster(args)
    c = run_experiment(args.scenario, store=args.store, reps=args.reps, seed=args.seed,
                       sets=args.set, engine=engine, workers=args.workers, client=client,
                       record=args.record)
    print(experiment_report(c))


def experiment_report(c, baseline=None) -> str:
    import numpy as np
    from .stats import with_intervals
    m = c.manifest
    e, prov = m.get("experiment", {}), m.get("provenance", {})
    dirty = " (uncommitted changes)" if prov.get("git_dirty") else ""
    head = [f"{m.get('name')}: scenario {e.get('scenario')}, factors "
            f"{', '.join(m.get('factors') or {}) or '-'}, {len(e.get('policies') or [])} "
            f"policies x {len((m.get('seeds') or {}).get('replications') or [])} replications "
            f"(seed {e.get('seed')}, common random numbers)",
            f"{len(m.get('runs', []))} runs: {m.get('runs_computed')} computed, "
            f"{m.get('runs_from_store')} from the store; version {prov.get('version')}, commit "
            f"{(prov.get('git_commit') or '?')[:10]}{dirty}, {prov.get('engine')}, "
            f"{prov.get('started')} to {prov.get('finished')}"]
    prec = m.get("precision")
    if prec:
        head.append(f"reps auto: {prec['reps']} replications; the 95 % interval of "
                    f"{prec['metric']} is within {prec['worst_rel_half_width']:.1%} of its mean"
                    f" (asked {prec['rel']:.1%}{'' if prec['reached'] else ', NOT reached by max_reps'})")
    made_by = m.get("runs_made_by") or []
    if len(made_by) > 1 or any(x.get("git_dirty") for x in made_by):
        head.append("note: the stored runs were made by " + "; ".join(
            f"{x.get('version')} {(x.get('git_commit') or '?')[:10]}"
            f"{' dirty' if x.get('git_dirty') else ''}" for x in made_by))
    metrics = [x for x in SWEEP_METRICS if x in c.summary.columns
               and np.isfinite(c.summary[x].astype(float)).any()]
    wide = with_intervals(c.stats(metrics), by=c.by)
    out = [*head, "", "Mean [95 % t-interval] over replications:", _fmt(wide)]
    if baseline:
        d = c.diff(baseline, metrics)
        d["diff [95 % CI]"] = [f"{x:.3g} [{lo:.3g}, {hi:.3g}]{' *' if z else ''}"
                               for x, lo, hi, z in zip(d["diff"], d["ci_low"], d["ci_high"],
                                                       d["excludes_zero"])]
        out += ["", f"Paired differences against {baseline} (* excludes zero):",
                _fmt(d[[*c.by, "policy", "metric", "n", "diff [95 % CI]"]])]
    return "\n".join(out)


@_session
def cmd_results(args) -> None:
    from .runner import load_stored, results
    from .store import Store
    st = Store(args.store)
    if not args.experiment:
        from .robustness import stored
        t, rb = results(store=st), stored(st)
        print(f"store {st.root}:")
        print(_fmt(t) if len(t) else "(no experiments stored yet)")
        if len(rb):
            print("\nrobustness runs (workbench results NAME shows one):")
            print(_fmt(rb))
        return
    if args.experiment in st.robustness_runs():
        from .robustness import load
        print(robustness_report(load(args.experiment, st)))
        return
    c = load_stored(args.experiment, st)
    if args.warmup_us is not None:
        c = c.warmup(args.warmup_us)
    print(experiment_report(c, args.baseline))


EXPORTS = {"csv": "stats.csv", "parquet": "stats.parquet", "latex": "table.tex"}


@_session
def cmd_export(args) -> None:
    from pathlib import Path
    from .runner import load_stored
    from .stats import latex_table
    from .store import Store, atomic_write
    st = Store(args.store)
    c = load_stored(args.experiment, st)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics \
        else (_headline(c.summary) if args.format == "latex" else None)
    if metrics:
        unknown = [m for m in metrics if m not in c.summary.columns]
        if unknown:
            raise UsageError(f"--metrics: {unknown[0]!r} is not a metric of "
                             f"{args.experiment}")
    if args.format == "latex" and not args.metrics:   # the headline metrics that vary
        metrics = [m for m in SWEEP_METRICS if m in metrics
                   and c.summary[m].astype(float).fillna(0).abs().sum() > 0][:6] or metrics[:6]
    desc = c.stats(metrics)
    if args.format == "latex":
        text = latex_table(desc, by=c.by, metrics=metrics,
                           caption=f"{args.experiment}: mean [95 % t-interval] over "
                                   f"{len(c.manifest.get('seeds', {}).get('replications', []))}"
                                   " replications")
        write = lambda p: p.write_text(text)  # noqa: E731
    elif args.format == "csv":
        write = lambda p: desc.to_csv(p, index=False)  # noqa: E731
    else:
        write = lambda p: desc.to_parquet(p, index=False)  # noqa: E731
    if args.out:
        out = Path(args.out)
        if st.root.resolve() in out.resolve().parents:
            raise UsageError(f"--out {out}: inside the store; leave --out out to write there")
        if out.exists() or out.is_symlink():
            raise UsageError(f"--out {out}: exists; the tool never replaces a file it did not "
                             "write (choose a new name)")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: no folder {out.parent}")
        try:
            atomic_write(out, write)
        except OSError as err:
            raise UsageError(f"--out {out}: cannot write there ({err.strerror})") from None
        print(f"wrote {out}")
        return
    with st:
        print(f"wrote {st.put_file(args.experiment, EXPORTS[args.format], write)}")


@_session
def cmd_explore(args) -> None:
    from .explore import explore
    from .replay import format_trace, save
    _imports(args)
    oracles = [o.strip() for a in args.oracle for o in a.split(",") if o.strip()] or None
    v = explore(args.scenario, _policy_arg(args.policy), schedules=args.schedules,
                strategy=args.strategy, depth=args.depth, seed=args.seed, oracles=oracles,
                predicate=_predicate(args.predicate), sets=args.set,
                livelock_us=args.livelock_us, starve_us=args.starve_us,
                shrink_seconds=args.shrink_seconds, engine=args.engine, workers=args.workers)
    print(v.text())
    if v.failure:
        print(format_trace(v.shrunk, args.steps or 10**9))
        print(f"wrote {save(args.out, v.target, v.shrunk)} (rerun: workbench replay "
              f"{args.out})")


def cmd_replay(args) -> None:
    from .replay import format_trace, replay
    _imports(args)
    o, same = replay(args.file)
    print(format_trace(o, args.steps or 10**9))
    what = f"{o.failure[0]}: {o.failure[1]}" if o.failure else "no failure"
    if not same:
        from .config import ConfigError
        raise ConfigError(f"{args.file}: the run no longer reproduces the recorded one "
                          f"(now: {what})")
    print(f"reproduced bit for bit: {what}; {o.steps} module calls, signature {o.signature}")


def main(argv=None) -> int:
    from .errors import ConfigError, PolicyError
    try:
        args = build_parser().parse_args(argv)
        globals()[f"cmd_{args.cmd}"](args)
    except (UsageError, ConfigError, PolicyError) as err:
        print(f"workbench: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:    # a bug of ours: still one line (WORKBENCH_TRACEBACK=1 shows it)
        import os
        if os.environ.get("WORKBENCH_TRACEBACK"):
            raise
        print(f"workbench: internal error: {type(err).__name__}: {_one_line(err)} "
              "(please report; WORKBENCH_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1
    return 0


def _one_line(err, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
