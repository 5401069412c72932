"""Lock invariants of the TDX module model over random interleavings (Hypothesis).

A random schedule of host SEAMCALLs (AUG, SEPT.ADD, BLOCK, REMOVE, TRACK, PAGE.ADD, WBINVD)
and vCPU scripts (VP.ENTER, TD exits with or without a counted EPT violation, ACCEPT at
4 KB/2 MB/1 GB, ATTR.WR, IPIs) runs in one SimPy environment on a few GPAs, with random
module options and S-EPT start state. After every ``env.step()`` the test checks:

* no lock ever has two exclusive holders, or a shared and an exclusive holder together;
  checked against an independent ledger kept by wrapping every try_acquire / release
  (the model's own fields must equal the ledger, and a failed try must take nothing);
* the S-EPT tree is never held exclusively by a vCPU that is in the TD;
* the epoch refcounts equal the vCPUs in the TD, per parity;

and at the end: every call returned exactly once and recorded exactly one row whose status
matches what it returned, and every lock is free once every caller has finished.
"""
from __future__ import annotations

import contextlib
import math
from collections import Counter
from unittest import mock

import simpy
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from workbench.core.config import ModuleOptions, load_calibration
from workbench.model.locks import Mode, SeptEntryLock, SharexHpLock, SharexLock
from workbench.model.module import TdxModule
from workbench.model.sept import LEVEL_1G, LEVEL_2M, LEVEL_4K, LEVEL_512G, State
from workbench.core.records import Recorder
from workbench.core.rng import stream
from workbench.core.tdx_errno import (
    TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, TDX_SUCCESS, decode, status_class,
)

CAL = load_calibration()[0]
MB2 = 0x20_0000
REGIONS = (3 * MB2, 4 * MB2)
GPAS = tuple(r + k * 0x1000 for r in REGIONS for k in range(3))
RIPS = (0x1000, 0x2000)
N_VCPUS = 3

# ------------------------------------------------------------------------ ledger
_depth = 0


class Ledger:
    """Who holds what, kept outside the model from the try/release calls themselves."""

    def __init__(self):
        self.ex: dict[int, object] = {}
        self.sh: dict[int, Counter] = {}
        self.violations: list[str] = []

    def granted(self, lock, owner, mode):
        k = id(lock)
        ex, sh = self.ex.get(k), self.sh.get(k) or Counter()
        if mode is Mode.EXCLUSIVE:
            if ex is not None or +sh:
                self.violations.append(f"{lock.name}: exclusive to {owner} while held "
                                       f"ex={ex} sh={dict(+sh)}")
            self.ex[k] = owner
        else:
            if ex is not None:
                self.violations.append(f"{lock.name}: shared to {owner} while {ex} holds "
                                       "it exclusively")
            self.sh.setdefault(k, Counter())[owner] += 1

    def released(self, lock, owner, mode):
        k = id(lock)
        if mode is Mode.EXCLUSIVE:
            if self.ex.get(k) != owner:
                self.violations.append(f"{lock.name}: {owner} releases exclusive it lacks")
            self.ex.pop(k, None)
        else:
            c = self.sh.get(k) or Counter()
            if c[owner] <= 0:
                self.violations.append(f"{lock.name}: {owner} releases shared it lacks")
            c[owner] -= 1
            if c[owner] <= 0:
                del c[owner]

    def matches(self, lock) -> bool:
        k = id(lock)
        return (lock.exclusive_owner == self.ex.get(k)
                and dict(lock.shared_owners) == dict(+(self.sh.get(k) or Counter())))

    def empty(self) -> bool:
        return all(v is None for v in self.ex.values()) and all(not +c for c in self.sh.values())


@contextlib.contextmanager
def instrumented(ledger: Ledger):
    """Wrap try_acquire/release of every lock class (outermost call only)."""
    def wrap_try(orig):
        def try_acquire(self, owner, mode=Mode.EXCLUSIVE, side=None):
            global _depth
            outer = _depth == 0
            before = (self.exclusive_owner, dict(self.shared_owners))
            _depth += 1
            try:
                stt = orig(self, owner, mode) if side is None else orig(self, owner, mode, side)
            finally:
                _depth -= 1
            if outer:
                if stt == TDX_SUCCESS:
                    ledger.granted(self, owner, mode)
                elif (self.exclusive_owner, dict(self.shared_owners)) != before:
                    ledger.violations.append(f"{self.name}: failed try by {owner} changed "
                                             "the holders")
            return stt
        return try_acquire

    def wrap_release(orig):
        def release(self, owner, mode=Mode.EXCLUSIVE):
            global _depth
            outer = _depth == 0
            _depth += 1
            try:
                orig(self, owner, mode)
            finally:
                _depth -= 1
            if outer:
                ledger.released(self, owner, mode)
        return release

    with contextlib.ExitStack() as stack:
        for cls in (SharexLock, SharexHpLock, SeptEntryLock):
            if "try_acquire" in cls.__dict__:
                stack.enter_context(mock.patch.object(
                    cls, "try_acquire", wrap_try(cls.__dict__["try_acquire"])))
            if "release" in cls.__dict__:
                stack.enter_context(mock.patch.object(
                    cls, "release", wrap_release(cls.__dict__["release"])))
        yield


