"""Layer 6: one run, replications and comparisons, and the results on disk.

``run`` builds a TD for a scenario and a policy set, runs it and returns the four tables.
``compare`` runs several policies on the same replications: the seed of replication r
depends only on (seed, r), so every policy sees the same workload (common random numbers).
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.version import __version__
from ..core.config import ConfigError, ScenarioConfig, as_overrides, load_calibration
from .designs import check_factor, check_values
from .engines import imap_jobs
from .metrics import (calls_table, compare_table, latency_table, ops_table, summary_table,
                      vcpus_table)
from ..model.td import Td
from ..core.records import RECORD_LEVELS
from ..core.limits import as_budget, check_config, check_runs, check_sweep
from ..policies import PolicySet, resolve_policy
from ..core.safeio import check_path, out_path, probe_writable, short
from ..core.scenarios import load_scenario
from .store import now as _now, provenance

TABLES = ("calls", "ops", "vcpus", "summary")


RESULT_MARKERS = ("manifest.json", "table.csv")
# every file a result folder of this tool may hold (RunResult.save, Comparison.save)
RESULT_FILES = {"manifest.json", "table.csv", "latency.csv", "calls.parquet", "ops.parquet",
                "vcpus.parquet", "summary.parquet", "events.parquet"}


def check_out_dir(out_dir) -> Path:
    """Refuse, before any work, a place a result cannot go or must not replace: an existing
    file, a folder this tool did not write, an unwritable parent."""
    out = out_path(out_dir)        # a path at all: not empty, '.', NUL, too long (safeio)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a results folder")
    if out.is_dir() and any(out.iterdir()):
        if not any((out / m).exists() for m in RESULT_MARKERS):
            raise ConfigError(f"--out {out}: folder holds files that are not a workbench "
                              "result; choose a new or empty folder")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RESULT_FILES)
        if foreign:
            raise ConfigError(f"--out {out}: holds {foreign[0]}, which this tool did not "
                              "write; replacing the folder would delete it (choose another)")
    try:
        probe_writable(out)        # creates nothing: the folder appears only with the result
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror})") from None
    return out


def _mkdir(parent: Path, prefix: str) -> Path:
    """A new folder with the user's normal permissions (``mkdtemp`` would make it 0700)."""
    while True:
        p = parent / f"{prefix}{secrets.token_hex(4)}"
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
        tmp = _mkdir(out.parent, f".{out.name[:200]}.new.")
        old = _mkdir(out.parent, f".{out.name[:200]}.old.") / "prev"
        write(tmp)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException as err:
        if old is not None and old.exists() and not out.exists():
            try:
                old.rename(out)
            except OSError:
                keep_old = True
                raise ConfigError(f"--out {short(str(out), 80)}: cannot write the result, and "
                                  f"the previous one is kept in {short(str(old), 120)}") from None
        if isinstance(err, OSError):     # disk full, permissions changed, ...
            raise ConfigError(f"--out {short(str(out), 80)}: cannot write the result "
                              f"({err.strerror or type(err).__name__}); nothing was "
                              "changed") from None
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not keep_old:
            shutil.rmtree(old.parent, ignore_errors=True)
    return out


@dataclass
class RunResult:
    """The tables of one run (pandas DataFrames) and its manifest."""
    calls: pd.DataFrame
    ops: pd.DataFrame
    vcpus: pd.DataFrame
    summary: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    events: pd.DataFrame | None = None

    def save(self, out_dir) -> Path:
        """Write the tables as parquet plus ``manifest.json``, replacing a folder whole."""
        def write(tmp: Path) -> None:
            for name in TABLES:
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            if self.events is not None:
                self.events.to_parquet(tmp / "events.parquet", index=False)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
        return write_folder(out_dir, write)

    @classmethod
    def load(cls, path) -> "RunResult":
        path = Path(check_path(path, "result"))
        try:
            tables = {n: pd.read_parquet(path / f"{n}.parquet") for n in TABLES}
            manifest = json.loads((path / "manifest.json").read_text())
            ev = path / "events.parquet"
            events = pd.read_parquet(ev) if ev.exists() else None
        except Exception as err:  # any unreadable file is a corrupt result
            raise ConfigError(f"{path}: not a readable result ({type(err).__name__})") from None
        return cls(**tables, manifest=manifest, events=events)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def check_record(record) -> str:
    if record not in RECORD_LEVELS:
        raise ConfigError(f"record must be one of {', '.join(RECORD_LEVELS)}, not "
                          f"{short(record)}")
    return record


