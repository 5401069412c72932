"""Speed and memory benchmarks (``make bench``), kept out of ``make test``.

The machines are shared and noisy, so every number is reported as a ratio against a
baseline measured in the same run: a bare SimPy loop of ``yield env.timeout(d)`` (the
engine's own speed on this machine, this minute). Targets are ratios too.

    python benchmarks/run.py [--events 100000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import workbench  # noqa: E402
from workbench.config import load_calibration  # noqa: E402
from workbench.model.td import Td  # noqa: E402
from workbench.policies import resolve_policy  # noqa: E402

# workbench events/s must stay above this share of bare SimPy timeouts/s. Each workbench
# event carries a whole SEAMCALL or TDCALL (try-locks, S-EPT walk, a record), so 0.08 is
# what this model does today; 0.05 catches a regression of a third.
TARGET_SPEED_RATIO = 0.05
# peak Python memory of a ~100k-event run, in MB per 100k events
TARGET_MB_PER_100K_EVENTS = 150.0
# `workbench --help` against `python -c pass`, both as fresh processes in the same run
TARGET_HELP_RATIO = 3.0


def bare_simpy(n: int) -> float:
    """Events per second of the simplest SimPy process: one timeout per event."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1.0)
    env.process(proc())
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def workbench_run(scenario: str, horizon_us: float, seed: int = 1):
    """(events, seconds, calls) of one run, counting every event SimPy scheduled."""
    cfg = workbench.load_scenario(scenario, sets=[f"horizon_us={horizon_us}"])
    cal, _ = load_calibration(cfg.calibration, cfg.timings)
    td = Td(cfg, resolve_policy(cfg.policy), cal, seed)
    t = time.perf_counter()
    td.run()
    dt = time.perf_counter() - t
    return next(td.env._eid), dt, len(td.rec.calls)   # _eid: SimPy's event counter


def horizon_for(scenario: str, events: int) -> float:
    """The horizon that gives about ``events`` events (event count is linear in time)."""
    probe, _, _ = workbench_run(scenario, 2000.0)
    return 2000.0 * events / max(1, probe)


def startup(argv: list[str], n: int = 5) -> float:
    """Best wall time of ``n`` fresh processes running ``argv``."""
    import subprocess
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    return best


def cli_startup() -> dict:
    """`workbench --help` (which must not load pandas, pyarrow, pydantic or SimPy) as a
    ratio to a bare interpreter."""
    bare = startup([sys.executable, "-c", "pass"])
    help_ = startup([sys.executable, "-m", "workbench", "--help"])
    return {"python_pass_s": round(bare, 3), "workbench_help_s": round(help_, 3),
            "ratio": round(help_ / bare, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    base = max(bare_simpy(args.events) for _ in range(3))
    rows = []
    for scenario in ("lazy-accept-boot", "conversion-storm", "zero-step"):
        horizon = horizon_for(scenario, args.events)
        best = None
        for _ in range(3):
            ev, dt, calls = workbench_run(scenario, horizon)
            best = (ev, dt, calls) if best is None or dt < best[1] else best
        ev, dt, calls = best
        tracemalloc.start()
        workbench_run(scenario, horizon)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append({"scenario": scenario, "horizon_us": round(horizon), "events": ev,
                     "calls": calls, "seconds": round(dt, 3), "events_per_s": round(ev / dt),
                     "ratio_to_bare_simpy": round(ev / dt / base, 3),
                     "peak_mb_per_100k_events": round(peak * 100_000 / ev, 1)})
    cli = cli_startup()
    ok = all(r["ratio_to_bare_simpy"] >= TARGET_SPEED_RATIO and
             r["peak_mb_per_100k_events"] <= TARGET_MB_PER_100K_EVENTS for r in rows)
    ok = ok and cli["ratio"] <= TARGET_HELP_RATIO
    print(f"baseline: bare SimPy timeouts {base:,.0f} events/s")
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    print(f"startup: python -c pass {cli['python_pass_s']} s, workbench --help "
          f"{cli['workbench_help_s']} s, ratio {cli['ratio']} (target <= {TARGET_HELP_RATIO})")
    print(f"targets: ratio >= {TARGET_SPEED_RATIO}, peak <= {TARGET_MB_PER_100K_EVENTS} MB "
          f"per 100k events: {'met' if ok else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline_events_per_s": base, "runs": rows,
                                               "startup": cli}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
