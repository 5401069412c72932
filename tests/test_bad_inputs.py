"""The bad-input corpus (issue 10): nothing a user types, shares or loads hangs the tool,
exhausts the machine, runs code, or comes back as a traceback.

Every case asserts: exit status 2 (or, in Python, a ``ConfigError``/``PolicyError``), exactly
one line on stderr, no traceback, nothing changed on disk, and an answer within seconds.
CLI cases run in-process (``workbench.cli.main``) so the corpus stays fast; a few run the
real ``python -m workbench`` where the process itself matters (sys.path, Ctrl-C).
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import workbench
from workbench import ConfigError, PolicyError
from workbench.cli import main
from workbench.experiments.comparison import Comparison, RunResult
from workbench.core.limits import Budget

SECONDS = 20        # any single case must answer well within this

# ----------------------------------------------------------------------------- sandbox
BILLION_LAUGHS = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
    for p, c in zip("abcdefgh", "bcdefghi"))
SCENARIO = "name: ok\nvcpus:\n  - role: fault_storm\n    count: 2\n"

FILES = {   # name -> bytes (str is UTF-8)
    "nonutf8.yaml": b"name: caf\xe9\nvcpus: [{role: fault_storm}]\n",
    "latin1-bom.yaml": b"\xff\xfename: x\n",
    "big.yaml": "# padding\n" * 200_000,
    "bomb.yaml": BILLION_LAUGHS,
    "manynodes.yaml": "name: x\nq: [" + ",".join(["1"] * 120_000) + "]\n",
    "longstring.yaml": "name: x\nquestion: '" + "q" * 250_000 + "'\n",
    "deep.yaml": "[" * 50_000 + "]" * 50_000,
    "deepmap.yaml": "{a: " * 5_000 + "1" + "}" * 5_000,
    "dupkey.yaml": SCENARIO + "name: again\n",
    "pytag.yaml": "!!python/object/apply:os.system ['echo pwned > PWNED']\n",
    "pytag-inner.yaml": SCENARIO + "question: !!python/name:os.system\n",
    "list.yaml": "- a\n- b\n",
    "scalar.yaml": "hello\n",
    "empty.yaml": "",
    "nul.yaml": "name: a\x00b\n",
    "syntax.yaml": ": : :\n",
    "tab.yaml": "name: x\nvcpus:\n\t- role: fault_storm\n",
    "anchor.yaml": "name: &n x\nvcpus: [{role: fault_storm}]\n",
    "badtime.yaml": SCENARIO + "question: 2024-13-45\n",
    "unhashable.yaml": "? [a, b]\n: 1\n",
    "unknownkey.yaml": SCENARIO + "colour: blue\n",
    "policy-import.yaml": SCENARIO + "policy: os:system\n",
    "policy-import-site.yaml": SCENARIO + "policy: {fault: 'os:system'}\n",
    "policy-dotted.yaml": SCENARIO + "policy: upstream.v2\n",
    "policy-preset-list.yaml": SCENARIO + "policy: {preset: [1, 2]}\n",
    "policy-twice.yaml": SCENARIO + "policy: upstream+fault=local-retry+fault=resume-guest\n",
    "region.yaml": "name: region\nmemory_mb: 16\n"
                   "vcpus:\n  - {role: fault_storm, count: 2, region_mb: 64}\n",
    "spammer-alone.yaml": "name: s\nvcpus: [{role: lazy_accept}, {role: accept_spammer}]\n",
    "stepper-alone.yaml": "name: s\nvcpus: [{role: lazy_accept}, {role: stepper}]\n",
    "floor.yaml": SCENARIO + "timings: {kvm_fault_us: 1.0e-300}\n",
    "horizon.yaml": SCENARIO + "horizon_us: 1.0e+12\n",
    "vcpus-huge.yaml": "name: x\nvcpus: [{role: fault_storm, count: 512}, "
                       "{role: fault_storm, count: 512}, {role: lazy_accept, count: 512}]\n",
    "memory-huge.yaml": SCENARIO + "memory_mb: 1048576\nsize: 10000\n",
    "pol-import.yaml": "fault: 'os:system'\n",
    "pol-import-plain.yaml": "policy: 'os:system'\n",
    "pol-list.yaml": "- upstream\n",
    "pol-bomb.yaml": BILLION_LAUGHS,
    "pol-dup.yaml": "fault: local-retry\nfault: resume-guest\n",
    "cal-list.yaml": "name: c\nquantities: [1, 2]\n",
    "cal-str.yaml": "name: c\nquantities: lots\n",
    "cal-nonutf8.yaml": b"name: c\xe9\nquantities: {}\n",
    "cal-floor.yaml": None,   # written from the default calibration with a tiny value
    "cal-nostatus.yaml": "name: c\nquantities: {sept_add_us: {value: 1}}\n",
    "boom.py": "raise RuntimeError('boom at import ' + 'x' * 5000)\n",
}


def _write_sandbox(d: Path) -> None:
    for name, data in FILES.items():
        if data is None:
            continue
        p = d / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    import yaml
    cal = yaml.safe_load((Path(workbench.__file__).parent.parent
                          / "data/calibration/default.yaml").read_text())
    cal["quantities"]["kvm_fault_us"]["value"] = 1e-300
    (d / "cal-floor.yaml").write_text(yaml.safe_dump(cal))
    os.mkfifo(d / "fifo.yaml")
    (d / "zero.yaml").symlink_to("/dev/zero")
    (d / "loop.yaml").symlink_to(d / "loop.yaml")
    (d / "dir.yaml").mkdir()
    (d / "mine").mkdir()
    (d / "mine" / "thesis.tex").write_text("years of work")
    (d / "afile").write_text("x")


def _snapshot(d: Path) -> dict:
    out = {}
    for root, dirs, files in os.walk(d, followlinks=False):
        for n in dirs + files:
            p = Path(root) / n
            st_ = p.lstat()
            out[str(p.relative_to(d))] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    _write_sandbox(d)
    return d


@contextlib.contextmanager
def _deadline(seconds=SECONDS):
    def hung(*_):
        raise TimeoutError(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t0 < seconds


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(rc, out, err, code=2):
    assert rc == code, (rc, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out
    assert err.endswith("\n") and err.count("\n") == 1, err[-2000:]
    assert err.startswith("workbench: "), err[:200]
    assert len(err) < 1000, err[:200]


# ----------------------------------------------------------------------------- CLI corpus
LONG = "a" * 300
RUN = ["run", "fault-storm"]
CLI_CASES = [
    # scenario files and names
    *[["run", "{d}/" + n] for n in (
        "nonutf8.yaml", "latin1-bom.yaml", "big.yaml", "bomb.yaml", "manynodes.yaml",
        "longstring.yaml", "deep.yaml", "deepmap.yaml",
        "dupkey.yaml", "pytag.yaml", "pytag-inner.yaml", "list.yaml", "scalar.yaml",
        "empty.yaml", "nul.yaml", "syntax.yaml", "tab.yaml", "anchor.yaml", "badtime.yaml",
        "unhashable.yaml", "unknownkey.yaml", "policy-import.yaml", "policy-import-site.yaml",
        "policy-dotted.yaml", "policy-preset-list.yaml", "policy-twice.yaml", "region.yaml",
        "spammer-alone.yaml", "stepper-alone.yaml",
        "floor.yaml", "horizon.yaml", "vcpus-huge.yaml", "memory-huge.yaml", "fifo.yaml",
        "zero.yaml", "loop.yaml", "dir.yaml", "missing.yaml")],
    ["run", "no-such-scenario"], ["run", LONG], ["run", LONG + ".yaml"], ["run", "a\x00b"],
    ["run", "{d}/" + "b" * 300 + "/x.yaml"], ["run", "/" + "c/" * 3000 + "x.yaml"],
    ["run", ""], ["compare", "{d}/fifo.yaml", "--policies", "upstream"],
    ["sweep", "{d}/bomb.yaml", "--param", "size", "--values", "1", "--policies", "upstream"],
    # --set values
    *[RUN + ["--set", s] for s in (
        "timings.kvm_fault_us=1e-300", "timings.kvm_fault_us=0", "timings.sept_add_us=1e-12", "timings.touch_us=1e-9",
        "timings.nosuch=1", "horizon_us=1e12", "horizon_us=nan", "horizon_us=inf",
        "horizon_us=-1", "vcpus.0.count=100000", "vcpus.0.count=zero", "vcpus.0.count=2.5",
        "vcpus.0.region_mb=1e9", "vcpus.0.think_us=1e-300", "vcpus.9.count=1",
        "vcpus.x.count=1", "nosuch=1", "module.nosuch=1", "module.host_priority=maybe",
        "policy=os:system", "policy=upstream.v2", "policy=[1, 2]", "policy={fault: 'os:system'}",
        "policy={preset: [1]}", "policy=upstream+fault=local-retry+fault=resume-guest",
        "name=*alias", "name=&a [1]", "name=!!python/object/apply:os.system [x]",
        "vcpus={a: 1, a: 2}", "vcpus=" + "[" * 200 + "]" * 200, "noequals", "=3",
        "name=" + "x" * 20_000, "vcpus=[]", "calibration=nosuch", "calibration=/dev/zero",
        "calibration={d}/fifo.yaml", "calibration={d}/cal-list.yaml",
        "calibration={d}/cal-str.yaml", "calibration={d}/cal-nonutf8.yaml",
        "calibration={d}/cal-floor.yaml", "calibration={d}/cal-nostatus.yaml",
        "calibration=" + LONG, "vcpus.0.role=dancing", "host.memory_fault_action=explode",
        "module.hp_lock_timeout_us=1", "size=0", "memory_mb=-5", "timings=[1]",
        "vcpus.0.gap_us=1e-300", "x" * 300 + "=1", "host.private_page_sizes=1g",
        "module.version=1.5.99", "host.accept_level_lock=none", "vcpus.0.hot_kb=0",
        "policy=upstream+split_lock=sideways")],
    ["run", "fault-storm", "--set", "memory_mb=1048576", "--set", "size=10000"],
    ["run", "conversion-storm", "--set", "vcpus.0.range_kb=4194304"],
    ["run", "conversion-storm", "--set", "vcpus.0.range_kb=5"],
    ["run", "conversion-storm", "--set", "horizon_us=1e12"],
    # --policy and --import
    *[RUN + ["--policy", p] for p in (
        "upstream.v2", "retry-harder", "blind-retry(delay_us=@)", "blind-retry(delay_us={)",
        "blind-retry(delay_us=!!python/object/apply:os.system [x])", "blind-retry(delay_us=*a)",
        "blind-retry(delay_us=&a [1])", "blind-retry(nosuch=1)", "blind-retry(=1)",
        "blind-retry(delay_us=1,delay_us=2)", "blind-retry(delay_us=-1)",
        "blind-retry(delay_us=" + "[" * 100 + ")", "upstream+fault=local-retry+fault=resume-guest",
        "upstream+zero-tolerance", "upstream+nosite=blind-retry", "accept=local-retry",
        "nosuchmodule:Policy", "os:system", "a b:c", "boom:Policy", ":", "x" * 5000,
        "{d}/fifo.yaml", "{d}/pol-bomb.yaml", "{d}/pol-import.yaml",
        "{d}/pol-import-plain.yaml", "{d}/pol-list.yaml", "{d}/pol-dup.yaml",
        "{d}/missing.yaml", "{d}/zero.yaml")],
    RUN + ["--import", "boom"], RUN + ["--import", "nosuchmodule"], RUN + ["--import", ""],
    RUN + ["--import", "../etc/passwd"],
    ["compare", "fault-storm", "--policies", "upstream,upstream"],
    ["compare", "fault-storm", "--policies", ","],
    ["compare", "fault-storm", "--policies", "upstream.v2"],
    ["compare", "fault-storm", "--policies", "upstream", "--reps", "10000000"],
    ["compare", "fault-storm", "--policies", "upstream", "--reps", "0"],
    ["compare", "fault-storm", "--policies", "upstream", "--reps", "-5"],
    ["compare", "fault-storm", "--policies", "upstream", "--workers", "0"],
    ["compare", "fault-storm", "--policies", "upstream", "--engine", "nope"],
    ["sweep", "fault-storm", "--param", "vcpus.0.count", "--policies", "upstream",
     "--values", ",".join(map(str, range(1, 3001)))],
    ["sweep", "fault-storm", "--param", "vcpus.0.count", "--policies", "upstream",
     "--values", ","],
    ["sweep", "fault-storm", "--param", "nosuch", "--policies", "upstream", "--values", "1"],
    ["sweep", "fault-storm", "--param", "vcpus.0.count", "--policies", "upstream",
     "--values", "a,b"],
    # seeds, budgets, --out
    RUN + ["--seed", str(2**64)], RUN + ["--seed", str(2**63)], RUN + ["--seed", "-1"],
    RUN + ["--seed", "x"], RUN + ["--max-events", "0"], RUN + ["--max-seconds", "0"],
    RUN + ["--max-seconds", "nan"], RUN + ["--max-seconds", "-1"],
    RUN + ["--out", ""], RUN + ["--out", "."], RUN + ["--out", ".."], RUN + ["--out", "{d}"],
    RUN + ["--out", "{d}/mine"], RUN + ["--out", "{d}/afile"],
    RUN + ["--out", "/proc/no-such-place/r"], RUN + ["--out", "{d}/" + LONG],
    RUN + ["--out", "{d}/a\x00b"], RUN + ["--out", "{d}/afile/sub"],
    ["compare", "fault-storm", "--policies", "upstream", "--out", "{d}/mine"],
    # the command line itself
    [], ["nosuch"], ["run"], ["run", "fault-storm", "--nosuch"],
]


def _ids(cases):
    return [" ".join(c)[:60].replace("\x00", "NUL") or "(none)" for c in cases]


@pytest.mark.parametrize("argv", CLI_CASES, ids=_ids(CLI_CASES))
def test_cli_bad_input_is_one_line(argv, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    monkeypatch.syspath_prepend(str(sandbox))       # so boom.py is importable (and raises)
    argv = [a.replace("{d}", str(sandbox)) for a in argv]
    before = _snapshot(sandbox)
    with _deadline():
        rc, out, err = run_main(argv)
    assert_one_line_error(rc, out, err)
    assert not (sandbox / "PWNED").exists()
    assert _snapshot(sandbox) == before


# ----------------------------------------------------------------------------- API corpus
@pytest.fixture(scope="module")
def small_result():
    return workbench.run("fault-storm", sets=["horizon_us=200"])


def _api_cases():
    from workbench.core.config import load_calibration, with_overrides
    cfg = workbench.load_scenario("fault-storm")
    r = workbench.run
    return {
        "run(replication=-1)": lambda d, res: r("fault-storm", replication=-1),
        "run(replication=2**64)": lambda d, res: r("fault-storm", replication=2**64),
        "run(replication=1.5)": lambda d, res: r("fault-storm", replication=1.5),
        "run(sets=[1,2])": lambda d, res: r("fault-storm", sets=[1, 2]),
        "run(sets=5)": lambda d, res: r("fault-storm", sets=5),
        "run(sets={1: 2})": lambda d, res: r("fault-storm", sets={1: 2}),
        "run(seed=2**63)": lambda d, res: r("fault-storm", seed=2**63),
        "run(seed=-1)": lambda d, res: r("fault-storm", seed=-1),
        "run(seed='1')": lambda d, res: r("fault-storm", seed="1"),
        "run(scenario=5)": lambda d, res: r(5),
        "run(scenario=long)": lambda d, res: r("a" * 300),
        "run(scenario=NUL)": lambda d, res: r("a\x00b"),
        "run(scenario=bytes)": lambda d, res: r(b"fault-storm"),
        "run(policy=5)": lambda d, res: r("fault-storm", policy=5),
        "run(policy={'preset': [1]})": lambda d, res: r("fault-storm", policy={"preset": [1]}),
        "run(policy=upstream.v2)": lambda d, res: r("fault-storm", policy="upstream.v2"),
        "run(policy={'fault': 3})": lambda d, res: r("fault-storm", policy={"fault": 3}),
        "run(policy=nosuch:Thing)": lambda d, res: r("fault-storm", policy="nosuch:Thing"),
        "run(calibration=5)": lambda d, res: r("fault-storm", calibration=5),
        "run(calibration=NUL)": lambda d, res: r("fault-storm", calibration="x\x00.yaml"),
        "run(budget=5)": lambda d, res: r("fault-storm", budget=5),
        "Budget(max_events=0)": lambda d, res: Budget(max_events=0),
        "Budget(max_seconds=inf)": lambda d, res: Budget(max_seconds=float("inf")),
        "sweep(values=5)": lambda d, res: workbench.sweep("fault-storm", "size", 5),
        "sweep(values='abc')": lambda d, res: workbench.sweep("fault-storm", "size", "abc"),
        "sweep(values=None)": lambda d, res: workbench.sweep("fault-storm", "size", None),
        "sweep(param=5)": lambda d, res: workbench.sweep("fault-storm", 5, [1]),
        "sweep(3000 values)": lambda d, res: workbench.sweep(
            "fault-storm", "vcpus.0.count", range(1, 3001), ["upstream", "zero-tolerance"]),
        "compare(policies=5)": lambda d, res: workbench.compare("fault-storm", 5),
        "compare(policies=[])": lambda d, res: workbench.compare("fault-storm", []),
        "compare(reps=10**7)": lambda d, res: workbench.compare("fault-storm", reps=10**7),
        "compare(reps=0)": lambda d, res: workbench.compare("fault-storm", reps=0),
        "compare(workers=0)": lambda d, res: workbench.compare(
            "fault-storm", sets=["horizon_us=100"], reps=2, workers=0),
        "save(NUL)": lambda d, res: res.save("a\x00b"),
        "save('')": lambda d, res: res.save(""),
        "save('.')": lambda d, res: res.save("."),
        "save(long)": lambda d, res: res.save(d / ("x" * 300)),
        "save(5)": lambda d, res: res.save(5),
        "save(file)": lambda d, res: res.save(d / "afile"),
        "save(foreign folder)": lambda d, res: res.save(d / "mine"),
        "RunResult.load(missing)": lambda d, res: RunResult.load(d / "nothing"),
        "RunResult.load(NUL)": lambda d, res: RunResult.load("a\x00b"),
        "RunResult.load(foreign)": lambda d, res: RunResult.load(d / "mine"),
        "Comparison.load(file)": lambda d, res: Comparison.load(d / "afile"),
        "load_scenario(fifo)": lambda d, res: workbench.load_scenario(d / "fifo.yaml"),
        "load_scenario(zero)": lambda d, res: workbench.load_scenario(d / "zero.yaml"),
        "load_scenario(bomb)": lambda d, res: workbench.load_scenario(d / "bomb.yaml"),
        "load_scenario(deep)": lambda d, res: workbench.load_scenario(d / "deep.yaml"),
        "load_scenario(dict)": lambda d, res: workbench.load_scenario({"name": "x"}),
        "load_calibration(list)": lambda d, res: load_calibration(str(d / "cal-list.yaml")),
        "load_calibration(timings=[1])": lambda d, res: load_calibration("default", [1]),
        "with_overrides([1])": lambda d, res: with_overrides(cfg, [1]),
        "with_overrides(deep key)": lambda d, res: with_overrides(cfg, {"a." * 500 + "b": 1}),
        "make_policy(upstream.v2)": lambda d, res: workbench.make_policy("upstream.v2"),
        "make_policy(import refused)": lambda d, res: workbench.make_policy(
            "os:system", imports=False),
        "resolve_policy(site twice)": lambda d, res: workbench.resolve_policy(
            "upstream+zap=blind-retry+zap=blind-retry"),
        "resolve_policy(file import)": lambda d, res: workbench.resolve_policy(
            {"fault": "os:system"}, imports=False),
        "resolve_policy(boom)": lambda d, res: workbench.resolve_policy("boom:Policy"),
        "resolve_policy(bad params yaml)": lambda d, res: workbench.resolve_policy(
            "blind-retry(delay_us=[)"),
    }


API_CASES = _api_cases()


@pytest.mark.parametrize("name", list(API_CASES))
def test_api_bad_argument_is_config_or_policy_error(name, sandbox, small_result, monkeypatch):
    monkeypatch.chdir(sandbox)
    monkeypatch.syspath_prepend(str(sandbox))
    before = _snapshot(sandbox)
    with _deadline(), pytest.raises((ConfigError, PolicyError)) as info:
        API_CASES[name](sandbox, small_result)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600
    assert _snapshot(sandbox) == before


# ----------------------------------------------------------------------------- faults
def test_disk_full_while_saving_is_one_line_and_keeps_the_old_result(tmp_path, small_result,
                                                                      monkeypatch):
    out = tmp_path / "r"
    small_result.save(out)
    before = _snapshot(tmp_path)

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(ConfigError, match="No space left"):
        small_result.save(out)
    assert _snapshot(tmp_path) == before


def test_ctrl_c_while_saving_keeps_the_old_result(tmp_path, small_result, monkeypatch):
    out = tmp_path / "r"
    small_result.save(out)
    before = _snapshot(tmp_path)

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pd.DataFrame, "to_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_result.save(out)
    assert _snapshot(tmp_path) == before


def test_ctrl_c_is_interrupted_exit_130(monkeypatch, tmp_path):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("workbench.experiments.comparison.run", interrupted)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(["run", "fault-storm", "--out", str(tmp_path / "r")])
    assert_one_line_error(rc, out, err, code=130)
    assert err == "workbench: interrupted\n" and not any(tmp_path.iterdir())


def test_ctrl_c_of_the_real_process(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "workbench", "run", "malicious-accept",
                          "--set", "horizon_us=1e8", "--quiet", "--out", str(tmp_path / "r")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=tmp_path)
    try:
        time.sleep(6)         # past the imports, into the simulation
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130 and err == "workbench: interrupted\n", err[-2000:]
    assert not any(tmp_path.iterdir())


def test_results_folders_have_normal_permissions(tmp_path, small_result):
    old = os.umask(0o022)
    try:
        small_result.save(tmp_path / "r")
    finally:
        os.umask(old)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o755


def test_budget_stops_a_run_and_says_so(capsys):
    rc = main(["run", "malicious-accept", "--max-events", "5000"])
    out, err = capsys.readouterr()
    assert rc == 0 and "stopped early: budget" in out
    assert err.count("\n") == 1 and "budget" in err
    r = workbench.run("malicious-accept", budget=Budget(max_events=5000))
    s = r.summary.iloc[0]
    assert s["stopped"] == "budget" and 0 < s["horizon_us"] < 20_000
    r = workbench.run("malicious-accept", budget=Budget(max_seconds=0.05))
    assert r.summary.iloc[0]["stopped"] == "budget"


def test_budget_keeps_runs_exactly_as_before():
    """The budgeted step loop processes the same events as env.run(until=horizon)."""
    a = workbench.run("zero-step", seed=3, sets=["horizon_us=3000"])
    b = workbench.run("zero-step", seed=3, sets=["horizon_us=3000"],
                      budget=Budget(max_events=10**9, max_seconds=1e6))
    pd.testing.assert_frame_equal(a.calls, b.calls)
    assert a.summary.iloc[0]["stopped"] == ""


def test_python_m_does_not_import_the_current_folder(tmp_path):
    (tmp_path / "yaml.py").write_text("open('PWNED', 'w').write('x')\n")
    (tmp_path / "bundle.yaml").write_text(SCENARIO + "policy: bundle:Evil\n")
    (tmp_path / "bundle.py").write_text("open('PWNED2', 'w').write('x')\n")
    out = subprocess.run([sys.executable, "-m", "workbench", "run", "bundle.yaml"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert "import paths are accepted only" in out.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


def test_explicit_imports_still_work(tmp_path, monkeypatch):
    (tmp_path / "mypols_issue10.py").write_text(
        "from workbench.policies import Policy, Retry, Site, register\n"
        "@register\nclass Mine(Policy):\n    name = 'mine-issue10'\n    origin = 'test'\n"
        "    sites = (Site.FAULT,)\n    def on_busy(self, ctx, rng):\n"
        "        return Retry(1.0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pset = workbench.resolve_policy("mypols_issue10:Mine")
    assert pset.fault.name == "mine-issue10"
    assert workbench.resolve_policy("mine-issue10", imports=False).fault.name == "mine-issue10"


# ----------------------------------------------------------------------------- fuzzing
SET_KEYS = ["horizon_us", "size", "memory_mb", "name", "policy", "calibration", "timings",
            "vcpus", "vcpus.0.count", "vcpus.0.region_mb", "vcpus.0.think_us", "module",
            "module.host_priority", "module.zero_step_threshold", "host.vmm_on_error",
            "timings.touch_us", "timings.kvm_fault_us", "timings.sept_add_us", "x"]
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
BUDGET = ["--max-events", "3000", "--max-seconds", "5"]


def _assert_clean(rc, out, err):
    assert "Traceback" not in err and "Traceback" not in out
    if rc == 2:
        assert_one_line_error(rc, out, err)
    else:
        assert rc == 0, (rc, err[-2000:])
        assert all(line.startswith("workbench: ") for line in err.splitlines())


@FUZZ
@given(key=st.sampled_from(SET_KEYS), value=st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?[0-9]{0,3}(\.[0-9]{0,3})?(e[-+]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["*a", "&a 1", "!!python/name:os.system", "[", "{", "nan", "inf", "1e-300",
                     "1e300", "[[[[[[]]]]]]", "{a: 1, a: 2}", "null", "~", "os:system"])))
def test_fuzz_set_values(key, value, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    before = _snapshot(sandbox)
    with _deadline():
        rc, out, err = run_main(["run", "fault-storm", "--set", f"{key}={value}", *BUDGET])
    _assert_clean(rc, out, err)
    assert _snapshot(sandbox) == before


YAML_ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                       st.floats(allow_nan=True), st.text(max_size=20))


NUM = st.one_of(st.integers(-5, 5000), st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from([0, 1e-300, 1e-3, 1e12, -1, "x", None, [1]]))
GROUP = st.fixed_dictionaries(
    {"role": st.sampled_from(["lazy_accept", "fault_storm", "converter", "accept_spammer",
                              "attr_spammer", "refaulter", "stepper", "dancer"]),
     "count": st.one_of(st.integers(-1, 8), st.sampled_from([0.5, "2", 10**9]))},
    optional={"region_mb": NUM, "range_kb": st.sampled_from([4, 5, 64, 4096, -4, 0]),
              "think_us": NUM, "interval_us": NUM, "gap_us": NUM, "attack_us": NUM,
              "access": st.sampled_from(["accept", "touch", 3])})
SCENARIO_DOC = st.fixed_dictionaries(
    {"name": st.text(max_size=12), "vcpus": st.lists(GROUP, max_size=3)},
    optional={"memory_mb": NUM, "horizon_us": NUM, "size": NUM,
              "policy": st.sampled_from(["upstream", "os:system", "upstream.v2",
                                         {"fault": "os:system"}, {"preset": [1]}, 5,
                                         "zero-tolerance+fault=resume-guest"]),
              "timings": st.dictionaries(st.sampled_from(["touch_us", "kvm_fault_us",
                                                          "nosuch"]), NUM, max_size=2),
              "module": st.dictionaries(st.sampled_from(["host_priority", "zero_step_threshold",
                                                         "nosuch"]), NUM, max_size=2)})


@FUZZ
@given(doc=st.one_of(
    st.text(max_size=200),
    SCENARIO_DOC.map(lambda d: __import__("yaml").safe_dump(d)),
    st.recursive(YAML_ATOMS, lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.sampled_from(["name", "vcpus", "role", "count", "memory_mb",
                                         "horizon_us", "policy", "timings", "size",
                                         "region_mb", "module", "fault"]), kids, max_size=4)),
        max_leaves=20).map(lambda d: __import__("yaml").safe_dump(d))))
def test_fuzz_scenario_documents(doc, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz", numbered=True)
    (d / "s.yaml").write_text(doc)
    before = _snapshot(d)
    with _deadline():
        rc, out, err = run_main(["run", str(d / "s.yaml"), *BUDGET])
    _assert_clean(rc, out, err)
    assert _snapshot(d) == before


def test_long_runs_report_progress_unless_quiet(monkeypatch, capsys):
    monkeypatch.setattr("workbench.model.budget.PROGRESS_S", 0.0)
    seen = []
    workbench.run("fault-storm", sets=["horizon_us=2000"],
                  budget=Budget(progress=lambda *a: seen.append(a)))
    assert seen and all(0 < now <= hz and n > 0 for now, hz, n, _ in seen)
    assert main(["run", "fault-storm", "--set", "horizon_us=2000"]) == 0
    assert "events/s" in capsys.readouterr().err
    assert main(["run", "fault-storm", "--set", "horizon_us=2000", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_pyarrow_is_past_the_untrusted_parquet_cve():
    import pyarrow
    major, minor, patch = (int(x) for x in pyarrow.__version__.split(".")[:3])
    assert (major, minor, patch) >= (14, 0, 1)      # CVE-2023-47248


def test_a_failed_swap_never_deletes_the_previous_result(tmp_path, small_result, monkeypatch):
    out = tmp_path / "r"
    small_result.save(out)
    real_rename = Path.rename

    def flaky(self, target):       # the new result cannot move in, nor the old one back
        if Path(target) == out:
            raise OSError(5, "Input/output error")
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(ConfigError, match="previous one is kept"):
        small_result.save(out)
    kept = list(tmp_path.glob(".r.old.*/prev/summary.parquet"))
    assert len(kept) == 1


def test_ctrl_c_of_a_process_pool_compare(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "workbench", "compare", "malicious-accept",
                          "--policies", "upstream,zero-tolerance", "--reps", "2", "--engine",
                          "processes", "--workers", "2", "--set", "horizon_us=1e8",
                          "--out", str(tmp_path / "c")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=tmp_path, start_new_session=True)
    try:
        time.sleep(6)
        os.killpg(p.pid, signal.SIGINT)   # the whole process group, as Ctrl-C in a terminal
        out, err = p.communicate(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)   # never leave workers behind
    assert p.returncode == 130 and err == "workbench: interrupted\n", err[-2000:]
    assert not any(tmp_path.iterdir())


POLICY_WORDS = st.sampled_from(["upstream", "zero-tolerance", "blind-retry", "local-retry",
                                "fault", "zap", "accept", "vp_enter", "preset", "os:system",
                                "upstream.v2", "max_retries", "delay_us", "None", "*a", "&a",
                                "!!python/name:os.system", "[", "{", "1e-300", "-1", ""])
POLICY_SPEC = st.lists(st.one_of(POLICY_WORDS, st.sampled_from(list("+=(),: ")),
                                 st.text(max_size=5)), max_size=10).map("".join)


@FUZZ
@given(spec=POLICY_SPEC)
def test_fuzz_policy_specs(spec, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    before = _snapshot(sandbox)
    with _deadline():
        rc, out, err = run_main(["run", "fault-storm", "--policy", spec, *BUDGET])
    _assert_clean(rc, out, err)
    assert _snapshot(sandbox) == before
    assert not (sandbox / "PWNED").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="needs root to run a check as an ordinary user (setpriv)")
def test_unwritable_out_as_an_ordinary_user():
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(dir="/tmp"))
    d.chmod(0o777)
    script = f"""
