"""Layer 6: what one run reached, for the guided search and the coverage report.

A *state* is one BUSY a policy was asked about: ``(call, status, retry)``, the call that
met a held lock (``TDH.MEM.RANGE.BLOCK``), its status with the lock's operand
(``OPERAND_BUSY|RCX``) and which try of its operation it was (1: the first try). A run of a
retrying policy that reaches ``(TDH.MEM.PAGE.REMOVE, OPERAND_BUSY|SEPT_TREE, 3)`` met the
same held lock three times in one zap. *Features* add who held the lock (the holder's call),
so the guided search also tells apart a BLOCK that met an ACCEPT from one that met a
VP.ENTER under zero-step.

The holder of a lock a BUSY met is read off the run's calls: the call of another actor
under way during the BUSY call that takes the same lock (the same 4 KB entry for RCX, the
S-EPT tree, the TD epoch), the one that began first; how long it had held it is bounded by
the time from its start to the BUSY call's return, which the trace prints.
"""
from __future__ import annotations

from ..core.tdx_errno import (OPERAND_ID_RCX, OPERAND_ID_SEPT, OPERAND_ID_TD_EPOCH,
                              TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, decode,
                              status_class)

BUSY_CLASSES = (TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY)
EPOCH_USERS = ("TDH.VP.ENTER", "TDH.MEM.TRACK")


class Traced:
    """A policy that logs every decision (time, site, leaf, status, action) for the trace."""

    def __init__(self, policy, log, env_of):
        self._p, self._log, self._env = policy, log, env_of

    def __getattr__(self, name):
        return getattr(self._p, name)

    def on_busy(self, ctx, rng):
        action = self._p.on_busy(ctx, rng)
        self._log.append((self._env().now, ctx.site.value, ctx.leaf, ctx.status,
                          ctx.attempt, type(action).__name__))
        return action


def status_name(status: int) -> str:
    """``OPERAND_BUSY|RCX``; a fault's RET_PF_RETRY without a SEAMCALL (frozen SPTE, stale
    fault) has status 0."""
    if not status:
        return "RET_PF_RETRY"
    name, operand = decode(status)
    return name.removeprefix("TDX_") + (f"|{operand}" if operand else "")


def states(decisions) -> set:
    """``(call, status, retry)`` of every BUSY in a run's decision log
    (:class:`~workbench.racefinder.schedule.Outcome.decisions`)."""
    return {(leaf.replace(" ", "."), status_name(st), attempt)
            for _, _, leaf, st, attempt, _ in decisions}


def _takes(operand: int, busy_row, row) -> bool:
    """Does call ``row`` (of another actor) take the lock ``busy_row`` found held?"""
    leaf, gpa = row[2], row[4]
    if operand == OPERAND_ID_RCX:
        g = busy_row[4]
        return gpa >= 0 and g >= 0 and (gpa >> 12 == g >> 12 or gpa >> 21 == g >> 21
                                        and "2M" in leaf)
    if operand == OPERAND_ID_SEPT:
        return leaf.startswith("TDH.MEM") or leaf == "TDH.VP.ENTER"
    if operand == OPERAND_ID_TD_EPOCH:
        return leaf in EPOCH_USERS and leaf != busy_row[2]
    return True


def in_flight(td) -> list:
    """Call rows ``(t0, inf, leaf, actor, gpa, 0)`` of the module calls still under way
    when the run stopped (a run stops at the instant the TD fails, so the holder of the
    lock the last BUSY met is often one): read off each vCPU process's suspended
    generators, the innermost frame of a ``tdh_*`` or ``tdg_*`` call with its start ``t0``."""
    rows = []
    for v in td.vcpus:
        proc = getattr(v.tdv, "proc", None)
        g = getattr(proc, "_generator", None)
        while g is not None:
            code, frame = getattr(g, "gi_code", None), getattr(g, "gi_frame", None)
            if code is not None and frame is not None and code.co_name[:4] in ("tdh_", "tdg_") \
                    and "t0" in frame.f_locals:
                loc = frame.f_locals
                gpa = loc.get("gpa", -1)
                rows.append((loc["t0"], float("inf"), code.co_name.upper().replace("_", "."),
                             v.name, gpa if isinstance(gpa, int) else -1, 0))
                break
            g = getattr(g, "gi_yieldfrom", None)
    return rows


