"""Normal seeded runs are bit for bit what they were before the race finder's choice hook
(golden summaries recorded on main: tests/golden_runs.py)."""
import json
import math
from pathlib import Path

import pytest

from golden_runs import golden_runs

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_runs.json").read_text())


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("scenario", sorted({k.split("/")[0] for k in GOLDEN}))
def test_every_shipped_scenario_runs_exactly_as_on_main(scenario):
    now = json.loads(json.dumps(golden_runs([scenario]), default=str))
    mine = {k: v for k, v in GOLDEN.items() if k.split("/")[0] == scenario}
    assert set(now) == set(mine)
    for key, want in mine.items():
        got = now[key]
        assert got["calls_sha256"] == want["calls_sha256"], key
        bad = [c for c, v in want["summary"].items() if not _same(got["summary"][c], v)]
        assert not bad, f"{key}: {bad}"
