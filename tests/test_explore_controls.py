"""What the race finder must find, and must not find, on the shipped small scenarios.

Each module what-if of #10 that breaks a guarantee a policy relies on gets a test here that
the race finder finds the consequence; the shipped policies get the verdict of a stated
budget. (The negative control "zap under the read lock" of #10 belongs in this file, next
to the busy_without_vcpus test, once that what-if exists.)
"""
import pytest

import workbench
from workbench.explore import explore
from workbench.replay import trace_rows


def test_kick_and_retry_once_bugs_the_vm_when_the_module_goes_busy_without_vcpus():
    """upstream's zap kicks every vCPU out and retries once, relying on "no new BUSY once
    no vCPU runs"; module.busy_without_vcpus breaks that, and the retry's BUSY is
    KVM_BUG_ON (tdh_do_no_vcpus)."""
    v = explore("malicious-accept-small", "upstream", schedules=16, oracles=["vm_bugged"],
                sets={"module.busy_without_vcpus": 0.2}, shrink_seconds=2, progress=False)
    assert v.failure and "TDX_BUG_ON" in v.failure[1]
    acts = [r[7] for r in trace_rows(v.shrunk) if r[7].startswith("zap:")]
    assert acts[-2:] == ["zap: KickAndRetry", "zap: BugVm"]


BUDGET = {"random": 8, "pct": 4}     # schedules per scenario and strategy


@pytest.mark.parametrize("scenario", workbench.scenario_names("small"))
def test_upstream_has_no_counterexample_on_a_small_scenario(scenario):
    for strategy, n in BUDGET.items():
        v = explore(scenario, "upstream", schedules=n, strategy=strategy, progress=False,
                    engine="serial")
        assert v.failure is None, v.text()
        assert v.schedules == n
