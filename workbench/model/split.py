"""Layer 3 (model): KVM's 2 MB private leaves and Dynamic PAMT (domain.md §10.5-10.7).

``HugeKvm`` is KVM's part of the huge-page series (Yan Zhao's RFC/v2/v3, Sean's combined
RFC v5 "TDX: Dynamic PAMT + S-EPT Hugepage") and of Dynamic PAMT (Rick Edgecombe's v4):

- Mapping: where the guest accepts at 2 MB (an ACCEPT exit of level 2 MB) and the 2 MB
  range's one-way GUEST_INHIBIT flag is unset, KVM maps a 2 MB leaf (TDH.MEM.PAGE.AUG at
  2 MB). A fault of 4 KB level sets the flag: the range is never mapped 2 MB again (no
  promotion). While the flag is unset the fault takes the write mmu_lock ("Honor the
  guest's accept level", RFC v5) or, with ``host.accept_level_lock=read``, the read lock.
- Split (a conversion or zap of part of a 2 MB leaf), per the policy set's ``split_lock``:
  ``write`` (the series): under the write mmu_lock, BLOCK the 2 MB leaf, TRACK, kick,
  TDH.MEM.PAGE.DEMOTE, each through ``tdh_do_no_vcpus`` (BUSY: kick + one retry; other
  errors TDX_BUG_ON). ``read`` (the negative control of §10.7, a distribution kernel):
  under the read lock; a BLOCK that meets BUSY or ALREADY_BLOCKED takes the leaf for
  blocked by another thread and goes on to DEMOTE with no TRACK of its own; a DEMOTE
  error is TDX_BUG_ON. ``non_blocking`` (what-if): DEMOTE alone under the read lock.
- Dynamic PAMT: before a 4 KB mapping (outside mmu_lock) KVM takes a reference on the
  2 MB range's PAMT pages inside its global spinlock, issuing TDH.PHYMEM.PAMT.ADD for the
  first; when the last 4 KB page of a range is removed it issues PAMT.REMOVE inside the
  same spinlock. The spinlock waits, it never fails (vCPU state ``pamt_wait``).

Which step of the series each line follows is named in its docstring; where the model
simplifies, docs/model.md §5.2 says so.
"""
from __future__ import annotations

from ..policies import Site
from ..core.rng import Draws, stream
from ..core.tdx_errno import (OPERAND_ID_RCX, TDX_GPA_RANGE_ALREADY_BLOCKED, TDX_HPA_RANGE_NOT_FREE,
                         TDX_SUCCESS, is_error, tdx_operand_busy)
from .kvm_locks import READ, WRITE, QueuedRwLock
from .sept import LEAF_STATES, LEVEL_2M, LEVEL_4K, LEVEL_SIZE, PAGE_4K, State

MB2 = LEVEL_SIZE[LEVEL_2M]
FROZEN, STALE = -1, -2       # as host.py: RET_PF_RETRY without a SEAMCALL
SPLIT_FAILED = 1 << 63       # an error status: the split bugged the TD, the fault ends


