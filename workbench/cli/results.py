"""``workbench sweep EXPERIMENT``, ``results`` and ``export``: experiments through the
results store."""
from __future__ import annotations

from .analysis import robustness_report
from .common import (SWEEP_METRICS, UsageError, _cluster, _fmt, _headline, _headline_of,
                     _session, _verdicts)


def sweep_experiment(args) -> None:
    from ..experiments.runner import run_experiment
    for flag in ("values", "policies", "out"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} goes with --param; an experiment file names its own "
                             "factors and policies and writes to the store (--store)")
    engine, client = _cluster(args)
    c = run_experiment(args.scenario, store=args.store, reps=args.reps, seed=args.seed,
                       sets=args.set, engine=engine, workers=args.workers, client=client,
                       record=args.record, allow_dirty=args.allow_dirty)
    print(experiment_report(c))


def experiment_report(c, baseline=None) -> str:
    import numpy as np

    from ..experiments.stats import with_intervals
    m = c.manifest
    e, prov = m.get("experiment", {}), m.get("provenance", {})
    dirty = " (uncommitted changes)" if prov.get("git_dirty") else ""
    head = [f"{m.get('name')}: scenario {e.get('scenario')}, factors "
            f"{', '.join(m.get('factors') or {}) or '-'}, {len(e.get('policies') or [])} "
            f"policies x {len((m.get('seeds') or {}).get('replications') or [])} replications "
            f"(seed {e.get('seed')}, common random numbers)",
            f"{len(m.get('runs', []))} runs: {m.get('runs_computed')} computed, "
            f"{m.get('runs_from_store')} from the store; version {prov.get('version')}, commit "
            f"{(prov.get('git_commit') or '?')[:10]}{dirty}, {prov.get('engine')}, "
            f"{prov.get('started')} to {prov.get('finished')}"]
    from ..experiments.runner import code_status
    status = code_status(m)
    if status["code"] == "stale":
        head.append(f"STALE: {status['stale_runs']} of {len(m.get('runs', []))} stored runs "
                    "were made by other code, calibration or SimPy/NumPy than this checkout's "
                    f"(`workbench sweep {m.get('experiment_file') or m.get('name')}` computes "
                    "them again)")
    elif status["code"] == "unknown":
        head.append("code: cannot plan this experiment with the current code (not checked)")
    else:
        head.append("code: the stored runs match the current code")
    if status["dirty"]:
        head.append("DIRTY: some runs were stored from a tree with uncommitted changes "
                    "(--allow-dirty); their commit does not reproduce them")
    prec = m.get("precision")
    if prec:
        head.append(f"reps auto: {prec['reps']} replications; the 95 % interval of "
                    f"{prec['metric']} is within {prec['worst_rel_half_width']:.1%} of its mean"
                    f" (asked {prec['rel']:.1%}{'' if prec['reached'] else ', NOT reached by max_reps'})")
    made_by = m.get("runs_made_by") or []
    if len(made_by) > 1 or any(x.get("git_dirty") for x in made_by):
        head.append("note: the stored runs were made by " + "; ".join(
            f"{x.get('version')} {(x.get('git_commit') or '?')[:10]}"
            f"{' dirty' if x.get('git_dirty') else ''}" for x in made_by))
    metrics = [x for x in dict.fromkeys([*_headline_of(c), *SWEEP_METRICS])
               if x in c.summary.columns and np.isfinite(c.summary[x].astype(float)).any()]
    wide = with_intervals(c.stats(metrics), by=c.by)
    out = [*head, *_verdicts(c), "", "Mean [95 % interval] over replications (outcomes: k "
           "of n runs, exact; latency and fairness over complete runs):", _fmt(wide)]
    if baseline:
        d = c.diff(baseline, metrics)
        d["diff [95 % CI]"] = [f"{x:.3g} [{lo:.3g}, {hi:.3g}]{' *' if z else ''}"
                               for x, lo, hi, z in zip(d["diff"], d["ci_low"], d["ci_high"],
                                                       d["star"])]
        fam = int(d["family"].iloc[0]) if len(d) else 0
        out += ["", f"Paired differences against {baseline} (* Holm-adjusted p < 0.05 over "
                    f"this table's family of {fam}):",
                _fmt(d[[*c.by, "policy", "metric", "n", "diff [95 % CI]"]])]
    return "\n".join(out)


