"""Layer 3 (model): KVM and the VMM for one TD (domain.md §1, §5 "Merged").

- ``mmu_lock``: a queued reader/writer lock (a waiting writer holds back new readers, as
  qrwlock does). Faults take it for read, zaps for write.
- Frozen mirror SPTEs: only one host task issues a SEAMCALL for an S-EPT entry at a time;
  a fault that finds the SPTE frozen gets RET_PF_RETRY.
- The private fault path, the per-4 KB zap path, TDH.VP.ENTER, and the kick of all vCPUs.
  Wherever a call comes back BUSY, the policy of that call site decides what happens next;
  the ``upstream`` preset reproduces what Linux merged.
"""
from __future__ import annotations



from ..policies import (BugVm, BusyContext, ExitToUserspace, KickAndRetry, ResumeGuest, Retry, Site)
from ..core.tdx_errno import (OPERAND_ID_RCX, TDX_EXIT_EPT_VIOLATION, TDX_GPA_RANGE_ALREADY_BLOCKED,
                         TDX_SUCCESS, is_error, tdx_operand_busy)
from .module import leaf_name
from .sept import LEVEL_4K, PAGE_4K, State
from .kvm_locks import READ, WRITE, QueuedRwLock
from .split import HugeKvm
from .fastenum import members

State, Site = members(State), members(Site)   # plain attribute reads (fastenum.py)

# internal results of the fault path that are RET_PF_RETRY without a SEAMCALL
FROZEN = -1          # the mirror SPTE was frozen by another host task
STALE = -2           # an mmu_invalidate (memory attribute change) raced the fault
RESUME, USERSPACE, STOPPED = "resume", "userspace", "stopped"


