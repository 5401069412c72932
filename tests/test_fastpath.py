"""KVM's fastpath passes while wait_for_sept_zap is set (workbench/model/fastpath.py):
collapsed (the default) and polled give the same tables, bit for bit; collapsing removes
the passes' events; a run that ends, or a TD that stops, while vCPUs sleep in them is
accounted as polling accounts it."""
from pathlib import Path

import pytest

import workbench
from workbench.core.config import load_calibration
from workbench.model.td import Td
from workbench.policies import resolve_policy

TABLES = ("summary", "calls", "ops", "vcpus", "events")
STORM = str(Path(__file__).resolve().parent.parent / "benchmarks" / "long-hold-storm.yaml")


def both(scenario, sets, seed: int = 3):
    return [workbench.run(scenario, seed=seed, sets={**sets, "polls": mode})
            for mode in ("polled", "collapsed")]


def differing(a, b) -> list:
    return [t for t in TABLES if not getattr(a, t).equals(getattr(b, t))]


def zap_wait(r) -> float:
    return float(r.vcpus["zap_wait_us"].sum())


def td_run(scenario, sets: dict, seed: int = 3) -> Td:
    cfg = workbench.load_scenario(scenario, sets=sets)
    cal, _ = load_calibration(cfg.calibration, cfg.timings)
    return Td(cfg, resolve_policy(cfg.policy), cal, seed).run()


@pytest.mark.parametrize("scenario", workbench.scenario_names())
def test_every_shipped_scenario_gives_the_same_tables_polled_and_collapsed(scenario):
    polled, collapsed = both(scenario, {"horizon_us": 1500})
    assert not differing(polled, collapsed), differing(polled, collapsed)


def test_the_shipped_comparison_covers_runs_with_passes():
    """Not vacuous: shipped scenarios spin in the fastpath within that horizon (with each
    lock try judged when its word is reached, conversion-storm and scale do)."""
    spun = [s for s in workbench.scenario_names()
            if zap_wait(workbench.run(s, seed=3, sets={"horizon_us": 1500})) > 0]
    assert len(spun) >= 2, spun


HORIZONS = (500, 800, 1600)      # seed 1: waits until ~1000 us, vCPUs asleep at 500 and 800
SMALL = {"vcpus.2.count": 120}     # the storm as shipped: fewer computers ack too early to spin


@pytest.mark.parametrize("horizon_us", HORIZONS)
def test_a_long_hold_storm_is_the_same_when_the_run_ends_mid_wait(horizon_us):
    polled, collapsed = both(STORM, {"horizon_us": horizon_us, **SMALL}, seed=1)
    assert zap_wait(polled) > 1000, "the storm should spin in the fastpath"
    assert not differing(polled, collapsed), differing(polled, collapsed)


def test_some_run_of_the_storm_ends_with_vcpus_asleep_in_passes():
    """The close-at-horizon path of the collapse is exercised by the horizons above."""
    asleep = [h for h in HORIZONS if td_run(STORM, {"horizon_us": h, **SMALL}, 1).kvm.sleepers]
    assert asleep


def test_a_td_that_stops_while_vcpus_sleep_is_the_same():
    """The what-if internal holder makes upstream's one retry after the kick fail: KVM_BUG_ON
    stops the TD in the middle of a hold, and every sleeper wakes to leave."""
    sets = {"horizon_us": 2000, **SMALL, "module.busy_without_vcpus": 0.5}
    polled, collapsed = both(STORM, sets, seed=2)
    assert polled.summary["stopped"].iloc[0] == "vm_bugged"
    assert zap_wait(polled) > 0
    assert not differing(polled, collapsed), differing(polled, collapsed)


def test_collapsing_removes_the_passes_events():
    sets = {"horizon_us": 1600, **SMALL}
    polled = td_run(STORM, {**sets, "polls": "polled"}, 1)
    collapsed = td_run(STORM, {**sets, "polls": "collapsed"}, 1)
    passes = sum(v.times["zap_wait"] for v in polled.vcpus) / 0.5     # ~0.5 us a pass out
    assert passes > 1000
    assert collapsed.steps < polled.steps / 2, (collapsed.steps, polled.steps)


def test_compute_vcpus_run_guest_code_and_leave_only_for_interrupts():
    r = workbench.run(STORM, seed=1, sets={"horizon_us": 2000, "vcpus.2.count": 4,
                                           "timings.ipi_delivery_us": 2.0}, policy="upstream")
    v = r.vcpus[r.vcpus["role"] == "compute"]
    assert len(v) == 4 and (v["faults"] == 0).all()
    assert (v["guest_us"] > 0.75 * 2000).all()      # the rest: kicks, ticks, re-entries
    # no guest operation of their own; a VP.ENTER that met BUSY is recorded as an op
    assert set(r.ops.loc[r.ops["actor"].isin(v["vcpu"]), "op"]) <= {"vp_enter"}


def test_a_bad_polls_value_is_a_one_line_error():
    from workbench.core.errors import ConfigError
    with pytest.raises(ConfigError, match="polls"):
        workbench.run("lazy-accept-boot", sets={"polls": "sometimes"})
