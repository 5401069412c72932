"""Layer 6: the model against published end-to-end measurements (``data/validation``).

Each file is one measurement with its source, the scenario settings that mirror it and the
model quantity to compare. :func:`validate` runs them and gives measurement, model and
their ratio per entry. A mismatch is information, not a failure: each entry says what the
model leaves out that could explain its gap (and docs/model.md collects them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ..core.config import DATA, ConfigError, Frozen, read_yaml, validate as build
from ..core.safeio import check_path, short
from ..experiments.metrics import LATENCY_OPS

VALIDATION_DIR = DATA / "validation"
SMALL_HORIZON_US = 2000.0


class Measurement(Frozen):
    value: float = Field(gt=0.0)
    unit: str
    what: str
    source: str = Field(min_length=1)


class ModelQuantity(Frozen):
    """What to read from the runs: a derived ``quantity``, an ``op``'s latency statistic
    (successful operations) or a ``summary`` column (mean over replications)."""
    quantity: Literal["us_per_page", "first_vcpu_share"] | None = None
    op: str | None = None
    stat: Literal["mean", "p50", "p99"] = "mean"
    summary: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if sum(x is not None for x in (self.quantity, self.op, self.summary)) != 1:
            raise ValueError("give exactly one of quantity, op, summary")
        if self.op is not None and self.op not in LATENCY_OPS:
            raise ValueError(f"op {short(self.op)} is not an op with a latency (one of "
                             f"{', '.join(LATENCY_OPS)})")
        return self


class Entry(Frozen):
    name: str
    measurement: Measurement
    scenario: str
    sets: dict[str, float | int | str | bool] = {}
    model: ModelQuantity
    gap: str = Field(min_length=1)


def entries(folder=None) -> list[Entry]:
    """Every ``*.yaml`` of ``folder`` (default ``data/validation``), checked."""
    d = check_path(folder, "validation folder") if folder is not None else VALIDATION_DIR
    if not Path(d).is_dir():
        raise ConfigError(f"validation folder {short(str(d), 80)}: not a folder")
    files = sorted(Path(d).glob("*.yaml"))
    if not files:
        raise ConfigError(f"validation folder {short(str(d), 80)}: no *.yaml entries")
    return [build(Entry, read_yaml(f, "validation entry"), f"validation {f.name}")
            for f in files]


def model_value(e: Entry, runs) -> float:
    """The entry's model quantity, averaged over the replications ``runs``."""
    m = e.model
    if m.summary is not None and m.summary not in runs[0].summary.columns:
        raise ConfigError(f"validation {e.name}: no summary column {m.summary!r}")
    return float(np.nanmean([_one(m, r) for r in runs]))


def _one(m: ModelQuantity, r) -> float:
    s = r.summary.iloc[0]
    if m.quantity == "us_per_page":
        return s["horizon_us"] / s["pages_accepted"] if s["pages_accepted"] else np.nan
    if m.quantity == "first_vcpu_share":
        pages = r.vcpus["pages_accepted"]
        return pages.iloc[0] / pages.sum() if pages.sum() else np.nan
    if m.op is not None:
        ops = r.ops[(r.ops["op"] == m.op) & (r.ops["outcome"] == "ok")]["latency_us"]
        if ops.empty:
            return np.nan
        return ops.mean() if m.stat == "mean" else np.percentile(ops, 50 if m.stat == "p50"
                                                                 else 99)
    return float(s[m.summary])


def validate(*, folder=None, calibration: str | None = None, small: bool = False,
             seed: int = 0, reps: int = 1) -> pd.DataFrame:
    """Measurement, model and ratio (model / measurement) per entry, under the scenarios'
    calibration or ``calibration``; ``small`` cuts every horizon to 2 ms (for tests)."""
    from ..experiments.comparison import run
    from ..core.scenarios import load_scenario
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be a whole number >= 1, not {reps!r}")
    rows = []
    for e in entries(folder):
        sets = dict(e.sets)
        if small:
            sets["horizon_us"] = min(float(sets.get("horizon_us", SMALL_HORIZON_US)),
                                     SMALL_HORIZON_US)
        if calibration is not None:
            sets["calibration"] = str(calibration)
        cfg = load_scenario(e.scenario, sets)
        runs = [run(cfg, seed=seed, replication=i) for i in range(reps)]
        model = model_value(e, runs)
        rows.append({"entry": e.name, "measured": e.measurement.value, "model": model,
                     "ratio": model / e.measurement.value, "unit": e.measurement.unit,
                     "calibration": cfg.calibration, "source": e.measurement.source,
                     "gap": e.gap})
    return pd.DataFrame(rows)


__all__ = ["validate", "entries", "Entry"]
