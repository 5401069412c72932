"""Statistics across replications: t-intervals that cover at their level, paired
differences under common random numbers, a seeded bootstrap for tail percentiles."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import workbench
from workbench.core.config import ConfigError
from workbench.experiments.stats import (bootstrap_quantile, describe, paired_diff, t_interval,
                             welch_interval, with_intervals)

SHORT = {"horizon_us": 2000}


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(2026)
    hits = 0
    for _ in range(1000):
        x = rng.exponential(scale=2.0, size=30) + rng.normal(0, 1, size=30)  # true mean 2
        _, _, _, lo, hi = t_interval(x)
        hits += lo <= 2.0 <= hi
    assert 930 <= hits <= 970, hits


def test_t_interval_edge_cases():
    assert np.isnan(t_interval([])[1])
    n, mean, sd, lo, hi = t_interval([3.0])
    assert (n, mean) == (1, 3.0) and np.isnan(lo)
    assert t_interval([2.0, 2.0, np.nan, 2.0])[:5] == (3, 2.0, 0.0, 2.0, 2.0)
    lo, hi = welch_interval([1, 2, 3], [1, 2, 3])
    assert lo < 0 < hi


def test_paired_difference_finds_a_shift_the_unpaired_interval_misses():
    rng = np.random.default_rng(1)
    common = rng.normal(0, 10, size=8)   # a workload effect both policies see
    s = pd.DataFrame({"policy": ["a"] * 8 + ["b"] * 8, "replication": list(range(8)) * 2,
                      "seed": 0, "m": np.r_[common, common + 1 + rng.normal(0, .1, 8)]})
    d = paired_diff(s, "a").iloc[0]
    assert d["policy"] == "b" and d["excludes_zero"] and d["ci_low"] > 0.5
    assert d["unpaired_low"] < 0 < d["unpaired_high"]
    with pytest.raises(ConfigError, match="baseline 'c'"):
        paired_diff(s, "c")


def test_bootstrap_of_a_tail_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    reps = [rng.exponential(10, 500) for _ in range(6)]
    a = bootstrap_quantile(reps, 0.99, seed=7, n_resamples=200)
    assert a == bootstrap_quantile(reps, 0.99, seed=7, n_resamples=200)
    assert a[1] <= a[0] <= a[2]
    assert np.isnan(bootstrap_quantile(reps[:1], 0.99)[1])


def test_comparison_stats_diff_and_tails_on_a_shipped_scenario():
    c = workbench.compare("malicious-accept", ["upstream", "zero-tolerance"], reps=3, seed=2,
                          sets=SHORT)
    st = c.stats()
    assert set(st["policy"]) == {"upstream", "zero-tolerance"}
    row = st[(st["policy"] == "upstream") & (st["metric"] == "kicks")].iloc[0]
    assert row["n"] == 3 and row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert {"seed", "replication"}.isdisjoint(st["metric"])
    d = c.diff("upstream").set_index("metric")
    # common random numbers: pairing removes the workload's variation between replications
    m = "accept_throughput_per_ms"
    assert (d.loc[m, "ci_high"] - d.loc[m, "ci_low"]) < \
        (d.loc[m, "unpaired_high"] - d.loc[m, "unpaired_low"])
    t = c.tails()
    # a rare op may be missing from some replication
    assert {"p99", "p999"} == set(t["quantile"]) and t["reps"].between(1, 3).all()
    assert (t["reps"] == 3).any()
    wide = with_intervals(c.stats(["kicks"]))
    assert "[" in wide.loc[0, "kicks"]


def test_sweep_intervals_group_by_value():
    c = workbench.sweep("scale", "vcpus.1.count", [3, 5], ["upstream"], reps=2, sets=SHORT)
    st = describe(c.summary, by=["value"], metrics=["kicks"])
    assert list(st["value"]) == [3, 5]


def test_cli_compare_baseline_prints_paired_differences():
    cli = [sys.executable, "-m", "workbench", "compare", "malicious-accept", "--policies",
           "upstream,zero-tolerance", "--reps", "2", "--set", "horizon_us=1000"]
    out = subprocess.run([*cli, "--baseline", "upstream"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "t-interval" in out.stdout and "Paired differences against upstream" in out.stdout, \
        out.stdout[-2000:] + out.stderr
    bad = subprocess.run([*cli, "--baseline", "vm-spinlock"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--baseline" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_warmup_cut_recomputes_latency_columns_and_rate_settles():
    from workbench.experiments.stats import op_rate, settle_time
    c = workbench.compare("lazy-accept-boot", ["upstream"], reps=2, sets=SHORT)
    cols = [x for x in c.summary.columns if x.startswith("private_fault_")]
    pd.testing.assert_frame_equal(c.warmup(0).summary[cols], c.summary[cols],
                                  check_dtype=False)
    w = c.warmup(1000)
    assert (w.ops["t_start_us"] >= 1000).all() and len(w.ops) < len(c.ops)
    assert (w.summary["private_fault_n"] < c.summary["private_fault_n"]).all()
    assert w.manifest["warmup_us"] == 1000
    with pytest.raises(ConfigError, match="warmup_us"):
        c.warmup(-1)
    rate = op_rate(c.ops, 500)
    assert {"policy", "op", "t_us", "per_ms"} <= set(rate.columns)
    # a synthetic ramp: 1, 2, 4 then 8 ops per bin from t = 300
    t = [0] + [100] * 2 + [200] * 4 + [t for t in range(300, 1000, 100) for _ in range(8)]
    ops = pd.DataFrame({"t_start_us": t, "policy": "p", "op": "x", "replication": 0})
    assert settle_time(ops, 100) == 300


def test_interval_lines_draws_interval_bands():
    from workbench.present.plots import interval_lines
    st = pd.DataFrame({"value": [3, 7, 3, 7], "policy": ["a", "a", "b", "b"],
                       "metric": "kicks", "n": 3, "mean": [1.0, 2, 3, 4],
                       "sd": 1.0, "ci_low": [0.5, 1, 2, 3], "ci_high": [1.5, 3, 4, 5]})
    fig = interval_lines(st, "kicks", "value")    # per policy: its band, then its line
    assert len(fig.data) == 4 and list(fig.data[0].y) == [1.5, 3, 1, 0.5]
    with pytest.raises(ValueError, match="nosuch"):
        interval_lines(st, "nosuch", "value")


def test_a_second_factor_is_a_facet_of_its_own_never_merged_into_the_lines():
    """sweep_facets runs the sweep once per value of the facet on the same replications;
    facet_stats keeps both factors as columns (a switch reads on/off)."""
    runs = workbench.sweep_facets("malicious-accept", "vcpus.1.per_page", [1, 2],
                                  ["upstream"], facet="module.host_priority",
                                  facet_values=[True, False], reps=2, seed=3,
                                  sets={"horizon_us": 600})
    assert set(runs) == {True, False}
    st = workbench.facet_stats(runs, "vcpus.1.per_page", "module.host_priority",
                               metrics=["zap_4k_p99_us"])
    assert set(st["module.host_priority"]) == {"on", "off"}
    assert sorted(set(st["vcpus.1.per_page"])) == [1, 2] and (st["n"] == 2).all()
    alone = workbench.sweep("malicious-accept", "vcpus.1.per_page", [1, 2], ["upstream"],
                            reps=2, seed=3, sets={"horizon_us": 600,
                                                  "module.host_priority": False})
    assert alone.summary["zap_4k_p99_us"].tolist() == runs[False].summary["zap_4k_p99_us"].tolist()
    with pytest.raises(workbench.ConfigError):
        workbench.sweep_facets("malicious-accept", "vcpus.1.per_page", [1], facet="nope.x",
                               facet_values=[1])
