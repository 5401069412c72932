"""A run that stopped early is an outcome, never a latency sample: verdict lines open every
comparison, latency and fairness are over complete runs only, outcome rates get exact
intervals and counts never go below 0."""
import re

import numpy as np
import pytest

import workbench
from workbench.cli import main

SHORT = {"horizon_us": 3000}


@pytest.fixture(scope="module")
def spam():
    # seed 0: patch-09-21 bugs the VM in its BLOCK within microseconds in every run
    return workbench.compare("malicious-accept", ["upstream", "patch-09-21"], reps=3, seed=0,
                             sets={"horizon_us": 5000})


def test_a_policy_whose_runs_all_stopped_has_no_latency_and_says_why(spam):
    v = spam.verdicts().set_index("policy")
    assert v.loc["upstream", "line"] == "upstream: ran to the horizon in 3 of 3 runs"
    line = v.loc["patch-09-21", "line"]
    assert re.fullmatch(r"patch-09-21: VM bugged in 3 of 3 runs \(TDX_BUG_ON "
                        r"TDH\.MEM\.RANGE\.BLOCK, median at [0-9.e+]+ us\); latency not "
                        r"compared", line), line
    t = spam.table.set_index("policy")
    assert t.loc["patch-09-21", "complete"] == 0 and t.loc["upstream", "complete"] == 3
    assert np.isnan(t.loc["patch-09-21", "zap_4k_p99_us"])          # the headline
    assert t.loc["patch-09-21", "vm_bugged"] == t.loc["patch-09-21", "td_failed"] == 3
    st = spam.stats(["zap_4k_p99_us", "vm_bugged", "kicks"]).set_index(["policy", "metric"])
    assert st.loc[("patch-09-21", "zap_4k_p99_us"), "n"] == 0
    assert st.loc[("patch-09-21", "zap_4k_p99_us"), "runs"] == 3
    # 3 of 3: the exact interval, not [1, 1]
    lo, hi = st.loc[("patch-09-21", "vm_bugged"), ["ci_low", "ci_high"]]
    assert (round(lo, 2), hi) == (0.29, 1.0)
    assert (st["ci_low"].dropna() >= 0).all()
    d = spam.diff("upstream").set_index("metric")
    assert d.loc["zap_4k_p99_us", "n"] == 0 and not d.loc["zap_4k_p99_us", "star"]
    assert "vm_bugged" not in d.index       # outcomes: their exact rates, not a t-interval
    assert spam.complete_ops()["policy"].eq("upstream").all()
    assert set(spam.latency["policy"]) == {"upstream"}


def test_the_report_and_repr_open_with_the_verdicts(spam):
    text = spam.report("upstream")
    lines = text.splitlines()
    assert lines[0].startswith("Verdicts") and lines[1].strip().startswith("upstream:")
    assert lines[2].strip().startswith("patch-09-21: VM bugged in 3 of 3 runs")
    assert "Headline metric of the scenario: zap_4k_p99_us" in text
    assert "3 of 3 [0.29, 1.00]" in text
    fam = re.search(r"family of (\d+) differences: (\d+) starred", text)
    assert fam and int(fam[2]) <= int(fam[1])
    assert repr(spam).splitlines()[2].startswith("patch-09-21: VM bugged in 3 of 3")
    # a run's p99 of an op with fewer than 500 a run gets no interval (untested coverage)
    conv = next(x for x in lines if x.strip().startswith("conversion_p99_us"))
    assert "no interval: needs >= 500 ops a run" in conv
    # counts never below 0 anywhere in the interval table
    assert not re.search(r"\[-", text.split("Mean [95 % interval]")[1].split("Paired")[0])


def test_partly_complete_policies_compare_over_their_complete_runs():
    # seed 2, 0.6 ms: patch-09-21 bugs the VM in one of its two runs
    c = workbench.compare("malicious-accept", ["upstream", "patch-09-21"], reps=2, seed=2,
                          sets={"horizon_us": 600})
    v = c.verdicts().set_index("policy")
    assert v.loc["patch-09-21", ["runs", "complete"]].tolist() == [2, 1]
    assert "latency not compared" in v.loc["patch-09-21", "line"]  # one run is too few
    assert "- (1 of 2 complete)" in c.report()                     # not compared: '-'
    st = c.stats(["zap_4k_p99_us"]).set_index("policy")
    assert st.loc["patch-09-21", ["complete", "n"]].tolist() == [1, 0]


def test_cli_compare_prints_verdicts_first(capsys):
    assert main(["compare", "malicious-accept", "--policies", "upstream,patch-09-21",
                 "--reps", "2", "--set", "horizon_us=2000", "--baseline", "upstream"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("Verdicts") and "patch-09-21: VM bugged" in out[3]
    assert any("Holm-adjusted" in x for x in out)
