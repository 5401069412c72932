"""Conservation laws and an independent cross-check (Little's law) on whole runs."""
import pytest

from workbench.core.records import OUTCOMES, VCPU_STATES

SCENARIOS = ["lazy-accept-boot", "fault-storm", "conversion-storm", "zero-step",
             "malicious-accept", "scale"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_op_ends_in_exactly_one_known_outcome(sim, scenario):
    ops = sim(scenario).ops
    assert ops["outcome"].isin(OUTCOMES).all()
    assert (ops["latency_us"] >= 0).all()
    assert (ops["attempts"] >= 1).all()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_vcpu_time_adds_up_to_the_simulated_time(sim, scenario):
    r = sim(scenario)
    horizon = r.summary["horizon_us"].iloc[0]
    total = r.vcpus[[f"{s}_us" for s in VCPU_STATES]].sum(axis=1)
    assert total.to_numpy() == pytest.approx(horizon, rel=1e-9)
    assert (r.vcpus[[f"{s}_us" for s in VCPU_STATES]] >= 0).all().all()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_page_the_host_added_is_mapped_pending_or_zapped(sim, scenario):
    s = sim(scenario).summary.iloc[0]
    assert s["aug_ok"] + s["prebuilt_pages"] == \
        s["pages_mapped"] + s["pages_pending"] + s["pages_blocked"] + s["pages_removed"]


def test_pages_accepted_plus_pending_equal_pages_asked_for(sim):
    r = sim("lazy-accept-boot")
    s = r.summary.iloc[0]
    # the guest asked for a page each time its ACCEPT exited and KVM AUGed it
    accepted_in_module = s["pages_mapped"] - s["prebuilt_pages"]
    assert accepted_in_module + s["pages_pending"] == s["aug_ok"]
    # an ACCEPT that changed the entry but had not returned to the guest at the horizon is
    # an unfinished op, not yet a page the guest counts
    open_accepts = r.ops[(r.ops["op"] == "accept_4K") & (r.ops["outcome"] == "unfinished")]
    assert s["pages_accepted"] <= accepted_in_module <= s["pages_accepted"] + len(open_accepts)
    ok_accepts = r.ops[(r.ops["op"] == "accept_4K") & (r.ops["outcome"] == "ok")]
    assert len(ok_accepts) == s["pages_accepted"]


def test_littles_law_faults_in_flight(sim):
    """The model's own time-weighted count of faults in flight against arrival rate x
    mean latency measured from the ops table."""
    r = sim("conversion-storm", horizon_us=100_000)
    s = r.summary.iloc[0]
    faults = r.ops[r.ops["op"] == "private_fault"]
    lam = len(faults) / s["horizon_us"]
    w = faults["latency_us"].mean()
    assert len(faults) > 10_000
    assert s["faults_in_flight_mean"] == pytest.approx(lam * w, rel=0.05)


@pytest.mark.parametrize("scenario", ["conversion-storm", "malicious-accept", "zero-step"])
@pytest.mark.parametrize("policy", ["upstream", "zero-tolerance", "host-priority-retry",
                                    "mmu-lock-write"])
def test_no_page_is_shared_while_a_private_leaf_remains(sim, scenario, policy):
    """A conversion zaps under mmu_lock write, which waits for faults holding it for read,
    and a fault an attribute change raced is retried: KVM's attributes and the S-EPT agree."""
    for seed in (1, 2):
        s = sim(scenario, policy=policy, seed=seed).summary.iloc[0]
        assert s["shared_pages_still_private"] == 0


def test_a_stopped_td_runs_no_more_guest_code(tmp_path):
    p = tmp_path / "attr.yaml"
    p.write_text("name: attr\nhorizon_us: 5000\nhost: {memory_fault_action: rerun}\n"
                 "module: {host_priority: false}\n"
                 "vcpus:\n  - {role: converter, count: 1, range_kb: 4, interval_us: 50}\n"
                 "  - {role: attr_spammer, count: 3}\n  - {role: lazy_accept, count: 2}\n")
    import workbench
    for policy in ("patch-09-21", {"preset": "zero-tolerance"}):
        r = workbench.run(p, seed=1, policy=policy, sets=["host.vmm_on_error=stop"])
        s = r.summary.iloc[0]
        assert s["stopped"], "the attack should end this TD"
        late = r.calls[r.calls["t_start_us"] > s["stopped_at_us"] + 10.0]
        assert late.empty, late.head()
        assert (r.ops["t_end_us"] <= s["stopped_at_us"] + 50.0).all()
        assert r.vcpus["stopped_us"].sum() > 0


def test_guest_loops_that_cost_nothing_cannot_stall_the_clock():
    import workbench
    r = workbench.run("zero-step", seed=1, sets=["host.memory_fault_action=convert",
                                                 "module.sept_ve_disable=false",
                                                 "horizon_us=3000"])
    assert r.summary["horizon_us"].iloc[0] == 3000
