"""Layer 2 (policies): the conformance suite every policy must pass, shipped or your own.

    from workbench.policies.conformance import check_policy
    check_policy(MyPolicy())          # raises PolicyConformanceError, or returns None

It checks that the policy returns only actions valid at each call site it serves, does not
change its context or its own parameters, decides the same for the same random stream,
never asks for a negative or endless wait, pickles (for process pools and Dask), and
round-trips through its YAML spec.
"""
from __future__ import annotations

import copy
import math
import pickle
from dataclasses import replace

import numpy as np
import yaml

from ..core.tdx_errno import OPERAND_ID_RCX, OPERAND_ID_SEPT, busy
from .base import VALID, BusyContext, Retry, Site
from .registry import make_policy


class PolicyConformanceError(AssertionError):
    pass


def contexts(site: Site):
    """A grid of contexts a policy may meet at ``site``."""
    base = BusyContext(site, "TDH.MEM.PAGE.AUG", busy(OPERAND_ID_RCX), 1, False, 0.0, 8)
    for attempt in (1, 2, 3, 15, 16, 17, 32, 100, 1023, 1024, 1025, 5000):
        for kicked in (False, True):
            for status in (busy(OPERAND_ID_RCX), busy(OPERAND_ID_SEPT), 0):
                for events in (False, True):
                    yield replace(base, attempt=attempt, kicked=kicked, status=status,
                                  events_pending=events, elapsed_us=attempt * 3.0,
                                  busy_rate=min(1.0, attempt / 2000))


def _fail(policy, msg: str):
    raise PolicyConformanceError(f"policy {getattr(policy, 'name', policy)!r}: {msg}")


def check_policy(policy) -> None:
    """Run the conformance suite on a policy instance or spec."""
    policy = make_policy(policy)
    sites = getattr(policy, "sites", None)
    if not sites or not all(isinstance(s, Site) for s in sites):
        _fail(policy, "needs a 'sites' tuple of Site values")
    params = copy.deepcopy(policy.get_params()) if hasattr(policy, "get_params") else None
    for site in sites:
        decisions = []
        for ctx in contexts(site):
            before = copy.copy(ctx)
            action = policy.on_busy(ctx, np.random.default_rng(7))
            if not isinstance(action, VALID[site]):
                _fail(policy, f"returned {action!r} at the {site.value} site")
            if ctx != before:
                _fail(policy, "changed its context")
            if isinstance(action, Retry) and not (0.0 <= action.delay_us < math.inf):
                _fail(policy, f"asked for a retry after {action.delay_us} us")
            decisions.append(action)
        again = [policy.on_busy(c, np.random.default_rng(7)) for c in contexts(site)]
        if again != decisions:
            _fail(policy, f"decides differently for the same random stream at {site.value}")
    if params is not None and policy.get_params() != params:
        _fail(policy, "changed its own parameters while deciding")
    try:
        clone = pickle.loads(pickle.dumps(policy))
    except Exception as err:
        _fail(policy, f"does not pickle ({type(err).__name__}: {err})")
    if clone != policy:
        _fail(policy, "is not equal to its pickled copy (compare by parameters)")
    spec = yaml.safe_load(yaml.safe_dump(policy.spec()))
    if make_policy(spec) != policy:
        _fail(policy, f"does not round-trip through its YAML spec {spec!r}")
