"""Layer 6: run an experiment (:mod:`workbench.designs`) through the results store
(:mod:`workbench.store`), and read stored experiments back.

Each run is stored the moment it finishes, under the hash of what determines it; running
the experiment again computes only the runs not yet stored, so a sweep killed part-way
(SIGKILL included) resumes where it stopped and ends with the same tables. The experiment's
tables are then assembled from the stored runs, in the design's order, and written with
their provenance.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.safeio import short
from ..core.version import __version__
from ..core.config import ConfigError, as_overrides, load_calibration
from .designs import factor_column, load_experiment, points
from .engines import imap_jobs
from ..core.limits import Ticker
from .comparison import Comparison, _one, _policy_sets, _tag
from ..core.scenarios import load_scenario
from .fingerprint import (calibration_archive, calibration_content, check_clean,
                          code_fingerprint, command_line, environment, lock_hash,
                          restore)
from .store import Store, now, provenance, run_key


def run_spec(cfg, pset, seed: int, replication: int, calibration, version=None,
             record: str = "ops") -> dict:
    """Everything that determines one run (what :func:`workbench.store.run_key` hashes):
    the scenario after overrides (its calibration by content, not by path), the policy
    spec, seed, replication, the calibration's content (measured rows by their samples'
    sha256), the package version, the fingerprint of the source the run executes and the
    SimPy and NumPy versions. A run kept at level ``summary`` (no ops) is stored apart
    from one with its ops."""
    scenario = {**cfg.model_dump(mode="json"), "calibration": None}
    spec = {"scenario": scenario, "policy": pset.spec(), "seed": seed,
            "replication": replication, "calibration": calibration_content(calibration),
            "version": version or __version__, "code": code_fingerprint(), **environment()}
    if record != "ops":
        spec["record"] = record
    return spec


def _other_versions(st: Store, jobs: list, record: str = "ops") -> None:
    """Warn, in one line, when runs to be computed are stored for another package version
    (the version is part of a run's key: they are kept apart, never mixed in)."""
    import warnings
    versions = st.run_versions() - {__version__}
    if not versions or not jobs:
        return
    cals, found = {}, {}
    for cfg, pset, seed, rep, _ in jobs:
        ck = json.dumps([cfg.calibration, cfg.timings], sort_keys=True)
        if ck not in cals:
            cals[ck] = load_calibration(cfg.calibration, cfg.timings)[0]
        for v in versions:
            if st.has_run(run_key(run_spec(cfg, pset, seed, rep, cals[ck], v, record))):
                found[v] = found.get(v, 0) + 1
    if found:
        warnings.warn(f"{sum(found.values())} of the {len(jobs)} runs to compute are stored for "
                      f"version {', '.join(sorted(found))}, not this {__version__}; they are "
                      "kept apart and not reused", stacklevel=3)


def plan(experiment, *, reps=None, seed=None, sets=None, n_reps: int | None = None,
         record: str = "ops"):
    """The experiment (overrides applied) and its runs in design order:
    ``(exp, [(job, key, factor columns)])``; ``n_reps`` replications when the experiment
    chooses them itself (``reps: auto``)."""
    exp = load_experiment(experiment)
    changes = {}
    if reps is not None:
        changes["reps"] = reps
        if reps != "auto":
            changes["precision"] = None   # a fixed number replaces reps: auto
    if seed is not None:
        changes["seed"] = seed
    if sets:
        changes["sets"] = {**exp.sets, **as_overrides(sets)}
    if changes:
        exp = load_experiment({**exp.model_dump(), **changes})
    n = exp.reps if exp.reps != "auto" else (n_reps or exp.precision.batch)
    psets = _policy_sets(exp.policies, n, imports=False)   # an experiment is data
    base = load_scenario(exp.scenario, exp.sets)
    out = []
    _CALS.clear()     # a calibration file may have changed since the last plan
    for pt in points(exp):
        cfg = load_scenario(base, pt) if pt else base
        cal = _calibration(cfg)
        cols = {factor_column(k): v for k, v in pt.items()}
        for p in psets:
            for r in range(n):
                key = run_key(run_spec(cfg, p, exp.seed, r, cal, record=record))
                out.append(((cfg, p, exp.seed, r, {}), key, cols))
    return exp, out


def run_experiment(experiment, *, store=None, reps=None, seed=None, sets=None,
                   engine: str | None = None, workers: int | None = None, client=None,
                   progress: bool | None = None, record: str = "ops",
                   allow_dirty: bool = False) -> Comparison:
    """Run an experiment (name, YAML path, mapping or :class:`~workbench.designs.Experiment`)
    into the store (``store``: a folder; default ``data/results/`` or
    ``$WORKBENCH_RESULTS``), skipping stored runs, and return its :class:`Comparison`.
    ``reps`` (a number or ``"auto"``), ``seed`` and ``sets`` override the experiment's own
    (and are recorded). ``progress``: a tqdm bar (None: only on a terminal or in Jupyter).
    ``record``: ``ops`` stores each run's summary and ops, ``summary`` only its summary.
    Runs go to a process pool of one worker per core unless ``engine``/``workers`` say
    otherwise (every engine stores the same tables). A checkout with uncommitted changes
    to what decides results is refused unless ``allow_dirty`` (the runs are then marked
    dirty in their ``run.json``, the manifest and every listing)."""
    from .comparison import _compare_record
    from .engines import default_engine
    _compare_record(record)
    started = now()
    tree = check_clean(allow_dirty)
    exp, _ = plan(experiment, reps=reps, seed=seed, sets=sets)
    st = store if isinstance(store, Store) else Store(store)
    if engine is None and workers is None and client is None:
        engine, workers = default_engine()
    kw = dict(reps=reps, seed=seed, sets=sets, engine=engine, workers=workers, client=client,
              progress=progress, started=started, record=record, tree=tree)
    with st:
        if exp.reps != "auto":
            return _run(st, experiment, None, **kw)
        p = exp.precision
        n, computed = p.batch, 0
        while True:
            c = _run(st, experiment, n, **kw)
            computed += c.manifest["runs_computed"]
            done, worst = precise_enough(c, p)
            if done or n >= p.max_reps:
                break
            n = min(n + p.batch, p.max_reps)
        c.manifest["precision"] = {**p.model_dump(), "reps": n, "reached": done,
                                   "worst_rel_half_width": worst}
        c.manifest["runs_computed"] = computed
        c.manifest["runs_from_store"] = len(set(c.manifest["runs"])) - computed
        write_experiment(st, exp.name, c)
    return c


def precise_enough(c: Comparison, p) -> tuple[bool, float]:
    """Whether every group's interval of ``p.metric`` has a half-width under ``p.rel`` of
    its mean, and the worst relative half-width (a metric that never varies is precise)."""
    import numpy as np
    if p.metric not in c.summary.columns:
        raise ConfigError(f"precision: {p.metric!r} is not a metric of the runs")
    s = c.stats([p.metric])
    half = (s["ci_high"] - s["ci_low"]) / 2
    rel = np.where(half == 0, 0.0, half / s["mean"].abs())
    rel = np.where(np.isfinite(rel), rel, np.inf)
    worst = float(rel.max()) if len(rel) else 0.0
    return worst <= p.rel, worst


def _run(st, experiment, n_reps, *, reps, seed, sets, engine, workers, client, progress,
         started, record="ops", tree=None) -> Comparison:
    from functools import partial
    exp, runs = plan(experiment, reps=reps, seed=seed, sets=sets, n_reps=n_reps,
                     record=record)
    one = _one if record == "ops" else partial(_one, record=record)
    todo, seen = [], set()
    for i, (_, key, _) in enumerate(runs):
        if key not in seen and not st.has_run(key):
            todo.append(i)
        seen.add(key)
    skipped = len(seen) - len(todo)
    _other_versions(st, [runs[i][0] for i in todo], record)
    _other_code(st, exp.name, len(todo))
    tree = tree if tree is not None else check_clean(True)
    meta = {"version": __version__, "git_commit": tree["git_commit"],
            "git_dirty": tree["git_dirty"], "code": code_fingerprint(), **environment()}
    # longest first (vCPUs x simulated time): a pool ends with short runs, not one long
    todo.sort(key=lambda i: -_cost(runs[i][0][0]))
    bar = _bar(len(todo), skipped, exp.name, progress)
    ticker = Ticker(len(todo), f"{exp.name}: ")
    try:
        for j, (summary, ops, _) in imap_jobs(one, [runs[i][0] for i in todo], engine,
                                           workers, client):
            job, key, _ = runs[todo[j]]
            st.put_run(key, summary, ops, {"run_id": summary["run_id"].iloc[0], **meta,
                                           "calibration_sha256": cal_sha(job[0]),
                                           "finished": now()})
            bar.update(1)
            ticker.update(1)
    finally:
        bar.close()
    c = assemble(st, exp, runs)
    prov = {**provenance(engine, workers, started), "git_commit": tree["git_commit"],
            "git_dirty": tree["git_dirty"], "dirty_files": tree["dirty_files"],
            "command": command_line(), "lock": lock_hash()}
    c.manifest = manifest(exp, runs, n_reps or exp.reps,
                          overrides={"reps": reps, "seed": seed, "sets": as_overrides(sets)},
                          prov=prov, computed=len(todo), skipped=skipped, metas=c.manifest,
                          record=record)
    write_experiment(st, exp.name, c)
    return c


_CALS: dict = {}


def _calibration(cfg):
    """The loaded calibration of a scenario (cached per calibration and timings)."""
    ck = json.dumps([cfg.calibration, cfg.timings], sort_keys=True, default=str)
    if ck not in _CALS:
        _CALS[ck] = load_calibration(cfg.calibration, cfg.timings)[0]
    return _CALS[ck]


def cal_sha(cfg) -> str:
    from .fingerprint import content_hash
    return content_hash(calibration_content(_calibration(cfg)))


def _other_code(st: Store, name: str, todo: int) -> None:
    """Say, in one line, when runs are computed because the stored experiment of the same
    name was made by other code or other SimPy/NumPy versions (they are never reused)."""
    import warnings
    if not todo or name not in st.experiments():
        return
    try:
        old = st.manifest(name).get("code") or {}
    except ConfigError:
        return
    now_ = {"fingerprint": code_fingerprint(), **environment()}
    changed = [k for k in now_ if old.get(k) is not None and old.get(k) != now_[k]]
    if changed:
        what = ", ".join("code" if k == "fingerprint" else f"{k} {old[k]} -> {now_[k]}"
                         for k in changed)
        warnings.warn(f"{name}: the stored runs were made by other {what}; {todo} runs are "
                      "computed again (stored runs are reused only for the same code)",
                      stacklevel=4)


def _cost(cfg) -> float:
    return cfg.n_vcpus * cfg.horizon_scaled_us


def _bar(total, skipped, name, progress):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"{name}: runs ({skipped} already stored)", unit="run",
                disable=None if progress is None else not progress, dynamic_ncols=True)


