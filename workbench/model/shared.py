"""Layer 3 (model): what the vCPUs of a TD share on their host, beyond the locks the
module and KVM name (docs/model.md "Shared resources"). Each mechanism is a contended
cost: a vCPU alone never waits for it; with many vCPUs each one queues.

- Hot lock words: every try and every release of a module lock that the TD's CPUs share
  (the TDR and the PAMT entries above it, TDCS op_state, the S-EPT tree, the epoch), every
  atomic update of a shared counter (the TDR's child count, the epoch refcounts) and every
  acquisition of ``mmu_lock`` is an atomic read-modify-write of one cache line, in the
  order the module's source does them (docs/model.md §10.1). Each line is a FIFO server
  whose service is one cache-line transfer; a line last used by the same CPU is a hit and
  costs nothing.
- Host page allocation: the serialised part of backing a new private page (guest_memfd's
  filemap insert, the zone allocator) is a FIFO server per host.
- Memory bandwidth: one pool per host that the host's clear of each new page and the
  module's zeroing of each accepted page draw from (bytes / bandwidth of service).
- Guest locks: Linux's lazy accept takes ``zone->lock`` to pick a block and
  ``unaccepted_memory_lock`` around its bitmap (see ``workload.lazy_accept``).
- Idle vCPUs (``workload.idle``): wake on a tick, VP.ENTER, run the tick, HLT.

Servers are computed, not simulated as SimPy resources: for a FIFO single server with
known service times, a request's delay is ``max(now, free_at) - now + service``.
"""
from __future__ import annotations

from ..core.config import Calibration, SharedOptions
from ..core.tdx_errno import TDX_SUCCESS, status_class

PAGE_BYTES = 4096
# summary groups of hot lines: the TDR lock (its 4 KB PAMT entry), TDCS op_state, the
# S-EPT tree and epoch locks, the 1 GB and 2 MB PAMT entries above the TDR, the TDR's child
# count, the 1 GB and 2 MB PAMT entries above guest pages (one line per range), mmu_lock
HOT_LINES = ("TDR", "OP_STATE", "SEPT_TREE", "TD_EPOCH", "TDR_PAMT", "CHLDCNT", "PAMT",
             "mmu_lock")


class Server:
    """One FIFO single server: a hot cache line, a lock's serialised section, a pool.

    ``access(now, cpu)`` books the next service and returns (delay, wait): the time until
    this request is served, and the part of it spent queueing behind others. With
    ``affinity`` a request from the CPU that was served last, on an idle server, is a
    hit (the line is still in its cache) and costs nothing."""

    __slots__ = ("name", "service_us", "affinity", "free_at", "last", "uses", "delay_us",
                 "wait_us", "group")

    def __init__(self, name: str, service_us: float, affinity: bool = False):
        self.name, self.service_us, self.affinity = name, service_us, affinity
        self.free_at, self.last = 0.0, None
        self.uses, self.delay_us, self.wait_us = 0, 0.0, 0.0
        self.group = name

    def access(self, now: float, cpu, service_us: float | None = None) -> tuple[float, float]:
        self.uses += 1
        if self.affinity and cpu == self.last and self.free_at <= now:
            return 0.0, 0.0
        s = self.service_us if service_us is None else service_us
        start = max(now, self.free_at)
        self.free_at, self.last = start + s, cpu
        delay, wait = self.free_at - now, start - now
        self.delay_us += delay
        self.wait_us += wait
        return delay, wait


def _releaser(owner, due: list):
    def release(_ev):
        for lock, mode in due:
            lock.release(owner, mode)
    return release


def cpu_of(owner: str) -> str:
    """The host CPU an actor runs on: a zap runs on the VMM thread of its vCPU."""
    return owner.removeprefix("zap:")


