"""Layer 5: what the race finder (:mod:`workbench.explore`) calls a failure of one run.

Each oracle looks at a finished :class:`~workbench.model.td.Td` (its records, its module
state) and returns ``None`` or a one-line reason. They read the Recorder's tuples, not
DataFrames, so a schedule costs the run and little more; only a user predicate gets tables.
"""
from __future__ import annotations

from collections import Counter

from ..core.errors import ConfigError
from ..model.locks import SharexLock
from ..core.tdx_errno import (TDX_EPT_ENTRY_NOT_FREE, TDX_EPT_WALK_FAILED, TDX_EXIT_EPT_VIOLATION,
                        TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, decode, is_error,
                        status_class)

# Error statuses KVM expects and handles on its own: BUSY (the policies' business), a fault
# that finds the entry already made or the walk not there yet (another vCPU's fault won),
# and the TD exit of an ACCEPT or entry that ends in an EPT violation.
EXPECTED_CLASSES = frozenset(status_class(s) for s in (
    TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, TDX_EPT_ENTRY_NOT_FREE,
    TDX_EPT_WALK_FAILED, TDX_EXIT_EPT_VIOLATION))


def vm_bugged(td, p):
    return _stop(td, "vm_bugged")


def guest_panic(td, p):
    return _stop(td, "guest_panic")


def td_dead(td, p):
    return _stop(td, "vm_dead")


def _stop(td, reason):
    if td.stopped != reason:
        return None
    ev = next((e for e in td.rec.events if e[1] == reason), None)
    return f"{reason} at t={td.stopped_at:.3f} us" + (f" ({ev[2]}: {ev[3]})" if ev else "")


def error_status(td, p):
    """A host call returned an error KVM does not expect (e.g. TDX_TLB_TRACKING_NOT_DONE)."""
    for t0, t1, leaf, caller, gpa, st in td.rec.calls:
        if is_error(st) and status_class(st) not in EXPECTED_CLASSES and leaf.startswith("TDH"):
            return f"{leaf} by {caller} at t={t1:.3f} us returned {decode(st)[0]}"
    return None


def livelock(td, p):
    """Work pending and no operation completed usefully for ``livelock_us``."""
    span = p["livelock_us"]
    end = td.stopped_at if td.stopped else td.env.now
    done = sorted(o[4] for o in td.rec.ops if o[7] == "ok")
    last = 0.0
    for t in done + [end]:
        if t - last > span and _pending(td, last, t):
            return f"no operation completed between t={last:.3f} and t={t:.3f} us"
        last = max(last, t)
    return None


def _pending(td, a, b) -> bool:
    return any(o[3] < b and o[4] > a for o in td.rec.ops)


def starvation(td, p):
    """One operation waited longer than ``starve_us`` (finished or not)."""
    bound = p["starve_us"]
    for op, actor, gpa, t0, t1, attempts, busy, outcome in td.rec.ops:
        if t1 - t0 > bound:
            return f"{op} by {actor} at {gpa:#x} waited {t1 - t0:.1f} us ({outcome})"
    return None


def invariants(td, p):
    """The model's invariants: no two exclusive holders, no shared and exclusive holder
    together, the S-EPT tree not held by a vCPU in the TD, epoch refcounts equal to the
    vCPUs inside. Checked after every module call as the run goes (:func:`watch_invariants`)
    and at its end; the first break is reported with the call after which it held no more
    (tests/test_lock_invariants.py checks every SimPy step of the module alone)."""
    broke = getattr(td, "invariant_broke", None)
    if broke:
        step, t, why = broke
        return f"{why} (broken after module call {step}, t={t:.3f} us)"
    return _invariants_now(td)


def watch_invariants(td) -> None:
    """Check the invariants after each module call the run records; keep the first break
    in ``td.invariant_broke`` as (call number, time, reason)."""
    rec, record = td.rec, td.rec.call

    def call(t_start, t_end, leaf, caller, gpa, status):
        record(t_start, t_end, leaf, caller, gpa, status)
        if getattr(td, "invariant_broke", None) is None:
            why = _invariants_now(td, entries=False)
            if why:
                td.invariant_broke = (len(rec.calls), t_end, why)
    rec.call = call


def _invariants_now(td, entries: bool = True):
    """The first invariant that does not hold now, or None. ``entries=False`` leaves out
    the S-EPT entry locks (exclusive only: they cannot have shared holders), the check
    made after every call."""
    m = td.module
    locks = m.locks() if entries else (m.tdr, m.tree_lock, m.epoch_lock,
                                       *(v.tdvpr for v in m.vcpus.values()),
                                       *m.pamt_locks.values())
    for lock in locks:
        if isinstance(lock, SharexLock) and lock.exclusive_owner is not None \
                and lock.shared_owners:
            return f"{lock.name}: exclusive {lock.exclusive_owner} and shared holders together"
    owner = m.tree_lock.exclusive_owner
    if owner in m.vcpus and m.vcpus[owner].in_td and not td.stopped:
        return f"SEPT_TREE held exclusively by {owner} while it runs in the TD"
    inside = Counter(v.epoch_parity for v in m.vcpus.values() if v.in_td)
    for parity in (0, 1):
        if m.epoch_refcount[parity] < inside[parity]:
            return f"epoch refcount {m.epoch_refcount} below the vCPUs inside {dict(inside)}"
    return None


ORACLES = {"vm_bugged": vm_bugged, "guest_panic": guest_panic, "td_dead": td_dead,
           "error_status": error_status, "livelock": livelock, "starvation": starvation,
           "invariants": invariants}


def check_oracles(names) -> tuple[str, ...]:
    """The oracles named (None: all of them)."""
    names = tuple(ORACLES) if names is None else tuple(names)
    bad = [n for n in names if n not in ORACLES and n != "predicate"]
    if bad:
        raise ConfigError(f"unknown oracle {bad[0]!r} (known: {', '.join(ORACLES)}, predicate)")
    return names


def judge(td, names, params, predicate=None) -> tuple[str, str] | None:
    """The first oracle that fails this run: ``(name, reason)``, or None."""
    for n in names:
        if n == "predicate":
            continue
        why = ORACLES[n](td, params)
        if why:
            return n, why
    if predicate is not None:
        try:
            why = predicate(run_tables(td))
        except Exception as err:     # the user's code: any failure is one line
            name = getattr(predicate, "__qualname__", "predicate")
            raise ConfigError(f"predicate {name}: {type(err).__name__}: "
                              f"{str(err)[:120]}") from None
        if why:
            return "predicate", why if isinstance(why, str) else "the predicate holds"
    return None


def run_tables(td) -> dict:
    """The run's tables for a user predicate: calls, ops, events (DataFrames) and ``td``."""
    import pandas as pd

    from ..experiments.metrics import calls_table, ops_table
    return {"calls": calls_table(td.rec.calls, {}),
            "ops": ops_table(td.rec.ops, {}, {v.name: v.role for v in td.vcpus}),
            "events": pd.DataFrame(td.rec.events, columns=["t_us", "event", "actor", "detail"]),
            "td": td}
