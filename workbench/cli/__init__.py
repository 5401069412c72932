"""Layer 8: the command line (``workbench`` or ``python -m workbench``).

    workbench scenarios
    workbench policies
    workbench run SCENARIO [--seed N] [--policy P] [--set key=value ...] [--out DIR]
    workbench compare SCENARIO --policies a,b,c [--reps R] [--seed N] [--baseline P] [--out DIR]
    workbench sweep EXPERIMENT [--store DIR] [--reps R] [--workers W]
    workbench sweep SCENARIO --param KEY --values a,b --policies p,q [--out DIR]
    workbench results [EXPERIMENT] [--baseline P]
    workbench export EXPERIMENT --format csv|parquet|latex [--out FILE]
    workbench robustness SCENARIO --policies a,b,c [--samples N] [--store DIR] [--name NAME]
    workbench calibrate --from samples.csv --out my-machine.yaml [--source TEXT]
    workbench validate [--calibration C] [--small]
    workbench explore SCENARIO --policy P [--schedules N] [--strategy random|pct|bounded]
    workbench replay FILE
    workbench trace SCENARIO|RUN_DIR [--policy P] [--seed N] [--set k=v] --out run.json
    workbench review SCENARIO --policies a,b,c --out review.html [--reps R] [--samples N]

Bad input gives one line on stderr and exit status 2; nothing already on disk is touched.
Ctrl-C prints ``interrupted`` and exits 130 with nothing stored half-way. A run that
reaches its budget (``--max-events``, ``--max-seconds``) stops, says so on stderr and
reports what it simulated (``stopped = "budget"``).
"""
from __future__ import annotations

import importlib
import sys

from .common import UsageError

VERBS = {  # verb -> the module of this package that runs it (imported on use: --help stays light)
    "scenarios": "info", "policies": "info", "calibration": "info",
    "run": "runs", "trace": "runs", "compare": "runs", "sweep": "runs",
    "results": "results", "export": "results",
    "robustness": "analysis", "calibrate": "analysis", "validate": "analysis",
    "explore": "racefinder", "replay": "racefinder",
    "review": "review",
}


def main(argv=None) -> int:
    from ..core.errors import ConfigError, PolicyError
    try:
        from .parser import build_parser
        args = build_parser().parse_args(argv)
        module = importlib.import_module(f".{VERBS[args.cmd]}", __name__)
        getattr(module, f"cmd_{args.cmd}")(args)
    except (UsageError, ConfigError, PolicyError) as err:
        print(f"workbench: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:    # a bug of ours: still one line (WORKBENCH_TRACEBACK=1 shows it)
        import os
        if os.environ.get("WORKBENCH_TRACEBACK"):
            raise
        print(f"workbench: internal error: {type(err).__name__}: {_one_line(err)} "
              "(please report; WORKBENCH_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1
    return 0


def _one_line(err, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
