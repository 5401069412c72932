"""Layer 3 (model): the guest. Each vCPU runs a *program*: a generator that yields
instructions and receives their results, as guest software would see them.

An instruction has a RIP. One that causes a TD exit is not finished: after KVM re-enters,
the same instruction re-executes at the same RIP (this is what feeds zero-step). The
:class:`GuestCpu` runs instructions until one exits and reports that :class:`Exit`.
The programs follow Linux where a Linux guest exists (lazy accept, ``tdx_accept_memory``
falling back 1 GB -> 2 MB -> 4 KB, panic on the lazy path) and are hostile where the
scenario asks for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import simpy

from ..policies import GuestFail, Retry, Site
from ..policies.base import BusyContext
from ..core.tdx_errno import (TDX_HOST_PRIORITY_BUSY_TIMEOUT, TDX_INTERRUPTED_RESUMABLE,
                         TDX_SUCCESS, tdx_operand_busy)
from .sept import LEVEL_1G, LEVEL_2M, LEVEL_4K, LEVEL_NAMES, LEVEL_SIZE, PAGE_4K, State
from .fastenum import members

State, Site = members(State), members(Site)   # plain attribute reads (fastenum.py)

RIP_TDCALL_ACCEPT = 0xFFFF_FFFF_8100_1000   # the TDCALL in try_accept_one: one RIP for all
RIP_TDCALL_ATTR = 0xFFFF_FFFF_8100_2000
RIP_TDVMCALL = 0xFFFF_FFFF_8100_3000
RIP_VE_HANDLER = 0xFFFF_FFFF_8100_4000
_RETRY = object()       # GuestCpu._accept_exit: the accept policy retries the TDCALL


# ------------------------------------------------------------------------ instructions
@dataclass(slots=True)
class Compute:
    """Guest work that touches nothing new; interruptible."""
    us: float


@dataclass(slots=True)
class Accept:
    gpa: int
    level: int
    rip: int = RIP_TDCALL_ACCEPT


@dataclass(slots=True)
class AttrWr:
    gpa: int
    rip: int = RIP_TDCALL_ATTR


@dataclass(slots=True)
class Touch:
    """A private memory access by ordinary code at ``rip``."""
    gpa: int
    rip: int


@dataclass(slots=True)
class Copy:
    """A REP MOVS at ``rip`` over ``gpas`` that does not retire (a huge RCX): RIP stays
    put while it runs, so its exits never look like progress to zero-step. A page the
    guest made shared is accessed as private (a KVM_EXIT_MEMORY_FAULT); a page of the
    guest's own conversion in flight is waited for, not touched."""
    gpas: list
    rip: int
    pos: int = 0


@dataclass(slots=True)
class MapGpa:
    """TDG.VP.VMCALL<MapGPA>: convert [gpa, gpa+size) to shared or back to private."""
    gpa: int
    size: int
    shared: bool
    rip: int = RIP_TDVMCALL


@dataclass(slots=True)
class SpinWait:
    """cpu_relax() until ``event`` fires (another vCPU accepting the same unit)."""
    event: simpy.Event


@dataclass(slots=True)
class Panic:
    reason: str


@dataclass(slots=True)
class GuestLock:
    """One hold of a guest kernel spinlock shared by all vCPUs ("zone" or "bitmap":
    zone->lock, unaccepted_memory_lock); not interruptible (IRQs off)."""
    which: str


@dataclass(slots=True)
class Halt:
    """HLT in the idle loop: TDG.VP.VMCALL<HLT>, a TD exit; the vCPU blocks in KVM."""
    rip: int = RIP_TDVMCALL


class ExitKind(Enum):
    EPT_VIOLATION = "ept_violation"          # host-visible, counted by zero-step
    ACCEPT_EPT_VIOLATION = "accept_ept"      # synthesised by ACCEPT, not counted
    INTERRUPT = "interrupt"                  # an IPI (kick)
    MAP_GPA = "map_gpa"
    HALT = "halt"
    HP_TIMEOUT = "hp_timeout"
    DONE = "done"                            # the program ended: the vCPU halts
    PANIC = "panic"


