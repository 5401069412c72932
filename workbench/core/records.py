"""Layer 1: what the model emits. A :class:`Recorder` collects plain tuples on the hot path;
``workbench.metrics`` turns them into tables afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CALL_COLUMNS = ("t_start_us", "t_end_us", "leaf", "caller", "gpa", "status")
OP_COLUMNS = ("op", "actor", "gpa", "t_start_us", "t_end_us", "attempts", "busy", "outcome")
# resumed: the fault path gave up and re-entered the guest (RET_PF_RETRY), which faults again.
# guest_error: a guest call failed without killing the guest (-EIO on a conversion).
OUTCOMES = ("ok", "resumed", "exit_to_userspace", "vm_bugged", "guest_panic", "guest_error",
            "hp_timeout", "unfinished")
VCPU_STATES = ("guest", "kvm", "retry", "userspace", "mmu_wait", "zap_wait", "pamt_wait", "idle",
               "stopped",
               # waits for the host's shared resources (model/shared.py), an idle vCPU's HLT
               "hot_line", "host_alloc", "mem_bw", "guest_lock", "halted")


HOSTILE_ROLES = ("accept_spammer", "attr_spammer", "refaulter", "stepper")
RECORD_LEVELS = ("calls", "ops", "summary")
# ops whose latency distribution the summary row reports (metrics.LATENCY_OPS less the
# derived fault_wait, which the recorder chains itself in "summary")
SUMMARY_OPS = ("private_fault", "zap_4k", "conversion", "accept_4K", "vp_enter")
# the ops a vCPU waits on for progress (longest_wait_us): a fault wait stands for its faults
WAIT_OPS = ("fault_wait", "accept_4K", "accept_2M", "conversion", "vp_enter")
CHAINED = ("resumed", "exit_to_userspace")   # a private_fault the next one on its GPA continues
BUSY_MASK, BUSY_CLASS = 0xFFFF_FFFF_0000_0000, 0x8000_0200_0000_0000   # TDX_OPERAND_BUSY


@dataclass
class Recorder:
    """Record of one run. ``level``: what is kept per call and per op.

    - ``calls``: one tuple per call attempt and per finished op (every table);
    - ``ops``: the ops, and only counters of the calls (no calls table);
    - ``summary``: counters of the calls and, per op kind of the summary row, the latencies
      (one float each: the quantiles need them), no tuples at all.
    Counts and rare events are kept at every level."""
    calls: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    vcpus: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    events: list = field(default_factory=list)   # (t_us, what, actor, detail): rare events
    level: str = "calls"
    hostile: frozenset = frozenset()              # callers whose calls are the hostile ones

    def __post_init__(self):
        if self.level not in RECORD_LEVELS:
            raise ValueError(f"record must be one of {', '.join(RECORD_LEVELS)}, "
                             f"not {self.level!r}")
        # per call class (host, guest, hostile): attempts and BUSY statuses
        self.call_n, self.call_busy, self._class = [0, 0, 0], [0, 0, 0], {}
        # per call class: acquisitions after a BUSY (a (leaf, caller)'s first non-BUSY
        # status after one or more BUSY statuses), and the (leaf, caller)s refused last
        self.contested, self._refused = [0, 0, 0], set()
        self.latencies = {op: [] for op in (*SUMMARY_OPS, "fault_wait")}
        self.wb_latencies = {op: [] for op in (*SUMMARY_OPS, "fault_wait")}   # not hostile
        self.longest = {}                         # actor -> its longest op (WAIT_OPS)
        self._episode = {}                        # actor -> open fault_wait episode
        if self.level != "calls":
            self.call = self._count_call
        if self.level == "summary":
            self.op = self._op_latency

    def call(self, t_start: float, t_end: float, leaf: str, caller: str, gpa: int,
             status: int) -> None:
        self.calls.append((t_start, t_end, leaf, caller, gpa, status))

    def _count_call(self, t_start, t_end, leaf, caller, gpa, status) -> None:
        k = self._class.get((leaf, caller))
        if k is None:
            k = self._class[(leaf, caller)] = (0 if leaf.startswith("TDH.") else
                                               2 if caller in self.hostile else 1)
        self.call_n[k] += 1
        if status & BUSY_MASK == BUSY_CLASS:
            self.call_busy[k] += 1
            self._refused.add((leaf, caller))
        elif self._refused and (leaf, caller) in self._refused:
            self._refused.discard((leaf, caller))
            self.contested[k] += 1

    def op(self, op: str, actor: str, gpa: int, t_start: float, t_end: float, attempts: int,
           busy: int, outcome: str) -> None:
        self.ops.append((op, actor, gpa, t_start, t_end, attempts, busy, outcome))

    def _op_latency(self, op, actor, gpa, t_start, t_end, attempts, busy, outcome) -> None:
        lat = self.latencies.get(op)
        if lat is not None:
            lat.append(t_end - t_start)
            if actor not in self.hostile:
                self.wb_latencies[op].append(t_end - t_start)
        if op in WAIT_OPS:
            self._wait(actor, t_end - t_start)
        if op == "private_fault":     # metrics.fault_waits, one fault at a time per actor
            ep = self._episode.get(actor)
            if ep is not None and ep[3] in CHAINED and ep[0] == gpa:
                ep[1], ep[2], ep[3] = min(ep[1], t_start), max(ep[2], t_end), outcome
                return
            if ep is not None:
                self._close_episode(actor, ep)
            self._episode[actor] = [gpa, t_start, t_end, outcome]

    def _wait(self, actor: str, lat: float) -> None:
        if lat > self.longest.get(actor, -1.0):
            self.longest[actor] = lat

    def _close_episode(self, actor: str, ep: list) -> None:
        self.latencies["fault_wait"].append(ep[2] - ep[1])
        if actor not in self.hostile:
            self.wb_latencies["fault_wait"].append(ep[2] - ep[1])
        self._wait(actor, ep[2] - ep[1])

    def fault_wait_latencies(self, wb: bool = False) -> list:
        """The fault_wait latencies (``wb``: of the well-behaved vCPUs), open episodes
        included (call once the run ended)."""
        kept = self.wb_latencies if wb else self.latencies
        return [*kept["fault_wait"], *(ep[2] - ep[1] for a, ep in self._episode.items()
                                       if not (wb and a in self.hostile))]

    def longest_waits(self) -> dict:
        """Per actor, its longest op of WAIT_OPS (open fault waits included)."""
        out = dict(self.longest)
        for a, ep in self._episode.items():
            out[a] = max(out.get(a, -1.0), ep[2] - ep[1])
        return out

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def event(self, t: float, what: str, actor: str, detail: str = "") -> None:
        self.events.append((t, what, actor, detail))
        self.count(what)


class TimeAverage:
    """Time-weighted mean of a level (faults in flight), kept by the model itself."""

    __slots__ = ("level", "_t", "_area", "_t0")

    def __init__(self, t0: float = 0.0):
        self.level, self._t, self._area, self._t0 = 0, t0, 0.0, t0

    def add(self, now: float, delta: int) -> None:
        self._area += self.level * (now - self._t)
        self._t, self.level = now, self.level + delta

    def mean(self, now: float) -> float:
        area = self._area + self.level * (now - self._t)
        return area / (now - self._t0) if now > self._t0 else 0.0


class Overlap:
    """Time during which two on/off signals are both on (e.g. the epoch lock held by a
    VP.ENTER while a zap holds mmu_lock for write), and the time each is on."""

    __slots__ = ("a", "b", "_t", "both_us", "a_us", "b_us")

    def __init__(self):
        self.a = self.b = False
        self._t, self.both_us, self.a_us, self.b_us = 0.0, 0.0, 0.0, 0.0

    def _advance(self, now: float) -> None:
        dt = now - self._t
        self.a_us += dt * self.a
        self.b_us += dt * self.b
        self.both_us += dt * (self.a and self.b)
        self._t = now

    def set_a(self, now: float, on: bool) -> None:
        self._advance(now)
        self.a = on

    def set_b(self, now: float, on: bool) -> None:
        self._advance(now)
        self.b = on

    def close(self, now: float) -> None:
        self._advance(now)
