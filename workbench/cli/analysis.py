"""``workbench robustness``, ``calibrate`` and ``validate``: conclusions against the
guessed timings, measured samples and published measurements."""
from __future__ import annotations

from .common import UsageError, _fmt


def cmd_validate(args) -> None:
    from ..analysis.validation import validate
    from ..core.config import load_calibration
    t = validate(folder=args.folder, calibration=args.calibration, small=args.small,
                 seed=args.seed, reps=args.reps)
    for name in dict.fromkeys(t["calibration"]):
        _, meta = load_calibration(name)
        status = [q["status"] for q in meta.values()]
        print(f"calibration {name}: " + ", ".join(
            f"{status.count(k)} {k}" for k in ("exact", "published", "measured", "guess")
            if status.count(k)) + " rows")
    print(f"{len(t)} published measurements against the model (upstream, {args.reps} "
          f"replication(s), seed {args.seed}{', 2 ms horizons' if args.small else ''}); "
          "ratio = model / measured, a mismatch is information:\n")
    print(_fmt(t[["entry", "measured", "model", "ratio", "unit"]]))
    print()
    for r in t.itertuples():
        print(f"{r.entry}: {r.source}\n  what the model leaves out: {r.gap}")


def cmd_calibrate(args) -> None:
    from ..experiments.calibrate import calibrate
    t = calibrate(args.samples, args.out, base=args.base, source=args.source)
    print(f"wrote {args.out} ({len(t)} measured rows; the others as in {args.base}); "
          f"use it with --set calibration={args.out}")
    print(f"changed against {args.base} (us):")
    print(_fmt(t))


def cmd_robustness(args) -> None:
    from ..analysis.robustness import robustness, save
    from ..experiments.store import MAX_NAME, NAME, Store
    from ..policies.registry import split_specs
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    if args.name is not None and (not NAME.match(args.name) or len(args.name) > MAX_NAME):
        raise UsageError(f"--name {args.name[:60]!r}: letters, digits, '.', '_' and '-' "
                         f"only, at most {MAX_NAME} characters")
    st = Store(args.store)     # refused before the work if it is not a store
    from ..experiments.fingerprint import check_clean
    check_clean(args.allow_dirty)      # and from a tree with uncommitted changes
    timings = [t.strip() for t in args.timings.split(",") if t.strip()] if args.timings else None
    r = robustness(args.scenario, split_specs(args.policies), args.metric,
                   samples=args.samples, timings=timings, reps=args.reps, seed=args.seed,
                   sets=args.set, workers=args.workers,
                   lower_is_better=not args.higher_is_better)
    print(robustness_report(r))
    print(f"\nstored as robustness run {save(r, args.name, st, args.allow_dirty)} in {st.root} "
          "(workbench results lists it)")


def robustness_report(r) -> str:
    """The ranking-stability table, the sensitivity and the flips of a robustness run."""
    s = r.spec or {}
    better = "lower" if r.lower_is_better else "higher"
    out = [f"{s.get('scenario')}: {r.metric} ({better} is better) over {len(r.calibrations)} "
           f"calibrations drawn over {r.calibrations.shape[1]} guessed timings, "
           f"{s.get('reps')} replication(s) each (seed {s.get('seed')})", "",
           "how often a ranks better than b: a calibration decides only where the paired "
           "95 % interval over its replications excludes zero (outcomes: Fisher's exact "
           "test); otherwise undecided. Share of the decided ones, 95 % Clopper-Pearson "
           "interval:", _fmt(r.rankings())]
    if "replication" in r.values.columns and r.values["replication"].nunique() < 2:
        out.append("(one replication per calibration: nothing can be decided; use --reps 3 "
                   "or more)")
    sens = r.sensitivity()
    if len(sens):
        out += ["", "most sensitive timings per pair (first-order RBD-FAST index of a - b; "
                    "Spearman's rho):", _fmt(sens.groupby(["a", "b"], sort=False).head(3))]
        n, d = r.calibrations.shape
        if n < 4 * d:
            out.append(f"(only {n} calibrations for {d} timings: these indices are mostly "
                       "noise; raise --samples or name a few --timings)")
    flips = r.flips()
    if len(flips):
        out += ["", "where a ranking flips:", _fmt(flips)]
    return "\n".join(out)
