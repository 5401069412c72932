"""Every shipped scenario gives the same tables, bit for bit, as the code before the speed
work of issue 11 (fixture recorded from main: tests/golden.py)."""
import json

import pytest

from golden import FIXTURE, cases, compute

GOLDEN = json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("scenario,policy", cases())
def test_tables_identical_to_recorded(scenario, policy):
    assert compute(scenario, policy) == GOLDEN[f"{scenario}/{policy}"]