# ------------------------------------------------------------------------ strategies
times = st.floats(min_value=0.0, max_value=25.0, allow_nan=False, allow_infinity=False)
gpa_i = st.integers(0, len(GPAS) - 1)

host_action = st.one_of(
    st.tuples(times, st.just("aug"), gpa_i),
    st.tuples(times, st.just("sept_add"), st.integers(0, len(REGIONS) - 1)),
    st.tuples(times, st.just("block"), gpa_i),
    st.tuples(times, st.just("remove"), gpa_i),
    st.tuples(times, st.just("track"), st.just(0)),
    st.tuples(times, st.just("page_add"), gpa_i),
    st.tuples(times, st.just("wbinvd"), gpa_i),
    st.tuples(times, st.just("ipi"), st.integers(0, N_VCPUS - 1)),
)

gaps = st.floats(min_value=0.0, max_value=3.0, allow_nan=False, allow_infinity=False)
vcpu_action = st.one_of(
    st.tuples(gaps, st.just("enter"), st.sampled_from(RIPS)),
    st.tuples(gaps, st.just("exit_epf"), st.tuples(st.sampled_from(RIPS), gpa_i)),
    st.tuples(gaps, st.just("exit"), st.sampled_from(RIPS)),
    st.tuples(gaps, st.just("accept"), st.tuples(gpa_i, st.sampled_from(
        (LEVEL_4K, LEVEL_4K, LEVEL_2M, LEVEL_1G)))),
    st.tuples(gaps, st.just("attr"), gpa_i),
)

region_state = st.sampled_from(("tables", "tables", "tables", "free", "leaf2m_pending"))
leaf_state = st.sampled_from((State.FREE, State.PENDING, State.MAPPED, State.BLOCKED))

options = st.builds(
    ModuleOptions,
    host_priority=st.booleans(),
    accept_locks_not_present=st.booleans(),
    zero_step_threshold=st.integers(0, 3),
    epf_gpa_list_size=st.integers(1, 4),
)


# ------------------------------------------------------------------------ the run
def build(opts, jitter, seed, regions, leaves):
    cal = CAL.model_copy(update={"jitter_cv": jitter})
    env, rec = simpy.Environment(), Recorder()
    m = TdxModule(env, cal, opts, rec, stream(seed, "lock_invariants"))
    for region, kind in zip(REGIONS, regions):
        for lvl in (LEVEL_512G, LEVEL_1G):
            m.sept.entry(region, lvl).state = State.NON_LEAF
        if kind == "tables":
            m.sept.entry(region, LEVEL_2M).state = State.NON_LEAF
            for gpa, stt in zip(GPAS, leaves):
                if region <= gpa < region + MB2:
                    e = m.sept.entry(gpa, LEVEL_4K)
                    e.state = stt
                    e.bepoch = 0 if stt is State.BLOCKED else -1
        elif kind == "leaf2m_pending":
            m.sept.entry(region, LEVEL_2M).state = State.PENDING
    return env, rec, m


def expected_row(returned: int, recorded: int) -> bool:
    """The TDCALL dispatcher may report an HP-busy (recorded) to the guest as plain BUSY."""
    if returned == recorded:
        return True
    return (status_class(recorded) == TDX_OPERAND_BUSY_HOST_PRIORITY
            and returned == TDX_OPERAND_BUSY | (recorded & 0xFFFF_FFFF))


