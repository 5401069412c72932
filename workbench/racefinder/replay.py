"""Layer 6: a counterexample as a numbered trace and as a replay file.

A replay file (JSON) holds everything that determines the run: the scenario's full
configuration, the policy set's spec, the calibration's values, the oracles and their
bounds, and the run's choice sequence; plus what the run gave (the failure, its
lock-acquisition signature, its calls), which :func:`replay` checks bit for bit.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..core.version import __version__
from ..core.config import Calibration, ConfigError, ScenarioConfig, validate
from ..core.tdx_errno import decode

FORMAT = "workbench-replay/1"
LOCK_OF_OPERAND = {"RCX": "S-EPT entry", "SEPT_TREE": "S-EPT tree", "TD_EPOCH": "TD epoch",
                   "TDR": "TDR", "TDVPR": "TDVPR", "OP_STATE": "op_state"}


def trace_rows(outcome) -> list[tuple]:
    """``(step, t_us, actor, call, gpa, lock, status, action, held_by)`` of a kept run, up
    to its end: every module call (at its SEAMRET/TDCALL return; ``lock``: the one a BUSY
    names; ``held_by``: for a BUSY, who held that lock, in which call, and how long that
    call had been under way when the BUSY call returned, :func:`workbench.racefinder.reach.holders`),
    the policy's decision on each BUSY, and the stop."""
    from .reach import holders, in_flight
    td = outcome.td
    decisions = list(outcome.decisions)
    held = holders(td.rec.calls, in_flight(td))
    rows = []
    order = sorted(range(len(td.rec.calls)), key=lambda i: (td.rec.calls[i][1], td.rec.calls[i][0]))
    for k in order:
        t0, t1, leaf, caller, gpa, st = td.rec.calls[k]
        name, operand = decode(st)
        action = ""
        for j, (t, site, dleaf, dst, attempt, act) in enumerate(decisions):
            if dst == st and t >= t1 and _same_leaf(dleaf, leaf):
                action = f"{site}: {act}"
                del decisions[j]
                break
        h = held.get(k)
        rows.append([t1, caller, leaf, gpa, LOCK_OF_OPERAND.get(operand, operand),
                     name.removeprefix("TDX_"), action,
                     f"{h[0]} {h[1]}, under way {h[2]:.3f} us" if h else ""])
    for t, site, leaf, st, attempt, act in decisions:
        rows.append([t, site, f"(policy on {leaf})", None, "", decode(st)[0], act, ""])
    for t, what, actor, detail in td.rec.events:
        rows.append([t, actor, what.upper(), None, "", "", detail, ""])
    rows.sort(key=lambda r: r[0])
    return [(i + 1, *r) for i, r in enumerate(rows)]


def trace_table(outcome):
    """The trace as a DataFrame (one row per step, with each call's start time) for
    :func:`workbench.plots.counterexample`."""
    import pandas as pd
    starts = {}
    for t0, t1, leaf, caller, gpa, st in outcome.td.rec.calls:
        starts.setdefault((t1, caller, leaf), t0)
    rows = [(step, starts.get((t, actor, call), t), t, actor, call, gpa, lock, status, action,
             held)
            for step, t, actor, call, gpa, lock, status, action, held in trace_rows(outcome)]
    return pd.DataFrame(rows, columns=["step", "t_start_us", "t_end_us", "actor", "call",
                                       "gpa", "lock", "status", "action", "held_by"])


def _same_leaf(decided: str, called: str) -> bool:
    return decided == called or decided.replace(" ", ".") == called or called in decided


def format_trace(outcome, max_steps: int = 60) -> str:
    rows = trace_rows(outcome)
    out = [f"{'#':>4} {'t_us':>10}  {'actor':<10} {'call':<24} {'gpa':>9}  {'lock':<11} "
           f"{'status':<22} action"]
    if len(rows) > max_steps:
        out.append(f"     ... {len(rows) - max_steps} earlier steps (the whole trace: "
                   "workbench replay FILE --steps 0)")
        rows = rows[-max_steps:]
    for step, t, actor, call, gpa, lock, status, action, held in rows:
        g = f"{gpa:#x}" if gpa is not None and gpa >= 0 else ""
        out.append(f"{step:>4} {t:>10.3f}  {actor:<10} {call:<24} {g:>9}  {lock:<11} "
                   f"{status:<22} {action}" + (f"  [held by {held}]" if held else ""))
    return "\n".join(out)


def save(path, target, outcome) -> Path:
    """Write a replay file for ``outcome`` (a run of ``target``)."""
    from ..core.safeio import check_path
    p = check_path(path, "replay file")
    if p.exists() and not _is_replay(p):
        raise ConfigError(f"{p} exists and is not a replay file: not overwritten")
    doc = {"format": FORMAT, "version": __version__,
           "scenario": target.cfg.model_dump(mode="json"), "policy": {k: v for k, v in target.pset.spec().items() if k != "preset"},
           "policy_name": target.pset.name, "calibration": target.cal.model_dump(mode="json"),
           "oracles": [n for n in target.oracles if n != "predicate"],
           "params": target.params, "until_us": outcome.stopped_at * 1.000001,
           "choices": list(outcome.choices),
           "expect": {"failure": list(outcome.failure) if outcome.failure else None,
                      "signature": outcome.signature, "calls_hash": outcome.calls_hash,
                      "steps": outcome.steps,
                      "stopped_at_us": outcome.stopped_at}}
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=1))
    return p


def _is_replay(p: Path) -> bool:
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load(path) -> tuple:
    """``(target, choices, until_us, expect)`` of a replay file; a clear error if it is not
    one."""
    from .schedule import Target
    from .oracles import check_oracles
    from ..policies import resolve_policy
    from ..core.safeio import read_text_file
    text = read_text_file(path, "replay file")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"replay file {path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"replay file {path}: not a {FORMAT} file")
    try:
        cfg = validate(ScenarioConfig, doc["scenario"], "replay file: scenario")
        cal = validate(Calibration, doc["calibration"], "replay file: calibration")
        pset = resolve_policy(doc["policy"], imports=False)
        pset = replace(pset, name=str(doc.get("policy_name", pset.name)))
        choices = [int(c) for c in doc["choices"]]
        target = Target(cfg, pset, cal, check_oracles(doc["oracles"]),
                        {k: float(v) for k, v in doc["params"].items()})
        until, expect = float(doc["until_us"]), doc["expect"]
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"replay file {path}: missing or bad field ({e})") from None
    if any(not 0 <= c < 2**16 for c in choices):
        raise ConfigError(f"replay file {path}: a choice outside [0, 65536)")
    return target, choices, until, expect


def replay(path):
    """Rerun a replay file: ``(outcome, identical)``, identical when the run makes the
    recorded choices and gives the recorded failure and calls (every status and time)."""
    from .schedule import prefix_source, run_schedule
    target, choices, until, expect = load(path)
    o = run_schedule(target, prefix_source(choices), until=until, keep=True)
    same = (list(o.failure) if o.failure else None) == expect.get("failure") \
        and o.signature == expect.get("signature") and o.steps == expect.get("steps") \
        and o.calls_hash == expect.get("calls_hash") \
        and o.choices == choices
    o.target = target
    return o, same
