"""Layer 3 (model): the Intel TDX module: SEAMCALLs, TDCALLs, the epoch, zero-step and
HOST_PRIORITY, as domain.md §1-4 and §9 describe them (TDX module 1.5.01). The leaves live in seamcalls.py (host
TDH.MEM.*), vp.py (TDH.VP.ENTER, exits, zero-step) and tdcalls.py (the guest's TDCALLs).

Every call is a generator run inside a SimPy process: ``status = yield from module.x(...)``.
It takes the locks of domain.md §2 in order with try-locks; on the first failure it releases
what it took and returns BUSY with the lock's operand; otherwise it holds them for its
duration and returns success or the call's real error. Every attempt is one row of the
``calls`` table.
"""
from __future__ import annotations

import simpy

from ..core.config import Calibration, ModuleOptions
from ..core.errors import ConfigError
from ..core.records import Overlap, Recorder
from ..core.rng import Draws
from ..core.tdx_errno import (
    OPERAND_ID_OP_STATE, OPERAND_ID_RCX, OPERAND_ID_SEPT, OPERAND_ID_TD_EPOCH,
    OPERAND_ID_TDR, TDX_EPT_ENTRY_NOT_FREE, TDX_EPT_WALK_FAILED, TDX_SUCCESS, busy, status_class,
)
from .clock import durations
from .locks import Mode, SharexHpLock, SharexLock, Side, Word
from .versions import VERSIONS
from .seamcalls import MemSeamcalls
from .demote import HugeSeamcalls
from .tdcalls import MAX_ACCEPT_LEVEL, GuestTdcalls
from .vp import VpEntry
from .sept import SecureEpt, State
from .fastenum import members
from .tdvps import TdVcpu

State = members(State)      # plain attribute reads on the hot path (fastenum.py)

SHARED, EXCLUSIVE = Mode.SHARED, Mode.EXCLUSIVE
HOST, GUEST = Side.HOST, Side.GUEST


_LEAF_NAMES: dict = {}      # a leaf's function -> its name (asked for on every fault)


def leaf_name(call) -> str:
    """The spec's name of a module call from its method: the methods are named after the
    leaves (``tdh_mem_page_aug`` -> ``TDH.MEM.PAGE.AUG``)."""
    f = getattr(call, "__func__", call)
    name = _LEAF_NAMES.get(f)
    if name is None:
        name = _LEAF_NAMES[f] = f.__name__.upper().replace("_", ".")
    return name


