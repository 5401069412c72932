"""Layer 8: the command line (``workbench`` or ``python -m workbench``).

    workbench scenarios
    workbench policies
    workbench run SCENARIO [--seed N] [--policy P] [--set key=value ...] [--out DIR]
    workbench compare SCENARIO --policies a,b,c [--reps R] [--seed N] [--baseline P] [--out DIR]
    workbench sweep EXPERIMENT [--store DIR] [--reps R] [--workers W] [--allow-dirty]
    workbench sweep SCENARIO --param KEY --values a,b --policies p,q [--out DIR]
    workbench results [EXPERIMENT] [--baseline P]
    workbench reproduce STORE/experiments/NAME/manifest.json --store NEW_STORE
    workbench export EXPERIMENT --format csv|parquet|latex [--out FILE]
    workbench robustness SCENARIO --policies a,b,c [--samples N] [--store DIR] [--name NAME]
    workbench calibrate --from samples.csv --out my-machine.yaml [--source TEXT]
    workbench validate [--calibration C] [--small]
    workbench explore SCENARIO --policy P [--schedules N] [--strategy random|pct|bounded]
    workbench replay FILE
    workbench findings [--only NAME] [--check] [--store DIR] [--allow-dirty]
    workbench trace SCENARIO|RUN_DIR [--policy P] [--seed N] [--set k=v] --out run.json
    workbench review SCENARIO --policies a,b,c --out review.html [--reps R] [--samples N]

Bad input gives one line on stderr and exit status 2; nothing already on disk is touched.
Ctrl-C prints ``interrupted`` and exits 130 with nothing stored half-way. A run that
reaches its budget (``--max-events``, ``--max-seconds``) stops, says so on stderr and
reports what it simulated (``stopped = "budget"``).
"""
from __future__ import annotations

import errno
import importlib
import sys
import warnings

from .common import UsageError

VERBS = {  # verb -> the module of this package that runs it (imported on use: --help stays light)
    "scenarios": "info", "policies": "info", "calibration": "info",
    "run": "runs", "trace": "runs", "compare": "runs", "sweep": "runs",
    "results": "results", "export": "results", "reproduce": "results",
    "robustness": "analysis", "calibrate": "analysis", "validate": "analysis",
    "explore": "racefinder", "replay": "racefinder", "findings": "findings",
    "review": "review",
}


def main(argv=None) -> int:
    from ..core.errors import ConfigError, PolicyError
    saved, warnings.formatwarning = warnings.formatwarning, _warning   # one line each
    saved_filters = warnings.filters[:]
    reserve = bytearray(4 << 20)   # given back on MemoryError, so the message can be printed
    # NumPy's "Mean of empty slice", "invalid value encountered": numerical noise whose
    # result (NaN) the tables show; never a line on stderr
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    try:
        from .parser import build_parser
        args = build_parser().parse_args(argv)
        module = importlib.import_module(f".{VERBS[args.cmd]}", __name__)
        rc = getattr(module, f"cmd_{args.cmd}")(args)
    except (UsageError, ConfigError, PolicyError) as err:
        print(f"workbench: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError as err:
        del reserve
        import traceback
        traceback.clear_frames(err.__traceback__)    # free the run the frames still hold
        print("workbench: error: out of memory; ask for less (a shorter horizon_us, fewer "
              "vCPUs, replications or workers, --record summary)", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in _ENVIRONMENT:
            return _internal(err)
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"workbench: error: {_one_line(err.strerror or err)}{where}", file=sys.stderr)
        return 2
    except Exception as err:    # a bug of ours: still one line (WORKBENCH_TRACEBACK=1 shows it)
        if _dead_worker(err):
            print("workbench: error: a worker process died (out of memory?); ask for less "
                  "or use fewer --workers", file=sys.stderr)
            return 2
        return _internal(err)
    finally:
        warnings.formatwarning = saved
        warnings.filters[:] = saved_filters
    return rc or 0


# a full disk, a quota, a read-only file system: the machine's state, not a bug of ours
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _dead_worker(err) -> bool:
    from concurrent.futures.process import BrokenProcessPool
    return isinstance(err, BrokenProcessPool)


def _internal(err) -> int:
    import os
    if os.environ.get("WORKBENCH_TRACEBACK"):
        raise err
    print(f"workbench: internal error: {type(err).__name__}: {_one_line(err)} "
          "(please report; WORKBENCH_TRACEBACK=1 shows where)", file=sys.stderr)
    return 1


def _warning(message, category, filename, lineno, line=None) -> str:
    return f"workbench: warning: {_one_line(message)}\n"


def _one_line(err, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
