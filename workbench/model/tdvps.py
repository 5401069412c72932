"""Layer 3 (model): the TDX module's per-vCPU state (TDVPS): the TDVPR lock, the zero-step
counter and the vCPU's hold on the TD epoch."""
from __future__ import annotations

from ..core.tdx_errno import OPERAND_ID_TDVPR
from .locks import SharexHpLock


class TdVcpu:
    """The module's per-vCPU state (TDVPS): zero-step counter, epoch hold, HP streak."""

    __slots__ = ("name", "tdvpr", "entry_rip", "epf_count", "epf_gpas", "epoch_parity",
                 "hp_streak_start", "armings", "irq_pending", "interruptible", "proc")

    def __init__(self, name: str, hp_enabled: bool):
        self.name = name
        self.tdvpr = SharexHpLock(f"tdvpr[{name}]", OPERAND_ID_TDVPR, hp_enabled)
        self.entry_rip = None
        self.epf_count = 0
        self.epf_gpas: list[int] = []
        self.epoch_parity = None      # which epoch refcount this vCPU holds while in the TD
        self.hp_streak_start = None
        self.armings = 0
        self.irq_pending = False      # an IPI arrived while the vCPU was in the TD
        self.interruptible = False    # the vCPU sits where an interrupt exits at once
        self.proc = None              # the SimPy process running this vCPU

    @property
    def zero_step_armed(self) -> bool:
        return bool(self.epf_gpas)

    @property
    def in_td(self) -> bool:
        return self.epoch_parity is not None
