"""The TDX module model driven directly, one small SimPy scenario per fact of domain.md
(§2-4, §8 facts 1-5 and 10, §9.1-9.5, §9.7). Jitter is off, so every time is exact.

Each test builds the S-EPT state it needs by hand, runs a few calls at chosen instants and
asserts exact 64-bit statuses, the rows of the calls table and the lock state.
"""
from __future__ import annotations

import pytest
import simpy

from workbench.core.config import ModuleOptions, load_calibration
from workbench.model.locks import Mode, SharexHpLock, SharexLock, SeptEntryLock, Side
from workbench.model.module import TdxModule
from workbench.model.sept import LEVEL_1G, LEVEL_2M, LEVEL_4K, LEVEL_512G, State
from workbench.core.records import Recorder
from workbench.core.rng import stream
from workbench.core.tdx_errno import (
    TDX_EXIT_EPT_VIOLATION, TDX_GPA_RANGE_NOT_BLOCKED,
    TDX_INTERRUPTED_RESUMABLE, TDX_OPERAND_BUSY,
    TDX_OPERAND_BUSY_HOST_PRIORITY, TDX_OPERAND_INVALID, TDX_PAGE_SIZE_MISMATCH,
    TDX_SUCCESS, TDX_TLB_TRACKING_NOT_DONE, decode, status_class,
    tdx_operand_busy,
)

# Jitter off, and no SEAM entry or exit around the locked sections, so each call takes its
# locks at the instant it starts and drops them when it returns, and a BUSY costs nothing:
# the lock facts alone. (tests/test_clock.py covers the entry and exit overheads.)
# The locked sections are fixed here (not the shipped defaults), so the instants below stay
# meaningful when the calibration changes.
CAL0 = load_calibration()[0].model_copy(update={
    "jitter_cv": 0.0, "seamcall_entry_us": 0.0, "seamcall_exit_us": 0.0,
    "tdcall_entry_us": 0.0, "tdcall_exit_us": 0.0,
    "sept_add_us": 3.0, "page_aug_us": 3.0, "range_block_us": 2.0, "page_remove_us": 2.0,
    "track_us": 0.75, "wbinvd_4k_us": 2.0, "vp_enter_us": 2.5, "td_exit_us": 2.5,
    "epoch_hold_us": 0.1, "accept_4k_us": 1.5, "accept_probe_us": 0.3, "attr_wr_us": 0.5})

BUSY_TREE = 0x8000_0200_0000_0092
BUSY_RCX = 0x8000_0200_0000_0001
BUSY_RDX = 0x8000_0200_0000_0002
BUSY_TDR = 0x8000_0200_0000_0080
BUSY_EPOCH = 0x8000_0200_0000_00A9
BUSY_HP_RCX = 0x8000_0204_0000_0001
PREV_EPOCH_BUSY = 0x8000_0201_0000_0000
HP_TIMEOUT = 0x9000_0205_0000_0000
NOT_TRACKED_RCX = 0xC000_0B08_0000_0001

MB2 = 0x20_0000
REGION = 5 * MB2            # a 2 MB-aligned GPA, inside the first 1 GB
G = REGION + 0x3000         # a 4 KB page in it
H = REGION + 0x7000         # another 4 KB page in the same 2 MB region
RIP = 0xFFFF_FFFF_8100_0000
ENTER_US = CAL0.epoch_hold_us + CAL0.vp_enter_us   # an unarmed, successful VP.ENTER
PER_PAGE = CAL0.accept_2m_us / 512


# ------------------------------------------------------------------------ helpers
def make(opts: ModuleOptions | None = None, seed: int = 1):
    env, rec = simpy.Environment(), Recorder()
    module = TdxModule(env, CAL0, opts or ModuleOptions(), rec, stream(seed, "test_module"))
    return env, rec, module


def tables(m: TdxModule, gpa: int, down_to: int = LEVEL_2M) -> None:
    """Make every level from the root down to ``down_to`` a non-leaf (tables present)."""
    for lvl in range(LEVEL_512G, down_to - 1, -1):
        m.sept.entry(gpa, lvl).state = State.NON_LEAF


def leaf(m: TdxModule, gpa: int, state: State, level: int = LEVEL_4K):
    tables(m, gpa, level + 1)
    e = m.sept.entry(gpa, level)
    e.state = state
    return e


def call(env: simpy.Environment, delay: float, gen) -> dict:
    """Start the call generator ``gen`` ``delay`` after now; the dict gets t0, status, t1."""
    res: dict = {}

    def proc():
        yield env.timeout(delay)
        res["t0"] = env.now
        res["status"] = yield from gen
        res["t1"] = env.now
    res["proc"] = env.process(proc())
    return res


def probe(env: simpy.Environment, delay: float, fn) -> dict:
    """Evaluate ``fn()`` ``delay`` after now (to look at lock state mid-call)."""
    res: dict = {}

    def proc():
        yield env.timeout(delay)
        res["value"] = fn()
    env.process(proc())
    return res


def rows(rec: Recorder, leaf_name: str | None = None, caller: str | None = None) -> list:
    return [r for r in rec.calls
            if (leaf_name is None or r[2] == leaf_name) and (caller is None or r[3] == caller)]


def enter_ok(m: TdxModule, v, rip: int = RIP):
    st, gpa = yield from m.tdh_vp_enter(v, rip)
    assert (st, gpa) == (TDX_SUCCESS, -1)


def run_gen(env: simpy.Environment, gen):
    """Run one generator as a process to completion (and the rest of the env with it)."""
    p = env.process(gen)
    env.run()
    assert p.ok
    return p.value


def arm(m: TdxModule, v, gpas: list[int], rip: int = RIP):
    """Enter and exit at ``rip`` once per GPA with a counted private EPT violation."""
    for gpa in gpas:
        yield from enter_ok(m, v, rip)
        yield from m.td_exit(v, rip, gpa)


def all_locks_free(m: TdxModule) -> bool:
    return all(lock.is_free() for lock in m.locks())


