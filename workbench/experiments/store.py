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
from pathlib import Path

from ..core.config import ConfigError
from ..core.paths import output_root
from ..core.safeio import TMP, atomic_write

FORMAT = 1
MARKER = "workbench-store.json"
LOCK = ".lock"
RUN_FILES = ("summary.parquet", "ops.parquet", "run.json")
EXPERIMENT_FILES = {"manifest.json", "summary.parquet", "ops.parquet", "table.csv",
                    "stats.csv", "diff.csv", "table.tex", "stats.parquet"}
ROBUSTNESS_FILES = {"manifest.json", "calibrations.parquet", "values.parquet"}
KEY = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")   # an experiment's name
SUMMARY_NEEDS = {"run_id", "scenario", "policy", "seed", "replication"}
OPS_NEEDS = {"policy", "seed", "replication", "op", "latency_us"}


def default_root() -> Path:
    return Path(os.environ.get("WORKBENCH_RESULTS") or output_root() / "results")


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
        self.root = Path(root) if root is not None else default_root()
        self._lock = None
        self.check()

    # -- ownership ---------------------------------------------------------------------
    def _refuse(self, what: str):
        raise ConfigError(f"store {self.root}: {what}; not a workbench results store, "
                          "nothing touched (choose another --store)")

    def check(self) -> None:
        root = self.root
        if root.exists() and not root.is_dir():
            self._refuse("is a file")
        if not root.exists() or not any(root.iterdir()):
            return
        marker = root / MARKER
        if not marker.is_file():
            self._refuse(f"holds files but no {MARKER}")
        try:
            meta = json.loads(marker.read_text())
            fmt = meta["format"]
        except (OSError, ValueError, KeyError, TypeError):
            self._refuse(f"{MARKER} is unreadable")
        if fmt != FORMAT:
            raise ConfigError(f"store {root}: format {fmt} is not this workbench's format "
                              f"{FORMAT}; use another --store")
        for p in root.iterdir():
            if p.name not in (MARKER, LOCK, "runs", "experiments", "robustness"):
                self._refuse(f"{p.name} is not a store file")
        for sub, allowed in (("runs", None), ("experiments", EXPERIMENT_FILES),
                             ("robustness", ROBUSTNESS_FILES)):
            d = root / sub
            if d.exists() and not d.is_dir():
                self._refuse(f"{sub} is not a folder")
            for p in (d.iterdir() if d.is_dir() else ()):
                if p.name.startswith(TMP):
                    continue
                if not p.is_dir() or (sub == "runs" and not KEY.match(p.name)):
                    self._refuse(f"{sub}/{p.name} is not a store entry")
                for f in p.iterdir():
                    ok = f.name in (allowed or RUN_FILES) or (
                        allowed is not None and f.name.startswith(TMP))
                    if not ok or not f.is_file():
                        self._refuse(f"{sub}/{p.name}/{f.name} is not a store file")

    # -- writing -----------------------------------------------------------------------
    def __enter__(self) -> "Store":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.check()
            marker = self.root / MARKER
            if not marker.exists():
                atomic_write(marker, _text(json.dumps({"format": FORMAT,
                                                       "tool": "tdx-contention-workbench"})))
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"store {self.root}: cannot write there ({err.strerror})") from None
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
        for sub in ("runs", "experiments", "robustness"):
            d = self.root / sub
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name.startswith(TMP):
                    shutil.rmtree(p, ignore_errors=True)
                elif sub != "runs":
                    for f in p.iterdir():
                        if f.name.startswith(TMP):
                            f.unlink()

    def _need_lock(self):
        if self._lock is None:
            raise RuntimeError("write to a Store inside `with store:`")

    def put_run(self, key: str, summary, ops, meta: dict) -> None:
        """Store one finished run; a run already stored under ``key`` is kept."""
        self._need_lock()
        runs = self.root / "runs"
        runs.mkdir(exist_ok=True)
        final = runs / key
        if final.exists():
            return
        tmp = runs / f"{TMP}{key}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            summary.to_parquet(tmp / "summary.parquet", index=False)
            ops.to_parquet(tmp / "ops.parquet", index=False)
            (tmp / "run.json").write_text(json.dumps({"format": FORMAT, "key": key, **meta},
                                                     indent=1, default=str))
            for f in RUN_FILES:
                with open(tmp / f, "rb") as fh:
                    os.fsync(fh.fileno())
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def experiment_dir(self, name: str) -> Path:
        return self.root / "experiments" / name

    def put_file(self, name: str, filename: str, write, kind: str = "experiments") -> Path:
        """Write one file of experiment (or ``kind="robustness"`` run) ``name`` atomically
        (``write(tmp_path)``)."""
        self._need_lock()
        if filename not in (ROBUSTNESS_FILES if kind == "robustness" else EXPERIMENT_FILES) \
                or not NAME.match(str(name)):
            raise ValueError(filename)
        d = self.root / kind / name
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / filename, write)
        return d / filename

    # -- reading -----------------------------------------------------------------------
    def has_run(self, key: str) -> bool:
        return (self.root / "runs" / key / "run.json").is_file()

    def get_run(self, key: str):
        """``(summary, ops, meta)`` of a stored run, checked; one line naming the bad file."""
        import pandas as pd
        d = self.root / "runs" / key
        f = d / "run.json"
        try:
            meta = json.loads(f.read_text())
            if not isinstance(meta, dict) or meta.get("key") != key:
                raise ValueError("wrong key")
            f = d / "summary.parquet"
            summary = pd.read_parquet(f)
            if not SUMMARY_NEEDS <= set(summary.columns) or len(summary) != 1:
                raise ValueError("not a one-row summary")
            f = d / "ops.parquet"
            ops = pd.read_parquet(f)
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
                out.add(json.loads((p / "run.json").read_text()).get("version"))
            except (OSError, ValueError, AttributeError):
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
        import pandas as pd
        d = self.root / "robustness" / str(name)
        if not NAME.match(str(name)) or not (d / "manifest.json").is_file():
            known = ", ".join(self.robustness_runs()) or "none"
            raise ConfigError(f"store {self.root}: no robustness run {name!r} (stored: {known})")
        f = d / "manifest.json"
        try:
            m = json.loads(f.read_text())
            if not isinstance(m, dict) or m.get("format") != FORMAT or "metric" not in m:
                raise ValueError("wrong shape")
            f = d / "calibrations.parquet"
            cal = pd.read_parquet(f)
            f = d / "values.parquet"
            values = pd.read_parquet(f)
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
            m = json.loads(f.read_text())
            if not isinstance(m, dict) or m.get("format") != FORMAT or \
                    not isinstance(m.get("runs"), list):
                raise ValueError("wrong shape")
        except (OSError, ValueError) as err:
            raise ConfigError(f"{f}: not a valid experiment manifest ({err})") from None
        return m

    def table(self, name: str, filename: str):
        import pandas as pd
        f = self.experiment_dir(name) / filename
        try:
            return pd.read_parquet(f)
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
