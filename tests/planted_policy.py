"""A test-only policy with a planted bug that needs one interleaving: like the merged
kick-and-retry-once, except that a TRACK that finds the TD epoch held (a VP.ENTER on
another vCPU inside TRACK's window) bugs the VM at once instead of kicking."""
from workbench.policies import Policy, register
from workbench.policies.base import BugVm, KickAndRetry, Site
from workbench.policies.registry import make_policy
from workbench.core.tdx_errno import OPERAND_ID_TD_EPOCH

NAME = "test-planted-track-race"


class PlantedTrackRace(Policy):
    name = NAME
    origin = "test only: a planted bug (TRACK BUSY on the TD epoch -> KVM_BUG_ON)"
    sites = (Site.ZAP,)

    def on_busy(self, ctx, rng):
        if ctx.leaf == "TDH.MEM.TRACK" and ctx.status & 0xFFFF_FFFF == OPERAND_ID_TD_EPOCH:
            return BugVm()
        return BugVm() if ctx.kicked else KickAndRetry()


try:
    make_policy(NAME)
except Exception:           # not registered yet (a module imported once per process)
    register(PlantedTrackRace)

POLICY = {"preset": "upstream", "zap": NAME}