# ------------------------------------------------------------------------ fact 1: try-locks
def test_status_codes_decode_and_busy_comparison_is_on_bits_63_32():
    assert decode(BUSY_TREE) == ("TDX_OPERAND_BUSY", "SEPT_TREE")
    assert decode(BUSY_RCX) == ("TDX_OPERAND_BUSY", "RCX")
    assert decode(BUSY_EPOCH) == ("TDX_OPERAND_BUSY", "TD_EPOCH")
    assert decode(BUSY_HP_RCX) == ("TDX_OPERAND_BUSY_HOST_PRIORITY", "RCX")
    assert decode(PREV_EPOCH_BUSY) == ("TDX_PREVIOUS_TLB_EPOCH_BUSY", "")
    assert decode(HP_TIMEOUT) == ("TDX_HOST_PRIORITY_BUSY_TIMEOUT", "")
    for code in (BUSY_TREE, BUSY_RCX, BUSY_EPOCH, TDX_OPERAND_BUSY | 0x1234_5678):
        assert tdx_operand_busy(code)
    for code in (BUSY_HP_RCX, PREV_EPOCH_BUSY, HP_TIMEOUT, TDX_SUCCESS,
                 TDX_OPERAND_BUSY ^ (1 << 32), TDX_INTERRUPTED_RESUMABLE):
        assert not tdx_operand_busy(code)


def test_try_locks_never_wait_tree_busy_is_exact_and_immediate():
    env, rec, m = make()
    tables(m, G)
    leaf(m, H, State.MAPPED)
    aug = call(env, 0.0, m.tdh_mem_page_aug("h-aug", G))          # tree shared [0, 3]
    blk = call(env, 1.0, m.tdh_mem_range_block("h-blk", H))       # wants it exclusive
    env.run()
    assert aug["status"] == TDX_SUCCESS and aug["t1"] == CAL0.page_aug_us
    assert blk["status"] == BUSY_TREE == 0x8000020000000092
    # returned after the cost of a failed call, long before the holder let go
    assert blk["t1"] - blk["t0"] == pytest.approx(CAL0.seamcall_exit_us)
    assert blk["t1"] < aug["t1"]
    assert rows(rec, "TDH.MEM.RANGE.BLOCK") == [
        (1.0, 1.0 + CAL0.seamcall_exit_us, "TDH.MEM.RANGE.BLOCK", "h-blk", H, BUSY_TREE)]
    assert m.sept.entry(H, LEVEL_4K).state is State.MAPPED


def test_try_locks_never_wait_entry_busy_reports_rcx():
    env, rec, m = make()
    tables(m, G)
    v = m.add_vcpu("v0")
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))  # locks FREE entry
    aug = call(env, 0.1, m.tdh_mem_page_aug("h-aug", G))
    env.run()
    assert aug["status"] == BUSY_RCX == 0x8000020000000001
    assert aug["t1"] - aug["t0"] == pytest.approx(CAL0.seamcall_exit_us)
    assert rows(rec, "TDH.MEM.PAGE.AUG") == [
        (0.1, 0.1 + CAL0.seamcall_exit_us, "TDH.MEM.PAGE.AUG", "h-aug", G, BUSY_RCX)]
    assert acc["status"][1] == TDX_EXIT_EPT_VIOLATION


def test_try_locks_never_wait_epoch_busy_reports_td_epoch():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    trk = call(env, 0.0, m.tdh_mem_track("h-trk"))                 # epoch excl [0, 0.75]
    ent = call(env, 0.2, m.tdh_vp_enter(v, RIP))
    env.run()
    assert trk["status"] == TDX_SUCCESS
    assert ent["status"] == (BUSY_EPOCH, -1) and BUSY_EPOCH == 0x80000200000000A9
    assert ent["t1"] - ent["t0"] == pytest.approx(CAL0.seamcall_exit_us)
    assert rows(rec, "TDH.VP.ENTER") == [
        (0.2, 0.2 + CAL0.seamcall_exit_us, "TDH.VP.ENTER", "v0", -1, BUSY_EPOCH)]


def test_lock_classes_are_try_locks():
    for lock in (SharexLock("t", 0x92), SharexHpLock("h", 0x80), SeptEntryLock("e", 0x01)):
        assert lock.try_acquire("a", Mode.EXCLUSIVE) == TDX_SUCCESS
        assert lock.try_acquire("b", Mode.EXCLUSIVE) == TDX_OPERAND_BUSY | lock.operand
        assert lock.exclusive_owner == "a"
        lock.release("a", Mode.EXCLUSIVE)
        assert lock.is_free()


# ------------------------------------------------------------------------ fact 2: tree R/W
def test_two_augs_on_different_entries_share_the_tree():
    env, rec, m = make()
    tables(m, G)
    a = call(env, 0.0, m.tdh_mem_page_aug("h1", G))
    b = call(env, 1.0, m.tdh_mem_page_aug("h2", H))
    mid = probe(env, 1.5, lambda: dict(m.tree_lock.shared_owners))
    env.run()
    assert a["status"] == b["status"] == TDX_SUCCESS
    assert mid["value"] == {"h1": 1, "h2": 1}
    assert m.sept.entry(G, LEVEL_4K).state is State.PENDING
    assert m.sept.entry(H, LEVEL_4K).state is State.PENDING
    assert [r[5] for r in rec.calls] == [TDX_SUCCESS, TDX_SUCCESS]
    assert all_locks_free(m)


def test_sept_add_aug_and_remove_all_take_the_tree_shared():
    env, rec, m = make()
    tables(m, G)
    leaf(m, H, State.MAPPED)
    other = 7 * MB2                                   # level-1 entry FREE, its parents present
    tables(m, other, LEVEL_1G)

    def setup():                                      # make H removable: BLOCK + TRACK
        assert (yield from m.tdh_mem_range_block("h0", H)) == TDX_SUCCESS
        assert (yield from m.tdh_mem_track("h0")) == TDX_SUCCESS
    run_gen(env, setup())
    add = call(env, 0.0, m.tdh_mem_sept_add("h-add", other, LEVEL_2M))
    aug = call(env, 0.5, m.tdh_mem_page_aug("h-aug", G))
    rem = call(env, 1.0, m.tdh_mem_page_remove("h-rem", H))
    mid = probe(env, 1.5, lambda: sorted(m.tree_lock.shared_owners))
    env.run()
    assert (add["status"], aug["status"], rem["status"]) == (TDX_SUCCESS,) * 3
    assert mid["value"] == ["h-add", "h-aug", "h-rem"]
    assert m.sept.entry(other, LEVEL_2M).state is State.NON_LEAF
    assert m.sept.entry(H, LEVEL_4K).state is State.FREE


