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


# =========================================================================== third round
# (issue 24) data never names code; the store and --out never follow a link nor touch what
# they did not write; data files never name paths outside their folder; sizes are bounded
# before the first run; every error a user can cause is one line with exit 2.
import json  # noqa: E402
import shutil  # noqa: E402

from workbench.core.outdir import MARKER, check_out_dir  # noqa: E402
from workbench.experiments.store import Store  # noqa: E402

TINY = ["--set", "horizon_us=300"]
EXP = "name: {name}\nscenario: touch-storm\nsets: {{horizon_us: 300}}\nreps: 1\n"
GRID = ",".join(map(str, range(1, 3001)))
R3_FILES = {
    "exp-import.yaml": EXP.format(name="imp") + "policies: ['pwn24:X']\n",
    "exp-grid.yaml": EXP.format(name="grid") + f"factors:\n  vcpus.0.count: [{GRID}]\n"
                                               "  size: [1, 2]\n",
    "exp-lhs.yaml": EXP.format(name="lhs").replace("reps: 1\n", "reps: 1\ndesign: lhs\n"
                                                   "samples: 100000\n")
    + "factors:\n  timings.sept_add_us: {low: 1, high: 10}\n",
    "exp-auto.yaml": EXP.format(name="auto").replace("reps: 1\n", "reps: auto\n")
    + "precision: {metric: busy_rate, max_reps: 10000}\n",
    "exp-policy-set.yaml": "name: ps\nscenario: touch-storm\nreps: 1\n"
                           "sets: {horizon_us: 300, policy: zero-tolerance}\n",
    "exp-horizon.yaml": "name: hz\nscenario: touch-storm\nreps: 1\nsets: {horizon_us: 1.0e+12}\n",
    "exp-longname.yaml": EXP.format(name="n" * 250),
    "pwn24.py": "open('PWNED', 'w').write('x')\nX = None\n",
    "cal-measured.yaml": "name: c\nquantities: {measured: {value: {sept_add_us: "
                         "['/etc/os-release', '0']}, status: exact}}\n",
}
CLI_CASES_3 = [
    ["sweep", "{d}/exp-import.yaml", "--store", "{d}/st"],
    ["sweep", "{d}/exp-grid.yaml", "--store", "{d}/st"],
    ["sweep", "{d}/exp-lhs.yaml", "--store", "{d}/st"],
    ["sweep", "{d}/exp-auto.yaml", "--store", "{d}/st"],
    ["sweep", "{d}/exp-policy-set.yaml", "--store", "{d}/st"],
    ["sweep", "{d}/exp-horizon.yaml", "--store", "{d}/st"],
    ["sweep", "{d}/exp-longname.yaml", "--store", "{d}/st"],
    ["robustness", "malicious-accept", "--policies", "upstream,zero-tolerance", "--samples",
     "100000", "--store", "{d}/st"],
    ["robustness", "malicious-accept", "--policies", "upstream,zero-tolerance", "--samples",
     "3000", "--store", "{d}/st"],
    ["robustness", "malicious-accept", "--policies", "upstream,zero-tolerance", "--name",
     "n" * 300, "--store", "{d}/st"],
    ["explore", "malicious-accept-small", "--schedules", "100000000", "--out", "{d}/x.json"],
    ["explore", "malicious-accept-small", "--set", "horizon_us=1e9", "--out", "{d}/x.json"],
    ["explore", "malicious-accept-small", "--out", "{d}/afile"],
    ["run", "fault-storm", "--set", "vcpus.0.count=512", "--set", "shared.idle_share=0.6"],
    ["run", "fault-storm", "--set", "horizon_us=true"],
    ["run", "fault-storm", "--set", "calibration={d}/cal-measured.yaml"],
    ["compare", "fault-storm", "--policies", "upstream", "--warmup-us", "-5"],
    ["compare", "fault-storm", "--policies", "upstream", "--warmup-us", "nan"],
    ["replay", "{d}/brackets.json"],
    ["replay", "{d}/afile"],
]


