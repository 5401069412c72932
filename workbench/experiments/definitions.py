"""Layer 6: every summary metric defined once: what it counts, its unit, over which vCPUs,
and what kind of number it is (which decides its interval and whether a run that stopped
early may feed it). docs/metrics.md is generated from this table
(``python -m workbench.experiments.metrics_page``; tests/test_coverage.py keeps it equal).

Kinds:
- ``outcome``: 0 or 1 per run (did the run end that way); shown as "k of n runs" with a
  Clopper-Pearson interval, never averaged into a t-interval.
- ``count``: events per run (>= 0); the hull of the t- and the exact Poisson interval.
- ``share``: a fraction in [0, 1] per run; a t-interval clipped to [0, 1].
- ``amount``: a non-negative quantity per run (time, throughput); a t-interval >= 0.
- ``latency``: a percentile of one run's operations; **complete runs only** (a run that
  stopped early has short, few operations: never a latency sample).
- ``fairness``: how evenly progress is spread; **complete runs only**.
Every metric is per replication (one value per run); a table over replications shows the
mean with its interval. Only ``Comparison.latency`` pools operations over replications,
and its columns say so (``pooled_p99_us``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from ..core.records import HOSTILE_ROLES

OPS = {"private_fault": "one private EPT-violation fault in KVM (one try: a fault given up "
                        "and re-taken is two)",
       "fault_wait": "the guest-visible wait for a private GPA: from a vCPU's first fault on "
                     "it until a fault on it ends for good",
       "zap_4k": "one 4 KB zap (BLOCK, TRACK + kick, REMOVE, WBINVD)",
       "conversion": "one private-to-shared conversion (MapGPA to its last zap)",
       "accept_4K": "one 4 KB TDG.MEM.PAGE.ACCEPT", "vp_enter": "one retried TDH.VP.ENTER"}
QUANTILES = {"p50": "median", "p99": "99th percentile", "p999": "99.9th percentile",
             "max": "maximum"}
WB = "well-behaved vCPUs (every role but " + ", ".join(HOSTILE_ROLES) + ")"
ALL = "all vCPUs (hostile roles included)"
HOST = "host (KVM and the VMM)"


@dataclass(frozen=True)
class Metric:
    name: str
    definition: str
    unit: str
    vcpus: str
    kind: str          # outcome, count, share, amount, latency, fairness

    @property
    def complete_only(self) -> bool:
        return self.kind in ("latency", "fairness")


def _m(name, definition, unit, vcpus, kind) -> Metric:
    return Metric(name, definition, unit, vcpus, kind)


FIXED = [
    _m("vm_bugged", "the run ended with the VM bugged or dead (KVM_BUG_ON, TDX_BUG_ON, "
       "kvm_vm_dead)", "run", HOST, "outcome"),
    _m("guest_panics", "the run ended with a guest panic", "run", WB, "outcome"),
    _m("td_failed", "the run stopped before its horizon for any reason (VM bugged, guest "
       "panic, the VMM or a selftest assert stopped it, the run budget)", "run", ALL,
       "outcome"),
    _m("host_busy_rate", "BUSY statuses over attempts of the host's SEAMCALLs", "share",
       HOST, "share"),
    _m("guest_busy_rate", "BUSY statuses over attempts of the well-behaved guest's TDCALLs",
       "share", WB, "share"),
    _m("hostile_busy_rate", "BUSY statuses over attempts of the hostile vCPUs' TDCALLs",
       "share", "hostile vCPUs", "share"),
    _m("retries_fault", "SEAMCALL retries on the fault path", "per run", HOST, "count"),
    _m("retries_zap", "SEAMCALL retries on the zap path", "per run", HOST, "count"),
    _m("retries_vp_enter", "TDH.VP.ENTER retries", "per run", HOST, "count"),
    _m("error_exits", "KVM error exits to userspace (a BUSY turned into an error)",
       "per run", ALL, "count"),
    _m("ioctl_errors", "failed KVM_SET_MEMORY_ATTRIBUTES / hole punch ioctls", "per run",
       HOST, "count"),
    _m("memory_fault_exits", "KVM_EXIT_MEMORY_FAULT exits", "per run", ALL, "count"),
    _m("hp_timeouts", "TDX_HOST_PRIORITY_BUSY_TIMEOUT exits", "per run", ALL, "count"),
    _m("zero_step_armings", "times a vCPU armed zero-step", "per run", ALL, "count"),
    _m("kicks", "all-vCPU kicks (KVM_REQ_OUTSIDE_GUEST_MODE rounds)", "per run", HOST,
       "count"),
    _m("ipis", "IPIs sent", "per run", HOST, "count"),
    _m("splits", "2 MB leaves split", "per run", HOST, "count"),
    _m("demote_busy", "BUSY from TDH.MEM.PAGE.DEMOTE", "per run", HOST, "count"),
    _m("host_retry_cpu_us", "host CPU time spent retrying SEAMCALLs", "us per run", HOST,
       "amount"),
    _m("accept_throughput_per_ms", "pages the well-behaved guest accepted per ms of the "
       "horizon (a VM that stopped early accepts nothing after it stopped)", "pages/ms", WB, "amount"),
    _m("pamt_wait_ms", "time faults waited for Dynamic PAMT", "ms per run", HOST, "amount"),
    _m("jain_work", "Jain's index of useful work (pages accepted, conversions) in the worst "
       "role with two or more vCPUs; 1 = equal", "index", WB, "fairness"),
    _m("host_contested_share", "of the acquisitions that follow a BUSY (a caller's first "
       "non-BUSY status after BUSY on the same leaf), the host's share; the guest's is "
       "1 minus it", "share", "host against all guest vCPUs", "fairness"),
    _m("longest_wait_us", "the longest any well-behaved vCPU waited for one operation "
       "(fault wait, ACCEPT, conversion, VP.ENTER) to finish", "us", WB, "fairness"),
    _m("wait_spread", "within each role of two or more well-behaved vCPUs, the longest "
       "wait of its worst vCPU over that of its best; the largest over roles (1 = even)",
       "ratio", WB, "fairness"),
    _m("victim_slowdown", "the well-behaved vCPUs' useful work in the same run without "
       "the hostile vCPUs over their work with them (a paired run; 1 = no harm)", "ratio",
       WB, "fairness"),
]


def _op_metrics() -> list[Metric]:
    out = []
    for op, what in OPS.items():
        for q, qname in QUANTILES.items():
            out.append(_m(f"{op}_{q}_us", f"{qname} of the latency of {what}, in one run",
                          "us", ALL, "latency"))
            out.append(_m(f"wb_{op}_{q}_us", f"{qname} of the latency of {what}, in one "
                          "run", "us", WB, "latency"))
    return out


METRICS = {m.name: m for m in FIXED + _op_metrics()}
_OP = re.compile(r"^(wb_)?(?P<op>.+)_(p50|p99|p999|max)_us$")


def metric(name: str) -> Metric | None:
    """The definition of a summary column, or None for one not defined here (a count or
    time of the model's mechanisms: see docs/model.md)."""
    return METRICS.get(name)


def kind(name: str) -> str:
    """The kind of a summary column: its definition's, else ``share`` for ``*_rate`` and
    ``*_share``/``*_occupancy`` columns, ``amount`` for the rest (>= 0)."""
    m = METRICS.get(name)
    if m is not None:
        return m.kind
    if _OP.match(name):
        return "latency"
    if name.endswith(("_rate", "_share", "_occupancy")):
        return "share"
    return "amount"


def complete_only(name: str) -> bool:
    return kind(name) in ("latency", "fairness")


# -- which runs count -------------------------------------------------------------------
MIN_COMPLETE = 2    # complete runs a policy needs, when some of its runs stopped early


def complete(summary: pd.DataFrame) -> pd.Series:
    """Per run: True where it ran to its horizon (``stopped`` empty)."""
    if "stopped" not in summary.columns:
        return pd.Series(True, index=summary.index)
    return summary["stopped"].fillna("").astype(str).eq("")


def usable(ok: pd.Series) -> pd.Series:
    """The runs of one group whose latency and fairness count: its complete runs, if all
    of them are, or at least :data:`MIN_COMPLETE` are; else none (not compared)."""
    k = int(ok.sum())
    return ok if k == len(ok) or k >= MIN_COMPLETE else ok & False
