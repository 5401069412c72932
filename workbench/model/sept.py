"""Layer 3 (model): the Secure EPT as the TDX module sees it.

Levels follow the module: 0 = 4 KB leaf, 1 = 2 MB, 2 = 1 GB, 3 = 512 GB. The level-3 table
(the root) always exists; every table below it appears when TDH.MEM.SEPT.ADD turns the
entry above it into a non-leaf. Entries are created FREE on first look.
"""
from __future__ import annotations

from enum import Enum

from ..core.tdx_errno import OPERAND_ID_RCX
from .locks import SeptEntryLock

PAGE_4K = 4096
LEVEL_4K, LEVEL_2M, LEVEL_1G, LEVEL_512G = 0, 1, 2, 3
ROOT_LEVEL = LEVEL_512G
LEVEL_SIZE = {lvl: PAGE_4K << (9 * lvl) for lvl in range(4)}
_SHIFT = tuple((LEVEL_SIZE[lvl].bit_length() - 1) for lvl in range(4))   # log2 of the size
_DOWN_TO = tuple(tuple(range(3, lvl, -1)) for lvl in range(4))   # levels a walk passes
LEVEL_NAMES = {LEVEL_4K: "4K", LEVEL_2M: "2M", LEVEL_1G: "1G", LEVEL_512G: "512G"}


class State(Enum):
    FREE = "free"            # not present
    NON_LEAF = "non_leaf"    # points to a table of the level below (SEPT.ADD)
    PENDING = "pending"      # leaf, AUGed, not yet accepted by the guest
    MAPPED = "mapped"        # leaf, accepted (or PAGE.ADDed at build time)
    BLOCKED = "blocked"      # leaf, RANGE.BLOCKed, waiting for TRACK and REMOVE


LEAF_STATES = (State.PENDING, State.MAPPED, State.BLOCKED)
_PRESENT, _NON_LEAF = (State.PENDING, State.MAPPED), State.NON_LEAF   # hot-path globals


class SeptEntry:
    __slots__ = ("level", "index", "state", "lock", "bepoch", "accept_counter")

    def __init__(self, level: int, index: int, hp_enabled: bool):
        self.level, self.index, self.state = level, index, State.FREE
        self.lock = SeptEntryLock(f"sept[{LEVEL_NAMES[level]}:{index:#x}]", OPERAND_ID_RCX,
                                  hp_enabled)
        self.bepoch = -1           # TD epoch at RANGE.BLOCK
        self.accept_counter = 0    # 4 KB pages a resumable 2 MB ACCEPT has zeroed

    @property
    def gpa(self) -> int:
        return self.index * LEVEL_SIZE[self.level]


class SecureEpt:
    """All S-EPT entries of one TD, keyed by (level, index)."""

    def __init__(self, host_priority: bool = True):
        self._entries: dict[tuple[int, int], SeptEntry] = {}
        self._hp = host_priority

    def entry(self, gpa: int, level: int) -> SeptEntry:
        key = (level, gpa >> _SHIFT[level])          # gpa // LEVEL_SIZE[level]
        e = self._entries.get(key)
        if e is None:
            e = self._entries[key] = SeptEntry(level, key[1], self._hp)
        return e

    def walk(self, gpa: int, level: int) -> SeptEntry | None:
        """The entry at ``level`` if the walk reaches it, else the entry that stops it:
        a FREE entry above (missing table) or a leaf above (a larger page in the way)."""
        get, non_leaf = self._entries.get, _NON_LEAF
        for lvl in _DOWN_TO[level]:
            above = get((lvl, gpa >> _SHIFT[lvl])) or self.entry(gpa, lvl)
            if above.state is not non_leaf:
                return above
        return get((level, gpa >> _SHIFT[level])) or self.entry(gpa, level)

    def missing_levels(self, gpa: int, level: int = LEVEL_4K) -> list[int]:
        """Levels whose entry must be SEPT.ADDed (top down) before ``level`` is reachable."""
        return [lvl for lvl in range(ROOT_LEVEL, level, -1)
                if self.entry(gpa, lvl).state is State.FREE]

    def would_fault(self, gpa: int) -> bool:
        """Would a guest access to ``gpa`` take an EPT violation (no present leaf)?"""
        present, non_leaf = _PRESENT, _NON_LEAF
        for lvl in range(ROOT_LEVEL, -1, -1):
            state = self.entry(gpa, lvl).state
            if state in present:
                return False
            if state is not non_leaf:
                return True
        return True

    def entries(self):
        return self._entries.values()

    def count(self, state: State, level: int = LEVEL_4K) -> int:
        return sum(1 for e in self._entries.values() if e.level == level and e.state is state)
