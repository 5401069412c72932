"""Layer 3 (model): one trust domain wired together: the TDX module, KVM, the VMM and the
guest's vCPUs, run for a scenario's horizon with one policy set and one seed.

Each vCPU is one SimPy process: the VMM's vCPU thread in KVM_RUN, entering the guest,
running guest instructions until an exit, handling the exit in KVM or userspace.
"""
from __future__ import annotations

import simpy

from ..core.config import Calibration, ScenarioConfig, VcpuGroup
from ..policies import PolicySet
from ..core.records import HOSTILE_ROLES, VCPU_STATES, Recorder, TimeAverage
from ..core.rng import stream
from ..core.tdx_errno import TDX_EXIT_EPT_VIOLATION, TDX_SUCCESS
from .budget import run_budgeted
from .guest import ExitKind, GuestCpu, GuestKernel
from .host import STOPPED, USERSPACE, Kvm
from .clock import FairEnvironment, durations
from .fastpath import FastpathPolls
from .module import TdxModule
from .shared import SharedResources
from .sept import LEVEL_2M, LEVEL_4K, LEVEL_SIZE, PAGE_4K, ROOT_LEVEL, State
from .roles import NEEDS_AREA, ROLES
from . import upm
from .fastenum import members

State, ExitKind = members(State), members(ExitKind)   # plain attribute reads (fastenum.py)

MB2 = LEVEL_SIZE[LEVEL_2M]


class Vcpu:
    """A TD vCPU as KVM and its VMM thread see it."""

    def __init__(self, td: "Td", name: str, role: str):
        self.td, self.name, self.role = td, name, role
        self.tdv = td.module.add_vcpu(name)
        self.guest: GuestCpu | None = None
        self.in_guest_mode = False
        self.entries = 0              # TDH.VP.ENTER attempts (kicks tell re-entries apart)
        self.faults = 0
        self.ticks = 0                # timer ticks that found it in guest mode
        self.conversions = 0          # MapGPA calls that converted the whole range
        self.exit_reason = None
        self.fastpath = FastpathPolls(self, td, len(td.vcpus), td.config.polls == "collapsed")
        self.last_leaf = ""
        self._left = None
        self.state, self._t = "kvm", 0.0
        self.times = dict.fromkeys(VCPU_STATES, 0.0)
        self._env = td.env

    def set_state(self, state: str) -> None:
        now = self._env.now
        self.times[self.state] += now - self._t
        self.state, self._t = state, now

    def left_guest_mode(self) -> simpy.Event:
        if self._left is None:
            self._left = self.td.env.event()
        return self._left

    def entering(self) -> None:
        """vcpu->mode = IN_GUEST_MODE, set before TDH.VP.ENTER: a kick from here on sends
        an IPI and waits for this vCPU, which exits right after entry if it is pending."""
        self.entries += 1
        self.in_guest_mode = True

    def failed_entry(self) -> None:
        """VP.ENTER did not enter: back outside guest mode; a pending kick is served."""
        self.tdv.irq_pending = False
        self._exited()

    def _exited(self) -> None:
        self.in_guest_mode = False
        if self._left is not None:
            self._left.succeed()
            self._left = None

    def thread(self):
        """KVM_RUN, forever: enter, run the guest, handle its exit."""
        td, kvm, vmm = self.td, self.td.kvm, self.td.vmm
        while not td.stopped:
            self.set_state("kvm")
            st, gpa = yield from kvm.enter(self)
            if st is None:
                break
            if st == TDX_EXIT_EPT_VIOLATION:           # EPFS: synthesised, never entered
                r = yield from kvm.handle_ept_violation(self, gpa)
                if r == USERSPACE:
                    yield from vmm.handle(self)
                continue
            if st != TDX_SUCCESS:                     # an error exit to userspace
                self.exit_reason = ("error", st)
                yield from vmm.handle(self)
                continue
            self.set_state("guest")
            ex = yield from self.guest.run()
            self.set_state("kvm")
            counted = ex.gpa if ex.kind is ExitKind.EPT_VIOLATION else None
            yield from td.module.td_exit(self.tdv, ex.rip, counted)
            self._exited()
            kind = ex.kind
            if kind is ExitKind.EPT_VIOLATION or kind is ExitKind.ACCEPT_EPT_VIOLATION:
                # _handle's first case in place: the fault path is the deepest one
                r = yield from kvm.handle_ept_violation(self, ex.gpa, pending=ex.pending,
                                                        level=ex.level)
                if r == USERSPACE:
                    yield from vmm.handle(self)
                if r == STOPPED:
                    break
            elif not (yield from self._handle(ex)):
                break
        if td.stopped:
            self.guest.close_open_op(td.env.now, "unfinished")
        self.set_state("stopped" if td.stopped else "idle")

    def _handle(self, ex):
        """Handle one TD exit; False when this vCPU stops running."""
        td, kvm, vmm = self.td, self.td.kvm, self.td.vmm
        kind = ex.kind
        if kind in (ExitKind.EPT_VIOLATION, ExitKind.ACCEPT_EPT_VIOLATION):
            r = yield from kvm.handle_ept_violation(self, ex.gpa, pending=ex.pending,
                                                    level=ex.level)
            if r == USERSPACE:
                yield from vmm.handle(self)
            return r != STOPPED
        if kind is ExitKind.MAP_GPA:
            yield from vmm.map_gpa(self, ex.instr)
            self.guest.instr, self.guest.result = None, TDX_SUCCESS
            return True
        if kind is ExitKind.HP_TIMEOUT:
            self.exit_reason = ("hp_timeout", ex.gpa)
            yield from vmm.handle(self)
            return True
        if kind is ExitKind.HALT:     # blocked in KVM until the next wakeup (a tick)
            self.set_state("halted")
            yield td.env.timeout(td.kvm_duration(td.config.shared.idle_tick_us))
            self.guest.instr = None
            return True
        if kind is ExitKind.DONE:
            return False
        if kind is ExitKind.PANIC:
            td.stop("guest_panic", self.name, ex.instr.reason)
            self.guest.close_open_op(td.env.now, "guest_panic")
            return False
        return True                                    # INTERRUPT: the request is handled


