"""Layer 3 (model): the module's huge-page and Dynamic PAMT leaves (domain.md §10.5-10.6):
TDH.MEM.PAGE.DEMOTE, TDH.PHYMEM.PAMT.ADD and TDH.PHYMEM.PAMT.REMOVE.

A mixin of :class:`workbench.model.module.TdxModule`, like ``seamcalls.py``. Locks, their
order and the statuses follow the per-version sources (murrowow/tdx-concurrency; DEMOTE
checked in 1.5.01 c6f9877 and 1.5.25 c71d4f6, PAMT.ADD from 1.5.16, checked in 1.5.25;
docs/model.md §5.2-5.3 and §10.1):

- DEMOTE (``tdh_mem_page_demote.c``): TDR, op_state and the S-EPT tree shared, the 2 MB
  entry's host lock; the leaf must be a leaf (TDX_EPT_ENTRY_STATE_INCORRECT), BLOCKED
  (TDX_GPA_RANGE_NOT_BLOCKED) and TLB-tracked (TDX_TLB_TRACKING_NOT_DONE), all with RCX;
  ``sept_split_entry``; the host-interrupt check (TDX_INTERRUPTED_RESTARTABLE; from 1.5.20
  ``check_host_interrupt_and_hp_bit`` also TDX_INTERRUPTED_BUSY while the tree's
  HOST_PRIORITY bit is set); then ``pamt_demote`` takes the 2 MB PAMT entry exclusive
  (``acquire_sharex_lock_hp_ex``; BUSY with RCX) and writes the 512 4 KB PAMT entries
  under it. The new 4 KB leaves keep the state of the 2 MB leaf, unblocked.
- PAMT.ADD (``tdh_phymem_pamt_add.c``): ``pamt_walk(..., TDX_LOCK_EXCLUSIVE, PT_2MB)`` (the
  1 GB entry shared, the 2 MB entry exclusive: BUSY with RCX); TDX_HPA_RANGE_NOT_FREE
  unless the 2 MB entry is PT_NDA: the range has its 4 KB PAMT pages already (PT_PAMT) or
  is a 2 MB TD page (PT_REG). PAMT.REMOVE is modelled with the same walk.
- With Dynamic PAMT a 4 KB AUG in a range without PAMT pages fails with
  TDX_MISSING_PAMT_PAGE_PAIR (``helpers.c``: the walk stops at a 2 MB entry of type NDA).

Model choices (docs/model.md §5.2): guest-physical and host-physical 2 MB ranges coincide
(one PAMT range per 2 MB of GPA); an interrupted DEMOTE is charged its entry, split and exit;
the "non-blocking resize" what-if (a call form no module has) skips the BLOCKED and
TLB-tracking checks.
"""
from __future__ import annotations

from ..core.tdx_errno import (
    OPERAND_ID_OP_STATE, OPERAND_ID_RCX, OPERAND_ID_RDX, busy, TDX_EPT_ENTRY_STATE_INCORRECT,
    TDX_GPA_RANGE_NOT_BLOCKED,
    TDX_HPA_RANGE_NOT_FREE, TDX_INTERRUPTED_BUSY, TDX_INTERRUPTED_RESTARTABLE,
    TDX_MISSING_PAMT_PAGE_PAIR, TDX_SUCCESS, TDX_TLB_TRACKING_NOT_DONE,
)
from .locks import Mode, SharexLock, Side, Word
from .sept import LEAF_STATES, LEVEL_2M, LEVEL_4K, LEVEL_SIZE, PAGE_4K, State

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST = Side.HOST
MB2 = LEVEL_SIZE[LEVEL_2M]
# DEMOTE's work (``demote_us``) in the source's two parts, by the bytes each writes:
# sept_split_entry fills a new S-EPT page (512 entries of 8 bytes) before the host-interrupt
# check, pamt_demote 512 PAMT entries of 16 bytes under the 2 MB PAMT entry's lock
SPLIT_SHARE = 1.0 / 3.0


