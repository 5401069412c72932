"""Figures that say what they mean: failed operations are never drawn as fast successes,
one policy has one colour everywhere, outcomes that are 0 for every policy are not drawn."""
from __future__ import annotations

import pandas as pd
import pytest

import workbench
from workbench import plots

SHORT = {"horizon_us": 3000}


@pytest.fixture(scope="module")
def comparison():
    return workbench.compare("zero-step", ["upstream", "zero-tolerance"], reps=1, seed=1,
                             sets=SHORT)


def test_the_ecdf_never_draws_a_failed_op_as_a_success(comparison):
    ops = comparison.ops
    fig = plots.latency_ecdf(ops, "private_fault")
    zt = ops[(ops["policy"] == "zero-tolerance") & (ops["op"] == "private_fault")
             & (ops["role"] != "stepper")]
    failed = int((zt["outcome"] != "ok").sum())
    assert failed > 0, "zero tolerance turns contended faults into exits"
    trace = next(t for t in fig.data if t.name.startswith("zero-tolerance"))
    assert len(trace.x) == len(zt) - failed
    assert max(trace.y) == pytest.approx((len(zt) - failed) / len(zt))
    assert f"{failed} not ok" in trace.name


def test_one_policy_has_one_colour_in_every_figure(comparison):
    figs = [plots.latency_ecdf(comparison.ops, "zap_4k"), plots.outcomes(comparison.table)]
    ecdf = {t.name.split(" ")[0]: t.line.color for t in figs[0].data}
    assert ecdf["upstream"] == plots.policy_color("upstream") != ecdf["zero-tolerance"]
    bars = figs[1].data[0]
    assert dict(zip(bars.y, bars.marker.color)) == {p: plots.policy_color(p) for p in bars.y}
    assert plots.policy_color("mine+fault=resume-guest") == plots.policy_color("mine+fault=resume-guest")


def test_outcomes_drop_panels_that_are_zero_for_every_policy():
    table = pd.DataFrame({"policy": ["a", "b"], "reps": [1, 1], "kicks": [3, 5],
                          "vm_bugged": [0, 0], "error_exits": [0, 2]})
    fig = plots.outcomes(table)
    assert [a.text for a in fig.layout.annotations][:2] == ["all-vCPU kicks",
                                                            "error exits to userspace"]
    assert "runs with the VM bugged" in fig.layout.title.text


def test_fairness_shows_each_vcpus_useful_work():
    r = workbench.run("lazy-accept-boot", seed=1, sets=SHORT)
    fig = plots.fairness(r.vcpus)
    assert len(fig.data) == 1 and list(fig.data[0].y) == list(r.vcpus["useful_work"])
    assert "Jain" in fig.data[0].name
