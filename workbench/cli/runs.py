"""``workbench run``, ``trace``, ``compare`` and ``sweep SCENARIO``: runs and their reports."""
from __future__ import annotations

import math
import sys

from .common import (
    SWEEP_METRICS,
    UsageError,
    _cluster,
    _fmt,
    _headline_of,
    _imports,
    _policy_arg,
    _session,
    _verdicts,
)
from .results import sweep_experiment


def run_report(r) -> str:
    """The short summary ``workbench run`` prints."""
    from ..experiments.metrics import latency_table
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
    from ..core.records import VCPU_STATES
    from ..model.shared import HOT_LINES
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


def _check_out(args) -> None:
    if args.out is not None:
        from ..experiments.comparison import check_out_dir
        check_out_dir(args.out)     # before the work, not after it


def _budget(args):
    from ..core.limits import Budget
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

    from ..experiments.comparison import RunResult, run
    from ..present.trace import check_trace_out, write_trace
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
    from ..experiments.comparison import run
    _imports(args)
    _check_out(args)
    r = run(args.scenario, seed=args.seed, policy=_policy_arg(args.policy), sets=args.set,
            budget=_budget(args), record=args.record)
    print(run_report(r))
    _budget_note(r.summary)
    if args.out:
        print(f"wrote {r.save(args.out)}")


@_session
def cmd_compare(args) -> None:
    from ..experiments.comparison import compare
    from ..policies.registry import split_specs
    _imports(args)
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    if args.warmup_us is not None and not (math.isfinite(args.warmup_us)
                                           and args.warmup_us >= 0):
        raise UsageError(f"--warmup-us must be a finite number >= 0, not {args.warmup_us}")
    _check_out(args)
    policies = [_policy_arg(p) for p in split_specs(args.policies)]
    if args.baseline:
        from ..policies import resolve_policy
        names = [resolve_policy(p).name for p in policies]
        if resolve_policy(_policy_arg(args.baseline)).name not in names:
            raise UsageError(f"--baseline {args.baseline}: not one of --policies "
                             f"({', '.join(names)})")
    engine, client = _cluster(args)
    c = compare(args.scenario, policies, reps=args.reps, seed=args.seed, sets=args.set,
                engine=engine, workers=args.workers, client=client, record=args.record,
                victims=args.victims)
    if args.warmup_us is not None:
        c = c.warmup(args.warmup_us)
    print(f"{args.scenario}: {len(policies)} policies x {args.reps} replications "
          f"(seed {args.seed}, common random numbers)")
    _budget_note(c.summary)
    print(c.report(args.baseline))
    if args.out:
        print(f"wrote {c.save(args.out)}")


SWEEP_COLUMNS = ["value", "policy", "reps", "host_busy_rate", "guest_busy_rate", "kicks",
                 "error_exits", "vm_bugged", "guest_panics", "td_failed", "zero_step_armings",
                 "accept_throughput_per_ms", "wb_fault_wait_p99_us", "zap_4k_p99_us",
                 "conversion_p99_us", "host_retry_cpu_us", "host_contested_share",
                 "longest_wait_us", "wait_spread"]


@_session
def cmd_sweep(args) -> None:
    from ..core.config import parse_value
    from ..experiments.comparison import sweep
    from ..policies.registry import split_specs
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
    print("\n".join(_verdicts(c)))
    head = _headline_of(c)
    print(_fmt(t[[x for x in dict.fromkeys([*SWEEP_COLUMNS[:3], "complete", *head,
                                            *SWEEP_COLUMNS[3:]]) if x in t.columns]]))
    if reps >= 2:
        from ..experiments.stats import with_intervals
        metrics = [x for x in dict.fromkeys([*head, *SWEEP_METRICS]) if x in c.summary.columns]
        print("\nMean [95 % interval] over replications (outcomes: k of n runs, exact; "
              "latency and fairness over complete runs):")
        print(_fmt(with_intervals(c.stats(metrics), by=c.by)))
    if args.out:
        print(f"wrote {c.save(args.out)}")
