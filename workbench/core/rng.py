"""Layer 1: explicit random streams spawned from one seed.

Every stream is named and derived from ``(root seed, replication, name)`` only, never from the
policy, so two policies run on the same replication see the same workload (common random
numbers). Nothing in the package touches a global RNG.
"""
from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str, replication: int = 0) -> np.random.Generator:
    """A generator for one named stream of one replication of a root seed."""
    key = zlib.crc32(name.encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(replication), key]))


class Draws:
    """Buffered draws from one generator: numpy is slow per scalar, fast per block."""

    __slots__ = ("_rng", "_buf", "_i", "_kind", "_block")

    def __new__(cls, rng, kind: str = "random", block: int = 4096):
        # hook: a choice stream (workbench.model.choices) draws one choice per value instead
        hook = getattr(rng, "draws", None)
        return hook(kind) if hook is not None else super().__new__(cls)

    def __init__(self, rng: np.random.Generator, kind: str = "random", block: int = 4096):
        self._rng, self._kind, self._buf, self._i = rng, kind, (), 0
        self._block = block

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = getattr(self._rng, self._kind)(self._block).tolist()
            self._i = 0
        self._i += 1
        return self._buf[self._i - 1]
