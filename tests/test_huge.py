"""2 MB private leaves, DEMOTE, Dynamic PAMT and module versions (domain.md §10): the module
leaves driven directly (statuses as the per-version sources give them), then whole runs of the
new scenarios with short horizons."""
from __future__ import annotations

import workbench
import pytest

from tests.test_module import CAL0, G, REGION, all_locks_free, call, leaf, make, tables
from workbench.core.errors import ConfigError
from workbench.model.locks import Mode
from workbench.core.config import ModuleOptions
from workbench.model.sept import LEVEL_2M, LEVEL_4K, PAGE_4K, State
from workbench.core.rng import Draws, stream
from workbench.core.tdx_errno import (
    OPERAND_ID_RCX, TDX_GPA_RANGE_NOT_BLOCKED, TDX_INTERRUPTED_RESTARTABLE,
    TDX_HPA_RANGE_NOT_FREE, TDX_MISSING_PAMT_PAGE_PAIR, TDX_OPERAND_BUSY, TDX_SUCCESS,
    TDX_TLB_TRACKING_NOT_DONE,
)
from workbench.model.versions import VERSIONS

MB2 = 2 * 2**20
EXCLUSIVE = Mode.EXCLUSIVE
BUSY_RCX = TDX_OPERAND_BUSY | OPERAND_ID_RCX
CAL = CAL0.model_copy(update={"demote_us": 10.0, "pamt_add_us": 2.0})

def _module(**opts):
    if opts.get("dynamic_pamt"):
        opts.setdefault("version", "1.5.28")
    env, rec, m = make(ModuleOptions(**opts))
    m.cal = CAL
    return env, rec, m

def _blocked_and_tracked(env, m):
    leaf(m, REGION, State.MAPPED, LEVEL_2M)
    call(env, 0.0, m.tdh_mem_range_block("k", REGION, LEVEL_2M))
    call(env, 3.0, m.tdh_mem_track("k"))
    env.run()

# ------------------------------------------------------------------------ versions
def test_only_1_5_28_reports_enhanced_demote_interruptibility():
    assert {n for n, v in VERSIONS.items() if v.enhanced_demote} == {"1.5.28"}
    assert VERSIONS["1.5.28"].zero_step_tree is VERSIONS["1.5.25"].zero_step_tree

def test_every_version_row_says_whether_it_was_checked_in_source():
    for v in VERSIONS.values():
        assert v.source.startswith(("checked in source: murrowow/tdx-concurrency ",
                                    "inferred, from ")), v.name
    checked = {n for n, v in VERSIONS.items() if v.source.startswith("checked")}
    assert checked == {"1.5.01", "1.5.06", "1.5.08", "1.5.16", "1.5.20", "1.5.25"}

def test_dynamic_pamt_needs_a_module_that_has_pamt_add():
    """TDH.PHYMEM.PAMT.ADD arrives in 1.5.16 (b2be91c); 1.5.08 has none."""
    assert [n for n, v in VERSIONS.items() if v.dynamic_pamt] == [
        "1.5.16", "1.5.20", "1.5.25", "1.5.28"]
    with pytest.raises(ConfigError, match="1.5.16"):
        workbench.run("demote-meets-pamt-add", sets={"module.version": "1.5.08",
                                                      "horizon_us": 100})

def test_zero_step_contends_less_on_the_newer_module(sim):
    """§10.1: the older module takes the tree exclusive for an armed VP.ENTER, the newer one
    shared, so the converter's BLOCK and the other vCPUs' AUG/SEPT.ADD meet fewer BUSY."""
    old = sim("zero-step", module__version="1.5.01", horizon_us=5000).summary.iloc[0]
    new = sim("zero-step", module__version="2.0.12", horizon_us=5000).summary.iloc[0]
    assert old["zero_step_armings"] > 0 and new["zero_step_armings"] > 0
    assert new["host_busy_rate"] < old["host_busy_rate"] / 4
    assert new["fault_wait_p99_us"] < old["fault_wait_p99_us"]

# ------------------------------------------------------------------------ DEMOTE
def test_demote_needs_a_blocked_leaf():
    env, rec, m = _module()
    leaf(m, REGION, State.MAPPED, LEVEL_2M)
    r = call(env, 0.0, m.tdh_mem_page_demote("k", REGION))
    env.run()
    assert r["status"] == TDX_GPA_RANGE_NOT_BLOCKED | OPERAND_ID_RCX

