"""Layer 1: a result folder (``--out``, ``RunResult.save``, ``Comparison.save``) that is
replaced whole, never follows a link and never deletes what this tool did not write.

- A result folder holds :data:`MARKER` (``workbench-result.json``, with its format
  version) and only the files this tool writes; ``--out`` replaces an existing folder only
  when it is such a folder, with no symbolic link in it, and never a link itself.
- The new result is written into a hidden sibling ``.NAME.new.PID.HEX`` and swapped in by
  two renames (old result to ``.NAME.old.PID.HEX/prev``, new one to ``NAME``). A process
  killed between them leaves no result at ``NAME``: the next call for ``NAME`` puts the
  previous one back and says so. Debris of a killed write (its process gone, its content
  only our files) is removed by the next call for the same ``NAME``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import warnings
from pathlib import Path

from .errors import ConfigError
from .safeio import out_path, probe_writable, read_bytes, short

FORMAT = 1
MARKER = "workbench-result.json"
MARKER_TEXT = json.dumps({"format": FORMAT, "tool": "tdx-contention-workbench",
                          "kind": "result folder"})
# every file a result folder of this tool may hold (RunResult.save, Comparison.save)
RESULT_FILES = {MARKER, "manifest.json", "table.csv", "latency.csv", "calls.parquet",
                "ops.parquet", "vcpus.parquet", "summary.parquet", "events.parquet"}
STORE_MARKER = "workbench-store.json"     # experiments.store.MARKER
_DEBRIS = re.compile(r"^\.(?P<name>.*)\.(?P<kind>new|old)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}$")


def _lstat(p: Path):
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"--out {short(str(p), 80)}: cannot use it ({err.strerror})") from None


def _stem(out: Path) -> str:
    """The part of ``out``'s name the hidden siblings carry (they must fit NAME_MAX)."""
    return out.name.encode()[:180].decode(errors="ignore")


def result_problem(folder: Path) -> str | None:
    """Why ``folder`` (an existing, non-empty folder) is not a result folder this tool
    wrote, or None: the marker, of this format, and only our files, none a link."""
    names = sorted(os.listdir(folder))
    if MARKER not in names:
        return (f"not a workbench result folder (no {MARKER}; a result of an older "
                "version has none: move it away yourself)")
    for n in names:
        st = os.lstat(folder / n)
        if n not in RESULT_FILES:
            return f"not a workbench result: holds {short(n, 60)}, which this tool did not write"
        if not stat.S_ISREG(st.st_mode):
            return f"{short(n, 60)} in it is not a regular file (a link or a folder)"
    try:
        meta = json.loads(read_bytes(folder / MARKER, MARKER, 4096, follow=False))
        fmt = meta.get("format") if isinstance(meta, dict) else None
    except (ConfigError, ValueError):
        fmt = None
    if fmt != FORMAT:
        return f"its {MARKER} is not this workbench's (format {FORMAT})"
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:        # another user's process: alive
        return True
    return True


def _ours(d: Path) -> bool:
    """A hidden folder of a killed write: a real folder whose files are all ours."""
    try:
        if not stat.S_ISDIR(os.lstat(d).st_mode):
            return False
        for n in os.listdir(d):
            st = os.lstat(d / n)
            if n == "prev" and stat.S_ISDIR(st.st_mode):
                if not _ours(d / n):
                    return False
            elif n not in RESULT_FILES or not stat.S_ISREG(st.st_mode):
                return False
        return True
    except OSError:
        return False


def recover(out: Path) -> None:
    """Finish what a killed write of ``out`` left: put back a previous result that has no
    successor at ``out``, and remove the hidden debris that is provably ours. Anything
    else is reported, never touched."""
    parent = out.parent
    if not parent.is_dir():
        return
    stem = _stem(out)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for n in sorted(names):
        m = _DEBRIS.match(n)
        if not m or m["name"] != stem or _alive(int(m["pid"])):
            continue
        d = parent / n
        if not _ours(d):
            warnings.warn(f"{short(str(d), 120)} looks like a killed write of --out "
                          f"{short(str(out), 80)} but holds other files; left as it is",
                          stacklevel=3)
            continue
        prev = d / "prev"
        if m["kind"] == "old" and prev.is_dir() and _lstat(out) is None:
            os.rename(prev, out)       # _ours: a real folder of our files only
            warnings.warn(f"--out {short(str(out), 80)}: a killed write had left the "
                          f"previous result in {short(n, 80)}; put it back", stacklevel=3)
        shutil.rmtree(d, ignore_errors=True)


def check_out_dir(out_dir) -> Path:
    """Refuse, before any work, a place a result cannot go or must not replace: a link, an
    existing file, a folder this tool did not write, an unwritable parent."""
    out = out_path(out_dir)        # a path at all: not empty, '.', NUL, too long (safeio)
    where = f"--out {short(str(out), 80)}"
    store = next((p for p in Path(os.path.abspath(out)).parents
                  if os.path.isfile(p / STORE_MARKER)), None)
    if store is not None:
        raise ConfigError(f"{where}: inside the results store {short(str(store), 80)}; the "
                          "store keeps its own files (choose a folder outside it)")
    recover(out)
    st = _lstat(out)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{where}: is a symbolic link; name a real folder (links are "
                          "never followed or replaced)")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where}: is a file, not a results folder")
    try:
        if st is not None and os.listdir(out):
            why = result_problem(out)
            if why:
                raise ConfigError(f"{where}: {why}; replacing the folder would delete it "
                                  "(choose a new or empty folder)")
        probe_writable(out)        # creates nothing: the folder appears only with the result
    except OSError as err:
        raise ConfigError(f"{where}: cannot write there ({err.strerror})") from None
    return out


def _mkdir(parent: Path, prefix: str) -> Path:
    """A new folder with the user's normal permissions (``mkdtemp`` would make it 0700)."""
    while True:
        p = parent / f"{prefix}{os.getpid()}.{secrets.token_hex(4)}"
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue


def write_folder(out_dir, write) -> Path:
    """Call ``write(tmp)`` on a fresh sibling folder, then swap it in for ``out_dir``:
    an existing result is replaced whole or, if anything fails, left as it was."""
    out = check_out_dir(out_dir)
    tmp = old = None
    keep_old = False     # True if the previous result could not be put back: never delete it
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _mkdir(out.parent, f".{_stem(out)}.new.")
        old = _mkdir(out.parent, f".{_stem(out)}.old.") / "prev"
        write(tmp)
        (tmp / MARKER).write_text(MARKER_TEXT)
        for n in os.listdir(tmp):          # on disk before the swap, not after a crash
            with open(tmp / n, "rb") as f:
                os.fsync(f.fileno())
        if _lstat(out) is not None:
            out.rename(old)
        tmp.rename(out)
    except BaseException as err:
        if old is not None and old.exists() and _lstat(out) is None:
            try:
                old.rename(out)
            except OSError:
                keep_old = True
                raise ConfigError(f"--out {short(str(out), 80)}: cannot write the result, and "
                                  f"the previous one is kept in {short(str(old), 120)}") from None
        if isinstance(err, (OSError, MemoryError)):     # disk full, permissions changed, ...
            why = getattr(err, "strerror", None) or type(err).__name__
            raise ConfigError(f"--out {short(str(out), 80)}: cannot write the result "
                              f"({why}); nothing was changed") from None
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not keep_old:
            shutil.rmtree(old.parent, ignore_errors=True)
    return out


__all__ = ["MARKER", "RESULT_FILES", "check_out_dir", "write_folder", "recover",
           "result_problem"]
