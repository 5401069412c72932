"""Layer 1: what one run, or one batch of runs, may cost before the workbench refuses it.

Two kinds of guard keep a typo from hanging or exhausting the machine:

- a :class:`Budget` checked *while* a run simulates: at most ``max_events`` simulated
  events and ``max_seconds`` of wall-clock time per run. A run that reaches either stops
  where it is and its summary says ``stopped = "budget"``. The defaults are far above what
  any shipped scenario needs (the largest takes about 120,000 events and 2 s);
- a pre-run estimate (:func:`check_config`, :func:`check_runs`) that refuses, before any
  work, sizes that are clearly absurd: a TD of more than 4 TiB, more than 1024 vCPUs, a
  horizon above 1,000 s of simulated time, pre-built areas above 2**18 pages (1 GiB), a
  batch of more runs than ``max_runs``, or a degenerate scenario (a fault-storm region or
  the converters' areas larger than the TD).

Durations have a floor of 1 ns (``config.MIN_DURATION_US``) so simulated time always
advances; that check lives with the config models.
"""
from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass, field

from .safeio import ConfigError, short

MAX_MEMORY_BYTES = 4 << 40          # a 4 TiB TD
MAX_VCPUS = 1024
MAX_HORIZON_US = 1e9                # 1,000 s of simulated time (shipped: 0.01-0.02 s)
MAX_AREA_PAGES = 1 << 18            # pages built before the run (1 GiB: ~4 s, ~150 MB)
AREA_ROLES = ("converter", "refaulter")   # roles that get a pre-built area (model.workload)
MB2 = 2 << 20
PROGRESS_S = 5.0                    # seconds between two progress reports
MAX_EXPLORE_HORIZON_US = 1e6        # one schedule: 1 s simulated (small scenarios: 2 ms)
MAX_SCHEDULES = 100_000             # one explore (at ~6 schedules/s: about 5 hours)
MAX_SAMPLES = 10_000                # calibrations drawn by one robustness run


@dataclass(frozen=True)
class Budget:
    """What one run may use (``max_events``, ``max_seconds``) and how many runs one
    ``compare`` or ``sweep`` may hold (``max_runs``). Give your own to go further:
    ``workbench.run(..., budget=Budget(max_events=10**9))``; on the CLI
    ``--max-events`` and ``--max-seconds``."""
    max_events: int = 10_000_000      # ~2 GB of records at most; shipped runs need <= 120,000
    max_seconds: float = 600.0
    max_runs: int = 5_000
    # called as progress(now_us, horizon_us, events, elapsed_s) every PROGRESS_S seconds of
    # a long run (the CLI prints it on stderr); None: silent. Not compared, not pickled.
    progress: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name in ("max_events", "max_runs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"budget: {name} must be a whole number >= 1, not {short(v)}")
        v = self.max_seconds
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                math.isfinite(v) and v > 0):
            raise ConfigError(f"budget: max_seconds must be a number > 0, not {short(v)}")
        if self.progress is not None and not callable(self.progress):
            raise ConfigError(f"budget: progress must be callable, not {short(self.progress)}")

    def __reduce__(self):      # a progress callback stays in the process that made it
        return (Budget, (self.max_events, self.max_seconds, self.max_runs))


DEFAULT_BUDGET = Budget()


def as_budget(budget) -> Budget:
    if budget is None:
        return DEFAULT_BUDGET
    if not isinstance(budget, Budget):
        raise ConfigError(f"budget: expected a workbench Budget, not {short(budget)}")
    return budget


