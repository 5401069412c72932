"""``workbench explore`` and ``replay``: the race finder."""
from __future__ import annotations

from .common import _imports, _policy_arg, _session


def _predicate(text):
    from ..core.safeio import import_user
    if not text:
        return None
    mod, _, fn = text.partition(":")
    return import_user(mod, f"--predicate {text[:60]!r}", attr=fn)


@_session
def cmd_explore(args) -> None:
    from ..racefinder.explore import explore
    from ..core.config import ConfigError
    from ..racefinder.replay import check_out, format_trace, save
    _imports(args)
    if args.mutants:
        return _mutants(args)
    if not args.scenario:
        raise ConfigError("explore: name a scenario (or give --mutants)")
    check_out(args.out)          # before the search, not after it
    oracles = [o.strip() for a in args.oracle for o in a.split(",") if o.strip()] or None
    v = explore(args.scenario, _policy_arg(args.policy), schedules=args.schedules,
                strategy=args.strategy, depth=args.depth, seed=args.seed, oracles=oracles,
                predicate=_predicate(args.predicate), sets=args.set,
                livelock_us=args.livelock_us, starve_us=args.starve_us,
                shrink_seconds=args.shrink_seconds, engine=args.engine, workers=args.workers,
                swarm=args.swarm, max_seconds=args.max_seconds)
    print(v.text())
    if args.coverage:
        from ..racefinder.reach import coverage_report
        print(coverage_report(v.reached, args.scenario, _policy_arg(args.policy)))
    if v.failure:
        print(format_trace(v.shrunk, args.steps or 10**9))
        print(f"wrote {save(args.out, v.target, v.shrunk)} (rerun: workbench replay "
              f"{args.out})")


def cmd_replay(args) -> None:
    from ..racefinder.replay import format_trace, replay
    _imports(args)
    o, same = replay(args.file, _predicate(args.predicate))
    print(format_trace(o, args.steps or 10**9))
    what = f"{o.failure[0]}: {o.failure[1]}" if o.failure else "no failure"
    if not same:
        from ..core.config import ConfigError
        raise ConfigError(f"{args.file}: the run no longer reproduces the recorded one "
                          f"(now: {what})")
    print(f"reproduced bit for bit: {what}; {o.steps} module calls, signature {o.signature}")


def _mutants(args) -> None:
    from ..racefinder.mutants import score, score_text
    rows = score(strategy=args.strategy, seconds=args.max_seconds or 60.0, seed=args.seed,
                 engine=args.engine, workers=args.workers, swarm=args.swarm)
    print(score_text(rows))
