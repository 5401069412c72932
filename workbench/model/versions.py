"""Layer 3 (model): what differs between TDX module versions, as data (domain.md §10.1-10.2).

The module model reads this table once; no ``if version == ...`` elsewhere. Each row says
whether it was checked in the version's source or inferred, and from what. The sources are
the per-version commits of murrowow/tdx-concurrency (one commit per public source drop:
1.5.01 c6f9877, 1.5.06 7d7d51c, 1.5.08 301ebc6, 1.5.16 b2be91c, 1.5.20 e2c6b0a, 1.5.25
c71d4f6) and intel/tdx-module TDX_1.5.01. No 2.0.x source and no 1.5.28 source is public
here. Everything not listed is the same in every version the model knows (zero-step
threshold 6, HP_LOCK_TIMEOUT, the locks of docs/model.md §10.1 and their order).
"""
from __future__ import annotations

from dataclasses import dataclass

from .locks import Mode


@dataclass(frozen=True)
class ModuleVersion:
    name: str
    # how td_entry_stepping_filter() takes secure_ept_lock for an armed vCPU's VP.ENTER
    zero_step_tree: Mode
    # secure_ept_lock is a sharex_hp_lock_t (td_control_structures.h): a failed host try
    # sets HOST_PRIORITY (for host-only contention it decides like the plain lock, domain
    # §10.2), and DEMOTE's check_host_interrupt_and_hp_bit returns TDX_INTERRUPTED_BUSY
    # while that bit is set; before, DEMOTE checks is_interrupt_pending_host_side() only
    tree_lock_hp: bool
    # "checked in source: ..." or "inferred, from ..."
    source: str
    # TDX_FEATURES0 bit 51, ENHANCED_DEMOTE_INTERRUPTIBILITY (domain §10.5: modules >= 1.5.28):
    # without it DEMOTE gives up with TDX_INTERRUPTED_RESTARTABLE whenever a host
    # interrupt is pending, without a bound; KVM's huge-page series maps 2 MB private pages
    # only on a module that reports the bit
    enhanced_demote: bool = False
    # TDH.PHYMEM.PAMT.ADD/REMOVE exist (TDX_FEATURES0 bit 36, dynamic_pamt)
    dynamic_pamt: bool = False


_SRC = "murrowow/tdx-concurrency {c} ({v})"
_EX = ("checked in source: {src} src/td_transitions/td_exit_stepping.c "
       "td_entry_stepping_filter: acquire_sharex_lock_ex(&...secure_ept_lock); "
       "td_control_structures.h: sharex_lock_t secure_ept_lock")
_SH = ("checked in source: {src} td_exit_stepping.c td_entry_stepping_filter: "
       "acquire_sharex_lock_hp_sh(&...secure_ept_lock, false) (the comment above it still "
       "says 'exclusive'); td_control_structures.h: sharex_hp_lock_t secure_ept_lock")
_DPAMT = "; src/vmm_dispatcher/api_calls/tdh_phymem_pamt_add.c present (TDX_FEATURES0 bit 36)"


def _checked(template: str, commit: str, version: str, dpamt: bool = False) -> str:
    return template.format(src=_SRC.format(c=commit, v=version)) + (_DPAMT if dpamt else "")


EX, SH = Mode.EXCLUSIVE, Mode.SHARED
VERSIONS = {
    "1.5.01": ModuleVersion("1.5.01", EX, False, _checked(_EX, "c6f9877", "1.5.01")
                            + "; and intel/tdx-module TDX_1.5.01"),
    "1.5.06": ModuleVersion("1.5.06", EX, False, _checked(_EX, "7d7d51c", "1.5.06")),
    "1.5.08": ModuleVersion("1.5.08", EX, False, _checked(_EX, "301ebc6", "1.5.08")),
    "1.5.16": ModuleVersion("1.5.16", EX, False, _checked(_EX, "b2be91c", "1.5.16", True),
                            dynamic_pamt=True),
    "1.5.20": ModuleVersion("1.5.20", SH, True, _checked(_SH, "e2c6b0a", "1.5.20", True),
                            dynamic_pamt=True),
    "1.5.25": ModuleVersion("1.5.25", SH, True, _checked(_SH, "c71d4f6", "1.5.25", True)
                            + "; TDX_FEATURES0 ends at bit 47: no ENHANCED_DEMOTE_"
                            "INTERRUPTIBILITY", dynamic_pamt=True),
    "1.5.28": ModuleVersion("1.5.28", SH, True, "inferred, from 1.5.25 (c71d4f6) for the "
                            "locks and Dynamic PAMT, and from domain §10.5 (KVM's huge-page "
                            "series) for TDX_FEATURES0 bit 51 ENHANCED_DEMOTE_"
                            "INTERRUPTIBILITY from 1.5.28; no 1.5.28 source is public",
                            enhanced_demote=True, dynamic_pamt=True),
    "2.0.01": ModuleVersion("2.0.01", EX, False, "inferred, from domain §10.1 (2.0.01-2.0.04 "
                            "take the tree exclusive, as 1.5.01-1.5.16); no 2.0.x source is "
                            "public here"),
    "2.0.04": ModuleVersion("2.0.04", EX, False, "inferred, from domain §10.1 as 2.0.01; "
                            "no 2.0.x source is public here"),
    "2.0.12": ModuleVersion("2.0.12", SH, True, "inferred, from domain §10.1 (2.0.12 takes "
                            "the tree shared with acquire_sharex_lock_hp_sh, as 1.5.20-1.5.25); "
                            "no 2.0.x source is public here, so Dynamic PAMT is not assumed"),
}
DEFAULT_VERSION = "1.5.01"   # the version domain.md's facts and this model's base follow

__all__ = ["ModuleVersion", "VERSIONS", "DEFAULT_VERSION"]
