"""What the verbs share: the usage error, the parser class, table formatting, policy
arguments, imports of the user's code and the session around a batch of runs."""
from __future__ import annotations

import argparse


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _fmt(df):
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_columns", 60,
                           "display.float_format", lambda x: f"{x:.3g}"):
        return df.to_string(index=False)


def _imports(args) -> None:
    from ..core.safeio import import_user, short
    for m in args.imports:
        import_user(m, f"--import {short(m)}")


def _policy_arg(text):
    """A ``--policy`` value; a path to a YAML file holds a policy spec (data: it may name
    policies, never import one)."""
    if text and text.endswith((".yaml", ".yml")):
        from ..core.config import read_yaml
        from ..policies import resolve_policy
        return resolve_policy(read_yaml(text, "policy file"), imports=False)
    return text


def _warning(message, category, filename, lineno, line=None) -> str:
    return f"workbench: warning: {message}\n"


def _session(cmd):
    """Around a subcommand: warnings print as one line, and a Dask client it connected
    (``--scheduler``) is closed at the end."""
    import functools

    @functools.wraps(cmd)
    def wrapped(args):
        import sys
        import warnings

        from ..core.limits import BATCH_PROGRESS
        saved, warnings.formatwarning = warnings.formatwarning, _warning
        # no bar on a log or a pipe: one line every few seconds instead
        token = BATCH_PROGRESS.set(None if _terminal(sys.stderr) else _say)
        try:
            return cmd(args)
        finally:
            BATCH_PROGRESS.reset(token)
            warnings.formatwarning = saved
            if getattr(args, "client", None) is not None:
                args.client.close()
    return wrapped


def _terminal(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def _say(line: str) -> None:
    import sys
    print(f"workbench: {line}", file=sys.stderr, flush=True)


# the metrics a sweep prints with intervals (those the runs have: names may change)
SWEEP_METRICS = ["host_busy_rate", "guest_busy_rate", "kicks", "error_exits",
                 "vm_bugged", "td_failed", "zero_step_armings", "accept_throughput_per_ms",
                 "wb_fault_wait_p99_us", "zap_4k_p99_us", "conversion_p99_us",
                 "host_retry_cpu_us", "host_contested_share", "longest_wait_us", "wait_spread"]


def _headline_of(c) -> list[str]:
    """The scenario's headline metric, first in every table (if the comparison knows it)."""
    return [c.headline] if getattr(c, "headline", None) else []


def _verdicts(c) -> list[str]:
    from ..experiments.verdicts import verdict_lines
    return ["Verdicts (a run that stopped early is an outcome, never a latency sample):",
            *(f"  {line}" for line in verdict_lines(c.summary, c.by))]


def _headline(summary) -> list[str]:
    from ..experiments.metrics import HEADLINE
    return [m for m in HEADLINE if m in summary.columns and m != "policy"]


def _cluster(args):
    """``(engine, client)``: a Dask client connected to ``--scheduler``, if given."""
    if not args.scheduler:
        return args.engine, None
    if args.engine not in (None, "dask"):
        raise UsageError("--scheduler needs --engine dask (or no --engine)")
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs the dist extra: pip install -e '.[dist]'") from None
    try:
        args.client = Client(args.scheduler, timeout="10s")   # closed by main()
        return "dask", args.client
    except (OSError, TimeoutError, ValueError) as err:
        raise UsageError(f"--scheduler {args.scheduler}: cannot connect "
                         f"({type(err).__name__})") from None
