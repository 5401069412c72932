"""Layer 6: the results store, a folder that fills run by run and never loses a file.

Layout (``data/results/`` unless ``--store DIR`` or ``WORKBENCH_RESULTS``)::

    workbench-store.json          marker with the format version: the folder is ours
    .lock                         held (flock) by the one process writing
    runs/<key>/                   one finished run: summary.parquet, ops.parquet, run.json
    experiments/<name>/           manifest.json (provenance), summary.parquet, ops.parquet,
                                  table.csv, stats.csv and exports (table.tex, ...)
    robustness/<name>/            manifest.json, calibrations.parquet, values.parquet: one
                                  ``workbench robustness`` run (its analysis is recomputed)

A run's key is a hash of everything that determines it (:func:`run_key`). A run is written
into a temporary folder and renamed into place, so ``runs/<key>`` is either absent or whole;
a later run with the same key is skipped. Experiment files are written to a temporary file
and ``os.replace``-d over the old one: the path never holds nothing. Debris of a killed
writer (``.tmp-*``) is removed at the next start, under the lock.

A folder is used as a store only if it is empty or holds the marker and nothing but the
store's own files; anything else is refused with one line and left untouched.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

from ..core.config import ConfigError
from ..core.paths import output_root
from ..core.safeio import TMP, atomic_write, check_path, read_bytes

FORMAT = 1
MARKER = "workbench-store.json"
LOCK = ".lock"
RUN_FILES = ("summary.parquet", "ops.parquet", "run.json")
EXPERIMENT_FILES = {"manifest.json", "summary.parquet", "ops.parquet", "table.csv",
                    "stats.csv", "diff.csv", "table.tex", "stats.parquet"}
ROBUSTNESS_FILES = {"manifest.json", "calibrations.parquet", "values.parquet"}
KEY = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")   # an experiment's name
MAX_NAME = 200                      # characters of a name (a folder name: NAME_MAX 255 bytes)
SUMMARY_NEEDS = {"run_id", "scenario", "policy", "seed", "replication"}
OPS_NEEDS = {"policy", "seed", "replication", "op", "latency_us"}


def _lstat(p: Path):
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None


def _is(p: Path, kind) -> bool:
    """``p`` exists and is, itself and not through a link, a ``kind`` (S_ISREG, S_ISDIR)."""
    st = _lstat(p)
    return st is not None and kind(st.st_mode)


# what atomic_write and put_run leave when their process is killed (safeio.TMP)
_DEBRIS_FILE = re.compile(r"^\.tmp-(?P<file>[A-Za-z0-9_.-]+)\.[0-9]+$")
_DEBRIS_RUN = re.compile(r"^\.tmp-[0-9a-f]{64}\.[0-9]+$")
MAX_JSON_BYTES = 64 << 20          # a manifest of 5,000 runs is ~400 KB


def _parquet(path: Path):
    """A parquet table of the store, opened without following a link."""
    import pandas as pd
    from ..core.safeio import open_regular
    with open_regular(path, path.name, 4 << 30, follow=False) as f:
        return pd.read_parquet(f)


def _json(path: Path, what: str):
    """A JSON file of the store, read without following a link and with a size bound."""
    return json.loads(read_bytes(path, what, MAX_JSON_BYTES, follow=False))


def default_root() -> Path:
    env = os.environ.get("WORKBENCH_RESULTS")
    return check_path(env, "WORKBENCH_RESULTS") if env else output_root() / "results"


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_key(spec: dict) -> str:
    """The key of a run: sha256 of the canonical JSON of what determines it
    (:func:`workbench.experiments.runner.run_spec`: scenario after overrides, policy spec,
    seed, replication, calibration content, package version, the fingerprint of the source
    the run executes, SimPy and NumPy versions) and the store format."""
    return hashlib.sha256(canonical({**spec, "store_format": FORMAT}).encode()).hexdigest()


def _text(text: str):
    return lambda p: p.write_text(text)


class Store:
    """A results folder; ``Store(root)`` checks it is ours (or empty) without writing.
    Writers use it as a context manager: it creates the marker, takes the lock and clears
    the debris of a killed writer."""

    def __init__(self, root=None):
        self.root = check_path(root, "--store") if root is not None else default_root()
        self._lock = None
        self.check()

    # -- ownership ---------------------------------------------------------------------
    def _refuse(self, what: str):
        raise ConfigError(f"store {self.root}: {what}; not a workbench results store, "
                          "nothing touched (choose another --store)")

    def check(self) -> None:
        """The folder is empty or a store of this format holding only the store's own
        files: every entry checked with ``lstat``, so no link, FIFO or device is followed
        or read (an entry that is a link is refused, not resolved)."""
        root = self.root
        st = _lstat(root)
        if st is not None and stat.S_ISLNK(st.st_mode):
            self._refuse("is a symbolic link (name the folder it points to)")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self._refuse("is a file")
        if st is None or not os.listdir(root):
            return
        if not _is(root / MARKER, stat.S_ISREG):
            self._refuse(f"holds files but no {MARKER} (a regular file)")
        try:
            meta = json.loads(read_bytes(root / MARKER, MARKER, 4096, follow=False))
            fmt = meta["format"]
        except (ConfigError, ValueError, KeyError, TypeError):
            self._refuse(f"{MARKER} is unreadable")
        if fmt != FORMAT:
            raise ConfigError(f"store {root}: format {fmt} is not this workbench's format "
                              f"{FORMAT}; use another --store")
        for name in os.listdir(root):
            kind = {MARKER: stat.S_ISREG, LOCK: stat.S_ISREG, "runs": stat.S_ISDIR,
                    "experiments": stat.S_ISDIR, "robustness": stat.S_ISDIR}.get(name)
            if kind is None and _DEBRIS_FILE.match(name):
                kind = stat.S_ISREG
            if kind is None:
                self._refuse(f"{name} is not a store file")
            if not _is(root / name, kind):
                self._refuse(f"{name} is not a {'folder' if kind is stat.S_ISDIR else 'file'}"
                             " (a link, device or FIFO is never followed)")
        for sub, allowed in (("runs", None), ("experiments", EXPERIMENT_FILES),
                             ("robustness", ROBUSTNESS_FILES)):
            d = root / sub
            for name in (os.listdir(d) if _is(d, stat.S_ISDIR) else ()):
                p = d / name
                if not _is(p, stat.S_ISDIR):
                    self._refuse(f"{sub}/{name} is not a store entry (a folder, not a link)")
                if name.startswith(TMP):
                    if sub != "runs" or not _DEBRIS_RUN.match(name):
                        self._refuse(f"{sub}/{name} is not a store entry")
                elif (sub == "runs" and not KEY.match(name)) or \
                        (sub != "runs" and not NAME.match(name)):
                    self._refuse(f"{sub}/{name} is not a store entry")
                for f in os.listdir(p):
                    ok = f in (allowed or RUN_FILES) or (
                        _DEBRIS_FILE.match(f) is not None and
                        _DEBRIS_FILE.match(f)["file"] in (allowed or RUN_FILES))
                    if not ok or not _is(p / f, stat.S_ISREG):
                        self._refuse(f"{sub}/{name}/{f} is not a store file")

    # -- writing -----------------------------------------------------------------------
    def __enter__(self) -> "Store":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.check()
            marker = self.root / MARKER
            if not marker.exists():
                atomic_write(marker, _text(json.dumps({"format": FORMAT,
                                                       "tool": "tdx-contention-workbench"})))
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            raise ConfigError(f"store {self.root}: cannot write there ({err.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._refuse(f"{LOCK} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise ConfigError(f"store {self.root}: another workbench (pid {holder or '?'}) is "
                              "writing to it; wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd
        self._clean_debris()
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            os.close(self._lock)    # releases the flock
            self._lock = None

    def _clean_debris(self) -> None:
        """Remove what a killed writer left, under the lock, and only what is provably
        ours: a ``runs/.tmp-KEY.PID`` folder of run files, an experiment's
        ``.tmp-FILE.PID`` of one of its files, a ``.tmp-`` marker (never a link)."""
        for name in os.listdir(self.root):
            if _DEBRIS_FILE.match(name) and _is(self.root / name, stat.S_ISREG):
                os.unlink(self.root / name)
        for sub in ("runs", "experiments", "robustness"):
            d = self.root / sub
            if not _is(d, stat.S_ISDIR):
                continue
            for name in os.listdir(d):
                p = d / name
                if not _is(p, stat.S_ISDIR):
                    continue
                if sub == "runs" and _DEBRIS_RUN.match(name) and all(
                        f in RUN_FILES and _is(p / f, stat.S_ISREG) for f in os.listdir(p)):
                    shutil.rmtree(p)
                elif sub != "runs":
                    for f in os.listdir(p):
                        if _DEBRIS_FILE.match(f) and _is(p / f, stat.S_ISREG):
                            os.unlink(p / f)

    def _need_lock(self):
        if self._lock is None:
            raise RuntimeError("write to a Store inside `with store:`")

    def put_run(self, key: str, summary, ops, meta: dict) -> None:
        """Store one finished run; a run already stored under ``key`` is kept."""
        self._need_lock()
        runs = self.root / "runs"
        try:
            runs.mkdir(exist_ok=True)
        except OSError as err:
            self._write_error(err)
        final = runs / key
        if final.exists():
            return
        tmp = runs / f"{TMP}{key}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            summary.to_parquet(tmp / "summary.parquet", index=False)
            ops.to_parquet(tmp / "ops.parquet", index=False)
            (tmp / "run.json").write_text(json.dumps({"format": FORMAT, "key": key, **meta},
                                                     indent=1, default=str))
            for f in RUN_FILES:
                with open(tmp / f, "rb") as fh:
                    os.fsync(fh.fileno())
            os.rename(tmp, final)
        except OSError as err:       # disk full, quota, permissions: nothing half-stored
            self._write_error(err)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_error(self, err: OSError):
        raise ConfigError(f"store {self.root}: cannot write ({err.strerror or type(err).__name__})"
                          "; the runs stored so far are kept, run it again to resume") from None

    def experiment_dir(self, name: str) -> Path:
        return self.root / "experiments" / name

    def put_file(self, name: str, filename: str, write, kind: str = "experiments") -> Path:
        """Write one file of experiment (or ``kind="robustness"`` run) ``name`` atomically
        (``write(tmp_path)``)."""
        self._need_lock()
        if filename not in (ROBUSTNESS_FILES if kind == "robustness" else EXPERIMENT_FILES) \
                or not NAME.match(str(name)) or len(str(name)) > MAX_NAME:
            raise ValueError(filename)
        d = self.root / kind / name
        try:
            d.mkdir(parents=True, exist_ok=True)
            atomic_write(d / filename, write)
        except OSError as err:
            self._write_error(err)
        return d / filename

    # -- reading -----------------------------------------------------------------------
    def has_run(self, key: str) -> bool:
        return (self.root / "runs" / key / "run.json").is_file()

    def get_run(self, key: str):
        """``(summary, ops, meta)`` of a stored run, checked; one line naming the bad file."""
        d = self.root / "runs" / key
        f = d / "run.json"
        try:
            meta = _json(f, "run.json")
            if not isinstance(meta, dict) or meta.get("key") != key:
                raise ValueError("wrong key")
            f = d / "summary.parquet"
            summary = _parquet(f)
            if not SUMMARY_NEEDS <= set(summary.columns) or len(summary) != 1:
                raise ValueError("not a one-row summary")
            f = d / "ops.parquet"
            ops = _parquet(f)
            if not OPS_NEEDS <= set(ops.columns):
                raise ValueError("missing columns")
        except Exception as err:  # any unreadable file is a corrupt result
            raise ConfigError(f"{f}: not a valid stored run ({type(err).__name__}: {err}); "
                              "move its folder away to recompute it") from None
        return summary, ops, meta

    def run_versions(self) -> set:
        """The package versions that made the stored runs (from each run.json)."""
        out = set()
        d = self.root / "runs"
        for p in (d.iterdir() if d.is_dir() else ()):
            try:
                out.add(_json(p / "run.json", "run.json").get("version"))
            except (OSError, ValueError, AttributeError, TypeError):
                continue
        return out - {None}

    def experiments(self) -> list[str]:
        d = self.root / "experiments"
        return sorted(p.name for p in d.iterdir()
                      if (p / "manifest.json").is_file()) if d.is_dir() else []

    def robustness_runs(self) -> list[str]:
        d = self.root / "robustness"
        return sorted(p.name for p in d.iterdir()
                      if (p / "manifest.json").is_file()) if d.is_dir() else []

    def get_robustness(self, name: str):
        """``(manifest, calibrations, values)`` of a stored robustness run."""
        d = self.root / "robustness" / str(name)
        if not NAME.match(str(name)) or not (d / "manifest.json").is_file():
            known = ", ".join(self.robustness_runs()) or "none"
            raise ConfigError(f"store {self.root}: no robustness run {name!r} (stored: {known})")
        f = d / "manifest.json"
        try:
            m = _json(f, "manifest.json")
            if not isinstance(m, dict) or m.get("format") != FORMAT or "metric" not in m:
                raise ValueError("wrong shape")
            f = d / "calibrations.parquet"
            cal = _parquet(f)
            f = d / "values.parquet"
            values = _parquet(f)
            if not {"sample", "policy", m["metric"]} <= set(values.columns):
                raise ValueError("missing columns")
        except Exception as err:   # any unreadable file is a corrupt result
            raise ConfigError(f"{f}: not a valid stored robustness run ({type(err).__name__})"
                              ) from None
        return m, cal, values

    def manifest(self, name: str) -> dict:
        f = self.experiment_dir(name) / "manifest.json"
        if not NAME.match(str(name)) or not f.is_file():
            known = ", ".join(self.experiments()) or "none"
            raise ConfigError(f"store {self.root}: no experiment {name!r} (stored: {known})")
        try:
            m = _json(f, "manifest.json")
            if not isinstance(m, dict) or m.get("format") != FORMAT or \
                    not isinstance(m.get("runs"), list):
                raise ValueError("wrong shape")
        except (OSError, ValueError, RecursionError) as err:
            raise ConfigError(f"{f}: not a valid experiment manifest ({err})") from None
        return m

    def table(self, name: str, filename: str):
        f = self.experiment_dir(name) / filename
        try:
            return _parquet(f)
        except Exception as err:
            raise ConfigError(f"{f}: not a readable table ({type(err).__name__})") from None


# -- provenance ----------------------------------------------------------------------------
DEPENDENCIES = ("simpy", "numpy", "pandas", "pyarrow", "pydantic", "scipy", "pyyaml")


def now() -> str:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_state() -> dict:
    """The commit of the package's source tree and whether it had uncommitted changes."""
    import subprocess
    here = Path(__file__).parent

    def git(*args):
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=here,
                                 timeout=5)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status)}


def provenance(engine=None, workers=None, started=None) -> dict:
    """Versions, code state, engine and host of a set of runs."""
    import platform
    import sys
    from importlib import metadata

    from ..core.version import __version__
    deps = {}
    for d in DEPENDENCIES:
        try:
            deps[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            deps[d] = None
    return {"version": __version__, "python": sys.version.split()[0], "dependencies": deps,
            **git_state(), "engine": engine or ("processes" if (workers or 1) > 1 else "serial"),
            "workers": workers, "host": platform.node(), "platform": platform.platform(),
            "started": started or now(), "finished": now()}
