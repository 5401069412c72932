"""Experiments as data and the results store: designs refused with one line, run keys that
change exactly when a run would, a store that skips stored runs, resumes after SIGKILL with
the same tables, refuses folders that are not its own and deletes nothing."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import workbench
from workbench.core.config import ConfigError, load_calibration
from workbench.experiments.designs import experiment_names, load_experiment, points
from workbench.policies import resolve_policy
from workbench.experiments.runner import plan, results, run_experiment, run_spec
from workbench.core.scenarios import load_scenario
from workbench.experiments.store import Store, run_key

# 12 short runs: 3 race windows x 2 fault-site policies x 2 replications
SMALL = {"name": "small", "scenario": "touch-storm", "sets": {"horizon_us": 1500},
         "factors": {"timings.sept_add_us": [3, 30, 100]},
         "policies": ["upstream", "upstream+fault=resume-guest"], "reps": 2, "seed": 5}


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


# -- designs ---------------------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"factors": {"vcpus.0.nosuch": [1, 2]}}, "unknown key"),
    ({"factors": {"timings.sept_add_us": [3, 3.0]}}, "given twice"),
    ({"factors": {"policy": ["upstream", "zero-tolerance"]}}, "ignored by the comparison"),
    ({"factors": {"timings.sept_add_us": []}}, "non-empty list"),
    ({"factors": {"timings.sept_add_us": [3, -1]}}, "sept_add_us"),
    ({"factors": {"timings.sept_add_us": {"low": 1, "high": 9}}}, "needs design: lhs"),
    ({"reps": 0}, "reps"),
    ({"reps": "auto"}, "needs precision"),
    ({"precision": {"metric": "busy_rate"}}, "for reps: auto only"),
    ({"bogus": 1}, "bogus"),
])
def test_a_bad_design_is_refused_with_one_line(change, words):
    with pytest.raises(ConfigError, match=words) as err:
        load_experiment({**SMALL, **change})
    assert "\n" not in str(err.value)


def test_grid_and_latin_hypercube_points():
    assert len(points(load_experiment(SMALL))) == 3
    lhs = {**SMALL, "design": "lhs", "samples": 4,
           "factors": {"timings.sept_add_us": {"low": 1, "high": 300, "log": True},
                       "vcpus.0.count": [2, 4]}}
    pts = points(load_experiment(lhs))
    assert len(pts) == 8 and pts == points(load_experiment(lhs))   # seeded
    adds = sorted({p["timings.sept_add_us"] for p in pts})
    assert len(adds) == 4 and all(1 <= a <= 300 for a in adds)
    # one sample per stratum of the (log) range: the design spreads its points
    import math
    strata = sorted(int(4 * math.log(a) / math.log(300)) for a in adds)
    assert strata == [0, 1, 2, 3]


def test_shipped_experiments_load_and_plan():
    assert {"scale", "hp-what-if", "zero-step-window"} <= set(experiment_names())
    exp, runs = plan("scale")
    counts = exp.factors["vcpus.1.count"]
    assert min(counts) == 1 and max(counts) == 64 and len(exp.policies) == 3
    assert len(runs) == len(counts) * 3 * exp.reps
    assert set(load_experiment("hp-what-if").factors) == {"module.host_priority",
                                                         "vcpus.1.per_page"}


def test_sweep_param_policy_is_refused():
    with pytest.raises(ConfigError, match="ignored by the comparison"):
        workbench.sweep("scale", "policy", ["upstream"], ["upstream"], reps=1)
    with pytest.raises(ConfigError, match="given twice"):
        workbench.sweep("scale", "vcpus.1.count", [3, 3], ["upstream"], reps=1)


# -- keys ------------------------------------------------------------------------------
def test_changing_anything_that_determines_a_run_changes_its_key(monkeypatch):
    cfg = load_scenario("touch-storm")
    pol = resolve_policy("upstream")
    cal = load_calibration()[0]
    key = run_key(run_spec(cfg, pol, 1, 0, cal))
    assert key == run_key(run_spec(load_scenario("touch-storm"), resolve_policy("upstream"),
                                   1, 0, load_calibration()[0]))
    others = [
        run_spec(load_scenario(cfg, {"module.host_priority": False}), pol, 1, 0, cal),
        run_spec(load_scenario(cfg, {"horizon_us": 5000}), pol, 1, 0, cal),
        run_spec(cfg, resolve_policy("upstream+fault=resume-guest"), 1, 0, cal),
        run_spec(cfg, resolve_policy("blind-retry(max_retries=3)"), 1, 0, cal),
        run_spec(cfg, pol, 2, 0, cal),
        run_spec(cfg, pol, 1, 1, cal),
        run_spec(cfg, pol, 1, 0, load_calibration("default", {"sept_add_us": 99})[0]),
    ]
    keys = {run_key(s) for s in others}
    assert len(keys) == len(others) and key not in keys
    import workbench.experiments.runner as runner
    monkeypatch.setattr(runner, "__version__", "9.9.9")
    assert run_key(run_spec(cfg, pol, 1, 0, cal)) != key


# -- the store -------------------------------------------------------------------------
def test_run_skip_and_read_back(tmp_path):
    c = run_experiment(SMALL, store=tmp_path / "st", progress=False)
    assert c.manifest["runs_computed"] == 12 and c.manifest["runs_from_store"] == 0
    assert "timings.sept_add_us" in c.summary.columns and len(c.summary) == 12
    t = c.table
    assert list(t.columns[:2]) == ["timings.sept_add_us", "policy"] and len(t) == 6
    prov = c.manifest["provenance"]
    assert {"git_commit", "git_dirty", "version", "host", "started", "finished",
            "dependencies", "engine"} <= set(prov)
    assert c.manifest["seeds"]["root"] == 5 and c.manifest["experiment"]["scenario"] == \
        "touch-storm"
    again = run_experiment(SMALL, store=tmp_path / "st", progress=False)
    assert again.manifest["runs_computed"] == 0 and again.manifest["runs_from_store"] == 12
    pd.testing.assert_frame_equal(c.summary, again.summary)
    # one more replication computes only the new runs
    more = run_experiment(SMALL, store=tmp_path / "st", reps=3, progress=False)
    assert more.manifest["runs_computed"] == 6 and more.manifest["overrides"] == {"reps": 3}
    tidy = results("small", store=tmp_path / "st")
    assert len(tidy) == 18 and "timings.sept_add_us" in tidy.columns
    listing = results(store=tmp_path / "st")
    assert list(listing["experiment"]) == ["small"]
    st = results("small", store=tmp_path / "st", table="stats")
    assert {"ci_low", "ci_high", "sd"} <= set(st.columns)


def test_engines_store_identical_tables(tmp_path):
    small = {**SMALL, "factors": {"timings.sept_add_us": [30]}}
    files = {}
    for engine in ("serial", "processes", "dask"):
        run_experiment(small, store=tmp_path / engine, engine=engine, workers=2,
                       progress=False)
        d = tmp_path / engine / "experiments" / "small"
        files[engine] = [(d / f).read_bytes() for f in ("summary.parquet", "table.csv")]
    assert files["serial"] == files["processes"] == files["dask"]


def test_a_folder_that_is_not_ours_is_refused_and_left_alone(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not a workbench results store"):
        run_experiment(SMALL, store=mine, progress=False)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    # a store with a user's file beside a result
    st = tmp_path / "st"
    run_experiment({**SMALL, "factors": {"timings.sept_add_us": [3]}, "reps": 1}, store=st,
                   progress=False)
    (st / "experiments" / "small" / "index.html").write_text("<p>mine</p>")
    before = sorted(str(p) for p in st.rglob("*"))
    out = cli("sweep", "zero-step-window", "--store", str(st))
    assert out.returncode == 2 and "index.html" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert sorted(str(p) for p in st.rglob("*")) == before
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        Store(tmp_path / "afile")


def test_two_writers_and_a_corrupt_run(tmp_path):
    st = tmp_path / "st"
    c = run_experiment({**SMALL, "factors": {"timings.sept_add_us": [3]}, "reps": 1},
                       store=st, progress=False)
    with Store(st):
        with pytest.raises(ConfigError, match="another workbench"):
            with Store(st):
                pass
    key = c.manifest["runs"][0]
    bad = st / "runs" / key / "summary.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match=str(bad)):
        run_experiment({**SMALL, "factors": {"timings.sept_add_us": [3]}, "reps": 1},
                       store=st, progress=False)
    assert bad.read_bytes() == b"not parquet"
    manifest = st / "experiments" / "small" / "manifest.json"
    manifest.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="manifest.json: not a valid experiment manifest"):
        results("small", store=st)
    assert manifest.read_text() == "[1, 2]"


def _children(pid):
    """Python child processes of ``pid`` (pool workers; not a passing ``git``)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"python" in cmd:
            out.add(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_sweep_killed_with_sigkill_resumes_to_the_same_tables(tmp_path):
    import yaml
    exp = tmp_path / "small.yaml"
    exp.write_text(yaml.safe_dump({**SMALL, "sets": {"horizon_us": 2500}}))
    whole = tmp_path / "whole"
    assert cli("sweep", str(exp), "--store", str(whole)).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "sweep", str(exp), "--store",
                             str(killed), "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    runs, deadline, workers = killed / "runs", time.time() + 120, set()
    while time.time() < deadline:
        workers |= _children(proc.pid)
        done = [p for p in runs.iterdir() if not p.name.startswith(".")] \
            if runs.is_dir() else []
        if len(done) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len([p for p in runs.iterdir() if not p.name.startswith(".")])
    assert 3 <= partial < 12
    assert not (killed / "experiments" / "small" / "table.csv").exists()
    # no orphan worker survives its parent
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    assert workers and not any(Path(f"/proc/{w}/stat").exists()
                               and " Z " not in Path(f"/proc/{w}/stat").read_text()
                               for w in workers)
    out = cli("sweep", str(exp), "--store", str(killed))
    assert out.returncode == 0, out.stderr
    assert f"{12 - partial} computed, {partial} from the store" in out.stdout
    for f in ("summary.parquet", "ops.parquet", "table.csv", "stats.csv"):
        a = (whole / "experiments" / "small" / f).read_bytes()
        assert a == (killed / "experiments" / "small" / f).read_bytes(), f
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]   # debris cleared


