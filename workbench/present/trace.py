"""One run as Chrome trace-event JSON (``workbench trace``), which Perfetto
(ui.perfetto.dev, offline too) and chrome://tracing open: a track per vCPU and host
thread, every SEAMCALL/TDCALL a slice named by its leaf (BUSY replies named so, with the
operand), and the operations (faults, zaps, conversions) on a second process."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.safeio import ConfigError, out_path, short

BUSY = ("TDX_OPERAND_BUSY", "TDX_OPERAND_BUSY_HOST_PRIORITY")
TOOL = "tdx-contention-workbench trace"


def _tids(actors) -> dict:
    from .plots.timeline import _actor_order
    return {a: i + 1 for i, a in enumerate(_actor_order(actors))}


def trace_events(run) -> dict:
    """The trace of a :class:`~workbench.experiments.RunResult` (times in µs, as Chrome's
    ``ts``/``dur`` expect)."""
    calls, ops = run.calls, run.ops
    tids = _tids([*calls["caller"], *ops["actor"]])
    ev = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "SEAMCALL / TDCALL"}},
          {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "operations"}}]
    for pid in (1, 2):
        ev += [{"ph": "M", "name": "thread_name", "pid": pid, "tid": t, "args": {"name": a}}
               for a, t in tids.items()]
    for c in calls.itertuples(index=False):
        busy = c.status_name in BUSY
        ev.append({"ph": "X", "pid": 1, "tid": tids[c.caller], "ts": float(c.t_start_us),
                   "dur": float(c.t_end_us - c.t_start_us), "cat": "busy" if busy else "call",
                   "name": f"{c.leaf} BUSY({c.operand})" if busy else c.leaf,
                   "args": {"status": c.status_name, "operand": c.operand, "gpa": int(c.gpa)}})
    for o in ops.itertuples(index=False):
        ev.append({"ph": "X", "pid": 2, "tid": tids[o.actor], "ts": float(o.t_start_us),
                   "dur": float(o.t_end_us - o.t_start_us), "cat": o.op, "name": o.op,
                   "args": {"outcome": o.outcome, "attempts": int(o.attempts),
                            "busy": int(o.busy), "gpa": int(o.gpa)}})
    m = run.manifest
    return {"traceEvents": ev, "displayTimeUnit": "ns",
            "otherData": {"tool": TOOL, "scenario": (m.get("scenario") or {}).get("name"),
                          "policy": (m.get("policy") or {}).get("preset"),
                          "seed": m.get("seed"), "replication": m.get("replication"),
                          "version": m.get("version"), "git_commit": m.get("git_commit")}}


def check_trace_out(path) -> Path:
    """Refuse, before any work, a path that is a folder or a file this tool did not write."""
    p = out_path(path)
    if p.is_dir():
        raise ConfigError(f"--out {short(str(p), 80)}: is a folder; give a .json file")
    if p.exists():
        try:
            ours = json.loads(p.read_text()[:10_000_000]).get("otherData", {}).get("tool") == TOOL
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise ConfigError(f"--out {short(str(p), 80)}: exists and is not a trace this "
                              "tool wrote; choose another file")
    return p


def write_trace(run, path) -> Path:
    import pandas as pd
    if not all(isinstance(getattr(run, t, None), pd.DataFrame) for t in ("calls", "ops")):
        raise ConfigError(f"write_trace: expected a run's result (workbench.run or "
                          f"RunResult.load), not {short(run)}")
    p = check_trace_out(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(trace_events(run)))
        tmp.replace(p)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"--out {short(str(p), 80)}: cannot write ({err.strerror})") from None
    return p
