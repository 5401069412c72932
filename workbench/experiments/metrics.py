"""Layer 5: pure functions from a finished run's records to tidy pandas tables
(the data contract of design.md: ``calls``, ``ops``, ``vcpus``, ``summary``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.sept import State
from ..core.records import CALL_COLUMNS, HOSTILE_ROLES, OP_COLUMNS, VCPU_STATES, WAIT_OPS
from ..core.tdx_errno import OPERAND_NAMES, TDX_OPERAND_BUSY, status_name

LATENCY_OPS = ("private_fault", "fault_wait", "zap_4k", "conversion", "accept_4K", "vp_enter")
QUANTILES = {"p50": 0.5, "p99": 0.99, "p999": 0.999}


def _tag(df: pd.DataFrame, tags: dict) -> pd.DataFrame:
    for k, v in reversed(tags.items()):
        df.insert(0, k, v)
    return df


def calls_table(calls: list, tags: dict) -> pd.DataFrame:
    df = pd.DataFrame(calls, columns=list(CALL_COLUMNS))
    status = df["status"].astype("uint64")
    names = {int(s): status_name(int(s)) for s in status.unique()}
    df["status_name"] = status.map(lambda s: names[int(s)])
    is_busy = df["status_name"].isin(["TDX_OPERAND_BUSY", "TDX_OPERAND_BUSY_HOST_PRIORITY"])
    op = (status & np.uint64(0xFFFF_FFFF)).astype("int64")
    df["operand"] = np.where(is_busy, op.map(lambda o: OPERAND_NAMES.get(o, f"0x{o:X}")), "")
    df["status"] = status
    df["host_priority"] = df["status_name"] == "TDX_OPERAND_BUSY_HOST_PRIORITY"
    return _tag(df, tags)




def ops_table(ops: list, tags: dict, roles: dict | None = None) -> pd.DataFrame:
    """One row per op; ``role`` is the workload role of the vCPU (zaps: of the vCPU whose
    VMM thread ran them). Derived rows ``fault_wait`` follow (:func:`fault_waits`)."""
    df = pd.DataFrame(ops, columns=list(OP_COLUMNS))
    df = pd.concat([df, fault_waits(df)], ignore_index=True)
    df.insert(5, "latency_us", df["t_end_us"] - df["t_start_us"])
    roles = roles or {}
    df["role"] = df["actor"].str.removeprefix("zap:").map(roles).fillna("")
    return _tag(df, tags)


def fault_waits(ops: pd.DataFrame) -> pd.DataFrame:
    """The guest-visible wait for a private GPA: from a vCPU's first ``private_fault`` on it
    until a fault on it ends for good (``ok``, or the VM stopped). A fault given up and
    re-entered (``resumed``, RET_PF_RETRY) or sent to userspace and re-run
    (``exit_to_userspace``) is followed by the next fault on the same GPA: one wait of
    several short ``private_fault`` ops, which alone would make giving up look fast."""
    f = ops[ops["op"] == "private_fault"]
    if f.empty:
        return pd.DataFrame(columns=list(OP_COLUMNS))
    f = f.sort_values(["actor", "t_start_us"], kind="stable")
    prev = f.groupby("actor", sort=False)[["outcome", "gpa"]].shift(1)
    chained = prev["outcome"].isin(("resumed", "exit_to_userspace")) & prev["gpa"].eq(f["gpa"])
    episode = (~chained).cumsum().rename("episode")
    g = f.groupby(episode, sort=False)
    out = g.agg(actor=("actor", "first"), gpa=("gpa", "first"), t_start_us=("t_start_us", "min"),
                t_end_us=("t_end_us", "max"), attempts=("attempts", "sum"), busy=("busy", "sum"),
                outcome=("outcome", "last"))
    out.insert(0, "op", "fault_wait")
    return out[list(OP_COLUMNS)].reset_index(drop=True)


def vcpus_table(td, tags: dict) -> pd.DataFrame:
    """One row per vCPU. ``useful_work`` counts what its role is for: pages accepted
    (lazy_accept, fault_storm), conversions finished (converter); the hostile roles' own
    TDCALLs are not work."""
    rows = [{"vcpu": v.name, "role": v.role, "hostile": v.role in HOSTILE_ROLES,
             **{f"{s}_us": v.times[s] for s in VCPU_STATES},
             "faults": v.faults, "entries": v.entries, "ticks": v.ticks,
             "zero_step_armings": v.tdv.armings, "pages_accepted": v.guest.accepted,
             "conversions": v.conversions,
             "useful_work": 0 if v.role in HOSTILE_ROLES else
             (v.conversions if v.role == "converter" else v.guest.accepted)}
            for v in td.vcpus]
    return _tag(pd.DataFrame(rows), tags)


def jain(x) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    x = np.asarray(x, dtype=float)
    return float(x.sum() ** 2 / (len(x) * (x ** 2).sum())) if len(x) and (x ** 2).sum() else 1.0


def summary_row(td, calls: pd.DataFrame, ops: pd.DataFrame, vcpus: pd.DataFrame) -> dict:
    """One row of headline numbers for a run."""
    rec, horizon = td.rec, td.env.now
    occ = td.module.epoch_occupancy
    occ.close(horizon)
    row = {"horizon_us": horizon, "vcpus": td.n_vcpus, "stopped": td.stopped or "",
           "module_version": td.module.version.name}
    for prefix, wb in (("", False), ("wb_", True)):
        for op, lat in op_latencies(td.rec, ops, wb).items():
            row[f"{prefix}{op}_n"] = len(lat)
            for q, p in QUANTILES.items():
                row[f"{prefix}{op}_{q}_us"] = float(lat.quantile(p)) if len(lat) else np.nan
            row[f"{prefix}{op}_max_us"] = float(lat.max()) if len(lat) else np.nan
    n, nbusy = call_counts(td.rec, calls, vcpus)
    friendly = vcpus[~vcpus["hostile"]]
    won = contested_wins(td.rec, calls, vcpus)
    row.update(
        calls=sum(n), busy_calls=sum(nbusy),
        # host SEAMCALLs (S-EPT calls and VP.ENTERs) and the well-behaved guest's TDCALLs
        # apart; the hostile vCPUs' own TDCALLs are in neither
        host_busy_rate=_share(nbusy[0], n[0]), guest_busy_rate=_share(nbusy[1], n[1]),
        hostile_busy_rate=_share(nbusy[2], n[2]),
        retries=rec.counts.get("retries", 0),
        exits_to_userspace=rec.counts.get("exits_to_userspace", 0),
        # by reason: KVM error exits (what zero tolerance causes), KVM_EXIT_MEMORY_FAULT,
        # MapGPA chunks, HOST_PRIORITY_BUSY_TIMEOUT
        error_exits=rec.counts.get("exits_error", 0),
        ioctl_errors=rec.counts.get("ioctl_error", 0),
        memory_fault_exits=rec.counts.get("exits_memory_fault", 0),
        map_gpa_exits=rec.counts.get("exits_map_gpa", 0),
        retries_fault=rec.counts.get("retries_fault", 0),
        retries_zap=rec.counts.get("retries_zap", 0),
        retries_vp_enter=rec.counts.get("retries_vp_enter", 0),
        vm_bugged=int(td.stopped in ("vm_bugged", "vm_dead")),
        guest_panics=int(td.stopped == "guest_panic"),
        hp_timeouts=rec.counts.get("hp_timeout", 0),
        zero_step_armings=int(vcpus["zero_step_armings"].sum()),
        kicks=rec.counts.get("kicks", 0), tlb_flushes=rec.counts.get("tlb_flushes", 0),
        ipis=rec.counts.get("ipis", 0),
        retry_warnings=rec.counts.get("retry_warning", 0),
        host_retry_cpu_us=float(vcpus["retry_us"].sum() + td.kvm.lost_us),
        pages_accepted=int(friendly["pages_accepted"].sum()),
        accept_throughput_per_ms=float(friendly["pages_accepted"].sum() / (horizon / 1000.0)),
        hostile_accepts=int(vcpus.loc[vcpus["hostile"], "pages_accepted"].sum()),
        conversions_ok=int(friendly["conversions"].sum()),
        zapped_pages=rec.counts.get("zapped_pages", 0),
        pages_removed=rec.counts.get("pages_removed", 0),
        aug_ok=rec.counts.get("aug_ok", 0),
        prebuilt_pages=td.prebuilt_pages,
        pages_mapped=td.module.sept.count(State.MAPPED),
        pages_pending=td.module.sept.count(State.PENDING),
        pages_blocked=td.module.sept.count(State.BLOCKED),
        # consistency: a page KVM calls shared must have no private leaf left (always 0)
        shared_pages_still_private=sum(
            td.module.sept.entry(g, 0).state is not State.FREE for g in td.kvm.shared_gpas),
        stopped_at_us=td.stopped_at if td.stopped_at is not None else np.nan,
        # fairness among vCPUs doing the same work: Jain's index of the useful work done,
        # in the worst role that has two or more well-behaved vCPUs
        jain_work=min((jain(g["useful_work"]) for _, g in friendly.groupby("role")
                       if len(g) > 1), default=1.0),
        # who wins a contested lock: of the acquisitions right after a BUSY, the host's
        host_contested_share=won[0] / sum(won) if sum(won) else np.nan,
        **starvation(longest_waits(td.rec, ops), friendly),
        stop_detail=stop_detail(td),
        faults_in_flight_mean=td.fault_mean_in_flight,
        # share of the time the TD epoch lock had a shared holder (a VP.ENTER): over the
        # run, and within the windows where a zap holds mmu_lock for write (where TRACKs
        # run): what a TRACK at a random instant of those windows would meet
        epoch_shared_occupancy=occ.a_us / horizon if horizon else 0.0,
        epoch_occupancy_in_zaps=occ.both_us / occ.b_us if occ.b_us else 0.0,
    )
    row.update(td.kvm.huge.summary(horizon))    # 2 MB leaves and Dynamic PAMT (split.py)
    row.update(td.shared.summary())    # time lost to each shared resource (model/shared.py)
    return row


def _share(k: int, n: int) -> float:
    return k / n if n else 0.0


def op_latencies(rec, ops: pd.DataFrame | None, wb: bool = False) -> dict:
    """Per op kind of the summary, its latencies (``wb``: the well-behaved vCPUs' only):
    from the ops table, or (``ops`` None: a run recorded at level ``summary``) from what
    the recorder kept."""
    if ops is not None:
        if wb:
            ops = ops[~ops["role"].isin(HOSTILE_ROLES)]
        return {op: ops.loc[ops["op"] == op, "latency_us"] for op in LATENCY_OPS}
    kept = {**(rec.wb_latencies if wb else rec.latencies),
            "fault_wait": rec.fault_wait_latencies(wb)}
    return {op: pd.Series(kept[op], dtype="float64") for op in LATENCY_OPS}


def contested_wins(rec, calls: pd.DataFrame | None, vcpus: pd.DataFrame) -> list[int]:
    """Acquisitions after a BUSY of (host, guest, hostile) calls: a (leaf, caller)'s first
    non-BUSY status after one or more BUSY statuses. From the calls table, or the
    recorder's counts."""
    if calls is None:
        return [int(k) for k in rec.contested]
    busy = calls["status"] & np.uint64(0xFFFF_FFFF_0000_0000) == np.uint64(TDX_OPERAND_BUSY)
    prev = busy.groupby([calls["leaf"], calls["caller"]], sort=False).shift(1)
    won = ~busy & prev.eq(True)
    host = calls["leaf"].str.startswith("TDH.")
    hostile = calls["caller"].isin(vcpus.loc[vcpus["hostile"], "vcpu"])
    return [int(won[m].sum()) for m in (host, ~host & ~hostile, ~host & hostile)]


def longest_waits(rec, ops: pd.DataFrame | None) -> dict:
    """Per actor, its longest operation of ``WAIT_OPS`` (a fault wait, an ACCEPT, a
    conversion, a retried VP.ENTER): from the ops table, or the recorder's."""
    if ops is None:
        return rec.longest_waits()
    w = ops[ops["op"].isin(WAIT_OPS)]
    return w.groupby("actor")["latency_us"].max().to_dict()


def starvation(longest: dict, friendly: pd.DataFrame) -> dict:
    """``longest_wait_us``: the longest wait of any well-behaved vCPU; ``wait_spread``:
    per role of two or more of them, its worst vCPU's longest wait over its best one's,
    the largest over roles (1: even; a vCPU that waited for nothing is left out)."""
    w = friendly.assign(wait=friendly["vcpu"].map(longest).astype(float))
    spread = [g.max() / g.min() for _, g in w[w["wait"] > 0].groupby("role")["wait"]
              if len(g) > 1]
    return {"longest_wait_us": float(w["wait"].max()) if w["wait"].notna().any() else np.nan,
            "wait_spread": float(max(spread)) if spread else np.nan}


def stop_detail(td) -> str:
    """What stopped the run (``TDX_BUG_ON TDH.MEM.RANGE.BLOCK 0x8000...``), or ''."""
    if not td.stopped:
        return ""
    ev = [e for e in td.rec.events if e[1] == td.stopped]
    return str(ev[0][3]) if ev else td.stopped


def call_counts(rec, calls: pd.DataFrame | None, vcpus: pd.DataFrame):
    """Attempts and BUSY statuses of (host, guest, hostile) calls: from the calls table, or
    (``calls`` None: a run recorded at level ``ops`` or ``summary``) the recorder's counts."""
    if calls is None:
        return list(rec.call_n), list(rec.call_busy)
    busy = calls["status"] & np.uint64(0xFFFF_FFFF_0000_0000) == np.uint64(TDX_OPERAND_BUSY)
    host = calls["leaf"].str.startswith("TDH.")
    hostile = calls["caller"].isin(vcpus.loc[vcpus["hostile"], "vcpu"])
    masks = (host, ~host & ~hostile, ~host & hostile)
    return [int(m.sum()) for m in masks], [int(busy[m].sum()) for m in masks]


def summary_table(td, calls, ops, vcpus, tags: dict) -> pd.DataFrame:
    return _tag(pd.DataFrame([summary_row(td, calls, ops, vcpus)]), tags)


HEADLINE = ["policy", "host_busy_rate", "guest_busy_rate", "retries_fault", "retries_zap",
            "retries_vp_enter", "error_exits", "ioctl_errors", "memory_fault_exits",
            "vm_bugged", "guest_panics", "td_failed", "hp_timeouts", "zero_step_armings",
            "kicks", "ipis", "host_retry_cpu_us", "accept_throughput_per_ms",
            "wb_private_fault_p50_us", "wb_private_fault_p99_us", "wb_fault_wait_p99_us",
            "zap_4k_p99_us", "conversion_p99_us", "jain_work", "host_contested_share",
            "longest_wait_us", "wait_spread", "victim_slowdown", "splits", "demote_busy",
            "pamt_wait_ms"]
# the metrics of a run that stopped early that still count (outcomes and costs); latency
# and fairness are over complete runs only (definitions.kind)
OUTCOME_SUMS = ("vm_bugged", "guest_panics", "td_failed")


def latency_table(ops: pd.DataFrame, hostile: bool = False, by=(), summary=None) -> pd.DataFrame:
    """Per policy and op kind, over the ops of all complete replications pooled (``summary``
    says which runs are complete; without it every run counts): n, how many did not end
    ``ok``, ``pooled_p50_us``, ``pooled_p99_us``, ``pooled_p999_us``, ``pooled_max_us``.
    The hostile roles' own operations (an ACCEPT spammer's probes) are left out unless
    ``hostile``."""
    from .definitions import complete, usable
    if not hostile and "role" in ops.columns:
        ops = ops[~ops["role"].isin(HOSTILE_ROLES)]
    if summary is not None and len(ops):
        s = summary.assign(_ok=complete(summary))
        keep = pd.concat([usable(g["_ok"]) for _, g in
                          s.groupby([*by, "policy"], sort=False)]) if len(s) else s["_ok"]
        ops = ops[ops["run_id"].isin(set(s.loc[keep[keep].index, "run_id"]))]
    rows, keys = [], [*by, "policy", "op"]
    cols = ["n", "not_ok", *(f"pooled_{q}_us" for q in QUANTILES), "pooled_max_us"]
    if ops.empty:
        return pd.DataFrame(columns=[*keys, *cols])
    for key, g in ops.groupby(keys, sort=False):
        lat = g["latency_us"]
        rows.append({**dict(zip(keys, key)), "n": len(lat),
                     "not_ok": int((g["outcome"] != "ok").sum()),
                     **{f"pooled_{q}_us": float(lat.quantile(p)) for q, p in QUANTILES.items()},
                     "pooled_max_us": float(lat.max())})
    return pd.DataFrame(rows, columns=[*keys, *cols])


def compare_table(summary: pd.DataFrame, by=(), extra=()) -> pd.DataFrame:
    """One row per policy: ``reps`` and ``complete`` (runs that reached the horizon);
    outcomes as the number of runs that ended that way; costs as means over all runs;
    latency and fairness as means over the complete runs (none when fewer than two
    complete runs remain where some stopped). ``extra``: more metrics (a headline)."""
    from .definitions import complete_only
    from .definitions import complete, usable
    cols = [c for c in dict.fromkeys([*HEADLINE, *extra]) if c in summary.columns
            and c != "policy"]
    s = summary.assign(_ok=complete(summary))
    rows = []
    for key, g in s.groupby([*by, "policy"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        use = usable(g["_ok"])
        row = {**dict(zip([*by, "policy"], key)), "reps": len(g),
               "complete": int(g["_ok"].sum())}
        for c in cols:
            v = g.loc[use, c] if complete_only(c) else g[c]
            v = v.astype(float)
            row[c] = float((v > 0).sum()) if c in OUTCOME_SUMS else (
                float(v.mean()) if len(v) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "policy", "reps", "complete", *cols])
