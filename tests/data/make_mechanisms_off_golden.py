"""Writes mechanisms_off_golden.json: summary rows and vCPU state times of small runs of
every shipped scenario, recorded on main before the shared-resource mechanisms existed
(commit 5883c98). tests/test_shared.py checks that with every mechanism off the model
still gives exactly these numbers. Run from the repository root:
    python tests/data/make_mechanisms_off_golden.py [sets...]
(the extra sets switch the mechanisms off once they exist)."""
import json
import math
import sys
from pathlib import Path

import workbench

CASES = [(s, p, {"size": 0.25, "horizon_us": 8000})
         for s in ("lazy-accept-boot", "scale", "fault-storm", "conversion-storm",
                   "malicious-accept", "touch-storm", "zero-step")
         for p in ("upstream", "vm-spinlock")]
STATES = ("guest", "kvm", "retry", "userspace", "mmu_wait", "zap_wait", "idle", "stopped")


def record(extra=()):
    out = []
    for scenario, policy, sets in CASES:
        r = workbench.run(scenario, seed=3, policy=policy,
                          sets={**sets, **dict(x.split("=", 1) for x in extra)})
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in r.summary.iloc[0].items()
               if isinstance(v, (int, float, str, bool)) or hasattr(v, "item")}
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        times = {s: r.vcpus[f"{s}_us"].round(9).tolist() for s in STATES}
        out.append({"scenario": scenario, "policy": policy, "sets": sets,
                    "summary": row, "vcpu_times": times})
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("mechanisms_off_golden.json")
    path.write_text(json.dumps(record(sys.argv[1:]), indent=1, sort_keys=True) + "\n")
