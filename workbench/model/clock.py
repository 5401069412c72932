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
from heapq import heappop, heappush

import numpy as np
import simpy
from simpy.core import NORMAL, EmptySchedule, StopSimulation
from simpy.events import EventPriority
from simpy.events import Process, Timeout

from ..core.rng import Draws

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

    # ``now`` is a plain attribute kept equal to SimPy's ``_now`` (by :meth:`step` and by
    # budget.run_budgeted's loop), not SimPy's property: the model reads it at every step
    now = 0.0

    def __init__(self, seed: int, initial_time: float = 0.0, choices=None):
        super().__init__(initial_time)
        self.now = self._now
        self._tie = random.Random(seed).getrandbits
        # SimPy's Timeout with this env, triggered and ok, as class attributes: a timeout
        # then sets only its callbacks and delay (the model's hottest object)
        self._timeout_cls = type("Timeout", (Timeout,),
                                 {"env": self, "_ok": True, "_value": None})
        if choices is not None:
            self._chosen = choices.tie
            self.schedule = self._schedule_chosen
            # SimPy's Timeout goes through ``schedule`` (the fast ``timeout`` below does not)
            self.timeout = lambda delay=0, value=None: Timeout(self, delay, value)

    def step(self):
        """``simpy.Environment.step``, setting ``now`` with ``_now`` before the callbacks."""
        try:
            self._now, _, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        self.now = self._now
        callbacks, event.callbacks = event.callbacks, None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, EventPriority(-1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    def schedule(self, event, priority=NORMAL, delay=0):
        heappush(self._queue, (self._now + delay, priority,
                               (self._tie(23) << 40) | next(self._eid), event))

    def _schedule_chosen(self, event, priority=NORMAL, delay=0):
        tie = self._chosen(23) if not delay else 0
        heappush(self._queue, (self._now + delay, priority, (tie << 40) | next(self._eid), event))

    def process(self, generator):
        return _Process(self, generator)

    def timeout(self, delay=0, value=None):
        """``simpy.Timeout(self, delay, value)``, built in one call: the model's hottest
        line (SimPy's own binding is lost on a subclass, so each ``env.timeout`` cost a
        descriptor, a bound method, ``__init__`` and ``schedule``)."""
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        t = _new_timeout(self._timeout_cls)
        t.callbacks, t._delay = [], delay
        if value is not None:
            t._value = value
        heappush(self._queue, (self._now + delay, NORMAL,
                               (self._tie(23) << 40) | next(self._eid), t))
        return t


class _Process(Process):
    """``simpy.Process`` with the same ``_resume``, minus per-event lookups: the generator's
    ``send`` and the bound ``_resume`` are made once, not at every event (``Interruption``
    finds the bound method by equality, which still holds)."""

    def __init__(self, env, generator):
        super().__init__(env, generator)
        self._send = generator.send
        self._resume_cb = self._resume

    def _resume(self, event) -> None:
        env = self.env
        env._active_proc = self
        send = self._send
        while True:
            try:
                if event._ok:
                    event = send(event._value)
                else:
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    event = self._generator.throw(exc)
            except StopIteration as e:
                event = None
                self._ok = True
                self._value = e.args[0] if len(e.args) else None
                env.schedule(self)
                break
            except BaseException as e:
                event = None
                self._ok = False
                e.__traceback__ = e.__traceback__.tb_next
                self._value = e
                env.schedule(self)
                break
            try:
                callbacks = event.callbacks
            except AttributeError:
                raise RuntimeError(f"Invalid yield value {event!r}") from None
            if callbacks is not None:
                callbacks.append(self._resume_cb)
                break
        self._target = event
        env._active_proc = None


class Jitter:
    """Durations around a calibrated mean: lognormal with mean 1 and coefficient of
    variation ``cv`` (positive, right-skewed: a code path is sometimes slow, never
    negative)."""

    __slots__ = ("_sigma", "_mu", "_draws", "_factors", "_i", "_numpy_exp")

    def __init__(self, cv: float, rng, block: int = 4096, numpy_exp: bool = False):
        self._sigma = math.sqrt(math.log1p(cv * cv))
        self._mu = -self._sigma ** 2 / 2
        self._draws = Draws(rng, "standard_normal", block)
        self._factors, self._i = [], 0
        # numpy's exp for a whole block: faster, not bit-equal to math.exp, so only for a
        # stream of its own whose every user draws it the same way (fastpath.py)
        self._numpy_exp = numpy_exp

    def __call__(self, base_us: float) -> float:
        if not base_us:
            return 0.0
        i = self._i
        try:
            f = self._factors[i]
        except IndexError:            # first call, block used up, or no jitter (cv 0)
            if not self._sigma:
                return max(base_us, MIN_STEP_US)
            self._refill()
            i, f = 0, self._factors[0]
        self._i = i + 1
        d = base_us * f
        return d if d > MIN_STEP_US else MIN_STEP_US

    def unused(self, n: int) -> list:
        """Up to ``n`` factors drawn and not used yet (from the rest of the block), for a
        caller that uses many at once (fastpath.py) and then says how many with
        :meth:`used`."""
        return self._factors[self._i:self._i + n] if self._sigma else []

    def used(self, n: int) -> None:
        self._i += n

    def _refill(self) -> None:
        """The next block of factors exp(mu + sigma z), drawn when the last block ends, as
        one draw per call would (so a generator shared with other streams sees the same
        requests in the same order)."""
        d = self._draws
        z = d.next()                  # refills the block exactly when one draw would
        mu, sigma, exp = self._mu, self._sigma, math.exp
        if not isinstance(d, Draws):  # a race-finder choice stream: one choice per duration
            self._factors = [exp(mu + sigma * z)]
            return
        if self._numpy_exp:
            self._factors = np.exp(mu + sigma * np.array(d._buf[d._i - 1:])).tolist()
        else:
            self._factors = [exp(mu + sigma * z) for z in d._buf[d._i - 1:]]
        d._i = len(d._buf)


_new_timeout = object.__new__

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


def durations(cal, cv: float, rng, block: int = 4096, numpy_exp: bool = False):
    """The draw of durations of one party: :class:`Jitter` with ``cv``, plus the measured
    quantities of the calibration (drawn from the same generator); ``block``: draws per
    refill (smaller for a stream that many parties each own and most use little)."""
    jitter = Jitter(cv, rng, block, numpy_exp)
    if not cal.measured:
        return jitter
    from ..core.samples import samples_of
    return WithMeasured(jitter, {q: Empirical(v, rng) for q, v in samples_of(cal.measured).items()})


__all__ = ["FairEnvironment", "Jitter", "Empirical", "durations", "MIN_STEP_US"]
