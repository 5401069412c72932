"""Conclusions that come from the mechanism, not from how simulated time is cut.

- Every shipped scenario answers its question: at least two presets differ on its headline
  metric by more than their replication noise, unless it says it is a calm control.
- No order of creation decides anything: starting the vCPU processes (and listing the
  vCPUs) in reverse keeps every clear ranking of presets on every scenario.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import workbench
from workbench.core.config import load_calibration
from workbench.experiments.comparison import run
from workbench.experiments.metrics import calls_table, ops_table, summary_row, vcpus_table
from workbench.model.td import Td
from workbench.policies import resolve_policy
from workbench.core.scenarios import load_scenario

PRESETS = ("upstream", "patch-09-21", "zero-tolerance", "sean-per-path", "vm-spinlock")
SETS = {"horizon_us": 6000}
REPS = 3


def headline(scenario: str, policy: str, rep: int, reverse: bool = False) -> float:
    cfg = load_scenario(scenario, SETS)
    if not reverse:
        return float(run(cfg, seed=1, policy=policy, replication=rep).summary[cfg.headline].iloc[0])
    cal, _ = load_calibration(cfg.calibration, cfg.timings)
    td = Td(cfg, resolve_policy(policy), cal, 1, rep)
    td.vcpus.reverse()                 # processes start, and kicks walk, in reverse
    td.run()
    calls = calls_table(td.rec.calls, {})
    ops = ops_table(td.rec.ops, {}, {v.name: v.role for v in td.vcpus})
    return float(summary_row(td, calls, ops, vcpus_table(td, {}))[cfg.headline])


HUGE_PRESETS = ("upstream", "patch-09-21", "zero-tolerance", "split-read-lock",
                "non-blocking-resize")


def presets(scenario: str) -> tuple:
    """The presets compared; where KVM maps 2 MB pages, the two split policies take the
    place of two retry rules (every other preset splits as the series does)."""
    huge = load_scenario(scenario).host.private_page_sizes != "4k"
    return HUGE_PRESETS if huge else PRESETS


@functools.lru_cache(maxsize=None)
def values(scenario: str, reverse: bool = False) -> dict:
    return {p: np.array([headline(scenario, p, r, reverse) for r in range(REPS)])
            for p in presets(scenario)}


def separated(a: np.ndarray, b: np.ndarray, k: float) -> bool:
    """Means apart by more than ``k`` standard errors of their difference."""
    a, b = np.nan_to_num(a, nan=0.0), np.nan_to_num(b, nan=0.0)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) > k * se and a.mean() != b.mean()


@pytest.mark.parametrize("scenario", workbench.scenario_names())
def test_each_scenario_is_contested_or_says_it_is_a_control(scenario):
    cfg = load_scenario(scenario)
    assert cfg.headline in run(cfg, sets={"horizon_us": 50}).summary.columns
    if cfg.control:
        assert "control" in cfg.question
        return
    v = values(scenario)
    assert any(separated(v[a], v[b], 2.0) for a, b in itertools.combinations(v, 2)), \
        f"{scenario}: no two presets differ on {cfg.headline}"


@pytest.mark.parametrize("scenario", workbench.scenario_names())
def test_creation_order_decides_no_ranking(scenario):
    fwd, rev = values(scenario), values(scenario, reverse=True)
    for a, b in itertools.combinations(fwd, 2):
        if separated(fwd[a], fwd[b], 4.0):
            assert np.sign(np.nanmean(fwd[a]) - np.nanmean(fwd[b])) == \
                np.sign(np.nanmean(rev[a]) - np.nanmean(rev[b])), (scenario, a, b)
