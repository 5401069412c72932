"""Layer 2 (policies): the policies of the LKML debate (domain.md §5), one class each."""
from __future__ import annotations

import numpy as np

from .base import (GIVE_UP, BugVm, BusyContext, ExitToUserspace, GuestFail, KickAndRetry,
                   Policy, ResumeGuest, Retry, Site)
from .registry import register
from ..core.tdx_errno import OPERAND_ID_SEPT

HOST_SITES = (Site.FAULT, Site.ZAP, Site.VP_ENTER)


def _check(positive=(), **params) -> None:
    """Constructor arguments: counts are whole numbers (or None: no bound), delays are
    finite and >= 0, and the names in ``positive`` are >= 1."""
    for k, v in params.items():
        if v is None and k.startswith("max_retries"):
            continue
        kind = int if not k.endswith("_us") else (int, float)
        if isinstance(v, bool) or not isinstance(v, kind) or v != v or v in (float("inf"),) \
                or v < (1 if k in positive else 0):
            raise ValueError(f"{k} must be a {'whole number' if kind is int else 'number'} "
                             f">= {1 if k in positive else 0}, not {v!r}")


@register
class LocalRetry(Policy):
    name = "local-retry"
    origin = "merged (6.16+): tdx_handle_ept_violation retries RET_PF_RETRY inside KVM, no count limit"
    sites = (Site.FAULT,)

    def on_busy(self, ctx: BusyContext, rng: np.random.Generator):
        return ResumeGuest() if ctx.events_pending else Retry()


@register
class ResumeGuestPolicy(Policy):
    name = "resume-guest"
    origin = "Sean, Zt-LmzUSyljHGcMO: in the fault path resume the guest and let it fault again"
    sites = (Site.FAULT,)

    def on_busy(self, ctx, rng):
        return ResumeGuest()


@register
class KickAndRetryOnce(Policy):
    name = "kick-and-retry-once"
    origin = "merged: tdh_do_no_vcpus sets wait_for_sept_zap, kicks all vCPUs, retries once, else KVM_BUG_ON"
    sites = (Site.FAULT, Site.ZAP)

    def on_busy(self, ctx, rng):
        return BugVm() if ctx.kicked else KickAndRetry()


@register
class FastpathReenter(Policy):
    name = "fastpath-reenter"
    origin = "merged: a BUSY TDH.VP.ENTER is EXIT_FASTPATH_EXIT_HANDLED and is simply tried again"
    sites = (Site.VP_ENTER,)

    def on_busy(self, ctx, rng):
        return Retry()


@register
class BlindRetry(Policy):
    name = "blind-retry"
    origin = "patch 09/21: tdx_seamcall_sept retried BUSY up to SEAMCALL_RETRY_MAX=16; REMOVE/TRACK without bound"
    sites = HOST_SITES

    def __init__(self, max_retries: int | None = 16, delay_us: float = 0.0,
                 only_sept_tree: bool = False):
        _check(max_retries=max_retries, delay_us=delay_us)
        self.max_retries, self.delay_us = max_retries, delay_us
        self.only_sept_tree = only_sept_tree   # tdx_seamcall_sept retried BUSY|SEPT only

    def on_busy(self, ctx, rng):
        if self.only_sept_tree and ctx.status & 0xFFFF_FFFF != OPERAND_ID_SEPT:
            return GIVE_UP[ctx.site]
        if self.max_retries is None or ctx.attempt <= self.max_retries:
            return Retry(self.delay_us)
        return GIVE_UP[ctx.site]


