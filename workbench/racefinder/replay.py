"""Layer 6: a counterexample as a numbered trace and as a replay file.

A replay file (JSON) holds everything that determines the run: the scenario's full
configuration, the policy set's spec, the calibration's values, the oracles and their
bounds, and the run's choice sequence; plus what the run gave (the failure, its
lock-acquisition signature, its calls), which :func:`replay` checks bit for bit.
"""
from __future__ import annotations

import json
import math
import os
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


MAX_REPLAY_BYTES = 1 << 20     # what save() writes at most and load() reads at most (1 MB)


def predicate_name(predicate) -> str | None:
    """``MODULE:FUNCTION`` of a predicate defined at a module's top level (what
    ``--predicate`` names), or None (a lambda, a closure: it cannot be named again)."""
    mod, name = getattr(predicate, "__module__", None), getattr(predicate, "__qualname__", "")
    if not mod or not name.isidentifier():
        return None
    return f"{mod}:{name}"


def check_out(path) -> Path:
    """Where a replay file may be written: a new path, or a replay file this tool wrote
    (never a link, never another file). Checked before the search."""
    from ..core.safeio import check_path, is_link
    p = check_path(path, "replay file")
    if is_link(p):
        raise ConfigError(f"--out {p}: is a symbolic link; not followed or replaced")
    if p.exists() and not _is_replay(p):
        raise ConfigError(f"--out {p}: exists and is not a replay file: not overwritten "
                          "(choose a new name)")
    if not p.parent.is_dir():
        raise ConfigError(f"--out {p}: no folder {p.parent}")
    return p


def save(path, target, outcome) -> Path:
    """Write a replay file for ``outcome`` (a run of ``target``), whole or not at all, at
    most :data:`MAX_REPLAY_BYTES`. Measured samples are named relative to the replay
    file's folder (copy them beside it to share it); a predicate is named, never pickled."""
    from ..core.safeio import atomic_write, short
    p = check_out(path)
    cal = target.cal.model_dump(mode="json")
    folder = p.parent.resolve()
    cal["measured"] = {q: [os.path.relpath(f, folder) if Path(f).parent == folder
                           else Path(f).name, digest]
                       for q, (f, digest) in (target.cal.measured or {}).items()}
    doc = {"format": FORMAT, "version": __version__,
           "scenario": target.cfg.model_dump(mode="json"), "policy": {k: v for k, v in target.pset.spec().items() if k != "preset"},
           "policy_name": target.pset.name, "calibration": cal,
           "oracles": [n for n in target.oracles if n != "predicate"],
           "predicate": (predicate_name(target.predicate) or "<unnamed>")
           if target.predicate is not None else None,
           "params": target.params, "until_us": outcome.stopped_at * 1.000001,
           "choices": list(outcome.choices),
           "expect": {"failure": list(outcome.failure) if outcome.failure else None,
                      "signature": outcome.signature, "calls_hash": outcome.calls_hash,
                      "steps": outcome.steps,
                      "stopped_at_us": outcome.stopped_at}}
    text = json.dumps(doc, separators=(",", ":"))
    if len(text.encode()) > MAX_REPLAY_BYTES:
        raise ConfigError(f"--out {short(str(p), 80)}: the counterexample needs "
                          f"{len(text.encode()):,} bytes, above the {MAX_REPLAY_BYTES:,} a "
                          "replay file may hold (shorten horizon_us); nothing written")
    try:
        atomic_write(p, lambda t: t.write_text(text))
    except OSError as err:
        raise ConfigError(f"--out {short(str(p), 80)}: cannot write the replay file "
                          f"({err.strerror or type(err).__name__}); nothing written") from None
    return p


def _is_replay(p: Path) -> bool:
    from ..core.safeio import read_bytes
    try:
        return json.loads(read_bytes(p, "replay file", MAX_REPLAY_BYTES, follow=False)
                          ).get("format") == FORMAT
    except (ConfigError, ValueError, AttributeError, RecursionError):
        return False


