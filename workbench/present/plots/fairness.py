"""Fairness figures: who gets work done, Jain's index with its interval, where time goes."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ...experiments.metrics import HOSTILE_ROLES, jain
from ...experiments.stats import t_interval
from .style import TIME_COLORS, empty, policies, policy_color, symbol, themed

# the per-vCPU states of ``RunResult.vcpus`` (``{state}_us``) and how a person calls them
STATES = {"guest": "in guest", "kvm": "in KVM", "retry": "retrying",
          "mmu_wait": "waiting on mmu_lock", "zap_wait": "waiting for the zap",
          "userspace": "in userspace", "pamt_wait": "waiting on KVM's PAMT spinlock",
          "hot_line": "waiting for hot lock lines", "host_alloc": "waiting on page allocation",
          "mem_bw": "waiting on memory bandwidth", "guest_lock": "waiting on guest locks",
          "halted": "halted (idle)", "idle": "idle", "stopped": "stopped"}
STATE_COLORS = TIME_COLORS


def _friendly(vcpus: pd.DataFrame) -> pd.DataFrame:
    return vcpus[~vcpus["role"].isin(HOSTILE_ROLES)] if "role" in vcpus.columns else vcpus


def work_traces(vcpus: pd.DataFrame, legend: bool = True, group: bool = False):
    """One box-and-dots trace per policy: useful work per vCPU, x = role."""
    v = _friendly(vcpus)
    out = []
    for policy in policies(v):
        g = v[v["policy"].astype(str) == policy]
        keys = ["role", "replication"] if "replication" in g.columns else ["role"]
        worst = min((jain(r["useful_work"]) for _, r in g.groupby(keys) if len(r) > 1),
                    default=1.0)
        c = policy_color(policy)
        out.append(go.Box(x=g["role"], y=g["useful_work"], name=f"{policy} (Jain {worst:.3f})",
                          boxpoints="all", jitter=0.4, pointpos=0, fillcolor="rgba(0,0,0,0)",
                          line=dict(color=c), marker=dict(color=c, size=6), hovertext=g["vcpu"],
                          showlegend=legend, legendgroup=policy if group else None,
                          offsetgroup=policy))
    return out


def fairness(vcpus: pd.DataFrame) -> go.Figure:
    """Useful work per vCPU (pages accepted, conversions finished), one dot per vCPU and
    replication, grouped by role and policy, with Jain's index per policy in the legend: a
    starved vCPU is a dot far below its group. Hostile vCPUs are left out. Takes the
    ``vcpus`` table of runs (``RunResult.vcpus`` or ``Comparison.vcpus``)."""
    head = "Who gets work done? Useful work per vCPU, by policy"
    fig = go.Figure()
    if _friendly(vcpus).empty or "useful_work" not in vcpus.columns:
        return themed(empty(fig, "no well-behaved vCPUs in these runs"), head)
    for t in work_traces(vcpus):
        fig.add_trace(t)
    fig.update_layout(boxmode="group")
    fig.update_xaxes(title_text="vCPU role")
    fig.update_yaxes(title_text="useful work per vCPU (pages accepted or conversions)",
                     rangemode="tozero")
    return themed(fig, head, "one dot per vCPU and replication; Jain's index is the worst "
                  "role's (1 = all equal, 1/n = one vCPU does everything)")


def jain_stats(summary: pd.DataFrame) -> pd.DataFrame:
    """Per policy: Jain's index of useful work (``jain_work`` of each run), its mean over
    replications and the 95 % t-interval (NaN with one replication)."""
    rows = []
    for policy in policies(summary):
        n, mean, _, lo, hi = t_interval(summary.loc[summary["policy"].astype(str) == policy,
                                                    "jain_work"])
        rows.append({"policy": policy, "n": n, "mean": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["policy", "n", "mean", "ci_low", "ci_high"])


def jain_trace(summary: pd.DataFrame, legend: bool = False, group: bool = False) -> go.Scatter:
    s = jain_stats(summary)
    hi = (s["ci_high"].clip(upper=1.0) - s["mean"]).fillna(0)
    lo = (s["mean"] - s["ci_low"]).fillna(0)
    return go.Scatter(x=s["policy"], y=s["mean"], mode="markers", showlegend=legend,
                      marker=dict(size=13, color=[policy_color(p) for p in s["policy"]],
                                  symbol=[symbol(p, s["policy"]) for p in s["policy"]]),
                      error_y=dict(type="data", array=hi, arrayminus=lo, thickness=2),
                      name="Jain's index", customdata=s["n"],
                      hovertemplate="%{x}: %{y:.3f} (n=%{customdata})<extra></extra>")


def jain_interval(summary: pd.DataFrame) -> go.Figure:
    """Jain's index of useful work per policy, mean and 95 % interval over replications
    (from ``Comparison.summary``)."""
    head = "How evenly do well-behaved vCPUs get work done? (Jain's index)"
    if summary.empty or "jain_work" not in summary.columns:
        return themed(empty(go.Figure(), "no runs"), head)
    fig = go.Figure(jain_trace(summary))
    fig.update_yaxes(title_text="Jain's index of useful work (1 = all equal)", range=[0, 1.05])
    n = int(jain_stats(summary)["n"].max())
    return themed(fig, head, f"mean and 95 % t-interval over {n} replication(s); the worst "
                  "role with two or more vCPUs")


# fairness metrics in [0, 1] -> (trace name, marker: filled, or open for the second)
FAIRNESS = {"jain_work": ("Jain's index", ""),
            "host_contested_share": ("host's share of acquisitions after a BUSY", "-open")}


def fairness_traces(summary: pd.DataFrame, legend: bool = False):
    """Per fairness metric in [0, 1] (Jain's index: filled markers; the host's share of
    the acquisitions after a BUSY: open ones; a variant's own symbol): mean and 95 %
    interval over the complete runs of each policy; a policy whose runs stopped early has
    no marker (its verdict says why)."""
    from ...experiments.stats import describe
    names = policies(summary)
    d = describe(summary, metrics=[m for m in FAIRNESS if m in summary.columns])
    out = []
    for m, (label, fill) in FAIRNESS.items():
        g = d[(d["metric"] == m)].set_index(d.loc[d["metric"] == m, "policy"].astype(str))
        g = g.reindex(names)
        out.append(go.Scatter(
            x=names, y=g["mean"], mode="markers", name=label, showlegend=legend,
            marker=dict(size=12, color=[policy_color(p) for p in names],
                        symbol=[symbol(p, names) + fill for p in names],
                        line=dict(width=2, color=[policy_color(p) for p in names])),
            error_y=dict(type="data", array=(g["ci_high"] - g["mean"]).fillna(0),
                         arrayminus=(g["mean"] - g["ci_low"]).fillna(0), thickness=2),
            customdata=g["n"], hovertemplate=f"{label}<br>%{{x}}: %{{y:.3f}} "
            "(complete runs: %{customdata})<extra></extra>"))
    return out


def breakdown_table(vcpus: pd.DataFrame) -> pd.DataFrame:
    """Per policy and state: the share of the well-behaved vCPUs' time spent there."""
    v = _friendly(vcpus)
    cols = [f"{s}_us" for s in STATES if f"{s}_us" in v.columns]
    rows = []
    for policy in policies(v):
        tot = v.loc[v["policy"].astype(str) == policy, cols].sum()
        whole = float(tot.sum()) or 1.0
        rows += [{"policy": policy, "state": c[:-3], "share": float(tot[c]) / whole}
                 for c in cols]
    return pd.DataFrame(rows, columns=["policy", "state", "share"])


def breakdown_traces(vcpus: pd.DataFrame, legend: bool = True):
    b = breakdown_table(vcpus)
    return [go.Bar(x=g["policy"], y=g["share"], name=STATES[state], showlegend=legend,
                   marker=dict(color=STATE_COLORS[state], line=dict(color="white", width=0.5)),
                   legendgroup=f"state-{state}",
                   hovertemplate=f"{STATES[state]}: %{{y:.1%}}<extra>%{{x}}</extra>")
            for state, g in b.groupby("state", sort=False) if g["share"].any()]


def time_breakdown(vcpus: pd.DataFrame) -> go.Figure:
    """Where the well-behaved vCPUs' time goes, per policy: in guest, in KVM, retrying,
    waiting on mmu_lock, waiting for the zap, in userspace (stacked, percent)."""
    head = "Where does the vCPUs' time go, by policy?"
    traces = breakdown_traces(vcpus)
    if not traces:
        return themed(empty(go.Figure(), "no well-behaved vCPUs in these runs"), head)
    fig = go.Figure(traces)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="share of vCPU time", tickformat=".0%", range=[0, 1])
    return themed(fig, head, "all well-behaved vCPUs and replications pooled; states never "
                  "entered are left out", legend="vCPU state")