def test_demote_before_the_track_is_tlb_tracking_not_done():
    env, rec, m = _module()
    leaf(m, REGION, State.MAPPED, LEVEL_2M)
    call(env, 0.0, m.tdh_mem_range_block("k", REGION, LEVEL_2M))
    r = call(env, 3.0, m.tdh_mem_page_demote("k", REGION))
    env.run()
    assert r["status"] == TDX_TLB_TRACKING_NOT_DONE | OPERAND_ID_RCX

def test_demote_of_a_blocked_tracked_leaf_gives_512_unblocked_leaves():
    env, rec, m = _module()
    _blocked_and_tracked(env, m)
    r = call(env, 0.0, m.tdh_mem_page_demote("k", REGION))
    env.run()
    assert r["status"] == TDX_SUCCESS
    assert m.sept.entry(REGION, LEVEL_2M).state is State.NON_LEAF
    assert all(m.sept.entry(REGION + i * PAGE_4K, LEVEL_4K).state is State.MAPPED
               for i in range(512))
    assert all_locks_free(m)

def test_demote_without_the_feature_is_restartable_when_a_host_interrupt_comes():
    """1.5.08 is_interrupt_pending_host_side() (1.5.20 on: check_host_interrupt_and_hp_bit(...,
    false)): TDX_INTERRUPTED_RESTARTABLE; a module with ENHANCED_DEMOTE_INTERRUPTIBILITY does
    not give up."""
    out = {}
    for version in ("1.5.08", "1.5.28"):
        env, rec, m = _module(version=version)
        m.host_irq, m.irq_interval_us = Draws(stream(1, "irq")), 0.001   # always pending
        _blocked_and_tracked(env, m)
        r = call(env, 0.0, m.tdh_mem_page_demote("k", REGION))
        env.run()
        out[version] = r["status"]
    assert out == {"1.5.08": TDX_INTERRUPTED_RESTARTABLE, "1.5.28": TDX_SUCCESS}

def test_pamt_add_on_a_2m_td_page_is_not_free():
    """tdh_phymem_pamt_add.c: after pamt_walk(..., TDX_LOCK_EXCLUSIVE, PT_2MB),
    TDX_HPA_RANGE_NOT_FREE unless the 2 MB entry is PT_NDA; a 2 MB TD page is PT_REG."""
    env, rec, m = _module(dynamic_pamt=True)
    leaf(m, REGION, State.MAPPED, LEVEL_2M)
    add = call(env, 0.0, m.tdh_phymem_pamt_add("fault", REGION + PAGE_4K))
    free = call(env, 0.0, m.tdh_phymem_pamt_add("fault2", REGION + MB2))
    env.run()
    assert add["status"] == TDX_HPA_RANGE_NOT_FREE | OPERAND_ID_RCX
    assert free["status"] == TDX_SUCCESS
    assert REGION // MB2 not in m.pamt_present and all_locks_free(m)

def test_dynamic_pamt_demote_holds_the_pamt_entry_only_in_pamt_demote():
    """DEMOTE takes the 2 MB PAMT entry exclusive in pamt_demote, after the BLOCKED and
    TLB-tracking checks and the split of the S-EPT entry: a PAMT.ADD walk that comes while
    it writes the PAMT entries gets BUSY with RCX, one during the split does not."""
    out = {}
    for at in (1.0, 9.0):      # entry 0.5, split demote_us/3 = 3.3, then pamt_demote 6.7
        env, rec, m = _module(dynamic_pamt=True)
        _blocked_and_tracked(env, m)
        t = env.now
        dem = call(env, t, m.tdh_mem_page_demote("k", REGION))
        add = call(env, t + at, m.tdh_phymem_pamt_add("fault", REGION + PAGE_4K))
        env.run()
        assert dem["status"] == TDX_SUCCESS and all_locks_free(m)
        out[at] = add["status"]
    assert out == {1.0: TDX_HPA_RANGE_NOT_FREE | OPERAND_ID_RCX, 9.0: BUSY_RCX}

