"""Layer 3 (model): guest programs, one per vCPU role of a scenario.

Each is a generator of guest instructions (see ``guest.py``). Randomness comes from the
vCPU's own workload stream, so replication r runs the same workload under every policy.
"""
from __future__ import annotations

import random

from .guest import (Accept, AttrWr, Compute, Copy, GuestKernel, GuestLock, Halt, MapGpa, Panic,
                    SpinWait, Touch, tdx_accept_memory)
from .sept import LEVEL_4K, PAGE_4K

RIP_USER = 0x40_0000   # ordinary code: every touch has its own RIP unless a role pins one


def lazy_accept(g: GuestKernel, group, rng, me: str):
    """Linux with unaccepted memory: the page allocator accepts 2 MB units on first use;
    a vCPU that wants a unit another vCPU is accepting spins (accept_memory's list).
    With the guest's locks modelled (``shared.guest_locks``), as Linux does it instead:
    :func:`lazy_accept_linux`."""
    if g.locks is not None:
        yield from lazy_accept_linux(g, group, rng, me)
        return
    env = g.env
    while g.remaining_units:
        i = int(rng.integers(len(g.remaining_units)))
        unit = g.remaining_units[i]
        if unit in g.accepting:
            yield SpinWait(g.accepting[unit])
            continue
        g.accepting[unit] = env.event()
        start = unit * g.unit_size
        ok = yield from tdx_accept_memory(start, start + g.unit_size)
        g.remaining_units.remove(unit)
        g.accepting.pop(unit).succeed()
        if not ok:
            yield Panic("TDX: Failed to accept memory")
            return
        yield Compute(float(rng.exponential(group.think_us)) if group.think_us else 0.0)


def lazy_accept_linux(g: GuestKernel, group, rng, me: str):
    """Linux's allocator-driven accept (mm/page_alloc.c try_to_accept_memory_one,
    drivers/firmware/efi/unaccepted_memory.c accept_memory, v6.8+): under zone->lock take
    the *first* block off zone->unaccepted_pages (list_del: no two vCPUs get the same
    block); then unaccepted_memory_lock to check accepting_list and add the range, dropped
    while arch_accept_memory runs, taken again to clear the bitmap and list_del."""
    while g.remaining_units:
        yield GuestLock("zone")
        if not g.remaining_units:
            break
        unit = g.remaining_units.pop(0)
        yield GuestLock("bitmap")
        start = unit * g.unit_size
        ok = yield from tdx_accept_memory(start, start + g.unit_size)
        yield GuestLock("bitmap")
        if not ok:
            yield Panic("TDX: Failed to accept memory")
            return
        yield Compute(float(rng.exponential(group.think_us)) if group.think_us else 0.0)


def idle(g: GuestKernel, group, rng, me: str):
    """An idle vCPU (added by ``shared.idle_share``): HLT; each wakeup runs the tick
    (``think_us`` of guest work, the calibration's idle_tick_work_us) and halts again."""
    while True:
        yield Halt()
        yield Compute(group.think_us)


def compute(g: GuestKernel, group, rng, me: str):
    """An application vCPU: guest code only (stretches of ``think_us`` on average), no
    memory events of its own; it leaves the TD only for interrupts: ticks and kicks."""
    while True:
        yield Compute(float(rng.exponential(group.think_us)) or 1.0)


