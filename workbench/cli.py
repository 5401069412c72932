"""Layer 8: the command line (``workbench`` or ``python -m workbench``).

    workbench scenarios
    workbench policies
    workbench run SCENARIO [--seed N] [--policy P] [--set key=value ...] [--out DIR]
    workbench compare SCENARIO --policies a,b,c [--reps R] [--seed N] [--out DIR]

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


def build_parser() -> Parser:
    p = Parser(prog="workbench", description="Simulate how KVM handles TDX_OPERAND_BUSY.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    sub.add_parser("scenarios", help="list the scenarios and the question each answers")
    sub.add_parser("policies", help="list the presets and the registered policies")
    sub.add_parser("calibration", help="show the timing parameters and how sure we are")
    for name in ("run", "compare"):
        c = sub.add_parser(name, help=f"{name} a scenario")
        c.add_argument("scenario", help="a scenario name or a YAML path")
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
    sub.choices["run"].add_argument(
        "--policy", help="preset, policy name, mod:Class, per site (upstream+fault=resume-guest) "
                         "or a YAML file holding a policy mapping")
    sw = sub.add_parser("sweep", help="compare policies at each value of one parameter")
    sw.add_argument("scenario", help="a scenario name or a YAML path")
    sw.add_argument("--param", required=True, help="e.g. vcpus.1.count or timings.sept_add_us")
    sw.add_argument("--values", required=True, help="comma-separated values")
    for c in (sub.choices["compare"], sw):
        if c is sw:
            c.add_argument("--seed", type=int, default=0)
            c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
            c.add_argument("--out")
            c.add_argument("--import", dest="imports", action="append", default=[],
                           metavar="MODULE")
        c.add_argument("--policies", required=True,
                       help="comma-separated presets, policies or per-site specs")
        c.add_argument("--reps", type=int, default=3)
        c.add_argument("--engine", choices=("serial", "processes", "dask"), default="serial")
        c.add_argument("--workers", type=int, default=None)
    return p


def _fmt(df):
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_columns", 60,
                           "display.float_format", lambda x: f"{x:.3g}"):
        return df.to_string(index=False)


def cmd_scenarios(args) -> None:
    from .scenarios import describe
    for name, question in describe():
        print(f"{name:18s} {question}")


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
              f"tree lock {'with' if v.tree_lock_hp else 'without'} HOST_PRIORITY. {v.source}")


def _imports(args) -> None:
    import importlib
    from .config import ConfigError
    from .safeio import short
    for m in args.imports:
        if not m or not all(p.isidentifier() for p in m.split(".")):
            raise ConfigError(f"--import {short(m)}: expected a module name (pkg.module)")
        try:
            importlib.import_module(m)
        except Exception as err:     # the user's module: any failure is one line
            raise ConfigError(f"--import {short(m)}: {type(err).__name__}: "
                              f"{short(str(err), 120)[1:-1]}") from None


def run_report(r) -> str:
    """The short summary ``workbench run`` prints."""
    from .metrics import latency_table
    s = r.summary.iloc[0]
    ended = f"stopped early: {s['stopped']}" if s["stopped"] else "ran to the horizon"
    lat = latency_table(r.ops).drop(columns=["policy"])
    lat_text = _fmt(lat) if len(lat) else "(no operation finished in this run)"
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
    ])


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


def cmd_run(args) -> None:
    from .experiments import run
    _imports(args)
    _check_out(args)
    r = run(args.scenario, seed=args.seed, policy=_policy_arg(args.policy), sets=args.set,
            budget=_budget(args))
    print(run_report(r))
    _budget_note(r.summary)
    if args.out:
        print(f"wrote {r.save(args.out)}")


def cmd_compare(args) -> None:
    from .experiments import compare
    from .policies.registry import split_specs
    _imports(args)
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    _check_out(args)
    policies = [_policy_arg(p) for p in split_specs(args.policies)]
    c = compare(args.scenario, policies, reps=args.reps, seed=args.seed, sets=args.set,
                engine=args.engine, workers=args.workers)
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
    lat = lat[lat["op"].isin(["private_fault", "zap_4k", "conversion", "accept_4K", "vp_enter"])]
    print(_fmt(lat.sort_values(["op", "policy"], kind="stable")))
    if args.out:
        print(f"wrote {c.save(args.out)}")


SWEEP_COLUMNS = ["value", "policy", "reps", "host_busy_rate", "guest_busy_rate", "kicks", "error_exits", "vm_bugged",
                 "guest_panics", "zero_step_armings", "accept_throughput_per_ms",
                 "private_fault_p99_us", "zap_4k_p99_us", "conversion_p99_us",
                 "host_retry_cpu_us", "jain_work"]


def cmd_sweep(args) -> None:
    from .config import parse_value
    from .experiments import sweep
    from .policies.registry import split_specs
    _imports(args)
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    _check_out(args)
    values = [parse_value(v.strip()) for v in args.values.split(",") if v.strip()]
    policies = [_policy_arg(p) for p in split_specs(args.policies)]
    c = sweep(args.scenario, args.param, values, policies, reps=args.reps, seed=args.seed,
              sets=args.set, engine=args.engine, workers=args.workers)
    print(f"{args.scenario}: {args.param} in {values}, {len(policies)} policies x "
          f"{args.reps} replications (seed {args.seed}, common random numbers)")
    t = c.table
    _budget_note(c.summary)
    print(_fmt(t[[x for x in SWEEP_COLUMNS if x in t.columns]]))
    if args.out:
        print(f"wrote {c.save(args.out)}")


def main(argv=None) -> int:
    from .config import ConfigError
    from .policies import PolicyError
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
