"""Layer 3 (model): TDH.VP.ENTER, TD exits and zero-step mitigation (domain.md §3, §9).

A mixin of :class:`workbench.model.module.TdxModule`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING


from ..core.tdx_errno import (
    TDX_EXIT_EPT_VIOLATION, TDX_SUCCESS,
)
from .locks import Mode, Side
from .shared import cpu_of

if TYPE_CHECKING:
    from .tdvps import TdVcpu

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST, GUEST = Side.HOST, Side.GUEST


class VpEntry:
    """Entering and leaving the TD: epoch refcounts, zero-step's tree lock, IPIs."""

    def tdh_vp_enter(self, v: TdVcpu, rip: int):
        """Enter the TD at ``rip``. Returns ``(status, gpa)``: SUCCESS (the vCPU runs),
        BUSY|TD_EPOCH, BUSY|SEPT_TREE (zero-step armed, tree taken), or a synthesised
        EPT-violation exit with the first listed GPA that would still fault (EPFS).

        In the order of ``tdh_vp_enter.c``: TDVPR and the implicit TDR shared, op_state
        shared (with the hot lines), ``adjust_tlb_tracking_state`` (epoch lock shared, the
        refcount's xadd, release), ``td_entry_stepping_filter`` (the tree, when armed),
        op_state released, the tree released just before VM entry; TDR and TDVPR stay held
        until the TD exits."""
        env, t0, cal, hot, name = self.env, self.env.now, self.cal, self.hot, v.name
        yield env.timeout(self.duration(cal.seamcall_entry_us))
        if hot:
            locks = [(v.tdvpr, SHARED), (self.tdr, SHARED), (self.op_state, SHARED),
                     (self.epoch_lock, SHARED)]
            st, taken, owed = yield from hot.take(self, name, locks, HOST)
        else:
            locks = [(v.tdvpr, SHARED), (self.tdr, SHARED), (self.epoch_lock, SHARED)]
            (st, taken), owed = self._take(name, locks, HOST), 0.0
        if st:
            if owed:
                yield from hot.pay(name, owed)
            return (yield from self._enter_failed(v, t0, st, -1))
        epoch_shared = self.epoch_lock.shared_owners
        if len(epoch_shared) == 1:
            self.epoch_occupancy.set_a(env.now, True)
        yield env.timeout(self.duration(cal.epoch_hold_us))
        parity = self.epoch & 1
        self.epoch_refcount[parity] += 1
        owed = self._epoch_let_go(name)
        held = taken[:-1]                   # TDVPR, TDR (, op_state)
        if v.epf_gpas:          # zero_step_armed: exclusive (1.5.01-1.5.16) or shared (1.5.20+)
            tree = [(self.tree_lock, self.version.zero_step_tree)]
            if hot:
                if owed:
                    yield from hot.pay(name, owed)
                st, _, owed = yield from hot.take(self, name, tree, HOST)
            else:
                st = self.tree_lock.try_acquire(name, tree[0][1], HOST)
            if st:
                owed += self._revert_and_let_go(name, parity, held)
                if owed:
                    yield from hot.pay(name, owed)
                return (yield from self._enter_failed(v, t0, st, -1))
            yield env.timeout(self.duration(cal.zero_step_walk_us * len(v.epf_gpas)))
            faulting = next((g for g in v.epf_gpas if self.sept.would_fault(g)), None)
            if faulting is not None:
                owed = self._revert_and_let_go(name, parity, held + tree)
                if owed:
                    yield from hot.pay(name, owed)
                return (yield from self._enter_failed(v, t0, TDX_EXIT_EPT_VIOLATION, faulting))
            if hot:
                owed = hot.let_go(name, held[2:])           # op_state, before the tree
            yield env.timeout(self.duration(cal.zero_step_hold_us))
            if hot:
                owed += hot.let_go(name, tree)              # just before VM entry
            else:
                self.tree_lock.release(name, tree[0][1])
        elif hot:
            owed += hot.let_go(name, held[2:])
        if owed:
            yield from hot.pay(name, owed)
        yield env.timeout(self.duration(cal.vp_enter_us))
        v.entry_rip, v.epoch_parity = rip, parity       # TDR and TDVPR stay held shared
        self.rec.call(t0, env.now, "TDH.VP.ENTER", name, -1, TDX_SUCCESS)
        return TDX_SUCCESS, -1

    def _epoch_let_go(self, name: str) -> float:
        """The refcount's xadd and the epoch lock's release (both on the epoch's line);
        the lock is free, and its occupancy ends, once the release's transfer is done.
        Returns the time owed."""
        lock, hot = self.epoch_lock, self.hot

        def release():
            lock.release(name, SHARED)
            if not lock.shared_owners:
                self.epoch_occupancy.set_a(self.env.now, False)
        if hot is None:
            release()
            return 0.0
        cpu, line, now = cpu_of(name), lock.line, self.env._now
        d = line.access(now, cpu)[0]                # xadd, under the lock
        d += line.access(now + d, cpu)[0]           # release
        hot.later(d, release)
        return d

    def _revert_and_let_go(self, name: str, parity: int, seq) -> float:
        """A failed entry: ``revert_tlb_tracking_state`` (the refcount's xadd back, on the
        epoch's line), then the releases of ``seq`` (in reverse). Returns the time owed."""
        hot, counts = self.hot, self.epoch_refcount
        if hot is None:
            counts[parity] -= 1
            self._release(name, seq)
            return 0.0
        d = self.epoch_lock.line.access(self.env._now, cpu_of(name))[0]

        def revert():
            counts[parity] -= 1
        hot.later(d, revert)
        return hot.let_go(name, seq[::-1], d)

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
        hot, counts, parity, name = self.hot, self.epoch_refcount, v.epoch_parity, v.name
        v.epoch_parity, v.irq_pending = None, False
        if hot is None:
            counts[parity] -= 1
            v.tdvpr.release(name, SHARED)
            self.tdr.release(name, SHARED)
            return
        # the refcount's xadd on the epoch's line, then the implicit TDR's release and the
        # TDVPR's unwalk (td_exit.c), each in effect when its transfer is done
        d = self.epoch_lock.line.access(self.env._now, cpu_of(name))[0]

        def leave():
            counts[parity] -= 1
        hot.later(d, leave)
        owed = hot.let_go(name, [(self.tdr, SHARED), (v.tdvpr, SHARED)], d)
        if owed:
            yield from hot.pay(name, owed)

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