def test_block_concurrent_with_aug_in_flight_gets_busy_tree():
    env, rec, m = make()
    tables(m, G)
    leaf(m, H, State.MAPPED)
    aug = call(env, 0.0, m.tdh_mem_page_aug("h-aug", G))
    blk = call(env, 2.0, m.tdh_mem_range_block("h-blk", H))
    env.run()
    assert aug["status"] == TDX_SUCCESS
    assert blk["status"] == BUSY_TREE
    assert m.sept.entry(H, LEVEL_4K).state is State.MAPPED


def test_aug_concurrent_with_block_in_flight_gets_busy_tree():
    env, rec, m = make()
    tables(m, G)
    leaf(m, H, State.MAPPED)
    blk = call(env, 0.0, m.tdh_mem_range_block("h-blk", H))     # tree excl [0, 2]
    aug = call(env, 1.0, m.tdh_mem_page_aug("h-aug", G))
    held = probe(env, 1.2, lambda: m.tree_lock.exclusive_owner)
    env.run()
    assert blk["status"] == TDX_SUCCESS
    assert aug["status"] == BUSY_TREE
    assert held["value"] == "h-blk"
    assert m.sept.entry(G, LEVEL_4K).state is State.FREE
    assert rows(rec, caller="h-aug")[0][5] == BUSY_TREE


# ------------------------------------------------------------------------ §9.2: unfair tree
def test_tree_lock_is_unfair_at_the_lock_level():
    tree = SharexLock("SEPT_TREE", 0x92)
    assert tree.try_acquire("aug1", Mode.SHARED) == TDX_SUCCESS
    assert tree.try_acquire("enter", Mode.EXCLUSIVE) == BUSY_TREE   # shared holder wins
    assert tree.exclusive_owner is None                            # no pending-writer bit
    assert tree.try_acquire("aug2", Mode.SHARED) == TDX_SUCCESS     # readers keep coming
    tree.release("aug1", Mode.SHARED)
    assert tree.try_acquire("enter", Mode.EXCLUSIVE) == BUSY_TREE   # aug2 still holds it
    tree.release("aug2", Mode.SHARED)
    assert tree.try_acquire("enter", Mode.EXCLUSIVE) == TDX_SUCCESS
    assert tree.try_acquire("aug3", Mode.SHARED) == BUSY_TREE       # exclusive bit set
    tree.release("enter", Mode.EXCLUSIVE)
    assert tree.try_acquire("aug3", Mode.SHARED) == TDX_SUCCESS


def test_tree_lock_unfair_in_module_shared_holders_defeat_block_later_shared_succeeds():
    env, rec, m = make()
    tables(m, G)
    third = REGION + 0xA000
    leaf(m, H, State.MAPPED)
    a1 = call(env, 0.0, m.tdh_mem_page_aug("h1", G))             # shared [0, 3]
    blk = call(env, 0.5, m.tdh_mem_range_block("h-blk", H))     # exclusive try fails
    a2 = call(env, 1.0, m.tdh_mem_page_aug("h2", third))         # shared try succeeds
    env.run()
    assert (a1["status"], blk["status"], a2["status"]) == (TDX_SUCCESS, BUSY_TREE, TDX_SUCCESS)


# ------------------------------------------------------------------------ fact 3 / §9.5 epoch
def test_track_busy_while_vp_enter_holds_epoch_shared():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    ent = call(env, 0.0, m.tdh_vp_enter(v, RIP))           # epoch shared [0, 0.1]
    trk = call(env, 0.05, m.tdh_mem_track("h-trk"))
    env.run()
    assert ent["status"] == (TDX_SUCCESS, -1)
    assert trk["status"] == BUSY_EPOCH
    assert m.epoch == 0


def test_failed_vp_enter_on_epoch_leaves_no_refcount_or_holds():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    call(env, 0.0, m.tdh_mem_track("h-trk"))
    ent = call(env, 0.3, m.tdh_vp_enter(v, RIP))
    env.run()
    assert ent["status"] == (BUSY_EPOCH, -1)
    assert m.epoch_refcount == [0, 0]
    assert not v.in_td
    assert all_locks_free(m)


def test_epoch_refcounts_move_on_enter_and_exit():
    env, rec, m = make()
    v0, v1 = m.add_vcpu("v0"), m.add_vcpu("v1")
    seen = {}

    def flow():
        yield from enter_ok(m, v0)
        seen["after_v0"] = list(m.epoch_refcount)
        assert (yield from m.tdh_mem_track("h")) == TDX_SUCCESS      # epoch 0 -> 1
        yield from enter_ok(m, v1)
        seen["after_v1"] = list(m.epoch_refcount)
        yield from m.td_exit(v0, RIP)
        seen["after_exit0"] = list(m.epoch_refcount)
        yield from m.td_exit(v1, RIP)
    run_gen(env, flow())
    assert seen == {"after_v0": [1, 0], "after_v1": [1, 1], "after_exit0": [0, 1]}
    assert m.epoch_refcount == [0, 0]
    assert all_locks_free(m)


def test_track_previous_epoch_busy_until_the_old_epoch_vcpu_exits():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    got = {}

    def flow():
        yield from enter_ok(m, v)                                   # enters in epoch 0
        got["t1"] = yield from m.tdh_mem_track("h")                  # -> epoch 1
        got["t2"] = yield from m.tdh_mem_track("h")                  # v0 still in epoch 0
        yield from m.td_exit(v, RIP)
        got["t3"] = yield from m.tdh_mem_track("h")
    run_gen(env, flow())
    assert got == {"t1": TDX_SUCCESS, "t2": PREV_EPOCH_BUSY, "t3": TDX_SUCCESS}
    assert PREV_EPOCH_BUSY == 0x8000020100000000 and not tdx_operand_busy(PREV_EPOCH_BUSY)
    assert m.epoch == 2
    assert [r[5] for r in rows(rec, "TDH.MEM.TRACK")] == [TDX_SUCCESS, PREV_EPOCH_BUSY,
                                                          TDX_SUCCESS]


def test_remove_needs_block_and_completed_track():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    leaf(m, G, State.MAPPED)
    got = []

    def flow():
        yield from enter_ok(m, v)                                   # a vCPU in epoch 0
        got.append((yield from m.tdh_mem_page_remove("h", G)))       # not blocked
        got.append((yield from m.tdh_mem_range_block("h", G)))
        got.append((yield from m.tdh_mem_page_remove("h", G)))       # before TRACK
        got.append((yield from m.tdh_mem_track("h")))
        got.append((yield from m.tdh_mem_page_remove("h", G)))       # v0 still in epoch 0
        yield from m.td_exit(v, RIP)
        got.append((yield from m.tdh_mem_page_remove("h", G)))
    run_gen(env, flow())
    assert status_class(got[0]) == TDX_GPA_RANGE_NOT_BLOCKED
    assert got[1] == TDX_SUCCESS
    assert got[2] == NOT_TRACKED_RCX == TDX_TLB_TRACKING_NOT_DONE | 0x01
    assert got[3] == TDX_SUCCESS
    assert got[4] == NOT_TRACKED_RCX
    assert got[5] == TDX_SUCCESS
    assert m.sept.entry(G, LEVEL_4K).state is State.FREE
    assert [r[5] for r in rows(rec, "TDH.MEM.PAGE.REMOVE")] == got[0:1] + got[2:3] + got[4:]


