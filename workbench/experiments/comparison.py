"""Layer 6: one run, replications and comparisons, and the results on disk.

``run`` builds a TD for a scenario and a policy set, runs it and returns the four tables.
``compare`` runs several policies on the same replications: the seed of replication r
depends only on (seed, r), so every policy sees the same workload (common random numbers).
"""
from __future__ import annotations

import json
import os
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
from ..core.limits import Ticker, as_budget, check_config, check_runs, check_sweep
from ..policies import PolicySet, resolve_policy
from ..policies.registry import user_policy_error
from ..core.outdir import check_out_dir, write_folder  # noqa: F401  (re-exported)
from ..core.safeio import check_path, short
from ..core.scenarios import load_scenario
from .store import now as _now, provenance

TABLES = ("calls", "ops", "vcpus", "summary")


# the columns a table read back from a result folder must have
_TAGS = ("run_id", "policy", "seed", "replication")
NEEDS = {"calls": (*_TAGS, "leaf", "caller", "status"), "ops": (*_TAGS, "op", "latency_us"),
         "vcpus": (*_TAGS, "vcpu", "role"), "summary": (*_TAGS, "scenario", "horizon_us"),
         "events": ("t_us", "event", "actor", "detail")}
MAX_TABLE_BYTES = 4 << 30         # a parquet table of a result folder
MAX_MANIFEST_BYTES = 64 << 20


