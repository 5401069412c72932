"""Layer 4: named workloads. Each scenario is a YAML file in ``data/scenarios/`` validated
into a frozen :class:`~workbench.config.ScenarioConfig`; ``data/scenarios/small/`` holds
the race finder's small variants (``malicious-accept-small``...), named like the others."""
from __future__ import annotations

import os
from pathlib import Path

from .config import DATA, ConfigError, ScenarioConfig, read_yaml, validate, with_overrides
from .safeio import check_path, short

SCENARIO_DIR = DATA / "scenarios"
SUBFOLDERS = ("small",)


def scenario_names(folder: str | None = None) -> list[str]:
    """The shipped scenarios' names (``data/scenarios/*.yaml``), or those of a subfolder
    (``"small"``: the race finder's small variants, loaded by name like the others)."""
    if folder is not None and folder not in SUBFOLDERS:
        raise ConfigError(f"no scenario folder {short(folder)} (known: {', '.join(SUBFOLDERS)})")
    return sorted(p.stem for p in (SCENARIO_DIR / (folder or "")).glob("*.yaml"))


def _shipped(name: str) -> Path:
    for sub in ("", *SUBFOLDERS):
        p = SCENARIO_DIR / sub / f"{name}.yaml"
        if p.exists():
            return p
    return SCENARIO_DIR / f"{name}.yaml"


def load_scenario(name_or_path, sets=None) -> ScenarioConfig:
    """A scenario by name (``"fault-storm"``) or YAML path, with optional ``--set``
    overrides (``["module.host_priority=false"]`` or a dict)."""
    if isinstance(name_or_path, ScenarioConfig):
        cfg = name_or_path
    elif not isinstance(name_or_path, (str, Path)):
        raise ConfigError(f"a scenario is a name, a YAML path or a ScenarioConfig, "
                          f"not {short(name_or_path)}")
    else:
        path = check_path(name_or_path, "scenario")
        if path.suffix not in (".yaml", ".yml"):
            path = check_path(_shipped(str(name_or_path)), "scenario")
        if not os.path.exists(path):
            known = scenario_names() + [n for sub in SUBFOLDERS for n in scenario_names(sub)]
            raise ConfigError(f"unknown scenario {short(str(name_or_path))} "
                              f"(known: {', '.join(known)})")
        data = read_yaml(path, "scenario")
        data.setdefault("name", path.stem)
        cfg = validate(ScenarioConfig, data, f"scenario {short(path.name, 80)}")
    return with_overrides(cfg, sets) if sets else cfg


def describe() -> list[tuple[str, str]]:
    """(name, question) of every shipped scenario, the small ones last."""
    names = scenario_names() + [n for sub in SUBFOLDERS for n in scenario_names(sub)]
    return [(n, " ".join(load_scenario(n).question.split())) for n in names]