def _measured(path, raw) -> dict:
    """A replay file's measured samples: files in its own folder, as the sha256 says."""
    from ..core.safeio import inside, short
    from ..core.samples import sha256
    if not isinstance(raw, dict):
        raise ConfigError(f"replay file {path}: calibration.measured must be a mapping")
    out = {}
    for q, entry in raw.items():
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2
                and all(isinstance(x, str) for x in entry)):
            raise ConfigError(f"replay file {path}: calibration.measured.{short(q)}: expected "
                              "[samples file, sha256]")
        f = inside(Path(path).parent, entry[0], f"replay file: samples of {short(q)}")
        if not os.path.lexists(f):
            raise ConfigError(f"replay file {path}: needs the measured samples "
                              f"{short(entry[0], 80)} beside it (copy them into its folder)")
        if sha256(f) != entry[1]:
            raise ConfigError(f"replay file {path}: samples {short(entry[0])} are not the "
                              "ones the counterexample was found with (sha256 differs)")
        out[q] = (str(f.resolve()), entry[1])
    return out


def load(path, predicate=None) -> tuple:
    """``(target, choices, until_us, expect)`` of a replay file; a clear error if it is not
    one. A counterexample found by a predicate needs that predicate (``predicate``: the
    callable the user names; a replay file never imports code)."""
    from .schedule import Target
    from .oracles import check_oracles
    from ..policies import resolve_policy
    from ..core.safeio import read_text_file, short
    text = read_text_file(path, "replay file", MAX_REPLAY_BYTES)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"replay file {path}: not JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ConfigError(f"replay file {path}: not JSON (nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"replay file {path}: not a {FORMAT} file")
    wanted = doc.get("predicate")
    if wanted is not None:
        if predicate is None:
            raise ConfigError(f"replay file {path}: found with the predicate "
                              f"{short(str(wanted), 80)}; give it again (--predicate "
                              "MODULE:FUNCTION): a replay file never imports code")
        if predicate_name(predicate) != wanted:
            raise ConfigError(f"replay file {path}: found with the predicate "
                              f"{short(str(wanted), 80)}, not {predicate_name(predicate)}")
    try:
        raw_cal = dict(doc["calibration"])
        measured = _measured(path, raw_cal.pop("measured", {}) or {})
        cfg = validate(ScenarioConfig, doc["scenario"], "replay file: scenario")
        cal = validate(Calibration, raw_cal, "replay file: calibration")
        if measured:
            from ..core.samples import Measured
            cal = cal.model_copy(update={"measured": measured, **{
                q: Measured(getattr(cal, q), q) for q in measured}})
        pset = resolve_policy(doc["policy"], imports=False)
        pset = replace(pset, name=str(doc.get("policy_name", pset.name)))
        choices = [int(c) for c in doc["choices"]]
        oracles = check_oracles(doc["oracles"])
        if wanted is not None:
            oracles = tuple(oracles) + ("predicate",)
        params = {k: float(doc["params"][k]) for k in ("livelock_us", "starve_us")}
        if not all(math.isfinite(v) and v > 0 for v in params.values()):
            raise ValueError("params: livelock_us and starve_us must be positive numbers")
        target = Target(cfg, pset, cal, oracles, params, predicate)
        until, expect = float(doc["until_us"]), doc["expect"]
        if not isinstance(expect, dict) or not math.isfinite(until) or until <= 0:
            raise ValueError("expect must be a mapping and until_us a positive number")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"replay file {path}: missing or bad field ({short(str(e), 80)})"
                          ) from None
    if any(not 0 <= c < 2**16 for c in choices):
        raise ConfigError(f"replay file {path}: a choice outside [0, 65536)")
    from ..core.limits import check_config
    check_config(cfg)
    return target, choices, until, expect


def replay(path, predicate=None):
    """Rerun a replay file: ``(outcome, identical)``, identical when the run makes the
    recorded choices and gives the recorded failure and calls (every status and time).
    ``predicate``: the one the counterexample was found with, if any."""
    from .schedule import prefix_source, run_schedule
    target, choices, until, expect = load(path, predicate)
    o = run_schedule(target, prefix_source(choices), until=until, keep=True)
    same = (list(o.failure) if o.failure else None) == expect.get("failure") \
        and o.signature == expect.get("signature") and o.steps == expect.get("steps") \
        and o.calls_hash == expect.get("calls_hash") \
        and o.choices == choices
    o.target = target
    return o, same
