"""Fingerprints of runs, to check that a change to the hot path or to recording leaves
every table bit-identical for the same seed. ``python tests/golden.py`` rewrites
``tests/data/golden.json`` (it was made from main before the speed work of issue 11)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "golden.json"
HORIZON = "horizon_us=1500"
POLICIES = ("upstream", "zero-tolerance")
SEED = 3


def table_hash(df) -> str:
    """A hash of a table's columns, dtypes and values (floats by their exact repr)."""
    h = hashlib.sha256()
    h.update(repr(list(df.columns)).encode())
    h.update(repr([str(t) for t in df.dtypes]).encode())
    for c in df.columns:
        h.update(repr(df[c].tolist()).encode())
    return h.hexdigest()


def summary_dict(df) -> dict:
    row = df.iloc[0].to_dict()
    return {k: (None if v != v else v.item() if hasattr(v, "item") else v)
            for k, v in row.items()}


def fingerprint(result) -> dict:
    return {"summary": summary_dict(result.summary),
            **{f"{t}_sha256": table_hash(getattr(result, t))
               for t in ("calls", "ops", "vcpus", "events")}}


def cases():
    import workbench
    return [(s, p) for s in workbench.scenario_names() for p in POLICIES]


def compute(scenario, policy) -> dict:
    import workbench
    return fingerprint(workbench.run(scenario, seed=SEED, policy=policy, sets=[HORIZON]))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    out = {f"{s}/{p}": compute(s, p) for s, p in cases()}
    FIXTURE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}: {len(out)} runs")