def test_remove_after_block_and_track_with_no_vcpu_running():
    env, rec, m = make()
    leaf(m, G, State.MAPPED)
    got = []

    def flow():
        got.append((yield from m.tdh_mem_range_block("h", G)))
        got.append((yield from m.tdh_mem_track("h")))
        got.append((yield from m.tdh_mem_page_remove("h", G)))
    run_gen(env, flow())
    assert got == [TDX_SUCCESS] * 3


# ------------------------------------------------------------------------ §9.4 / §9.7: TDR
def test_page_add_busy_rdx_while_a_vcpu_is_in_the_td():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G)
    got = []

    def flow():
        got.append((yield from m.tdh_mem_page_add("h", G)))
        yield from enter_ok(m, v)
        got.append((yield from m.tdh_mem_page_add("h", H)))
        yield from m.td_exit(v, RIP)
        got.append((yield from m.tdh_mem_page_add("h", H)))
    run_gen(env, flow())
    assert got == [TDX_SUCCESS, BUSY_RDX, TDX_SUCCESS]
    assert BUSY_RDX == 0x8000020000000002
    assert m.sept.entry(H, LEVEL_4K).state is State.MAPPED


def test_explicit_tdr_busy_reports_the_carrying_register_implicit_reports_tdr():
    """§9.7: RDX for AUG / SEPT.ADD / REMOVE, RCX for TRACK, 0x80 only for VP.ENTER."""
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G)
    other = 9 * MB2
    tables(m, other, LEVEL_1G)
    add = call(env, 0.0, m.tdh_mem_page_add("h-build", REGION))      # TDR excl [0, 3]
    aug = call(env, 0.5, m.tdh_mem_page_aug("h-aug", G))
    sadd = call(env, 0.5, m.tdh_mem_sept_add("h-sadd", other, LEVEL_2M))
    rem = call(env, 0.5, m.tdh_mem_page_remove("h-rem", H))
    trk = call(env, 0.5, m.tdh_mem_track("h-trk"))
    ent = call(env, 0.5, m.tdh_vp_enter(v, RIP))
    env.run()
    assert add["status"] == TDX_SUCCESS
    assert aug["status"] == BUSY_RDX
    assert sadd["status"] == BUSY_RDX
    assert rem["status"] == BUSY_RDX
    assert trk["status"] == BUSY_RCX
    assert ent["status"] == (BUSY_TDR, -1)


def test_block_tdr_busy_reports_rdx():
    """§9.7: the explicit TDR's operand is the register that carried it. KVM's
    tdh_mem_range_block passes gpa|level in RCX and the TDR in RDX, so BUSY|RDX."""
    env, rec, m = make()
    leaf(m, G, State.MAPPED)
    call(env, 0.0, m.tdh_mem_page_add("h-build", REGION))
    blk = call(env, 0.5, m.tdh_mem_range_block("h-blk", G))
    env.run()
    assert blk["status"] == BUSY_RDX


# ------------------------------------------------------------------------ fact 4: zero-step
def test_zero_step_arms_on_the_seventh_same_rip_private_ept_violation():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    gpas = [REGION + i * 0x1000 for i in range(7)]
    seen = {}

    def flow():
        yield from arm(m, v, gpas[:6])
        seen["six"] = (v.epf_count, list(v.epf_gpas), v.zero_step_armed)
        yield from arm(m, v, gpas[6:])
    run_gen(env, flow())
    assert seen["six"] == (6, [], False)
    assert v.epf_gpas == [gpas[6]] and v.zero_step_armed
    assert [e[1:3] for e in rec.events] == [("zero_step_armed", "v0")]


def test_zero_step_threshold_is_a_module_option():
    env, rec, m = make(ModuleOptions(zero_step_threshold=2))
    v = m.add_vcpu("v0")
    seen = {}

    def flow():
        yield from arm(m, v, [G, H])
        seen["two"] = v.zero_step_armed
        yield from arm(m, v, [REGION])
    run_gen(env, flow())
    assert seen["two"] is False
    assert v.epf_gpas == [REGION]


def test_zero_step_cleared_when_the_rip_moves_and_sticky_otherwise():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    seen = {}

    def flow():
        yield from arm(m, v, [REGION + i * 0x1000 for i in range(7)])
        leaf(m, REGION + 6 * 0x1000, State.MAPPED)        # the listed GPA no longer faults
        yield from enter_ok(m, v, RIP)
        yield from m.td_exit(v, RIP, None)                 # e.g. an interrupt, same RIP
        seen["same_rip"] = v.zero_step_armed
        yield from enter_ok(m, v, RIP)
        yield from m.td_exit(v, RIP + 4, None)             # progress
        seen["moved"] = (v.epf_count, list(v.epf_gpas))
    run_gen(env, flow())
    assert seen == {"same_rip": True, "moved": (0, [])}


def test_zero_step_different_rip_at_exit_restarts_the_count():
    env, rec, m = make()
    v = m.add_vcpu("v0")

    def flow():
        yield from arm(m, v, [REGION + i * 0x1000 for i in range(6)])
        yield from enter_ok(m, v, RIP)
        yield from m.td_exit(v, RIP + 8, G)                # a fault, but at a new RIP
    run_gen(env, flow())
    assert v.epf_count == 1 and v.epf_gpas == []


def test_accept_synthesised_exits_do_not_count_toward_zero_step():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G)
    exits = []

    def flow():
        for _ in range(10):
            yield from enter_ok(m, v, RIP)
            st, ex = yield from m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K)   # FREE: exits
            exits.append(ex)
            yield from m.td_exit(v, RIP, None)
    run_gen(env, flow())
    assert exits == [TDX_EXIT_EPT_VIOLATION] * 10
    assert v.epf_count == 0 and not v.zero_step_armed