def assemble(st: Store, exp, runs) -> Comparison:
    """The experiment's tables from the stored runs, in design order."""
    summaries, opss, commits = [], [], set()
    for _, key, cols in runs:
        s, o, meta = st.get_run(key)
        summaries.append(_tag(s, cols))
        opss.append(_tag(o, cols))
        commits.add((meta.get("version"), meta.get("git_commit"), meta.get("git_dirty"),
                     meta.get("code")))
    factors = tuple(factor_column(k) for k in exp.factors)
    return Comparison(pd.concat(summaries, ignore_index=True),
                      pd.concat(opss, ignore_index=True), factors=factors,
                      manifest={"made_by": sorted(commits, key=str)})


def manifest(exp, runs, n_reps, overrides, prov, computed, skipped, metas,
             record: str = "ops") -> dict:
    from .store import FORMAT
    text = Path(exp.source).read_text() if exp.source and Path(exp.source).exists() else None
    made_by = [dict(zip(("version", "git_commit", "git_dirty", "code"), m))
               for m in metas.get("made_by", [])]
    cals = {}
    for job, _, _ in runs:
        cals.setdefault(json.dumps([job[0].calibration, job[0].timings], sort_keys=True,
                                   default=str), (_calibration(job[0]), job[0].calibration))
    archive = calibration_archive(cals.values())
    return {"format": FORMAT, "name": exp.name, "experiment": exp.model_dump(mode="json"),
            "experiment_file": exp.source or None, "experiment_text": text,
            "overrides": {k: v for k, v in overrides.items() if v not in (None, {})},
            "factors": {k: factor_column(k) for k in exp.factors},
            "seeds": {"root": exp.seed, "replications": list(range(n_reps))},
            "runs": [key for _, key, _ in runs], "runs_computed": computed,
            "runs_from_store": skipped, "runs_made_by": made_by, "record": record,
            "code": {"fingerprint": code_fingerprint(), **environment()},
            "calibrations": archive["calibrations"], "archive": archive["files"],
            "provenance": prov}


