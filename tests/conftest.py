"""Shared fixtures. Runs are cached per (scenario, policy, seed, sets) so that several tests
can assert different facts about one simulation without running it again."""
import functools

import pytest

import workbench


@functools.lru_cache(maxsize=64)
def _cached(scenario, policy, seed, sets):
    return workbench.run(scenario, seed=seed, policy=policy, sets=list(sets))


@pytest.fixture(scope="session")
def sim():
    """``sim(scenario, policy="upstream", seed=1, **sets)`` -> RunResult (cached)."""
    def run(scenario, policy="upstream", seed=1, **sets):
        key = tuple(sorted(f"{k.replace('__', '.')}={v}" for k, v in sets.items()))
        return _cached(scenario, policy, seed, key)
    return run


# The suite runs from working trees that may hold uncommitted changes; runs it stores go to
# temporary stores, so the dirty-tree refusal (workbench/experiments/fingerprint.py) is
# lifted here. Tests of the refusal itself remove this variable.
import os  # noqa: E402

os.environ.setdefault("WORKBENCH_ALLOW_DIRTY", "1")