def holders(calls, under_way=()) -> dict:
    """For each BUSY call (its index in ``calls``): ``(holder actor, holder call, us)``:
    the call of another actor under way during the BUSY call that takes the same lock (the
    earliest begun), and how long it had been under way when the BUSY call returned; no
    entry when no other call was under way (a lock held outside a call,
    e.g. a module-internal holder). ``under_way``: rows of calls not finished
    (:func:`in_flight`)."""
    calls_all = list(calls) + list(under_way)
    order = sorted(range(len(calls_all)), key=lambda i: calls_all[i][0])
    out = {}
    for i, row in enumerate(calls):
        st = row[5]
        if status_class(st) not in BUSY_CLASSES:
            continue
        t0, t1, operand = row[0], row[1], st & 0xFFFF_FFFF
        for j in order:
            other = calls_all[j]
            if other[0] >= t1:
                break
            if other[1] > t0 and other[3] != row[3] and status_class(other[5]) not in BUSY_CLASSES \
                    and _takes(operand, row, other):
                out[i] = (other[3], other[2], t1 - other[0])
                break
    return out


def features(td, decisions) -> set:
    """The states of a run plus, per BUSY call, which call held the lock it met."""
    calls = td.rec.calls
    feats = {("state", *s) for s in states(decisions)}
    feats |= {("deep", site, attempt) for _, site, _, _, attempt, _ in decisions}
    for i, (actor, leaf, _) in holders(calls, in_flight(td)).items():
        feats.add(("held", calls[i][2], status_name(calls[i][5]), leaf))
    return feats


def deepest(features) -> dict:
    """Per call site: the most BUSY tries one operation reached."""
    out: dict = {}
    for f in features:
        if f[0] == "deep":
            out[f[1]] = max(out.get(f[1], 0), f[2])
    return out


def reached_states(features) -> set:
    return {f[1:] for f in features if f[0] == "state"}


def summary(reached: set) -> dict:
    """Per ``(call, status)``: the highest retry count reached."""
    out: dict = {}
    for call, status, retry in reached:
        out[(call, status)] = max(out.get((call, status), 0), retry)
    return out


def full_size_states(scenario, policy, *, seeds=(0, 1, 2), horizon_us=None) -> set:
    """The states the full-size scenario ``scenario`` reaches under ``policy`` in ordinary
    seeded runs (numpy streams, no choice sequence)."""
    from dataclasses import replace

    from ..core.config import load_calibration
    from ..core.scenarios import load_scenario
    from ..model.td import Td
    from ..policies import resolve_policy

    cfg = load_scenario(scenario, {"horizon_us": horizon_us} if horizon_us else None)
    cal, _ = load_calibration(cfg.calibration, cfg.timings)
    out: set = set()
    for seed in seeds:
        log: list = []
        holder: dict = {}
        pset = resolve_policy(policy)
        pset = replace(pset, **{s: Traced(getattr(pset, s), log, lambda: holder["env"])
                                for s in ("fault", "zap", "vp_enter", "accept")})
        td = Td(cfg, pset, cal, seed, 0)
        holder["env"] = td.env
        td.run()
        out |= states(log)
    return out


def family(small: str) -> str:
    """The full-size scenario a small one is cut from (``zero-step-small`` -> ``zero-step``)."""
    return small.removesuffix("-small")


def coverage_report(features, small: str, policy, seeds=(0, 1, 2)) -> str:
    """The states the search reached on ``small`` against those of ``seeds`` ordinary runs
    of the full-size scenario of its family under the same policy, per (call, status): the
    most tries of one operation that met that status."""
    from ..core.scenarios import load_scenario
    name = load_scenario(small).name
    full_name = family(name)
    small_states = reached_states(features)
    try:
        full = full_size_states(full_name, policy, seeds=seeds)
    except Exception as err:       # no full-size scenario of that name: say so
        full, full_name = set(), f"{full_name} (not run: {type(err).__name__})"
    a, b = summary(small_states), summary(full)
    out = [f"coverage: states (call x status x retry) reached on {name} by the search, "
           f"against {len(seeds)} ordinary runs of {full_name}",
           f"{'call':<22} {'status':<30} {'max retry small':>15} {'full-size':>9}"]
    for key in sorted(set(a) | set(b)):
        out.append(f"{key[0]:<22} {key[1]:<30} {a.get(key, '-'):>15} {b.get(key, '-'):>9}")
    both = small_states & full
    out.append(f"states: {len(small_states)} small, {len(full)} full-size, {len(both)} in "
               f"both; {len(full - small_states)} full-size states not reached small")
    deep = deepest(features)
    if deep:
        out.append("most BUSY in one operation (small): " + ", ".join(
            f"{s} {n}" for s, n in sorted(deep.items())))
    return "\n".join(out)