def write_experiment(st: Store, name: str, c: Comparison) -> None:
    st.put_file(name, "summary.parquet", lambda p: c.summary.to_parquet(p, index=False))
    st.put_file(name, "ops.parquet", lambda p: c.ops.to_parquet(p, index=False))
    st.put_file(name, "table.csv", lambda p: c.table.to_csv(p, index=False))
    st.put_file(name, "stats.csv", lambda p: c.stats().to_csv(p, index=False))
    st.put_file(name, "manifest.json",
                lambda p: p.write_text(json.dumps(c.manifest, indent=1, default=str)))


def load_stored(name: str, store=None) -> Comparison:
    """A stored experiment's :class:`Comparison`, checked."""
    st = store if isinstance(store, Store) else Store(store)
    if not isinstance(name, str):
        raise ConfigError(f"experiment: a stored experiment's name, not {short(name)}")
    m = st.manifest(name)
    summary = st.table(name, "summary.parquet")
    ops = st.table(name, "ops.parquet")
    factors = tuple((m.get("factors") or {}).values())
    missing = [f for f in ("policy", "replication", *factors) if f not in summary.columns]
    if missing:
        raise ConfigError(f"{st.experiment_dir(name) / 'summary.parquet'}: no column "
                          f"{missing[0]!r}")
    return Comparison(summary, ops, factors=factors, manifest=m)


