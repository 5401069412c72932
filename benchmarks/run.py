"""Speed and memory benchmarks (``make bench``), kept out of ``make test``.

The machines are shared and noisy, so every speed is a ratio against a baseline measured in
the same run: a bare SimPy loop of ``yield env.timeout(d)`` timed interleaved with the model
(CPU time), or a bare interpreter for start-up. The hot-path targets are ratios to a fixed
baseline commit (5883c98), measured in its own process: ``--baseline-tree PATH``, or by
default a copy that ``git archive 5883c98`` unpacks into ``build/baseline-5883c98/``
(nothing is downloaded; without git history the fixed figures ``REF_*`` are the baseline):
2x its events and 1.5x its attempts per CPU-second. The model is measured with
``shared.off=all`` (equal results: its tables are the baseline's, tests/test_golden.py),
which the targets judge, and as shipped.

    python benchmarks/run.py [--events 60000] [--quick] [--baseline-tree PATH]

Prints one table (target, measured, threshold, pass/fail) and writes it as JSON (with the
machine and versions) and as Markdown under ``benchmarks/results/``; a full run (not
``--quick``) also replaces the generated section of ``benchmarks/README.md`` (between the
``BEGIN``/``END`` markers) with the table; the prose around it is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
import hotpath  # noqa: E402

PY = sys.executable
# the baseline commit's figures, as ratios to bare SimPy, used when its tree is not at hand
# (highest of each range: a target met against it is met against every scenario's own figure)
REF_EVENT_RATIO = 0.088          # events/CPU-s over bare SimPy timeouts/CPU-s: 0.063-0.088
REF_ATTEMPT_RATIO = 0.044        # SEAMCALL/TDCALL attempts per bare timeout: 0.035-0.044
EVENT_GAIN, ATTEMPT_GAIN = 2.0, 1.5
HELP_RATIO = 3.0                 # CLI start-up against `python -c pass`
MEMORY_RATIO = 1.2               # record="summary": peak RSS at 10x horizon over 1x
USER_WAIT_RATIO = 2.0            # panel Run / `workbench compare` over a 1M-event SimPy loop
DASK_SPEEDUP = 1.6               # 8 replications on 2 workers, cluster start included
SCALING_SLACK = 1.25             # cost per event 64 vs 4 vCPUs; time per us 2x vs 1x horizon
HEAVY = ("pandas", "pyarrow", "plotly")


def _sub(code: str, tree: Path = ROOT) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([PY, "-c", code], check=True, capture_output=True, text=True,
                          env=env, cwd=str(tree)).stdout


def hot(tree: Path, events: int, sets: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    extra = ["--sets", sets] if sets else []
    out = subprocess.run([PY, str(HERE / "hotpath.py"), str(tree), "--events", str(events),
                          *extra], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def startup(argv: list[str], n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=str(ROOT))
        best = min(best, time.perf_counter() - t)
    return best


def peak_rss_mb(scenario: str, horizon_us: float, record: str) -> float:
    code = (f"import resource, workbench\n"
            f"workbench.run({scenario!r}, seed=1, sets=['horizon_us={horizon_us}'], "
            f"record={record!r})\n"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    return float(_sub(code))


def bare_loop_cpu(n: int) -> float:
    return hotpath.bare_simpy(n) * n


def cpu_of(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def row(target, measured, threshold, ok, note="") -> dict:
    return {"target": target, "measured": measured, "threshold": threshold,
            "pass": bool(ok), "note": note}


def _gain_row(what: str, sc: str, key: str, gain: float, ref: float, new: dict,
              off: dict, old: dict | None) -> dict:
    """One hot-path target "at equal results": the model with ``shared.off=all`` (whose
    tables are the baseline's, tests/test_golden.py) against ``gain`` x the baseline tree's
    figure measured in the same run, else against the fixed reference figure ``ref``. The model as shipped
    (more mechanisms, other results) is in the note."""
    r = off[sc][key]
    note = f"as shipped: {new[sc][key]:.4f}"
    if old:
        o = old[sc][key]
        note = (f"baseline {o:.4f}; {r / o:.2f}x at equal results, {new[sc][key] / o:.2f}x "
                f"as shipped")
        return row(f"{what}: {sc}", r, f">= {gain:g}x baseline ({gain * o:.4f})",
                   r >= gain * o, note)
    return row(f"{what}: {sc}", r, f">= {gain * ref:.4f}", r >= gain * ref, note)


def hot_rows(events: int, baseline: Path | None) -> list:
    new = hot(ROOT, events)
    off = hot(ROOT, events, "shared.off=all")
    old = hot(baseline, events) if baseline else None
    rows = [_gain_row("events/CPU-s vs bare SimPy", sc, "event_ratio", EVENT_GAIN,
                      REF_EVENT_RATIO, new, off, old) for sc in new]
    rows += [_gain_row("attempts per bare timeout", sc, "attempt_ratio", ATTEMPT_GAIN,
                       REF_ATTEMPT_RATIO, new, off, old) for sc in hotpath.ATTEMPT_SCENARIOS]
    return rows


def startup_rows() -> list:
    bare = startup([PY, "-c", "pass"])
    rows = []
    for args in (["--help"], ["scenarios"]):
        t = startup([PY, "-m", "workbench", *args])
        rows.append(row(f"`workbench {args[0]}` / `python -c pass`", round(t / bare, 2),
                        f"<= {HELP_RATIO}", t / bare <= HELP_RATIO,
                        f"{t:.3f} s vs {bare:.3f} s"))
    loaded = _sub("import sys, workbench\n"
                  f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))").strip()
    rows.append(row("`import workbench` loads none of pandas/pyarrow/plotly",
                    loaded or "none", "none", not loaded))
    return rows


def record_rows(scenario: str, horizon: float) -> list:
    import pandas as pd

    import workbench
    short = peak_rss_mb(scenario, horizon, "summary")
    long = peak_rss_mb(scenario, 10 * horizon, "summary")
    full = peak_rss_mb(scenario, 10 * horizon, "calls")
    same = all(
        workbench.run(s, seed=1, sets=["horizon_us=1000"], record="summary").summary.equals(
            workbench.run(s, seed=1, sets=["horizon_us=1000"]).summary)
        for s in workbench.scenario_names())
    del pd
    return [row(f"record=summary peak RSS, {scenario} 10x / 1x horizon",
                round(long / short, 3), f"<= {MEMORY_RATIO}", long / short <= MEMORY_RATIO,
                f"{short:.0f} -> {long:.0f} MB; record=calls at 10x: {full:.0f} MB"),
            row("summary row identical at every record level (all scenarios)",
                "identical" if same else "DIFFERENT", "identical", same)]


def user_wait_rows() -> list:
    import workbench
    base = bare_loop_cpu(1_000_000)
    from workbench.present.widgets import DEFAULT_COLUMNS, DEFAULT_KNOBS
    panel = cpu_of(lambda: workbench.compare("malicious-accept", list(DEFAULT_COLUMNS), reps=2,
                                             seed=1, sets={"horizon_us": 1500,
                                                           **DEFAULT_KNOBS}))
    cli = cpu_of(lambda: workbench.compare("lazy-accept-boot", ["upstream", "zero-tolerance"],
                                           reps=1))
    base = (base + bare_loop_cpu(1_000_000)) / 2
    return [row("panel default Run (compare, its defaults) / 1M-event SimPy loop",
                round(panel / base, 2), f"<= {USER_WAIT_RATIO}", panel / base <= USER_WAIT_RATIO,
                f"{panel:.2f} s CPU vs {base:.2f} s; plots not counted"),
            row("compare 2 presets, default scenario, 1 rep / 1M-event SimPy loop",
                round(cli / base, 2), f"<= {USER_WAIT_RATIO}", cli / base <= USER_WAIT_RATIO,
                f"{cli:.2f} s CPU vs {base:.2f} s")]


def dask_rows() -> list:
    """A session of two ``compare`` calls of 8 replications of lazy-accept-boot at its
    default horizon (``workbench compare lazy-accept-boot --reps 8 --engine dask``): the
    first starts the session's cluster, the second reuses it; against the same two calls
    run serially."""
    import workbench
    from workbench.experiments.engines import close_session_cluster

    def call(**engine) -> float:
        t = time.perf_counter()
        workbench.compare("lazy-accept-boot", ["upstream"], reps=8, seed=1, **engine)
        return time.perf_counter() - t
    serial = [call(), call()]
    try:
        first, second = call(engine="dask", workers=2), call(engine="dask", workers=2)
    except Exception as err:  # noqa: BLE001  (no dask installed: the row says so)
        return [row("dask 8 reps on 2 workers (start once) vs serial", "n/a",
                    f">= {DASK_SPEEDUP}", False, f"{type(err).__name__}: {err}")]
    finally:
        close_session_cluster()
    speed = sum(serial) / (first + second)
    return [row("dask session: 2 compare calls of 8 reps on 2 workers, cluster start "
                "counted once, vs serial", round(speed, 3), f">= {DASK_SPEEDUP}",
                speed >= DASK_SPEEDUP,
                f"serial {serial[0]:.2f} + {serial[1]:.2f} s; dask {first:.2f} s (with "
                f"start) + {second:.2f} s (reused); {os.cpu_count()} CPUs, load "
                f"{os.getloadavg()[0]:.1f}: a speed-up needs idle cores")]


def _fastest(scenario: str, sets: list, n: int = 3):
    """(events, calls, CPU s) of the fastest of ``n`` runs: one run is too noisy here."""
    return min((hotpath.one_run_sets(scenario, sets) for _ in range(n)), key=lambda r: r[2])


def scaling_rows() -> list:
    small = _fastest("scale", ["horizon_us=2000", "vcpus.1.count=3"])
    big = _fastest("scale", ["horizon_us=2000", "vcpus.1.count=63"])
    per_ev = (big[2] / big[0]) / (small[2] / small[0])
    h1 = _fastest("lazy-accept-boot", ["horizon_us=4000"])
    h2 = _fastest("lazy-accept-boot", ["horizon_us=8000"])
    lin = (h2[2] / 8000) / (h1[2] / 4000)
    return [row("CPU per event, 64 vCPUs / 4 vCPUs (scale)", round(per_ev, 2),
                f"<= {SCALING_SLACK}", per_ev <= SCALING_SLACK),
            row("CPU per simulated us, 2x / 1x horizon (lazy-accept-boot)", round(lin, 2),
                f"<= {SCALING_SLACK}", lin <= SCALING_SLACK)]


STORM = str(HERE / "long-hold-storm.yaml")
COLLAPSE_GAIN = 20.0


def collapse_rows() -> list:
    """KVM's fastpath passes (model/fastpath.py) polled one by one vs collapsed, CPU of the
    simulation, on the long-hold storm (what-if: kicks acknowledged after 300 us), and the
    same at the calibrated timings for context. The tables are the same either way
    (tests/test_fastpath.py)."""
    out = {}
    for what, sets in (("what-if", []), ("calibrated", ["timings.ipi_delivery_us=2"])):
        best = {}
        for _ in range(2):                       # interleaved, best of two
            for mode in ("polled", "collapsed"):
                steps, _, dt = hotpath.one_run_sets(STORM, [f"polls={mode}", *sets])
                if dt < best.get(mode, (0, float("inf")))[1]:
                    best[mode] = (steps, dt)
        out[what] = best
    (ps, pt), (cs, ct) = out["what-if"]["polled"], out["what-if"]["collapsed"]
    (qs, qt), (ds, dt) = out["calibrated"]["polled"], out["calibrated"]["collapsed"]
    gain = pt / ct
    return [row("collapsed fastpath passes vs polled, long-hold storm (what-if IPI 300 us)",
                round(gain, 2), f">= {COLLAPSE_GAIN:g}", gain >= COLLAPSE_GAIN,
                f"{pt:.2f} s vs {ct:.2f} s CPU; passes are {1 - cs / ps:.0%} of the polled "
                f"run's {ps} events (at most {ps / cs:.1f}x at equal cost per event); at the "
                f"calibrated IPI 2 us: {qt / dt:.2f}x, passes {1 - ds / qs:.0%} of events")]


def machine() -> dict:
    import numpy
    import pandas
    import simpy
    try:
        import dask
        dask_v = dask.__version__
    except ImportError:
        dask_v = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=str(ROOT)).stdout.strip()
    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "simpy": simpy.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "dask": dask_v, "git_commit": commit,
            "load_avg": os.getloadavg()}


def markdown(rows: list, m: dict) -> str:
    out = [f"Measured {m['when']} on {m['cpus']} CPUs (load {m['load_avg'][0]:.1f}), "
           f"Python {m['python']}, SimPy {m['simpy']}, commit {m['git_commit']}.", "",
           "| target | measured | threshold | pass | note |", "|---|---|---|---|---|"]
    out += [f"| {r['target']} | {r['measured']} | {r['threshold']} | "
            f"{'pass' if r['pass'] else 'FAIL'} | {r['note']} |" for r in rows]
    return "\n".join(out) + "\n"


BASELINE_COMMIT = "5883c98"
README = HERE / "README.md"
BEGIN = "<!-- BEGIN generated by benchmarks/run.py: do not edit by hand -->"
END = "<!-- END generated by benchmarks/run.py -->"


def write_readme(table: str, path: Path = README) -> None:
    """Replace the text between the markers of ``path`` with ``table``; the prose around
    the markers is kept. A file without both markers is refused (nothing is written)."""
    text = path.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{path}: needs one {BEGIN!r} line before one {END!r} line")
    head, rest = text.split(BEGIN)
    tail = rest.split(END)[1]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{head}{BEGIN}\n{table.rstrip()}\n{END}{tail}")
    os.replace(tmp, path)


def baseline_tree() -> Path | None:
    """The baseline commit's tree, unpacked from this clone's history (``git archive``)."""
    import io
    import subprocess
    import tarfile
    dest = ROOT / "build" / f"baseline-{BASELINE_COMMIT}"
    if (dest / "workbench" / "__init__.py").exists():
        return dest
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_COMMIT],
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        print(f"no git history with {BASELINE_COMMIT}: the fixed reference figures are the "
              "baseline")
        return None
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--baseline-tree", default=None,
                    help=f"a checkout of the baseline commit {BASELINE_COMMIT}, measured "
                         "alongside (default: unpacked from git into build/)")
    ap.add_argument("--quick", action="store_true", help="hot path and start-up only")
    args = ap.parse_args(argv)
    base = Path(args.baseline_tree) if args.baseline_tree else baseline_tree()
    base = base if base and (base / "workbench" / "__init__.py").exists() and \
        base.resolve() != ROOT else None
    rows = hot_rows(args.events, base) + startup_rows()
    if not args.quick:
        rows += record_rows("malicious-accept", 2000.0)
        rows += user_wait_rows() + dask_rows() + scaling_rows()
    rows += collapse_rows()
    m = machine()
    width = max(len(r["target"]) for r in rows)
    for r in rows:
        print(f"{r['target']:<{width}}  {str(r['measured']):>10}  {r['threshold']:>8}  "
              f"{'pass' if r['pass'] else 'FAIL'}  {r['note']}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = m["when"].replace(":", "").replace("-", "")[:15]
    doc = {"machine": m, "rows": rows}
    (out / f"bench-{stamp}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "latest.md").write_text(markdown(rows, m))
    print(f"wrote {out / f'bench-{stamp}.json'} and latest.md")
    if args.quick:
        print(f"{README.relative_to(ROOT)} not updated (--quick measures part of the table)")
    else:
        write_readme(markdown(rows, m))
        print(f"wrote the table into {README.relative_to(ROOT)}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