def fault_storm(g: GuestKernel, group, rng, me: str, index: int, count: int, base: int,
                limit: int):
    """``count`` vCPUs accept interleaved 4 KB pages of one region after another, so they
    all race for the same non-leaf S-EPT entries at every new region."""
    region = max(PAGE_4K, int(group.region_mb * 2**20) // PAGE_4K * PAGE_4K)
    start = base
    while start + region <= limit:
        for gpa in range(start + index * PAGE_4K, start + region, count * PAGE_4K):
            if group.access == "touch":      # ordinary code: a RIP of its own per access
                yield Touch(gpa, rip=RIP_USER + gpa // PAGE_4K * 16)
                continue
            ok = yield from tdx_accept_memory(gpa, gpa + PAGE_4K)
            if not ok:
                yield Panic("TDX: Failed to accept memory")
                return
            if group.think_us:
                yield Compute(float(rng.exponential(group.think_us)))
        start += region


def converter(g: GuestKernel, group, rng, me: str):
    """Converts random ranges of its area private -> shared and back, then accepts them
    again (``tdx_enc_status_changed``): every conversion zaps through the host."""
    area_start, area_size = g.areas[me]
    size = group.range_kb * 1024
    slots = max(1, area_size // size)
    while True:
        gpa = area_start + int(rng.integers(slots)) * size
        g.converting[me] = (gpa, size)
        yield MapGpa(gpa, size, shared=True)
        g.shared.update(range(gpa, gpa + size, PAGE_4K))
        yield Compute(float(rng.exponential(group.think_us)) if group.think_us else 0.0)
        yield MapGpa(gpa, size, shared=False)
        g.shared.difference_update(range(gpa, gpa + size, PAGE_4K))
        ok = yield from tdx_accept_memory(gpa, gpa + size)   # -EIO, not a panic, on failure
        g.converting.pop(me, None)
        if not ok:
            g.conversion_errors += 1
        yield Compute(float(rng.exponential(group.interval_us)) if group.interval_us else 0.0)


def _spam_target(g: GuestKernel, group, pick: random.Random, team: int) -> int:
    """While a conversion is in flight, the page of its range that this spammer's team
    attacks: ``per_page`` spammers share a page, and the teams spread evenly over the
    range. Otherwise any page of the conversion areas."""
    if g.converting:
        gpa, size = g.converting[min(g.converting)]
        pages = size // PAGE_4K
        teams = -(-group.count // group.per_page)
        return gpa + (team % teams) * pages // teams * PAGE_4K
    start, size = g.areas[min(g.areas)] if len(g.areas) == 1 else \
        list(g.areas.values())[pick.randrange(len(g.areas))]
    return start + pick.randrange(size // PAGE_4K) * PAGE_4K


def _attacking(g: GuestKernel, group) -> bool:
    return not group.attack_us or g.env.now < group.attack_us


def _spammer(make, g: GuestKernel, group, rng, me: str):
    """Hostile: a TDCALL in a loop on pages the host is converting. Back to back
    (``gap_us`` 0) still costs a TDCALL round trip between two holds of the entry lock."""
    pick = random.Random(int(rng.integers(2**63)))
    team = g.group_index[me] // group.per_page
    while _attacking(g, group):
        yield make(_spam_target(g, group, pick, team))
        if group.gap_us:
            yield Compute(group.gap_us)


def accept_spammer(g: GuestKernel, group, rng, me: str):
    """Hostile: TDG.MEM.PAGE.ACCEPT in a loop on pages the host is converting."""
    return _spammer(lambda gpa: Accept(gpa, LEVEL_4K), g, group, rng, me)


def attr_spammer(g: GuestKernel, group, rng, me: str):
    """Hostile: TDG.MEM.PAGE.ATTR.WR in a loop on pages the host is converting."""
    return _spammer(AttrWr, g, group, rng, me)


def stepper(g: GuestKernel, group, rng, me: str):
    """Buggy or hostile: one REP MOVS that never retires, over the first converter's area,
    which it keeps reading as private while the converter shares it. Its memory faults at
    one RIP arm zero-step; once the converter has taken the pages back and accepted them,
    every re-entry (after each kick) takes the S-EPT tree exclusively while the
    converter's next zap wants it (domain §7.5 b)."""
    start, size = g.areas[min(n for n, a in g.areas.items() if n in g.converters)]
    yield Copy(list(range(start, start + size, PAGE_4K)), rip=RIP_USER + 0x77)


def refaulter(g: GuestKernel, group, rng, me: str):
    """Hostile or buggy: makes a page shared, then keeps touching it as private from one
    RIP. Each touch is a KVM_EXIT_MEMORY_FAULT round trip at an unchanged RIP."""
    area_start, _ = g.areas[me]
    yield MapGpa(area_start, PAGE_4K, shared=True)
    g.shared.add(area_start)
    while True:
        yield Touch(area_start, rip=RIP_USER + 0x66)
        if group.think_us:
            yield Compute(float(rng.exponential(group.think_us)))


ROLES = {"lazy_accept": lazy_accept, "fault_storm": fault_storm, "converter": converter,
         "accept_spammer": accept_spammer, "attr_spammer": attr_spammer,
         "refaulter": refaulter, "stepper": stepper, "idle": idle, "compute": compute}
NEEDS_AREA = ("converter", "refaulter")