def check_config(cfg) -> None:
    """Refuse, before the run, a scenario that is absurdly large or degenerate."""
    name = short(cfg.name, 60)
    mem = cfg.memory_bytes
    if mem > MAX_MEMORY_BYTES:
        raise ConfigError(f"scenario {name}: memory_mb x size = {mem / 2**20:.4g} MB is above "
                          f"the limit of {MAX_MEMORY_BYTES / 2**20:.0f} MB")
    n = cfg.n_vcpus + cfg.n_idle_vcpus
    if n > MAX_VCPUS:
        idle = f" ({cfg.n_idle_vcpus} of them idle, shared.idle_share)" if cfg.n_idle_vcpus else ""
        raise ConfigError(f"scenario {name}: {n} vCPUs{idle} is above the limit of "
                          f"{MAX_VCPUS}")
    if cfg.horizon_scaled_us > MAX_HORIZON_US:
        raise ConfigError(f"scenario {name}: horizon_us x size = {cfg.horizon_scaled_us:.4g} "
                          f"us is above the limit of {MAX_HORIZON_US:.0e} us of simulated time")
    biggest = max((g.range_kb * 1024 * 8 for g in cfg.vcpus if g.role == "converter"),
                  default=MB2)
    area = -(-biggest // MB2) * MB2
    n_area = sum(g.count for g in cfg.vcpus if g.role in AREA_ROLES)
    if n_area and n_area * area // 4096 > MAX_AREA_PAGES:
        raise ConfigError(f"scenario {name}: the pre-built areas ({n_area} x 8 x range_kb) "
                          f"need {n_area * area // 4096} pages, above the limit of "
                          f"{MAX_AREA_PAGES}")
    if n_area and n_area * area >= mem:
        raise ConfigError(f"scenario {name}: the pre-built areas ({n_area} x 8 x range_kb = "
                          f"{n_area * area / 2**20:.4g} MB) leave nothing of the TD's "
                          f"{mem / 2**20:.4g} MB")
    for i, g in enumerate(cfg.vcpus):
        if g.role in ("accept_spammer", "attr_spammer") and not n_area:
            raise ConfigError(f"scenario {name}: vcpus.{i} ({g.role}) has no pages to spam; "
                              f"add a group with role {' or '.join(AREA_ROLES)}")
        if g.role == "stepper" and not any(h.role == "converter" for h in cfg.vcpus):
            raise ConfigError(f"scenario {name}: vcpus.{i} (stepper) copies a converter's "
                              "area; add a group with role converter")
        if g.role == "fault_storm" and g.region_mb * 2**20 > mem - n_area * area:
            raise ConfigError(f"scenario {name}: vcpus.{i}.region_mb = {g.region_mb:.4g} is "
                              f"larger than the TD's free memory "
                              f"({(mem - n_area * area) / 2**20:.4g} MB)")


def check_runs(n_runs: int, budget=None) -> None:
    """Refuse a batch of more runs than the budget's ``max_runs``."""
    limit = as_budget(budget).max_runs
    if n_runs > limit:
        raise ConfigError(f"{n_runs} runs (reps x policies x values) is above the limit of "
                          f"{limit}; split the study or raise Budget(max_runs=...)")


def check_sweep(param, values, policies, reps, budget=None) -> None:
    """A sweep's arguments have the right types and make at most ``max_runs`` runs."""
    if not isinstance(param, str) or not param.strip():
        raise ConfigError(f"sweep: param is a dotted scenario key, not {short(param)}")
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, (list, tuple, range)):
        raise ConfigError(f"sweep: values must be a list, not {short(values)}")
    n_pol = 1 if isinstance(policies, (str, dict)) or hasattr(policies, "for_site") \
        else len(policies or [])
    check_runs(len(values) * max(1, n_pol) * (reps if isinstance(reps, int) else 1), budget)


# -- progress of a batch of runs when no bar can be drawn ----------------------------------
# The CLI sets it (stderr not a terminal: a log, a pipe, CI) to a callable taking one line;
# compare, sweep and an experiment then report how far they are every PROGRESS_S seconds.
BATCH_PROGRESS: "contextvars.ContextVar" = contextvars.ContextVar("batch_progress",
                                                                    default=None)


class Ticker:
    """Counts finished runs of a batch and, if :data:`BATCH_PROGRESS` is set, says every
    :data:`PROGRESS_S` seconds how far the batch is, in one line."""

    def __init__(self, total: int, what: str = ""):
        import time
        self.say, self.total, self.what = BATCH_PROGRESS.get(), total, what
        self.done, self.t0 = 0, time.monotonic()
        self.next = self.t0 + PROGRESS_S

    def update(self, n: int = 1) -> None:
        import time
        self.done += n
        now = time.monotonic()
        if self.say is not None and now >= self.next:
            self.next = now + PROGRESS_S
            self.say(f"{self.what}{self.done} of {self.total} runs done, "
                     f"{now - self.t0:.0f} s")