def test_zero_step_gpa_list_capped_and_without_duplicates():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    gpas = [0x1000_0000 + i * 0x1000 for i in range(6 + 40)]

    def flow():
        yield from arm(m, v, gpas[:7])
        leaf(m, gpas[6], State.MAPPED)                    # so the armed entry can enter
        yield from arm(m, v, [gpas[6]])                   # same GPA again: not re-added
        assert v.epf_gpas == [gpas[6]]
        # armed: further entries must not EPFS, so keep the listed GPAs mapped
        for g in gpas[7:]:
            for listed in v.epf_gpas:
                leaf(m, listed, State.MAPPED)
            yield from enter_ok(m, v, RIP)
            yield from m.td_exit(v, RIP, g)
    run_gen(env, flow())
    assert len(v.epf_gpas) == 32
    assert v.epf_gpas == gpas[6:38]


def test_zero_step_gpa_list_size_option():
    env, rec, m = make(ModuleOptions(zero_step_threshold=0, epf_gpa_list_size=3))
    v = m.add_vcpu("v0")
    gpas = [0x1000_0000 + i * 0x1000 for i in range(5)]

    def flow():
        yield from arm(m, v, gpas[:1])
        for g in gpas[1:]:
            for listed in v.epf_gpas:
                leaf(m, listed, State.MAPPED)
            yield from enter_ok(m, v, RIP)
            yield from m.td_exit(v, RIP, g)
    run_gen(env, flow())
    assert v.epf_gpas == gpas[:3]


def _armed(opts: ModuleOptions | None = None, names=("v0",)):
    """A module whose vCPUs are armed, each on its own GPA that is now mapped."""
    env, rec, m = make(opts)
    vs = []
    for i, name in enumerate(names):
        v = m.add_vcpu(name)
        gpas = [0x4000_0000 * (i + 1) + k * 0x1000 for k in range(7)]
        run_gen(env, arm(m, v, gpas))
        assert v.epf_gpas == [gpas[6]]
        leaf(m, gpas[6], State.MAPPED)
        vs.append(v)
    rec.calls.clear()
    return env, rec, m, vs


def test_armed_vp_enter_takes_the_tree_exclusively_against_aug_and_block():
    env, rec, m, (v,) = _armed()
    tables(m, G)
    leaf(m, H, State.MAPPED)
    hold_start = CAL0.epoch_hold_us
    hold_end = hold_start + CAL0.zero_step_walk_us * 1 + CAL0.zero_step_hold_us
    ent = call(env, 0.0, m.tdh_vp_enter(v, RIP))
    aug = call(env, 0.5, m.tdh_mem_page_aug("h-aug", G))
    blk = call(env, 0.6, m.tdh_mem_range_block("h-blk", H))
    owner = probe(env, 1.0, lambda: m.tree_lock.exclusive_owner)
    late = call(env, hold_end + 0.1, m.tdh_mem_page_aug("h-late", REGION))
    env.run()
    assert owner["value"] == "v0"
    assert aug["status"] == BUSY_TREE == 0x8000020000000092
    assert blk["status"] == BUSY_TREE
    assert ent["status"] == (TDX_SUCCESS, -1)
    assert ent["t1"] - ent["t0"] == pytest.approx(hold_end + CAL0.vp_enter_us)
    # released just before VM entry, never held while the guest runs
    assert late["t0"] < ent["t1"] and late["status"] == TDX_SUCCESS
    assert m.tree_lock.is_free() and v.in_td
    assert rows(rec, caller="h-aug")[0][5] == BUSY_TREE


def test_armed_vp_enter_busy_when_the_tree_is_held_shared():
    env, rec, m, (v,) = _armed()
    tables(m, G)
    count_before = (v.epf_count, list(v.epf_gpas))
    aug = call(env, 0.0, m.tdh_mem_page_aug("h-aug", G))        # tree shared [0, 3]
    ent = call(env, 0.5, m.tdh_vp_enter(v, RIP))
    after = probe(env, 0.5 + CAL0.epoch_hold_us + CAL0.seamcall_exit_us + 0.01,
                  lambda: (list(m.epoch_refcount), v.in_td, dict(m.tdr.shared_owners)))
    env.run()
    assert aug["status"] == TDX_SUCCESS
    assert ent["status"] == (BUSY_TREE, -1)
    assert after["value"] == ([0, 0], False, {"h-aug": 1})
    assert (v.epf_count, v.epf_gpas) == count_before           # failed entry: no bump
    assert rows(rec, "TDH.VP.ENTER")[0][5] == BUSY_TREE
    assert all_locks_free(m)


def test_unarmed_vp_enter_does_not_touch_the_tree():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G)
    aug = call(env, 0.0, m.tdh_mem_page_aug("h-aug", G))
    ent = call(env, 0.5, m.tdh_vp_enter(v, RIP))
    env.run()
    assert aug["status"] == TDX_SUCCESS and ent["status"] == (TDX_SUCCESS, -1)


def test_armed_vp_enter_returns_epfs_exit_with_first_still_faulting_gpa():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    gpas = [0x4000_0000 + k * 0x1000 for k in range(8)]
    run_gen(env, arm(m, v, gpas[:7]))
    leaf(m, gpas[6], State.MAPPED)
    run_gen(env, arm(m, v, gpas[7:]))
    assert v.epf_gpas == gpas[6:8]
    leaf(m, gpas[6], State.MAPPED)                     # the first listed no longer faults
    tables(m, gpas[7])                                 # the second still does
    rec.calls.clear()
    before = (v.epf_count, list(v.epf_gpas))
    t0 = env.now
    res = run_gen(env, m.tdh_vp_enter(v, RIP))
    assert res == (TDX_EXIT_EPT_VIOLATION, gpas[7])
    assert not v.in_td and m.epoch_refcount == [0, 0]
    assert all_locks_free(m)
    assert (v.epf_count, v.epf_gpas) == before
    (row,) = rec.calls
    assert row[2:] == ("TDH.VP.ENTER", "v0", gpas[7], TDX_EXIT_EPT_VIOLATION)
    assert row[0] == t0
    m.sept.entry(gpas[6], LEVEL_4K).state = State.FREE     # now both fault: the first wins
    assert run_gen(env, m.tdh_vp_enter(v, RIP)) == (TDX_EXIT_EPT_VIOLATION, gpas[6])
    assert not v.in_td and m.epoch_refcount == [0, 0] and all_locks_free(m)


