"""Layer 3 (model): run a TD's environment to its horizon within a :class:`Budget`.

The same event order as ``env.run(until=horizon)`` (the stop event is scheduled exactly as
SimPy does it), but the steps are counted and the wall clock is read every few thousand
steps; when the budget is spent the TD stops with reason ``"budget"`` and the run ends
where it is, its tables covering the simulated time reached.
"""
from __future__ import annotations

import time
from heapq import heappop

from simpy.core import EmptySchedule, StopSimulation
from simpy.events import URGENT, Event

from ..core.limits import PROGRESS_S, as_budget

CHUNK = 4096     # steps between two looks at the clock


def run_budgeted(td, until: float, budget=None) -> int:
    """Step ``td.env`` until simulated time ``until`` or the budget ends; the steps taken."""
    env, b = td.env, as_budget(budget)
    stop = Event(env)
    stop._ok, stop._value = True, None
    env.schedule(stop, URGENT, float(until) - env.now)
    stop.callbacks.append(StopSimulation.callback)
    clock = time.monotonic
    queue = env._queue
    t0 = clock()
    deadline, report = t0 + b.max_seconds, t0 + PROGRESS_S
    n = 0
    try:
        while True:
            k = min(CHUNK, b.max_events - n)
            for i in range(k):          # simpy.Environment.step, inlined (the hot loop)
                try:
                    t, _, _, event = heappop(queue)
                except IndexError:
                    raise EmptySchedule from None
                env._now = env.now = t          # FairEnvironment: ``now`` is an attribute
                callbacks, event.callbacks = event.callbacks, None
                for callback in callbacks:
                    callback(event)
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
            n += k
            if n >= b.max_events:
                why = f"{n} simulated events (max_events)"
                break
            t = clock()
            if t > deadline:
                why = f"{b.max_seconds:g} s of wall-clock time (max_seconds)"
                break
            if b.progress is not None and t >= report:
                report = t + PROGRESS_S
                b.progress(env.now, float(until), n, t - t0)
    except StopSimulation:      # the stop event was step i + 1 of this chunk
        return n + i + 1
    except EmptySchedule:       # cannot happen while the stop event is pending
        return n + i
    td.stop("budget", "workbench", f"stopped at t={env.now:.6g} us after {why}")
    return n
