"""Layer 5: one schedule of a small TD, as data. A *source* answers every choice the run
makes (:mod:`workbench.model.choices`): :func:`prefix_source` replays a recorded sequence,
:func:`random_source` draws uniformly, :class:`PctSource` draws as probabilistic concurrency
testing does. :func:`run_schedule` runs the TD under one source and judges it by the
target's oracles (:mod:`workbench.racefinder.oracles`).
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field, replace

from ..core.config import ConfigError, load_calibration
from ..core.limits import MAX_EXPLORE_HORIZON_US, check_config
from ..model.choices import TOP, Choices, stop_at_failure
from ..model.td import Td
from .oracles import check_oracles, judge, watch_invariants
from .reach import Traced, features
from ..core.tdx_errno import TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY, status_class
from ..policies import resolve_policy
from ..policies.registry import user_policy_error
from ..core.scenarios import load_scenario

STRATEGIES = ("random", "pct", "bounded")
BATCH = 8                          # schedules per engine job
KEEP_FAILURES = 8                  # failures looked at before the shortest is shrunk


# ------------------------------------------------------------------ one schedule
@dataclass(frozen=True)
class Target:
    """What is explored: a scenario, a policy set, a calibration and the oracles."""
    cfg: object
    pset: object
    cal: object
    oracles: tuple
    params: dict
    predicate: object = None

    @property
    def horizon_us(self) -> float:
        return self.cfg.horizon_scaled_us


def make_target(scenario, policy="upstream", *, sets=None, oracles=None, predicate=None,
                livelock_us: float | None = None, starve_us: float | None = None,
                calibration: str | None = None) -> Target:
    cfg = load_scenario(scenario, sets)
    check_config(cfg)             # a horizon or a TD too large is refused before any run
    if cfg.horizon_scaled_us > MAX_EXPLORE_HORIZON_US:
        raise ConfigError(f"scenario {cfg.name!r}: horizon_us x size = "
                          f"{cfg.horizon_scaled_us:.4g} us is above the {MAX_EXPLORE_HORIZON_US:.0e}"
                          " us a schedule search may run per schedule (use a small scenario)")
    pset = resolve_policy(policy)
    cal, _ = load_calibration(calibration or cfg.calibration, cfg.timings)
    names = check_oracles(oracles)
    if predicate is not None:
        if not callable(predicate):
            raise ConfigError("predicate must be a callable over the run's tables")
        names = tuple(n for n in names if n != "predicate") + ("predicate",)
    if not names:
        raise ConfigError("no oracle to judge a run by (name one, or give a predicate)")
    h = cfg.horizon_scaled_us
    params = {"livelock_us": float(livelock_us or h / 2), "starve_us": float(starve_us or h / 2)}
    for k, v in params.items():
        if not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"{k} must be a positive number of microseconds, not {v!r}")
    return Target(cfg, pset, cal, names, params, predicate)


@dataclass
class Outcome:
    """One schedule's run: the oracle that failed (or None), its reason, the choices the
    run made, its lock-acquisition signature (which call met which held lock, in order:
    the BUSY statuses), and the run itself when kept; ``calls_hash`` covers every call."""
    failure: tuple | None
    choices: list
    signature: str
    stopped_at: float
    steps: int
    td: object = None
    decisions: list = field(default_factory=list)
    calls_hash: str = ""
    reached: frozenset = frozenset()   # with reach=True: its features (reach.py)


def run_schedule(target: Target, source, *, until: float | None = None,
                 keep: bool = False, reach: bool = False) -> Outcome:
    """Run ``target`` once with its choices from ``source(kind, index)``; the run stops at
    the instant the TD stops (a failure needs no more schedule). ``reach``: also say what
    it reached (:func:`workbench.racefinder.reach.features`)."""
    choices = Choices(source)
    log: list = []
    holder = {}
    pset = target.pset
    pset = replace(pset, **{s: Traced(getattr(pset, s), log, lambda: holder["env"])
                            for s in ("fault", "zap", "vp_enter", "accept")})
    h = target.horizon_us if until is None else min(until, target.horizon_us)
    cfg = target.cfg if h == target.horizon_us else target.cfg.model_copy(
        update={"horizon_us": h / target.cfg.size})
    td = Td(cfg, pset, target.cal, 0, 0, choices=choices)
    holder["env"] = td.env
    if "invariants" in target.oracles:
        watch_invariants(td)
    if hasattr(source, "bind"):
        source.bind(choices)
    stop_at_failure(td)
    try:
        td.run()
    except Exception as err:       # a policy of the user's that raises is their error
        theirs = user_policy_error(target.pset, err)
        if theirs is None:
            raise
        raise theirs from None
    choices.halted = True
    failure = judge(td, target.oracles, target.params, target.predicate)
    reached = frozenset()
    if reach:
        reached = frozenset(features(td, log))
    return Outcome(failure, choices.made, _hash([(c[3], c[2], c[5]) for c in td.rec.calls
                                                 if status_class(c[5]) in _BUSY]),
                   td.stopped_at or td.env.now, len(td.rec.calls), td if keep else None, log,
                   _hash(td.rec.calls), reached)


_BUSY = (TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY)


def _hash(rows) -> str:
    return hashlib.blake2b(repr(rows).encode(), digest_size=8).hexdigest()


# ------------------------------------------------------------------ sources
def prefix_source(values, fill=None):
    """Replay ``values``; past their end, ``fill(kind, i)`` or 0 (the default schedule)."""
    values = list(values)

    def source(kind, i):
        if i < len(values):
            return values[i]
        return fill(kind, i) if fill else 0
    return source


def random_source(seed: int):
    bits = random.Random(seed).getrandbits
    return lambda kind, i: bits(16)


class PctSource:
    """PCT's choices: a priority per SimPy process (random on first sight); at ``depth - 1``
    random choice indices the running process drops below all others. Higher priority:
    first among same-instant events (small tie key) and faster durations."""

    def __init__(self, seed: int, depth: int, k: int):
        self._r = random.Random(seed)
        self._prio: dict = {}
        self._changes = {self._r.randrange(max(1, k)): depth - j for j in range(1, depth)}
        self._choices = None

    def bind(self, choices: Choices) -> None:
        self._choices = choices

    def __call__(self, kind, i):
        r = self._r
        if kind == "unit":
            return r.getrandbits(16)
        proc = self._choices.env.active_process if self._choices.env else None
        p = self._prio.get(proc)
        if p is None:
            p = self._prio[proc] = 100 + r.random()
        if i in self._changes:
            p = self._prio[proc] = self._changes[i] + r.random() * 1e-3
        rank = sum(q < p for q in self._prio.values()) / max(1, len(self._prio) - 1)
        if kind == "tie":
            return int((1.0 - min(1.0, rank)) * (TOP - 1))
        q = 0.02 + 0.96 * (1.0 - rank)         # high rank: early quantile, a fast duration
        return value_of_quantile(min(0.999, max(0.001, q + (r.random() - 0.5) * 0.02)))


def value_of_quantile(q: float) -> int:
    """The zig-zag choice value of the standard normal's quantile ``q``."""
    half = TOP >> 1
    k = min(half - 1, int(abs(2 * q - 1) * half))
    return 2 * k + (1 if q > 0.5 else 0)


FAST, SLOW, LAST = value_of_quantile(0.025), value_of_quantile(0.975), TOP - 1
