"""Layer 3 (model): the Intel TDX module: SEAMCALLs, TDCALLs, the epoch, zero-step and
HOST_PRIORITY, as domain.md §1-4 and §9 describe them (TDX module 1.5.01).

Every call is a generator run inside a SimPy process: ``status = yield from module.x(...)``.
It takes the locks of domain.md §2 in order with try-locks; on the first failure it releases
what it took and returns BUSY with the lock's operand; otherwise it holds them for its
duration and returns success or the call's real error. Every attempt is one row of the
``calls`` table.
"""
from __future__ import annotations

import math

import simpy

from ..config import Calibration, ModuleOptions
from ..records import Overlap, Recorder
from ..rng import Draws
from ..tdx_errno import (
    OPERAND_ID_OP_STATE, OPERAND_ID_RCX, OPERAND_ID_RDX, OPERAND_ID_SEPT, OPERAND_ID_TD_EPOCH,
    OPERAND_ID_TDR, OPERAND_ID_TDVPR, TDX_EPT_ENTRY_NOT_FREE, TDX_EPT_ENTRY_STATE_INCORRECT,
    TDX_EPT_WALK_FAILED, TDX_EXIT_EPT_VIOLATION, TDX_GPA_RANGE_ALREADY_BLOCKED,
    TDX_GPA_RANGE_NOT_BLOCKED, TDX_HOST_PRIORITY_BUSY_TIMEOUT, TDX_INTERRUPTED_RESUMABLE,
    TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, TDX_OPERAND_INVALID,
    TDX_PAGE_ALREADY_ACCEPTED, TDX_PAGE_SIZE_MISMATCH, TDX_PREVIOUS_TLB_EPOCH_BUSY,
    TDX_SUCCESS, TDX_TLB_TRACKING_NOT_DONE, busy, status_class,
)
from .clock import Jitter
from .locks import Mode, SharexHpLock, SharexLock, Side
from .versions import VERSIONS
from .sept import LEAF_STATES, LEVEL_2M, LEVEL_4K, SecureEpt, State

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST, GUEST = Side.HOST, Side.GUEST
MAX_ACCEPT_LEVEL = LEVEL_2M  # module 1.5.01 rejects a 1 GB ACCEPT (verify_page_info_input)


def leaf_name(call) -> str:
    """The spec's name of a module call from its method: the methods are named after the
    leaves (``tdh_mem_page_aug`` -> ``TDH.MEM.PAGE.AUG``)."""
    return call.__name__.upper().replace("_", ".")


class TdVcpu:
    """The module's per-vCPU state (TDVPS): zero-step counter, epoch hold, HP streak."""

    __slots__ = ("name", "tdvpr", "entry_rip", "epf_count", "epf_gpas", "epoch_parity",
                 "hp_streak_start", "armings", "irq_pending", "interruptible", "proc")

    def __init__(self, name: str, hp_enabled: bool):
        self.name = name
        self.tdvpr = SharexHpLock(f"tdvpr[{name}]", OPERAND_ID_TDVPR, hp_enabled)
        self.entry_rip = None
        self.epf_count = 0
        self.epf_gpas: list[int] = []
        self.epoch_parity = None      # which epoch refcount this vCPU holds while in the TD
        self.hp_streak_start = None
        self.armings = 0
        self.irq_pending = False      # an IPI arrived while the vCPU was in the TD
        self.interruptible = False    # the vCPU sits where an interrupt exits at once
        self.proc = None              # the SimPy process running this vCPU

    @property
    def zero_step_armed(self) -> bool:
        return bool(self.epf_gpas)

    @property
    def in_td(self) -> bool:
        return self.epoch_parity is not None


