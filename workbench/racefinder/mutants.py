"""Layer 6: planted-bug policies (mutants) that score the race finder.

Each mutant is the merged KVM behaviour (``upstream``) with one realistic mistake a KVM
patch could make at one call site, written on the policy API (:mod:`workbench.policies`).
Each one bugs the VM in some interleaving that the merged code survives, so a race finder
that is any good finds it; ``workbench explore --mutants`` (:func:`score`) reports, per
mutant, whether it was found and after how many schedules and seconds. The merged code
(``upstream``) must stay clean under the same budget.

Mistakes the policy API cannot express (and so not here): BUSY taken for success (the zap
goes on to TRACK and REMOVE after a failed BLOCK), a kick that forgets to set
``wait_for_sept_zap`` (vCPUs re-enter and take the lock again before the retry), a retry
loop that drops mmu_lock between the tries. Each needs a new action in the model's zap path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.tdx_errno import OPERAND_ID_RCX, OPERAND_ID_SEPT, TDX_OPERAND_BUSY
from ..policies import BugVm, KickAndRetry, Policy, ResumeGuest, Retry, Site, register
from ..policies.registry import REGISTRY


def _operand(ctx) -> int:
    return ctx.status & 0xFFFF_FFFF


class _Mutant(Policy):
    """A planted bug: ``mistake`` says what a patch got wrong, in KVM's terms."""
    mistake = ""


class _KthBusyFatal(_Mutant):
    """Retries a BUSY at once and gives up (TDX_BUG_ON / KVM_BUG_ON) at the k-th of one call."""

    def __init__(self, k: int = 2):
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"k must be a whole number >= 2, not {k!r}")
        self.k = k

    def on_busy(self, ctx, rng):
        return BugVm() if ctx.attempt >= self.k else Retry()


class ZapBusyFatal(_Mutant):
    name = "mutant-zap-busy-fatal"
    mistake = ("tdh_do_no_vcpus kicks but never calls again: TDX_BUG_ON on the first "
               "call's BUSY (the kick without the retry)")
    origin = "race-finder mutant: " + mistake
    sites = (Site.ZAP,)

    def on_busy(self, ctx, rng):
        return BugVm()


class ZapKthBusyFatal(_KthBusyFatal):
    name = "mutant-zap-kth-busy-fatal"
    mistake = ("the zap retries BUSY at once, without setting wait_for_sept_zap or kicking, "
               "and gives up (TDX_BUG_ON) at the k-th BUSY of one SEAMCALL")
    origin = "race-finder mutant: " + mistake
    sites = (Site.ZAP,)


class ZapKickOnTreeOnly(_Mutant):
    name = "mutant-zap-kick-on-sept-tree-only"
    mistake = ("the zap compares the whole 64-bit status with TDX_OPERAND_BUSY | "
               "TDX_OPERAND_ID_SEPT instead of masking bits 31:0 (tdx_operand_busy), so "
               "BUSY on the entry (RCX) or the TD epoch is TDX_BUG_ON")
    origin = "race-finder mutant: " + mistake
    sites = (Site.ZAP,)

    def on_busy(self, ctx, rng):
        if ctx.status != TDX_OPERAND_BUSY | OPERAND_ID_SEPT or ctx.kicked:
            return BugVm()
        return KickAndRetry()


class ZapKickOnEntryOnly(_Mutant):
    name = "mutant-zap-kick-on-entry-only"
    mistake = ("the zap kicks only for a guest TDCALL holding the entry (BUSY|RCX); BUSY "
               "on the S-EPT tree or the TD epoch is taken as a KVM bug (TDX_BUG_ON)")
    origin = "race-finder mutant: " + mistake
    sites = (Site.ZAP,)

    def on_busy(self, ctx, rng):
        if _operand(ctx) != OPERAND_ID_RCX or ctx.kicked:
            return BugVm()
        return KickAndRetry()