def run(scenario="lazy-accept-boot", *, seed: int = 0, policy=None, replication: int = 0,
        sets=None, calibration: str | None = None, budget=None,
        record: str = "calls") -> RunResult:
    """Run one scenario (name, path or config) once. ``policy`` is a preset name, a policy
    name, a spec mapping or a :class:`PolicySet`; default: the scenario's (``upstream``),
    whose ``policy:`` is data and so never imports code. ``budget``: a
    :class:`~workbench.limits.Budget` (events and wall-clock time of the run).
    ``record``: what is kept per call and op: ``calls`` (every table), ``ops`` (the calls
    table is left empty) or ``summary`` (the calls and ops tables are left empty; memory
    no longer grows with the horizon). The summary row is the same at every level."""
    check_record(record)
    _check_seed(seed)
    _check_seed(replication, "replication")
    budget = as_budget(budget)
    cfg = load_scenario(scenario, sets)
    check_config(cfg)
    pset = (resolve_policy(cfg.policy, imports=False) if policy is None
            else resolve_policy(policy))
    cal, _ = load_calibration(calibration or cfg.calibration, cfg.timings)
    td = Td(cfg, pset, cal, seed, replication, record=record).run(budget)
    tags = {"run_id": f"{cfg.name}/{pset.name}/s{seed}/r{replication}", "scenario": cfg.name,
            "policy": pset.name, "seed": seed, "replication": replication}
    calls = calls_table(td.rec.calls, tags)
    ops = ops_table(td.rec.ops, tags, {v.name: v.role for v in td.vcpus})
    vcpus = vcpus_table(td, tags)
    summary = summary_table(td, calls if record == "calls" else None,
                            ops if record != "summary" else None, vcpus, tags)
    events = pd.DataFrame(td.rec.events, columns=["t_us", "event", "actor", "detail"])
    manifest = {"scenario": cfg.model_dump(mode="json"), "policy": pset.spec(), "seed": seed,
                "replication": replication, "calibration": cal.model_dump(),
                "version": __version__, "git_commit": git_commit(),
                "events": len(events), "record": record}
    return RunResult(calls, ops, vcpus, summary, manifest, events)