@_session
def cmd_results(args) -> None:
    from ..experiments.runner import load_stored, results
    from ..experiments.store import Store
    st = Store(args.store)
    if not args.experiment:
        from ..analysis.robustness import stored
        t, rb = results(store=st), stored(st)
        print(f"store {st.root}:")
        print(_fmt(t) if len(t) else "(no experiments stored yet)")
        if len(rb):
            print("\nrobustness runs (workbench results NAME shows one):")
            print(_fmt(rb))
        return
    if args.experiment in st.robustness_runs():
        from ..analysis.robustness import load
        print(robustness_report(load(args.experiment, st)))
        return
    c = load_stored(args.experiment, st)
    if args.warmup_us is not None:
        c = c.warmup(args.warmup_us)
    print(experiment_report(c, args.baseline))


@_session
def cmd_reproduce(args) -> int:
    """Run a manifest's experiment again into a new store; exit 1 when its tables differ
    from the stored ones (beside the manifest) in any bit."""
    import json
    from pathlib import Path

    import pandas as pd

    from ..core.config import ConfigError
    from ..experiments.runner import reproduce
    path = Path(args.manifest)
    try:
        m = json.loads(path.read_text())
        m["experiment"], m["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{path}: not an experiment's manifest.json") from None
    if Path(args.store).resolve() == path.resolve().parent.parent.parent:
        raise UsageError("--store: give a new store, not the one holding the manifest")
    c, check = reproduce(m, store=args.store, engine=args.engine, workers=args.workers,
                         allow_dirty=args.allow_dirty)
    print(f"{m.get('name')}: {len(c.manifest['runs'])} runs, {c.manifest['runs_computed']} "
          f"computed into {args.store}; run keys "
          f"{'match the manifest' if check['keys_match'] else 'differ: ' + '; '.join(check['differs'])}")
    old = path.parent / "summary.parquet"
    if not old.is_file():
        print("no stored summary beside the manifest: nothing to compare")
        return 0
    try:
        same = c.summary.equals(pd.read_parquet(old)) and (
            (path.parent / "table.csv").read_bytes()
            == (Path(args.store) / "experiments" / m["name"] / "table.csv").read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{old}: not a readable table ({type(err).__name__})") from None
    print("tables identical, bit for bit" if same else "tables DIFFER from the stored ones")
    return 0 if same else 1


EXPORTS = {"csv": "stats.csv", "parquet": "stats.parquet", "latex": "table.tex"}


@_session
def cmd_export(args) -> None:
    from pathlib import Path

    from ..core.safeio import atomic_write
    from ..experiments.runner import load_stored
    from ..experiments.stats import latex_table
    from ..experiments.store import Store
    st = Store(args.store)
    c = load_stored(args.experiment, st)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics \
        else (_headline(c.summary) if args.format == "latex" else None)
    if metrics:
        unknown = [m for m in metrics if m not in c.summary.columns]
        if unknown:
            raise UsageError(f"--metrics: {unknown[0]!r} is not a metric of "
                             f"{args.experiment}")
    if args.format == "latex" and not args.metrics:   # the headline metrics that vary
        metrics = [m for m in SWEEP_METRICS if m in metrics
                   and c.summary[m].astype(float).fillna(0).abs().sum() > 0][:6] or metrics[:6]
    desc = c.stats(metrics)
    if args.format == "latex":
        text = latex_table(desc, by=c.by, metrics=metrics,
                           caption=f"{args.experiment}: mean [95 % interval] over "
                                   f"{len(c.manifest.get('seeds', {}).get('replications', []))}"
                                   " replications")
        write = lambda p: p.write_text(text)  # noqa: E731
    elif args.format == "csv":
        write = lambda p: desc.to_csv(p, index=False)  # noqa: E731
    else:
        write = lambda p: desc.to_parquet(p, index=False)  # noqa: E731
    if args.out:
        out = Path(args.out)
        if st.root.resolve() in out.resolve().parents:
            raise UsageError(f"--out {out}: inside the store; leave --out out to write there")
        if out.exists() or out.is_symlink():
            raise UsageError(f"--out {out}: exists; the tool never replaces a file it did not "
                             "write (choose a new name)")
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: no folder {out.parent}")
        try:
            atomic_write(out, write)
        except OSError as err:
            raise UsageError(f"--out {out}: cannot write there ({err.strerror})") from None
        print(f"wrote {out}")
        return
    with st:
        print(f"wrote {st.put_file(args.experiment, EXPORTS[args.format], write)}")
