"""Layer 1: where the workbench finds its shipped data and where it writes.

- ``DATA``: the shipped, read-only data (scenarios, small scenarios, calibrations, experiment
  designs, validation entries). In a source checkout it is the repository's ``data/``; in an
  installed wheel it is the copy the build put into the package (``workbench/_data``, mapped
  from ``data/`` by ``pyproject.toml``): one source of truth, two places it is read from.
- ``output_root()``: where results and figures go by default: ``data/`` of a source checkout,
  otherwise the platform's user data folder (``$XDG_DATA_HOME`` or ``~/.local/share`` on
  Linux, ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on Windows), never
  inside the installed package. ``$WORKBENCH_RESULTS`` and ``--store`` still win for the store.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
_REPO = PACKAGE.parent
APP = "tdx-contention-workbench"


def source_checkout() -> Path | None:
    """The repository root when the package runs from a source checkout, else None."""
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "data" / "scenarios").is_dir():
        return _REPO
    return None


def _shipped_data() -> Path:
    root = source_checkout()
    return root / "data" if root else PACKAGE / "_data"


def user_data_dir() -> Path:
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / APP


def output_root() -> Path:
    root = source_checkout()
    return root / "data" if root else user_data_dir()


DATA = _shipped_data()

__all__ = ["DATA", "PACKAGE", "source_checkout", "user_data_dir", "output_root"]