def test_cli_results_and_export(tmp_path):
    env = {"WORKBENCH_RESULTS": str(tmp_path / "st")}
    small = tmp_path / "small.yaml"
    import yaml
    small.write_text(yaml.safe_dump({**SMALL, "factors": {"timings.sept_add_us": [3, 100]}}))
    out = cli("sweep", str(small), env=env)
    assert out.returncode == 0, out.stderr
    assert "95 % interval" in out.stdout and "timings.sept_add_us" in out.stdout
    listing = cli("results", env=env)
    assert listing.returncode == 0 and "small" in listing.stdout
    shown = cli("results", "small", "--baseline", "upstream", env=env)
    assert shown.returncode == 0 and "Paired differences" in shown.stdout
    tex = cli("export", "small", "--format", "latex", env=env)
    assert tex.returncode == 0, tex.stderr
    text = (tmp_path / "st" / "experiments" / "small" / "table.tex").read_text()
    assert r"\begin{tabular}" in text and "upstream" in text
    paper = tmp_path / "paper.csv"
    assert cli("export", "small", "--format", "csv", "--out", str(paper),
               env=env).returncode == 0
    assert {"metric", "mean", "ci_low"} <= set(pd.read_csv(paper).columns)
    again = cli("export", "small", "--format", "csv", "--out", str(paper), env=env)
    assert again.returncode == 2 and "exists" in again.stderr



