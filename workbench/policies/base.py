"""Layer 2 (policies): what KVM, the VMM or the guest does when a call returns BUSY.

A policy is a small object whose constructor only stores parameters (so it copies, compares
and pickles) and whose one method, ``on_busy(ctx, rng) -> Action``, decides. It never
imports simpy or the model: the model calls it at four call sites and carries out the
action. ``Action`` is a closed set of frozen values.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Protocol, Union

import numpy as np


class Site(str, Enum):
    FAULT = "fault"        # KVM's private fault path got RET_PF_RETRY (BUSY or frozen SPTE)
    ZAP = "zap"            # BLOCK / TRACK / REMOVE under mmu_lock write got BUSY
    VP_ENTER = "vp_enter"  # TDH.VP.ENTER got BUSY (TD epoch, or the tree under zero-step)
    ACCEPT = "accept"      # the guest's TDG.MEM.PAGE.ACCEPT got BUSY


@dataclass(frozen=True)
class BusyContext:
    """What a policy may look at. Frozen: a policy cannot change what the model sees."""
    site: Site
    leaf: str            # e.g. "TDH.MEM.PAGE.AUG"; "FROZEN_SPTE" when no SEAMCALL was made
    status: int          # the 64-bit status (0 for a frozen SPTE)
    attempt: int         # tries of this operation so far, >= 1
    kicked: bool         # this operation has already kicked every vCPU
    elapsed_us: float    # since the operation started
    n_vcpus: int
    events_pending: bool = False   # kvm_vcpu_has_events() / signal_pending() / VM dead
    busy_rate: float = 0.0         # host S-EPT SEAMCALLs + VP.ENTERs so far that were BUSY
                                   # (0 at the accept site: a guest cannot see it)


@dataclass(frozen=True)
class Retry:
    """Try the same call again after ``delay_us`` (0 = at once), without leaving KVM."""
    delay_us: float = 0.0
    warn: bool = False   # bounded retry: this retry crosses a warning threshold


@dataclass(frozen=True)
class KickAndRetry:
    """Set wait_for_sept_zap, kick every vCPU out of guest mode and wait, then retry."""


@dataclass(frozen=True)
class ResumeGuest:
    """Fault path: give up this fault, re-enter the guest, let it fault again."""


@dataclass(frozen=True)
class ExitToUserspace:
    """Return an error (the status) to userspace: a KVM exit, or a failed ioctl."""


@dataclass(frozen=True)
class BugVm:
    """KVM_BUG_ON / TDX_BUG_ON: the VM is bugged and stops."""


@dataclass(frozen=True)
class GuestFail:
    """Guest ACCEPT: treat the BUSY as a failure (Linux: fall back, panic on 4 KB)."""


Action = Union[Retry, KickAndRetry, ResumeGuest, ExitToUserspace, BugVm, GuestFail]
ACTIONS = (Retry, KickAndRetry, ResumeGuest, ExitToUserspace, BugVm, GuestFail)

# Which actions make sense where. The conformance suite checks every policy against this.
VALID = {
    Site.FAULT: (Retry, KickAndRetry, ResumeGuest, ExitToUserspace, BugVm),
    Site.ZAP: (Retry, KickAndRetry, ExitToUserspace, BugVm),
    Site.VP_ENTER: (Retry, ExitToUserspace, BugVm),
    Site.ACCEPT: (Retry, GuestFail),
}
# What a call site does when a policy gives up, as the code of patch 09/21 did after its
# retries: the fault path returned RET_PF_RETRY, the zap path hit KVM_BUG_ON.
GIVE_UP = {Site.FAULT: ResumeGuest(), Site.ZAP: BugVm(), Site.VP_ENTER: ExitToUserspace(),
           Site.ACCEPT: GuestFail()}

class BusyPolicy(Protocol):
    name: ClassVar[str]
    origin: ClassVar[str]
    sites: ClassVar[tuple[Site, ...]]

    def on_busy(self, ctx: BusyContext, rng: np.random.Generator) -> Action: ...


REGISTRY: dict[str, type] = {}      # name -> policy class (filled by registry.register)


def _rebuild(name: str, params: dict):
    return REGISTRY[name](**params)


class Policy:
    """Base class: stores constructor arguments, compares and prints by them."""
    name: ClassVar[str] = ""
    origin: ClassVar[str] = ""
    sites: ClassVar[tuple[Site, ...]] = tuple(Site)

    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {n: getattr(self, n) for n, p in sig.parameters.items()
                if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def spec(self) -> dict:
        """The YAML form of this policy: ``{"policy": name, **params}``."""
        return {"policy": self.name, **self.get_params()}

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.get_params().items()))))

    def __reduce__(self):
        # by registered name and parameters: a class defined in a notebook cell still pickles
        return (_rebuild, (self.name, self.get_params()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def on_busy(self, ctx: BusyContext, rng: np.random.Generator) -> Action:
        raise NotImplementedError
