"""Layer 3 (model): what differs between TDX module versions, as data (domain.md §10.1-10.2).

The module model reads this table once; no ``if version == ...`` elsewhere. Each row cites
the source it follows. Everything not listed here is the same in every version the model
knows (zero-step threshold 6, HP_LOCK_TIMEOUT, the other locks).
"""
from __future__ import annotations

from dataclasses import dataclass

from .locks import Mode


@dataclass(frozen=True)
class ModuleVersion:
    name: str
    # how td_entry_stepping_filter() takes secure_ept_lock for an armed vCPU's VP.ENTER
    zero_step_tree: Mode
    # secure_ept_lock is a sharex_hp lock (a failed host try sets HOST_PRIORITY; for
    # host-only contention it decides like the plain lock, domain §10.2)
    tree_lock_hp: bool
    source: str
    # TDX_FEATURES0 bit 51, ENHANCED_DEMOTE_INTERRUPTIBILITY (domain §10.5: modules >= 1.5.28):
    # without it DEMOTE gives up with TDX_INTERRUPTED_RESTARTABLE whenever a host
    # interrupt is pending (1.5.08 tdh_mem_page_demote.c: check_host_interrupt_and_hp_bit
    # with is_resumeable false), without a bound; KVM's huge-page series maps 2 MB private
    # pages only on a module that reports the bit
    enhanced_demote: bool = False


_OLD = ("intel/tdx-module tdx_1.5 (TDX_1.5.01) src/td_transitions/td_exit_stepping.c: "
        "acquire_sharex_lock_ex(&...secure_ept_lock); domain §10.1 for 1.5.01-1.5.06 and "
        "2.0.01-2.0.04")
_NEW = ("the public copy of module 1.5.08 (murrowow/tdx-concurrency) td_exit_stepping.c: "
        "acquire_sharex_lock_hp_sh(&...secure_ept_lock, false), the comment above it still "
        "says 'exclusive'; helpers.c walks take the tree with acquire_sharex_lock_hp; "
        "domain §10.1 for 1.5.08 and 2.0.12")

VERSIONS = {
    "1.5.01": ModuleVersion("1.5.01", Mode.EXCLUSIVE, False, _OLD),
    "1.5.06": ModuleVersion("1.5.06", Mode.EXCLUSIVE, False, _OLD),
    "2.0.01": ModuleVersion("2.0.01", Mode.EXCLUSIVE, False, _OLD),
    "2.0.04": ModuleVersion("2.0.04", Mode.EXCLUSIVE, False, _OLD),
    "1.5.08": ModuleVersion("1.5.08", Mode.SHARED, True, _NEW),
    "2.0.12": ModuleVersion("2.0.12", Mode.SHARED, True, _NEW),
    # zero-step as 1.5.08; the feature bit as domain §10.5 states it (no public source drop
    # of 1.5.28 to check): the first version on which KVM's series enables huge pages
    "1.5.28": ModuleVersion("1.5.28", Mode.SHARED, True, _NEW + "; TDX_FEATURES0 bit 51 "
                            "ENHANCED_DEMOTE_INTERRUPTIBILITY from 1.5.28 (domain §10.5)", True),
}
DEFAULT_VERSION = "1.5.01"   # the version domain.md's facts and this model's base follow

__all__ = ["ModuleVersion", "VERSIONS", "DEFAULT_VERSION"]
