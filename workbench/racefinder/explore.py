"""Layer 6: the race finder. Explores the schedules of a small TD (its choice sequences,
:mod:`workbench.model.choices`) until one makes a policy bug the VM, panic the guest, kill
the TD, livelock, starve an operation or break a model invariant; shrinks that schedule
(:mod:`workbench.shrink`, deterministic) to a smaller one that fails the same way; prints it as a
numbered trace and saves it as a replay file (:mod:`workbench.replay`).

Strategies (how schedule ``i`` of a search is drawn):

- ``random``: every choice uniform, so ties in random order and durations, workload draws
  as the seeded model draws them (a zig-zag coded uniform value is a half-normal magnitude
  with a fair sign);
- ``pct``: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010) carried over
  to a timed model: each SimPy process gets a random priority, a higher one runs its
  jittered durations faster and goes first among events due at one instant; at ``depth - 1``
  random choice points the running process drops below every other. In the paper's
  setting (threads, no time) a bug of depth d is hit with probability at least
  ``1 / (n k^(d-1))`` per schedule (n threads, k steps); here time is continuous and the
  bound is not proven, so the tests state the budget they use instead;
- ``bounded``: the default schedule (SimPy's order, median durations) and every schedule
  that departs from it at up to ``depth`` choice points (a tie run last, a duration at its
  2.5 % or 97.5 % quantile), fewest departures first: preemption bounding as in CHESS,
  exhaustive when the budget covers the bound; the verdict says how much it covered;
- ``guided``: a search guided by contention (:mod:`workbench.racefinder.guided`): keeps
  the schedules that reach a state not seen before (:mod:`workbench.racefinder.reach`) and
  mutates them towards overlapping holds, over the scenario and swarm variants of it.

Every strategy counts the distinct lock-acquisition interleavings it saw: the sequence of
(caller, call, BUSY status with its lock) of a run, i.e. which call met which held lock in
which order; schedules that differ only in timing without changing who met a held lock
count once.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

from ..core.config import ConfigError
from ..core.limits import MAX_SCHEDULES
from ..model.choices import Choices, stop_at_failure
from ..model.td import Td
from .reach import deepest
from .schedule import (FAST, LAST, SLOW, Outcome, PctSource, make_target, prefix_source,
                       random_source, run_schedule)

STRATEGIES = ("random", "pct", "bounded", "guided")
BATCH = 8                          # schedules per engine job
WINDOW = 32                        # engine jobs handed out at once
KEEP_FAILURES = 8                  # failures looked at before the shortest is shrunk


# ------------------------------------------------------------------ batches of schedules
def _source_for(strategy, seed, i, depth, plan):
    if strategy == "random":
        return random_source(seed * 1_000_003 + i)
    if strategy == "pct":
        return PctSource(seed * 1_000_003 + i, depth, plan["k"])
    return prefix_source(plan["deviations"][i])


def run_batch(args) -> list:
    """Engine job: schedules ``indices`` of a search; a tuple per schedule (index,
    failure, signature, choices when it failed, stopped_at)."""
    target, strategy, seed, depth, plan, indices = args
    out = []
    for i in indices:
        src = _source_for(strategy, seed, i, depth, plan)
        o = run_schedule(target, src, reach=True)
        out.append((i, o.failure, o.signature, o.choices if o.failure else None, o.stopped_at,
                    o.reached))
    return out


# ------------------------------------------------------------------ the search
@dataclass
class Verdict:
    """What a search found: a counterexample (shrunk) or none in ``schedules``."""
    scenario: str
    policy: str
    strategy: str
    depth: int
    schedules: int
    seconds: float
    interleavings: int
    failure: tuple | None = None
    choices: list | None = None
    found_at: int | None = None
    failures: int = 0
    shrunk: Outcome | None = None
    covered: tuple | None = None       # bounded: (deviation sets run, in the bound)
    shrink_runs: int = 0
    target: object = None
    reached: frozenset = frozenset()     # features reached (reach.py)
    first_at: tuple | None = None       # (schedules, seconds) when the first failure came
    variant: dict | None = None         # guided: the swarm overrides the failure ran with
    reduced: list = field(default_factory=list)   # scenario reductions the shrink kept
    target_sizes: tuple = ()             # (vCPUs, pages converted per MapGPA) as found
    reduced_from: tuple | None = None    # (sizes as found, sizes after the shrink)

    @property
    def shrunk_length(self) -> int:
        """Choices of the shrunk schedule up to its last one that is not the default (0):
        past it the default schedule is all it needs."""
        c = list(self.shrunk.choices)
        while c and c[-1] == 0:
            c.pop()
        return len(c)

    @property
    def rate(self) -> float:
        return self.schedules / self.seconds if self.seconds else float("inf")

    def text(self) -> str:
        head = (f"{self.scenario} / {self.policy}: {self.strategy}"
                + (f" depth {self.depth}" if self.strategy != "random" else "")
                + f", {self.schedules} schedules in {self.seconds:.1f} s "
                  f"({self.rate:.1f}/s), {self.interleavings} distinct lock-acquisition "
                  "interleavings" + (f", {self.failures} failing" if self.failures else ""))
        if self.covered:
            head += f", {self.covered[0]} of {self.covered[1]} schedules within the bound"
        deep = deepest(self.reached)
        if deep:
            head += ", most BUSY in one operation: " + ", ".join(
                f"{site} {n}" for site, n in sorted(deep.items()))
        if self.failure is None:
            return f"No counterexample. {head}."
        if self.variant:
            head += "; on the swarm variant " + ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in self.variant.items())
        text = (f"COUNTEREXAMPLE ({self.failure[0]}): {self.failure[1]}\n{head}; "
                f"the shortest is schedule {self.found_at}, shrunk from {len(self.choices)} to "
                f"{self.shrunk_length} choices in {self.shrink_runs} runs")
        if self.reduced_from:
            (v0, p0), (v1, p1) = self.reduced_from
            text += (f"; the TD shrunk from {v0} to {v1} vCPUs and {p0} to {p1} pages per "
                     f"conversion ({'; '.join(self.reduced)})")
        return text


def explore(scenario, policy="upstream", *, schedules: int = 200, strategy: str = "random",
            depth: int = 3, seed: int = 0, oracles=None, predicate=None, sets=None,
            livelock_us=None, starve_us=None, shrink: bool = True, shrink_seconds: float = 15.0,
            engine=None, workers=None, swarm: int = 3, max_seconds: float | None = None,
            client=None, progress=None) -> Verdict:
    """Search ``schedules`` schedules of ``scenario`` under ``policy`` for one that fails
    an oracle; once one fails, look a little further (up to ``KEEP_FAILURES`` failures or
    twice the schedules it took) and shrink the failing schedule with the fewest choices.
    ``guided`` spreads its schedules over the scenario and ``swarm`` variants of it.
    ``max_seconds`` ends the search early (looked at between batches only).
    Returns a :class:`Verdict`."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    for name, v, lo in (("schedules", schedules, 1), ("depth", depth, 1), ("seed", seed, 0),
                        ("swarm", swarm, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name} must be a whole number >= {lo}, not {v!r}")
    if schedules > MAX_SCHEDULES:
        raise ConfigError(f"schedules {schedules} is above the limit of {MAX_SCHEDULES:,} "
                          "(hours of runs); split the search over seeds")
    for name, v in (("shrink_seconds", shrink_seconds), ("max_seconds", max_seconds)):
        if v is not None and not (isinstance(v, (int, float)) and v >= 0):
            raise ConfigError(f"{name} must be a number >= 0, not {v!r}")
    target = make_target(scenario, policy, sets=sets, oracles=oracles, predicate=predicate,
                         livelock_us=livelock_us, starve_us=starve_us)
    t0 = time.monotonic()
    deadline = None if max_seconds is None else t0 + max_seconds
    if predicate is not None:
        engine = "serial"        # a user's callable need not pickle
    variant = None
    if strategy == "guided":
        from .guided import search
        n, covered = schedules, 0
        bar = _bar(n, f"{target.cfg.name} / {target.pset.name}", progress)
        try:
            found, variants, seen, done, failures, reached, first = search(
                target, schedules=schedules, seed=seed, swarm=swarm, engine=engine,
                workers=workers, client=client, bar=bar, deadline=deadline,
                keep_failures=KEEP_FAILURES)
        finally:
            bar.close()
        if found:
            variant = variants[found[3]].sets or None
            target = variants[found[3]].target
            found = found[:3]
    else:
        found, seen, done, failures, reached, covered, first = _search(
            target, strategy, depth, seed, schedules, engine, workers, client, progress,
            deadline)
    v = Verdict(target.cfg.name, target.pset.name, strategy, depth, done,
                time.monotonic() - t0, len(seen), failures=failures,
                covered=(done, covered) if strategy == "bounded" else None,
                reached=frozenset(reached), variant=variant,
                first_at=None if first is None else (first[0], first[1] - t0))
    if found:
        v.found_at, v.failure, v.choices = found
        v.target_sizes = _sizes(target.cfg)
        if shrink:
            from .shrink import shrink_choices, shrink_scenario
            t_end = time.monotonic() + shrink_seconds
            # the TD first (a few runs, at most half the time), then the choices
            smaller, chs, v.reduced, runs = shrink_scenario(target, v.choices, v.failure[0],
                                                      max_seconds=shrink_seconds / 2)
            if v.reduced:
                target = smaller
                v.reduced_from = (v.target_sizes, _sizes(target.cfg))
            v.shrunk, v.shrink_runs = shrink_choices(
                target, chs, v.failure[0], max_seconds=max(0.0, t_end - time.monotonic()))
            v.shrink_runs += runs
            v.failure = v.shrunk.failure
        else:
            v.shrunk = run_schedule(target, prefix_source(v.choices), keep=True)
    v.target = target
    return v


