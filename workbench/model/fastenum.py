"""Layer 3 (model): fast access to Enum members on the hot path.

On Python 3.11 ``State.MAPPED`` goes through ``EnumType.__getattr__`` and costs about five
global lookups; the model does several per simulated event. A module that only reads
members (``State.X``, ``x is Site.Y``) rebinds the name to :func:`members` of it: the same
member objects, on a plain class (no iteration, ``isinstance`` or ``State(value)`` there).
"""
from __future__ import annotations

from enum import Enum


def members(enum_cls: type[Enum]) -> type:
    """A plain class whose attributes are ``enum_cls``'s members (the same objects)."""
    return type(enum_cls.__name__, (), {**enum_cls.__members__, "__doc__": enum_cls.__doc__})