class HugeKvm:
    """KVM's 2 MB leaves, splits and Dynamic PAMT refcounts for one TD."""

    def __init__(self, kvm):
        td = kvm.td
        self.kvm, self.env, self.module, self.cal, self.rec = kvm, kvm.env, kvm.module, \
            kvm.cal, kvm.rec
        host = td.config.host
        sizes = host.private_page_sizes
        self.maps_2m = sizes == "2m-force" or (sizes == "2m" and
                                               self.module.version.enhanced_demote)
        self.accept_lock = WRITE if host.accept_level_lock == "write" else READ
        self.dpamt = td.config.module.dynamic_pamt
        self.inhibit: set[int] = set()        # 2 MB ranges with GUEST_INHIBIT set
        self.refs: dict[int, int] = {}        # Dynamic PAMT: fault references per range
        self.pamt_spinlock = QueuedRwLock(self.env, "pamt_spinlock")
        self.pamt_wait_us = 0.0
        self.splits = self.demote_busy = self.block_busy = 0
        if self.maps_2m:    # DEMOTE's host-interrupt check draws from a stream of its own
            self.module.host_irq = Draws(stream(td.seed, "host-irq", td.replication))
            self.module.irq_interval_us = self.cal.host_irq_interval_us

    @property
    def active(self) -> bool:
        return self.maps_2m or self.dpamt

    # ------------------------------------------------------------------ build
    def prebuild(self, start: int, size: int) -> bool:
        """Build-time memory: 2 MB MAPPED leaves where KVM maps 2 MB (the guest accepted it
        at 2 MB before the run), else the caller's 4 KB leaves. With Dynamic PAMT a 4 KB
        range has its PAMT pages. True when this did the build."""
        sept = self.module.sept
        if not self.maps_2m or start % MB2 or size % MB2:
            if self.dpamt:
                self.module.pamt_present.update(range(start // MB2, -(-(start + size) // MB2)))
            return False
        for gpa in range(start, start + size, MB2):
            for level in range(3, LEVEL_2M, -1):
                sept.entry(gpa, level).state = State.NON_LEAF
            sept.entry(gpa, LEVEL_2M).state = State.MAPPED
        return True

    # ------------------------------------------------------------------ fault path
    def backing_size(self, level: int) -> int:
        """What guest_memfd allocates and clears for a fault at ``level`` (model/shared.py):
        a 2 MB folio where this KVM maps 2 MB, else a 4 KB page."""
        return MB2 if self.maps_2m and level == LEVEL_2M else PAGE_4K

    def map(self, v, gpa: int, seq: int, level: int):
        """The private fault: Dynamic PAMT reference, then the mapping (RET_PF_* as
        ``Kvm.map_private``: a status, FROZEN or STALE)."""
        r = gpa // MB2
        top = self.module.sept.entry(gpa, LEVEL_2M)
        splitting = self.maps_2m and r in self.inhibit and top.state in LEAF_STATES
        huge = self.maps_2m and r not in self.inhibit
        want_2m = huge and level == LEVEL_2M and top.state is not State.NON_LEAF
        if self.dpamt and not want_2m:
            # the PAMT reference comes first, outside mmu_lock, for the 4 KB pfn: with the
            # leaf mid-split its PAMT.ADD meets the DEMOTE (Yan Zhao on RFC v5 30/45)
            st = yield from self.pamt_get(v, gpa)
            if st:
                return st
            try:
                if splitting:
                    return FROZEN
                if not huge:
                    return (yield from self.kvm.map_private(v, gpa, seq))
                return (yield from self._map_honoring_level(v, gpa, seq, level, True))
            finally:
                self.refs[r] -= 1
        if splitting:
            return FROZEN      # a split of this leaf is in flight: RET_PF_RETRY until done
        if not huge:
            return (yield from self.kvm.map_private(v, gpa, seq))
        return (yield from self._map_honoring_level(v, gpa, seq, level, not self.dpamt))

    def _map_honoring_level(self, v, gpa: int, seq: int, level: int, pamt_ok: bool):
        """RFC v5 "Honor the guest's accept level": with GUEST_INHIBIT unset, under the
        write mmu_lock (or the read lock, the earlier variant), map 2 MB for a 2 MB accept;
        a 4 KB fault sets the flag and maps 4 KB (splitting a 2 MB leaf in the way)."""
        kvm, sept, r = self.kvm, self.module.sept, gpa // MB2
        mode = self.accept_lock
        self.rec.count(f"accept_level_{mode}_locks")
        yield from kvm.lock(v, kvm.mmu_lock, mode)
        try:
            if seq != kvm.invalidate_seq or any(a <= gpa < b for a, b in kvm.invalidating):
                return STALE
            top = sept.entry(gpa, LEVEL_2M)
            if top.state is State.BLOCKED:
                return FROZEN                      # a split holds it: RET_PF_RETRY
            if level == LEVEL_2M and top.state is not State.NON_LEAF and r not in self.inhibit:
                return (yield from self._install_levels(v, gpa, LEVEL_2M))
            if not pamt_ok:
                return FROZEN                      # became 4 KB meanwhile: again, with PAMT
            self.inhibit.add(r)                    # one-way
            if top.state in (State.PENDING, State.MAPPED):
                if mode == READ:
                    return FROZEN                  # a split needs the write lock
                ok = yield from self.split_one(f"fault:{v.name}", gpa)
                return TDX_SUCCESS if ok else SPLIT_FAILED
            return (yield from self._install_levels(v, gpa, LEVEL_4K))
        finally:
            kvm.mmu_lock.release(mode)

    def _install_levels(self, v, gpa: int, level: int):
        """SEPT.ADD for each missing level above ``level``, then AUG at ``level``."""
        kvm, sept = self.kvm, self.module.sept
        for lvl in sept.missing_levels(gpa, level):
            st = yield from kvm._install(v, gpa, lvl, self.module.tdh_mem_sept_add)
            if st != TDX_SUCCESS:
                return st
        if sept.entry(gpa, level).state in (State.PENDING, State.MAPPED):
            return TDX_SUCCESS                     # RET_PF_SPURIOUS
        st = yield from kvm._install(v, gpa, level, self.module.tdh_mem_page_aug)
        if st == TDX_SUCCESS and level == LEVEL_2M:
            self.rec.count("aug_2m")
        return st

    # ------------------------------------------------------------------ Dynamic PAMT
    def _spin(self, v):
        """Take KVM's global PAMT spinlock: it waits, never fails."""
        ev = self.pamt_spinlock.acquire(WRITE)
        if ev is None:
            return
        t0 = self.env.now
        yield from self.kvm.wait_as(v, ev, "pamt_wait")
        self.pamt_wait_us += self.env.now - t0

    def pamt_get(self, v, gpa: int):
        """tdx_pamt_get: a reference on the range, PAMT.ADD for the first (inside the
        spinlock). A BUSY PAMT.ADD (DEMOTE holds the PAMT entry) goes back to the fault
        loop as RET_PF_RETRY with its status."""
        r = gpa // MB2
        yield from self._spin(v)
        try:
            yield self.env.timeout(self.kvm.duration(self.cal.pamt_refcount_us))
            if r not in self.module.pamt_present:
                st = yield from self.kvm._sept_seamcall(v, Site.FAULT,
                                                        self.module.tdh_phymem_pamt_add,
                                                        v.name, gpa)
                v.last_leaf = "TDH.PHYMEM.PAMT.ADD"
                if st == TDX_HPA_RANGE_NOT_FREE | OPERAND_ID_RCX:
                    st = TDX_SUCCESS               # added meanwhile (a DEMOTE)
                if st:
                    return st
            self.refs[r] = self.refs.get(r, 0) + 1
            return TDX_SUCCESS
        finally:
            self.pamt_spinlock.release(WRITE)

    def after_remove(self, zapper: str, gpa: int):
        """tdx_pamt_put after a 4 KB page is removed: PAMT.REMOVE when no 4 KB leaf and no
        fault reference is left in the range (inside the spinlock)."""
        if not self.dpamt:
            return
        r, sept = gpa // MB2, self.module.sept
        if self.refs.get(r, 0) or r not in self.module.pamt_present:
            return
        if any(sept.entry(p, LEVEL_4K).state is not State.FREE
               for p in range(r * MB2, (r + 1) * MB2, PAGE_4K)):
            return
        t0 = self.env.now
        yield from self._spin(None)
        try:
            yield self.env.timeout(self.kvm.duration(self.cal.pamt_refcount_us))
            if not self.refs.get(r, 0) and r in self.module.pamt_present:
                yield from self.kvm._sept_seamcall(None, Site.ZAP,
                                                   self.module.tdh_phymem_pamt_remove,
                                                   zapper, gpa)
        finally:
            self.pamt_spinlock.release(WRITE)
        self.kvm.lost_us += self.env.now - t0

    # ------------------------------------------------------------------ split
    def leaves_in(self, pages) -> list[int]:
        """2 MB-aligned GPAs of the 2 MB leaves that ``pages`` fall into."""
        sept, out = self.module.sept, []
        for r in sorted({p // MB2 for p in pages}):
            if sept.entry(r * MB2, LEVEL_2M).state in LEAF_STATES:
                out.append(r * MB2)
        return out

    def split_for_zap(self, v, zapper: str, pages, write_held: bool):
        """Split every 2 MB leaf that a zap of ``pages`` cuts into. Called twice by the zap
        path: before it takes the write mmu_lock (read-lock policies split then) and once
        it holds it (the series). False if a split failed."""
        if not self.maps_2m:
            return True
        mode = self.kvm.policy.split_lock
        if write_held != (mode == "write"):
            return True
        if write_held:
            for gpa in self.leaves_in(pages):
                self.inhibit.add(gpa // MB2)
                if not (yield from self.split_one(zapper, gpa)):
                    return False
            return True
        kvm = self.kvm
        yield from kvm.lock(v, kvm.mmu_lock, READ)
        try:
            for gpa in self.leaves_in(pages):
                self.inhibit.add(gpa // MB2)
                ok = yield from (self._split_non_blocking(zapper, gpa) if mode == "non_blocking"
                                 else self._split_read(zapper, gpa))
                if not ok:
                    return False
            return True
        finally:
            kvm.mmu_lock.release(READ)

    def split_one(self, zapper: str, gpa: int):
        """The series, under the write mmu_lock: BLOCK the 2 MB leaf, TRACK + kick, DEMOTE,
        each through tdh_do_no_vcpus. True when the leaf is split."""
        kvm, m, t0 = self.kvm, self.module, self.env.now
        pending = m.sept.entry(gpa, LEVEL_2M).state is State.PENDING
        steps = []
        if m.sept.entry(gpa, LEVEL_2M).state is not State.BLOCKED:
            steps.append((m.tdh_mem_range_block, (zapper, gpa, LEVEL_2M)))
        steps += [(m.tdh_mem_track, (zapper,)),
                  (m.tdh_mem_page_demote, (zapper, gpa, pending))]
        tries = busy = 0
        outcome = "ok"
        for seamcall, args in steps:
            yield self.env.timeout(kvm.duration(self.cal.kvm_zap_step_us))
            st, n, b = yield from kvm.tdh_do_no_vcpus(zapper, seamcall, *args)
            tries, busy = tries + n, busy + b
            if seamcall == m.tdh_mem_page_demote:
                self.demote_busy += b
            if st in (TDX_SUCCESS, TDX_GPA_RANGE_ALREADY_BLOCKED | OPERAND_ID_RCX):
                if seamcall == m.tdh_mem_track:
                    yield from kvm.kick_all(zapper)
                continue
            outcome = "vm_bugged" if kvm.td.stopped else "exit_to_userspace"
            break
        self.splits += outcome == "ok"
        self._done(zapper, gpa, t0, tries, busy, outcome)
        return outcome == "ok"

    def _split_read(self, zapper: str, gpa: int):
        """The distribution kernel (§10.7), under the read mmu_lock: BLOCK is retried while
        BUSY; ALREADY_BLOCKED is taken for "another thread splits it", so it goes on to
        DEMOTE with no TRACK of its own. Only its own successful BLOCK is tracked (and
        kicked). No frozen SPTE keeps two splitters of one leaf apart."""
        kvm, m, t0 = self.kvm, self.module, self.env.now
        sept = m.sept
        if sept.entry(gpa, LEVEL_2M).state not in LEAF_STATES:
            return True                            # another thread split it
        pending = sept.entry(gpa, LEVEL_2M).state is State.PENDING
        tries = busy = 0
        while True:
            tries += 1
            st = yield from kvm._sept_seamcall(None, Site.ZAP, m.tdh_mem_range_block,
                                               zapper, gpa, LEVEL_2M)
            if not tdx_operand_busy(st):
                break
            busy += 1
            self.block_busy += 1
            self.rec.event(self.env.now, "split_block_busy", zapper, f"{st:#x}")
            yield self.env.timeout(kvm.duration(self.cal.kvm_zap_step_us))
        if st == TDX_SUCCESS:
            tries += 1
            st = yield from kvm._sept_seamcall(None, Site.ZAP, m.tdh_mem_track, zapper)
            busy += tdx_operand_busy(st)
            yield from kvm.kick_all(zapper)
        elif st == TDX_GPA_RANGE_ALREADY_BLOCKED | OPERAND_ID_RCX:
            self.rec.event(self.env.now, "split_block_already", zapper, f"{st:#x}")
        elif sept.entry(gpa, LEVEL_2M).state not in LEAF_STATES:
            self._done(zapper, gpa, t0, tries, busy, "ok")
            return True                            # split meanwhile: the walk stops lower
        else:
            return self._fail(zapper, gpa, t0, tries, busy, "RANGE.BLOCK", st)
        return (yield from self._demote_retrying(zapper, gpa, pending, t0, tries, busy, False))

    def _split_non_blocking(self, zapper: str, gpa: int):
        """What-if NON-BLOCKING-RESIZE: DEMOTE of the mapped leaf alone, with the 2 MB
        mirror SPTE frozen (as tdp_mmu_split_huge_page does under the read lock), so a
        second splitter of the same leaf waits for the first."""
        key, t0 = (LEVEL_2M, gpa // MB2), self.env.now
        while key in self.kvm.frozen:
            yield self.env.timeout(self.kvm.duration(self.cal.kvm_zap_step_us) + 0.1)
        pending = self.module.sept.entry(gpa, LEVEL_2M).state is State.PENDING
        self.kvm.frozen.add(key)
        try:
            return (yield from self._demote_retrying(zapper, gpa, pending, t0, 0, 0, True))
        finally:
            self.kvm.frozen.discard(key)

    def _demote_retrying(self, zapper, gpa, pending, t0, tries, busy, non_blocking):
        """DEMOTE under the read lock: BUSY retried (at once, as often as needed); any other error
        TDX_BUG_ON; a leaf another thread split meanwhile is done."""
        kvm, m = self.kvm, self.module
        while True:
            if m.sept.entry(gpa, LEVEL_2M).state not in LEAF_STATES:
                self._done(zapper, gpa, t0, tries, busy, "ok")
                return True
            tries += 1
            st = yield from kvm._sept_seamcall(None, Site.ZAP, m.tdh_mem_page_demote, zapper,
                                               gpa, pending, True, non_blocking)
            if st == TDX_SUCCESS:
                self.splits += 1
                self._done(zapper, gpa, t0, tries, busy, "ok")
                return True
            if not tdx_operand_busy(st):
                return self._fail(zapper, gpa, t0, tries, busy, "PAGE.DEMOTE", st)
            busy += 1
            self.demote_busy += 1
            yield self.env.timeout(kvm.duration(self.cal.kvm_zap_step_us))

    def _fail(self, zapper, gpa, t0, tries, busy, leaf, st) -> bool:
        if is_error(st) or tdx_operand_busy(st):
            self.kvm.td.stop("vm_bugged", zapper, f"TDX_BUG_ON TDH.MEM.{leaf} {st:#x}")
        self._done(zapper, gpa, t0, tries, busy, "vm_bugged")
        return False

    def _done(self, zapper, gpa, t0, tries, busy, outcome) -> None:
        self.rec.op("split_2m", zapper, gpa, t0, self.env.now, tries, busy, outcome)

    # ------------------------------------------------------------------ results
    def summary(self, horizon: float) -> dict:
        sept = self.module.sept
        return {"splits": self.splits, "demote_busy": self.demote_busy,
                "split_block_busy": self.block_busy,
                "pages_2m_mapped": sept.count(State.MAPPED, LEVEL_2M),
                "aug_2m": self.rec.counts.get("aug_2m", 0),
                "pamt_adds": self.rec.counts.get("pamt_adds", 0),
                "pamt_removes": self.rec.counts.get("pamt_removes", 0),
                "pamt_wait_ms": self.pamt_wait_us / 1000.0,
                "accept_level_write_locks": self.rec.counts.get("accept_level_write_locks", 0),
                "td_failed": int(bool(self.kvm.td.stopped))}
