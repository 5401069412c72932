"""Layer 6: the ``guided`` strategy, a search guided by contention as coverage-guided fuzzers
are guided by branches.

Each schedule reports what it reached (:mod:`workbench.racefinder.reach`: per BUSY, the
call, its status and lock, which try of its operation it was, and which call held the
lock). The search keeps every schedule that reached a feature not seen before (its
*corpus*) and makes the next schedules by mutating kept ones, favouring those that met the
same held lock most often in one operation. The mutations lean towards overlapping holds:

- *around a BUSY*: redraw the choices made in a window before a BUSY (the order of the
  events then, and their durations at their tails: the holder slower, the caller faster);
- *stretch a hold*: slow every duration drawn while a lock holder's call was under way, so
  the next try of the operation that met it finds it still held;
- *havoc*: redraw a few consecutive choices anywhere.

Past the mutated part a child keeps its parent's choices (the same future where it still
fits) or, half of the time, draws the rest at random. One schedule in five is fresh, drawn
uniformly or as PCT draws it (depth 3), half and half: PCT's priorities find the races
of one process running ahead of the others, the corpus the repeated ones.

Swarm testing (Groce et al., ISSTA 2012): half the schedules run on the scenario as
given, the other half in turn on ``swarm`` variants of it whose knobs (vCPUs per role, spam gap, pages per
conversion, think and interval times) are redrawn within the scenario's size, each variant
with its own corpus. A counterexample's replay file holds the variant it ran on.

Generations of ``GENERATION`` schedules run as engine jobs of ``BATCH``; the corpus is
updated between generations from the results in job order, so a search is a function of
its seed and budget, whatever the engine and workers.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace

from ..core.config import ConfigError, with_overrides
from .schedule import FAST, SLOW, PctSource, prefix_source, run_schedule

BATCH = 8
GENERATION = 16
PCT_DEPTH = 3            # fresh schedules drawn as PCT draws them use this depth


# ------------------------------------------------------------------ swarm variants
def swarm_sets(cfg, seed: int, n: int) -> list[dict]:
    """``n`` sets of overrides of ``cfg`` (the first: none), each within its size: fewer
    or as many vCPUs per role, pages per conversion no more than given, gaps and think
    times from a quarter to twice what is given."""
    r = random.Random(f"swarm/{seed}")
    out, tries = [{}], 0
    while len(out) < n + 1 and tries < 20 * (n + 1):
        tries += 1
        sets = {}
        for g, grp in enumerate(cfg.vcpus):
            if grp.count > 1:
                sets[f"vcpus.{g}.count"] = r.randint(1, grp.count)
            sets[f"vcpus.{g}.think_us"] = grp.think_us * r.choice((0.25, 0.5, 1.0, 2.0))
            if "converter" in grp.role:
                sets[f"vcpus.{g}.interval_us"] = grp.interval_us * r.choice((0.2, 0.5, 1.0))
                sets[f"vcpus.{g}.range_kb"] = 4 * r.randint(1, grp.range_kb // 4)
            if "spammer" in grp.role:
                sets[f"vcpus.{g}.gap_us"] = r.choice((0.0, 1.0, 2.0, grp.gap_us))
                sets[f"vcpus.{g}.per_page"] = r.randint(1, grp.per_page + 1)
        try:
            v = with_overrides(cfg, sets)
        except ConfigError:
            continue
        if v.n_vcpus >= 2 and sets not in out:
            out.append(sets)
    return out


# ------------------------------------------------------------------ one schedule, recorded
class _Recorded:
    """A prefix, then seeded random choices (or, for a fresh schedule with ``pct``, PCT's
    choices); records when (simulated time) and of which kind each choice was made, for
    the mutations."""

    def __init__(self, prefix, fill_seed: int, pct=None):
        self.prefix, self.bits = prefix, random.Random(fill_seed).getrandbits
        self.pct = PctSource(fill_seed, *pct) if pct else None
        self.times: list = []
        self.kinds: list = []
        self._choices = None

    def bind(self, choices) -> None:
        self._choices = choices
        if self.pct is not None:
            self.pct.bind(choices)

    def __call__(self, kind, i):
        env = self._choices.env if self._choices is not None else None
        self.times.append(env.now if env is not None else 0.0)
        self.kinds.append(kind)
        if i < len(self.prefix):
            return self.prefix[i]
        return self.pct(kind, i) if self.pct is not None else self.bits(16)


def run_children(args) -> list:
    """Engine job: ``(target, items)``, items ``(index, prefix, fill_seed, pct)``. Per child:
    (index, failure, signature, choices, stopped_at, features, times, kinds, busy, holds)."""
    from .reach import holders, in_flight
    target, items = args
    out = []
    for i, prefix, fill_seed, pct in items:
        src = _Recorded(prefix, fill_seed, pct)
        o = run_schedule(target, src, keep=True, reach=True)
        calls = o.td.rec.calls
        busy = [(t, attempt) for t, _, _, _, attempt, _ in o.decisions]
        held = holders(calls, in_flight(o.td))
        holds = sorted({(calls[j][0] - h[2], calls[j][0]) for j, h in held.items()})
        out.append((i, o.failure, o.signature, o.choices, o.stopped_at, o.reached,
                    src.times[:len(o.choices)], src.kinds[:len(o.choices)], busy, holds))
    return out


# ------------------------------------------------------------------ the corpus
@dataclass
class Entry:
    choices: list
    times: list
    kinds: list
    busy: list
    holds: list
    new: int                      # features it was the first to reach

    @property
    def weight(self) -> float:
        deepest = max((a for _, a in self.busy), default=0)
        return 1.0 + 3.0 * deepest + 2.0 * self.new


@dataclass
class Variant:
    target: object
    sets: dict
    corpus: list = field(default_factory=list)
    seen: set = field(default_factory=set)
    k: int = 1                    # choices of the default schedule (PCT's change points)


def _value(kind: str, r: random.Random, slower: bool | None = None) -> int:
    """A choice value at a tail: a duration at its slow or fast end, a random tie order."""
    if kind != "normal":
        return r.getrandbits(16)
    if slower is None:
        slower = r.random() < 0.5
    base = SLOW if slower else FAST
    return max(0, base - 2 * r.randrange(0, 1200)) | (1 if slower else 0)


def mutate(e: Entry, r: random.Random) -> list:
    """A child's prefix: ``e``'s choices mutated (see the module's docstring)."""
    vals, n = list(e.choices), len(e.choices)
    if not n:
        return []
    op = r.random()
    if e.busy and op < 0.45:                       # around a BUSY, deep retries first
        t, _ = r.choices(e.busy, weights=[a * a for _, a in e.busy])[0]
        w = r.choice((1.0, 3.0, 10.0, 30.0))
        idx = [j for j, tj in enumerate(e.times) if t - w <= tj <= t + w / 4]
        for j in idx:
            if r.random() < 0.5:
                vals[j] = _value(e.kinds[j], r)
    elif e.holds and op < 0.75:                    # stretch a hold
        a, b = r.choice(e.holds)
        idx = [j for j, tj in enumerate(e.times) if a <= tj <= b]
        for j in idx:
            vals[j] = _value(e.kinds[j], r, slower=True) if e.kinds[j] == "normal" \
                else vals[j]
    else:                                          # havoc
        i = r.randrange(n)
        idx = list(range(i, min(n, i + r.choice((1, 2, 4, 8, 16)))))
        for j in idx:
            vals[j] = _value(e.kinds[j], r)
    if idx and r.random() < 0.5:
        return vals[:max(idx) + 1]                 # a random future past the mutation
    return vals


# ------------------------------------------------------------------ the search
def search(target, *, schedules: int, seed: int, swarm: int, engine, workers, client,
           bar, deadline: float | None, keep_failures: int):
    """Run the guided search. Returns (found, variants, signatures seen, schedules run,
    failures, features reached, (schedules, monotonic time) at the first failure); ``found``: (index, failure, choices, variant index) of
    the failing schedule with the fewest choices, or None."""
    from ..experiments.engines import imap_jobs
    variants = [Variant(replace(target, cfg=with_overrides(target.cfg, s)) if s else target,
                        s) for s in swarm_sets(target.cfg, seed, swarm)]
    for var in variants:         # PCT's k: the default schedule's length on each variant
        var.k = len(run_schedule(var.target, prefix_source(())).choices)
    r = random.Random(f"guided/{seed}")
    found, sigs, done, failures, first_at, reached = None, set(), 0, 0, None, set()
    first = None
    while done < schedules:
        jobs, plan = [], []
        for a in range(done, min(schedules, done + GENERATION), BATCH):
            # half the jobs on the scenario as given, the other half over the variants
            job = a // BATCH
            v = 0 if job % 2 == 0 or len(variants) == 1 else \
                1 + (job // 2) % (len(variants) - 1)
            var = variants[v]
            items = []
            for i in range(a, min(schedules, a + BATCH)):
                parent = (r.choices(var.corpus, weights=[e.weight for e in var.corpus])[0]
                          if var.corpus and r.random() < 0.8 else None)
                prefix = mutate(parent, r) if parent else []
                # a fresh schedule: uniform choices or PCT's (depth 3), half and half
                pct = None if parent or r.random() < 0.5 else (PCT_DEPTH, var.k)
                items.append((i, prefix, r.getrandbits(32), pct))
            jobs.append((var.target, items))
            plan.append(v)
        results = dict(imap_jobs(run_children, jobs, engine, workers, client))
        for j in range(len(jobs)):
            var, v = variants[plan[j]], plan[j]
            for i, failure, sig, chs, _, feats, times, kinds, busy, holds in results[j]:
                done += 1
                sigs.add(sig)
                reached |= feats
                new = feats - var.seen
                if new:
                    var.seen |= new
                    var.corpus.append(Entry(chs, times, kinds, busy, holds, len(new)))
                if failure:
                    failures += 1
                    if first_at is None:
                        first_at, first = done, (done, time.monotonic())
                    if found is None or (len(chs), i) < (len(found[2]), found[0]):
                        found = (i, failure, chs, v)
            bar.update(len(results[j]))
        if found and (failures >= keep_failures or done >= 2 * first_at + GENERATION):
            break
        if deadline is not None and time.monotonic() > deadline:
            break
    return found, variants, sigs, done, failures, reached, first
