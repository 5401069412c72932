"""Layer 3 (model): TDH.VP.ENTER, TD exits and zero-step mitigation (domain.md §3, §9).

A mixin of :class:`workbench.model.module.TdxModule`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING


from ..core.tdx_errno import (
    TDX_EXIT_EPT_VIOLATION, TDX_SUCCESS,
)
from .locks import Mode, Side

if TYPE_CHECKING:
    from .tdvps import TdVcpu

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST, GUEST = Side.HOST, Side.GUEST


class VpEntry:
    """Entering and leaving the TD: epoch refcounts, zero-step's tree lock, IPIs."""

    def tdh_vp_enter(self, v: TdVcpu, rip: int):
        """Enter the TD at ``rip``. Returns ``(status, gpa)``: SUCCESS (the vCPU runs),
        BUSY|TD_EPOCH, BUSY|SEPT_TREE (zero-step armed, tree taken), or a synthesised
        EPT-violation exit with the first listed GPA that would still fault (EPFS)."""
        env, t0, cal = self.env, self.env.now, self.cal
        yield env.timeout(self.duration(cal.seamcall_entry_us))
        locks = [(self.tdr, SHARED), (v.tdvpr, SHARED), (self.epoch_lock, SHARED)]
        st, taken = ((yield from self.hot.take(self, v.name, locks, HOST)) if self.hot
                     else self._take(v.name, locks, HOST))
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
        if v.epf_gpas:          # zero_step_armed: exclusive (1.5.01-1.5.06) or shared (1.5.08+)
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
        if rip != v.entry_rip and (v.epf_count or v.epf_gpas):     # note_rip, in place
            v.epf_count, v.epf_gpas = 0, []
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