class Kvm:
    """KVM's side of one TD: locks, fault path, zap path, entry, kicks."""

    def __init__(self, td):
        self.td, self.env, self.module, self.cal = td, td.env, td.module, td.cal
        self.rec, self.policy = td.rec, td.policy
        self.duration = td.kvm_duration
        self.mmu_lock = QueuedRwLock(self.env, "mmu_lock")
        self.vm_spinlock = QueuedRwLock(self.env, "vm_spinlock")
        self.frozen: set = set()
        self.wait_for_sept_zap = 0           # a count, so nested zappers cannot clear it early
        self.sleepers: list = []              # vCPUs in collapsed fastpath passes
        self.shared_gpas: set = set()         # memory attributes: 4 KB GPAs that are shared
        self.invalidating: list = []          # [start, end) ranges of mmu_invalidate in flight
        self.invalidate_seq = 0               # kvm->mmu_invalidate_seq
        self.busy_calls = 0                   # host S-EPT SEAMCALLs and VP.ENTERs that were BUSY
        self.host_calls = 0                   # ... of all of them
        # host CPU time lost to BUSY calls and retry delays outside the fault loop's
        # "retry" state (which the vCPU time accounting already has)
        self.lost_us = 0.0
        self.huge = HugeKvm(self)             # 2 MB leaves, splits, Dynamic PAMT (split.py)

    # ------------------------------------------------------------------ helpers
    def _ctx(self, site, leaf, st, attempt, kicked, t0, events=False):
        return BusyContext(site, leaf, st, attempt, kicked, self.env.now - t0,
                           self.td.n_vcpus, events or bool(self.td.stopped),
                           self.busy_calls / max(1, self.host_calls))

    def _decide(self, site: Site, ctx: BusyContext):
        pol = self.policy.for_site(site)
        action = pol.on_busy(ctx, self.td.policy_rng)
        if isinstance(action, (Retry, KickAndRetry)):
            self.rec.count("retries")
            self.rec.count(f"retries_{site.value}")
        if isinstance(action, Retry) and action.warn:
            self.rec.event(self.env.now, "retry_warning", site.value, ctx.leaf)
        return action

    def _backoff(self, delay_us: float, lost: bool = True):
        """A policy's retry delay: the caller spins, so the time is lost to retries."""
        if delay_us:
            if lost:
                self.lost_us += delay_us
            yield self.env.timeout(delay_us)

    def lock(self, v, lock: QueuedRwLock, mode: str):
        if self.module.hot is not None and lock is self.mmu_lock:   # qrwlock's word
            yield from self.module.hot.touch_line(v.name if v is not None else "kvm", lock)
        ev = lock.acquire(mode)
        if ev is not None:
            yield from self.wait_as(v, ev, "mmu_wait")

    @staticmethod
    def wait_as(v, ev, state: str):
        """Wait for ``ev`` with vCPU ``v`` (None: a host thread) in ``state`` meanwhile."""
        prev = v.state if v is not None else None
        if v is not None:
            v.set_state(state)
        yield ev
        if v is not None:
            v.set_state(prev)

    @property
    def sept_lock(self) -> str:
        """How the policy set serialises S-EPT SEAMCALLs: none, vm_spinlock, mmu_lock_write."""
        return self.policy.sept_lock

    # ------------------------------------------------------------------ kicks
    def kick_all(self, kicker: str, request: str = "kicks"):
        """kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE) with KVM_REQUEST_WAIT:
        set the request on every vCPU, send an IPI to each one in guest mode, and wait
        until each of those has left it. Costs the request bookkeeping, one send per
        target, then the slowest target: its IPI delivery plus however long it takes to
        leave guest mode from where it is (at once in guest code, after its TDCALL, after
        its VP.ENTER), plus its TD exit. vCPUs outside guest mode cost nothing."""
        cal, env = self.cal, self.env
        targets = [(v, v.entries) for v in self.td.vcpus if v.in_guest_mode]
        self.rec.count(request)
        self.rec.count("ipis", len(targets))
        yield env.timeout(self.duration(cal.kick_base_us)
                          + self.duration(cal.kick_per_target_us) * len(targets))
        for v, entries in targets:
            env.timeout(self.duration(cal.ipi_delivery_us)).callbacks.append(
                lambda _ev, v=v, entries=entries: self._deliver_ipi(v, entries))
        for v, entries in targets:
            if v.in_guest_mode and v.entries == entries:
                yield v.left_guest_mode()

    def _deliver_ipi(self, v, entries: int) -> None:
        """The IPI lands; a vCPU that has left guest mode since it was sent only finds the
        request bit, which does nothing (KVM_REQUEST_NO_ACTION)."""
        if v.in_guest_mode and v.entries == entries:
            self.module.post_interrupt(v.tdv)

    def flush_remote_tlbs(self, flusher: str):
        """kvm_flush_remote_tlbs after a range zap: KVM_REQ_TLB_FLUSH, another all-vCPU
        request that waits for every vCPU in guest mode."""
        yield from self.kick_all(flusher, "tlb_flushes")

    def _begin_no_vcpus(self):
        self.wait_for_sept_zap += 1

    def _end_no_vcpus(self):
        self.wait_for_sept_zap -= 1
        if not self.wait_for_sept_zap and self.sleepers:
            self.wake_sleepers()

    def wake_sleepers(self) -> None:
        """The vCPUs asleep in collapsed fastpath passes (fastpath.py) see the change."""
        sleepers, self.sleepers = self.sleepers, []
        for p in sleepers:
            p.wake()

    # ------------------------------------------------------------------ fault path
    def handle_ept_violation(self, v, gpa: int, pending: bool = False, level: int = LEVEL_4K):
        """tdx_handle_ept_violation for a private GPA. Returns RESUME, USERSPACE or STOPPED.
        One ``private_fault`` op; the loop is the merged local retry when the fault-site
        policy says Retry."""
        env, t0 = self.env, self.env.now
        attempt, busy, kicked, holding = 0, 0, False, False
        self.td.faults_in_flight.add(t0, +1)
        v.faults += 1
        outcome, result = "ok", RESUME
        try:
            while True:
                attempt += 1
                v.set_state("kvm" if attempt == 1 else "retry")
                yield env.timeout(self.duration(self.cal.kvm_fault_us))
                if self.td.stopped:
                    outcome, result = "unfinished", STOPPED
                    break
                if (gpa // PAGE_4K) * PAGE_4K in self.shared_gpas:
                    outcome, result = "exit_to_userspace", USERSPACE   # KVM_EXIT_MEMORY_FAULT
                    v.exit_reason = ("memory_fault", gpa)
                    break
                seq = self.invalidate_seq
                if pending:     # the exit says the guest touched a PENDING page
                    # (tdx_is_sept_violation_unexpected_pending): decided by the exit,
                    # not by the S-EPT now, which another vCPU's AUG may have changed
                    self.td.stop("vm_dead", v.name, "guest access before accept")
                    outcome, result = "vm_bugged", STOPPED
                    break
                if self.td.backing is not None:     # guest_memfd allocates and clears
                    yield from self.td.backing.back_page(v.name, gpa, self.huge.backing_size(level))
                st = yield from (self.huge.map(v, gpa, seq, level) if self.huge.active
                                 else self.map_private(v, gpa, seq))
                if holding:                 # the one retry after a kick is done
                    holding = False
                    self._end_no_vcpus()
                if st == TDX_SUCCESS:
                    break
                if st >= 0 and not tdx_operand_busy(st):
                    self.td.stop("vm_bugged", v.name, f"TDX_BUG_ON fault {st:#x}")
                    outcome, result = "vm_bugged", STOPPED
                    break
                busy += st >= 0
                leaf = {FROZEN: "FROZEN_SPTE", STALE: "MMU_INVALIDATE"}.get(st, v.last_leaf)
                action = self._decide(Site.FAULT, self._ctx(Site.FAULT, leaf, max(st, 0),
                                                            attempt, kicked, t0))
                if isinstance(action, Retry):   # the "retry" state already counts it
                    yield from self._backoff(action.delay_us, lost=False)
                    continue
                if isinstance(action, KickAndRetry) and not kicked:
                    kicked = holding = True   # wait_for_sept_zap stays set through the retry
                    self._begin_no_vcpus()
                    yield from self.kick_all(v.name)
                    continue
                if isinstance(action, ResumeGuest):
                    outcome = "resumed"
                elif isinstance(action, ExitToUserspace):
                    outcome, result = "exit_to_userspace", USERSPACE
                    v.exit_reason = ("error", max(st, 0))
                else:
                    self.td.stop("vm_bugged", v.name, f"KVM_BUG_ON fault after {attempt} tries")
                    outcome, result = "vm_bugged", STOPPED
                break
        finally:
            if holding:
                self._end_no_vcpus()
        self.td.faults_in_flight.add(env.now, -1)
        self.rec.op("private_fault", v.name, gpa, t0, env.now, attempt, busy, outcome)
        return result

    def map_private(self, v, gpa: int, seq: int):
        """The TDP MMU installing a 4 KB private mapping: SEPT.ADD for each missing
        level, then AUG, under mmu_lock (read, or write under ``mmu-lock-write``). A fault
        that an attribute change raced is stale (is_page_fault_stale): RET_PF_RETRY."""
        mode = WRITE if self.policy.sept_lock == "mmu_lock_write" else READ
        mmu_lock = self.mmu_lock
        if self.module.hot is not None:             # self.lock(v, mmu_lock, mode), in place
            yield from self.module.hot.touch_line(v.name, mmu_lock)
        ev = mmu_lock.acquire(mode)
        if ev is not None:
            yield from self.wait_as(v, ev, "mmu_wait")
        try:
            if seq != self.invalidate_seq or any(a <= gpa < b for a, b in self.invalidating):
                return STALE
            sept = self.module.sept
            for level in sept.missing_levels(gpa, LEVEL_4K):
                st = yield from self._install(v, gpa, level, self.module.tdh_mem_sept_add)
                if st != TDX_SUCCESS:
                    return st
            if sept.entry(gpa, LEVEL_4K).state in (State.PENDING, State.MAPPED):
                return TDX_SUCCESS    # another vCPU mapped it: RET_PF_SPURIOUS
            return (yield from self._install(v, gpa, LEVEL_4K, self.module.tdh_mem_page_aug))
        finally:
            self.mmu_lock.release(mode)

    def _install(self, v, gpa: int, level: int, seamcall):
        key = (level, gpa >> (12 + 9 * level))
        if key in self.frozen:
            return FROZEN
        self.frozen.add(key)          # try_cmpxchg64(sptep, old, FROZEN_SPTE)
        spin = self.policy.sept_lock == "vm_spinlock"    # _sept_seamcall, in place
        try:
            if spin:
                yield from self.lock(v, self.vm_spinlock, WRITE)
            t0 = self.env.now
            try:
                st = yield from seamcall(v.name, gpa, level)
            finally:
                if spin:
                    self.vm_spinlock.release(WRITE)
        finally:
            self.frozen.discard(key)
        self._count_call(v, st, t0)
        v.last_leaf = leaf_name(seamcall)
        return st

    def _sept_seamcall(self, v, site, seamcall, *args):
        """One S-EPT SEAMCALL, inside the VM-wide spinlock when the policy wants one."""
        spin = self.sept_lock == "vm_spinlock"
        if spin:
            yield from self.lock(v, self.vm_spinlock, WRITE)
        t0 = self.env.now
        try:
            st = yield from seamcall(*args)
        finally:
            if spin:
                self.vm_spinlock.release(WRITE)
        self._count_call(v, st, t0)
        return st

    def _count_call(self, v, st: int, t0: float) -> None:
        """Count one S-EPT SEAMCALL begun at ``t0``; a BUSY one's time is host CPU lost,
        unless the vCPU's "retry" state already accounts for it."""
        self.host_calls += 1
        if tdx_operand_busy(st):
            self.busy_calls += 1
            if v is None or v.state != "retry":
                self.lost_us += self.env.now - t0

    # ------------------------------------------------------------------ zap path
    def set_memory_attributes(self, v, gpa: int, size: int, shared: bool):
        """KVM_SET_MEMORY_ATTRIBUTES from the VMM thread of vCPU ``v``: private -> shared
        zaps every private leaf in the range. Returns False if the ioctl failed."""
        yield self.env.timeout(self.duration(self.cal.set_attributes_us))
        pages = range(gpa, gpa + size, PAGE_4K)
        ok = True
        span = (gpa, gpa + size)
        self.invalidating.append(span)              # mmu_invalidate_begin
        try:
            if shared:
                ok = yield from self._zap_range(v, pages)
            if ok:
                (self.shared_gpas.update if shared else self.shared_gpas.difference_update)(pages)
        finally:
            self.invalidating.remove(span)          # mmu_invalidate_end
            self.invalidate_seq += 1
        return ok

    def _zap_range(self, v, pages):
        """Zap every private leaf of ``pages`` under mmu_lock for write: the write lock
        waits for faults that hold it for read, so it sees the pages they install. Between
        two pages the zap yields the lock to waiters (tdp_mmu_iter_cond_resched); faults
        inside the range then find the invalidation in flight and retry."""
        zapper, zapped = f"zap:{v.name}", 0
        window = self.module.epoch_occupancy
        huge = self.huge.maps_2m
        if huge and not (yield from self.huge.split_for_zap(v, zapper, pages, False)):
            return False
        yield from self.lock(v, self.mmu_lock, WRITE)
        window.set_b(self.env.now, True)
        try:
            if huge and not (yield from self.huge.split_for_zap(v, zapper, pages, True)):
                return False
            sept = self.module.sept
            for p in pages:
                if self.mmu_lock.queue:
                    window.set_b(self.env.now, False)
                    self.mmu_lock.release(WRITE)
                    yield from self.lock(v, self.mmu_lock, WRITE)
                    window.set_b(self.env.now, True)
                e = sept.entry(p, LEVEL_4K)
                if e.state not in (State.PENDING, State.MAPPED, State.BLOCKED):
                    continue
                zapped += 1
                if not (yield from self.zap_4k(zapper, p)):
                    return False
            if zapped:
                yield from self.flush_remote_tlbs(zapper)
            return True
        finally:
            window.set_b(self.env.now, False)
            self.mmu_lock.release(WRITE)

    def zap_4k(self, zapper: str, gpa: int):
        """tdx_sept_remove_leaf_spte: BLOCK, TRACK + unconditional kick, REMOVE, WBINVD."""
        t0 = self.env.now
        tries, busy = 0, 0
        steps = []
        if self.module.sept.entry(gpa, LEVEL_4K).state is not State.BLOCKED:
            steps.append((self.module.tdh_mem_range_block, (zapper, gpa)))
        steps += [(self.module.tdh_mem_track, (zapper,)),
                  (self.module.tdh_mem_page_remove, (zapper, gpa))]
        outcome = "ok"
        for seamcall, args in steps:
            yield self.env.timeout(self.duration(self.cal.kvm_zap_step_us))
            st, n, b = yield from self.tdh_do_no_vcpus(zapper, seamcall, *args)
            tries, busy = tries + n, busy + b
            if st in (TDX_SUCCESS, TDX_GPA_RANGE_ALREADY_BLOCKED | OPERAND_ID_RCX):
                if seamcall == self.module.tdh_mem_track:
                    yield from self.kick_all(zapper)          # tdx_track: unconditional
                continue
            outcome = "vm_bugged" if self.td.stopped else "exit_to_userspace"
            break
        else:
            yield from self.module.tdh_phymem_page_wbinvd(zapper, gpa)
            self.rec.count("zapped_pages")
            if self.huge.dpamt:
                yield from self.huge.after_remove(zapper, gpa)
            if self.td.backing is not None:
                self.td.backing.released(gpa)
        self.rec.op("zap_4k", zapper, gpa, t0, self.env.now, tries, busy, outcome)
        return outcome == "ok"

    def tdh_do_no_vcpus(self, zapper: str, seamcall, *args):
        """The merged macro, generalised: call; on BUSY ask the zap-site policy (upstream:
        kick every vCPU with wait_for_sept_zap set, retry once, else KVM_BUG_ON).
        Returns (status, tries, busy)."""
        t0, tries, busy, kicked = self.env.now, 0, 0, False
        flag = False
        try:
            while True:
                tries += 1
                st = yield from self._sept_seamcall(None, Site.ZAP, seamcall, *args)
                if not tdx_operand_busy(st):
                    break
                busy += 1
                action = self._decide(Site.ZAP, self._ctx(Site.ZAP, leaf_name(seamcall), st,
                                                          tries, kicked, t0))
                if isinstance(action, Retry):
                    yield from self._backoff(action.delay_us)
                    continue
                if isinstance(action, KickAndRetry) and not kicked:
                    kicked = flag = True
                    self._begin_no_vcpus()
                    yield from self.kick_all(zapper)
                    continue
                if isinstance(action, ExitToUserspace):
                    self.rec.event(self.env.now, "ioctl_error", zapper, f"{st:#x}")
                    return st, tries, busy
                break
        finally:
            if flag:
                self._end_no_vcpus()
        if is_error(st):
            self.td.stop("vm_bugged", zapper, f"TDX_BUG_ON {leaf_name(seamcall)} {st:#x}")
        return st, tries, busy

    # ------------------------------------------------------------------ entry
    def enter(self, v):
        """tdx_vcpu_run up to VM entry. Returns (status, gpa): SUCCESS, an EPFS exit, or
        an error that goes to userspace."""
        t0, attempt, busy = None, 0, 0
        while True:
            if self.td.stopped:
                return None, -1
            # vcpu_enter_guest up to vcpu->mode = IN_GUEST_MODE; from here a kick waits for
            # this vCPU, and tdx_vcpu_run reads wait_for_sept_zap only after it
            yield self.env.timeout(self.duration(self.cal.kvm_entry_us))
            v.entering()
            if self.td.stopped or self.wait_for_sept_zap:
                v.failed_entry()            # back out of guest mode; a kick is served
                if self.td.stopped:
                    return None, -1
                v.set_state("zap_wait")     # tdx_vcpu_run: EXIT_FASTPATH_EXIT_HANDLED, loop
                if not (yield from v.fastpath.run()):   # fastpath.py: the passes
                    return None, -1
            t0 = self.env.now if t0 is None else t0
            attempt += 1
            t_try = self.env.now
            st, gpa = yield from self.module.tdh_vp_enter(v.tdv, v.guest.rip)
            self.host_calls += 1
            if st != TDX_SUCCESS:
                v.failed_entry()
            if not tdx_operand_busy(st):
                break
            busy += 1
            self.busy_calls += 1
            self.lost_us += self.env.now - t_try
            action = self._decide(Site.VP_ENTER, self._ctx(Site.VP_ENTER, "TDH.VP.ENTER", st,
                                                           attempt, False, t0))
            if isinstance(action, Retry):
                yield from self._backoff(action.delay_us)
                continue
            if isinstance(action, BugVm):
                self.td.stop("vm_bugged", v.name, f"KVM_BUG_ON VP.ENTER {st:#x}")
                st = None
            break
        outcome = "ok" if st in (TDX_SUCCESS, TDX_EXIT_EPT_VIOLATION) else \
            ("unfinished" if st is None else "exit_to_userspace")
        if attempt > 1 or outcome != "ok":
            self.rec.op("vp_enter", v.name, gpa, t0, self.env.now, attempt, busy, outcome)
        return st, gpa


__all__ = ["Kvm", "RESUME", "USERSPACE", "STOPPED"]