def _one(args, record: str = "ops") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One run of a comparison: only its summary, ops and per-vCPU table are kept
    (``record`` ``ops``), or no ops (``summary``: the ops table comes back empty); the
    per-vCPU table is a few rows, kept at every level."""
    cfg, policy, seed, rep, _ = args
    r = run(cfg, seed=seed, policy=policy, replication=rep, record=record)
    return r.summary, r.ops, r.vcpus


def _tag(df: pd.DataFrame, extra: dict) -> pd.DataFrame:
    for k, v in extra.items():
        df[k] = v
    return df


@dataclass
class Comparison:
    """Per-run summary rows, per-op rows, and the one-row-per-policy table. A sweep adds
    the swept parameter and its ``value`` to every row, and one table row per value; an
    experiment (a design of several factors) adds one column per factor instead."""
    summary: pd.DataFrame
    ops: pd.DataFrame
    param: str | None = None
    factors: tuple = ()
    manifest: dict = field(default_factory=dict)
    vcpus: pd.DataFrame | None = None    # one row per vCPU and run (compare/sweep; not the store)

    @property
    def by(self) -> list[str]:
        """The columns that group replications into table rows (besides ``policy``)."""
        return list(self.factors) if self.factors else (["value"] if self.param else [])

    @property
    def table(self) -> pd.DataFrame:
        """One row per policy (and swept value): runs and complete runs; outcomes as runs
        that ended so; costs as means over runs; latency and fairness as means over
        complete runs; the scenario's headline metric always among them."""
        head = self.headline
        return compare_table(self.summary, by=self.by, extra=[head] if head else ())

    @property
    def headline(self) -> str | None:
        """The scenario's headline metric (its YAML's ``headline:``), if known."""
        sc = (self.manifest or {}).get("scenario")
        if isinstance(sc, dict):
            return sc.get("headline")
        name = sc or (self.manifest or {}).get("experiment", {}).get("scenario")
        if not name and "scenario" in self.summary.columns and len(self.summary):
            name = self.summary["scenario"].iloc[0]
        try:
            return load_scenario(name).headline if name else None
        except ConfigError:
            return None

    @property
    def latency(self) -> pd.DataFrame:
        """One row per policy and op kind: latency percentiles of the ops of all complete
        replications pooled (``pooled_p99_us``, ...)."""
        return latency_table(self.ops, by=self.by, summary=self.summary)

    def complete_ops(self) -> pd.DataFrame:
        """The ops of the runs whose latency counts: a policy's complete runs (none where
        fewer than two remain after some stopped early): what latency figures draw."""
        from .definitions import complete, usable
        if self.ops is None or not len(self.ops):
            return self.ops
        s = self.summary.assign(_ok=complete(self.summary))
        keep = pd.concat([usable(g["_ok"]) for _, g in
                          s.groupby([*self.by, "policy"], sort=False)])
        return self.ops[self.ops["run_id"].isin(set(s.loc[keep[keep].index, "run_id"]))]

    def verdicts(self) -> pd.DataFrame:
        """One row per policy (and group): how its runs ended, and its verdict ``line``."""
        from .verdicts import verdicts
        return verdicts(self.summary, self.by)

    def report(self, baseline: str | None = None) -> str:
        """The comparison as text: verdict lines first, then outcomes, latency, intervals
        and (given ``baseline``) the paired differences (what ``workbench compare``
        prints)."""
        from .report import comparison_report
        return comparison_report(self, baseline)

    def __repr__(self) -> str:
        from .verdicts import verdict_lines
        head = self.summary["scenario"].iloc[0] if len(self.summary) else "?"
        reps = self.summary.groupby([*self.by, "policy"]).size()
        return "\n".join([f"<Comparison {head}: {len(reps)} policy groups x "
                          f"{int(reps.max()) if len(reps) else 0} replications; "
                          ".report() for the tables>",
                          *verdict_lines(self.summary, self.by)])

    __str__ = report

    def stats(self, metrics=None, level: float = 0.95) -> pd.DataFrame:
        """Tidy: per group, policy and metric, ``runs``, ``n``, ``mean``, ``sd`` and the
        interval of the metric's kind (``ci_low``, ``ci_high``, ``interval``): outcomes
        exact, counts never below 0, latency and fairness over complete runs only.
        Default: every numeric metric."""
        from .stats import describe
        return describe(self.summary, by=self.by, metrics=metrics, level=level)

    def diff(self, baseline: str, metrics=None, level: float = 0.95) -> pd.DataFrame:
        """Paired per-replication differences of every other policy against ``baseline``
        (common random numbers; latency and fairness over pairs of complete runs), with
        the t-interval, ``p``, the Holm-adjusted ``p_holm`` over the table's ``family``
        and ``star``."""
        from .stats import paired_diff
        return paired_diff(self.summary, baseline, by=self.by, metrics=metrics, level=level)

    def tails(self, level: float = 0.95, **_ignored) -> pd.DataFrame:
        """p99 and p99.9 latency per policy and op: each complete run's, their mean over
        replications and its t-interval, where every run had enough ops for its coverage
        (``enough``; else the interval is NaN and ``min_ops`` says what it needs)."""
        from .stats import latency_intervals
        return latency_intervals(self.ops, by=self.by, summary=self.summary, level=level)

    def warmup(self, warmup_us: float) -> "Comparison":
        """A copy without the operations that started before ``warmup_us``; the per-op
        latency columns of the summary are recomputed from the rest."""
        from .stats import warmup_cut
        if self.manifest.get("record") == "summary":
            raise ConfigError("a warm-up cut recomputes latencies from the ops, which a "
                              "comparison made with record='summary' did not keep")
        summary, ops = warmup_cut(self.summary, self.ops, warmup_us)
        return Comparison(summary, ops, self.param, self.factors,
                          {**self.manifest, "warmup_us": warmup_us}, self.vcpus)

    def save(self, out_dir) -> Path:
        """``summary.parquet``, ``ops.parquet``, ``table.csv`` and ``latency.csv``."""
        def write(tmp: Path) -> None:
            self.summary.to_parquet(tmp / "summary.parquet", index=False)
            self.ops.to_parquet(tmp / "ops.parquet", index=False)
            if self.vcpus is not None:
                self.vcpus.to_parquet(tmp / "vcpus.parquet", index=False)
            self.table.to_csv(tmp / "table.csv", index=False)
            self.latency.to_csv(tmp / "latency.csv", index=False)
            (tmp / "manifest.json").write_text(json.dumps(
                {"param": self.param, "factors": list(self.factors), **self.manifest},
                indent=1, default=str))
        return write_folder(out_dir, write)

    @classmethod
    def load(cls, path) -> "Comparison":
        path = Path(check_path(path, "comparison"))
        try:
            summary = pd.read_parquet(path / "summary.parquet")
            ops = pd.read_parquet(path / "ops.parquet")
            manifest = json.loads((path / "manifest.json").read_text())
            param, factors = manifest.get("param"), tuple(manifest.get("factors") or ())
            vcpus = (pd.read_parquet(path / "vcpus.parquet")
                     if (path / "vcpus.parquet").exists() else None)
        except Exception as err:
            raise ConfigError(f"{path}: not a readable comparison ({type(err).__name__})") from None
        return cls(summary, ops, param, factors, manifest, vcpus)