class FaultBusyFatal(_Mutant):
    name = "mutant-fault-busy-fatal"
    mistake = ("the install path takes -EBUSY from AUG or SEPT.ADD for an unexpected error "
               "(TDX_BUG_ON) instead of RET_PF_RETRY")
    origin = "race-finder mutant: " + mistake
    sites = (Site.FAULT,)

    def on_busy(self, ctx, rng):
        if ctx.status:
            return BugVm()
        # a frozen SPTE or a stale fault made no SEAMCALL: the merged local retry
        return ResumeGuest() if ctx.events_pending else Retry()


class FaultKthBusyFatal(_KthBusyFatal):
    name = "mutant-fault-kth-busy-fatal"
    mistake = ("the local retry of tdx_handle_ept_violation counts the BUSY SEAMCALLs of "
               "one fault and gives up with KVM_BUG_ON at the k-th (a bound far too small)")
    origin = "race-finder mutant: " + mistake
    sites = (Site.FAULT,)

    def __init__(self, k: int = 3):
        super().__init__(k)

    def on_busy(self, ctx, rng):
        if ctx.status and ctx.attempt >= self.k:
            return BugVm()
        return ResumeGuest() if ctx.events_pending else Retry()


class FaultKickAndRetryOnce(_Mutant):
    name = "mutant-fault-kick-and-retry-once"
    mistake = ("the install path copies the zap path's tdh_do_no_vcpus for a BUSY AUG or "
               "SEPT.ADD: kick, retry once, TDX_BUG_ON if still BUSY; but a fault may not "
               "be the only host task on the tree (faults run under the shared mmu_lock)")
    origin = "race-finder mutant: " + mistake
    sites = (Site.FAULT,)

    def on_busy(self, ctx, rng):
        if not ctx.status:           # a frozen SPTE or a stale fault: the merged local retry
            return ResumeGuest() if ctx.events_pending else Retry()
        return BugVm() if ctx.kicked else KickAndRetry()


class VpEnterBusyFatal(_Mutant):
    name = "mutant-vp-enter-busy-fatal"
    mistake = ("tdx_vcpu_run treats a BUSY TDH.VP.ENTER (TD epoch held by TRACK, or the "
               "tree under zero-step) as an unexpected exit: KVM_BUG_ON instead of "
               "EXIT_FASTPATH_EXIT_HANDLED")
    origin = "race-finder mutant: " + mistake
    sites = (Site.VP_ENTER,)

    def on_busy(self, ctx, rng):
        return BugVm()


class VpEnterKthBusyFatal(_KthBusyFatal):
    name = "mutant-vp-enter-kth-busy-fatal"
    mistake = ("the fastpath re-enters after a BUSY VP.ENTER but bounds the re-entries and "
               "gives up (KVM_BUG_ON) at the k-th BUSY in a row")
    origin = "race-finder mutant: " + mistake
    sites = (Site.VP_ENTER,)


for _cls in (ZapBusyFatal, ZapKthBusyFatal, ZapKickOnTreeOnly, ZapKickOnEntryOnly,
             FaultBusyFatal, FaultKthBusyFatal, FaultKickAndRetryOnce, VpEnterBusyFatal,
             VpEnterKthBusyFatal):
    if REGISTRY.get(_cls.name) is not _cls:
        register(_cls)


@dataclass(frozen=True)
class Mutant:
    """One planted bug: a label, the policy set (upstream with one site changed), the
    small scenario it is searched on, and the oracle that must catch it."""
    label: str
    policy: dict
    scenario: str
    oracles: tuple = ("vm_bugged",)

    @property
    def mistake(self) -> str:
        site = next(s for s in ("fault", "zap", "vp_enter", "accept") if s in self.policy)
        spec = self.policy[site]
        return REGISTRY[spec["policy"] if isinstance(spec, dict) else spec].mistake


def _m(label, site, spec, scenario):
    return Mutant(label, {"preset": "upstream", site: spec}, scenario)


