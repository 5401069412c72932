"""Layer 3 (model): how simulated time is cut, so that no party wins by construction.

Two things decide who gets a lock first when nothing in the real machine does:
- **ties**: events due at the same instant. SimPy runs them in the order they were
  scheduled, so the process created first, or the one that woke the others, always wins.
  :class:`FairEnvironment` orders them from a seeded stream instead (design.md, "one source
  of nondeterminism"); the model never knows.
- **fixed durations**: every duration, KVM's and the module's alike, is drawn by
  :class:`Jitter` around its calibrated mean, so fixed step lengths cannot phase-lock
  parties (a TRACK that always starts just after every VP.ENTER's epoch hold).
"""
from __future__ import annotations

import math
import random
from heapq import heappush

import simpy
from simpy.core import NORMAL

from ..rng import Draws

# The smallest duration the model ever waits: simulated time always advances, even when a
# calibration gives a duration that ``now + d == now`` would swallow.
MIN_STEP_US = 1e-6


class FairEnvironment(simpy.Environment):
    """A SimPy environment that breaks same-instant ties from a seeded stream.

    SimPy's heap key is ``(time, priority, insertion counter)``; here the counter's high bits
    are random, so events due at one instant with one priority run in a random, seeded order
    (the low bits keep every key unique). Priorities (process start, interrupts) keep their
    meaning.

    ``choices`` (a :class:`~.choices.Choices`, for the race finder): the high bits of an
    event scheduled with no delay are a choice of the run's schedule instead; a timed
    event's are 0, its place being its (chosen) delay."""

    def __init__(self, seed: int, initial_time: float = 0.0, choices=None):
        super().__init__(initial_time)
        self._tie = random.Random(seed).getrandbits
        if choices is not None:
            self._chosen = choices.tie
            self.schedule = self._schedule_chosen

    def schedule(self, event, priority=NORMAL, delay=0):
        heappush(self._queue, (self._now + delay, priority,
                               (self._tie(23) << 40) | next(self._eid), event))

    def _schedule_chosen(self, event, priority=NORMAL, delay=0):
        tie = self._chosen(23) if not delay else 0
        heappush(self._queue, (self._now + delay, priority, (tie << 40) | next(self._eid), event))


class Jitter:
    """Durations around a calibrated mean: lognormal with mean 1 and coefficient of
    variation ``cv`` (positive, right-skewed: a code path is sometimes slow, never
    negative)."""

    __slots__ = ("_sigma", "_mu", "_draws")

    def __init__(self, cv: float, rng):
        self._sigma = math.sqrt(math.log1p(cv * cv))
        self._mu = -self._sigma ** 2 / 2
        self._draws = Draws(rng, "standard_normal")

    def __call__(self, base_us: float) -> float:
        if not base_us:
            return 0.0
        if not self._sigma:
            return max(base_us, MIN_STEP_US)
        return max(MIN_STEP_US, base_us * math.exp(self._mu + self._sigma * self._draws.next()))


__all__ = ["FairEnvironment", "Jitter", "MIN_STEP_US"]
