"""Layer 3 (model): the guest's TDCALLs (TDG.MEM.PAGE.ACCEPT, ATTR.WR) and the TDCALL
dispatcher's HOST_PRIORITY handling (domain.md §4).

A mixin of :class:`workbench.model.module.TdxModule`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import math

import simpy

from ..core.tdx_errno import (
    OPERAND_ID_RCX, TDX_EPT_ENTRY_STATE_INCORRECT,
    TDX_EPT_WALK_FAILED, TDX_EXIT_EPT_VIOLATION, TDX_HOST_PRIORITY_BUSY_TIMEOUT, TDX_INTERRUPTED_RESUMABLE,
    TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, TDX_OPERAND_INVALID,
    TDX_PAGE_ALREADY_ACCEPTED, TDX_PAGE_SIZE_MISMATCH, TDX_SUCCESS, status_class,
)
from .locks import Mode, Side
from .sept import LEVEL_2M, LEVEL_4K, State
from .fastenum import members

State = members(State)      # plain attribute reads on the hot path (fastenum.py)

if TYPE_CHECKING:
    from .tdvps import TdVcpu

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST, GUEST = Side.HOST, Side.GUEST
_CLASS_MASK = 0xFFFF_FFFF_0000_0000        # tdx_errno.status_class
MAX_ACCEPT_LEVEL = LEVEL_2M  # module 1.5.01 rejects a 1 GB ACCEPT (verify_page_info_input)


class GuestTdcalls:
    """TDCALLs handled by the module on behalf of a running vCPU."""

    def _tdcall(self, v: TdVcpu, leaf: str, rip: int, gpa: int, body):
        """A TDCALL the module handles: the TD exit into SEAM (no lock held), ``body()``
        (the leaf: its walk, locks and work) -> (status, exit), the dispatcher's status
        handling, and the VM entry back to the guest unless the call ends in a TD exit."""
        env = self.env
        t0 = env._now
        yield env.timeout(self.duration(self.cal.tdcall_entry_us))
        self.note_rip(v, rip)
        raw, exit_status = yield from body()
        if raw & _CLASS_MASK != TDX_OPERAND_BUSY_HOST_PRIORITY and v.hp_streak_start is None:
            st = raw        # _dispatch_status's first case, without the call
        else:
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
        ACCEPT interrupted between pages (the TDCALL re-executes transparently).

        :meth:`_tdcall` with the leaf's body written in place: the hostile guest's hottest
        call, one generator level and one closure less on every resume (same events, same
        draws, in the same order)."""
        env, cal, duration = self.env, self.cal, self.duration
        t0 = env._now
        yield env.timeout(duration(cal.tdcall_entry_us))
        if rip != v.entry_rip and (v.epf_count or v.epf_gpas):     # note_rip
            v.epf_count, v.epf_gpas = 0, []
        exit_status = None
        if level > MAX_ACCEPT_LEVEL:
            yield env.timeout(duration(cal.accept_probe_us))
            raw = TDX_OPERAND_INVALID | OPERAND_ID_RCX
        else:                               # the leaf's walk, lock and work
            e = self.sept.walk(gpa, level)
            if e.level != level or (e.state is State.FREE
                                    and not self.opts.accept_locks_not_present):
                yield env.timeout(duration(cal.accept_probe_us))   # walk stops: no lock
                raw = exit_status = TDX_EXIT_EPT_VIOLATION
            else:
                lock = e.lock
                raw = lock.try_acquire(v.name, EXCLUSIVE, GUEST)
                if raw:
                    yield env.timeout(duration(cal.accept_probe_us))
                elif e.state is not State.PENDING:
                    yield env.timeout(duration(cal.accept_probe_us))
                    raw = (TDX_PAGE_ALREADY_ACCEPTED | level if e.state is State.MAPPED else
                           TDX_PAGE_SIZE_MISMATCH | level if e.state is State.NON_LEAF else
                           TDX_EXIT_EPT_VIOLATION)
                    if raw == TDX_EXIT_EPT_VIOLATION:   # FREE or BLOCKED: lock, release, exit
                        exit_status = raw
                    lock.release(v.name, EXCLUSIVE)
                else:
                    raw, exit_status = yield from self._accept_locked(v, e, level)
                    lock.release(v.name, EXCLUSIVE)
        if raw & _CLASS_MASK != TDX_OPERAND_BUSY_HOST_PRIORITY and v.hp_streak_start is None:
            st = raw
        else:
            st, hp_exit = self._dispatch_status(v, t0, gpa, raw)
            exit_status = exit_status or hp_exit
        if exit_status is None:
            yield env.timeout(duration(cal.tdcall_exit_us))
        self.rec.call(t0, env.now, "TDG.MEM.PAGE.ACCEPT", v.name, gpa, raw)
        return st, exit_status

    def _accept_locked(self, v: TdVcpu, e, level: int):
        """ACCEPT's work under the entry's lock on a PENDING entry -> (status, exit)."""
        env = self.env
        exit_status = None
        if e.state is State.PENDING and self.bandwidth:   # zeroing with the TD's key
            yield from self.bandwidth.zero(v.name, (512 - e.accept_counter if level == LEVEL_2M
                                                    else 1) * 4096)
        if e.state is State.PENDING and level == LEVEL_2M:
            st = yield from self._accept_2m(v, e)
            exit_status = st or None
        elif e.state is State.PENDING:
            yield env.timeout(self.duration(self.cal.accept_4k_us))
            e.state, st = State.MAPPED, TDX_SUCCESS
        else:
            yield env.timeout(self.duration(self.cal.accept_probe_us))
            st = (TDX_PAGE_ALREADY_ACCEPTED | level if e.state is State.MAPPED else
                  TDX_PAGE_SIZE_MISMATCH | level if e.state is State.NON_LEAF else
                  TDX_EXIT_EPT_VIOLATION)
            if st == TDX_EXIT_EPT_VIOLATION:   # FREE or BLOCKED: lock, release, exit
                exit_status = st
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
        return self._tdcall(v, "TDG.MEM.PAGE.ATTR.WR", rip, gpa,
                            lambda: self._attr_wr(v, gpa))

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