class TdxModule:
    """One TD's view of the TDX module."""

    def __init__(self, env: simpy.Environment, cal: Calibration, opts: ModuleOptions,
                 recorder: Recorder, rng):
        self.env, self.cal, self.opts, self.rec = env, cal, opts, recorder
        self.sept = SecureEpt(opts.host_priority)
        self.tdr = SharexHpLock("TDR", OPERAND_ID_TDR, opts.host_priority)
        self.version = VERSIONS[opts.version]
        self.tree_lock = (SharexHpLock("SEPT_TREE", OPERAND_ID_SEPT, opts.host_priority)
                          if self.version.tree_lock_hp else SharexLock("SEPT_TREE", OPERAND_ID_SEPT))
        self._internal = Draws(rng, "random") if opts.busy_without_vcpus else None
        self.epoch_lock = SharexLock("TD_EPOCH", OPERAND_ID_TD_EPOCH)
        self.epoch = 0
        self.epoch_refcount = [0, 0]
        self.vcpus: dict[str, TdVcpu] = {}
        self.duration = Jitter(cal.jitter_cv, rng)
        # a: the epoch lock has a shared holder (a VP.ENTER); b: a zap holds mmu_lock for
        # write (set by KVM), the only time a TRACK can be issued
        self.epoch_occupancy = Overlap()

    # ---------------------------------------------------------------- plumbing
    def add_vcpu(self, name: str) -> TdVcpu:
        v = self.vcpus[name] = TdVcpu(name, self.opts.host_priority)
        return v

    def _take(self, owner, locks, side: Side, operand: int | None = None):
        """Try each (lock, mode) in order. Returns (status, taken)."""
        taken = []
        for lock, mode in locks:
            st = lock.try_acquire(owner, mode, side)
            if st:
                self._release(owner, taken)
                if operand is not None and lock is self.tdr:
                    st = status_class(st) | operand   # explicit TDR: the register's id
                return st, []
            taken.append((lock, mode))
        return TDX_SUCCESS, taken

    @staticmethod
    def _release(owner, taken) -> None:
        for lock, mode in reversed(taken):
            lock.release(owner, mode)

    def _seamcall(self, leaf, caller, gpa, plan, tdr_operand):
        """The shape every TDH.MEM.* call shares: SEAMCALL entry (no lock held), then
        ``plan()`` walks the S-EPT as it is now and gives (locks, check, locked cost,
        effect); try-locks, legality check, the locked section, the effect, SEAMRET."""
        env, t0, cal = self.env, self.env.now, self.cal
        yield env.timeout(self.duration(cal.seamcall_entry_us))
        locks, check, cost_us, effect = plan()
        st, taken = self._take(caller, locks, HOST, tdr_operand)
        if not st and self._internal and self._internal.next() < self.opts.busy_without_vcpus:
            st = busy(OPERAND_ID_OP_STATE)     # what-if: an internal holder, no vCPU needed
        if not st:
            st = check()
        if st:
            self._release(caller, taken)
        else:
            yield env.timeout(self.duration(cost_us))
            effect()
            self._release(caller, taken)
        yield env.timeout(self.duration(cal.seamcall_exit_us))
        self.rec.call(t0, env.now, leaf, caller, gpa, st)
        return st

    @staticmethod
    def _must_be_free(e, err: int) -> int:
        """Legality of calls that create an entry (SEPT.ADD, AUG, PAGE.ADD)."""
        return err or (TDX_SUCCESS if e.state is State.FREE else TDX_EPT_ENTRY_NOT_FREE | OPERAND_ID_RCX)

    def _walk_to(self, gpa: int, level: int):
        """Legality of a host call on the entry at ``level``: (entry, error status)."""
        e = self.sept.walk(gpa, level)
        if e.level != level:
            return None, TDX_EPT_WALK_FAILED | OPERAND_ID_RCX
        return e, TDX_SUCCESS

    # ---------------------------------------------------------------- SEAMCALLs
    def _entry_locks(self, e, tree: Mode) -> list:
        """TDR shared, the S-EPT tree, the entry's host lock (if the walk reached it)."""
        return [(self.tdr, SHARED), (self.tree_lock, tree)] + ([(e.lock, EXCLUSIVE)] if e else [])

    def tdh_mem_sept_add(self, caller: str, gpa: int, level: int):
        """Turn the FREE entry at ``level`` into a non-leaf (adds the table below it)."""
        def plan():
            e, err = self._walk_to(gpa, level)

            def effect():
                e.state = State.NON_LEAF
            return (self._entry_locks(e, SHARED), lambda: self._must_be_free(e, err),
                    self.cal.sept_add_us, effect)
        return (yield from self._seamcall("TDH.MEM.SEPT.ADD", caller, gpa, plan, OPERAND_ID_RDX))

    def tdh_mem_page_aug(self, caller: str, gpa: int, level: int = LEVEL_4K):
        """Map a new private page PENDING (the guest must ACCEPT it)."""
        def plan():
            e, err = self._walk_to(gpa, level)

            def effect():
                e.state, e.accept_counter = State.PENDING, 0
                self.rec.count("aug_ok")
            return (self._entry_locks(e, SHARED), lambda: self._must_be_free(e, err),
                    self.cal.page_aug_us, effect)
        return (yield from self._seamcall("TDH.MEM.PAGE.AUG", caller, gpa, plan, OPERAND_ID_RDX))

    def tdh_mem_page_add(self, caller: str, gpa: int):
        """Build-time add of an accepted page. TDR exclusive: BUSY while any vCPU runs."""
        def plan():
            e, err = self._walk_to(gpa, LEVEL_4K)

            def effect():
                e.state = State.MAPPED
            return ([(self.tdr, EXCLUSIVE)], lambda: self._must_be_free(e, err),
                    self.cal.page_aug_us, effect)
        return (yield from self._seamcall("TDH.MEM.PAGE.ADD", caller, gpa, plan, OPERAND_ID_RDX))

    def tdh_mem_range_block(self, caller: str, gpa: int, level: int = LEVEL_4K):
        """Block a leaf. Takes the S-EPT tree *exclusively*."""
        def plan():
            e, err = self._walk_to(gpa, level)

            def check():
                if err:
                    return err
                if e.state is State.BLOCKED:
                    return TDX_GPA_RANGE_ALREADY_BLOCKED | OPERAND_ID_RCX
                return 0 if e.state in LEAF_STATES else TDX_EPT_ENTRY_STATE_INCORRECT | OPERAND_ID_RCX

            def effect():
                e.state, e.bepoch = State.BLOCKED, self.epoch
            return self._entry_locks(e, EXCLUSIVE), check, self.cal.range_block_us, effect
        return (yield from self._seamcall("TDH.MEM.RANGE.BLOCK", caller, gpa, plan, OPERAND_ID_RDX))

    def tdh_mem_track(self, caller: str):
        """Bump the TD epoch; BUSY on the epoch lock, PREVIOUS_TLB_EPOCH_BUSY while a vCPU
        still runs in the previous epoch."""
        def check():
            prev = self.epoch_refcount[(self.epoch - 1) & 1]
            return TDX_PREVIOUS_TLB_EPOCH_BUSY if self.epoch > 0 and prev else 0

        def effect():
            self.epoch += 1

        def plan():
            return ([(self.tdr, SHARED), (self.epoch_lock, EXCLUSIVE)], check,
                    self.cal.track_us, effect)
        return (yield from self._seamcall("TDH.MEM.TRACK", caller, -1, plan, OPERAND_ID_RCX))

    def tlb_tracked(self, bepoch: int) -> bool:
        """MOD is_tlb_tracked(): every vCPU that could hold a stale translation has left."""
        if bepoch < self.epoch - 1:
            return True
        return bepoch == self.epoch - 1 and self.epoch_refcount[bepoch & 1] == 0

    def tdh_mem_page_remove(self, caller: str, gpa: int, level: int = LEVEL_4K):
        """Remove a blocked, TLB-tracked leaf."""
        def plan():
            e, err = self._walk_to(gpa, level)

            def check():
                if err:
                    return err
                if e.state is not State.BLOCKED:
                    return TDX_GPA_RANGE_NOT_BLOCKED | OPERAND_ID_RCX
                return 0 if self.tlb_tracked(e.bepoch) else TDX_TLB_TRACKING_NOT_DONE | OPERAND_ID_RCX

            def effect():
                e.state = State.FREE
                self.rec.count("pages_removed")
            return self._entry_locks(e, SHARED), check, self.cal.page_remove_us, effect
        return (yield from self._seamcall("TDH.MEM.PAGE.REMOVE", caller, gpa, plan, OPERAND_ID_RDX))

    def tdh_phymem_page_wbinvd(self, caller: str, gpa: int):
        """Write back and invalidate a removed page's cache lines. No TD lock."""
        t0, cal = self.env.now, self.cal
        yield self.env.timeout(self.duration(cal.seamcall_entry_us) + self.duration(cal.wbinvd_4k_us)
                               + self.duration(cal.seamcall_exit_us))
        self.rec.call(t0, self.env.now, "TDH.PHYMEM.PAGE.WBINVD", caller, gpa, TDX_SUCCESS)
        return TDX_SUCCESS

    # ---------------------------------------------------------------- VP.ENTER and exits
    def tdh_vp_enter(self, v: TdVcpu, rip: int):
        """Enter the TD at ``rip``. Returns ``(status, gpa)``: SUCCESS (the vCPU runs),
        BUSY|TD_EPOCH, BUSY|SEPT_TREE (zero-step armed, tree taken), or a synthesised
        EPT-violation exit with the first listed GPA that would still fault (EPFS)."""
        env, t0, cal = self.env, self.env.now, self.cal
        yield env.timeout(self.duration(cal.seamcall_entry_us))
        st, taken = self._take(v.name, [(self.tdr, SHARED), (v.tdvpr, SHARED),
                                        (self.epoch_lock, SHARED)], HOST)
        if st:
            return (yield from self._enter_failed(v, t0, st, -1))
        epoch_shared = self.epoch_lock.shared_owners
        if len(epoch_shared) == 1:
            self.epoch_occupancy.set_a(env.now, True)
        yield env.timeout(self.duration(cal.epoch_hold_us))
        parity = self.epoch & 1
        self.epoch_refcount[parity] += 1
        self.epoch_lock.release(v.name, SHARED)
        if not epoch_shared:
            self.epoch_occupancy.set_a(env.now, False)
        held = taken[:2]
        if v.zero_step_armed:   # exclusive (1.5.01-1.5.06) or shared (1.5.08+): versions.py
            tree = self.version.zero_step_tree
            st = self.tree_lock.try_acquire(v.name, tree, HOST)
            if st:
                self.epoch_refcount[parity] -= 1
                self._release(v.name, held)
                return (yield from self._enter_failed(v, t0, st, -1))
            yield env.timeout(self.duration(cal.zero_step_walk_us * len(v.epf_gpas)))
            faulting = next((g for g in v.epf_gpas if self.sept.would_fault(g)), None)
            if faulting is not None:
                self.tree_lock.release(v.name, tree)
                self.epoch_refcount[parity] -= 1
                self._release(v.name, held)
                return (yield from self._enter_failed(v, t0, TDX_EXIT_EPT_VIOLATION, faulting))
            yield env.timeout(self.duration(cal.zero_step_hold_us))
            self.tree_lock.release(v.name, tree)  # just before VM entry
        yield env.timeout(self.duration(cal.vp_enter_us))
        v.entry_rip, v.epoch_parity = rip, parity       # TDR and TDVPR stay held shared
        self.rec.call(t0, env.now, "TDH.VP.ENTER", v.name, -1, TDX_SUCCESS)
        return TDX_SUCCESS, -1

    def _enter_failed(self, v: TdVcpu, t0: float, st: int, gpa: int):
        yield self.env.timeout(self.duration(self.cal.seamcall_exit_us))
        self.rec.call(t0, self.env.now, "TDH.VP.ENTER", v.name, gpa, st)
        return st, gpa

    def post_interrupt(self, v: TdVcpu) -> None:
        """An IPI for a vCPU in guest mode: it exits at once where it is interruptible
        (guest code, between the pages of a 2 MB ACCEPT), else when its TDCALL is done,
        or right after VM entry if it is still in TDH.VP.ENTER."""
        if not v.irq_pending:
            v.irq_pending = True
            if v.interruptible:
                v.interruptible = False
                v.proc.interrupt("ipi")

    def td_exit(self, v: TdVcpu, rip: int, private_ept_violation_gpa: int | None = None):
        """The TD exits to the host at ``rip``. A host-visible private EPT violation feeds
        the zero-step counter (ACCEPT-synthesised exits do not: MOD 1.5.01)."""
        self.note_rip(v, rip)
        if private_ept_violation_gpa is not None:
            self._count_epf(v, private_ept_violation_gpa)
        yield self.env.timeout(self.duration(self.cal.td_exit_us))
        self.epoch_refcount[v.epoch_parity] -= 1
        v.epoch_parity, v.irq_pending = None, False
        v.tdvpr.release(v.name, SHARED)
        self.tdr.release(v.name, SHARED)

    def note_rip(self, v: TdVcpu, rip: int) -> None:
        """On every exit into the module: progress since VP.ENTER clears zero-step."""
        if rip != v.entry_rip and (v.epf_count or v.epf_gpas):
            v.epf_count, v.epf_gpas = 0, []

    def _count_epf(self, v: TdVcpu, gpa: int) -> None:
        v.epf_count += 1
        if v.epf_count <= self.opts.zero_step_threshold:
            return
        if gpa not in v.epf_gpas and len(v.epf_gpas) < self.opts.epf_gpa_list_size:
            if not v.epf_gpas:
                v.armings += 1
                self.rec.event(self.env.now, "zero_step_armed", v.name, f"{gpa:#x}")
            v.epf_gpas.append(gpa)

    # ---------------------------------------------------------------- TDCALLs
    def _tdcall(self, v: TdVcpu, leaf: str, rip: int, gpa: int, body):
        """A TDCALL the module handles: the TD exit into SEAM (no lock held), ``body()``
        (the leaf: its walk, locks and work) -> (status, exit), the dispatcher's status
        handling, and the VM entry back to the guest unless the call ends in a TD exit."""
        env, t0 = self.env, self.env.now
        yield env.timeout(self.duration(self.cal.tdcall_entry_us))
        self.note_rip(v, rip)
        raw, exit_status = yield from body()
        st, hp_exit = self._dispatch_status(v, t0, gpa, raw)
        exit_status = exit_status or hp_exit
        if exit_status is None:
            yield env.timeout(self.duration(self.cal.tdcall_exit_us))
        self.rec.call(t0, env.now, leaf, v.name, gpa, raw)
        return st, exit_status

    def _dispatch_status(self, v: TdVcpu, t0: float, gpa: int, st: int):
        """The TDCALL dispatcher: HP-busy becomes plain BUSY for the guest; a streak of
        HP-busy that lasts HP_LOCK_TIMEOUT becomes a TD exit to the host."""
        if status_class(st) != TDX_OPERAND_BUSY_HOST_PRIORITY:
            v.hp_streak_start = None
            return st, None
        exit_status = None
        if v.hp_streak_start is None:
            v.hp_streak_start = t0
        elif self.env.now - v.hp_streak_start >= self.opts.hp_lock_timeout_us:
            exit_status = TDX_HOST_PRIORITY_BUSY_TIMEOUT
            v.hp_streak_start = None
            self.rec.event(self.env.now, "hp_timeout", v.name, f"{gpa:#x}")
        return TDX_OPERAND_BUSY | (st & 0xFFFF_FFFF), exit_status

    def tdg_mem_page_accept(self, v: TdVcpu, rip: int, gpa: int, level: int):
        """TDG.MEM.PAGE.ACCEPT. Returns ``(status, exit)``: ``exit`` is None, or the status
        of a TD exit the call causes: an ACCEPT-type EPT violation (not counted by
        zero-step), TDX_HOST_PRIORITY_BUSY_TIMEOUT, or TDX_INTERRUPTED_RESUMABLE for a 2 MB
        ACCEPT interrupted between pages (the TDCALL re-executes transparently)."""
        return (yield from self._tdcall(v, "TDG.MEM.PAGE.ACCEPT", rip, gpa,
                                        lambda: self._accept(v, gpa, level)))

    def _accept(self, v: TdVcpu, gpa: int, level: int):
        env, cal = self.env, self.cal
        if level > MAX_ACCEPT_LEVEL:
            yield env.timeout(self.duration(cal.accept_probe_us))
            return TDX_OPERAND_INVALID | OPERAND_ID_RCX, None
        e = self.sept.walk(gpa, level)
        if e.level != level or (e.state is State.FREE and not self.opts.accept_locks_not_present):
            yield env.timeout(self.duration(cal.accept_probe_us))   # walk stops: no lock
            return TDX_EXIT_EPT_VIOLATION, TDX_EXIT_EPT_VIOLATION
        st = e.lock.try_acquire(v.name, EXCLUSIVE, GUEST)
        if st:
            yield env.timeout(self.duration(cal.accept_probe_us))
            return st, None
        exit_status = None
        if e.state is State.PENDING and level == LEVEL_2M:
            st = yield from self._accept_2m(v, e)
            exit_status = st or None
        elif e.state is State.PENDING:
            yield env.timeout(self.duration(cal.accept_4k_us))
            e.state, st = State.MAPPED, TDX_SUCCESS
        else:
            yield env.timeout(self.duration(cal.accept_probe_us))
            st = {State.MAPPED: TDX_PAGE_ALREADY_ACCEPTED | level,
                  State.NON_LEAF: TDX_PAGE_SIZE_MISMATCH | level}.get(e.state, TDX_EXIT_EPT_VIOLATION)
            if st == TDX_EXIT_EPT_VIOLATION:   # FREE or BLOCKED: lock, release, exit
                exit_status = st
        e.lock.release(v.name, EXCLUSIVE)
        return st, exit_status

    def _accept_2m(self, v: TdVcpu, e):
        """Zero the 512 pages of a 2 MB PENDING leaf, interruptible after each page."""
        env, per_page = self.env, self.cal.accept_2m_us / 512
        left, t0 = 512 - e.accept_counter, env.now
        try:
            if v.irq_pending:
                raise simpy.Interrupt("ipi")
            v.interruptible = True
            yield env.timeout(left * per_page)
            v.interruptible = False
        except simpy.Interrupt:
            done = max(1, min(left, math.ceil((env.now - t0) / per_page - 1e-9)))
            yield env.timeout(max(0.0, t0 + done * per_page - env.now))  # finish this page
            e.accept_counter += done
            if e.accept_counter < 512:
                return TDX_INTERRUPTED_RESUMABLE
        e.state, e.accept_counter = State.MAPPED, 0
        return TDX_SUCCESS

    def tdg_mem_page_attr_wr(self, v: TdVcpu, rip: int, gpa: int):
        """TDG.MEM.PAGE.ATTR.WR on a 4 KB leaf: the guest lock for its locked section."""
        return (yield from self._tdcall(v, "TDG.MEM.PAGE.ATTR.WR", rip, gpa,
                                        lambda: self._attr_wr(v, gpa)))

    def _attr_wr(self, v: TdVcpu, gpa: int):
        env, cal = self.env, self.cal
        e = self.sept.walk(gpa, LEVEL_4K)
        if e.level != LEVEL_4K:
            yield env.timeout(self.duration(cal.accept_probe_us))
            return TDX_EPT_WALK_FAILED | OPERAND_ID_RCX, None
        st = e.lock.try_acquire(v.name, EXCLUSIVE, GUEST)
        if st:
            yield env.timeout(self.duration(cal.accept_probe_us))
            return st, None
        yield env.timeout(self.duration(cal.attr_wr_us))
        if e.state is not State.MAPPED:
            st = TDX_EPT_ENTRY_STATE_INCORRECT | OPERAND_ID_RCX
        e.lock.release(v.name, EXCLUSIVE)
        return st, None

    # ---------------------------------------------------------------- introspection
    def locks(self):
        """Every lock of the TD (for invariant checks)."""
        yield self.tdr
        yield self.tree_lock
        yield self.epoch_lock
        for v in self.vcpus.values():
            yield v.tdvpr
        for e in self.sept.entries():
            yield e.lock


__all__ = ["TdxModule", "TdVcpu", "MAX_ACCEPT_LEVEL", "leaf_name"]