def test_demote_checks_blocked_before_it_tries_the_pamt_entry():
    env, rec, m = _module(dynamic_pamt=True)
    leaf(m, REGION, State.MAPPED, LEVEL_2M)
    m.pamt_lock(REGION).try_acquire("other", EXCLUSIVE)
    dem = call(env, 0.0, m.tdh_mem_page_demote("k", REGION))
    env.run()
    assert dem["status"] == TDX_GPA_RANGE_NOT_BLOCKED | OPERAND_ID_RCX

def test_dynamic_pamt_aug_and_demote_without_pamt_pages_fail():
    env, rec, m = _module(dynamic_pamt=True)
    tables(m, G, LEVEL_4K + 1)
    aug = call(env, 0.0, m.tdh_mem_page_aug("fault", G))
    env.run()
    assert aug["status"] == TDX_MISSING_PAMT_PAGE_PAIR | OPERAND_ID_RCX
    env2, rec2, m2 = _module(dynamic_pamt=True)
    _blocked_and_tracked(env2, m2)
    dem = call(env2, 0.0, m2.tdh_mem_page_demote("k", REGION, pamt_pages=False))
    env2.run()
    assert dem["status"] == TDX_MISSING_PAMT_PAGE_PAIR | OPERAND_ID_RCX

# ------------------------------------------------------------------------ KVM, whole runs
def test_kvm_maps_2m_where_the_guest_accepts_2m_only_on_a_module_with_the_feature(sim):
    sets = dict(horizon_us=1500, host__private_page_sizes="2m")
    gated = sim("lazy-accept-boot", module__version="1.5.08", **sets).summary.iloc[0]
    mapped = sim("lazy-accept-boot", module__version="1.5.28", **sets)
    forced = sim("lazy-accept-boot", module__version="1.5.08", horizon_us=1500,
                 host__private_page_sizes="2m-force").summary.iloc[0]
    s = mapped.summary.iloc[0]
    assert gated["aug_2m"] == 0 and s["aug_2m"] > 0 and forced["aug_2m"] > 0
    ok_2m = mapped.ops[(mapped.ops["op"] == "accept_2M") & (mapped.ops["outcome"] == "ok")]
    assert len(ok_2m) > 0          # try_accept_one succeeds at 2 MB where KVM mapped 2 MB
    assert s["pages_accepted"] > 2 * gated["pages_accepted"]

def test_honor_accept_level_takes_the_write_lock_or_the_read_lock(sim):
    sets = dict(horizon_us=1500, module__version="1.5.28", host__private_page_sizes="2m")
    w = sim("lazy-accept-boot", **sets).summary.iloc[0]
    r = sim("lazy-accept-boot", host__accept_level_lock="read", **sets).summary.iloc[0]
    assert w["accept_level_write_locks"] > 0 and r["accept_level_write_locks"] == 0
    assert r["aug_2m"] > 0

def test_a_split_leaves_the_range_4k_for_good(sim):
    """GUEST_INHIBIT is one-way and there is no promotion: every 2 MB range a conversion
    touched is split once and stays a table of 4 KB leaves."""
    r = sim("hugepage-split", horizon_us=3000)
    s = r.summary.iloc[0]
    splits = r.ops[r.ops["op"] == "split_2m"]
    assert s["splits"] > 0 and s["td_failed"] == 0
    assert splits["gpa"].is_unique           # each range split once
    assert (splits["gpa"] % MB2 == 0).all()

def test_negative_control_split_under_the_read_lock_fails_as_in_the_field(sim):
    """§10.7: BUSY from RANGE.BLOCK, the leaf taken for blocked by the other thread, DEMOTE
    before that thread's TRACK: TDX_TLB_TRACKING_NOT_DONE and the TD fails. Upstream splits
    under the write lock and does not."""
    chains = failures = field = 0
    for seed in range(6):
        assert sim("zap-under-read-lock", seed=seed).summary["td_failed"].iloc[0] == 0
        r = sim("zap-under-read-lock", policy="split-read-lock", seed=seed)
        ev = r.events
        bug = ev[ev["event"] == "vm_bugged"]
        if len(bug):
            failures += 1
            assert "TDX_BUG_ON TDH.MEM.PAGE.DEMOTE" in bug["detail"].iloc[0]
            field += "TDH.MEM.PAGE.DEMOTE 0xc0000b0800000001" in bug["detail"].iloc[0]
            before = ev[ev["t_us"] <= bug["t_us"].iloc[0]]
            chains += (before["event"] == "split_block_busy").any()
    # the others: the second splitter's DEMOTE after the first's split
    # (TDX_EPT_ENTRY_STATE_INCORRECT), another mishandled race of the same policy
    assert failures >= 3 and field >= failures - 1 and chains >= 1