@pytest.mark.parametrize("args, words", [
    (("results", "nope"), "no experiment 'nope'"),
    (("sweep", "no-such-experiment"), "unknown experiment"),
    (("sweep", "zero-step-window", "--policies", "upstream"), "--policies"),
    (("sweep", "scale", "--param", "vcpus.1.count"), "--values"),
    (("export", "nope", "--format", "latex"), "no experiment"),
])
def test_cli_store_errors_are_one_line(args, words, tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "st"))
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_workers_above_the_cpu_count_warn():
    from workbench.experiments.engines import imap_jobs
    n = (os.cpu_count() or 1) + 1
    with pytest.warns(UserWarning, match="more than the"):
        assert sorted(imap_jobs(abs, [-1, -2], workers=n)) == [(0, 1), (1, 2)]


def test_compare_out_records_provenance(tmp_path):
    import json
    c = workbench.compare("touch-storm", ["upstream"], reps=1, sets={"horizon_us": 500})
    out = c.save(tmp_path / "c")
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 0 and m["scenario"]["horizon_us"] == 500
    assert {"git_commit", "git_dirty", "version", "dependencies"} <= set(m["provenance"])
    (out / "index.html").write_text("<p>mine</p>")
    with pytest.raises(ConfigError, match="index.html"):
        c.save(out)
    assert (out / "index.html").read_text() == "<p>mine</p>"


