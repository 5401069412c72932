"""Layer 3 (model): KVM's own locks, which wait instead of failing: ``mmu_lock`` and the
VM-wide spinlock of the ``vm-spinlock`` policy, both queued reader/writer locks."""
from __future__ import annotations

from collections import deque

import simpy

READ, WRITE = "read", "write"


class QueuedRwLock:
    """A fair reader/writer spinlock (Linux qrwlock): FIFO once anyone waits."""

    def __init__(self, env: simpy.Environment, name: str):
        self.env, self.name = env, name
        self.readers, self.writer = 0, False
        self.queue: deque = deque()

    def acquire(self, mode: str):
        """None when granted at once, else an event that fires when granted."""
        if not self.queue and self._can(mode):
            self._grant(mode)
            return None
        ev = self.env.event()
        self.queue.append((ev, mode))
        return ev

    def release(self, mode: str) -> None:
        if mode == WRITE:
            self.writer = False
        else:
            self.readers -= 1
        while self.queue and self._can(self.queue[0][1]):
            ev, m = self.queue.popleft()
            self._grant(m)
            ev.succeed()

    def _can(self, mode: str) -> bool:
        return not self.writer and (mode == READ or self.readers == 0)

    def _grant(self, mode: str) -> None:
        if mode == WRITE:
            self.writer = True
        else:
            self.readers += 1