def test_two_armed_vcpus_contend_on_the_tree():
    env, rec, m, (v0, v1) = _armed(names=("v0", "v1"))
    v2 = m.add_vcpu("v2")                                       # not armed
    e0 = call(env, 0.0, m.tdh_vp_enter(v0, RIP))
    e1 = call(env, 0.5, m.tdh_vp_enter(v1, RIP))
    e2 = call(env, 0.5, m.tdh_vp_enter(v2, RIP))
    env.run()
    assert e0["status"] == (TDX_SUCCESS, -1)
    assert e1["status"] == (BUSY_TREE, -1)
    assert e2["status"] == (TDX_SUCCESS, -1)
    assert v0.in_td and not v1.in_td and v2.in_td


def test_armed_vp_enter_defeated_by_a_shared_holder_while_later_readers_succeed():
    """§9.2 with the real contenders: a zero-step VP.ENTER loses to AUGs, AUGs keep going."""
    env, rec, m, (v,) = _armed()
    tables(m, G)
    a1 = call(env, 0.0, m.tdh_mem_page_aug("h1", G))
    ent = call(env, 0.5, m.tdh_vp_enter(v, RIP))
    a2 = call(env, 1.0, m.tdh_mem_page_aug("h2", H))
    env.run()
    assert (a1["status"], ent["status"][0], a2["status"]) == (TDX_SUCCESS, BUSY_TREE,
                                                              TDX_SUCCESS)


# ------------------------------------------------------------------------ fact 5: HOST_PRIORITY
def _hp_setup(opts: ModuleOptions | None = None):
    """Guest ACCEPT locks the FREE entry G; a host AUG on G fails meanwhile (sets TDHP)."""
    env, rec, m = make(opts)
    v = m.add_vcpu("v0")
    tables(m, G)
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    aug = call(env, 0.1, m.tdh_mem_page_aug("h-aug", G))
    env.run()
    assert acc["status"] == (TDX_EXIT_EPT_VIOLATION, TDX_EXIT_EPT_VIOLATION)
    assert aug["status"] == BUSY_RCX                      # the host sees plain BUSY
    return env, rec, m, v


def test_hp_guest_accept_after_failed_host_aug_is_busy():
    env, rec, m, v = _hp_setup()
    assert m.sept.entry(G, LEVEL_4K).lock.host_priority
    rec.calls.clear()
    res = run_gen(env, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    assert res == (BUSY_RCX, None)                        # HP masked as plain BUSY
    (row,) = rec.calls
    assert row[2:] == ("TDG.MEM.PAGE.ACCEPT", "v0", G, BUSY_HP_RCX)
    assert row[5] == 0x8000020400000001
    assert m.sept.entry(G, LEVEL_4K).lock.is_free()       # won the bit, dropped it at once


def test_hp_off_guest_accept_after_failed_host_aug_gets_the_lock():
    env, rec, m, v = _hp_setup(ModuleOptions(host_priority=False))
    assert not m.sept.entry(G, LEVEL_4K).lock.host_priority
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    owner = probe(env, 0.1, lambda: m.sept.entry(G, LEVEL_4K).lock.exclusive_owner)
    env.run()
    assert owner["value"] == "v0"
    assert not tdx_operand_busy(acc["status"][0])
    assert acc["status"] == (TDX_EXIT_EPT_VIOLATION, TDX_EXIT_EPT_VIOLATION)
    assert all(status_class(r[5]) != TDX_OPERAND_BUSY_HOST_PRIORITY for r in rec.calls)


def test_hp_host_success_clears_the_bit_and_guest_accept_then_succeeds():
    env, rec, m, v = _hp_setup()
    got = []

    def flow():
        got.append((yield from m.tdh_mem_page_aug("h-aug", G)))
        got.append(m.sept.entry(G, LEVEL_4K).lock.host_priority)
        got.append((yield from m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K)))
    run_gen(env, flow())
    assert got == [TDX_SUCCESS, False, (TDX_SUCCESS, None)]
    assert m.sept.entry(G, LEVEL_4K).state is State.MAPPED


def test_hp_host_never_sees_the_host_priority_code():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G)
    call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_2M))   # 2 MB entry: FREE, locked
    blocks = [call(env, 0.05 * k, m.tdh_mem_sept_add(f"h{k}", G, LEVEL_2M)) for k in (1, 2, 3)]
    env.run()
    assert [b["status"] for b in blocks] == [BUSY_RCX] * 3
    host_rows = [r for r in rec.calls if r[2].startswith("TDH.")]
    assert host_rows and all(status_class(r[5]) == TDX_OPERAND_BUSY for r in host_rows)


def test_hp_guest_loses_a_held_lock_with_plain_busy():
    """A guest try that finds the entry held (by anyone) gets plain BUSY, HP or not."""
    env, rec, m = make()
    v0, v1 = m.add_vcpu("v0"), m.add_vcpu("v1")
    tables(m, G)
    a = call(env, 0.0, m.tdg_mem_page_accept(v0, RIP, G, LEVEL_4K))
    b = call(env, 0.1, m.tdg_mem_page_accept(v1, RIP, G, LEVEL_4K))
    env.run()
    assert b["status"] == (BUSY_RCX, None)
    assert rows(rec, caller="v1")[0][5] == BUSY_RCX
    assert a["status"][1] == TDX_EXIT_EPT_VIOLATION


def test_hp_streak_times_out_after_hp_lock_timeout():
    env, rec, m, v = _hp_setup(ModuleOptions(hp_lock_timeout_us=10_000.0))
    rec.calls.clear()
    got = []

    def flow():
        start = env.now
        for at in (0.0, 9_999.0, 10_000.0, 10_001.0):
            yield env.timeout(start + at - env.now)
            got.append((yield from m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K)))
    run_gen(env, flow())
    # streak starts at the first HP-busy (t0); at 9_999.3 it has not lasted 10 ms yet;
    # the call ending at 10_000.3 reaches the timeout; the streak then starts over
    assert got == [(BUSY_RCX, None), (BUSY_RCX, None), (BUSY_RCX, HP_TIMEOUT),
                   (BUSY_RCX, None)]
    assert HP_TIMEOUT == 0x9000020500000000
    assert [r[5] for r in rec.calls] == [BUSY_HP_RCX] * 4
    assert [e[1] for e in rec.events] == ["hp_timeout"]


