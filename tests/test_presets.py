"""Each preset that names real code does what that code did, per leaf and status operand.

The expectations are written by hand from the code each preset cites (domain.md §5): the
merged tdx.c (6.19 form) for ``upstream``; patch 09/21's tdx_seamcall_sept and its callers
for ``patch-09-21``; Paolo's message for ``vm-spinlock``. ``behaviour`` drives the preset's
policy through the status at every retry until it stops.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from workbench.policies import resolve_policy
from workbench.policies.base import Site
from workbench.policies.table import ENTRY, EPOCH, TREE, behaviour, markdown, preset_table

AUG, ADD, BLOCK = "TDH.MEM.PAGE.AUG", "TDH.MEM.SEPT.ADD", "TDH.MEM.RANGE.BLOCK"
TRACK, REMOVE, ENTER = "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE", "TDH.VP.ENTER"
F, Z, V = Site.FAULT, Site.ZAP, Site.VP_ENTER
KICK_ONCE = "kick, retry once, KVM_BUG_ON"

EXPECTED = {
    # tdx_handle_ept_violation: local retry without a count limit; tdh_do_no_vcpus: one
    # try, kick with wait_for_sept_zap, one retry, TDX_BUG_ON; BUSY VP.ENTER is fastpath
    "upstream": [(F, AUG, TREE, "retry without bound"), (F, AUG, ENTRY, "retry without bound"),
                 (F, ADD, TREE, "retry without bound"), (Z, BLOCK, TREE, KICK_ONCE),
                 (Z, BLOCK, ENTRY, KICK_ONCE), (Z, TRACK, EPOCH, KICK_ONCE),
                 (Z, REMOVE, ENTRY, KICK_ONCE), (V, ENTER, EPOCH, "retry without bound")],
    # patch 09/21: BUSY|SEPT retried 16 times in tdx_seamcall_sept; faults then -EAGAIN ->
    # RET_PF_RETRY; other BUSY on AUG/SEPT.ADD -> KVM_BUG_ON; BLOCK -EAGAIN -> KVM_BUG_ON in
    # remove_external_spte; REMOVE loops on BUSY|SEPT only; TRACK loops on any BUSY
    "patch-09-21": [(F, AUG, TREE, "retry x16, resume guest"), (F, AUG, ENTRY, "KVM_BUG_ON"),
                    (F, ADD, TREE, "retry x16, resume guest"),
                    (F, "FROZEN_SPTE", 0, "resume guest"),
                    (Z, BLOCK, TREE, "retry x16, KVM_BUG_ON"), (Z, BLOCK, ENTRY, "KVM_BUG_ON"),
                    (Z, TRACK, EPOCH, "retry without bound"),
                    (Z, REMOVE, TREE, "retry without bound"), (Z, REMOVE, ENTRY, "KVM_BUG_ON")],
    # Paolo (1bbe3a78): retry, warn at 16 and doubling, KVM_BUG_ON at 1024, under a spinlock
    "vm-spinlock": [(F, AUG, TREE, "retry x1023, KVM_BUG_ON"),
                    (Z, BLOCK, ENTRY, "retry x1023, KVM_BUG_ON"),
                    (Z, TRACK, EPOCH, "retry x1023, KVM_BUG_ON")],
    # Sean (Zt9kmVe1nkjVjoEg): any BUSY is an error for userspace; a frozen SPTE is KVM's own
    "zero-tolerance": [(F, AUG, TREE, "exit to userspace"), (F, "FROZEN_SPTE", 0, "resume guest"),
                       (Z, BLOCK, ENTRY, "exit to userspace"), (V, ENTER, EPOCH, "exit to userspace")],
    "sean-per-path": [(F, AUG, TREE, "resume guest"), (Z, TRACK, EPOCH, KICK_ONCE)],
}


@pytest.mark.parametrize("preset,case", [(p, c) for p, cases in EXPECTED.items() for c in cases],
                         ids=lambda x: x if isinstance(x, str) else f"{x[0].value}-{x[1]}-{x[2]:#x}")
def test_preset_does_what_the_code_it_names_did(preset, case):
    site, leaf, status, expected = case
    assert behaviour(resolve_policy(preset).for_site(site), site, leaf, status) == expected


def test_vm_spinlock_is_a_switch_that_combines_with_any_retry_rule():
    assert resolve_policy("vm-spinlock").sept_lock == "vm_spinlock"
    assert resolve_policy("upstream").sept_lock == "none"
    mixed = resolve_policy("upstream+sept_lock=vm_spinlock")
    assert mixed.sept_lock == "vm_spinlock" and mixed.name == "upstream+sept_lock=vm_spinlock"
    assert mixed.fault == resolve_policy("upstream").fault
    assert resolve_policy(mixed.name) == mixed       # the label is a spec


def test_docs_print_the_per_leaf_table_of_every_preset():
    text = (Path(__file__).resolve().parent.parent / "docs" / "policies.md").read_text()
    assert markdown(preset_table()) in text, "regenerate it: python -m workbench.policies.table"


def test_patch_09_21_bugs_the_vm_when_a_guest_accept_holds_the_entry(sim):
    """The real failure of the series: a guest TDCALL on the entry (BUSY|RCX) reached a
    KVM_BUG_ON; the looser blind-retry-all never bugs the VM on it."""
    real = sim("malicious-accept", policy="patch-09-21", horizon_us=6000)
    s = real.summary.iloc[0]
    assert s["stopped"] == "vm_bugged"
    assert "0x8000020000000001" in " ".join(real.events["detail"])
    loose = sim("malicious-accept", policy="blind-retry-all", horizon_us=6000)
    assert loose.summary["vm_bugged"].iloc[0] == 0
