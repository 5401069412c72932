"""Layer 3 (model): guest programs for 2 MB private pages (domain.md §10.5, §10.8).

``huge_converter`` vCPUs share one area (the first one's, ``region_mb``) and convert the
hot part at the start of each 2 MB range (``hot_kb``, in ``range_kb`` chunks) to shared and
back, accepting it again: the boot trace of §10.8 converts a few GFNs hundreds of times.
The first conversion in a 2 MB range that KVM mapped 2 MB splits it. ``huge_reader``
vCPUs touch the rest of those 2 MB ranges (that of a conversion in flight when there is
one: a model choice, the data next to a buffer in conversion is the hot data), never a
page a conversion owns, so they fault only while a split has the 2 MB leaf blocked
(where, with Dynamic PAMT, their fault's PAMT.ADD meets the DEMOTE).
"""
from __future__ import annotations

from .guest import Compute, GuestKernel, MapGpa, Touch, tdx_accept_memory
from .sept import LEVEL_2M, LEVEL_SIZE, PAGE_4K

MB2 = LEVEL_SIZE[LEVEL_2M]
RIP_READER = 0x50_0000


def huge_area(g: GuestKernel) -> tuple[int, int]:
    """The area all huge_converter and huge_reader vCPUs share: the first converter's."""
    first = min(n for n, role in g.roles.items() if role == "huge_converter")
    return g.areas[first]


def _busy(g: GuestKernel, gpa: int, size: int) -> bool:
    return any(a < gpa + size and gpa < a + s for a, s in g.converting.values())


def _think(rng, us: float):
    return Compute(float(rng.exponential(us)) if us else 0.0)


def huge_converter(g: GuestKernel, group, rng, me: str):
    """``tdx_enc_status_changed`` on hot chunks: to shared, back to private, accept."""
    start, size = huge_area(g)
    chunk = group.range_kb * 1024
    per_range = max(1, min(group.hot_kb * 1024, MB2) // chunk)
    ranges = max(1, size // MB2)
    while True:
        gpa = start + int(rng.integers(ranges)) * MB2 + int(rng.integers(per_range)) * chunk
        if _busy(g, gpa, chunk):          # another vCPU converts it: the kernel serialises
            yield _think(rng, group.think_us)
            continue
        g.converting[me] = (gpa, chunk)
        yield MapGpa(gpa, chunk, shared=True)
        g.shared.update(range(gpa, gpa + chunk, PAGE_4K))
        yield _think(rng, group.think_us)
        yield MapGpa(gpa, chunk, shared=False)
        g.shared.difference_update(range(gpa, gpa + chunk, PAGE_4K))
        ok = yield from tdx_accept_memory(gpa, gpa + chunk)
        g.converting.pop(me, None)
        if not ok:
            g.conversion_errors += 1
        yield _think(rng, group.interval_us)


def huge_reader(g: GuestKernel, group, rng, me: str):
    """Touches private pages of the shared area outside the hot chunks."""
    start, size = huge_area(g)
    hot = min(group.hot_kb * 1024, MB2 - PAGE_4K)
    cold = (MB2 - hot) // PAGE_4K
    ranges = max(1, size // MB2)
    while True:
        if g.converting:      # the neighbours of a buffer in conversion are the hot data
            busy = sorted(g.converting.values())
            base = busy[int(rng.integers(len(busy)))][0] // MB2 * MB2
        else:
            base = start + int(rng.integers(ranges)) * MB2
        gpa = base + hot + int(rng.integers(cold)) * PAGE_4K
        yield Touch(gpa, rip=RIP_READER + gpa // PAGE_4K * 16)
        yield _think(rng, group.think_us)


ROLES = {"huge_converter": huge_converter, "huge_reader": huge_reader}
NEEDS_AREA = ("huge_converter",)
