"""One look for every figure: the theme, one colour per policy label, human labels."""
from __future__ import annotations

import re
import zlib

import plotly.graph_objects as go

THEME = dict(template="plotly_white", font=dict(family="DejaVu Sans, Arial", size=13),
             margin=dict(l=70, r=30, t=90, b=60), legend=dict(title_text="policy"))
# One colour per policy label in every figure of every session: the shipped presets have
# fixed colours; any other label gets one from its name (a stable hash, not the order).
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#EECA3B", "#2F4B7C", "#A05195", "#D45087", "#665191")
PRESET_COLORS = {"upstream": "#4C78A8", "patch-09-21": "#E45756", "zero-tolerance": "#54A24B",
                 "sean-per-path": "#F58518", "host-priority-retry": "#B279A2",
                 "vm-spinlock": "#9D755D", "paolo-bounded": "#72B7B2",
                 "mmu-lock-write": "#EECA3B", "blind-retry-all": "#FF9DA6"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")

# metric and config names -> (human title, unit); unit "%" means a share shown in percent
LABELS = {
    "host_busy_rate": ("BUSY share of host SEAMCALLs", "%"),
    "guest_busy_rate": ("BUSY share of the guest's TDCALLs", "%"),
    "hostile_busy_rate": ("BUSY share of the hostile vCPUs' TDCALLs", "%"),
    "kicks": ("all-vCPU kicks", "per run"), "ipis": ("IPIs", "per run"),
    "error_exits": ("error exits to userspace", "per run"),
    "ioctl_errors": ("failed ioctls", "per run"),
    "memory_fault_exits": ("KVM_EXIT_MEMORY_FAULT exits", "per run"),
    "vm_bugged": ("runs with the VM bugged", "runs"),
    "guest_panics": ("runs with a guest panic", "runs"),
    "hp_timeouts": ("HOST_PRIORITY timeouts", "per run"),
    "zero_step_armings": ("zero-step armings", "per run"),
    "retries_fault": ("fault retries", "per run"), "retries_zap": ("zap retries", "per run"),
    "retries_vp_enter": ("VP.ENTER retries", "per run"),
    "host_retry_cpu_us": ("host CPU spent retrying", "µs per run"),
    "accept_throughput_per_ms": ("pages accepted", "per ms"),
    "pages_accepted": ("pages accepted", "per run"),
    "conversions_ok": ("conversions finished", "per run"),
    "jain_work": ("Jain's fairness index of useful work", ""),
    "useful_work": ("useful work per vCPU", "pages or conversions"),
    "horizon_us": ("simulated time", "µs"),
    "vcpus": ("vCPUs", ""), "vcpus.1.count": ("vCPUs of the second role", ""),
    "vcpus.0.count": ("vCPUs of the first role", ""),
    "module.host_priority": ("HOST_PRIORITY", ""),
    "module.hp_lock_timeout_us": ("HP_LOCK_TIMEOUT", "µs"),
    "module.zero_step_threshold": ("zero-step threshold", "faults"),
    "module.accept_locks_not_present": ("ACCEPT locks FREE entries", ""),
    "module.version": ("TDX module version", ""),
}
OPS = {"private_fault": "private fault (one try)", "fault_wait": "guest-visible fault wait",
       "zap_4k": "4 KB zap", "conversion": "private/shared conversion",
       "accept_4K": "4 KB ACCEPT", "vp_enter": "VP.ENTER"}
QUANTILE_NAMES = {"p50": "median", "p99": "p99", "p999": "p99.9", "max": "max"}
_OP_METRIC = re.compile(r"^(?P<op>.+)_(?P<q>p50|p99|p999|max)_us$")


def title(name: str) -> str:
    """The human title of a metric or config name (``zap_4k_p99_us`` -> ``4 KB zap p99``)."""
    name = str(name)
    if name in LABELS:
        return LABELS[name][0]
    m = _OP_METRIC.match(name)
    if m:
        return f"{OPS.get(m['op'], m['op'].replace('_', ' '))} {QUANTILE_NAMES[m['q']]}"
    if name.startswith("timings."):
        return name.split(".", 1)[1].removesuffix("_us").replace("_", " ") + " time"
    return OPS.get(name, name.replace("_", " "))


def unit(name: str) -> str:
    name = str(name)
    if name in LABELS:
        return LABELS[name][1]
    return "µs" if name.endswith("_us") else ""


def label(name: str) -> str:
    """Title with its unit, for an axis: ``4 KB zap p99 (µs)``."""
    u = unit(name)
    return f"{title(name)} ({u})" if u else title(name)


def is_share(name: str) -> bool:
    return unit(name) == "%"


def policy_color(label: str) -> str:
    """The colour of a policy label, the same in every figure, notebook and panel."""
    label = str(label)
    return PRESET_COLORS.get(label) or PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    return f"rgba({int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},{alpha})"


def line(label: str, i: int) -> dict:
    """Colour by label; a dash style by position, so lines that overlap stay visible."""
    return dict(color=policy_color(label), dash=DASHES[i % len(DASHES)])


def empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=15, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def themed(fig: go.Figure, title: str, subtitle: str = "", legend: str = "policy") -> go.Figure:
    sub = "<br>".join(f"<sup>{line}</sup>" for line in subtitle.split("<br>")) if subtitle else ""
    text = f"{title}<br>{sub}" if subtitle else title
    margin = {**THEME["margin"], **(fig.layout.margin.to_plotly_json() if fig.layout.margin else {})}
    fig.update_layout(title=dict(text=text, x=0.01), **{**THEME, "margin": margin})
    fig.update_layout(legend_title_text=legend)
    return fig


def policies(df) -> list[str]:
    """Policy labels in the order they first appear."""
    return list(dict.fromkeys(df["policy"].astype(str))) if len(df) else []
