"""The command line as a user runs it: output, files, and one-line errors."""
import json
import subprocess
import sys

import pandas as pd
import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_scenarios_lists_each_with_its_question():
    out = cli("scenarios")
    assert out.returncode == 0
    for name in ("lazy-accept-boot", "fault-storm", "conversion-storm", "zero-step",
                 "malicious-accept", "scale"):
        line = next(l for l in out.stdout.splitlines() if l.startswith(name))
        assert len(line.split()) > 8


def test_policies_lists_presets_and_origins():
    out = cli("policies").stdout
    for name in ("upstream", "patch-09-21", "paolo-bounded", "zero-tolerance",
                 "host-priority-retry", "vm-spinlock", "mmu-lock-write", "kick-and-retry-once"):
        assert name in out


def test_calibration_shows_every_timing_and_the_module_versions():
    out = cli("calibration").stdout
    assert "kvm_jitter_cv" in out and "seamcall_entry_us" in out
    assert "default 1.5.01" in out
    assert "2.0.12   zero-step VP.ENTER takes the S-EPT tree shared" in out


def test_run_prints_a_summary_and_writes_the_tables(tmp_path):
    out = cli("run", "lazy-accept-boot", "--seed", "4", "--set", "horizon_us=2000",
              "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    assert "private_fault" in out.stdout and "p99_us" in out.stdout
    assert "policy=upstream" in out.stdout and "ran to the horizon" in out.stdout
    for f in ("calls.parquet", "ops.parquet", "vcpus.parquet", "summary.parquet"):
        assert len(pd.read_parquet(tmp_path / "r" / f)) > 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["scenario"]["horizon_us"] == 2000


def test_compare_prints_one_row_per_policy(tmp_path):
    out = cli("compare", "malicious-accept", "--policies", "upstream,zero-tolerance",
              "--reps", "2", "--set", "horizon_us=2000", "--out", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    verdicts, rest = out.stdout.split("Outcomes (runs that ended so")
    outcomes, latency = rest.split("Latency per operation")
    assert [l.split(":")[0].strip() for l in verdicts.splitlines()[2:4]] == [
        "upstream", "zero-tolerance"]                  # a verdict line per policy first
    rows = [l for l in outcomes.splitlines() if l.strip().startswith(("upstream", "zero-tolerance"))]
    assert len(rows) == 2
    assert "zap_4k" in latency and "pooled_p999_us" in latency
    assert len(pd.read_parquet(tmp_path / "c" / "summary.parquet")) == 4


@pytest.mark.parametrize("args, words", [
    (("run", "no-such-scenario"), "unknown scenario"),
    (("run", "fault-storm", "--set", "vcpus.0.count=zero"), "vcpus.0.count"),
    (("run", "fault-storm", "--policy", "retry-harder"), "unknown policy"),
    (("run", "fault-storm", "--policy", "nosuchmodule:Policy"), "cannot import policy"),
    (("run", "fault-storm", "--seed", "x"), "invalid int value"),
    (("compare", "fault-storm", "--policies", "upstream", "--reps", "0"), "--reps"),
    (("compare", "fault-storm"), "--policies"),
    (("frobnicate",), "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, words):
    out = cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr


def test_a_failed_run_leaves_an_existing_result_alone(tmp_path):
    good = cli("run", "fault-storm", "--set", "horizon_us=1000", "--out", str(tmp_path / "r"))
    assert good.returncode == 0
    before = (tmp_path / "r" / "manifest.json").read_text()
    bad = cli("run", "fault-storm", "--set", "size=-1", "--out", str(tmp_path / "r"))
    assert bad.returncode == 2
    assert (tmp_path / "r" / "manifest.json").read_text() == before


def test_policy_per_site_and_from_a_yaml_file(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text("preset: upstream\nzap: {policy: blind-retry, max_retries: null}\n")
    out = cli("run", "conversion-storm", "--set", "horizon_us=1000", "--policy", str(spec))
    assert out.returncode == 0, out.stderr
    assert "policy=upstream+zap=blind-retry" in out.stdout
    out = cli("compare", "fault-storm", "--set", "horizon_us=1000", "--reps", "1",
              "--policies", "upstream,upstream+fault=resume-guest")
    assert out.returncode == 0 and "upstream+fault=resume-guest" in out.stdout


def test_sweep_prints_one_row_per_value_and_policy():
    out = cli("sweep", "scale", "--param", "vcpus.1.count", "--values", "3,7", "--policies",
              "upstream", "--reps", "1", "--set", "horizon_us=1000")
    assert out.returncode == 0, out.stderr
    rows = [l for l in out.stdout.splitlines() if l.strip().startswith(("3 ", "7 "))]
    assert len(rows) == 2
    bad = cli("sweep", "scale", "--param", "vcpus.9.count", "--values", "3", "--policies", "upstream")
    assert bad.returncode == 2 and "no element" in bad.stderr


@pytest.mark.parametrize("args, words", [
    (("run", "fault-storm", "--seed", "-1"), "seed must be"),
    (("compare", "fault-storm", "--policies", ","), "at least one policy"),
    (("compare", "fault-storm", "--policies", "upstream,upstream"), "given twice"),
    (("compare", "fault-storm", "--policies", "upstream", "--workers", "0"), "workers must be"),
    (("run", "fault-storm", "--set", "horizon_us.x=1"), "has no fields"),
    (("run", "fault-storm", "--set", "horizon_us=.inf"), "finite"),
    (("run", "fault-storm", "--policy", "bounded-retry(warn_at=0)"), "warn_at"),
    (("run", "fault-storm", "--policy", "os:path"), "os:path"),
    (("sweep", "scale", "--param", "vcpus.1.count", "--values", ",", "--policies", "upstream"),
     "at least one value"),
])
def test_more_bad_input_is_one_line_and_exit_2(args, words):
    out = cli(*args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and words in out.stderr


def test_out_never_replaces_what_the_tool_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    out = cli("run", "fault-storm", "--set", "horizon_us=500", "--out", str(mine))
    assert out.returncode == 2 and "not a workbench result" in out.stderr
    assert (mine / "thesis.tex").read_text() == "years of work"
    (tmp_path / "afile").write_text("x")
    out = cli("run", "fault-storm", "--set", "horizon_us=500", "--out", str(tmp_path / "afile"))
    assert out.returncode == 2 and (tmp_path / "afile").read_text() == "x"
    out = cli("run", "fault-storm", "--out", "/proc/no-such-place/r")
    assert out.returncode == 2 and "cannot write there" in out.stderr


def test_policy_parameters_in_a_spec_make_distinct_rows():
    out = cli("compare", "fault-storm", "--set", "horizon_us=800", "--reps", "1", "--policies",
              "blind-retry(max_retries=0),blind-retry(max_retries=None)")
    assert out.returncode == 0, out.stderr
    assert "blind-retry(max_retries=0)" in out.stdout
    assert "blind-retry(max_retries=None)" in out.stdout


HEAVY = ("pandas", "pyarrow", "plotly", "pydantic", "simpy", "scipy")


def test_import_and_help_load_nothing_heavy():
    """`import workbench` and `workbench --help` stay light: pandas, pyarrow, pydantic,
    SimPy and plotly load when a run, a table or a figure is asked for (issue 11)."""
    code = ("import sys, workbench; from workbench.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "workbench.run\nprint('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "[]" and lines[-1] == "True"
