"""Layer 6: shrink a failing schedule to a smaller one that fails the same oracle.

A schedule is a choice sequence (:mod:`workbench.model.choices`); past its end every choice
is 0 (SimPy's order, median durations, the simplest workload), so a shorter sequence or a
smaller value is a simpler schedule. Smaller means shortlex: fewer choices, then smaller
values. The shrinker is delta debugging (Zeller and Hildebrandt, TSE 2002) with the value
passes of test-case reducers, in three passes repeated until none helps:

1. the *prefix*: the shortest prefix that still fails (a binary search, then a linear
   check downwards from it, since failure need not be monotone in the length);
2. *chunks*: delete runs of choices, halves first, down to single choices;
3. *values*: set each choice to 0, else halve it.

Every step is one run of the model and depends only on the sequence it tries, so the result
is a function of the input and the run budget (``max_runs``). The wall-clock budget
(``max_seconds``) is looked at only between steps: on a busy machine it stops the search
earlier, never in the middle of a run, and running out of either budget is not an error; the
smallest failing schedule found so far is returned. A shrunk schedule must fail the same
oracle; runs are cut at the original failure's time, since a schedule that fails later is
no smaller.
"""
from __future__ import annotations

import time


class _Budget:
    def __init__(self, max_runs: int, max_seconds: float):
        self.runs, self.max_runs = 0, max_runs
        self.stop_at = time.monotonic() + max_seconds

    def spent(self) -> bool:
        return self.runs >= self.max_runs or time.monotonic() > self.stop_at


def _key(values) -> tuple:
    return (len(values), list(values))


def _trim(values) -> list:
    """Trailing zeros say what the default past the end says already."""
    values = list(values)
    while values and values[-1] == 0:
        values.pop()
    return values


def shrink_choices(target, choices, oracle: str, max_seconds: float = 30.0,
                   max_runs: int = 600):
    """``(outcome, runs)``: the shrunk schedule's :class:`~workbench.explore.Outcome`
    (kept, with its run) and how many runs the shrinking took."""
    from .schedule import prefix_source, run_schedule

    first = run_schedule(target, prefix_source(choices))
    if not first.failure or first.failure[0] != oracle:
        raise RuntimeError("the failing schedule does not replay")   # a model bug, not input
    until = first.stopped_at * 1.000001
    budget = _Budget(max_runs, max_seconds)
    tried: dict = {}

    def fails(vals) -> bool:
        vals = _trim(vals)
        key = tuple(vals)
        if key not in tried:
            budget.runs += 1
            o = run_schedule(target, prefix_source(vals), until=until)
            tried[key] = bool(o.failure) and o.failure[0] == oracle
        return tried[key]

    best = _trim(first.choices)
    while not budget.spent():
        before = list(best)
        for step in (_shortest_prefix, _delete_chunks, _lower_values):
            best = step(best, fails, budget)
        if best == before:
            break
    out = run_schedule(target, prefix_source(best), until=until, keep=True)
    if not out.failure or out.failure[0] != oracle:       # keep what is known to fail
        out = run_schedule(target, prefix_source(first.choices), until=until, keep=True)
    return out, budget.runs


def _shortest_prefix(best: list, fails, budget: _Budget) -> list:
    lo, hi = 0, len(best)               # best[:hi] fails; find the least such hi
    while lo < hi and not budget.spent():
        mid = (lo + hi) // 2
        if fails(best[:mid]):
            hi = mid
        else:
            lo = mid + 1
    while hi > 0 and not budget.spent() and fails(best[:hi - 1]):
        hi -= 1
    return _trim(best[:hi])


def _delete_chunks(best: list, fails, budget: _Budget) -> list:
    size = max(1, len(best) // 2)
    while size >= 1 and not budget.spent():
        i = len(best) - size
        while i >= 0 and not budget.spent():
            cand = best[:i] + best[i + size:]
            if fails(cand):
                best = _trim(cand)
            i -= size
        size //= 2
    return best


def _lower_values(best: list, fails, budget: _Budget) -> list:
    for i in range(len(best) - 1, -1, -1):
        if budget.spent():
            break
        if i >= len(best) or best[i] == 0:
            continue
        for v in (0, best[i] // 2):
            cand = best[:i] + [v] + best[i + 1:]
            if _key(_trim(cand)) < _key(best) and fails(cand):
                best = _trim(cand)
                break
    return best


def _reductions(cfg) -> list[dict]:
    """One-step reductions of a scenario, smallest first: one vCPU fewer in a role, half
    the pages of a conversion, one spammer fewer per page."""
    out = []
    for g, grp in enumerate(cfg.vcpus):
        if grp.count > 1:
            out.append({f"vcpus.{g}.count": grp.count - 1})
        if "converter" in grp.role and grp.range_kb > 4:
            out.append({f"vcpus.{g}.range_kb": max(4, grp.range_kb // 8 * 4)})
        if grp.per_page > 1:
            out.append({f"vcpus.{g}.per_page": grp.per_page - 1})
    return out


def shrink_scenario(target, choices, oracle: str, max_seconds: float = 10.0,
                    max_runs: int = 40):
    """Delta debugging over the scenario itself: each reduction of :func:`_reductions`
    is kept when the schedule still fails the same oracle on the smaller TD (the same
    choices, which now fall elsewhere). ``(target, choices, kept, runs)``: the smallest
    target, the choices its failing run made, the reductions kept as ``key: old -> new``
    and the runs it took."""
    from dataclasses import replace

    from ..core.config import ConfigError, with_overrides
    from .schedule import prefix_source, run_schedule

    budget = _Budget(max_runs, max_seconds)
    kept: list = []
    changed = True
    while changed and not budget.spent():
        changed = False
        for sets in _reductions(target.cfg):
            if budget.spent():
                break
            try:
                smaller = replace(target, cfg=with_overrides(target.cfg, sets))
            except ConfigError:
                continue
            budget.runs += 1
            o = run_schedule(smaller, prefix_source(choices))
            if o.failure and o.failure[0] == oracle:
                (key, new), = sets.items()
                old = _get(target.cfg, key)
                kept.append(f"{key}: {old} -> {new}")
                target, choices, changed = smaller, _trim(o.choices), True
                break
    return target, choices, kept, budget.runs


def _get(cfg, key: str):
    node = cfg.model_dump()
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    return node