def _gather(jobs, engine, workers, client, param=None, manifest=None,
            record: str = "ops") -> Comparison:
    from functools import partial
    import sys

    from tqdm import tqdm
    started = _now()
    results = [None] * len(jobs)
    # a text bar on a terminal only (notebooks keep their outputs as they were)
    with tqdm(total=len(jobs), unit="run", desc="runs", file=sys.stderr,
              disable=not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())) as bar:
        one = _one if record == "ops" else partial(_one, record=record)
        for i, r in imap_jobs(one, jobs, engine, workers, client):
            results[i] = r
            bar.update(1)
    summary, ops, vcpus = (pd.concat([_tag(r[k], j[4]) for r, j in zip(results, jobs)],
                                     ignore_index=True) for k in range(3))
    prov = provenance(engine, workers, started)
    return Comparison(summary, ops, param, manifest={**(manifest or {}), "provenance": prov},
                      vcpus=vcpus)


def _compare_record(record) -> None:
    """A comparison returns summaries and ops: it never keeps a calls table."""
    if check_record(record) == "calls":
        raise ConfigError("record: a comparison keeps no calls table; use 'ops' or 'summary'")


MAX_SEED = 2**63 - 1    # what a parquet int64 column holds


def _check_seed(seed, what: str = "seed") -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be a whole number from 0 to 2**63-1, not {short(seed)}")


def _policy_sets(policies, reps) -> list[PolicySet]:
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be a whole number >= 1, not {short(reps)}")
    if isinstance(policies, (str, dict, PolicySet)):
        policies = [policies]
    if not isinstance(policies, (list, tuple)) and policies is not None:
        raise ConfigError(f"policies: expected a list of policy specs, not {short(policies)}")
    check_runs(reps * len(policies or []))
    psets = [resolve_policy(p) for p in (policies or [])]
    if not psets:
        raise ConfigError("give at least one policy")
    names = [p.name for p in psets]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"policy {short(dup)} is given twice")
    return psets


def compare(scenario, policies=("upstream",), *, reps: int = 3, seed: int = 0, sets=None,
            engine: str | None = None, workers: int | None = None, client=None,
            record: str = "ops", victims: bool = False) -> Comparison:
    """Every policy on the same ``reps`` replications (common random numbers). ``engine``:
    serial, processes or dask (default: processes when ``workers`` > 1, else serial).
    ``record``: ``ops`` keeps the summary and ops tables (no calls table is built),
    ``summary`` only the summary (``ops`` and ``latency`` come back empty).
    ``victims``: also run every policy and replication without the scenario's hostile
    vCPUs and add ``victim_slowdown`` (:func:`victim_slowdown`) to the summary."""
    _compare_record(record)
    _check_seed(seed)
    cfg = load_scenario(scenario, sets)
    check_config(cfg)
    psets = _policy_sets(policies, reps)
    jobs = [(cfg, p, seed, r, {}) for p in psets for r in range(reps)]
    c = _gather(jobs, engine, workers, client, record=record, manifest={
        "scenario": cfg.model_dump(mode="json"), "overrides": as_overrides(sets),
        "policies": [p.spec() for p in psets], "reps": reps, "seed": seed, "record": record})
    if victims:
        free = without_attackers(cfg)
        alone = _gather([(free, p, seed, r, {}) for p in psets for r in range(reps)],
                        engine, workers, client, record="summary")
        c.summary = victim_slowdown(c.summary, alone.summary)
        c.manifest["victims"] = "victim_slowdown: each run again without the hostile vCPUs"
    return c