def reproduce(manifest, *, store=None, engine=None, workers=None, progress=None,
              allow_dirty: bool = False) -> tuple[Comparison, dict]:
    """Run a stored experiment again from its manifest (a ``manifest.json`` path or its
    mapping) into ``store``: the same design, replications and record level. A calibration
    file that is missing here or differs from the one the manifest archived is restored
    from the archive (into a temporary folder). Returns the new :class:`Comparison` and
    ``{"keys_match", "differs"}``: whether every run key is the manifest's (same code,
    calibration content, SimPy/NumPy, seeds), and if not, what differs."""
    import hashlib
    import tempfile
    m = manifest if isinstance(manifest, dict) else json.loads(Path(manifest).read_text())
    exp = dict(m["experiment"])
    exp.pop("source", None)
    n = len((m.get("seeds") or {}).get("replications") or [])
    if exp.get("reps") == "auto":
        exp["reps"], exp["precision"] = n, None
    files = m.get("archive") or {}
    for rec in (m.get("calibrations") or {}).values():
        want = rec.get("file_sha256")
        if not want or want not in files:
            continue
        try:
            have = hashlib.sha256(check_path_bytes(rec["file"])).hexdigest()
        except (ConfigError, OSError):
            have = None
        if have != want:
            folder = Path(tempfile.mkdtemp(prefix="workbench-calibration-"))
            for digest in [want, *rec.get("samples", {}).values()]:
                restore(files[digest], folder)
            exp["sets"] = {**(exp.get("sets") or {}),
                           "calibration": str(folder / files[want]["name"])}
        break
    _, runs = plan(exp, record=m.get("record") or "ops")
    keys = [k for _, k, _ in runs]
    differs = []
    here = {"fingerprint": code_fingerprint(), **environment()}
    for k, v in (m.get("code") or {}).items():
        if here.get(k) != v:
            differs.append(f"{'code fingerprint' if k == 'fingerprint' else k}: "
                           f"{str(v)[:12]} in the manifest, {str(here.get(k))[:12]} here")
    cals = {cal_sha(job[0]) for job, _, _ in runs}
    if set(m.get("calibrations") or {}) and cals != set(m["calibrations"]):
        differs.append("calibration content differs from the archived one")
    if keys != m.get("runs") and not differs:
        differs.append("run keys differ (scenario, policies or versions)")
    c = run_experiment(exp, store=store, engine=engine, workers=workers, progress=progress,
                       record=m.get("record") or "ops", allow_dirty=allow_dirty)
    return c, {"keys_match": keys == m.get("runs"), "differs": differs}