def run_schedule(opts, jitter, seed, regions, leaves, host, scripts):
    """Run one schedule, checking the invariants after every event; raise on a breach."""
    env, rec, m = build(opts, jitter, seed, regions, leaves)
    vcpus = [m.add_vcpu(f"v{i}") for i in range(N_VCPUS)]
    ledger = Ledger()
    issued: list[tuple[str, str, int]] = []     # (caller, leaf, returned status), per return
    started = Counter()
    entering: set[str] = set()

    def host_call(i, t, kind, arg):
        yield env.timeout(t)
        caller = f"h{i}"
        if kind == "ipi":
            m.post_interrupt(vcpus[arg])
            return
        leaf, gen = {
            "aug": lambda: ("TDH.MEM.PAGE.AUG", m.tdh_mem_page_aug(caller, GPAS[arg])),
            "sept_add": lambda: ("TDH.MEM.SEPT.ADD",
                                 m.tdh_mem_sept_add(caller, REGIONS[arg], LEVEL_2M)),
            "block": lambda: ("TDH.MEM.RANGE.BLOCK", m.tdh_mem_range_block(caller, GPAS[arg])),
            "remove": lambda: ("TDH.MEM.PAGE.REMOVE",
                               m.tdh_mem_page_remove(caller, GPAS[arg])),
            "track": lambda: ("TDH.MEM.TRACK", m.tdh_mem_track(caller)),
            "page_add": lambda: ("TDH.MEM.PAGE.ADD", m.tdh_mem_page_add(caller, GPAS[arg])),
            "wbinvd": lambda: ("TDH.PHYMEM.PAGE.WBINVD",
                               m.tdh_phymem_page_wbinvd(caller, GPAS[arg])),
        }[kind]()
        started[caller] += 1
        stt = yield from gen
        issued.append((caller, leaf, stt))

    def tdcall(v, leaf, gen):
        started[v.name] += 1
        stt, exit_status = yield from gen
        issued.append((v.name, leaf, stt))
        return exit_status

    def vcpu_proc(v, script):
        rip = RIPS[0]
        for gap, kind, arg in script:
            yield env.timeout(gap)
            if kind == "enter":
                if v.in_td:
                    continue
                rip = arg
                started[v.name] += 1
                entering.add(v.name)
                stt, _gpa = yield from m.tdh_vp_enter(v, rip)
                entering.discard(v.name)
                issued.append((v.name, "TDH.VP.ENTER", stt))
                assert v.in_td == (stt == TDX_SUCCESS)
            elif not v.in_td:
                continue
            elif kind in ("exit", "exit_epf"):
                exit_rip, gpa = (arg[0], GPAS[arg[1]]) if kind == "exit_epf" else (arg, None)
                yield from m.td_exit(v, exit_rip, gpa)
            elif kind == "accept":
                gpa, level = GPAS[arg[0]], arg[1]
                if level == LEVEL_2M:
                    gpa -= gpa % MB2
                elif level == LEVEL_1G:
                    gpa = 0
                ex = yield from tdcall(v, "TDG.MEM.PAGE.ACCEPT",
                                       m.tdg_mem_page_accept(v, rip, gpa, level))
                if ex is not None:                      # a TD exit to the host
                    yield from m.td_exit(v, rip, None)
            elif kind == "attr":
                yield from tdcall(v, "TDG.MEM.PAGE.ATTR.WR",
                                  m.tdg_mem_page_attr_wr(v, rip, GPAS[arg]))
        if v.in_td:
            yield from m.td_exit(v, rip, None)

    def check_step():
        assert not ledger.violations, ledger.violations
        for lock in m.locks():
            assert not (lock.exclusive_owner is not None and lock.shared_owners), lock.name
            assert ledger.matches(lock), (lock.name, lock.exclusive_owner,
                                          dict(lock.shared_owners))
            assert all(n > 0 for n in lock.shared_owners.values()), lock.name
        owner = m.tree_lock.exclusive_owner
        if owner in m.vcpus:
            assert not m.vcpus[owner].in_td, f"tree held by {owner} while it runs"
        # a vCPU holds one reference from the middle of its VP.ENTER until its TD exit
        inside = Counter(v.epoch_parity for v in vcpus if v.in_td)
        for p in (0, 1):
            assert inside[p] <= m.epoch_refcount[p] <= inside[p] + len(entering)
        assert sum(m.epoch_refcount) <= sum(inside.values()) + len(entering)

    with instrumented(ledger):
        for i, (t, kind, arg) in enumerate(host):
            env.process(host_call(i, t, kind, arg))
        procs = []
        for v, script in zip(vcpus, scripts):
            v.proc = env.process(vcpu_proc(v, script))
            procs.append(v.proc)
        check_step()
        steps = 0
        while env.peek() != math.inf:
            env.step()
            steps += 1
            check_step()
            assert steps < 100_000

    assert all(p.processed and p.ok for p in procs)
    # every attempt returned exactly once and recorded exactly one matching row
    assert sum(started.values()) == len(issued) == len(rec.calls)
    for caller in started:
        mine = [(leaf, stt) for c, leaf, stt in issued if c == caller]
        recorded = [(r[2], r[5]) for r in rec.calls if r[3] == caller]
        assert len(mine) == len(recorded) == started[caller], caller
        for (leaf, ret), (rleaf, rst) in zip(mine, recorded):
            assert leaf == rleaf and expected_row(ret, rst), (caller, leaf, hex(ret), hex(rst))
    assert {r[3] for r in rec.calls} <= set(started)
    for r in rec.calls:
        assert r[0] <= r[1]
    # everyone finished: every lock is free, no epoch reference is left
    assert all(not v.in_td for v in vcpus)
    assert all(lock.is_free() for lock in m.locks()), [
        lock.name for lock in m.locks() if not lock.is_free()]
    assert ledger.empty()
    assert m.epoch_refcount == [0, 0]
    return rec, vcpus