def without_attackers(cfg: ScenarioConfig) -> ScenarioConfig:
    """The same scenario without its hostile vCPU groups (a ConfigError if it has none)."""
    from ..core.records import HOSTILE_ROLES
    kept = [g for g in cfg.vcpus if g.role not in HOSTILE_ROLES]
    if len(kept) == len(cfg.vcpus):
        raise ConfigError(f"victims: scenario {cfg.name} has no hostile vCPUs "
                          f"({', '.join(HOSTILE_ROLES)})")
    return cfg.model_copy(update={"vcpus": tuple(kept)})


def victim_slowdown(attacked: pd.DataFrame, alone: pd.DataFrame) -> pd.DataFrame:
    """``attacked`` with ``victim_slowdown``: per policy and replication, the well-behaved
    vCPUs' useful work (pages accepted and conversions) in the run without the hostile
    vCPUs over the same in the run with them (same seed: 1 = no harm, 2 = half the work)."""
    work = lambda s: s["pages_accepted"] + s["conversions_ok"]   # noqa: E731
    key = ["policy", "replication", "seed"]
    free = alone.assign(_free=work(alone))[[*key, "_free"]]
    out = attacked.merge(free, on=key, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["victim_slowdown"] = out["_free"] / work(out)
    return out.drop(columns="_free")


def sweep(scenario, param: str, values, policies=("upstream",), *, reps: int = 3,
          seed: int = 0, sets=None, engine: str | None = None, workers: int | None = None,
          client=None, record: str = "ops") -> Comparison:
    """``compare`` at each value of one scenario parameter (``"vcpus.1.count"``,
    ``"timings.sept_add_us"``, ``"module.host_priority"``). Replication r of every value
    and policy uses the same seed. ``record``: as for :func:`compare`."""
    _compare_record(record)
    _check_seed(seed)
    check_sweep(param, values, policies, reps)     # types and size, before any list is built
    values = list(values or [])
    if not values:
        raise ConfigError(f"give at least one value for {param}")
    check_factor(param, "--param")
    check_values(param, values, "--values")
    base = as_overrides(sets)
    cfgs = [(v, load_scenario(scenario, {**base, param: v})) for v in values]
    for _, cfg in cfgs:
        check_config(cfg)
    psets = _policy_sets(policies, reps)
    jobs = [(cfg, p, seed, r, {"param": param, "value": v})
            for v, cfg in cfgs for p in psets for r in range(reps)]
    return _gather(jobs, engine, workers, client, param, record=record, manifest={
        "scenario": cfgs[0][1].model_dump(mode="json"), "overrides": base, "values": values,
        "policies": [p.spec() for p in psets], "reps": reps, "seed": seed, "record": record})


def sweep_facets(scenario, param: str, values, policies=("upstream",), *, facet: str,
                 facet_values, sets=None, **kw) -> dict:
    """:func:`sweep` of ``param`` once per value of a second parameter ``facet`` (a panel
    each, never merged into one line): ``{facet value: Comparison}``; every other keyword
    as for :func:`sweep`. :func:`facet_stats` stacks their intervals for
    ``plots.interval_lines(..., facet=facet)``."""
    check_factor(facet, "facet")
    facet_values = list(facet_values or [])
    if not facet_values:
        raise ConfigError(f"give at least one value for {facet}")
    check_values(facet, facet_values, "facet_values")
    base = as_overrides(sets)
    return {fv: sweep(scenario, param, values, policies, sets={**base, facet: fv}, **kw)
            for fv in facet_values}


def facet_stats(sweeps: dict, param: str, facet: str, metrics=None) -> pd.DataFrame:
    """The stats of :func:`sweep_facets`' comparisons in one table, with a column for
    ``param`` and one for ``facet`` (a switch's value reads ``on``/``off``)."""
    def label(v):
        return ("on" if v else "off") if isinstance(v, bool) else v
    return pd.concat([c.stats(metrics).rename(columns={"value": param}).assign(**{facet: label(v)})
                      for v, c in sweeps.items()], ignore_index=True)


__all__ = ["RunResult", "Comparison", "run", "compare", "sweep", "sweep_facets", "facet_stats",
           "PolicySet", "ScenarioConfig"]
