"""Layer 4: a calibration from measured samples (``workbench calibrate``): the locked
section of each leaf from whole-call samples, written as a calibration file beside its
samples (:mod:`workbench.core.samples` reads them back)."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..core.config import MIN_DURATION_US, load_calibration, validate
from ..core.safeio import MAX_YAML_BYTES, ConfigError, atomic_write, check_path, short

MAX_SOURCE = 1000        # characters of --source (it is repeated in every measured row)
from ..core.samples import LEAF_NUMBERS, LEAVES, read_samples


def to_rows(samples: dict, base) -> dict[str, tuple[float, ...]]:
    """Samples per calibration row: leaf names become their locked section (the whole call
    less the base calibration's entry and exit means, at least 1 ns)."""
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
    if source is not None and (not isinstance(source, str) or len(source) > MAX_SOURCE):
        raise ConfigError(f"--source: at most {MAX_SOURCE} characters of text")
    cal, meta = load_calibration(base)
    rows = to_rows(read_samples(source_file), cal)
    source = source or f"measured samples from {short(Path(source_file).name, 80)[1:-1]}"
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
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"--out {short(str(out))}: the calibration would be over "
                          f"{MAX_YAML_BYTES} characters; nothing written")
    validate(type(cal), {"name": out.stem, **{q: r.get("value") for q, r in quantities.items()}},
             "calibrate")                 # what will be written loads (means, floors)
    try:
        atomic_write(store, lambda p: long.to_parquet(p, index=False))
        atomic_write(out, lambda p: p.write_text(text))
        load_calibration(os.fspath(out))      # what was written loads
    except BaseException as err:          # both files, or neither: a rerun is not refused
        for p in (out, store):
            p.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ConfigError(f"--out {short(str(out))}: cannot write there "
                              f"({err.strerror}); nothing written") from None
        raise
    return pd.DataFrame(changes)


__all__ = ["calibrate", "to_rows"]
