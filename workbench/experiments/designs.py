"""Layer 6: experiments as data (``data/experiments/*.yaml``).

An experiment names a scenario, fixed overrides (``sets``), factors (any scenario field in
the dotted form of ``--set``, each with a list of values), policies, replications and a
seed. The design is the full grid of the factors' values by default; ``design: lhs`` draws
``samples`` points of a Latin hypercube (``scipy.stats.qmc``, seeded) over the factors given
as a range ``{low: 3, high: 100}`` (``integer: true`` rounds, ``log: true`` spaces them
geometrically) and crosses them with the factors given as lists::

    name: zero-step-window
    scenario: touch-storm
    sets: {horizon_us: 4000}
    factors:
      timings.sept_add_us: [3, 30, 100]
    policies: [upstream, upstream+fault=resume-guest]
    reps: 3           # or: reps: auto, precision: {metric: zap_4k_p99_us, rel: 0.05}
    seed: 0

Every result row carries each factor's value in a column of its own, named by the factor
(``set:KEY`` for a top-level key that a result table already uses, e.g. ``horizon_us``).
"""
from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.config import DATA, ConfigError, as_overrides, load_calibration, read_yaml, validate
from ..core.limits import check_config, check_runs
from ..core.safeio import check_path, short
from ..core.scenarios import load_scenario

EXPERIMENT_DIR = DATA / "experiments"
# Scenario fields a comparison does not vary through a factor, and why.
IGNORED = {
    "policy": "the policies are the comparison's own axis: list them under policies",
    "name": "the scenario's name labels results; it does not change a run",
    "question": "the scenario's question is documentation; it does not change a run",
    "headline": "the scenario's headline metric names what to look at; it does not change a run",
}
# factor columns that would collide with a result table's own columns
TAKEN = {"run_id", "scenario", "policy", "seed", "replication", "param", "value",
         "horizon_us", "vcpus", "stopped", "calls"}


class Range(BaseModel):
    """A continuous factor of a Latin-hypercube design."""
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    low: float
    high: float
    integer: bool = False
    log: bool = False


class Precision(BaseModel):
    """``reps: auto``: add ``batch`` replications at a time until the 95 % interval of
    ``metric`` has a half-width under ``rel`` times its mean in every group (policy and
    design point), or ``max_reps`` is reached."""
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    metric: str
    rel: float = Field(0.05, gt=0.0, lt=1.0)
    batch: int = Field(3, ge=2, le=1000, strict=True)
    max_reps: int = Field(30, ge=2, le=10_000, strict=True)


class Experiment(BaseModel):
    """A multi-factor experiment; see the module docstring for the YAML form."""
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)
    description: str = ""
    scenario: str
    sets: dict[str, Any] = {}
    factors: dict[str, list | Range] = {}
    policies: list[str | dict] = Field(["upstream"], min_length=1)
    reps: Annotated[int, Field(ge=1, le=10_000, strict=True)] | Literal["auto"] = 3
    precision: Precision | None = None
    seed: int = Field(0, ge=0, strict=True)
    design: Literal["grid", "lhs"] = "grid"
    samples: int | None = Field(None, ge=1, le=100_000, strict=True)
    source: str = ""    # the file it was read from (set by the loader)


def factor_column(key: str) -> str:
    return f"set:{key}" if key in TAKEN else key


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def load_experiment(name_or_path) -> Experiment:
    """An experiment by name (``"scale"``: ``data/experiments/scale.yaml``), YAML path or
    mapping, checked: a factor that does not exist, that the comparison ignores, with
    duplicate or invalid values, is refused with one line."""
    if not isinstance(name_or_path, (Experiment, dict, str, os.PathLike)):
        raise ConfigError(f"experiment: a name, a YAML path or a mapping, not "
                          f"{short(name_or_path)}")
    if isinstance(name_or_path, Experiment):
        exp = name_or_path
    elif isinstance(name_or_path, dict):
        exp = validate(Experiment, name_or_path, "experiment")
    else:
        path = check_path(name_or_path, "experiment")
        if path.suffix not in (".yaml", ".yml"):
            path = EXPERIMENT_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown experiment {str(name_or_path)!r} "
                              f"(known: {', '.join(experiment_names())})")
        data = read_yaml(path)
        data.setdefault("name", path.stem)
        data["source"] = str(path)
        exp = validate(Experiment, data, f"experiment {path.name}")
    check(exp)
    return exp


def _where(exp: Experiment) -> str:
    return f"experiment {Path(exp.source).name if exp.source else exp.name}"


