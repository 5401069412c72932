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
VCPU_STATES = ("guest", "kvm", "retry", "userspace", "mmu_wait", "zap_wait", "idle", "stopped",
               # waits for the host's shared resources (model/shared.py), an idle vCPU's HLT
               "hot_line", "host_alloc", "mem_bw", "guest_lock", "halted")


@dataclass
class Recorder:
    """Append-only record of one run. One tuple per call attempt and per finished op."""
    calls: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    vcpus: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    events: list = field(default_factory=list)   # (t_us, what, actor, detail): rare events

    def call(self, t_start: float, t_end: float, leaf: str, caller: str, gpa: int,
             status: int) -> None:
        self.calls.append((t_start, t_end, leaf, caller, gpa, status))

    def op(self, op: str, actor: str, gpa: int, t_start: float, t_end: float, attempts: int,
           busy: int, outcome: str) -> None:
        self.ops.append((op, actor, gpa, t_start, t_end, attempts, busy, outcome))

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