def _search(target, strategy, depth, seed, schedules, engine, workers, client, progress,
            deadline):
    """random, pct, bounded: batches of schedules drawn independently of each other."""
    t0 = time.monotonic()
    plan, covered = _plan(target, strategy, depth, schedules)
    n = len(plan["deviations"]) if strategy == "bounded" else schedules
    found, seen, done, failures, first_at, reached = None, set(), 0, 0, None, set()
    first = None
    bar = _bar(n, f"{target.cfg.name} / {target.pset.name}", progress)
    from ..experiments.engines import imap_jobs
    stop = False
    try:
        for w in range(0, n, WINDOW * BATCH):     # jobs made as needed, not all at once
            if stop:
                break
            jobs = [(target, strategy, seed, depth, plan, list(range(a, min(n, a + BATCH))))
                    for a in range(w, min(n, w + WINDOW * BATCH), BATCH)]
            for _, rows in imap_jobs(run_batch, jobs, engine, workers, client):
                for i, failure, sig, chs, _, feats in rows:
                    done += 1
                    seen.add(sig)
                    reached |= feats
                    if failure:
                        failures += 1
                        if first_at is None:
                            first_at, first = done, (done, time.monotonic())
                        # the failure with the fewest choices: it fails earliest, shrinks best
                        if found is None or (len(chs), i) < (len(found[2]), found[0]):
                            found = (i, failure, chs)
                bar.update(len(rows))
                bar.set_postfix(per_s=f"{done / max(1e-9, time.monotonic() - t0):.1f}")
                stop = bool(found and (failures >= KEEP_FAILURES
                                       or done >= 2 * first_at + 2 * BATCH)) \
                    or (deadline is not None and time.monotonic() > deadline)
                if stop:
                    break
    finally:
        bar.close()
    return found, seen, done, failures, reached, covered, first


