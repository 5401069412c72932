"""Layer 3 (model): the host's TDH.MEM.* SEAMCALLs of the TDX module (domain.md §2).

A mixin of :class:`workbench.model.module.TdxModule`: each leaf gives its plan (locks,
legality check, locked cost, effect) to ``TdxModule._seamcall`` and returns that generator
(not a ``yield from`` around it: one generator level less on every resume of the hot path).
"""
from __future__ import annotations


from ..core.tdx_errno import (
    OPERAND_ID_OP_STATE, OPERAND_ID_RCX, OPERAND_ID_RDX, TDX_EPT_ENTRY_STATE_INCORRECT,
    TDX_GPA_RANGE_ALREADY_BLOCKED,
    TDX_GPA_RANGE_NOT_BLOCKED, TDX_PREVIOUS_TLB_EPOCH_BUSY,
    TDX_SUCCESS, TDX_TLB_TRACKING_NOT_DONE, busy,
)
from .locks import Mode, Side
from .sept import LEAF_STATES, LEVEL_4K, State
from .fastenum import members

State = members(State)      # plain attribute reads on the hot path (fastenum.py)

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST, GUEST = Side.HOST, Side.GUEST


class MemSeamcalls:
    """TDH.MEM.SEPT.ADD, PAGE.AUG, PAGE.ADD, RANGE.BLOCK, TRACK, PAGE.REMOVE, WBINVD."""

    def _entry_locks(self, e, tree: Mode) -> list:
        """TDR shared (with the hot lines: its PAMT walk and op_state too), the S-EPT tree
        (``lock_sept_check_and_walk_private_gpa``), the entry's host lock
        (``sept_lock_acquire_host``, if the walk reached the entry)."""
        return self._tdr_sh + [(self.tree_lock, tree)] + ([(e.lock, EXCLUSIVE)] if e else [])

    def tdh_mem_sept_add(self, caller: str, gpa: int, level: int):
        """Turn the FREE entry at ``level`` into a non-leaf (adds the table below it)."""
        return self._add_or_aug("TDH.MEM.SEPT.ADD", caller, gpa, level, False)

    def tdh_mem_page_aug(self, caller: str, gpa: int, level: int = LEVEL_4K):
        """Map a new private page PENDING (the guest must ACCEPT it)."""
        return self._add_or_aug("TDH.MEM.PAGE.AUG", caller, gpa, level, True)

    def _add_or_aug(self, leaf: str, caller: str, gpa: int, level: int, aug: bool):
        """``TdxModule._seamcall`` for SEPT.ADD and PAGE.AUG, the fault path's calls, with
        their plan, check and effect in place of closures (same steps, same draws)."""
        env, cal, duration = self.env, self.cal, self.duration
        t0 = env._now
        yield env.timeout(duration(cal.seamcall_entry_us))
        e, err = self._walk_to(gpa, level)
        locks = self._entry_locks(e, SHARED)
        hot = self.hot
        if hot:
            st, taken, owed = yield from hot.take(self, caller, locks, HOST, OPERAND_ID_RDX)
        else:
            (st, taken), owed = self._take(caller, locks, HOST, OPERAND_ID_RDX), 0.0
        if not st and self._internal and self._internal.next() < self.opts.busy_without_vcpus:
            st = busy(OPERAND_ID_OP_STATE)     # what-if: an internal holder, no vCPU needed
        if not st:
            st = self._must_be_free(e, err)    # the entry, read again under its lock
        if not st and aug:    # then check_and_lock_free_range_hpa: the new page's PAMT walk
            pamt = self.pamt_locks_for(gpa, level)
            if pamt:
                if hot:
                    st, more, o = yield from hot.take(self, caller, pamt, HOST)
                    owed += o
                else:
                    st, more = self._take(caller, pamt, HOST)
                taken = taken + more
            if not st:
                st = self.pamt_missing(gpa, level)
        if not st:
            yield env.timeout(duration(cal.page_aug_us if aug else cal.sept_add_us))
            if aug:
                e.state, e.accept_counter = State.PENDING, 0
                self.rec.count("aug_ok")
            else:
                e.state = State.NON_LEAF
        if hot:     # on success the child count's xadd, then the releases
            owed += hot.let_go(caller, ([(self.chldcnt, None)] if not st else []) + taken[::-1])
            if owed:
                yield from hot.pay(caller, owed)
        else:
            self._release(caller, taken)
        yield env.timeout(duration(cal.seamcall_exit_us))
        self.rec.call(t0, env.now, leaf, caller, gpa, st)
        return st

    def tdh_mem_page_add(self, caller: str, gpa: int):
        """Build-time add of an accepted page. TDR exclusive: BUSY while any vCPU runs."""
        def plan():
            e, err = self._walk_to(gpa, LEVEL_4K)

            def effect():
                e.state = State.MAPPED
            return ([(self.tdr, EXCLUSIVE)], lambda: self._must_be_free(e, err),
                    self.cal.page_aug_us, effect)
        return self._seamcall("TDH.MEM.PAGE.ADD", caller, gpa, plan, OPERAND_ID_RDX)

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
        return self._seamcall("TDH.MEM.RANGE.BLOCK", caller, gpa, plan, OPERAND_ID_RDX)

    def tdh_mem_track(self, caller: str):
        """Bump the TD epoch; BUSY on the epoch lock, PREVIOUS_TLB_EPOCH_BUSY while a vCPU
        still runs in the previous epoch."""
        def check():
            prev = self.epoch_refcount[(self.epoch - 1) & 1]
            return TDX_PREVIOUS_TLB_EPOCH_BUSY if self.epoch > 0 and prev else 0

        def effect():
            self.epoch += 1

        def plan():
            return (self._tdr_sh + [(self.epoch_lock, EXCLUSIVE)], check,
                    self.cal.track_us, effect)
        return self._seamcall("TDH.MEM.TRACK", caller, -1, plan, OPERAND_ID_RCX)

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
        return self._seamcall("TDH.MEM.PAGE.REMOVE", caller, gpa, plan, OPERAND_ID_RDX,
                              [(self.chldcnt, None)])

    def tdh_phymem_page_wbinvd(self, caller: str, gpa: int):
        """Write back and invalidate a removed page's cache lines. No TD lock."""
        t0, cal = self.env.now, self.cal
        if self.bandwidth:      # the page's dirty lines go back to memory
            yield from self.bandwidth.zero(caller, 4096)
        yield self.env.timeout(self.duration(cal.seamcall_entry_us) + self.duration(cal.wbinvd_4k_us)
                               + self.duration(cal.seamcall_exit_us))
        self.rec.call(t0, self.env.now, "TDH.PHYMEM.PAGE.WBINVD", caller, gpa, TDX_SUCCESS)
        return TDX_SUCCESS
