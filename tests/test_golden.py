"""Every scenario that existed before this round's engineering gives, with what was added
since switched off, the same values in every column recorded then, bit for bit (fixture
recorded on main at 5883c98 by tests/golden.py): the speed work, the race finder's choice
hook, huge pages and the shared-resource hooks change no result of the model they extend."""
import json

import pytest

from golden import FIXTURE, compute, differences

GOLDEN = json.loads(FIXTURE.read_text())


def _case(k):
    scenario, policy = k.split("/")
    return scenario, policy.removesuffix("+busy"), policy.endswith("+busy")


@pytest.mark.parametrize("run_key", sorted(GOLDEN))
def test_columns_recorded_before_are_identical(run_key):
    from golden import WHAT_IF
    scenario, policy, busy = _case(run_key)
    now = compute(scenario, policy, WHAT_IF if busy else {})
    assert not differences(now, GOLDEN[run_key]), differences(now, GOLDEN[run_key])[:8]


def test_the_comparison_sees_a_change():
    """The check can fail: one changed value in one column is reported."""
    some = sorted(GOLDEN)[0]
    changed = json.loads(json.dumps(GOLDEN[some]))
    changed["ops"]["columns"]["t_end_us"] = "0" * 64
    scenario, policy, busy = _case(some)
    assert differences(compute(scenario, policy, {}), changed) == ["ops.t_end_us"]


GOLDEN_ON = json.loads(__import__("golden_on").FIXTURE.read_text())


@pytest.mark.parametrize("run_key", sorted(GOLDEN_ON))
def test_shipped_model_results_are_unchanged_by_speed_work(run_key):
    """With the shared-resource mechanisms on (as shipped), every column of every table is as
    recorded on main at 747ac52 before the second round of hot-path work (tests/golden_on.py)."""
    from golden import WHAT_IF
    scenario, policy, busy = _case(run_key)
    now = compute(scenario, policy, WHAT_IF if busy else {}, since_off={})
    assert not differences(now, GOLDEN_ON[run_key]), differences(now, GOLDEN_ON[run_key])[:8]
