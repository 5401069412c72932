"""Layer 1: the workbench's version, read from the installed package's metadata (one source
of truth: ``pyproject.toml``)."""
from importlib import metadata

DISTRIBUTION = "tdx-contention-workbench"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:      # a source tree on sys.path, never installed
    __version__ = "0+unknown"