class HugeSeamcalls:
    """DEMOTE, PAMT.ADD, PAMT.REMOVE and the PAMT state they share with AUG."""

    def _init_huge(self) -> None:
        self.pamt_locks: dict[int, SharexLock] = {}   # 2 MB range -> its PAMT entry lock
        self.pamt_present: set[int] = set()            # ranges that have 4 KB PAMT pages
        self.host_irq = None    # a Draws of uniforms, set by KVM when DEMOTE can run
        self.irq_interval_us = 0.0

    def pamt_lock(self, gpa: int) -> SharexLock:
        """The 2 MB PAMT entry of ``gpa``'s range (created on first use)."""
        r = gpa // MB2
        lk = self.pamt_locks.get(r)
        if lk is None:
            lk = self.pamt_locks[r] = SharexLock(f"pamt[2M:{r:#x}]", OPERAND_ID_RCX)
            if self.hot:
                lk.line = self.hot.line(lk.name, "PAMT")
        return lk

    def _pamt_1g(self, gpa: int) -> list:
        """The 1 GB PAMT entry that ``pamt_walk`` takes shared first (a word: no call here
        takes it exclusive); booked only with the hot lines on."""
        if not self.hot:
            return []
        g = gpa >> 30
        w = self.pamt_1g.get(g)
        if w is None:
            w = self.pamt_1g[g] = Word(f"pamt[1G:{g:#x}]")
            w.line = self.hot.line(w.name, "PAMT")
        return [(w, None)]

    def pamt_locks_for(self, gpa: int, level: int) -> list:
        """AUG's walk of the new page's PAMT (``check_and_lock_free_range_hpa``): the 1 GB
        entry shared, the 2 MB entry shared for a 4 KB page, exclusive for a 2 MB page (its
        leaf). The 2 MB entry decides something only where DEMOTE and PAMT.ADD take it
        exclusive, so without the hot lines it is tried only with Dynamic PAMT or a 2 MB
        page. The new page's own 4 KB entry is not modelled (no other walk reaches it)."""
        if level == LEVEL_2M:
            return self._pamt_1g(gpa) + [(self.pamt_lock(gpa), EXCLUSIVE)]
        if self.hot or self.opts.dynamic_pamt:
            return self._pamt_1g(gpa) + [(self.pamt_lock(gpa), SHARED)]
        return []

    def pamt_missing(self, gpa: int, level: int) -> int:
        """TDX_MISSING_PAMT_PAGE_PAIR for a 4 KB page of a range without PAMT pages."""
        if self.opts.dynamic_pamt and level == LEVEL_4K and gpa // MB2 not in self.pamt_present:
            return TDX_MISSING_PAMT_PAGE_PAIR | OPERAND_ID_RCX
        return TDX_SUCCESS

    def tdh_mem_page_demote(self, caller: str, gpa: int, pending: bool = False,
                            pamt_pages: bool = True, non_blocking: bool = False):
        """Split a blocked, TLB-tracked 2 MB leaf into 512 4 KB leaves of its state.
        ``pending``: the leaf was PENDING before BLOCK (the module keeps PENDING_BLOCKED;
        this model's BLOCKED does not, so the caller says). ``pamt_pages``: KVM passed the
        two PAMT pages Dynamic PAMT needs. ``non_blocking``: the what-if NON-BLOCKING-RESIZE
        form (domain §10.5, a future feature): a mapped leaf, no BLOCK or TRACK first.

        In the source's order (``tdh_mem_page_demote.c``): TDR, op_state and the tree
        shared, the 2 MB entry's host lock; the entry's state, BLOCKED and TLB-tracked
        checks; the new S-EPT page's PAMT entry (not modelled: see docs/model.md §5.2);
        the split of the entry (``demote_us``); the host-interrupt check; then
        ``pamt_demote`` takes the range's 2 MB PAMT entry exclusive; commit, the child
        count's xadd, the releases."""
        gpa = gpa // MB2 * MB2
        env, cal, t0 = self.env, self.cal, self.env.now
        yield env.timeout(self.duration(cal.seamcall_entry_us))
        e, err = self._walk_to(gpa, LEVEL_2M)
        locks = self._entry_locks(e, SHARED)
        hot = self.hot
        if hot:
            st, taken, owed = yield from hot.take(self, caller, locks, HOST, OPERAND_ID_RDX)
        else:
            (st, taken), owed = self._take(caller, locks, HOST, OPERAND_ID_RDX), 0.0
        if not st and self._internal and self._internal.next() < self.opts.busy_without_vcpus:
            st = busy(OPERAND_ID_OP_STATE)     # what-if: an internal holder, no vCPU needed
        if not st:
            st = err or self._demote_check(e, non_blocking, pamt_pages)
        if not st:
            yield env.timeout(self.duration(cal.demote_us * SPLIT_SHARE))  # sept_split_entry
            st = self._demote_interrupted()
        if not st:
            pamt = self._pamt_1g(gpa) + [(self.pamt_lock(gpa), EXCLUSIVE)]
            if hot:
                st, more, o = yield from hot.take(self, caller, pamt, HOST)
                owed += o
            else:
                st, more = self._take(caller, pamt, HOST)
            taken = taken + more
        if not st:     # pamt_demote: 512 PAMT entries written under the 2 MB entry's lock
            yield env.timeout(self.duration(cal.demote_us * (1.0 - SPLIT_SHARE)))
            state = e.state if e.state is not State.BLOCKED else (
                State.PENDING if pending else State.MAPPED)
            e.state = State.NON_LEAF
            for p in range(gpa, gpa + MB2, PAGE_4K):
                self.sept.entry(p, LEVEL_4K).state = state
            if self.opts.dynamic_pamt:
                self.pamt_present.add(gpa // MB2)
            self.rec.count("demotes")
        if hot:
            owed += hot.let_go(caller, ([(self.chldcnt, None)] if not st else []) + taken[::-1])
            if owed:
                yield from hot.pay(caller, owed)
        else:
            self._release(caller, taken)
        yield env.timeout(self.duration(cal.seamcall_exit_us))
        self.rec.call(t0, env.now, "TDH.MEM.PAGE.DEMOTE", caller, gpa, st)
        return st

    def _demote_check(self, e, non_blocking: bool, pamt_pages: bool) -> int:
        if e.state not in LEAF_STATES:
            return TDX_EPT_ENTRY_STATE_INCORRECT | OPERAND_ID_RCX
        if not non_blocking:
            if e.state is not State.BLOCKED:
                return TDX_GPA_RANGE_NOT_BLOCKED | OPERAND_ID_RCX
            if not self.tlb_tracked(e.bepoch):
                return TDX_TLB_TRACKING_NOT_DONE | OPERAND_ID_RCX
        if self.opts.dynamic_pamt and not pamt_pages:
            return TDX_MISSING_PAMT_PAGE_PAIR | OPERAND_ID_RCX
        return TDX_SUCCESS

    def _demote_interrupted(self) -> int:
        """check_host_interrupt_and_hp_bit: a host interrupt that arrives during DEMOTE's
        work (Poisson at ``host_irq_interval_us``) ends it, unless the module has
        ENHANCED_DEMOTE_INTERRUPTIBILITY; HP set on the tree (newer modules) likewise."""
        if self.version.tree_lock_hp and getattr(self.tree_lock, "host_priority", False):
            return TDX_INTERRUPTED_BUSY
        if self.version.enhanced_demote or self.host_irq is None or not self.irq_interval_us:
            return TDX_SUCCESS
        p = 1.0 - pow(2.718281828459045,
                      -self.cal.demote_us * SPLIT_SHARE / self.irq_interval_us)
        return TDX_INTERRUPTED_RESTARTABLE if self.host_irq.next() < p else TDX_SUCCESS

    def tdh_phymem_pamt_add(self, caller: str, gpa: int):
        """Add the two 4 KB PAMT pages of a 2 MB range (Dynamic PAMT):
        ``pamt_walk(..., TDX_LOCK_EXCLUSIVE, PT_2MB)`` (1 GB entry shared, 2 MB entry
        exclusive), then TDX_HPA_RANGE_NOT_FREE unless the walk reached the 2 MB level and
        the entry is PT_NDA: the range already has PAMT pages (PT_PAMT) or is a 2 MB TD page
        (PT_REG; this model's host-physical range is the guest-physical one)."""
        r = gpa // MB2

        def plan():
            def effect():
                self.pamt_present.add(r)
                self.rec.count("pamt_adds")

            def check():
                if r in self.pamt_present or self.sept.entry(
                        r * MB2, LEVEL_2M).state in LEAF_STATES:
                    return TDX_HPA_RANGE_NOT_FREE | OPERAND_ID_RCX
                return TDX_SUCCESS
            return (self._pamt_1g(gpa) + [(self.pamt_lock(gpa), EXCLUSIVE)], check,
                    self.cal.pamt_add_us, effect)
        return (yield from self._seamcall("TDH.PHYMEM.PAMT.ADD", caller, gpa, plan, None))

    def tdh_phymem_pamt_remove(self, caller: str, gpa: int):
        """Take back the PAMT pages of a 2 MB range no 4 KB page uses any more."""
        r = gpa // MB2

        def plan():
            def effect():
                self.pamt_present.discard(r)
                self.rec.count("pamt_removes")
            return (self._pamt_1g(gpa) + [(self.pamt_lock(gpa), EXCLUSIVE)],
                    lambda: TDX_SUCCESS, self.cal.pamt_add_us, effect)
        return (yield from self._seamcall("TDH.PHYMEM.PAMT.REMOVE", caller, gpa, plan, None))