class TdxModule(MemSeamcalls, HugeSeamcalls, VpEntry, GuestTdcalls):
    """One TD's view of the TDX module."""

    # the host's shared resources (shared.py), set by the TD when switched on: hot lock
    # words before each try-lock, the bandwidth pool for page zeroing
    hot = None
    bandwidth = None

    def __init__(self, env: simpy.Environment, cal: Calibration, opts: ModuleOptions,
                 recorder: Recorder, rng):
        self.env, self.cal, self.opts, self.rec = env, cal, opts, recorder
        self.sept = SecureEpt(opts.host_priority)
        self.tdr = SharexHpLock("TDR", OPERAND_ID_TDR, opts.host_priority)
        # TDCS op_state: every TDH.MEM.* and VP.ENTER takes it shared
        # (check_state_map_tdcs_and_lock); no call modelled takes it exclusive, so it
        # decides nothing and is in the lock lists only with the hot lines on (its word)
        self.op_state = SharexHpLock("OP_STATE", OPERAND_ID_OP_STATE, opts.host_priority)
        # pamt_walk of the TDR page takes its 1 GB and 2 MB PAMT entries shared first
        self.tdr_pamt = (Word("PAMT_1G[TDR]"), Word("PAMT_2M[TDR]"))
        self.chldcnt = Word("CHLDCNT")          # tdr->management_fields.chldcnt
        self.pamt_1g: dict[int, Word] = {}      # 1 GB range -> its PAMT entry (hot lines)
        self._tdr_sh = [(self.tdr, SHARED)]     # the explicit TDR, as attach_hot books it
        self.version = VERSIONS[opts.version]
        if opts.dynamic_pamt and not self.version.dynamic_pamt:
            raise ConfigError(f"module.dynamic_pamt: module {opts.version} has no "
                              "TDH.PHYMEM.PAMT.ADD (Dynamic PAMT arrives in 1.5.16)")
        self.tree_lock = (SharexHpLock("SEPT_TREE", OPERAND_ID_SEPT, opts.host_priority)
                          if self.version.tree_lock_hp else SharexLock("SEPT_TREE", OPERAND_ID_SEPT))
        self._internal = Draws(rng, "random") if opts.busy_without_vcpus else None
        self.epoch_lock = SharexLock("TD_EPOCH", OPERAND_ID_TD_EPOCH)
        self.epoch = 0
        self.epoch_refcount = [0, 0]
        self.vcpus: dict[str, TdVcpu] = {}
        self.duration = durations(cal, cal.jitter_cv, rng)
        # a: the epoch lock has a shared holder (a VP.ENTER); b: a zap holds mmu_lock for
        # write (set by KVM), the only time a TRACK can be issued
        self.epoch_occupancy = Overlap()
        self._init_huge()                # demote.py: PAMT state (domain §10.6)

    # ---------------------------------------------------------------- plumbing
    def attach_hot(self, hot) -> None:
        """The host's hot lines are on: give each shared word its line and book every
        word the source touches (docs/model.md §10.1)."""
        self.hot = hot
        for lock in (self.tdr, self.op_state, self.tree_lock, self.epoch_lock):
            lock.line = hot.line(lock.name)
        # shared in every runtime call; only build-time PAGE.ADD takes the TDR exclusive
        self.tdr.contended = self.op_state.contended = False
        for w in self.tdr_pamt:
            w.line = hot.line(w.name, "TDR_PAMT")
        self.chldcnt.line = hot.line("CHLDCNT")
        for lk in self.pamt_locks.values():
            lk.line = hot.line(lk.name, "PAMT")
        # check_lock_and_map_explicit_tdr (pamt_walk: 1 GB, 2 MB shared, the TDR's 4 KB
        # entry), then check_state_map_tdcs_and_lock (op_state shared)
        self._tdr_sh = [(self.tdr_pamt[0], None), (self.tdr_pamt[1], None),
                        (self.tdr, SHARED), (self.op_state, SHARED)]

    def add_vcpu(self, name: str) -> TdVcpu:
        v = self.vcpus[name] = TdVcpu(name, self.opts.host_priority)
        return v

    def _take(self, owner, locks, side: Side, operand: int | None = None):
        """Try each (lock, mode) in order. Returns (status, taken)."""
        n = 0
        for lock, mode in locks:
            st = lock.try_acquire(owner, mode, side)
            if st:
                self._release(owner, locks[:n])
                if operand is not None and lock is self.tdr:
                    st = status_class(st) | operand   # explicit TDR: the register's id
                return st, []
            n += 1
        return TDX_SUCCESS, list(locks)

    @staticmethod
    def _release(owner, taken) -> None:
        for lock, mode in reversed(taken):
            lock.release(owner, mode)

    def _seamcall(self, leaf, caller, gpa, plan, tdr_operand, xadd=()):
        """The shape every TDH.MEM.* call shares: SEAMCALL entry (no lock held), then
        ``plan()`` walks the S-EPT as it is now and gives (locks, check, locked cost,
        effect); try-locks, legality check, the locked section, the effect, the words of
        ``xadd`` updated on success (the TDR's child count), the releases, SEAMRET."""
        env, t0, cal = self.env, self.env.now, self.cal
        yield env.timeout(self.duration(cal.seamcall_entry_us))
        locks, check, cost_us, effect = plan()
        hot = self.hot
        if hot:
            st, taken, owed = yield from hot.take(self, caller, locks, HOST, tdr_operand)
        else:
            (st, taken), owed = self._take(caller, locks, HOST, tdr_operand), 0.0
        if not st and self._internal and self._internal.next() < self.opts.busy_without_vcpus:
            st = busy(OPERAND_ID_OP_STATE)     # what-if: an internal holder, no vCPU needed
        if not st:
            st = check()
        if not st:
            yield env.timeout(self.duration(cost_us))
            effect()
        if hot:
            owed += hot.let_go(caller, (list(xadd) if not st else []) + taken[::-1])
            if owed:
                yield from hot.pay(caller, owed)
        else:
            self._release(caller, taken)
        yield env.timeout(self.duration(cal.seamcall_exit_us))
        self.rec.call(t0, env.now, leaf, caller, gpa, st)
        return st

    @staticmethod
    def _must_be_free(e, err: int) -> int:
        """Legality of calls that create an entry (SEPT.ADD, AUG, PAGE.ADD)."""
        return err or (TDX_SUCCESS if e.state is State.FREE else TDX_EPT_ENTRY_NOT_FREE | OPERAND_ID_RCX)

    def _walk_to(self, gpa: int, level: int):
        """Legality of a host call on the entry at ``level``: (entry, error status)."""
        e = self.sept.walk(gpa, level)
        if e.level != level:
            return None, TDX_EPT_WALK_FAILED | OPERAND_ID_RCX
        return e, TDX_SUCCESS

    # ---------------------------------------------------------------- introspection
    def locks(self):
        """Every lock of the TD (for invariant checks)."""
        yield self.tdr
        yield self.op_state
        yield self.tree_lock
        yield self.epoch_lock
        for v in self.vcpus.values():
            yield v.tdvpr
        for e in self.sept.entries():
            yield e.lock
        yield from self.pamt_locks.values()


__all__ = ["TdxModule", "TdVcpu", "MAX_ACCEPT_LEVEL", "leaf_name"]
