"""Layer 1: calibration from measurements. Measured samples of a quantity replace its
guessed mean and jitter; a run draws from them with its own random streams
(:class:`workbench.model.clock.Empirical`).

A samples file (CSV or parquet) has one row per measured duration: a column ``quantity``
and a column ``us`` (or ``ns``). ``quantity`` is a calibration row (``page_aug_us``: taken
as it is) or a SEAMCALL leaf (``TDH.MEM.PAGE.AUG`` or its number, 6: a whole call as the kernel sees it,
SEAMCALL to return; the calibration's entry and exit means are taken off, because the
model's leaf row is the locked section only). :func:`calibrate` turns such a file into a
calibration file whose measured rows say ``status: measured`` and name their samples.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path

from .safeio import ConfigError, check_path, short

MIN_SAMPLES = 20
MAX_BYTES = 200 * 1024 * 1024
# Leaves whose whole duration (SEAMCALL to return) a kernel probe measures, and the
# calibration row of their locked section (workbench/model/seamcalls.py).
LEAVES = {"TDH.MEM.SEPT.ADD": "sept_add_us", "TDH.MEM.PAGE.AUG": "page_aug_us",
          "TDH.MEM.RANGE.BLOCK": "range_block_us", "TDH.MEM.PAGE.REMOVE": "page_remove_us",
          "TDH.MEM.TRACK": "track_us"}
# The same leaves by number, as a probe on __seamcall*() sees them (RDI bits 15:0;
# arch/x86/virt/vmx/tdx/tdx.h)
LEAF_NUMBERS = {"3": "TDH.MEM.SEPT.ADD", "6": "TDH.MEM.PAGE.AUG", "7": "TDH.MEM.RANGE.BLOCK",
                "29": "TDH.MEM.PAGE.REMOVE", "38": "TDH.MEM.TRACK"}


class Measured(float):
    """A calibrated mean that comes with measured samples (the calibration's
    ``measured`` names them); draws of this value come from the samples."""

    def __new__(cls, value: float, quantity: str):
        obj = super().__new__(cls, value)
        obj.quantity = quantity
        return obj

    def __reduce__(self):
        return (Measured, (float(self), self.quantity))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_samples(path) -> dict[str, tuple[float, ...]]:
    """``{quantity: samples in us}`` from a CSV or parquet file; one line for bad input."""
    import numpy as np
    import pandas as pd
    p = check_path(path, "samples")
    where = short(str(p), 80)
    if not p.is_file():
        raise ConfigError(f"samples {where}: not a readable file")
    if p.stat().st_size > MAX_BYTES:
        raise ConfigError(f"samples {where}: larger than {MAX_BYTES >> 20} MB")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except Exception as err:     # any unreadable file is bad input
        raise ConfigError(f"samples {where}: not a readable {'parquet' if p.suffix == '.parquet' else 'CSV'}"
                          f" file ({type(err).__name__})") from None
    unit = "us" if "us" in df.columns else "ns" if "ns" in df.columns else None
    if "quantity" not in df.columns or unit is None:
        raise ConfigError(f"samples {where}: needs the columns quantity and us (or ns), has "
                          f"{short(', '.join(map(str, df.columns)), 80)}")
    values = pd.to_numeric(df[unit], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise ConfigError(f"samples {where}: row {row + 2} has {short(df[unit].iloc[row])}, "
                          "not a positive duration")
    values = values / 1000.0 if unit == "ns" else values
    out = {}
    for q, v in pd.Series(values).groupby(df["quantity"].astype(str).to_numpy(), sort=True):
        if len(v) < MIN_SAMPLES:
            raise ConfigError(f"samples {where}: {short(q)} has {len(v)} samples; at least "
                              f"{MIN_SAMPLES} are needed for a distribution")
        out[q] = tuple(v.tolist())
    if not out:
        raise ConfigError(f"samples {where}: no samples")
    return out


@functools.lru_cache(maxsize=8)
def _cached(path: str, digest: str) -> dict:
    return read_samples(path)


def samples_of(measured: dict) -> dict[str, tuple[float, ...]]:
    """The samples of every measured quantity of a calibration (``{quantity: (path,
    sha256)}``), read once per process; a file changed since the calibration was loaded is
    refused."""
    out = {}
    for q, (path, digest) in measured.items():
        if sha256(Path(path)) != digest:
            raise ConfigError(f"samples {short(path, 80)}: changed since the calibration was "
                              "loaded")
        out[q] = _cached(path, digest)[q]
    return out


def attach(cal, quantities: dict, folder: Path, overridden):
    """``cal`` with its measured rows (``samples: FILE``, relative to the calibration's
    ``folder``) tagged :class:`Measured`; a row overridden by ``timings`` is jittered
    around the override instead."""
    measured, tags = {}, {}
    for q, row in quantities.items():
        if not row.get("samples") or q in overridden:
            continue
        path = check_path(folder / str(row["samples"]), "samples")
        found = _cached(str(path.resolve()), sha256(path)) if path.is_file() else {}
        if q not in found:
            raise ConfigError(f"calibration: {short(q)}: no samples of it in "
                              f"{short(str(path), 80)}")
        measured[q] = (str(path.resolve()), sha256(path))
        tags[q] = Measured(getattr(cal, q), q)
    return cal.model_copy(update={"measured": measured, **tags}) if measured else cal


def to_rows(samples: dict, base) -> dict[str, tuple[float, ...]]:
    """Samples per calibration row: leaf names become their locked section (the whole call
    less the base calibration's entry and exit means, at least 1 ns)."""
    from .config import MIN_DURATION_US
    out = {}
    for q, v in samples.items():
        q = LEAF_NUMBERS.get(q, q)
        if q in LEAVES:
            off = base.seamcall_entry_us + base.seamcall_exit_us
            row, v = LEAVES[q], tuple(max(MIN_DURATION_US, x - off) for x in v)
        elif q.endswith("_us") and q in type(base).model_fields:
            row = q
        else:
            raise ConfigError(f"samples: {short(q)} is neither a calibration row nor one of "
                              f"{', '.join(LEAVES)} (or their numbers)")
        if row in out:
            raise ConfigError(f"samples: {row} is given twice (as a row and as its leaf)")
        out[row] = v
    return out


def quantiles(v) -> dict:
    import numpy as np
    a = np.asarray(v, dtype=float)
    return {"n": len(a), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99))}