def test_hp_streak_reset_by_any_non_hp_result():
    env, rec, m, v = _hp_setup(ModuleOptions(hp_lock_timeout_us=10_000.0))
    other = REGION + 0x9000                                  # FREE, not HP
    got = []

    def flow():
        start = env.now
        plan = [(0.0, G), (5_000.0, other), (6_000.0, G), (10_500.0, G), (16_000.0, G)]
        for at, gpa in plan:
            yield env.timeout(start + at - env.now)
            got.append((yield from m.tdg_mem_page_accept(v, RIP, gpa, LEVEL_4K)))
    run_gen(env, flow())
    assert got[0] == (BUSY_RCX, None)
    assert got[1] == (TDX_EXIT_EPT_VIOLATION, TDX_EXIT_EPT_VIOLATION)  # not HP: resets
    assert got[2] == (BUSY_RCX, None)              # new streak from 6_000
    assert got[3] == (BUSY_RCX, None)              # 10_500 - 0 >= 10 ms, but reset at 5_000
    assert got[4] == (BUSY_RCX, HP_TIMEOUT)        # 16_000.3 - 6_000 >= 10 ms


def test_hp_streak_reset_by_plain_busy():
    env, rec, m, v = _hp_setup(ModuleOptions(hp_lock_timeout_us=10_000.0))
    v1 = m.add_vcpu("v1")
    other = REGION + 0x9000
    got = []

    def flow():
        start = env.now
        got.append((yield from m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K)))      # HP, streak
        yield env.timeout(start + 5_000.0 - env.now)
        call(env, 0.0, m.tdg_mem_page_accept(v1, RIP, other, LEVEL_4K))           # v1 holds
        yield env.timeout(0.1)
        got.append((yield from m.tdg_mem_page_accept(v, RIP, other, LEVEL_4K)))  # plain BUSY
        yield env.timeout(start + 10_500.0 - env.now)
        got.append((yield from m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K)))
    run_gen(env, flow())
    assert got == [(BUSY_RCX, None), (BUSY_RCX, None), (BUSY_RCX, None)]
    assert [r[5] for r in rows(rec, caller="v0")][-3:] == [BUSY_HP_RCX, BUSY_RCX, BUSY_HP_RCX]


def test_sharex_hp_lock_host_priority_semantics():
    tdr = SharexHpLock("TDR", 0x80)
    assert tdr.try_acquire("vcpu", Mode.SHARED, Side.HOST) == TDX_SUCCESS
    assert tdr.try_acquire("build", Mode.EXCLUSIVE, Side.HOST) == BUSY_TDR   # sets HP
    assert tdr.host_priority
    assert tdr.try_acquire("guest", Mode.SHARED, Side.GUEST) == TDX_OPERAND_BUSY_HOST_PRIORITY | 0x80
    tdr.release("vcpu", Mode.SHARED)
    assert tdr.try_acquire("build", Mode.EXCLUSIVE, Side.HOST) == TDX_SUCCESS  # clears HP
    assert not tdr.host_priority
    tdr.release("build", Mode.EXCLUSIVE)
    assert tdr.try_acquire("guest", Mode.SHARED, Side.GUEST) == TDX_SUCCESS
    # the tree and epoch locks have no HP: a failed host try leaves nothing behind
    tree = SharexLock("SEPT_TREE", 0x92)
    tree.try_acquire("a", Mode.EXCLUSIVE)
    assert tree.try_acquire("b", Mode.SHARED, Side.HOST) == BUSY_TREE
    tree.release("a", Mode.EXCLUSIVE)
    assert tree.try_acquire("g", Mode.SHARED, Side.GUEST) == TDX_SUCCESS


# ------------------------------------------------------------------------ ACCEPT (§2, §7, fact 10)
def test_accept_4k_pending_succeeds_and_maps():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    leaf(m, G, State.PENDING)
    res = run_gen(env, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    assert res == (TDX_SUCCESS, None)
    assert m.sept.entry(G, LEVEL_4K).state is State.MAPPED
    assert rec.calls == [(0.0, CAL0.accept_4k_us, "TDG.MEM.PAGE.ACCEPT", "v0", G, TDX_SUCCESS)]
    assert all_locks_free(m)


@pytest.mark.parametrize("locks_not_present, aug_status, final", [
    (True, BUSY_RCX, State.FREE),            # 1.5.01: ACCEPT locks the FREE entry briefly
    (False, TDX_SUCCESS, State.PENDING),     # the announced change: it does not
])
def test_accept_on_a_free_entry_exits_and_locks_it_only_in_1_5_01(locks_not_present,
                                                                  aug_status, final):
    env, rec, m = make(ModuleOptions(accept_locks_not_present=locks_not_present))
    v = m.add_vcpu("v0")
    tables(m, G)
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    aug = call(env, 0.1, m.tdh_mem_page_aug("h-aug", G))
    env.run()
    assert acc["status"][1] == TDX_EXIT_EPT_VIOLATION
    assert aug["status"] == aug_status
    assert m.sept.entry(G, LEVEL_4K).state is final
    assert rows(rec, caller="v0") == [
        (0.0, CAL0.accept_probe_us, "TDG.MEM.PAGE.ACCEPT", "v0", G, TDX_EXIT_EPT_VIOLATION)]


def test_accept_with_missing_parent_exits_without_locking():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G, LEVEL_1G)                     # the 2 MB entry is FREE: no 4 KB table
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    mid = probe(env, 0.05, lambda: all_locks_free(m))
    add = call(env, 0.1, m.tdh_mem_sept_add("h-add", G, LEVEL_2M))
    env.run()
    assert mid["value"] is True
    assert acc["status"][1] == TDX_EXIT_EPT_VIOLATION
    assert add["status"] == TDX_SUCCESS


def test_accept_with_a_larger_leaf_in_the_way_exits_without_locking():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    leaf(m, G, State.MAPPED, LEVEL_2M)
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, G, LEVEL_4K))
    mid = probe(env, CAL0.accept_probe_us / 2, lambda: all_locks_free(m))
    env.run()
    assert mid["value"] is True
    assert acc["status"][1] == TDX_EXIT_EPT_VIOLATION


def test_accept_2m_on_non_leaf_is_page_size_mismatch_after_a_brief_lock():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G)                               # the 2 MB entry is a non-leaf
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, REGION, LEVEL_2M))
    owner = probe(env, 0.1, lambda: m.sept.entry(REGION, LEVEL_2M).lock.exclusive_owner)
    blk = call(env, 0.1, m.tdh_mem_range_block("h-blk", REGION, LEVEL_2M))
    env.run()
    assert owner["value"] == "v0"
    assert blk["status"] == BUSY_RCX
    assert status_class(acc["status"][0]) == TDX_PAGE_SIZE_MISMATCH
    assert acc["status"][1] is None
    assert status_class(rows(rec, caller="v0")[0][5]) == TDX_PAGE_SIZE_MISMATCH
    assert all_locks_free(m)