def note_events(rec, vcpus) -> None:
    """What an example exercised (``pytest --hypothesis-show-statistics``)."""
    for r in rec.calls:
        if r[5] >> 63:
            event(f"{r[2]} {'/'.join(x for x in decode(r[5]) if x)}")
    if any(v.armings for v in vcpus):
        event("zero-step armed")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(opts=options,
       jitter=st.sampled_from((0.0, 0.1)),
       seed=st.integers(0, 2**16),
       regions=st.tuples(region_state, region_state),
       leaves=st.lists(leaf_state, min_size=len(GPAS), max_size=len(GPAS)),
       host=st.lists(host_action, max_size=24),
       scripts=st.lists(st.lists(vcpu_action, max_size=20), min_size=N_VCPUS,
                        max_size=N_VCPUS))
def test_lock_invariants_hold_over_random_interleavings(opts, jitter, seed, regions, leaves,
                                                         host, scripts):
    note_events(*run_schedule(opts, jitter, seed, regions, leaves, host, scripts))


HOST_KINDS = ("aug", "aug", "sept_add", "block", "block", "remove", "track", "track",
              "page_add", "wbinvd", "ipi")
VCPU_KINDS = ("enter", "enter", "enter", "exit_epf", "exit_epf", "exit", "accept", "accept",
              "attr")


def dense_schedule(seed: int, n_host: int, n_vcpu: int, window_us: float):
    """A crowded schedule drawn from one explicit, seeded numpy stream: many calls packed
    into a few microseconds, so the try-locks really collide."""
    rng = stream(seed, "dense_schedule")
    host = []
    for _ in range(n_host):
        kind = HOST_KINDS[rng.integers(len(HOST_KINDS))]
        arg = {"sept_add": len(REGIONS), "track": 1, "ipi": N_VCPUS}.get(kind, len(GPAS))
        host.append((float(rng.uniform(0, window_us)), kind, int(rng.integers(arg))))
    scripts = []
    for _ in range(N_VCPUS):
        script = []
        for _ in range(n_vcpu):
            kind = VCPU_KINDS[rng.integers(len(VCPU_KINDS))]
            gap = float(rng.exponential(1.0))
            rip = RIPS[int(rng.random() < 0.2)]
            g = int(rng.integers(len(GPAS)))
            arg = {"enter": rip, "exit": rip, "exit_epf": (rip, g), "attr": g,
                   "accept": (g, (LEVEL_4K, LEVEL_4K, LEVEL_4K, LEVEL_2M,
                                  LEVEL_1G)[rng.integers(5)])}[kind]
            script.append((gap, kind, arg))
        scripts.append(script)
    return host, scripts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opts=options,
       jitter=st.sampled_from((0.0, 0.1)),
       seed=st.integers(0, 2**32 - 1),
       regions=st.tuples(region_state, region_state),
       leaves=st.lists(leaf_state, min_size=len(GPAS), max_size=len(GPAS)),
       n_host=st.integers(10, 60),
       n_vcpu=st.integers(5, 40),
       window_us=st.sampled_from((5.0, 15.0, 40.0)))
def test_lock_invariants_hold_over_dense_interleavings(opts, jitter, seed, regions, leaves,
                                                        n_host, n_vcpu, window_us):
    host, scripts = dense_schedule(seed, n_host, n_vcpu, window_us)
    note_events(*run_schedule(opts, jitter, seed, regions, leaves, host, scripts))


def test_ledger_catches_a_second_exclusive_holder():
    """The invariant machinery itself must be able to fail."""
    ledger = Ledger()
    lock = SharexLock("t", 0x92)
    with instrumented(ledger):
        assert lock.try_acquire("a", Mode.EXCLUSIVE) == TDX_SUCCESS
        lock.exclusive_owner = None                     # corrupt the lock by hand
        assert lock.try_acquire("b", Mode.EXCLUSIVE) == TDX_SUCCESS
    assert ledger.violations and "exclusive to b" in ledger.violations[0]
    ledger2 = Ledger()
    lock2 = SharexLock("t2", 0x92)
    with instrumented(ledger2):
        lock2.try_acquire("a", Mode.SHARED)
        lock2.shared_owners.clear()
        lock2.try_acquire("b", Mode.EXCLUSIVE)
        lock2.exclusive_owner = None
        lock2.try_acquire("c", Mode.SHARED)
    assert len(ledger2.violations) == 2
    assert "exclusive to b" in ledger2.violations[0] and "shared to c" in ledger2.violations[1]