def test_forcing_2m_on_a_module_without_the_feature_bugs_the_vm(sim):
    """What the gate prevents: DEMOTE gives up with TDX_INTERRUPTED_RESTARTABLE, which
    tdh_do_no_vcpus treats as an error."""
    r = sim("hugepage-split", module__version="1.5.08", host__private_page_sizes="2m-force",
            timings__host_irq_interval_us=20, horizon_us=3000)
    ev = r.events
    assert "0x8000000400000000" in " ".join(ev.loc[ev["event"] == "vm_bugged", "detail"])

def test_demote_meets_pamt_add_under_the_write_lock_only_with_dynamic_pamt():
    """Fact 8.2 (the write mmu_lock excludes all host contention) fails with Dynamic PAMT:
    a fault's PAMT.ADD, taken before mmu_lock, and the DEMOTE of a split meet on the
    range's 2 MB PAMT entry, from either side (docs/findings.md finding 9 gives the rate)."""
    def meetings(**sets):
        n = 0
        for r in range(3):
            c = workbench.run("demote-meets-pamt-add", replication=r,
                              sets={"horizon_us": 6000, **sets}).calls
            pamt = c["leaf"].isin(["TDH.MEM.PAGE.DEMOTE", "TDH.PHYMEM.PAMT.ADD"])
            n += int((pamt & (c["status_name"] == "TDX_OPERAND_BUSY")
                      & (c["operand"] == "RCX")).sum())
        return n
    assert meetings() > 0
    assert meetings(**{"module.dynamic_pamt": False}) == 0

def test_upm_parallel_upstream_passes_and_zero_tolerance_does_not(sim):
    """Zero tolerance returns a BUSY from a host thread's KVM_SET_MEMORY_ATTRIBUTES or
    hole punch to userspace, which is the selftest's TEST_ASSERT (seed 3 fails early)."""
    up = sim("upm-parallel", seed=3, horizon_us=6000).summary.iloc[0]
    zt = sim("upm-parallel", policy="zero-tolerance", seed=3, horizon_us=6000).summary.iloc[0]
    assert up["td_failed"] == 0 and up["stopped"] == ""
    assert zt["td_failed"] == 1 and zt["stopped"] == "test_assert"


def test_calibration_shows_which_versions_have_the_huge_page_feature_bit():
    from tests.test_cli import cli
    out = cli("calibration").stdout
    assert "1.5.28   zero-step VP.ENTER takes the S-EPT tree shared" in out
    lines = [ln for ln in out.splitlines() if "ENHANCED_DEMOTE_INTERRUPTIBILITY yes" in ln]
    assert [ln.split()[0] for ln in lines] == ["1.5.28"]
    assert "demote_us" in out and "host_irq_interval_us" in out


def test_huge_accept_boot_runs_the_2m_fault_path_under_either_accept_level_lock(sim):
    """The shipped 2 MB fault path: the guest accepts at 2 MB and KVM maps 2 MB leaves on
    the ACCEPT exits, taking the write mmu_lock to choose the level (RFC v5) or the read
    lock; only the write variant counts write-lock takes, and the choice shows in the
    throughput (docs/findings.md finding 11 measures it over seeds)."""
    w = sim("huge-accept-boot", horizon_us=3000).summary.iloc[0]
    r = sim("huge-accept-boot", horizon_us=3000, host__accept_level_lock="read").summary.iloc[0]
    assert w["aug_2m"] > 0 and r["aug_2m"] > 0
    assert w["accept_level_write_locks"] > 0 and r["accept_level_write_locks"] == 0
    assert w["pages_accepted"] != r["pages_accepted"]
    assert w["td_failed"] == 0 and r["td_failed"] == 0