MUTANTS = (
    _m("zap-busy-fatal", "zap", "mutant-zap-busy-fatal", "malicious-accept-small"),
    _m("zap-2nd-busy-fatal", "zap", {"policy": "mutant-zap-kth-busy-fatal", "k": 2},
       "zero-step-small"),
    _m("zap-3rd-busy-fatal", "zap", {"policy": "mutant-zap-kth-busy-fatal", "k": 3},
       "zero-step-small"),
    # the same two mistakes where only TRACK against VP.ENTER on the TD epoch can repeat
    _m("zap-2nd-busy-fatal/epoch", "zap", {"policy": "mutant-zap-kth-busy-fatal", "k": 2},
       "conversion-storm-small"),
    _m("zap-3rd-busy-fatal/epoch", "zap", {"policy": "mutant-zap-kth-busy-fatal", "k": 3},
       "conversion-storm-small"),
    _m("zap-kick-on-sept-tree-only", "zap", "mutant-zap-kick-on-sept-tree-only",
       "malicious-accept-small"),
    _m("zap-kick-on-entry-only", "zap", "mutant-zap-kick-on-entry-only",
       "conversion-storm-small"),
    _m("fault-busy-fatal", "fault", "mutant-fault-busy-fatal", "zero-step-small"),
    _m("fault-3rd-busy-fatal", "fault", {"policy": "mutant-fault-kth-busy-fatal", "k": 3},
       "zero-step-small"),
    _m("fault-kick-and-retry-once", "fault", "mutant-fault-kick-and-retry-once",
       "zero-step-small"),
    _m("vp-enter-busy-fatal", "vp_enter", "mutant-vp-enter-busy-fatal",
       "conversion-storm-small"),
    _m("vp-enter-2nd-busy-fatal", "vp_enter", {"policy": "mutant-vp-enter-kth-busy-fatal",
                                                "k": 2}, "zero-step-small"),
)


# ------------------------------------------------------------------ the mutation score
@dataclass(frozen=True)
class Score:
    """One row of the study: a mutant (or ``upstream`` on a scenario, which must stay clean)."""
    label: str
    scenario: str
    found: bool
    schedules: int
    seconds: float
    strategy: str
    failure: str = ""
    expect_found: bool = True

    @property
    def ok(self) -> bool:
        return self.found == self.expect_found


def score(*, strategy: str = "guided", seconds: float = 60.0, seed: int = 0, engine=None,
          workers=None, swarm: int = 3, mutants=MUTANTS, clean=None,
          max_schedules: int = 10**6) -> list[Score]:
    """Search each mutant's scenario for ``seconds`` (or ``max_schedules``), then upstream
    on each small scenario (``clean``: their names) with the same budget. No shrinking:
    the score is about finding."""
    from ..core.scenarios import scenario_names
    from .explore import explore
    rows = []
    runs = [(m.label, m.scenario, m.policy, m.oracles, True) for m in mutants]
    runs += [("upstream", s, "upstream", None, False)
             for s in (scenario_names("small") if clean is None else clean)]
    for label, scenario, policy, oracles, expect in runs:
        t0 = time.monotonic()
        v = explore(scenario, policy, schedules=max_schedules, strategy=strategy, seed=seed,
                    oracles=list(oracles) if oracles else None, shrink=False, engine=engine,
                    workers=workers, swarm=swarm, max_seconds=seconds, progress=False)
        found = v.failure is not None
        rows.append(Score(label, scenario, found,
                          v.first_at[0] if found else v.schedules,
                          v.first_at[1] if found else time.monotonic() - t0, strategy,
                          f"{v.failure[0]}: {v.failure[1]}" if found else "", expect))
    return rows


def score_text(rows) -> str:
    out = [f"{'policy':<28} {'scenario':<26} {'found':<6} {'schedules':>9} {'seconds':>8}  "
           "strategy"]
    for r in rows:
        out.append(f"{r.label:<28} {r.scenario:<26} {'yes' if r.found else 'no':<6} "
                   f"{r.schedules:>9} {r.seconds:>8.1f}  {r.strategy}")
    mut = [r for r in rows if r.expect_found]
    clean = [r for r in rows if not r.expect_found]
    found = sum(r.found for r in mut)
    out.append(f"mutation score: {found} of {len(mut)} mutants found "
               f"({100.0 * found / max(1, len(mut)):.0f} %); upstream clean on "
               f"{sum(not r.found for r in clean)} of {len(clean)} small scenarios")
    return "\n".join(out)