@dataclass(slots=True)
class Exit:
    kind: ExitKind
    rip: int
    gpa: int = -1
    instr: object = None
    level: int = LEVEL_4K
    pending: bool = False     # a guest access to a PENDING page (SEPT_VE_DISABLE)


# ------------------------------------------------------------------------ guest kernel
@dataclass
class GuestKernel:
    """State the guest's vCPUs share: unaccepted memory, conversion areas, its policy."""
    env: simpy.Environment
    locks: object = None      # shared.SharedResources when the guest's locks are modelled
    unit_size: int = LEVEL_SIZE[LEVEL_2M]
    remaining_units: list = field(default_factory=list)   # unaccepted or being accepted
    accepting: dict = field(default_factory=dict)         # unit -> event fired when done
    areas: dict = field(default_factory=dict)             # converter name -> (start, size)
    converting: dict = field(default_factory=dict)        # converter name -> (gpa, size)
    shared: set = field(default_factory=set)              # 4 KB GPAs the guest made shared
    conversion_errors: int = 0                            # -EIO from a failed accept
    converters: set = field(default_factory=set)          # names of the converter vCPUs
    group_index: dict = field(default_factory=dict)       # vCPU name -> index in its group
    roles: dict = field(default_factory=dict)             # vCPU name -> its role


