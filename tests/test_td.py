"""Facts 6 to 9 of domain.md §8, through ``workbench.run`` on the shipped scenarios."""
import numpy as np

from workbench.core.tdx_errno import TDX_OPERAND_BUSY


def busy_calls(r):
    return r.calls[(r.calls["status"] & np.uint64(0xFFFF_FFFF_0000_0000)) == np.uint64(TDX_OPERAND_BUSY)]


# ------------------------------------------------------------------ fact 6: the fault path
def test_upstream_fault_path_retries_locally_and_never_resumes_the_guest(sim):
    r = sim("fault-storm")
    faults = r.ops[r.ops["op"] == "private_fault"]
    assert len(faults) > 1000
    assert set(faults["outcome"]) <= {"ok", "unfinished"}
    retried = faults[faults["attempts"] > 1]
    assert len(retried) > 0, "the storm should make some faults lose the frozen-SPTE race"
    assert (retried["outcome"] == "ok").all()
    # one VP.ENTER per handled exit: local retry never re-enters the guest to retry (the
    # other exits are the guest's timer ticks)
    v = r.vcpus
    assert (v["entries"] <= v["faults"] + v["ticks"] + 1).all()


def test_resume_guest_reenters_at_the_same_rip_instead(sim):
    up, rg = sim("fault-storm"), sim("fault-storm", policy="resume-guest")
    resumed = rg.ops[(rg.ops["op"] == "private_fault") & (rg.ops["outcome"] == "resumed")]
    assert len(resumed) > 0
    assert (up.ops["outcome"] != "resumed").all()
    # every resumed fault costs an extra TDH.VP.ENTER, a re-executed ACCEPT and a new fault
    per_page = lambda r: r.vcpus["faults"].sum() / r.summary["pages_accepted"].iloc[0]
    assert per_page(rg) > per_page(up)
    rg_faults = rg.ops[rg.ops["op"] == "private_fault"]
    assert (rg_faults["attempts"] == 1).all(), "resume-guest never loops inside KVM"


def test_local_retry_has_no_count_limit_under_zero_step_contention(sim):
    r = sim("zero-step")
    faults = r.ops[r.ops["op"] == "private_fault"]
    contended = faults[faults["busy"] > 0]
    assert len(contended) > 0
    assert (contended["outcome"] == "ok").all()
    tree = busy_calls(r)
    operands = set(tree.loc[tree["leaf"] == "TDH.MEM.PAGE.AUG", "operand"])
    # the tree (zero-step's exclusive hold); an entry lock (RCX) only where the converter's
    # ACCEPT of a not-yet-AUGed page locked it (accept_locks_not_present, domain §5.6)
    assert "SEPT_TREE" in operands and operands <= {"SEPT_TREE", "RCX"}


def test_counted_faults_at_one_rip_arm_zero_step_and_accept_exits_do_not(sim):
    r = sim("zero-step")
    armed = r.vcpus.set_index("role")["zero_step_armings"]
    assert armed["stepper"] >= 1
    assert (r.vcpus.loc[r.vcpus["role"] == "lazy_accept", "zero_step_armings"] == 0).all()
    # fault-storm faults are ACCEPT-synthesised exits: never counted, whatever the policy
    for policy in ("upstream", "resume-guest"):
        assert sim("fault-storm", policy=policy).summary["zero_step_armings"].iloc[0] == 0


def test_armed_vcpu_takes_the_tree_on_every_entry(sim):
    r = sim("zero-step")
    stepper = r.vcpus.loc[r.vcpus["role"] == "stepper", "vcpu"].iloc[0]
    enters = r.calls[(r.calls["leaf"] == "TDH.VP.ENTER") & (r.calls["caller"] == stepper)]
    names = set(enters["status_name"])
    # the tree is often held shared by other vCPUs' AUGs (unfair lock) -> BUSY|SEPT_TREE;
    # while a listed GPA is shared it still faults -> a synthesised EPT violation (EPFS);
    # once the converter has taken the pages back, the armed vCPU enters, tree held
    assert {"TDX_OPERAND_BUSY", "EXIT_REASON_EPT_VIOLATION", "TDX_SUCCESS"} <= names
    assert set(enters.loc[enters["status_name"] == "TDX_OPERAND_BUSY", "operand"]) <= {
        "SEPT_TREE", "TD_EPOCH"}
    # ... and the host's S-EPT calls meet it: BUSY|SEPT_TREE on the zap path and on faults
    host = r.calls[r.calls["leaf"].isin(["TDH.MEM.RANGE.BLOCK", "TDH.MEM.PAGE.AUG"])]
    assert (host["operand"] == "SEPT_TREE").any()