@pytest.fixture(scope="module")
def sandbox3(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad3")
    _write_sandbox(d)
    for name, text in R3_FILES.items():
        (d / name).write_text(text)
    (d / "brackets.json").write_text("[" * 100_000)
    return d


@pytest.mark.parametrize("argv", CLI_CASES_3, ids=_ids(CLI_CASES_3))
def test_cli_bad_input_is_one_line_third_round(argv, sandbox3, monkeypatch):
    monkeypatch.chdir(sandbox3)
    monkeypatch.syspath_prepend(str(sandbox3))        # pwn24.py would run if imported
    argv = [a.replace("{d}", str(sandbox3)) for a in argv]
    before = _snapshot(sandbox3)
    with _deadline():
        rc, out, err = run_main(argv)
    assert_one_line_error(rc, out, err)
    assert not (sandbox3 / "PWNED").exists()
    assert _snapshot(sandbox3) == before            # no store, marker or lock created


# ----------------------------------------------------------------- the store and links
@pytest.fixture(scope="module")
def a_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("store") / "st"
    workbench.run_experiment({"name": "e", "scenario": "touch-storm", "reps": 1,
                              "sets": {"horizon_us": 300}}, store=d, progress=False)
    return d


def _linked(kind, st: Path, victim: Path):
    if kind == "lock":
        (st / ".lock").unlink()
        (st / ".lock").symlink_to(victim / "precious.txt")
    elif kind == "marker":
        (st / "workbench-store.json").rename(victim / "workbench-store.json")
        (st / "workbench-store.json").symlink_to(victim / "workbench-store.json")
    elif kind == "experiment":
        shutil.rmtree(st / "experiments" / "e")
        (st / "experiments" / "e").symlink_to(victim)
    elif kind == "run":
        run = next((st / "runs").iterdir())
        shutil.rmtree(run)
        run.symlink_to(victim)
    elif kind == "root":
        return victim.parent / "link-to-store"
    elif kind == "file-in-run":
        f = next((st / "runs").iterdir()) / "run.json"
        f.unlink()
        f.symlink_to(victim / "precious.txt")
    elif kind == "fifo":
        f = st / "experiments" / "e" / "table.csv"
        f.unlink()
        os.mkfifo(f)
    return st


@pytest.mark.parametrize("kind", ["lock", "marker", "experiment", "run", "root",
                                  "file-in-run", "fifo"])
def test_the_store_never_follows_a_link(kind, a_store, tmp_path):
    st = tmp_path / "st"
    shutil.copytree(a_store, st, symlinks=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("years of work")
    (victim / "table.csv").write_text("x,y\n")
    (victim / ".tmp-table.csv.1").write_text("mine")
    if kind == "root":
        (tmp_path / "link-to-store").symlink_to(st)
    root = _linked(kind, st, victim)
    before = _snapshot(victim)
    with _deadline(), pytest.raises(ConfigError, match="store"):
        with Store(root):
            pass
    with _deadline():
        rc, out, err = run_main(["results", "--store", str(root)])
    assert_one_line_error(rc, out, err)
    assert _snapshot(victim) == before


def test_store_debris_is_cleaned_only_when_provably_ours(a_store, tmp_path):
    st = tmp_path / "st"
    shutil.copytree(a_store, st, symlinks=True)
    ours = st / "runs" / f".tmp-{'a' * 64}.123"
    ours.mkdir()
    (ours / "summary.parquet").write_bytes(b"half")
    (st / "experiments" / "e" / ".tmp-table.csv.99").write_text("half")
    with Store(st):
        pass
    assert not ours.exists() and not (st / "experiments" / "e" / ".tmp-table.csv.99").exists()
    theirs = st / "runs" / ".tmp-notes"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not a store entry"):
        Store(st)
    assert (theirs / "thesis.tex").read_text() == "years of work"


def test_a_full_disk_in_the_store_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "e.yaml").write_text(EXP.format(name="full"))

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    rc, out, err = run_main(["sweep", str(tmp_path / "e.yaml"), "--store",
                             str(tmp_path / "st")])
    assert_one_line_error(rc, out, err)
    assert "No space left" in err
    assert not [p for p in (tmp_path / "st").rglob(".tmp-*")]


# ----------------------------------------------------------------- --out and its marker
def _result(tmp_path, small_result, name="r") -> Path:
    return small_result.save(tmp_path / name)


@pytest.mark.parametrize("content", [{"table.csv": "x,y\n"}, {"manifest.json": "{}"},
                                     {"manifest.json": "{}", "table.csv": "x\n"}])
def test_out_replaces_only_a_folder_with_its_own_marker(content, tmp_path, monkeypatch):
    mine = tmp_path / "mydata"
    mine.mkdir()
    for n, text in content.items():
        (mine / n).write_text(text)
    before = _snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(["run", "fault-storm", *TINY, "--out", str(mine)])
    assert_one_line_error(rc, out, err)
    assert "not a workbench result" in err and _snapshot(tmp_path) == before


def test_out_at_a_link_or_holding_a_link_is_refused(tmp_path, small_result):
    real = _result(tmp_path, small_result, "real")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_out_dir(tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    (real / "calls.parquet").unlink()
    (real / "calls.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    with pytest.raises(ConfigError, match="not a regular file"):
        check_out_dir(real)
    marker = json.loads((_result(tmp_path, small_result, "r2") / MARKER).read_text())
    assert marker["format"] == 1


def test_out_inside_the_store_is_refused(a_store, tmp_path, small_result):
    run = next((a_store / "runs").iterdir())
    with pytest.raises(ConfigError, match="inside the results store"):
        small_result.save(run)
    with pytest.raises(ConfigError, match="inside the results store"):
        small_result.save(a_store / "experiments" / "new")
    Store(a_store)          # still opens


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_kill_between_the_two_renames_is_restored_next_time(tmp_path):
    """SIGKILL after the old result moved aside and before the new one moved in: the next
    call for that --out puts the old one back, says so, and removes the debris."""
    out = tmp_path / "r"
    script = f"""
import os, signal
from pathlib import Path
import workbench
r = workbench.run('fault-storm', sets=['horizon_us=200'])
r.save({str(out)!r})
real = Path.rename
def killed(self, target):
    real(self, target)
    if '.old.' in str(target):
        os.kill(os.getpid(), signal.SIGKILL)
Path.rename = killed
r.save({str(out)!r})
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert not out.exists() and list(tmp_path.glob(".r.old.*/prev"))
    with pytest.warns(UserWarning, match="put it back"):
        check_out_dir(out)
    assert (out / MARKER).is_file() and RunResult.load(out).summary.shape[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_debris_that_is_not_provably_ours_is_reported_not_deleted(tmp_path):
    d = tmp_path / f".r.new.{_dead_pid()}.0123abcd"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    with pytest.warns(UserWarning, match="left as it is"):
        check_out_dir(tmp_path / "r")
    assert (d / "thesis.tex").read_text() == "years of work"
    ours = tmp_path / f".r.new.{_dead_pid()}.4567abcd"
    ours.mkdir()
    (ours / "summary.parquet").write_bytes(b"half")
    with pytest.warns(UserWarning):
        check_out_dir(tmp_path / "r")
    assert not ours.exists() and d.exists()


# ------------------------------------------------------------------ loaders
def _damage(kind, folder: Path):
    if kind == "list-manifest":
        (folder / "manifest.json").write_text("[]")
    elif kind == "calls-as-ops":
        shutil.copy(folder / "calls.parquet", folder / "ops.parquet")
    elif kind == "bad-calls":
        (folder / "calls.parquet").write_bytes(b"PAR1 not really")
    elif kind == "fifo-events":
        (folder / "events.parquet").unlink()
        os.mkfifo(folder / "events.parquet")
    elif kind == "link-summary":
        (folder / "summary.parquet").unlink()
        (folder / "summary.parquet").symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["list-manifest", "calls-as-ops", "bad-calls",
                                  "fifo-events", "link-summary"])
def test_a_damaged_run_folder_is_one_line(kind, tmp_path, small_result):
    folder = _result(tmp_path, small_result)
    _damage(kind, folder)
    with _deadline(), pytest.raises(ConfigError, match="not a readable result|link|regular"):
        RunResult.load(folder)
    with _deadline():
        rc, out, err = run_main(["trace", str(folder), "--out", str(tmp_path / "t.json")])
    assert_one_line_error(rc, out, err)


def test_a_sweep_folder_without_its_param_is_refused(tmp_path):
    c = workbench.sweep("fault-storm", "size", [1], reps=1, sets=["horizon_us=200"])
    folder = c.save(tmp_path / "s")
    assert Comparison.load(folder).param == "size"
    m = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**m, "param": None}))
    with pytest.raises(ConfigError, match="param"):
        Comparison.load(folder)
    (folder / "manifest.json").write_text("[]")
    with pytest.raises(ConfigError, match="mapping"):
        Comparison.load(folder)
    (folder / "manifest.json").write_text(json.dumps(m))
    pd.read_parquet(folder / "summary.parquet")[["run_id", "policy", "seed", "replication",
                                                 "scenario", "horizon_us", "value"]
                                                ].to_parquet(folder / "summary.parquet")
    with pytest.raises(ConfigError, match="vm_bugged"):
        Comparison.load(folder)


def test_a_dead_worker_is_one_line(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    def dead(*a, **k):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")
    monkeypatch.setattr("workbench.experiments.comparison.imap_jobs", dead)
    rc, out, err = run_main(["compare", "fault-storm", "--policies", "upstream", *TINY])
    assert_one_line_error(rc, out, err)
    assert "worker process died" in err


# ------------------------------------------------- data files name no path outside
def _calibration(folder: Path, samples: str) -> Path:
    import yaml
    cal = yaml.safe_load((Path(workbench.__file__).parent.parent
                          / "data/calibration/default.yaml").read_text())
    cal["quantities"]["page_aug_us"].update(status="measured", samples=samples)
    p = folder / "cal.yaml"
    p.write_text(yaml.safe_dump(cal))
    return p


@pytest.mark.parametrize("samples", ["/etc/os-release", "../outside.csv", "link.csv",
                                     "fifo.csv", "zero.csv", "sub/../../outside.csv"])
def test_calibration_samples_stay_in_the_calibration_folder(samples, tmp_path):
    folder = tmp_path / "cal"
    folder.mkdir()
    (tmp_path / "outside.csv").write_text("quantity,us\n" + "page_aug_us,1\n" * 25)
    (folder / "link.csv").symlink_to(tmp_path / "outside.csv")
    os.mkfifo(folder / "fifo.csv")
    (folder / "zero.csv").symlink_to("/dev/zero")
    p = _calibration(folder, samples)
    from workbench.core.config import load_calibration
    with _deadline(), pytest.raises(ConfigError) as info:
        load_calibration(str(p))
    assert "\n" not in str(info.value)


def test_an_error_never_quotes_a_line_of_the_file(tmp_path):
    (tmp_path / "s.csv").write_text("TOPSECRET-LINE,more\n" + "a,b\n" * 30)
    rc, out, err = run_main(["calibrate", "--from", str(tmp_path / "s.csv"), "--out",
                             str(tmp_path / "c.yaml")])
    assert_one_line_error(rc, out, err)
    assert "TOPSECRET" not in err


@pytest.mark.parametrize("value", ["1e-300", "1e308", "0", "-1", "nan"])
def test_calibrate_refuses_impossible_samples_and_leaves_no_file(value, tmp_path):
    (tmp_path / "s.csv").write_text("quantity,us\n" + f"page_aug_us,{value}\n" * 25)
    rc, out, err = run_main(["calibrate", "--from", str(tmp_path / "s.csv"), "--out",
                             str(tmp_path / "c.yaml")])
    assert_one_line_error(rc, out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_a_failed_calibrate_leaves_nothing_and_a_rerun_works(tmp_path):
    (tmp_path / "s.csv").write_text("quantity,us\n" + "page_aug_us,2.5\n" * 25)
    argv = ["calibrate", "--from", str(tmp_path / "s.csv"), "--out", str(tmp_path / "c.yaml")]
    rc, out, err = run_main([*argv, "--source", "x" * 100_000])
    assert_one_line_error(rc, out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]
    assert run_main(argv)[0] == 0
    assert (tmp_path / "c.samples.parquet").is_file()


# --------------------------------------------------------------------------- replay
@pytest.fixture(scope="module")
def a_replay(tmp_path_factory):
    from workbench.racefinder.replay import save
    from workbench.racefinder.schedule import make_target, prefix_source, run_schedule
    t = make_target("malicious-accept-small", "upstream")
    o = run_schedule(t, prefix_source(()), keep=True)
    return save(tmp_path_factory.mktemp("replay") / "ok.replay.json", t, o)


def _replay_doc(a_replay):
    return json.loads(a_replay.read_text())


@pytest.mark.parametrize("measured", [{"page_aug_us": ["/etc/os-release", "0" * 64]},
                                      {"page_aug_us": ["../x.csv", "0" * 64]},
                                      {"page_aug_us": "x"}, [1]])
def test_a_replay_file_names_no_file_outside_its_folder(measured, a_replay, tmp_path):
    doc = _replay_doc(a_replay)
    doc["calibration"]["measured"] = measured
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with _deadline():
        rc, out, err = run_main(["replay", str(tmp_path / "r.json")])
    assert_one_line_error(rc, out, err)


def test_what_explore_writes_replays_and_its_size_is_bounded(a_replay, tmp_path):
    from workbench.racefinder import replay as rp
    assert a_replay.stat().st_size < rp.MAX_REPLAY_BYTES
    assert rp.replay(a_replay)[1]
    doc = _replay_doc(a_replay)
    doc["pad"] = "x" * rp.MAX_REPLAY_BYTES
    (tmp_path / "big.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="larger than"):
        rp.load(tmp_path / "big.json")


def always_fails(tables):
    """A predicate for the replay test: every run 'fails'."""
    return "always"


def test_a_predicate_counterexample_replays_only_with_its_predicate(tmp_path):
    from workbench.racefinder.explore import explore
    from workbench.racefinder.replay import replay, save
    v = explore("malicious-accept-small", "upstream", schedules=1, predicate=always_fails,
                oracles=[], shrink=False)
    assert v.failure[0] == "predicate"
    p = save(tmp_path / "p.json", v.target, v.shrunk)
    assert json.loads(p.read_text())["predicate"].endswith(":always_fails")
    with pytest.raises(ConfigError, match="give it again"):
        replay(p)
    assert replay(p, always_fails)[1]


def test_a_full_disk_leaves_no_truncated_replay_file(a_replay, tmp_path, monkeypatch):
    from workbench.racefinder import replay as rp
    from workbench.racefinder.schedule import make_target, prefix_source, run_schedule
    t = make_target("malicious-accept-small", "upstream")
    o = run_schedule(t, prefix_source(()), keep=True)

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(ConfigError, match="No space left"):
        rp.save(tmp_path / "r.json", t, o)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------ one line for every error
def test_out_of_memory_is_one_line(monkeypatch):
    def oom(*a, **k):
        raise MemoryError
    monkeypatch.setattr("workbench.experiments.comparison.run", oom)
    rc, out, err = run_main(["run", "fault-storm"])
    assert_one_line_error(rc, out, err)
    assert "out of memory" in err


def test_a_user_policy_that_raises_names_their_code(tmp_path, monkeypatch):
    (tmp_path / "raising24.py").write_text(
        "from workbench.policies import Policy, Site, register\n"
        "@register\nclass Boom(Policy):\n    name = 'boom-issue24'\n    origin = 'test'\n"
        "    sites = (Site.FAULT,)\n    def on_busy(self, ctx, rng):\n"
        "        raise KeyError('my bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, err = run_main(["run", "fault-storm", "--policy", "raising24:Boom",
                             "--set", "horizon_us=2000", "--quiet"])
    assert_one_line_error(rc, out, err)
    assert "raising24.py" in err and "KeyError" in err


@pytest.mark.parametrize("value", ["x" * 300, "/" + "d/" * 2100])
def test_a_bad_workbench_results_is_one_line(value, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS", value)
    rc, out, err = run_main(["results"])
    assert_one_line_error(rc, out, err)
    assert "WORKBENCH_RESULTS" in err


def _api_cases_3():
    c = workbench.compare("fault-storm", reps=2, sets=["horizon_us=200"])
    from workbench.present import trace
    return {
        "facet_stats(None)": lambda d: workbench.facet_stats(None, "size", "x"),
        "run_experiment(5)": lambda d: workbench.run_experiment(5),
        "results(5)": lambda d: workbench.results(5, store=d / "st"),
        "results(store=5)": lambda d: workbench.results(store=5),
        "tails(level=2)": lambda d: c.tails(level=2),
        "stats(level=2)": lambda d: c.stats(level=2),
        "stats(level=95)": lambda d: c.stats(level=95),
        "write_trace(None)": lambda d: trace.write_trace(None, d / "t.json"),
        "Store(5)": lambda d: Store(5),
    }


def test_api_wrong_types_are_config_errors(tmp_path):
    for name, case in _api_cases_3().items():
        with pytest.raises((ConfigError, PolicyError)) as info:
            case(tmp_path)
        assert "\n" not in str(info.value), name
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------- silently wrong, now refused
def test_validate_refuses_an_op_without_latency(tmp_path):
    src = Path(workbench.__file__).parent.parent / "data" / "validation"
    entry = next(src.glob("*.yaml")).read_text()
    import yaml
    doc = yaml.safe_load(entry)
    doc["model"] = {"op": "no_such_op"}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(doc))
    from workbench.analysis.validation import entries
    with pytest.raises(ConfigError, match="no_such_op"):
        entries(tmp_path)


def test_robustness_draws_over_the_ranges_of_the_scenarios_calibration(tmp_path, monkeypatch):
    import yaml

    from workbench.analysis import robustness as rb
    cal = yaml.safe_load((Path(workbench.__file__).parent.parent
                          / "data/calibration/default.yaml").read_text())
    for q in cal["quantities"].values():
        if q.get("range"):
            q["range"] = [7.0, 7.5]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(cal))
    seen = {}

    def fake(cfg, policies, metric, cals, **kw):
        seen["calibration"] = cfg.calibration
        return pd.DataFrame([{"sample": i, "policy": p, metric: 1.0}
                             for i in cals.index for p in policies])
    monkeypatch.setattr(rb, "simulate", fake)
    r = rb.robustness("malicious-accept", ["upstream", "zero-tolerance"], samples=4,
                      sets=[f"calibration={tmp_path / 'mine.yaml'}"])
    assert ((r.calibrations >= 7.0) & (r.calibrations <= 7.5)).all().all()
    assert seen["calibration"].endswith("mine.yaml")
    r.spec["scenario"] = "_" + "s" * 400
    from workbench.experiments.store import MAX_NAME, NAME
    name = rb.default_name(r)
    assert NAME.match(name) and len(name) <= MAX_NAME


def test_sweep_and_compare_say_how_far_they_are_when_not_on_a_terminal(monkeypatch):
    monkeypatch.setattr("workbench.core.limits.PROGRESS_S", 0.0)
    rc, out, err = run_main(["compare", "fault-storm", "--policies", "upstream", "--reps",
                             "2", *TINY])
    assert rc == 0
    lines = err.splitlines()
    assert lines and all(x.startswith("workbench: ") and "runs done" in x for x in lines)
    assert lines[-1].startswith("workbench: 2 of 2 runs done")


def test_numpy_runtime_warnings_stay_off_stderr(monkeypatch):
    import warnings
    real = workbench.experiments.comparison.run

    def noisy(*a, **k):
        warnings.warn("Mean of empty slice", RuntimeWarning)
        return real(*a, **k)
    monkeypatch.setattr("workbench.experiments.comparison.run", noisy)
    rc, out, err = run_main(["run", "fault-storm", *TINY, "--quiet"])
    assert rc == 0 and err == ""


# ------------------------------------------------------------------------- fuzzing
ENTRY_KINDS = st.sampled_from(["file", "dir", "link-file", "link-dir", "fifo", "dangling"])
STORE_NAMES = st.sampled_from(["workbench-store.json", ".lock", "runs", "experiments",
                               "robustness", "runs/" + "a" * 64, "runs/.tmp-x",
                               "experiments/e", "experiments/e/table.csv",
                               "experiments/e/.tmp-table.csv.1", "experiments/.tmp-e",
                               "notes.txt", ".hidden"])


def _make(root: Path, rel: str, kind: str, victim: Path) -> None:
    p = root / rel
    if os.path.lexists(p) or not p.parent.is_dir() or p.parent.is_symlink():
        return
    if kind == "file":
        p.write_text('{"format": 1}' if p.name == "workbench-store.json" else "x")
    elif kind == "dir":
        p.mkdir()
    elif kind == "link-file":
        p.symlink_to(victim / "precious.txt")
    elif kind == "link-dir":
        p.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(p)
    else:
        p.symlink_to(root / "nowhere")


@FUZZ
@given(entries=st.lists(st.tuples(STORE_NAMES, ENTRY_KINDS), max_size=8))
def test_fuzz_store_trees_never_follow_a_link(entries, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzstore", numbered=True)
    victim = d / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("years of work")
    (victim / ".tmp-a.1").write_text("mine")
    root = d / "st"
    root.mkdir()
    for rel, kind in entries:
        _make(root, rel, kind, victim)
    before = _snapshot(victim)
    with _deadline():
        try:
            with Store(root):
                pass
        except ConfigError as err:
            assert "\n" not in str(err)
        rc, out, err = run_main(["results", "--store", str(root)])
    _assert_clean(rc, out, err)
    assert _snapshot(victim) == before


RESULT_NAMES = st.sampled_from([MARKER, "manifest.json", "table.csv", "calls.parquet",
                                "thesis.tex", ".hidden", "sub"])


@FUZZ
@given(entries=st.lists(st.tuples(RESULT_NAMES, ENTRY_KINDS), max_size=6))
def test_fuzz_out_folders_replace_only_their_own(entries, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzout", numbered=True)
    victim = d / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("years of work")
    out = d / "out"
    out.mkdir()
    for rel, kind in entries:
        _make(out, rel, kind, victim)
    before = _snapshot(d)
    try:
        check_out_dir(out)
        accepted = True
    except ConfigError:
        accepted = False
    assert _snapshot(d) == before
    names = set(os.listdir(out))
    if accepted and names:
        assert MARKER in names and all(
            os.path.isfile(out / n) and not os.path.islink(out / n) for n in names)
        assert names <= {MARKER, "manifest.json", "table.csv", "calls.parquet"}


@FUZZ
@given(field=st.sampled_from(["scenario", "calibration", "policy", "choices", "oracles",
                              "params", "until_us", "expect", "format", "predicate"]),
       value=st.recursive(YAML_ATOMS, lambda kids: st.one_of(
           st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids,
                                                       max_size=3)), max_leaves=8))
def test_fuzz_replay_documents(field, value, a_replay, tmp_path_factory):
    doc = _replay_doc(a_replay)
    doc[field] = value
    d = tmp_path_factory.mktemp("fuzzreplay", numbered=True)
    (d / "r.json").write_text(json.dumps(doc))
    with _deadline():
        rc, out, err = run_main(["replay", str(d / "r.json")])
    _assert_clean(rc, out, err)


def test_a_replay_with_measured_samples_replays_beside_them_only(tmp_path):
    from workbench.experiments.calibrate import calibrate
    from workbench.racefinder.replay import replay, save
    from workbench.racefinder.schedule import make_target, prefix_source, run_schedule
    (tmp_path / "s.csv").write_text("quantity,us\n" + "".join(
        f"page_aug_us,{2 + i / 10}\n" for i in range(25)))
    calibrate(tmp_path / "s.csv", tmp_path / "m.yaml")
    t = make_target("malicious-accept-small", "upstream", calibration=str(tmp_path / "m.yaml"))
    o = run_schedule(t, prefix_source(()), keep=True)
    p = save(tmp_path / "r.json", t, o)
    measured = json.loads(p.read_text())["calibration"]["measured"]
    assert measured["page_aug_us"][0] == "m.samples.parquet"
    assert replay(p)[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(p, elsewhere / "r.json")
    with pytest.raises(ConfigError, match="m.samples.parquet"):
        replay(elsewhere / "r.json")


def test_a_killed_single_file_write_is_cleaned_when_provably_ours(tmp_path):
    from workbench.core.safeio import atomic_write
    dead = _dead_pid()
    ours = tmp_path / f".tmp-out.csv.{dead}"
    ours.write_text("half")
    (tmp_path / "elsewhere").write_text("years of work")
    link = tmp_path / f".tmp-out.csv.{_dead_pid()}"
    link.symlink_to(tmp_path / "elsewhere")
    atomic_write(tmp_path / "out.csv", lambda p: p.write_text("x,y\n"))
    assert not ours.exists() and link.is_symlink()
    assert (tmp_path / "elsewhere").read_text() == "years of work"
    assert (tmp_path / "out.csv").read_text() == "x,y\n"