class GuestCpu:
    """Runs one vCPU's program; :meth:`run` returns at the next TD exit."""

    def __init__(self, name, env, module, tdv, program, accept_policy, rng, recorder, n_vcpus,
                 touch_us: float, kernel: GuestKernel):
        self.name, self.env, self.module, self.tdv = name, env, module, tdv
        self.kernel = kernel
        self.touch_us = touch_us   # a memory access that does not fault
        self.program, self.accept_policy, self.rng = program, accept_policy, rng
        self.rec, self.n_vcpus = recorder, n_vcpus
        self.instr = None          # the instruction being executed (re-executed after exits)
        self.result = None         # what the program receives next
        self.left_us = 0.0         # rest of an interrupted Compute
        self.op_start = None       # first execution of the current ACCEPT
        self.op_attempts = 0
        self.op_busy = 0
        self.accepted = 0
        self.rip = 0x1000
        self._retry_delay_us = 0.0
        self._execute = {cls: getattr(self, "_" + cls.__name__) for cls in
                         (Compute, AttrWr, Touch, Copy, MapGpa, SpinWait, Panic,
                          GuestLock, Halt)}

    def next_instruction(self):
        try:
            self.instr = self.program.send(self.result)
        except StopIteration:
            self.instr = None
        self.result = None
        if isinstance(self.instr, Compute):
            self.left_us = self.instr.us
        if self.instr is not None and hasattr(self.instr, "rip"):
            self.rip = self.instr.rip

    def run(self):
        """Execute until a TD exit (generator; returns an :class:`Exit`)."""
        while True:
            if self.instr is None:
                self.next_instruction()
                if self.instr is None:
                    return Exit(ExitKind.DONE, self.rip)
            if self.tdv.irq_pending:
                return Exit(ExitKind.INTERRUPT, self.rip)
            ins = self.instr
            if type(ins) is Accept:     # the hottest instruction, in place: one level less
                exit_ = None
                while True:
                    if self.op_start is None:
                        self.op_start, self.op_attempts, self.op_busy = self.env.now, 0, 0
                    self.op_attempts += 1
                    st, exit_st = yield from self.module.tdg_mem_page_accept(
                        self.tdv, ins.rip, ins.gpa, ins.level)
                    exit_ = self._accept_exit(ins, st, exit_st)
                    if exit_ is not _RETRY:
                        break
                    if self._retry_delay_us:
                        yield self.env.timeout(self._retry_delay_us)
                    if self.tdv.irq_pending:   # an IPI exits the TD between two TDCALLs
                        exit_ = Exit(ExitKind.INTERRUPT, ins.rip, ins.gpa, ins)
                        break
            else:
                exit_ = yield from self._execute[type(ins)](ins)
            if exit_ is not None:
                return exit_
            self.instr = None

    def _accept_exit(self, ins, st, exit_st):
        """After one TDG.MEM.PAGE.ACCEPT of an Accept: the Exit it causes, None when the
        instruction is done, or _RETRY (then ``_retry_delay_us``) when the policy retries."""
        if exit_st == TDX_INTERRUPTED_RESUMABLE:
            return Exit(ExitKind.INTERRUPT, ins.rip, ins.gpa, ins)
        hp_timeout = exit_st == TDX_HOST_PRIORITY_BUSY_TIMEOUT
        if exit_st is not None and not hp_timeout:
            return Exit(ExitKind.ACCEPT_EPT_VIOLATION, ins.rip, ins.gpa, ins, ins.level)
        if tdx_operand_busy(st):
            self.op_busy += 1
            action = self.accept_policy.on_busy(BusyContext(
                Site.ACCEPT, "TDG.MEM.PAGE.ACCEPT", st, self.op_attempts, False,
                self.env.now - self.op_start, self.n_vcpus), self.rng)
            if isinstance(action, Retry):
                if hp_timeout:      # the exit comes first; the retry after re-entry
                    return Exit(ExitKind.HP_TIMEOUT, ins.rip, ins.gpa, ins)
                self._retry_delay_us = action.delay_us
                return _RETRY
            assert isinstance(action, GuestFail), action
        self._finish_accept(ins, st)
        if hp_timeout:              # trap-like: the TDCALL completed, then the exit
            self.instr = None
            return Exit(ExitKind.HP_TIMEOUT, ins.rip, ins.gpa, ins)
        return None

    # one method per instruction: None when it finished, else the Exit it caused
    def _Compute(self, ins):
        if self.left_us <= 0:
            return None
        t0 = self.env.now
        try:
            self.tdv.interruptible = True
            yield self.env.timeout(self.left_us)
            self.tdv.interruptible = False
            return None
        except simpy.Interrupt:
            self.left_us -= self.env.now - t0
            return Exit(ExitKind.INTERRUPT, self.rip)

    def _SpinWait(self, ins):
        if ins.event.triggered:
            return None
        try:
            self.tdv.interruptible = True
            yield ins.event
            self.tdv.interruptible = False
            return None
        except simpy.Interrupt:
            return Exit(ExitKind.INTERRUPT, self.rip)

    def _Touch(self, ins):
        sept = self.module.sept
        while True:
            pending = sept.entry(ins.gpa, LEVEL_4K).state is State.PENDING
            if pending and not self.module.opts.sept_ve_disable:
                exit_ = yield from self._ve_accept(ins)   # #VE: the guest accepts, retries
                if exit_ is not None:
                    return exit_
                continue
            if pending or sept.would_fault(ins.gpa):
                return Exit(ExitKind.EPT_VIOLATION, ins.rip, ins.gpa, ins, pending=pending)
            yield self.env.timeout(self.touch_us)
            return None

    def _Copy(self, ins):
        sept, shared = self.module.sept, self.kernel.shared
        # per-page constants out of the loop (zero-step's hottest one)
        entry, get, pending = sept.entry, sept._entries.get, State.PENDING
        tdv, env, touch_us, gpas = self.tdv, self.env, self.touch_us, ins.gpas
        while True:
            gpa = gpas[ins.pos]
            e = get((LEVEL_4K, gpa >> 12)) or entry(gpa, LEVEL_4K)
            if e.state is not pending and gpa in shared and sept.would_fault(gpa):
                return Exit(ExitKind.EPT_VIOLATION, ins.rip, gpa, ins)
            ins.pos = (ins.pos + 1) % len(gpas)
            if tdv.irq_pending:
                return Exit(ExitKind.INTERRUPT, ins.rip, gpa, ins)
            try:    # copy a present page, or wait as long on one of its own conversions
                tdv.interruptible = True
                yield env.timeout(touch_us)
                tdv.interruptible = False
            except simpy.Interrupt:
                return Exit(ExitKind.INTERRUPT, ins.rip, gpa, ins)

    def _ve_accept(self, ins):
        """The #VE handler of a guest without SEPT_VE_DISABLE: ACCEPT the pending page.
        A BUSY goes to the accept policy; a failure it will not retry is a panic."""
        st, exit_st = yield from self.module.tdg_mem_page_accept(self.tdv, RIP_VE_HANDLER,
                                                                 ins.gpa, LEVEL_4K)
        if exit_st == TDX_INTERRUPTED_RESUMABLE:
            return Exit(ExitKind.INTERRUPT, RIP_VE_HANDLER, ins.gpa, ins)
        if exit_st == TDX_HOST_PRIORITY_BUSY_TIMEOUT:
            return Exit(ExitKind.HP_TIMEOUT, RIP_VE_HANDLER, ins.gpa, ins)
        if exit_st is not None:
            return Exit(ExitKind.ACCEPT_EPT_VIOLATION, RIP_VE_HANDLER, ins.gpa, ins)
        if st == TDX_SUCCESS:
            self.accepted += 1
        elif tdx_operand_busy(st):
            action = self.accept_policy.on_busy(BusyContext(
                Site.ACCEPT, "TDG.MEM.PAGE.ACCEPT", st, 1, False, 0.0, self.n_vcpus), self.rng)
            if not isinstance(action, Retry):
                return Exit(ExitKind.PANIC, RIP_VE_HANDLER, ins.gpa,
                            Panic("#VE: failed to accept a pending page"))
            if action.delay_us:
                yield self.env.timeout(action.delay_us)
        if self.tdv.irq_pending:
            return Exit(ExitKind.INTERRUPT, RIP_VE_HANDLER, ins.gpa, ins)
        return None

    def _MapGpa(self, ins):
        return Exit(ExitKind.MAP_GPA, ins.rip, ins.gpa, ins)
        yield

    def _GuestLock(self, ins):
        yield from self.kernel.locks.guest_lock(self.name, ins.which)

    def _Halt(self, ins):
        return Exit(ExitKind.HALT, ins.rip, -1, ins)
        yield

    def _Panic(self, ins):
        return Exit(ExitKind.PANIC, self.rip, -1, ins)
        yield

    def _AttrWr(self, ins):
        st, exit_st = yield from self.module.tdg_mem_page_attr_wr(self.tdv, ins.rip, ins.gpa)
        self.result = st
        if exit_st == TDX_HOST_PRIORITY_BUSY_TIMEOUT:
            self.instr = None       # trap-like: completed, then the exit
            return Exit(ExitKind.HP_TIMEOUT, ins.rip, ins.gpa, ins)
        return None

    def _finish_accept(self, ins, st):
        if st == TDX_SUCCESS:
            self.accepted += LEVEL_SIZE[ins.level] // PAGE_4K
        self._record_accept(ins, self.env.now, "ok" if st == TDX_SUCCESS else "guest_error")
        self.result = st

    def close_open_op(self, end: float, outcome: str) -> None:
        if self.op_start is not None and isinstance(self.instr, Accept):
            self._record_accept(self.instr, end, outcome)

    def _record_accept(self, ins, end: float, outcome: str) -> None:
        self.rec.op(f"accept_{LEVEL_NAMES[ins.level]}", self.name, ins.gpa, self.op_start, end,
                    self.op_attempts, self.op_busy, outcome)
        self.op_start = None


# ------------------------------------------------------------------------ Linux helpers
def try_accept_one(start: int, length: int, level: int):
    """Linux ``try_accept_one``: one ACCEPT if aligned and long enough; bytes accepted."""
    size = LEVEL_SIZE[level]
    if start % size or length < size:
        return 0
    st = yield Accept(start, level)
    return size if st == TDX_SUCCESS else 0


def tdx_accept_memory(start: int, end: int):
    """Linux ``tdx_accept_memory``: largest size first, falls back 1G -> 2M -> 4K.
    Returns False when even 4 KB failed."""
    while start < end:
        for level in (LEVEL_1G, LEVEL_2M, LEVEL_4K):
            done = yield from try_accept_one(start, end - start, level)
            if done:
                start += done
                break
        else:
            return False
    return True
