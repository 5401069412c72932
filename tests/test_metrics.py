"""Metrics that say what they mean: host and guest BUSY apart, fairness from useful work,
the hostile vCPUs out of every throughput and fairness figure (and shown apart)."""
from __future__ import annotations

import numpy as np

from workbench.experiments.metrics import HOSTILE_ROLES, jain


def test_busy_rates_split_host_guest_and_hostile(sim):
    r = sim("malicious-accept", horizon_us=6000)
    s, calls = r.summary.iloc[0], r.calls
    hostile = set(r.vcpus.loc[r.vcpus["role"].isin(HOSTILE_ROLES), "vcpu"])
    busy = calls["status_name"] == "TDX_OPERAND_BUSY"
    host = calls["leaf"].str.startswith("TDH.")
    assert s["host_busy_rate"] == busy[host].mean()
    spam = ~host & calls["caller"].isin(hostile)
    assert s["hostile_busy_rate"] == busy[spam].mean() > 0
    assert s["guest_busy_rate"] == busy[~host & ~spam].mean()


def test_fairness_and_throughput_count_useful_work_of_well_behaved_vcpus(sim):
    r = sim("malicious-accept", horizon_us=6000)
    v, s = r.vcpus, r.summary.iloc[0]
    friendly = v[~v["hostile"]]
    assert s["pages_accepted"] == friendly["pages_accepted"].sum()
    assert s["hostile_accepts"] == v.loc[v["hostile"], "pages_accepted"].sum()
    lazy = friendly[friendly["role"] == "lazy_accept"]
    assert np.isclose(s["jain_work"], jain(lazy["useful_work"]))
    conv = friendly[friendly["role"] == "converter"]
    assert (conv["useful_work"] == conv["conversions"]).all() and conv["conversions"].sum() > 0


def test_spammers_per_page_choose_how_many_pages_are_attacked(sim):
    def pages(per_page):
        r = sim("malicious-accept", vcpus__1__per_page=per_page, horizon_us=3000)
        spam = r.vcpus.loc[r.vcpus["role"] == "accept_spammer", "vcpu"]
        acc = r.calls[r.calls["caller"].isin(spam) & (r.calls["leaf"] == "TDG.MEM.PAGE.ACCEPT")]
        size = 64 * 1024
        hit = []       # per conversion: distinct pages of its range the spammers attacked
        for _, c in r.ops[r.ops["op"] == "conversion"].iterrows():
            inside = acc[(acc["gpa"] >= c["gpa"]) & (acc["gpa"] < c["gpa"] + size) &
                         (acc["t_start_us"] > c["t_start_us"]) & (acc["t_end_us"] < c["t_end_us"])]
            hit.append(inside["gpa"].nunique())
        return max(hit)
    assert pages(1) == 4 and pages(4) == 1


def test_a_fault_given_up_and_retaken_is_one_guest_visible_wait():
    from workbench.experiments.metrics import ops_table
    G, H = 0x5000, 0x6000
    #        op, actor, gpa, t_start, t_end, attempts, busy, outcome
    raw = [("private_fault", "v0", G, 0.0, 1.0, 1, 1, "resumed"),
           ("private_fault", "v0", G, 3.0, 4.0, 1, 1, "exit_to_userspace"),
           ("private_fault", "v0", G, 30.0, 32.0, 1, 0, "ok"),
           ("private_fault", "v0", H, 40.0, 41.0, 1, 0, "ok"),
           ("private_fault", "v1", G, 2.0, 2.5, 1, 0, "ok")]
    ops = ops_table(raw, {"policy": "p"}, {"v0": "lazy_accept", "v1": "lazy_accept"})
    waits = ops[ops["op"] == "fault_wait"].sort_values(["actor", "t_start_us"])
    assert list(zip(waits["actor"], waits["gpa"], waits["latency_us"], waits["attempts"])) == [
        ("v0", G, 32.0, 3), ("v0", H, 1.0, 1), ("v1", G, 0.5, 1)]
    assert (waits["outcome"] == "ok").all() and (ops["op"] == "private_fault").sum() == 5