def test_reps_auto_adds_batches_until_the_interval_is_tight_or_the_cap(tmp_path):
    exp = {**SMALL, "factors": {}, "reps": "auto", "sets": {"horizon_us": 1000},
           "precision": {"metric": "private_fault_p50_us", "rel": 1e-9, "batch": 2,
                         "max_reps": 4}}
    c = run_experiment(exp, store=tmp_path / "st", progress=False)
    p = c.manifest["precision"]
    assert p["reps"] == 4 and not p["reached"] and len(c.summary) == 8
    assert c.manifest["runs_computed"] == 8
    loose = {**exp, "precision": {**exp["precision"], "rel": 0.99}}
    c = run_experiment(loose, store=tmp_path / "st", progress=False)
    assert c.manifest["precision"]["reached"] and c.manifest["precision"]["reps"] == 2
    assert c.manifest["runs_computed"] == 0
    fixed = run_experiment(exp, store=tmp_path / "st", reps=3, progress=False)
    assert len(fixed.summary) == 6 and "precision" not in fixed.manifest
    with pytest.raises(ConfigError, match="nosuch"):
        run_experiment({**exp, "precision": {"metric": "nosuch"}}, store=tmp_path / "st",
                       progress=False)


def test_scheduler_runs_on_an_existing_dask_cluster_and_export_parquet(tmp_path, monkeypatch,
                                                                        capsys):
    from dask.distributed import LocalCluster
    from workbench.cli import main
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "st"))
    import yaml
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({**SMALL, "factors": {"timings.sept_add_us": [3]},
                                     "reps": 1}))
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        assert main(["sweep", str(small), "--scheduler", cluster.scheduler_address]) == 0
    out = capsys.readouterr().out
    assert "2 computed" in out and ", dask," in out
    assert main(["export", "small", "--format", "parquet"]) == 0
    t = pd.read_parquet(tmp_path / "st" / "experiments" / "small" / "stats.parquet")
    assert {"timings.sept_add_us", "policy", "metric", "ci_low"} <= set(t.columns)


def test_runs_of_another_version_are_kept_apart_with_one_warning(tmp_path, monkeypatch):
    import workbench.experiments.runner as runner
    one = {**SMALL, "factors": {"timings.sept_add_us": [3]}, "reps": 1}
    monkeypatch.setattr(runner, "__version__", "0.0.1")
    old = run_experiment(one, store=tmp_path / "st", progress=False)
    monkeypatch.setattr(runner, "__version__", "0.0.2")
    with pytest.warns(UserWarning, match="2 of the 2 runs to compute are stored for version "
                                         "0.0.1"):
        new = run_experiment(one, store=tmp_path / "st", progress=False)
    assert new.manifest["runs_computed"] == 2
    assert set(new.manifest["runs"]).isdisjoint(old.manifest["runs"])
