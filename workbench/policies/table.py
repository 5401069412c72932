"""Layer 2 (policies): what each preset does, per call site, leaf and status operand.

:func:`preset_table` drives each preset's policies through the BUSY statuses that each
SEAMCALL can meet (domain.md §2) and says in words what follows: how many retries, then
which action. docs/policies.md prints this table and a test keeps the two in step.
"""
from __future__ import annotations

import numpy as np

from ..core.tdx_errno import (OPERAND_ID_RCX, OPERAND_ID_SEPT, OPERAND_ID_TD_EPOCH, busy)
from .base import BusyContext, KickAndRetry, Retry, Site

TREE, ENTRY, EPOCH = busy(OPERAND_ID_SEPT), busy(OPERAND_ID_RCX), busy(OPERAND_ID_TD_EPOCH)

# (site, leaf, status, what holds the lock) for every BUSY the model can produce
CASES = (
    (Site.FAULT, "TDH.MEM.PAGE.AUG", TREE, "zero-step VP.ENTER holds the tree"),
    (Site.FAULT, "TDH.MEM.PAGE.AUG", ENTRY, "a guest TDCALL holds the entry"),
    (Site.FAULT, "TDH.MEM.SEPT.ADD", TREE, "zero-step VP.ENTER holds the tree"),
    (Site.FAULT, "FROZEN_SPTE", 0, "another vCPU's fault froze the SPTE"),
    (Site.ZAP, "TDH.MEM.RANGE.BLOCK", TREE, "zero-step VP.ENTER holds the tree"),
    (Site.ZAP, "TDH.MEM.RANGE.BLOCK", ENTRY, "a guest TDCALL holds the entry"),
    (Site.ZAP, "TDH.MEM.TRACK", EPOCH, "a VP.ENTER holds the epoch"),
    (Site.ZAP, "TDH.MEM.PAGE.REMOVE", TREE, "zero-step VP.ENTER holds the tree"),
    (Site.ZAP, "TDH.MEM.PAGE.REMOVE", ENTRY, "a guest TDCALL holds the entry"),
    (Site.VP_ENTER, "TDH.VP.ENTER", EPOCH, "TRACK holds the epoch"),
    (Site.VP_ENTER, "TDH.VP.ENTER", TREE, "armed: another tree holder"),
    (Site.ACCEPT, "TDG.MEM.PAGE.ACCEPT", ENTRY, "the host (or HP) holds the entry"),
    (Site.ZAP, "TDH.MEM.PAGE.DEMOTE", ENTRY, "PAMT.ADD holds the 2 MB PAMT entry (Dynamic PAMT)"),
    (Site.FAULT, "TDH.PHYMEM.PAMT.ADD", ENTRY, "DEMOTE holds the 2 MB PAMT entry"),
)
# how each split_lock splits a 2 MB leaf (workbench/model/split.py), and what its DEMOTE does
# with BUSY where the split does not run through tdh_do_no_vcpus
SPLIT = {"write": "write mmu_lock: BLOCK, TRACK, kick, DEMOTE via tdh_do_no_vcpus",
         "read": "read mmu_lock: BLOCK retried while BUSY; ALREADY_BLOCKED -> DEMOTE, no TRACK",
         "non_blocking": "read mmu_lock, DEMOTE alone (what-if module feature)"}
SPLIT_DEMOTE = "retry without bound (read-lock split)"
LIMIT = 2000       # retries beyond this read as "without bound"
NAMES = {"ResumeGuest": "resume guest", "ExitToUserspace": "exit to userspace",
         "BugVm": "KVM_BUG_ON", "GuestFail": "fail (Linux: fall back, panic at 4K)"}


def behaviour(policy, site: Site, leaf: str, status: int, n_vcpus: int = 8) -> str:
    """What ``policy`` does when every try of one operation meets ``status``."""
    rng = np.random.default_rng(0)
    retries, kicked, attempt = 0, False, 1
    while retries <= LIMIT:
        ctx = BusyContext(site, leaf, status, attempt, kicked, 0.0, n_vcpus)
        action = policy.on_busy(ctx, rng)
        if isinstance(action, KickAndRetry) and not kicked:
            kicked, attempt = True, attempt + 1
            continue
        if not isinstance(action, (Retry, KickAndRetry)):
            break
        retries, attempt = retries + 1, attempt + 1
    else:
        return ("kick, then " if kicked else "") + "retry without bound"
    end = NAMES.get(type(action).__name__, type(action).__name__)
    steps = (["kick"] if kicked else []) + ([f"retry x{retries}"] if retries else [])
    if kicked and not retries:
        steps.append("retry once")
    return ", ".join(steps + [end]) if steps else end


def preset_table(presets=None) -> list[dict]:
    """One row per case: site, leaf, operand, and each preset's behaviour."""
    from .registry import PRESETS, _preset
    from ..core.tdx_errno import operand_name
    names = list(presets or PRESETS)
    sets = {n: _preset(n) for n in names}
    rows = []
    for site, leaf, status, why in CASES:
        row = {"site": site.value, "leaf": leaf, "operand": operand_name(status) or "-",
               "holder": why}
        for n, pset in sets.items():
            row[n] = (SPLIT_DEMOTE if leaf == "TDH.MEM.PAGE.DEMOTE" and pset.split_lock != "write"
                      else behaviour(pset.for_site(site), site, leaf, status))
        rows.append(row)
    rows.append({"site": "split", "leaf": "2 MB leaf", "operand": "-",
                 "holder": "how KVM splits (split_lock)",
                 **{n: SPLIT[p.split_lock] for n, p in sets.items()}})
    return rows


def markdown(rows: list[dict]) -> str:
    """The table as GitHub markdown, one column per preset."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["CASES", "behaviour", "preset_table", "markdown"]


if __name__ == "__main__":       # python -m workbench.policies.table > the docs' table
    print(markdown(preset_table()))