def check_path_bytes(source) -> bytes:
    from ..core.paths import DATA
    from ..core.safeio import check_path
    p = check_path(source, "calibration")
    return (DATA / "calibration" / f"{source}.yaml" if not p.suffix else p).read_bytes()


def code_status(m: dict) -> dict:
    """Whether a stored experiment's runs (its manifest ``m``) are what the current code,
    calibration and SimPy/NumPy would compute: its design is planned again and the run
    keys compared. ``{"code": "current"|"stale"|"unknown", "stale_runs", "dirty"}``;
    ``dirty``: some of its runs were made from a tree with uncommitted changes."""
    dirty = bool((m.get("provenance") or {}).get("git_dirty")) or any(
        x.get("git_dirty") for x in m.get("runs_made_by") or [])
    stored = m.get("runs") or []
    try:
        n = len((m.get("seeds") or {}).get("replications") or []) or None
        _, runs = plan(m["experiment"], n_reps=n, record=m.get("record") or "ops")
    except (ConfigError, KeyError, TypeError, ValueError):
        return {"code": "unknown", "stale_runs": None, "dirty": dirty}
    stale = sum(a != b for a, b in zip(stored, (k for _, k, _ in runs))) + abs(
        len(stored) - len(runs))
    return {"code": "stale" if stale else "current", "stale_runs": stale, "dirty": dirty}


TABLES = ("summary", "ops", "table", "stats", "latency", "tails")


def results(experiment: str | None = None, *, store=None, table: str = "summary"
            ) -> pd.DataFrame:
    """A tidy DataFrame from the store: without ``experiment``, one row per stored
    experiment; else its ``table``: ``summary`` (one row per run, a column per factor),
    ``ops``, ``table`` (means per group), ``stats`` (mean, sd, t-interval per metric),
    ``latency`` or ``tails`` (bootstrap intervals of p99/p99.9)."""
    st = store if isinstance(store, Store) else Store(store)
    if experiment is None:
        rows = []
        for name in st.experiments():
            m = st.manifest(name)
            e = m.get("experiment", {})
            rows.append({"experiment": name, "scenario": e.get("scenario"),
                         "factors": ", ".join(m.get("factors") or {}) or "-",
                         "policies": len(e.get("policies") or []),
                         "reps": len((m.get("seeds") or {}).get("replications") or []),
                         "runs": len(m["runs"]), **code_status(m),
                         "finished": (m.get("provenance") or {}).get("finished")})
        return pd.DataFrame(rows, columns=["experiment", "scenario", "factors", "policies",
                                           "reps", "runs", "code", "stale_runs", "dirty",
                                           "finished"])
    if table not in TABLES:
        raise ConfigError(f"table must be one of {', '.join(TABLES)}, not {short(table)}")
    c = load_stored(experiment, st)
    if table in ("summary", "ops"):
        return getattr(c, table)
    return c.stats() if table == "stats" else getattr(c, table)() if table == "tails" \
        else getattr(c, table)
