"""Layer 3 (model): a mirror of Intel's ``tdx_upm_parallel_test`` (domain.md §10.9).

Guest side, four pairs of vCPUs: ``upm_accept`` accepts private pages of its test region
again and again (the selftest's guest: SUCCESS and PAGE_ALREADY_ACCEPTED pass, BUSY is
retried, anything else is a GUEST_ASSERT); ``upm_touch`` touches private pages without
accepting them (memory accepted at build time); ``upm_shared`` converts 4 KB pages to
shared and back (MapGPA) and uses them; ``upm_mmio`` does the same with an MMIO access
(a TDVMCALL exit and re-entry) between two conversions.

Host side (``host.upm_period_us`` > 0), one SimPy process each, every period (jittered):
flip a 4 KB page of the test regions to shared, flip one back to private (both
KVM_SET_MEMORY_ATTRIBUTES), punch a hole in one (guest_memfd PUNCH_HOLE: an mmu_invalidate
and a zap of its private leaf, attributes unchanged), MADV_DONTNEED on shared memory and
delete/re-add a memslot (both an mmu_invalidate under the write mmu_lock with a remote TLB
flush; neither slot holds private pages). A failed ioctl is the selftest's TEST_ASSERT.

The oracle is the selftest's: no VM bug, no system event, no guest assert, i.e. the TD
ran to the horizon (``td_failed`` = 0). The selftest's source is not in this project's
library; the split of regions between guest and host threads is this model's reading of
domain §10.9 (docs/model.md §5.3).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.rng import stream
from ..core.tdx_errno import TDX_PAGE_ALREADY_ACCEPTED, TDX_SUCCESS, status_class, tdx_operand_busy
from .guest import Accept, Compute, Exit, ExitKind, GuestKernel, Panic, Touch
from .sept import PAGE_4K
from .workload import converter

RIP_UPM = 0x60_0000
RIP_MMIO = 0xFFFF_FFFF_8100_5000


@dataclass(slots=True)
class Mmio:
    """An MMIO access: a TDVMCALL that KVM handles, an exit and a re-entry."""
    rip: int = RIP_MMIO


def attach(guest) -> None:
    """Teach a :class:`GuestCpu` the MMIO instruction (a trap-like exit: done, then out)."""
    def run(ins):
        yield guest.env.timeout(guest.touch_us)
        guest.instr = None
        return Exit(ExitKind.INTERRUPT, ins.rip)
    guest._execute[Mmio] = run


def _think(rng, us: float):
    return Compute(float(rng.exponential(us)) if us else 0.0)


def _pages(g: GuestKernel, me: str) -> tuple[int, int]:
    start, size = g.areas[me]
    return start, size // PAGE_4K


def upm_accept(g: GuestKernel, group, rng, me: str):
    start, n = _pages(g, me)
    while True:
        gpa = start + int(rng.integers(n)) * PAGE_4K
        while True:
            st = yield Accept(gpa, 0)
            if tdx_operand_busy(st):
                yield Compute(1.0)
                continue
            break
        if st != TDX_SUCCESS and status_class(st) != TDX_PAGE_ALREADY_ACCEPTED:
            yield Panic(f"GUEST_ASSERT: accept {gpa:#x} returned {st:#x}")
            return
        yield _think(rng, group.think_us)


def upm_touch(g: GuestKernel, group, rng, me: str):
    start, n = _pages(g, me)
    while True:
        gpa = start + int(rng.integers(n)) * PAGE_4K
        yield Touch(gpa, rip=RIP_UPM + gpa // PAGE_4K * 16)
        yield _think(rng, group.think_us)


def upm_mmio(g: GuestKernel, group, rng, me: str):
    """A shared-page conversion, then MMIO accesses, in turn."""
    conv = converter(g, group, rng, me)
    result = None
    while True:
        ins = conv.send(result)
        result = yield ins
        if isinstance(ins, Compute):          # between conversion steps: MMIO
            yield Mmio()


ROLES = {"upm_accept": upm_accept, "upm_touch": upm_touch, "upm_shared": converter,
         "upm_mmio": upm_mmio}
NEEDS_AREA = ("upm_accept", "upm_touch", "upm_shared", "upm_mmio")


# ------------------------------------------------------------------------ host threads
class HostThread:
    """A VMM thread that is not a vCPU (for KVM's lock waits)."""

    def __init__(self, name: str):
        self.name, self.state = name, "kvm"

    def set_state(self, state: str) -> None:
        self.state = state


def start_host_threads(td) -> None:
    period = td.config.host.upm_period_us
    region = [td.kernel.areas[n] for n, r in td.kernel.roles.items() if r == "upm_accept"]
    if not period or not region:
        return
    rng = stream(td.seed, "upm-host", td.replication)
    for name, body in (("flip_shared", _flip_shared), ("flip_private", _flip_private),
                       ("punch_hole", _punch_hole), ("madvise", _invalidate),
                       ("memslot", _invalidate)):
        td.env.process(_loop(td, HostThread(f"host:{name}"), period, region, rng, body))


def _loop(td, t, period, region, rng, body):
    yield td.env.timeout(float(rng.random()) * period)
    while not td.stopped:
        start, size = region[int(rng.integers(len(region)))]
        gpa = start + int(rng.integers(size // PAGE_4K)) * PAGE_4K
        ok = yield from body(td, t, gpa, rng)
        if ok is False and not td.stopped:
            td.stop("test_assert", t.name, "ioctl failed")
        yield td.env.timeout(td.kvm_duration(period))


def _flip_shared(td, t, gpa, rng):
    if gpa in td.kvm.shared_gpas:
        return True
    td.rec.count("upm_flips")
    return (yield from td.kvm.set_memory_attributes(t, gpa, PAGE_4K, shared=True))


def _flip_private(td, t, gpa, rng):
    shared = sorted(td.kvm.shared_gpas)
    if not shared:
        return True
    td.rec.count("upm_flips")
    gpa = shared[int(rng.integers(len(shared)))]
    return (yield from td.kvm.set_memory_attributes(t, gpa, PAGE_4K, shared=False))


def _punch_hole(td, t, gpa, rng):
    """kvm_gmem_punch_hole: invalidate and zap the private leaf; attributes unchanged."""
    kvm, span = td.kvm, (gpa, gpa + PAGE_4K)
    td.rec.count("upm_holes")
    kvm.invalidating.append(span)
    try:
        return (yield from kvm._zap_range(t, range(gpa, gpa + PAGE_4K, PAGE_4K)))
    finally:
        kvm.invalidating.remove(span)
        kvm.invalidate_seq += 1


def _invalidate(td, t, gpa, rng):
    """MADV_DONTNEED on shared memory, or a memslot delete/re-add: an mmu_invalidate under
    the write mmu_lock and a remote TLB flush; no private leaf is touched."""
    kvm = td.kvm
    td.rec.count("upm_invalidations")
    yield from kvm.lock(t, kvm.mmu_lock, "write")
    try:
        kvm.invalidate_seq += 1
        yield from kvm.flush_remote_tlbs(t.name)
    finally:
        kvm.mmu_lock.release("write")
    return True
