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
    meaning."""

    def __init__(self, seed: int, initial_time: float = 0.0):
        super().__init__(initial_time)
        self._tie = random.Random(seed).getrandbits

    def schedule(self, event, priority=NORMAL, delay=0):
        heappush(self._queue, (self._now + delay, priority,
                               (self._tie(23) << 40) | next(self._eid), event))


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


class Empirical:
    """Durations drawn from measured samples (a calibration row with ``status: measured``),
    with Jitter's call interface and generator: a uniform draw picks a sample, scaled so
    that the samples' mean is the calibrated mean ``base_us``."""

    __slots__ = ("_samples", "_mean", "_draws")

    def __init__(self, samples, rng):
        self._samples = tuple(float(x) for x in samples)
        self._mean = math.fsum(self._samples) / len(self._samples)
        self._draws = Draws(rng, "random")

    def __call__(self, base_us: float) -> float:
        s = self._samples[int(self._draws.next() * len(self._samples))]
        return max(MIN_STEP_US, s * base_us / self._mean)


class WithMeasured:
    """Jitter, except for calibrated values that carry measured samples
    (:class:`workbench.measured.Measured`): those draw from their :class:`Empirical`."""

    __slots__ = ("_jitter", "_measured")

    def __init__(self, jitter: Jitter, measured: dict):
        self._jitter, self._measured = jitter, measured

    def __call__(self, base_us: float) -> float:
        if base_us.__class__ is not float:
            e = self._measured.get(getattr(base_us, "quantity", None))
            if e is not None:
                return e(base_us)
        return self._jitter(base_us)


def durations(cal, cv: float, rng):
    """The draw of durations of one party: :class:`Jitter` with ``cv``, plus the measured
    quantities of the calibration (drawn from the same generator)."""
    jitter = Jitter(cv, rng)
    if not cal.measured:
        return jitter
    from ..measured import samples_of
    return WithMeasured(jitter, {q: Empirical(v, rng) for q, v in samples_of(cal.measured).items()})


__all__ = ["FairEnvironment", "Jitter", "Empirical", "durations", "MIN_STEP_US"]
