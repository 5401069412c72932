"""Layer 6: shrink a failing schedule with Hypothesis's shrinker.

The failing choice sequence is handed to Hypothesis as a saved, not yet shrunk example of a
search whose test draws the run's schedule from Hypothesis, so Hypothesis replays it, sees
it fail, and shrinks it as it shrinks any failing example. Two stages, because Hypothesis
costs ~0.1-0.3 ms per drawn value and a run makes thousands of choices, each stage draws
one value per run:

1. the *length*: the example is one integer ``n``; the run takes the first ``n`` choices of
   the failing sequence and 0 after them (SimPy's order, median durations, the simplest
   workload). Cheap, and it removes everything after what the failure needs;
2. the *values*: the example is one byte string, two bytes per choice, which Hypothesis
   shrinks to fewer and smaller bytes (one drawn value per run, however long the run).

A shrunk schedule must fail the same oracle; runs are cut at the original failure's time,
since a schedule that fails later is no smaller.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from unittest import mock




def _pack(values) -> bytes:
    return b"".join(int(v).to_bytes(2, "big") for v in values)


def _unpack(raw: bytes) -> list:
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw) - 1, 2)]


def shrink_choices(target, choices, oracle: str, max_seconds: float = 30.0,
                   max_runs: int = 600):
    """``(outcome, runs)``: the shrunk schedule's :class:`~workbench.explore.Outcome`
    (kept, with its run) and how many runs the shrinking took."""
    from hypothesis import strategies as st

    from .explore import prefix_source, run_schedule

    first = run_schedule(target, prefix_source(choices))
    if not first.failure or first.failure[0] != oracle:
        raise RuntimeError("the failing schedule does not replay")   # a model bug, not input
    until = first.stopped_at * 1.000001
    base = list(first.choices)
    stop_at = time.monotonic() + max_seconds
    runs = [0]

    def fails(vals) -> bool:
        if runs[0] >= max_runs:
            return None        # tells _shrink the budget is spent
        runs[0] += 1
        o = run_schedule(target, prefix_source(vals), until=until)
        return bool(o.failure) and o.failure[0] == oracle

    n = len(base)
    best = _shrink((n,), lambda data: fails(base[:data.draw(st.integers(0, n))]), stop_at)
    cut = base[:best[0]]
    if cut:
        raw = st.binary(max_size=2 * len(cut))
        best = _shrink((_pack(cut),), lambda data: fails(_unpack(data.draw(raw))), stop_at)
        cut = _unpack(best[0])
    out = run_schedule(target, prefix_source(cut), until=until, keep=True)
    if not out.failure or out.failure[0] != oracle:       # keep what is known to fail
        out = run_schedule(target, prefix_source(base), until=until, keep=True)
    return out, runs[0]


def _shrink(example: tuple, fails, stop_at: float) -> tuple:
    """Hypothesis's smallest example (its choices) that ``fails(data)``, from ``example``;
    ``example`` itself when nothing smaller fails before ``stop_at``."""
    from hypothesis import HealthCheck, Phase, Verbosity, find, settings
    from hypothesis import strategies as st
    from hypothesis.database import InMemoryExampleDatabase, choices_to_bytes
    from hypothesis.errors import NoSuchExample
    from hypothesis.internal.conjecture import engine

    best, spent = [example], [False]

    def test(data) -> bool:
        if time.monotonic() > stop_at:
            # the one exception Hypothesis's engine stops on without judging the example
            # (any other makes a flaky test to it); told apart from Ctrl-C by ``spent``
            spent[0] = True
            raise KeyboardInterrupt
        drawn: list = []
        real = data.draw
        data.draw = lambda s: drawn.append(real(s)) or drawn[-1]
        ok = fails(data)
        if ok is None:
            spent[0] = True
            raise KeyboardInterrupt
        if ok and (len(drawn), drawn) < (len(best[0]), list(best[0])):
            best[0] = tuple(drawn)
        return ok

    db, key = InMemoryExampleDatabase(), b"workbench-explore-shrink"
    # saved as a not yet shrunk example (Hypothesis takes its primary ones as shrunk)
    db.save(key + b".secondary", choices_to_bytes(example))
    conf = settings(database=db, max_examples=10**6, phases=[Phase.reuse, Phase.shrink],
                    suppress_health_check=list(HealthCheck), deadline=None,
                    verbosity=Verbosity.quiet)
    # Hypothesis caps an example's size (BUFFER_SIZE, 8 KB of choices); a schedule may be
    # longer, so the cap is raised for this search only (an internal constant: if it
    # moves, the search still runs, on schedules within the cap)
    size = len(choices_to_bytes(example))
    cap = mock.patch.object(engine, "BUFFER_SIZE", max(engine.BUFFER_SIZE, 2 * size)) \
        if hasattr(engine, "BUFFER_SIZE") else contextlib.nullcontext()
    with warnings.catch_warnings(), cap:
        warnings.simplefilter("ignore")
        try:
            find(st.data(), test, settings=conf, database_key=key)
        except NoSuchExample:
            pass
        except KeyboardInterrupt:
            if not spent[0]:
                raise
    return best[0]
