"""Layer 3 (model): the TDX module's try-locks (MOD src/common/helpers/tdx_locks.h).

No lock here ever queues: ``try_acquire`` returns ``TDX_SUCCESS`` at once or a BUSY status
with the lock's operand id. The three kinds differ only in how a try is judged.
"""
from __future__ import annotations

from enum import Enum

from ..core.tdx_errno import TDX_SUCCESS, busy


class Mode(Enum):
    SHARED = "shared"
    EXCLUSIVE = "exclusive"


class Side(Enum):
    HOST = "host"    # SEAMCALL from the VMM
    GUEST = "guest"  # TDCALL from a TD vCPU


# Enum members as plain globals for the hot methods below: on Python 3.11 ``Mode.SHARED``
# goes through EnumType.__getattr__ (about 5x a global lookup), on every try and release.
_EXCLUSIVE, _HOST, _GUEST = Mode.EXCLUSIVE, Side.HOST, Side.GUEST


class SharexLock:
    """``sharex_lock``: reader/writer, no host priority (S-EPT tree, TD epoch).

    Unfair on purpose, as in the module: an exclusive try is a compare-and-swap from FREE, so
    any shared holder defeats it; a shared try fails only while the exclusive bit is set.
    """

    # ``line``: the cache line of the lock's word when the host's hot lines are modelled
    # (shared.py), else None. ``contended``: False for a lock that no call takes exclusive
    # while vCPUs run, so that a shared try cannot fail and no one can tell when a hold
    # starts or ends (shared.py judges and releases it at once, paying only its line)
    __slots__ = ("name", "operand", "exclusive_owner", "shared_owners", "line", "contended")

    def __init__(self, name: str, operand: int):
        self.name, self.operand = name, operand
        self.exclusive_owner = None
        self.shared_owners: dict = {}
        self.line = None
        self.contended = True

    def is_free(self) -> bool:
        return self.exclusive_owner is None and not self.shared_owners

    def try_acquire(self, owner, mode: Mode = Mode.EXCLUSIVE, side: Side = Side.HOST) -> int:
        if self.exclusive_owner is not None:
            return self.refuse(side)
        if mode is _EXCLUSIVE:
            if self.shared_owners:
                return self.refuse(side)
            self.exclusive_owner = owner
        else:
            self.shared_owners[owner] = self.shared_owners.get(owner, 0) + 1
        return TDX_SUCCESS        # granted(): nothing to do without host priority

    def refuse(self, side: Side) -> int:
        return busy(self.operand)

    def granted(self, side: Side) -> int:
        return TDX_SUCCESS

    def release(self, owner, mode: Mode = Mode.EXCLUSIVE) -> None:
        if mode is _EXCLUSIVE:
            assert self.exclusive_owner == owner, f"{self.name}: {owner} releases a lock it lacks"
            self.exclusive_owner = None
            return
        n = self.shared_owners.get(owner, 0)
        assert n > 0, f"{self.name}: {owner} releases a shared hold it lacks"
        if n == 1:
            del self.shared_owners[owner]
        else:
            self.shared_owners[owner] = n - 1


class SharexHpLock(SharexLock):
    """``sharex_hp_lock``: reader/writer plus a HOST_PRIORITY flag (TDR, TDVPR, op_state).

    A failed host try sets HP; while HP is set every guest try fails with
    BUSY_HOST_PRIORITY; the host's next success clears it.
    """

    __slots__ = ("host_priority", "hp_enabled")

    def __init__(self, name: str, operand: int, hp_enabled: bool = True):
        super().__init__(name, operand)
        self.host_priority, self.hp_enabled = False, hp_enabled

    def try_acquire(self, owner, mode: Mode = Mode.EXCLUSIVE, side: Side = Side.HOST) -> int:
        if side is _GUEST and self.host_priority:
            return busy(self.operand, host_priority=True)
        # SharexLock.try_acquire and granted, in place (a try on every call's TDR)
        if self.exclusive_owner is not None:
            return self.refuse(side)
        if mode is _EXCLUSIVE:
            if self.shared_owners:
                return self.refuse(side)
            self.exclusive_owner = owner
        else:
            shared = self.shared_owners
            shared[owner] = shared.get(owner, 0) + 1
        if side is _HOST:
            self.host_priority = False
        return TDX_SUCCESS

    def refuse(self, side: Side) -> int:
        if side is _HOST and self.hp_enabled:
            self.host_priority = True
        return busy(self.operand)

    def granted(self, side: Side) -> int:
        if side is _HOST:
            self.host_priority = False
        return TDX_SUCCESS


class SeptEntryLock(SharexHpLock):
    """The per-S-EPT-entry lock: bit 11 (TDEL) of the entry, bit 52 (TDHP) its host priority.

    Exclusive only. The host never sees the _HOST_PRIORITY code: a failed host try sets TDHP
    and returns plain BUSY. A guest try that wins the bit while TDHP is set drops it at once
    and gets BUSY_HOST_PRIORITY; a guest try that loses gets plain BUSY.
    Entry contention is reported with operand RCX (the GPA's register), not 0x93.
    """

    __slots__ = ()

    def try_acquire(self, owner, mode: Mode = Mode.EXCLUSIVE, side: Side = Side.HOST) -> int:
        if self.exclusive_owner is not None:
            return self.refuse(side)
        if side is _GUEST and self.host_priority:
            return busy(self.operand, host_priority=True)  # won the bit, dropped it at once
        self.exclusive_owner = owner
        if side is _HOST:                                   # granted(), in place
            self.host_priority = False
        return TDX_SUCCESS


class Word:
    """A word of module metadata that every try or update pulls into the CPU's cache but
    that decides nothing in this model: the child count of the TDR
    (``_lock_xadd_64b(&tdr->management_fields.chldcnt)``) and the 1 GB and 2 MB PAMT entries
    that ``pamt_walk`` takes shared on the way to a 4 KB entry (no call here takes them
    exclusive). In a call's lock list it stands with mode None; it matters only with the
    host's hot lines on (shared.py), which give it a line."""

    __slots__ = ("name", "line")

    def __init__(self, name: str):
        self.name, self.line = name, None
