"""TDX contention workbench: simulate how KVM handles TDX_OPERAND_BUSY from the TDX module.

Public API::

    import workbench
    r = workbench.run("lazy-accept-boot", seed=1, policy="upstream")
    r.calls, r.ops, r.vcpus, r.summary
    c = workbench.compare("malicious-accept", ["upstream", "zero-tolerance"], reps=3)
    c.table
    s = workbench.sweep("scale", "vcpus.1.count", [3, 15, 31], ["upstream", "vm-spinlock"])
    c.stats(), c.diff("upstream"), c.tails()     # intervals, paired differences
    workbench.run_experiment("scale")            # data/experiments/scale.yaml into the store
    workbench.results("scale")                   # a tidy DataFrame from the store
"""
__version__ = "0.1.0"

import sys as _sys  # noqa: E402

if _sys.argv[:1] == ["-m"] and _sys.path and not _sys.flags.safe_path:
    # `python -m workbench` put the current folder first on sys.path: a shared scenario
    # bundle holding e.g. yaml.py would run as soon as we import yaml. Drop it, as the
    # `workbench` command does (PYTHONPATH=. makes a folder importable on purpose).
    import os as _os
    if _sys.path[0] in ("", _os.getcwd()):
        del _sys.path[0]

from .config import ConfigError, ScenarioConfig, load_calibration, with_overrides  # noqa: E402
from .limits import Budget  # noqa: E402
from .policies import (PRESETS, REGISTRY, Policy, PolicyError, PolicySet, make_policy,  # noqa: E402
                       register, resolve_policy)
from .scenarios import describe as describe_scenarios, load_scenario, scenario_names  # noqa: E402
from .experiments import Comparison, RunResult, compare, run, sweep  # noqa: E402
from .runner import results, run_experiment  # noqa: E402

__all__ = ["__version__", "run", "compare", "sweep", "run_experiment", "results", "load_scenario", "scenario_names",
           "describe_scenarios", "RunResult", "Comparison", "ScenarioConfig", "ConfigError",
           "load_calibration", "with_overrides", "PRESETS", "REGISTRY", "Policy",
           "PolicyError", "PolicySet", "make_policy", "register", "resolve_policy", "Budget"]