@register
class BoundedRetry(Policy):
    name = "bounded-retry"
    origin = "Paolo, 1bbe3a78: count retries, warn at 16 with the limit doubling, KVM_BUG_ON at 1024"
    sites = HOST_SITES

    def __init__(self, warn_at: int = 16, bug_at: int = 1024, backoff: str = "none",
                 delay_us: float = 1.0, max_delay_us: float = 100.0):
        if backoff not in ("none", "fixed", "exponential", "jitter"):
            raise ValueError(f"backoff must be none|fixed|exponential|jitter, not {backoff!r}")
        _check(warn_at=warn_at, bug_at=bug_at, delay_us=delay_us, max_delay_us=max_delay_us,
               positive=("warn_at", "bug_at"))
        self.warn_at, self.bug_at, self.backoff = warn_at, bug_at, backoff
        self.delay_us, self.max_delay_us = delay_us, max_delay_us

    def on_busy(self, ctx, rng):
        if ctx.attempt >= self.bug_at:
            return BugVm()
        # warn at warn_at, then each time the count doubles (16, 32, 64, ...)
        ratio, rem = divmod(ctx.attempt, self.warn_at)
        warn = rem == 0 and ratio > 0 and ratio & (ratio - 1) == 0
        return Retry(self._delay(ctx.attempt, rng), warn=warn)

    def _delay(self, attempt: int, rng) -> float:
        if self.backoff == "none":
            return 0.0
        if self.backoff == "fixed":
            return self.delay_us
        cap = min(self.max_delay_us, self.delay_us * 2 ** min(attempt - 1, 30))
        return cap if self.backoff == "exponential" else float(rng.uniform(0.0, cap))


@register
class ExitToUserspacePolicy(Policy):
    name = "exit-to-userspace"
    origin = "Sean, Zt9kmVe1nkjVjoEg: zero tolerance as in SGX; any BUSY is a KVM bug, report it to userspace"
    sites = HOST_SITES

    def on_busy(self, ctx, rng):
        if ctx.site is Site.FAULT and not ctx.status:
            return ResumeGuest()    # a frozen SPTE is KVM's own business, not a module BUSY
        return ExitToUserspace()


@register
class TdxSeamcallSept(Policy):
    name = "tdx-seamcall-sept"
    origin = ("patch 09/21 (Rick Edgecombe, TDX MMU part 2, Sep 2024; quoted by Sean, "
              "Zt9kmVe1nkjVjoEg): tdx_seamcall_sept retried BUSY|SEPT_TREE up to "
              "SEAMCALL_RETRY_MAX=16; each caller then did its own thing")
    sites = (Site.FAULT, Site.ZAP)

    def __init__(self, max_retries: int = 16):
        _check(max_retries=max_retries)
        self.max_retries = max_retries

    def on_busy(self, ctx, rng):
        """Per leaf and status operand, what the series' code did:
        - fault path (SEPT.ADD, AUG): BUSY|SEPT_TREE retried 16 times, then -EAGAIN ->
          RET_PF_RETRY (the guest is resumed; there was no local retry yet); any other
          BUSY (BUSY|RCX: a guest TDCALL holds the entry) -> KVM_BUG_ON. A frozen SPTE or a
          stale fault made no SEAMCALL: RET_PF_RETRY.
        - BLOCK: BUSY|SEPT_TREE retried 16 times, then -EAGAIN, which remove_external_spte
          turns into KVM_BUG_ON; any other BUSY -> KVM_BUG_ON at once.
        - REMOVE: loops while BUSY|SEPT_TREE, without bound; BUSY|RCX -> KVM_BUG_ON.
        - TRACK: loops while BUSY of any operand, without bound."""
        tree = ctx.status & 0xFFFF_FFFF == OPERAND_ID_SEPT
        if ctx.site is Site.FAULT:
            if not ctx.status or (tree and ctx.attempt > self.max_retries):
                return ResumeGuest()
            return Retry() if tree else BugVm()
        if ctx.leaf == "TDH.MEM.TRACK" or (tree and ctx.leaf == "TDH.MEM.PAGE.REMOVE"):
            return Retry()
        return Retry() if tree and ctx.attempt <= self.max_retries else BugVm()


@register
class LinuxGuest(Policy):
    name = "linux-guest"
    origin = "torvalds/linux tdx-shared.c: any non-zero ACCEPT status is failure; 1G->2M->4K, then panic"
    sites = (Site.ACCEPT,)

    def on_busy(self, ctx, rng):
        return GuestFail()


@register
class RetryingGuest(Policy):
    name = "retrying-guest"
    origin = "a guest that retries a BUSY ACCEPT after a pause instead of failing (not Linux)"
    sites = (Site.ACCEPT,)

    def __init__(self, delay_us: float = 1.0, max_retries: int | None = None):
        _check(delay_us=delay_us, max_retries=max_retries)
        self.delay_us, self.max_retries = delay_us, max_retries

    def on_busy(self, ctx, rng):
        if self.max_retries is not None and ctx.attempt > self.max_retries:
            return GuestFail()
        return Retry(self.delay_us)

