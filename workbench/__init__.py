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
    workbench.robustness("zero-step", ["upstream", "sean-per-path"]).rankings()
"""
from .core.version import __version__

import sys as _sys  # noqa: E402

if _sys.argv[:1] == ["-m"] and _sys.path and not _sys.flags.safe_path:
    # `python -m workbench` put the current folder first on sys.path: a shared scenario
    # bundle holding e.g. yaml.py would run as soon as we import yaml. Drop it, as the
    # `workbench` command does (PYTHONPATH=. makes a folder importable on purpose).
    import os as _os
    if _sys.path[0] in ("", _os.getcwd()):
        del _sys.path[0]

# The public names are imported on first use (PEP 562), so that ``import workbench`` and
# ``workbench --help`` do not pay for pandas, pyarrow, pydantic and SimPy.
_LAZY = {
    "run": "experiments.comparison", "compare": "experiments.comparison",
    "sweep": "experiments.comparison", "sweep_facets": "experiments.comparison",
    "facet_stats": "experiments.comparison", "RunResult": "experiments.comparison",
    "Comparison": "experiments.comparison",
    "run_experiment": "experiments.runner", "results": "experiments.runner",
    "robustness": "analysis.robustness", "validate": "analysis.validation",
    "explore": "racefinder.explore", "replay": "racefinder.replay",
    "load_scenario": "core.scenarios", "scenario_names": "core.scenarios",
    "describe_scenarios": ("core.scenarios", "describe"),
    "ScenarioConfig": "core.config", "ConfigError": "core.config",
    "load_calibration": "core.config", "with_overrides": "core.config", "Budget": "core.limits",
    "PRESETS": "policies", "REGISTRY": "policies", "Policy": "policies",
    "PolicyError": "policies", "PolicySet": "policies", "make_policy": "policies",
    "register": "policies", "resolve_policy": "policies",
    # modules of the public face
    "plots": ("present.plots", None), "widgets": ("present.widgets", None),
    "paper": ("present.paper", None), "stats": ("experiments.stats", None),
}


def __getattr__(name: str):
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module, attr = where if isinstance(where, tuple) else (where, name)
    import importlib
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", "run", "compare", "sweep", "sweep_facets", "facet_stats",
           "run_experiment", "results", "robustness", "validate", "explore", "replay",
           "plots", "widgets", "paper", "stats", "load_scenario", "scenario_names",
           "describe_scenarios", "RunResult", "Comparison", "ScenarioConfig", "ConfigError",
           "load_calibration", "with_overrides", "PRESETS", "REGISTRY", "Policy",
           "PolicyError", "PolicySet", "make_policy", "register", "resolve_policy", "Budget"]