class Vmm:
    """Userspace (QEMU-like): exits to userspace, MapGPA, memory attributes."""

    def __init__(self, td: "Td"):
        self.td, self.env, self.cal, self.opts = td, td.env, td.cal, td.config.host

    def handle(self, v: Vcpu):
        kind, arg = v.exit_reason
        self.td.rec.count("exits_to_userspace")
        self.td.rec.count(f"exits_{kind}")
        v.set_state("userspace")
        yield self.env.timeout(self.td.kvm_duration(self.cal.vmm_turnaround_us))
        if kind == "memory_fault" and self.opts.memory_fault_action == "convert":
            page = arg // PAGE_4K * PAGE_4K
            yield from self.td.kvm.set_memory_attributes(v, page, PAGE_4K, shared=False)
        elif kind != "memory_fault" and self.opts.vmm_on_error == "stop":
            self.td.stop("vmm_stop", v.name, f"{kind} {arg:#x}")
        v.set_state("kvm")

    def map_gpa(self, v: Vcpu, ins):
        """TDG.VP.VMCALL<MapGPA>: KVM exits to userspace once per 2 MB chunk
        (TDX_MAP_GPA_MAX_LEN); the VMM sets the memory attributes of each chunk."""
        t0, exits = self.env.now, 0
        gpa, end = ins.gpa, ins.gpa + ins.size
        outcome = "ok"
        while gpa < end and outcome == "ok":
            chunk = min(end, (gpa // MB2 + 1) * MB2) - gpa
            while True:
                exits += 1
                self.td.rec.count("exits_to_userspace")
                self.td.rec.count("exits_map_gpa")
                v.set_state("userspace")
                yield self.env.timeout(self.td.kvm_duration(self.cal.vmm_turnaround_us))
                ok = yield from self.td.kvm.set_memory_attributes(v, gpa, chunk, ins.shared)
                if ok or self.td.stopped or self.opts.vmm_on_error == "stop":
                    break
            if not ok:
                outcome = "vm_bugged" if self.td.stopped else "exit_to_userspace"
                if not self.td.stopped:
                    self.td.stop("vmm_stop", v.name, "KVM_SET_MEMORY_ATTRIBUTES failed")
            gpa += chunk
        v.set_state("kvm")
        v.conversions += outcome == "ok"
        self.td.rec.op("conversion", v.name, ins.gpa, t0, self.env.now, exits, 0, outcome)


class Td:
    """One run: build the TD for ``config``, run it to the horizon, keep the records."""

    def __init__(self, config: ScenarioConfig, policy: PolicySet, cal: Calibration,
                 seed: int, replication: int = 0, record: str = "calls", choices=None):
        self.config, self.policy, self.cal = config, policy, cal
        self.seed, self.replication = seed, replication
        # choices (workbench.model.choices): the race finder's schedule; None: the seed's
        self.choices = choices
        if choices is None:
            self.env = FairEnvironment(int(stream(seed, "schedule", replication).integers(2**63)))
        else:
            self.env = FairEnvironment(0, choices=choices)
            choices.env = self.env
        self.rec = Recorder(level=record)
        self.kvm_duration = durations(cal, cal.kvm_jitter_cv, self._stream("kvm"))
        self.tick_phase = self._stream("ticks")
        self.module = TdxModule(self.env, cal, config.module, self.rec, self._stream("module"))
        self.policy_rng = self._stream("policy")
        self.shared = SharedResources(self.env, cal, config.shared)
        # guest_memfd's allocation and clear on a private fault (None: not modelled)
        on = config.shared.on
        self.backing = self.shared if on("page_alloc") or on("mem_bandwidth") else None
        self.kvm = Kvm(self)
        self.shared.attach(self.module, self.kvm)
        self.vmm = Vmm(self)
        self.stopped: str | None = None
        self.stopped_at: float | None = None
        self.faults_in_flight = TimeAverage()
        self.kernel = GuestKernel(self.env, self.shared if on("guest_locks") else None)
        self.vcpus: list[Vcpu] = []
        self.prebuilt_pages = 0
        self._build()
        self.rec.hostile = frozenset(v.name for v in self.vcpus if v.role in HOSTILE_ROLES)

    def _stream(self, name: str):
        if self.choices is not None:
            return self.choices.stream(name)
        return stream(self.seed, name, self.replication)

    @property
    def n_vcpus(self) -> int:
        return len(self.vcpus)

    def stop(self, reason: str, actor: str, detail: str = "") -> None:
        """The TD ends: guest panic, VM bugged or dead, or the VMM gave up."""
        if not self.stopped:
            self.stopped = reason
            self.stopped_at = self.env.now
            self.rec.event(self.env.now, reason, actor, detail)
            self.kvm.wake_sleepers()      # vCPUs in collapsed fastpath passes see it
            for v in self.vcpus:          # KVM_REQ_VM_DEAD: every vCPU leaves the guest
                if v.in_guest_mode:
                    self.module.post_interrupt(v.tdv)

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        cfg = self.config
        mem = cfg.memory_bytes
        biggest = max([g.range_kb * 1024 * 8 for g in cfg.vcpus if g.role == "converter"]
                      + [int(g.region_mb * 2**20) for g in cfg.vcpus if g.role == "huge_converter"],
                      default=MB2)
        area = -(-biggest // MB2) * MB2          # 8 x range_kb, rounded up to 2 MB
        cursor = 0
        names = []
        for g in cfg.vcpus + self._idle_group():
            for i in range(g.count):
                self.kernel.group_index[f"vcpu{len(names)}"] = i
                names.append((f"vcpu{len(names)}", g))
        self.kernel.converters = {n for n, g in names if g.role == "converter"}
        self.kernel.roles = {n: g.role for n, g in names}
        for name, g in names:
            if g.role in NEEDS_AREA:
                self.kernel.areas[name] = (cursor, area)
                self._prebuild(cursor, area)
                cursor += area
        rest = max(0, mem - cursor)
        lazy = any(g.role == "lazy_accept" for g in cfg.vcpus)
        storm = [g for g in cfg.vcpus if g.role == "fault_storm"]
        lazy_bytes = rest // 2 // MB2 * MB2 if (lazy and storm) else (rest if lazy else 0)
        if lazy:
            first = cursor // MB2
            self.kernel.remaining_units = list(range(first, first + lazy_bytes // MB2))
        storm_base = cursor + lazy_bytes
        storm_i = 0
        storm_n = sum(g.count for g in storm)
        for name, g in names:
            v = Vcpu(self, name, g.role)
            rng = self._stream(f"workload/{name}")
            args = (self.kernel, g, rng, name)
            if g.role == "fault_storm":
                program = ROLES[g.role](*args, storm_i, storm_n, storm_base, cursor + rest)
                storm_i += 1
            else:
                program = ROLES[g.role](*args)
            v.guest = GuestCpu(name, self.env, self.module, v.tdv, program, self.policy.accept,
                               self._stream(f"guest-policy/{name}"),
                               self.rec, cfg.n_vcpus, self.cal.touch_us, self.kernel)
            upm.attach(v.guest)                      # the MMIO instruction (upm.py)
            self.vcpus.append(v)
        self.shared.vcpus = {v.name: v for v in self.vcpus}

    def _idle_group(self) -> tuple:
        """The idle vCPUs that ``shared.idle_share`` adds beside the busy ones."""
        n = self.config.n_idle_vcpus     # groups of at most 512 (VcpuGroup.count)
        return tuple(VcpuGroup(role="idle", count=min(512, n - i),
                               think_us=self.cal.idle_tick_work_us) for i in range(0, n, 512))

    def _prebuild(self, start: int, size: int) -> None:
        """Memory added and accepted before the run (build time, TDH.MEM.PAGE.ADD)."""
        sept = self.module.sept
        self.prebuilt_pages += size // PAGE_4K
        if self.kvm.huge.prebuild(start, size):     # 2 MB leaves (split.py)
            return
        for gpa in range(start, start + size, PAGE_4K):
            for level in range(ROOT_LEVEL, LEVEL_4K, -1):
                sept.entry(gpa, level).state = State.NON_LEAF
            sept.entry(gpa, LEVEL_4K).state = State.MAPPED

    # ------------------------------------------------------------------ run
    def run(self, budget=None) -> "Td":
        for v in self.vcpus:
            v.tdv.proc = self.env.process(v.thread())
            if self.config.host.tick_us:
                self.env.process(self._ticks(v))
        upm.start_host_threads(self)                 # host.upm_period_us (upm.py)
        # the events processed (a collapsed wait is one event however many passes it holds)
        self.steps = run_budgeted(self, self.config.horizon_scaled_us, budget)  # limits.py
        self._close()
        return self

    def _ticks(self, v: Vcpu):
        """The guest timer: a tick at a random phase, then every ``tick_us`` (jittered);
        a vCPU in guest mode takes an interrupt exit, one in the host handles it there."""
        yield self.env.timeout(self.tick_phase.random() * self.config.host.tick_us)
        while not self.stopped:
            if v.in_guest_mode:
                v.ticks += 1
                self.module.post_interrupt(v.tdv)
            yield self.env.timeout(self.kvm_duration(self.config.host.tick_us))

    def _close(self) -> None:
        now = self.env.now
        for p in self.kvm.sleepers:       # asleep in collapsed fastpath passes at the end
            p.close(now)
        for v in self.vcpus:
            v.set_state(v.state)
            v.guest.close_open_op(now, "unfinished")
        self.fault_mean_in_flight = self.faults_in_flight.mean(now)
