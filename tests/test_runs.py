"""Running scenarios: smoke, determinism, overrides, scaling, results on disk."""
import json

import pandas as pd
import pytest

import workbench
from workbench.core.config import ConfigError

SHORT = ["horizon_us=1500"]


@pytest.mark.parametrize("scenario", workbench.scenario_names())
@pytest.mark.parametrize("policy", list(workbench.PRESETS))
def test_every_scenario_runs_with_every_preset(scenario, policy):
    r = workbench.run(scenario, seed=3, policy=policy, sets=SHORT)
    assert len(r.calls) > 0 and len(r.summary) == 1
    assert r.summary["policy"].iloc[0] == policy
    for name in ("calls", "ops", "vcpus", "summary"):
        df = getattr(r, name)
        assert {"run_id", "scenario", "policy", "seed"} <= set(df.columns)


def test_tables_carry_the_documented_columns():
    r = workbench.run("conversion-storm", seed=1, sets=SHORT)
    assert {"t_start_us", "t_end_us", "leaf", "caller", "gpa", "status", "status_name",
            "operand"} <= set(r.calls.columns)
    assert {"op", "actor", "gpa", "t_start_us", "t_end_us", "latency_us", "attempts", "busy",
            "outcome"} <= set(r.ops.columns)
    assert {"guest_us", "kvm_us", "retry_us", "userspace_us", "mmu_wait_us", "faults",
            "zero_step_armings", "pages_accepted"} <= set(r.vcpus.columns)
    assert {"private_fault_p50_us", "private_fault_p99_us", "private_fault_p999_us",
            "jain_work", "host_busy_rate", "guest_busy_rate", "exits_to_userspace", "vm_bugged", "guest_panics",
            "hp_timeouts", "zero_step_armings", "ipis", "host_retry_cpu_us"} <= set(r.summary.columns)


def test_same_seed_same_calls_different_seed_different_calls():
    a = workbench.run("malicious-accept", seed=5, sets=SHORT)
    b = workbench.run("malicious-accept", seed=5, sets=SHORT)
    c = workbench.run("malicious-accept", seed=6, sets=SHORT)
    pd.testing.assert_frame_equal(a.calls, b.calls)
    pd.testing.assert_frame_equal(a.ops, b.ops)
    cols = ["t_start_us", "leaf", "caller", "gpa", "status"]
    assert not a.calls[cols].equals(c.calls[cols])


def test_size_knob_scales_memory_and_horizon():
    base = workbench.load_scenario("lazy-accept-boot")
    big = workbench.load_scenario("lazy-accept-boot", sets=["size=2"])
    assert big.memory_bytes == 2 * base.memory_bytes
    assert big.horizon_scaled_us == 2 * base.horizon_scaled_us


@pytest.mark.parametrize("sets, words", [
    (["vcpus.0.count=0"], "greater than or equal to 1"),
    (["module.nope=1"], "unknown key 'nope'"),
    (["module.hp_lock_timeout_us=1"], "hp_lock_timeout_us"),
    (["horizon_us"], "expected key=value"),
    (["vcpus.7.count=2"], "no element '7'"),
])
def test_bad_overrides_are_one_line_errors(sets, words):
    with pytest.raises(ConfigError) as err:
        workbench.load_scenario("fault-storm", sets=sets)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_unknown_keys_in_a_scenario_file_are_rejected(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\nvcpus:\n  - role: lazy_accept\n    cuont: 2\n")
    with pytest.raises(ConfigError, match="cuont"):
        workbench.load_scenario(p)
    p.write_text("name: x\nvcpus: [{role: dancing}]\n")
    with pytest.raises(ConfigError, match="role"):
        workbench.load_scenario(p)
    p.write_text(": : :\n")
    with pytest.raises(ConfigError, match="cannot read YAML"):
        workbench.load_scenario(p)


def test_results_round_trip_and_a_corrupt_result_is_a_clear_error(tmp_path):
    r = workbench.run("fault-storm", seed=2, sets=SHORT)
    out = r.save(tmp_path / "run")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["calibration"]["name"] == "default"
    assert manifest["scenario"]["name"] == "fault-storm" and manifest["version"]
    back = workbench.RunResult.load(out)
    pd.testing.assert_frame_equal(back.calls, r.calls)
    (out / "ops.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="not a readable result"):
        workbench.RunResult.load(out)


def test_saving_over_a_result_replaces_it_whole(tmp_path):
    first = workbench.run("fault-storm", seed=2, sets=SHORT).save(tmp_path / "run")
    workbench.run("fault-storm", seed=3, sets=SHORT).save(first)
    assert json.loads((first / "manifest.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_every_result_records_the_module_version():
    r = workbench.run("lazy-accept-boot", sets={"horizon_us": 500, "module.version": "2.0.12"})
    assert r.summary["module_version"].iloc[0] == "2.0.12"
    assert r.manifest["scenario"]["module"]["version"] == "2.0.12"
    assert workbench.run("lazy-accept-boot", sets={"horizon_us": 500}).summary[
        "module_version"].iloc[0] == "1.5.01"
