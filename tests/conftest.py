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