def check(exp: Experiment) -> None:
    """Refuse, with one line, what would make the design wrong or silently meaningless."""
    where = _where(exp)
    for key, values in exp.factors.items():
        check_factor(key, where)
        if isinstance(values, Range):
            if exp.design != "lhs":
                raise ConfigError(f"{where}: factor {key}: a range needs design: lhs "
                                  "(or give a list of values)")
            if not values.low < values.high or (values.log and values.low <= 0):
                raise ConfigError(f"{where}: factor {key}: need 0 < low < high for log, "
                                  "low < high otherwise")
            continue
        check_values(key, values, where)
    if exp.design == "lhs":
        if not any(isinstance(v, Range) for v in exp.factors.values()):
            raise ConfigError(f"{where}: design lhs needs at least one factor given as a "
                              "range {low: .., high: ..}")
        if exp.samples is None:
            raise ConfigError(f"{where}: design lhs needs samples: N")
    elif exp.samples is not None:
        raise ConfigError(f"{where}: samples is for design: lhs only")
    if exp.reps == "auto" and exp.precision is None:
        raise ConfigError(f"{where}: reps: auto needs precision: {{metric: NAME, rel: 0.05}}")
    if exp.precision is not None and exp.reps != "auto":
        raise ConfigError(f"{where}: precision is for reps: auto only")
    n_points = math.prod(len(v) for v in exp.factors.values() if isinstance(v, list)) * (
        exp.samples or 1 if exp.design == "lhs" else 1)
    n_reps = exp.precision.max_reps if exp.reps == "auto" else exp.reps
    try:
        check_runs(n_points * len(exp.policies) * n_reps)
    except ConfigError as err:
        raise ConfigError(f"{where}: {n_points} design points x {len(exp.policies)} policies "
                          f"x {n_reps} {'max_reps' if exp.reps == 'auto' else 'reps'}: {err}"
                          ) from None
    fixed = sorted(k for k in as_overrides(exp.sets) if k.split(".")[0] == "policy")
    if fixed:
        top = fixed[0].split(".")[0]
        raise ConfigError(f"{where}: sets: {fixed[0]} is ignored by the comparison "
                          f"({IGNORED[top]})")
    clash = set(as_overrides(exp.sets)) & set(exp.factors)
    if clash:
        raise ConfigError(f"{where}: {sorted(clash)[0]} is both fixed in sets and a factor")
    base = load_scenario(exp.scenario, exp.sets)
    for point in points(exp):   # every value must make a valid scenario
        try:
            cfg = load_scenario(base, point)
            check_config(cfg)           # sizes, before the store is created
            load_calibration(cfg.calibration, cfg.timings)
        except ConfigError as err:
            raise ConfigError(f"{where}: factor value {point}: {err}") from None


def check_factor(key: str, where: str = "sweep") -> None:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}: a factor is a dotted scenario field, not {key!r}")
    top = key.split(".")[0]
    if top in IGNORED:
        raise ConfigError(f"{where}: factor {key!r} is ignored by the comparison "
                          f"({IGNORED[top]})")


def check_values(key: str, values, where: str = "sweep") -> None:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: factor {key}: give a non-empty list of values")
    seen = set()
    for v in values:
        if isinstance(v, (dict, list)):
            raise ConfigError(f"{where}: factor {key}: a value must be a scalar, not {v!r}")
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        tag = json.dumps(float(v) if num else v)
        if tag in seen:
            raise ConfigError(f"{where}: factor {key}: value {v!r} is given twice")
        seen.add(tag)


def points(exp: Experiment) -> list[dict]:
    """The design points: one mapping of factor -> value per point, in a fixed order."""
    listed = {k: v for k, v in exp.factors.items() if isinstance(v, list)}
    grid = [dict(zip(listed, combo)) for combo in itertools.product(*listed.values())]
    if exp.design == "grid":
        return grid
    from scipy.stats import qmc
    ranges = {k: v for k, v in exp.factors.items() if isinstance(v, Range)}
    unit = qmc.LatinHypercube(d=len(ranges), seed=exp.seed).random(exp.samples)
    sampled = []
    for row in unit:
        p = {}
        for u, (k, r) in zip(row, ranges.items()):
            x = (math.exp(math.log(r.low) + u * (math.log(r.high) - math.log(r.low)))
                 if r.log else r.low + u * (r.high - r.low))
            p[k] = int(round(x)) if r.integer else round(float(x), 6)
        sampled.append(p)
    out = [{k: {**g, **s}[k] for k in exp.factors} for s in sampled for g in grid]
    return out
