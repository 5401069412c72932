"""``workbench review``: compare policies and write the review file (workbench.present.review)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .common import UsageError, _imports, _session


@_session
def cmd_review(args) -> None:
    from ..experiments.comparison import compare
    from ..policies.registry import split_specs
    from ..present.review import write_review
    _imports(args)
    if not args.out.endswith((".html", ".htm")):
        raise UsageError(f"--out {args.out}: the review file is HTML (name it .html)")
    if Path(args.out).exists():
        raise UsageError(f"--out {args.out}: exists; the review file never replaces one")
    if args.reps < 1 or args.samples < 0:
        raise UsageError("--reps must be at least 1 and --samples at least 0")
    if 0 < args.samples < 4:
        raise UsageError("--samples: 0 (no robustness run) or at least 4 calibrations")
    policies = split_specs(args.policies)
    c = compare(args.scenario, policies, reps=args.reps, seed=args.seed, sets=args.set)
    r = None
    if args.samples:
        from ..analysis.robustness import robustness
        r = robustness(args.scenario, policies, samples=args.samples, seed=args.seed,
                       sets=args.set)
    command = "workbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if Path(sys.argv[0]).name in ("workbench", "__main__.py") else None
    p = write_review(c, args.out, robustness=r, command=command or _command(args))
    print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB, plotly inlined: opens offline; "
          f"{len(policies)} policies x {args.reps} replications"
          + (f", robustness over {args.samples} calibrations" if args.samples else
             ", no robustness run (--samples N adds one)") + ")")


def _command(args) -> str:
    """The command line that makes this file again (when called as a function)."""
    parts = ["workbench", "review", args.scenario, "--policies", args.policies, "--out",
             args.out, "--reps", str(args.reps), "--seed", str(args.seed)]
    parts += [x for s in args.set for x in ("--set", s)]
    parts += ["--samples", str(args.samples)] if args.samples else []
    return " ".join(shlex.quote(p) for p in parts)
