"""Fingerprints of seeded runs of every scenario as shipped on main at 747ac52 (the host's
shared-resource mechanisms on, as by default), recorded before the second round of hot-path
work of issue 11: that work must leave every column of every table unchanged, bit for bit,
with the mechanisms on too (tests/golden.py checks them switched off against 5883c98).

``python tests/golden_on.py`` rewrites ``tests/data/golden_on.json``; do it only on purpose,
on a tree whose results are the reference.

The 13 runs with fastpath passes were re-recorded on 2026-11-30 after those passes moved to
streams of their own (issue 11, ``workbench/model/fastpath.py``; see tests/golden.py).

Every run was re-recorded on 2026-12-06 (issue 23), on purpose: with the hot lock lines on,
each try is now judged when its lock word is reached, and the releases, TDCS op_state, the
TDR's PAMT walk, the child count and the guest pages' PAMT entries are booked as the
module's source does them (docs/model.md §10.1); DEMOTE and PAMT.ADD follow the source's
order; scenario huge-accept-boot is new. With the mechanisms off the model is unchanged
(tests/golden.py still passes against 5883c98).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "golden_on.json"

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workbench
    from golden import cases, compute, key
    out = {key(s, p, x): compute(s, p, x, since_off={})
           for s, p, x in cases(workbench.scenario_names())}
    FIXTURE.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}: {len(out)} runs")
