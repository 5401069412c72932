"""Layer 1: the two errors every front end turns into one line and exit status 2. Kept in
a module that imports nothing, so the CLI can catch them without loading the model."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration a user gave is invalid or cannot be read safely; the message is one
    line. (``workbench.config`` and ``workbench.safeio`` re-export it.)"""


class PolicyError(ValueError):
    """A policy spec cannot be understood; the message is one line."""


__all__ = ["ConfigError", "PolicyError"]