class SharedResources:
    """The shared resources of one host (one TD per host in this model)."""

    def __init__(self, env, cal: Calibration, opts: SharedOptions):
        self.env, self.cal, self.opts = env, cal, opts
        self.vcpus: dict = {}              # name -> td.Vcpu, for the time breakdown
        self.lines: dict[int, Server] = {}  # id(KVM's lock) -> its cache line
        self.all_lines: list[Server] = []  # every hot line, the module's words included
        self.alloc = Server("host_alloc", cal.host_alloc_shared_us)
        self.bandwidth = Server("mem_bw", 0.0)
        us_per_byte = 1e-3 / cal.mem_bandwidth_gbps    # 1 GB/s = 1e3 bytes/us
        self.us_per_byte = us_per_byte
        self.zone_lock = Server("zone_lock", cal.guest_zone_lock_us)
        self.bitmap_lock = Server("unaccepted_memory_lock", cal.guest_bitmap_lock_us)
        self.backed: set = set()           # 4 KB GPAs with a host page (guest_memfd)

    def attach(self, module, kvm) -> None:
        """Give the module and KVM the mechanisms that are switched on."""
        if self.opts.on("hot_lines"):
            self.lines[id(kvm.mmu_lock)] = self.line("mmu_lock")
            module.attach_hot(self)
        if self.opts.on("mem_bandwidth"):
            module.bandwidth = self

    # ------------------------------------------------------------ time accounting
    def _wait(self, owner: str, state: str, delay: float):
        """Spend ``delay`` in ``state`` (the vCPU's breakdown), then go back."""
        if delay <= 0.0:
            return
        v = self.vcpus.get(cpu_of(owner))
        if v is None:
            yield self.env.timeout(delay)
            return
        prev = v.state
        v.set_state(state)
        yield self.env.timeout(delay)
        v.set_state(prev)

    # ------------------------------------------------------------ hot lock words
    def line(self, name: str, group: str | None = None) -> Server:
        """A new hot line (one per word; ``group`` names it in the summary)."""
        s = Server(name, self.cal.cacheline_transfer_us, True)
        s.group = group or name
        self.all_lines.append(s)
        return s

    def _hot_wait(self, cpu: str, delay: float):
        """``_wait`` in state hot_line, written in place (the hottest wait)."""
        env = self.env
        v = self.vcpus.get(cpu)
        if v is None:
            yield env.timeout(delay)
        else:
            prev = v.state
            v.set_state("hot_line")
            yield env.timeout(delay)
            v.set_state(prev)

    def pay(self, owner: str, delay: float):
        """Wait out the transfers of releases booked by :meth:`let_go`."""
        if delay > 0.0:
            yield from self._hot_wait(cpu_of(owner), delay)

    def take(self, module, owner: str, locks, side, operand=None):
        """``TdxModule._take`` in the module's order, each try judged when its word is
        reached: the transfer of a lock's line is waited for (state ``hot_line``) before
        the try, so a call holds only what it took before, never while it queues for a
        later line. A :class:`~.locks.Word` (mode None) is an access with nothing to judge;
        its transfer is paid with the next try's. Returns ``(status, taken, owed)``:
        ``owed`` is the time the releases after a failed try still take (:meth:`pay`).

        A release is an access of its own (:meth:`let_go`): the lock is free only once the
        release's transfer is done, so a try that reaches the line first, while the holder's
        release queues behind it, sees the lock held (a hold shorter than one transfer, the
        epoch lock's ``epoch_hold_us``, stays visible).

        The accesses after a try are booked after the wait before it, when the CPU issues
        them: booking a call's whole chain at once would reserve later lines ahead of time
        and hold them idle while others queue (at 32 vCPUs a third fewer calls). A word's
        transfer is the exception: it is booked right after the previous access, ahead of
        time, and paid in one wait with the next lock's (docs/model.md §10.1)."""
        env, cpu = self.env, cpu_of(owner)
        v = self.vcpus.get(cpu)
        pending = 0.0
        n = 0
        for lock, mode in locks:
            line = lock.line
            if line is not None:
                pending += line.access(env._now + pending, cpu)[0]
            if mode is not None:
                if pending > 0.0:           # _hot_wait, in place (the hottest wait)
                    if v is None:
                        yield env.timeout(pending)
                    else:
                        prev = v.state
                        v.set_state("hot_line")
                        yield env.timeout(pending)
                        v.set_state(prev)
                    pending = 0.0
                st = lock.try_acquire(owner, mode, side)
                if st:
                    owed = self.let_go(owner, locks[n - 1::-1]) if n else 0.0
                    if operand is not None and lock is module.tdr:
                        st = status_class(st) | operand   # explicit TDR: the register's id
                    return st, [], owed
            n += 1
        if pending > 0.0:
            yield from self._hot_wait(cpu, pending)
        return TDX_SUCCESS, locks, 0.0

    def let_go(self, owner: str, seq, start: float = 0.0) -> float:
        """Release ``seq`` in its order (words: one access each), from ``start`` on. Each
        release books its line after the previous one and takes effect when its transfer
        is done, without the caller waiting for it here; returns the time the caller owes
        (:meth:`pay`), ``start`` included."""
        env, cpu = self.env, cpu_of(owner)
        now = env._now
        t = now + start
        due, due_t = None, now
        for lock, mode in seq:
            line = lock.line
            if line is not None:
                t += line.access(t, cpu)[0]
            if mode is None:
                continue
            if t == now or not lock.contended:
                lock.release(owner, mode)
            else:
                if due is None or t != due_t:
                    due, due_t = [], t
                    env.timeout(t - now).callbacks.append(_releaser(owner, due))
                due.append((lock, mode))
        return t - now

    def later(self, delay: float, fn) -> None:
        """Run ``fn()`` after ``delay`` (an update that takes effect when its transfer is
        done), at once if ``delay`` is 0."""
        if delay > 0.0:
            self.env.timeout(delay).callbacks.append(lambda _ev: fn())
        else:
            fn()

    def touch_line(self, owner: str, lock):
        """One atomic on ``lock``'s word (mmu_lock's read or write acquisition)."""
        line = self.lines.get(id(lock))
        if line is not None:
            cpu = cpu_of(owner)
            delay, _ = line.access(self.env.now, cpu)
            yield from self._wait(owner, "hot_line", delay)

    # ------------------------------------------------------------ pages
    def zero(self, owner: str, nbytes: int):
        """Writing ``nbytes`` of page data: wait for the host's bandwidth pool (the
        writing itself is in the caller's own duration)."""
        _, wait = self.bandwidth.access(self.env.now, None, nbytes * self.us_per_byte)
        yield from self._wait(owner, "mem_bw", wait)

    def back_page(self, owner: str, gpa: int, size: int = PAGE_BYTES):
        """A private fault on a GPA without a host page: allocate (serialised part, once
        per folio) and clear it (bandwidth: ``size`` bytes, 2 MB for a huge folio). Only
        the waits are added; once per page until it is removed (:meth:`released`)."""
        page = (gpa & ~(size - 1)) >> 12
        if page in self.backed:
            return
        self.backed.update(range(page, page + size // PAGE_BYTES))
        if self.opts.on("page_alloc"):
            _, wait = self.alloc.access(self.env.now, None)
            yield from self._wait(owner, "host_alloc", wait)
        if self.opts.on("mem_bandwidth"):
            yield from self.zero(owner, size)

    def released(self, gpa: int) -> None:
        """The page was removed from the TD; QEMU discards its backing on conversion."""
        self.backed.discard(gpa >> 12)

    # ------------------------------------------------------------ guest locks
    def guest_lock(self, owner: str, which: str):
        """One hold of a guest spinlock (queued: qspinlock is FIFO once contended)."""
        server = self.zone_lock if which == "zone" else self.bitmap_lock
        delay, _ = server.access(self.env.now, None)
        yield from self._wait(owner, "guest_lock", delay)

    # ------------------------------------------------------------ report
    def summary(self) -> dict:
        """Per line and per mechanism: the time lost (us, summed over the actors)."""
        row = {f"hot_line_{n}_us": 0.0 for n in HOT_LINES}
        for s in self.all_lines:
            row[f"hot_line_{s.group}_us"] += s.delay_us
        row["hot_line_us"] = sum(s.delay_us for s in self.all_lines)
        row["host_alloc_wait_us"] = self.alloc.wait_us
        row["mem_bw_wait_us"] = self.bandwidth.wait_us
        row["guest_lock_us"] = self.zone_lock.delay_us + self.bitmap_lock.delay_us
        return row


MECHANISMS = ("hot_lines", "page_alloc", "mem_bandwidth", "idle_exits", "guest_locks")
ALL_OFF = {f"shared.{m}": False for m in MECHANISMS}

__all__ = ["Server", "SharedResources", "MECHANISMS", "ALL_OFF", "HOT_LINES"]
