"""Recording levels (issue 11): ``record="ops"`` keeps no calls, ``"summary"`` neither calls
nor ops, and the summary row is the same as the full record's on every shipped scenario."""
import pandas as pd
import pytest

import workbench
from workbench.cli import main

H = ["horizon_us=1200"]


@pytest.mark.parametrize("scenario", workbench.scenario_names())
def test_summary_row_identical_at_every_level(scenario):
    full = workbench.run(scenario, seed=5, sets=H, policy="upstream")
    for level in ("ops", "summary"):
        r = workbench.run(scenario, seed=5, sets=H, policy="upstream", record=level)
        pd.testing.assert_frame_equal(r.summary, full.summary, check_exact=True)
        pd.testing.assert_frame_equal(r.vcpus, full.vcpus, check_exact=True)
        assert r.calls.empty and r.manifest["record"] == level
        assert r.ops.empty == (level == "summary")
    assert len(full.calls) == full.summary["calls"].iloc[0] > 0


def test_ops_level_keeps_the_ops_table():
    full = workbench.run("malicious-accept", seed=2, sets=H)
    ops = workbench.run("malicious-accept", seed=2, sets=H, record="ops")
    pd.testing.assert_frame_equal(ops.ops, full.ops, check_exact=True)


def test_summary_level_keeps_no_tuples_per_call_or_op():
    from workbench.core.config import load_calibration
    from workbench.model.td import Td
    from workbench.policies import resolve_policy
    cfg = workbench.load_scenario("malicious-accept", H)
    td = Td(cfg, resolve_policy("upstream"), load_calibration("default")[0], 1,
            record="summary").run()
    assert td.rec.calls == [] and td.rec.ops == []
    assert sum(td.rec.call_n) > 1000


def test_compare_keeps_only_what_it_returns():
    kw = dict(reps=1, seed=4, sets=H)
    c_ops = workbench.compare("conversion-storm", ["upstream", "zero-tolerance"], **kw)
    c_sum = workbench.compare("conversion-storm", ["upstream", "zero-tolerance"],
                              record="summary", **kw)
    pd.testing.assert_frame_equal(c_sum.summary, c_ops.summary, check_exact=True)
    pd.testing.assert_frame_equal(c_sum.table, c_ops.table, check_exact=True)
    assert c_sum.ops.empty and not c_ops.ops.empty
    s = workbench.sweep("conversion-storm", "host.tick_us", [0, 250], ["upstream"],
                        record="summary", **kw)
    assert s.ops.empty and len(s.summary) == 2


@pytest.mark.parametrize("call", [
    lambda: workbench.run("lazy-accept-boot", sets=H, record="everything"),
    lambda: workbench.compare("lazy-accept-boot", reps=1, sets=H, record="calls"),
])
def test_bad_record_level_is_a_config_error(call):
    with pytest.raises(workbench.ConfigError, match="record"):
        call()


def test_cli_record_flag(capsys):
    assert main(["run", "lazy-accept-boot", "--set", H[0], "--record", "summary",
                 "--quiet"]) == 0
    assert "not kept: --record summary" in capsys.readouterr().out
    assert main(["run", "lazy-accept-boot", "--record", "all"]) != 0
    assert "--record" in capsys.readouterr().err



def test_an_experiment_at_summary_level_is_stored_apart(tmp_path):
    exp = {"name": "rl", "scenario": "lazy-accept-boot", "policies": ["upstream"], "reps": 1,
           "seed": 1, "sets": {"horizon_us": 800}}
    full = workbench.run_experiment(exp, store=tmp_path, progress=False)
    summ = workbench.run_experiment(exp, store=tmp_path, progress=False, record="summary")
    assert summ.manifest["runs_computed"] == 1           # not taken from the ops-level run
    assert summ.ops.empty and not full.ops.empty
    pd.testing.assert_frame_equal(summ.summary.drop(columns="run_id", errors="ignore"),
                                  full.summary.drop(columns="run_id", errors="ignore"))


def test_warmup_needs_the_ops(capsys):
    c = workbench.compare("lazy-accept-boot", reps=1, sets=H, record="summary")
    with pytest.raises(workbench.ConfigError, match="record='summary'"):
        c.warmup(100.0)
    assert main(["compare", "lazy-accept-boot", "--policies", "upstream", "--reps", "1",
                 "--set", H[0], "--record", "summary", "--warmup-us", "100"]) != 0
    assert "record='summary'" in capsys.readouterr().err
