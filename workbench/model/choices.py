"""Layer 3 (model): a run's schedule as data, for the race finder (:mod:`workbench.explore`).

A normal run draws its nondeterminism from seeded numpy streams (``workbench.rng``) and never
touches this module. A run built with a :class:`Choices` takes *every* nondeterministic
choice from one sequence of integers in ``[0, 2**16)`` instead, in the order the run asks
for them:

- the order of events due at the same instant (:class:`~.clock.FairEnvironment`'s tie key):
  the value is the key's high bits, so 0 everywhere is SimPy's own FIFO order. Only events
  scheduled with no delay ask: a timed event's place among others is its jittered delay,
  itself a choice, and two continuous delays do not tie;
- each jittered duration (:class:`~.clock.Jitter` via :class:`~workbench.rng.Draws`): the
  value is a quantile of the standard normal, zig-zag coded so that 0 is the median and
  larger values lie further out (even: faster, odd: slower);
- each random workload, policy and module draw (``integers``, ``random``, ``uniform``,
  ``exponential``): the value is ``u = value / 2**16``, so 0 is the smallest outcome.

So a recorded sequence replays its run exactly, any sequence of integers is a valid schedule
(past its end every choice is 0: the default schedule), and mutating or shrinking a sequence
moves towards SimPy's order, median durations and the simplest workload.

One guard: a draw of 0 is a think time of exactly 0, and a guest loop that thinks while it
waits (a huge_converter that finds its chunk in conversion by another vCPU) then spins at
one instant without yielding to SimPy, for ever once every later choice is 0 (the fill past
a shrunk prefix). More than ``SPIN_CHOICES`` choices at one simulated instant end the run
there (:class:`Spin`, a ``StopSimulation``); such a run fails no oracle.
"""
from __future__ import annotations

import math
from statistics import NormalDist

from simpy.core import StopSimulation
from simpy.events import URGENT, Event

BITS = 16
TOP = 1 << BITS
_HALF = TOP >> 1
_Z = NormalDist().inv_cdf
SPIN_CHOICES = 20_000        # choices at one instant before a run is taken as spinning


class Spin(StopSimulation):
    """A run made ``SPIN_CHOICES`` choices without simulated time advancing."""


def normal_of(value: int) -> float:
    """The standard-normal draw a choice value stands for (0: the median)."""
    k, slower = value >> 1, value & 1
    z = _Z(0.5 + 0.5 * (k + 0.5) / _HALF) if k else 0.0
    return z if slower else -z


def unit_of(value: int) -> float:
    """The uniform draw in [0, 1) a choice value stands for."""
    return value / TOP


class Choices:
    """One run's choice sequence. ``source(kind, index)`` gives each value (kind: ``tie``,
    ``normal`` or ``unit``; index: its position); every value given is kept in ``made``, in
    order. Once ``halted`` (the run already failed), choices are 0 and no longer recorded,
    so what follows the failure is not part of the schedule."""

    def __init__(self, source):
        self.source = source
        self.made: list[int] = []
        self.kinds: list[str] = []
        self.env = None          # set by the Td: who is running (PCT's priorities)
        self.halted = False
        self.spun = False
        self._at, self._same = -1.0, 0

    def value(self, kind: str) -> int:
        if self.halted:
            return 0
        if self.env is not None:
            if self.env.now != self._at:
                self._at, self._same = self.env.now, 0
            elif (n := self._same + 1) > SPIN_CHOICES:
                self.halted = self.spun = True
                raise Spin(f"{n} choices at t={self._at} us")
            else:
                self._same = n
        v = int(self.source(kind, len(self.made))) % TOP
        self.made.append(v)
        self.kinds.append(kind)
        return v

    def tie(self, bits: int) -> int:
        return self.value("tie")

    def stream(self, name: str) -> "ChoiceStream":
        return ChoiceStream(self, name)


class _NormalDraws:
    """What :class:`~workbench.rng.Draws` gives for a choice stream: one choice per draw."""
    __slots__ = ("_c", "_kind")

    def __init__(self, choices: Choices, kind: str):
        self._c, self._kind = choices, kind

    def next(self) -> float:
        if self._kind == "standard_normal":
            return normal_of(self._c.value("normal"))
        return unit_of(self._c.value("unit"))


class ChoiceStream:
    """Stands in for a named numpy Generator: the scalar draws the model makes, each one a
    choice of the run's :class:`Choices`."""

    def __init__(self, choices: Choices, name: str):
        self._c, self.name = choices, name

    def draws(self, kind: str) -> _NormalDraws:
        """The hook :class:`~workbench.rng.Draws` calls instead of buffering numpy draws."""
        if kind not in ("standard_normal", "random"):
            raise ValueError(f"a choice stream cannot draw {kind!r}")
        return _NormalDraws(self._c, kind)

    def _u(self, size) -> float:
        if size is not None:
            raise ValueError("a choice stream draws scalars only")
        return unit_of(self._c.value("unit"))

    def random(self, size=None) -> float:
        return self._u(size)

    def uniform(self, low=0.0, high=1.0, size=None) -> float:
        return low + (high - low) * self._u(size)

    def exponential(self, scale=1.0, size=None) -> float:
        return -scale * math.log1p(-self._u(size))

    def integers(self, low, high=None, size=None) -> int:
        if high is None:
            low, high = 0, low
        return int(low + math.floor(self._u(size) * (high - low)))

    def standard_normal(self, size=None) -> float:
        if size is not None:
            raise ValueError("a choice stream draws scalars only")
        return normal_of(self._c.value("normal"))

    def normal(self, loc=0.0, scale=1.0, size=None) -> float:
        return loc + scale * self.standard_normal(size)


def stop_at_failure(td) -> None:
    """End ``td``'s simulation at the instant the TD stops (VM bugged, panic, dead): a
    failure needs no more of the schedule, and its choices stop being recorded."""
    stop = td.stop

    def stopping(reason, actor, detail=""):
        first = not td.stopped
        stop(reason, actor, detail)
        if first:
            if td.choices is not None:
                td.choices.halted = True
            ev = Event(td.env)
            ev._ok, ev._value = True, None
            ev.callbacks.append(StopSimulation.callback)
            td.env.schedule(ev, URGENT)
    td.stop = stopping


__all__ = ["stop_at_failure", "Spin", "SPIN_CHOICES", "BITS", "TOP", "Choices", "ChoiceStream", "normal_of", "unit_of"]