# ------------------------------------------------------------------ fact 7: the zap path
def test_every_zap_busy_is_followed_by_one_kick_and_a_successful_retry(sim):
    r = sim("malicious-accept")
    calls = r.calls.reset_index(drop=True)
    zap = calls[calls["caller"].str.startswith("zap:")]
    busy = zap[(zap["status"] & np.uint64(0xFFFF_FFFF_0000_0000)) == np.uint64(TDX_OPERAND_BUSY)]
    assert len(busy) > 0, "the ACCEPT spam should collide with some BLOCKs"
    for idx, row in busy.iterrows():
        nxt = zap[(zap.index > idx) & (zap["caller"] == row["caller"])].iloc[0]
        assert nxt["leaf"] == row["leaf"] and nxt["status_name"] == "TDX_SUCCESS"
        assert nxt["t_start_us"] - row["t_end_us"] >= 1.0       # a kick (at least its request) between
    s = r.summary.iloc[0]
    tracks = (zap["leaf"] == "TDH.MEM.TRACK") & (zap["status_name"] == "TDX_SUCCESS")
    assert s["kicks"] == tracks.sum() + len(busy)
    assert s["vm_bugged"] == 0


def test_conversion_storm_never_bugs_the_vm(sim):
    for seed in (1, 2, 3):
        s = sim("conversion-storm", seed=seed).summary.iloc[0]
        assert s["vm_bugged"] == 0 and s["stopped"] == ""
        assert s["zapped_pages"] > 100


# ------------------------------------------------------------------ fact 8: cost per page
def test_every_zapped_page_costs_an_all_vcpu_kick(sim):
    r = sim("conversion-storm")
    s = r.summary.iloc[0]
    zap_busy = busy_calls(r)["caller"].str.startswith("zap:").sum()
    tracks = ((r.calls["leaf"] == "TDH.MEM.TRACK") & (r.calls["status_name"] == "TDX_SUCCESS")).sum()
    assert s["kicks"] == tracks + zap_busy              # one unconditional kick per TRACK
    converters = (r.vcpus["role"] == "converter").sum()
    assert s["zapped_pages"] <= tracks <= s["zapped_pages"] + converters  # + zaps in flight
    zaps = r.ops[(r.ops["op"] == "zap_4k") & (r.ops["outcome"] == "ok")]
    per_page = r.calls[r.calls["caller"].str.startswith("zap:")].groupby("leaf").size()
    assert set(per_page.index) == {"TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK",
                                   "TDH.MEM.PAGE.REMOVE", "TDH.PHYMEM.PAGE.WBINVD"}
    assert per_page["TDH.PHYMEM.PAGE.WBINVD"] == len(zaps)


def test_kicks_target_only_vcpus_in_guest_mode_and_wait_for_the_slowest(sim):
    """A kick sends one IPI per vCPU in guest mode and waits for each to leave it: the
    cost grows with how many are in the guest and how long each takes to get out, not
    with a per-vCPU constant."""
    small = sim("scale", vcpus__1__count=3)
    big = sim("scale", vcpus__1__count=31)
    per_kick = lambda r: r.summary["ipis"].iloc[0] / (r.summary["kicks"].iloc[0]
                                                      + r.summary["tlb_flushes"].iloc[0])
    assert per_kick(big) > per_kick(small)
    assert per_kick(big) < 32 - 1, "vCPUs outside guest mode are never IPIed"
    lat = lambda r: r.ops.loc[r.ops["op"] == "zap_4k", "latency_us"].mean()
    assert lat(big) > lat(small)


# ------------------------------------------------------------------ fact 9: what upstream keeps
def test_faults_stay_parallel_readers_of_mmu_lock(sim):
    r = sim("fault-storm")
    aug = r.calls[r.calls["leaf"] == "TDH.MEM.PAGE.AUG"].sort_values("t_start_us")
    overlap = (aug["t_start_us"].to_numpy()[1:] < aug["t_end_us"].cummax().to_numpy()[:-1]).sum()
    assert overlap > len(aug) // 4, "AUGs of different vCPUs run concurrently under read lock"
    assert r.summary["host_busy_rate"].iloc[0] == 0.0, "host-vs-host never contends in the module"


def test_the_retry_after_a_kick_is_guaranteed_to_succeed(sim):
    for scenario in ("malicious-accept", "conversion-storm", "zero-step"):
        r = sim(scenario)
        zap = r.ops[r.ops["op"] == "zap_4k"]
        assert (zap["outcome"].isin(["ok", "unfinished"])).all(), scenario