def calibrate(source_file, out, *, base: str = "default", source: str | None = None):
    """Write the calibration ``out`` (YAML) and its samples (``<out>.samples.parquet``)
    from measured samples; returns the table of what changed against ``base``."""
    import pandas as pd
    import yaml

    from .config import load_calibration
    out = check_path(out, "--out")
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--out {short(str(out))}: a calibration is a .yaml file")
    store = out.with_name(out.stem + ".samples.parquet")
    for p in (out, store):
        if p.exists() or p.is_symlink():
            raise ConfigError(f"--out: {short(str(p))} exists; the tool never replaces a file "
                              "it did not write (choose a new name)")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {short(str(out))}: no folder {short(str(out.parent))}")
    cal, meta = load_calibration(base)
    rows = to_rows(read_samples(source_file), cal)
    source = source or f"measured samples from {Path(source_file).name}"
    quantities, changes = {}, []
    for q, row in meta.items():
        row = {k: v for k, v in row.items() if k not in ("range", "range_why")} \
            if q in rows else dict(row)
        if q in rows:
            s = quantiles(rows[q])
            row.update(value=round(s["mean"], 6), status="measured",
                       source=f"{source}; {s['n']} samples, p50 {s['p50']:.4g} us, "
                              f"p99 {s['p99']:.4g} us", samples=store.name)
            changes.append({"quantity": q, "default": meta[q]["value"],
                            "default_status": meta[q]["status"], "measured_mean": s["mean"],
                            "p50": s["p50"], "p99": s["p99"], "samples": s["n"],
                            "ratio": s["mean"] / meta[q]["value"] if meta[q]["value"] else math.nan})
        quantities[q] = row
    long = pd.DataFrame([{"quantity": q, "us": x} for q, v in rows.items() for x in v])
    text = ("# Calibration from measured samples (workbench calibrate); rows with status\n"
            f"# measured draw from {store.name}, the others are those of {base}.\n"
            + yaml.safe_dump({"name": out.stem, "based_on": str(base),
                              "quantities": quantities}, sort_keys=False, width=100))
    from .store import atomic_write
    try:
        atomic_write(store, lambda p: long.to_parquet(p, index=False))
        atomic_write(out, lambda p: p.write_text(text))
    except OSError as err:
        raise ConfigError(f"--out {short(str(out))}: cannot write there ({err.strerror})") from None
    load_calibration(os.fspath(out))      # what was written loads
    return pd.DataFrame(changes)


__all__ = ["Measured", "read_samples", "samples_of", "attach", "calibrate", "LEAVES"]
