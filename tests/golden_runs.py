"""Golden summaries of every shipped scenario (short horizon), recorded on main before the
choice hook of ``workbench.explore`` existed: normal seeded runs must stay bit for bit the
same. Regenerate only on purpose: ``python tests/golden_runs.py > tests/data/golden_runs.json``."""
from __future__ import annotations

import hashlib
import json

SETS = {"horizon_us": 1500}
POLICIES = ("upstream", "patch-09-21")
WHAT_IF = {"module.busy_without_vcpus": 0.05}   # the module's own Draws stream too


def golden_runs(names=None) -> dict:
    from workbench.experiments import run
    from workbench.scenarios import scenario_names
    out = {}
    for name in names or scenario_names():
        for pol, tag, extra in [(p, "", {}) for p in POLICIES] + [("upstream", "+busy", WHAT_IF)]:
            r = run(name, seed=3, policy=pol, sets={**SETS, **extra})
            row = r.summary.drop(columns=["run_id"]).iloc[0].to_dict()
            row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            calls = hashlib.sha256(r.calls.to_csv(index=False).encode()).hexdigest()
            out[f"{name}/{pol}{tag}"] = {"summary": row, "calls_sha256": calls}
    return out


if __name__ == "__main__":
    print(json.dumps(golden_runs(), indent=0, sort_keys=True, default=str))