def _sizes(cfg) -> tuple:
    """(vCPUs, 4 KB pages converted per conversion, summed over converters)."""
    return (cfg.n_vcpus, sum(g.count * g.range_kb // 4 for g in cfg.vcpus
                             if "converter" in g.role))


def _plan(target, strategy, depth, budget) -> tuple[dict, int]:
    """pct: the length k of a run's choice sequence (from the default schedule);
    bounded: the deviation vectors within ``depth`` departures, fewest first, up to the
    budget, and how many the bound holds."""
    if strategy == "random":
        return {"deviations": []}, 0
    base = run_schedule(target, prefix_source(()))
    k = len(base.choices)
    if strategy == "pct":
        return {"k": k, "deviations": []}, 0
    alts = {"tie": (LAST,), "normal": (FAST, SLOW), "unit": ()}
    kinds = _kinds(target)
    points = [(i, a) for i in range(k) for a in alts[kinds[i]]]
    total = sum(math.comb(len(points), d) for d in range(depth + 1))
    out = []
    for d in range(depth + 1):
        for combo in itertools.combinations(points, d):
            if len({i for i, _ in combo}) < d:
                continue
            vec = [0] * (max((i for i, _ in combo), default=-1) + 1)
            for i, a in combo:
                vec[i] = a
            out.append(vec)
            if len(out) >= budget:
                return {"deviations": out}, total
    return {"deviations": out}, total


def _kinds(target) -> list:
    c = Choices(lambda kind, i: 0)
    td = Td(target.cfg, target.pset, target.cal, 0, 0, choices=c)
    stop_at_failure(td)
    td.run()
    return c.kinds


def _bar(total, name, progress):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"{name}: schedules", unit="sched",
                disable=None if progress is None else not progress, dynamic_ncols=True)


__all__ = ["explore", "run_schedule", "make_target", "Verdict", "Outcome", "STRATEGIES",
           "prefix_source", "random_source", "PctSource"]