import os, workbench
from workbench.cli import main
d = {str(d)!r}
workbench.run('fault-storm', sets=['horizon_us=200']).save(d + '/r')
os.chmod(d + '/r', 0o555)
codes = [main(['run', 'fault-storm', '--out', d + '/r'])]
os.mkdir(d + '/ro', 0o555)
codes.append(main(['run', 'fault-storm', '--out', d + '/ro/new']))
os.chmod(d + '/r', 0)
codes.append(main(['run', 'fault-storm', '--out', d + '/r']))
print(codes)
"""
    try:
        out = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                              "--clear-groups", sys.executable, "-c", script],
                             capture_output=True, text=True, timeout=120, cwd=d)
        assert out.stdout.strip() == "[2, 2, 2]", out.stderr[-2000:]
        lines = out.stderr.splitlines()
        assert len(lines) == 3 and all(x.startswith("workbench: error: --out") for x in lines)
        assert "Traceback" not in out.stderr
    finally:
        for p in (d / "r", d / "ro"):
            if p.exists():
                p.chmod(0o755)
        shutil.rmtree(d, ignore_errors=True)


def test_a_yaml_text_parsed_once_still_gives_each_caller_its_own_copy(tmp_path):
    """safeio caches parsed texts (every run reads its scenario and calibration): a caller
    that changes what it got changes nothing for the next, and a changed file is read anew."""
    from workbench.core.safeio import load_yaml_text, read_yaml_file
    first = load_yaml_text("a: {b: [1, 2]}\n")
    first["a"]["b"].append(3)
    assert load_yaml_text("a: {b: [1, 2]}\n") == {"a": {"b": [1, 2]}}
    f = tmp_path / "s.yaml"
    f.write_text("x: 1\n")
    assert read_yaml_file(f) == {"x": 1}
    f.write_text("x: 2\n")
    assert read_yaml_file(f) == {"x": 2}
    with pytest.raises(ConfigError):           # errors are not cached as values
        load_yaml_text("a: [1,\n")
    with pytest.raises(ConfigError):
        load_yaml_text("a: [1,\n")