def test_accept_2m_on_free_2m_entry_locks_then_exits():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G, LEVEL_1G)
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, REGION, LEVEL_2M))
    add = call(env, 0.1, m.tdh_mem_sept_add("h-add", REGION, LEVEL_2M))
    env.run()
    assert acc["status"][1] == TDX_EXIT_EPT_VIOLATION
    assert add["status"] == BUSY_RCX


def test_accept_1g_is_operand_invalid_without_a_lock():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    tables(m, G, LEVEL_1G)
    acc = call(env, 0.0, m.tdg_mem_page_accept(v, RIP, 0, LEVEL_1G))
    mid = probe(env, CAL0.accept_probe_us / 2, lambda: all_locks_free(m))
    env.run()
    assert mid["value"] is True
    assert status_class(acc["status"][0]) == TDX_OPERAND_INVALID
    assert acc["status"][1] is None
    assert status_class(rows(rec, caller="v0")[0][5]) == TDX_OPERAND_INVALID


def test_accept_2m_interrupted_resumes_with_the_remaining_pages_only():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    e = leaf(m, REGION, State.PENDING, LEVEL_2M)
    out = {}

    def guest():
        yield from enter_ok(m, v)
        t_a = env.now
        out["first"] = yield from m.tdg_mem_page_accept(v, RIP, REGION, LEVEL_2M)
        out["first_t"] = (t_a, env.now)
        out["after_first"] = (e.accept_counter, e.state, e.lock.is_free())
        yield from m.td_exit(v, RIP, None)             # the interrupt exit
        yield from enter_ok(m, v)                      # re-executes the same TDCALL
        t_b = env.now
        out["second"] = yield from m.tdg_mem_page_accept(v, RIP, REGION, LEVEL_2M)
        out["second_t"] = (t_b, env.now)
        yield from m.td_exit(v, RIP + 4, None)

    v.proc = env.process(guest())

    def irq():
        yield env.timeout(ENTER_US + 100.5 * PER_PAGE)  # in the middle of page 101
        out["in_td_at_irq"] = v.in_td
        m.post_interrupt(v)
    env.process(irq())
    env.run()
    assert out["in_td_at_irq"]
    assert out["first"][1] == TDX_INTERRUPTED_RESUMABLE
    t_a, t_end = out["first_t"]
    assert t_end - t_a == pytest.approx(101 * PER_PAGE)   # finishes the page it was on
    assert out["after_first"] == (101, State.PENDING, True)
    assert out["second"] == (TDX_SUCCESS, None)
    t_b, t_end2 = out["second_t"]
    assert t_end2 - t_b == pytest.approx((512 - 101) * PER_PAGE)
    assert e.state is State.MAPPED and e.accept_counter == 0
    assert [r[5] for r in rows(rec, "TDG.MEM.PAGE.ACCEPT")] == [TDX_INTERRUPTED_RESUMABLE,
                                                                 TDX_SUCCESS]
    assert all_locks_free(m) and m.epoch_refcount == [0, 0]


def test_accept_2m_uninterrupted_takes_all_512_pages():
    env, rec, m = make()
    v = m.add_vcpu("v0")
    leaf(m, REGION, State.PENDING, LEVEL_2M)
    res = run_gen(env, m.tdg_mem_page_accept(v, RIP, REGION, LEVEL_2M))
    assert res == (TDX_SUCCESS, None)
    assert env.now == pytest.approx(CAL0.accept_2m_us)


# ------------------------------------------------------------------------ §10.1: versions
@pytest.mark.parametrize("version,contend", [
    ("1.5.01", True), ("1.5.06", True), ("1.5.08", True), ("1.5.16", True),
    ("1.5.20", False), ("1.5.25", False), ("1.5.28", False),
    ("2.0.01", True), ("2.0.04", True), ("2.0.12", False)])
def test_two_armed_vcpus_contend_on_the_tree_only_on_older_modules(version, contend):
    """Fact 9.1 holds where td_entry_stepping_filter takes the tree exclusive: checked in
    the source of 1.5.01, 1.5.06, 1.5.08 (301ebc6) and 1.5.16 (b2be91c); from 1.5.20
    (e2c6b0a) it takes it shared (acquire_sharex_lock_hp_sh), so two armed entries pass
    each other. The 2.0.x rows are domain §10.1's (no source here)."""
    env, rec, m, (a, b) = _armed(ModuleOptions(version=version), names=("v0", "v1"))
    first = call(env, 0.0, m.tdh_vp_enter(a, RIP))
    second = call(env, CAL0.epoch_hold_us + 0.05, m.tdh_vp_enter(b, RIP))
    env.run()
    assert first["status"] == (TDX_SUCCESS, -1)
    assert second["status"] == ((BUSY_TREE, -1) if contend else (TDX_SUCCESS, -1))
    assert m.tree_lock.is_free()


def test_on_newer_modules_an_armed_entry_meets_only_block_class_callers():
    env, rec, m, (v,) = _armed(ModuleOptions(version="2.0.12"))
    tables(m, G)
    leaf(m, H, State.MAPPED)
    call(env, 0.0, m.tdh_vp_enter(v, RIP))                    # tree shared while armed
    aug = call(env, 0.5, m.tdh_mem_page_aug("h-aug", G))      # shared: passes
    blk = call(env, 0.6, m.tdh_mem_range_block("h-blk", H))   # exclusive: BUSY
    env.run()
    assert aug["status"] == TDX_SUCCESS
    assert blk["status"] == BUSY_TREE
    assert m.tree_lock.host_priority       # a sharex_hp tree: the failed host try set HP


def test_what_if_a_module_returns_busy_with_no_vcpu_running(sim):
    """§10.4: tdh_do_no_vcpus relies on no new BUSY once every vCPU is out. A module that
    does not keep that makes the merged kick-and-retry-once bug the VM."""
    what_if = sim("conversion-storm", module__busy_without_vcpus=0.2, horizon_us=5000)
    assert what_if.summary["stopped"].iloc[0] == "vm_bugged"
    assert "0x80000200000000ac" in " ".join(what_if.events["detail"]).lower()
    assert sim("conversion-storm", horizon_us=5000).summary["vm_bugged"].iloc[0] == 0
