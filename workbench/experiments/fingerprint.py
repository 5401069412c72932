"""Layer 4: what binds a stored run to what produced it.

- :func:`code_fingerprint`: sha256 over the source files a run executes (the core, the
  policies, the model, ``experiments/comparison.py`` and ``metrics.py``), by content: an
  uncommitted edit changes it, a commit that touches none of them does not. It is taken
  once per process (the code a process runs is the code it imported).
- :func:`environment`: the SimPy and NumPy versions (they decide every draw and event).
- :func:`tree_state` / :func:`check_clean`: the git commit and whether the files that
  decide results (``workbench/``, ``data/``, ``pyproject.toml``, ``requirements.lock``)
  differ from it; writing runs from such a tree is refused unless asked for.
- :func:`calibration_record`: a calibration's content hash, its file's text and the
  samples files of its measured rows, so a manifest carries what a run was calibrated by.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from ..core.config import ConfigError

PACKAGE = Path(__file__).resolve().parent.parent          # workbench/
CODE = ("core", "policies", "model", "experiments/comparison.py", "experiments/metrics.py")
# what decides a result besides the code: shipped data, dependencies (paths from the repo root)
RESULT_PATHS = ("workbench", "data", "pyproject.toml", "requirements.lock")
ALLOW_DIRTY_ENV = "WORKBENCH_ALLOW_DIRTY"    # for the test suite only (tests/conftest.py)
_CACHE: dict = {}


def code_files(package: Path = PACKAGE) -> list[Path]:
    """The source files a run executes, in a fixed order."""
    out = []
    for part in CODE:
        p = package / part
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def code_fingerprint(package: Path | None = None) -> str:
    """sha256 of the relative path and content of every file of :func:`code_files`
    (taken once per process for this package)."""
    package = Path(package) if package is not None else PACKAGE
    if package in _CACHE:
        return _CACHE[package]
    h = hashlib.sha256()
    for f in code_files(package):
        h.update(f.relative_to(package).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    _CACHE[package] = h.hexdigest()
    return _CACHE[package]


def environment() -> dict:
    """The versions of the libraries that decide a run's draws and events (as installed;
    only the model imports SimPy)."""
    if "env" not in _CACHE:
        from importlib import metadata
        _CACHE["env"] = {d: metadata.version(d) for d in ("simpy", "numpy")}
    return _CACHE["env"]


def repo_root() -> Path | None:
    from ..core.paths import source_checkout
    return source_checkout()


def _git(root: Path, *args) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=root,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def tree_state(root: Path | None = None) -> dict:
    """``{"git_commit", "git_dirty", "dirty_files"}`` of the checkout: dirty when a file
    under :data:`RESULT_PATHS` is modified, staged or new (and not ignored). Outside a git
    checkout (an installed wheel): ``None`` for each."""
    root = root or repo_root()
    commit = _git(root, "rev-parse", "HEAD") if root else None
    if not commit:
        return {"git_commit": None, "git_dirty": None, "dirty_files": []}
    status = _git(root, "status", "--porcelain", "--", *RESULT_PATHS) or ""
    files = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"git_commit": commit.strip(), "git_dirty": bool(files), "dirty_files": files}


def check_clean(allow_dirty: bool = False, root: Path | None = None) -> dict:
    """The tree's state; refused (ConfigError) when it has uncommitted changes to what
    decides results, unless ``allow_dirty`` (or ``$WORKBENCH_ALLOW_DIRTY=1``, for tests)."""
    state = tree_state(root)
    allowed = allow_dirty or os.environ.get(ALLOW_DIRTY_ENV) == "1"
    if state["git_dirty"] and not allowed:
        files = state["dirty_files"]
        more = f" and {len(files) - 1} more" if len(files) > 1 else ""
        raise ConfigError(f"uncommitted changes ({files[0]}{more}): a stored run would name "
                          "a commit that did not make it; commit them, or pass --allow-dirty "
                          "(allow_dirty=True) to store runs marked dirty")
    return state


def content_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def calibration_content(cal) -> dict:
    """A calibration as it enters a run's key: its values, and each measured row by its
    samples' sha256 (never the file's path: a clone elsewhere has the same key)."""
    d = cal.model_dump(mode="json")
    d["measured"] = {q: v[1] for q, v in sorted((d.get("measured") or {}).items())}
    return d


def calibration_archive(cals) -> dict:
    """What a manifest keeps of the calibrations of its runs (``cals``: pairs of a loaded
    calibration and the name or path it was loaded from): per calibration, its content
    hash, values, the file it came from and, per measured row, the samples' sha256;
    ``files``: the text of every such file by its sha256, each kept once."""
    from ..core.paths import DATA
    from ..core.safeio import check_path
    out, files = {}, {}

    def keep(path: Path) -> str:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest not in files:
            try:
                files[digest] = {"name": path.name, "text": data.decode()}
            except UnicodeDecodeError:       # a parquet samples file
                files[digest] = {"name": path.name,
                                 "base64": base64.b64encode(data).decode()}
        return digest
    for cal, source in cals:
        content = calibration_content(cal)
        sha = content_hash(content)
        if sha in out:
            continue
        rec = {"values": content, "file": source, "file_sha256": None,
               "samples": {q: keep(Path(path)) for q, (path, _) in
                           sorted((cal.measured or {}).items())}}
        if source:
            p = check_path(source, "calibration")
            p = DATA / "calibration" / f"{source}.yaml" if not p.suffix else p
            if p.is_file():
                rec["file_sha256"] = keep(p)
        out[sha] = rec
    return {"calibrations": out, "files": files}


def restore(entry: dict, folder: Path) -> Path:
    """Write one archived file (``archive[sha]`` of a manifest) into ``folder``."""
    p = folder / Path(entry["name"]).name
    if "base64" in entry:
        p.write_bytes(base64.b64decode(entry["base64"]))
    else:
        p.write_text(entry["text"])
    return p


def lock_hash(root: Path | None = None) -> dict:
    """The lock file's path and sha256 (None without one)."""
    root = root or repo_root()
    p = root / "requirements.lock" if root else None
    if p is None or not p.is_file():
        return {"lock": None, "sha256": None}
    return {"lock": "requirements.lock", "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def command_line() -> list[str]:
    """How this process was started (``workbench sweep ...``, a notebook kernel, ...)."""
    return [Path(sys.argv[0]).name if sys.argv else "", *sys.argv[1:]]