class _ResultFolder:
    """Reading a result folder someone may have handed over: the folder and each file
    must be real (no link, FIFO or device), of bounded size, and well formed; any defect is
    one line naming the file."""

    def __init__(self, path, what: str):
        import stat
        self.path, self.what = Path(check_path(path, what)), what
        try:
            st = os.lstat(self.path)
        except OSError as err:
            raise ConfigError(f"{what} {short(str(path), 80)}: cannot open ({err.strerror})"
                              ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{what} {short(str(path), 80)}: not a folder (a link or a file)")

    def has(self, name: str) -> bool:
        return os.path.lexists(self.path / name)

    def bad(self, name: str, why: str):
        raise ConfigError(f"{short(str(self.path), 100)}: not a readable {self.what} "
                          f"({name}: {why})")

    def table(self, name: str, needs) -> pd.DataFrame:
        from ..core.safeio import open_regular
        with open_regular(self.path / name, self.what, MAX_TABLE_BYTES, follow=False) as fh:
            try:
                df = pd.read_parquet(fh)
            except Exception as err:     # any unreadable file is a corrupt result
                self.bad(name, type(err).__name__)
        missing = [c for c in needs if c not in df.columns]
        if missing:
            self.bad(name, f"no column {missing[0]!r}")
        return df

    def manifest(self) -> dict:
        from ..core.safeio import read_bytes
        data = read_bytes(self.path / "manifest.json", self.what, MAX_MANIFEST_BYTES,
                          follow=False)
        try:
            m = json.loads(data)
        except (ValueError, RecursionError):
            self.bad("manifest.json", "not JSON")
        if not isinstance(m, dict):
            self.bad("manifest.json", "not a mapping")
        return m


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
        """A folder :meth:`save` wrote, checked: each table has its columns (a calls
        table is not taken for ops), the manifest is a mapping; no link is followed."""
        f = _ResultFolder(path, "result")
        tables = {n: f.table(f"{n}.parquet", NEEDS[n]) for n in TABLES}
        manifest = f.manifest()
        events = f.table("events.parquet", NEEDS["events"]) if f.has("events.parquet") \
            else None
        if len(tables["summary"]) != 1:
            f.bad("summary.parquet", "not the one-row summary of a run")
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
    try:
        td = Td(cfg, pset, cal, seed, replication, record=record).run(budget)
    except Exception as err:       # a policy of the user's that raises is their error
        theirs = user_policy_error(pset, err)
        if theirs is None:
            raise
        raise theirs from None
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


def _level(level) -> float:
    """A confidence level: a number strictly between 0 and 1 (0.95), never 95 or 2."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"level must be a number between 0 and 1 (0.95), not {short(level)}")
    return float(level)


def _metrics(metrics):
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return [metrics]
    if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError(f"metrics: a list of metric names, not {short(metrics)}")
    return list(metrics)


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
        return describe(self.summary, by=self.by, metrics=_metrics(metrics),
                        level=_level(level))

    def diff(self, baseline: str, metrics=None, level: float = 0.95) -> pd.DataFrame:
        """Paired per-replication differences of every other policy against ``baseline``
        (common random numbers; latency and fairness over pairs of complete runs), with
        the t-interval, ``p``, the Holm-adjusted ``p_holm`` over the table's ``family``
        and ``star``."""
        from .stats import paired_diff
        if not isinstance(baseline, str):
            raise ConfigError(f"baseline: a policy name, not {short(baseline)}")
        return paired_diff(self.summary, baseline, by=self.by, metrics=_metrics(metrics),
                           level=_level(level))

    def tails(self, level: float = 0.95) -> pd.DataFrame:
        """p99 and p99.9 latency per policy and op: each complete run's, their mean over
        replications and its t-interval, where every run had enough ops for its coverage
        (``enough``; else the interval is NaN and ``min_ops`` says what it needs)."""
        from .stats import latency_intervals
        return latency_intervals(self.ops, by=self.by, summary=self.summary,
                                 level=_level(level))

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
        """A folder :meth:`save` wrote, checked: the tables have their columns, a sweep
        names its ``param`` and has its ``value`` column, every factor is a column."""
        f = _ResultFolder(path, "comparison")
        summary = f.table("summary.parquet", (*NEEDS["summary"], "vm_bugged", "guest_panics"))
        ops = f.table("ops.parquet", NEEDS["ops"])
        manifest = f.manifest()
        param, factors = manifest.get("param"), manifest.get("factors") or []
        if param is not None and not isinstance(param, str) or not isinstance(factors, list):
            f.bad("manifest.json", "param must be text and factors a list")
        if (param is None) != ("value" not in summary.columns):
            f.bad("manifest.json", "a sweep (a value column) without its param, or the reverse")
        missing = [x for x in factors if x not in summary.columns]
        if missing:
            f.bad("summary.parquet", f"no column for factor {short(missing[0])}")
        vcpus = f.table("vcpus.parquet", NEEDS["vcpus"]) if f.has("vcpus.parquet") else None
        return cls(summary, ops, param, tuple(factors), manifest, vcpus)


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
        ticker = Ticker(len(jobs))
        for i, r in imap_jobs(one, jobs, engine, workers, client):
            results[i] = r
            bar.update(1)
            ticker.update(1)
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


def _policy_sets(policies, reps, imports: bool = True) -> list[PolicySet]:
    """The policy sets of a comparison; ``imports=False`` for specs read from data (an
    experiment file): a ``module:Class`` there is refused, never imported."""
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be a whole number >= 1, not {short(reps)}")
    if isinstance(policies, (str, dict, PolicySet)):
        policies = [policies]
    if not isinstance(policies, (list, tuple)) and policies is not None:
        raise ConfigError(f"policies: expected a list of policy specs, not {short(policies)}")
    check_runs(reps * len(policies or []))
    psets = [resolve_policy(p, imports=imports) for p in (policies or [])]
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
    if not isinstance(sweeps, dict) or not sweeps or \
            not all(isinstance(c, Comparison) for c in sweeps.values()):
        raise ConfigError(f"facet_stats: expected what sweep_facets returns (a mapping of "
                          f"facet value to Comparison), not {short(sweeps)}")
    for what, key in (("param", param), ("facet", facet)):
        if not isinstance(key, str):
            raise ConfigError(f"facet_stats: {what} is a dotted scenario key, not {short(key)}")

    def label(v):
        return ("on" if v else "off") if isinstance(v, bool) else v
    return pd.concat([c.stats(metrics).rename(columns={"value": param}).assign(**{facet: label(v)})
                      for v, c in sweeps.items()], ignore_index=True)


__all__ = ["RunResult", "Comparison", "run", "compare", "sweep", "sweep_facets", "facet_stats",
           "PolicySet", "ScenarioConfig"]
