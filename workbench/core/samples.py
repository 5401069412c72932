"""Layer 1: measured samples of calibration quantities. Measured samples of a quantity replace its
guessed mean and jitter; a run draws from them with its own random streams
(:class:`workbench.model.clock.Empirical`).

A samples file (CSV or parquet) has one row per measured duration: a column ``quantity``
and a column ``us`` (or ``ns``). ``quantity`` is a calibration row (``page_aug_us``: taken
as it is) or a SEAMCALL leaf (``TDH.MEM.PAGE.AUG`` or its number, 6: a whole call as the kernel sees it,
SEAMCALL to return; the calibration's entry and exit means are taken off, because the
model's leaf row is the locked section only). :func:`workbench.experiments.calibrate.calibrate` turns such a file
into a calibration file whose measured rows say ``status: measured`` and name their samples;
:func:`attach` reads them back when the calibration loads.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .safeio import ConfigError, check_path, inside, open_regular, short

MIN_SAMPLES = 20
MIN_US, MAX_US = 1e-3, 1e9     # a sample: 1 ns (config.MIN_DURATION_US) to 1,000 s
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
    """The sha256 of a samples file: a regular file, no link followed, at most MAX_BYTES."""
    h = hashlib.sha256()
    with open_regular(path, "samples", MAX_BYTES, follow=False) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_samples(path, *, follow: bool = True) -> dict[str, tuple[float, ...]]:
    """``{quantity: samples in us}`` from a CSV or parquet file; one line for bad input.
    Only a regular file of at most MAX_BYTES is read (``follow=False``: never through a
    link); an error never quotes a line of the file."""
    import numpy as np
    import pandas as pd
    p = check_path(path, "samples")
    where = short(str(p), 80)
    kind = "parquet" if p.suffix == ".parquet" else "CSV"
    with open_regular(p, "samples", MAX_BYTES, follow=follow) as f:
        try:
            df = pd.read_parquet(f) if kind == "parquet" else pd.read_csv(f)
        except Exception as err:     # any unreadable file is bad input
            raise ConfigError(f"samples {where}: not a readable {kind} file "
                              f"({type(err).__name__})") from None
    unit = "us" if "us" in df.columns else "ns" if "ns" in df.columns else None
    if "quantity" not in df.columns or unit is None:
        raise ConfigError(f"samples {where}: needs the columns quantity and us (or ns)")
    values = pd.to_numeric(df[unit], errors="coerce").to_numpy(dtype=float)
    values = values / 1000.0 if unit == "ns" else values
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < MIN_US) | (values > MAX_US)
    if bad.any():
        row = int(np.argmax(bad))
        raise ConfigError(f"samples {where}: row {row + 2}: {unit} is not a positive duration "
                          f"from {MIN_US:g} us (1 ns) to {MAX_US:g} us")
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
    return read_samples(path, follow=False)


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
        path = inside(folder, row["samples"], f"calibration: {short(q)}: samples")
        digest = sha256(path)
        found = _cached(str(path.resolve()), digest)
        if q not in found:
            raise ConfigError(f"calibration: {short(q)}: no samples of it in "
                              f"{short(str(path), 80)}")
        measured[q] = (str(path.resolve()), digest)
        tags[q] = Measured(getattr(cal, q), q)
    return cal.model_copy(update={"measured": measured, **tags}) if measured else cal


__all__ = ["Measured", "read_samples", "samples_of", "attach", "LEAVES", "LEAF_NUMBERS"]
