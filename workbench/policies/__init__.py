"""Layer 2: busy-handling policies. Importing this package registers the shipped ones."""
from .base import (ACTIONS, GIVE_UP, VALID, Action, BugVm, BusyContext, BusyPolicy,
                   ExitToUserspace, GuestFail, KickAndRetry, Policy, ResumeGuest, Retry, Site)
from .registry import (PRESETS, REGISTRY, PolicyError, PolicySet, make_policy, register,
                       resolve_policy)
from . import shipped  # noqa: F401  (registers the shipped policies)

__all__ = ["ACTIONS", "GIVE_UP", "VALID", "Action", "BugVm", "BusyContext", "BusyPolicy",
           "ExitToUserspace", "GuestFail", "KickAndRetry", "Policy", "ResumeGuest", "Retry",
           "Site", "PRESETS", "REGISTRY", "PolicyError", "PolicySet", "make_policy",
           "register", "resolve_policy"]
