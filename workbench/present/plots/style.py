"""One look for every figure: the theme, one colour per policy label, human labels."""
from __future__ import annotations

import re
import zlib

import plotly.graph_objects as go

THEME = dict(template="plotly_white", font=dict(family="DejaVu Sans, Arial", size=13),
             margin=dict(l=70, r=30, t=90, b=60), legend=dict(title_text="policy"))
# Policies own the hues: one colour per policy label in every figure of every session. The
# shipped presets have fixed colours (Okabe-Ito's plus two blue-violets, chosen so every
# pair stays apart under deuteranopia and protanopia: tests/test_colour.py); any other
# label gets one of them from its name (a stable hash, not the order).
PRESET_COLORS = {"upstream": "#0072B2", "patch-09-21": "#D55E00", "zero-tolerance": "#009E73",
                 "sean-per-path": "#E69F00", "host-priority-retry": "#CC79A7",
                 "vm-spinlock": "#56B4E9", "paolo-bounded": "#4B00FF",
                 "mmu-lock-write": "#222222", "blind-retry-all": "#7869FF"}
PALETTE = tuple(PRESET_COLORS.values())
# Where time goes (in guest, in KVM, waiting on mmu_lock, ...) has its own muted palette
# that never reuses a policy's colour; pale for idle states, dark for stopped.
TIME_COLORS = {"guest": "#B4D2FF", "kvm": "#B4B4A5", "retry": "#87694B",
               "mmu_wait": "#D2B487", "zap_wait": "#FFE1B4", "userspace": "#696996",
               "pamt_wait": "#3C7878", "hot_line": "#A5C3D2", "host_alloc": "#3C4B3C",
               "mem_bw": "#2D4B5A", "guest_lock": "#4B4B1E", "halted": "#F0E1D2",
               "idle": "#C3F0FF", "stopped": "#2D4B78"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
# A variant of a preset (``upstream · HP off``, ``upstream+accept=linux-guest``) keeps the
# preset's colour and takes its own dash, bar pattern and marker symbol (same slot in each).
PATTERNS = ("", "/", "x", ".", "\\", "+")
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "star")
VARIANT_SLOTS = {"HP off": 1}

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
    "vcpus.1.per_page": ("spammers per page", ""), "memory_mb": ("TD memory", "MB"),
    "shared.off": ("shared resource switched off", ""),
    "td_failed": ("runs where the TD failed", "runs"),
    "host_contested_share": ("host's share of acquisitions after a BUSY", "%"),
    "longest_wait_us": ("longest wait of a vCPU for one operation", "µs"),
    "wait_spread": ("longest wait, worst vCPU over best of a role", "ratio"),
    "demote_busy": ("BUSY from TDH.MEM.PAGE.DEMOTE", "per run"),
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
        op = m["op"].removeprefix("wb_")
        who = " (well-behaved vCPUs)" if m["op"].startswith("wb_") else ""
        return f"{OPS.get(op, op.replace('_', ' '))} {QUANTILE_NAMES[m['q']]}{who}"
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


def base_name(label: str) -> str:
    """The policy set a label starts from: ``upstream`` for ``upstream+accept=linux-guest ·
    HP off``."""
    return str(label).split(" · ")[0].split("+")[0]


def variant(label: str) -> str:
    """What a label changes from its base as shipped ('' for none): the per-site choices and
    the switches, without ``HP on`` (the module's default)."""
    rest = str(label)[len(base_name(label)):]
    return " · ".join(p for p in rest.split(" · ") if p and p != "HP on")


def policy_color(label: str) -> str:
    """The colour of a policy label, the same in every figure, notebook and panel: its
    base preset's colour (a stable hash of the base name for other policies), so every
    variant of ``upstream`` is upstream's blue."""
    base = base_name(label)
    return PRESET_COLORS.get(base) or PALETTE[zlib.crc32(base.encode()) % len(PALETTE)]


def _prefer(label: str) -> int:
    v = variant(label)
    if not v:
        return 0
    return VARIANT_SLOTS.get(v, 1 + zlib.crc32(v.encode()) % (len(DASHES) - 1))


def slot(label: str, labels=None, same_base: bool = True) -> int:
    """The style slot of ``label`` among the ``labels`` of one figure: a preset as shipped
    prefers 0 (solid, no pattern), ``HP off`` 1, other variants a stable slot from their
    text; two labels of a figure never share a slot (``same_base``: among those of one
    base preset, i.e. one colour; else among all, so overlapping lines stay apart)."""
    label = str(label)
    pool = list(dict.fromkeys([*map(str, [] if labels is None else labels), label]))
    if same_base:
        pool = [p for p in pool if base_name(p) == base_name(label)]
    taken: dict[str, int] = {}
    for p in sorted(pool, key=lambda p: (_prefer(p), pool.index(p))):
        k = _prefer(p)
        while k in taken.values() and len(taken) < len(DASHES):
            k = (k + 1) % len(DASHES)
        taken[p] = k
    return taken[label]


def bar_marker(labels) -> dict:
    """Marker of a bar trace with one bar per label: colour and pattern per label."""
    labels = [str(x) for x in labels]
    return dict(color=[policy_color(p) for p in labels],
                pattern_shape=[PATTERNS[slot(p, labels)] for p in labels])


def symbol(label: str, labels=None) -> str:
    return SYMBOLS[slot(label, labels)]


def rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    return f"rgba({int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},{alpha})"


def line(label: str, labels=None) -> dict:
    """Colour by base preset; a dash per label of the figure (``labels``), so a variant
    and its preset, and any lines that overlap, stay apart."""
    return dict(color=policy_color(label), dash=DASHES[slot(label, labels, same_base=False)])


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
