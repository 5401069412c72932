"""The workbench installed the ordinary way: a wheel built from this checkout, installed into
a fresh venv outside it, run from another folder; and a Dask cluster of separate processes
(a scheduler and two workers started from that venv) giving the serial tables.

The fresh venv takes its dependencies (numpy, pandas, ...) from the test's own environment
through a path file, so the test needs no network; the workbench itself comes from the
wheel alone (the test's editable install is not visible there)."""
import os
import signal
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import workbench

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("scenarios", "scenarios/small", "calibration", "experiments", "validation")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    out = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation",
                          "--outdir", str(tmp / "dist"), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp / "dist").glob("*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = next((venv / "lib").glob("python3*/site-packages"))
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    home = tmp / "home"
    home.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8"}
    return {"venv": venv, "wheel": wheel, "sdist": next((tmp / "dist").glob("*.tar.gz")),
            "env": env, "home": home, "cwd": home}


def _wb(v, *args, timeout=300):
    return subprocess.run([str(v["venv"] / "bin" / "workbench"), *args], cwd=v["cwd"],
                          env=v["env"], capture_output=True, text=True, timeout=timeout)


def _shipped(files) -> set[str]:
    return {f for f in files if any(f.startswith(d + "/") and f.count("/") == d.count("/") + 1
                                    for d in SHIPPED) and f.endswith(".yaml")}


def test_wheel_and_sdist_carry_the_same_data_as_the_checkout(wheel_venv):
    checkout = _shipped(str(p.relative_to(ROOT / "data")) for p in (ROOT / "data").rglob("*"))
    names = zipfile.ZipFile(wheel_venv["wheel"]).namelist()
    in_wheel = _shipped(n.split("workbench/_data/", 1)[1] for n in names
                        if n.startswith("workbench/_data/"))
    assert checkout and in_wheel == checkout
    import tarfile
    with tarfile.open(wheel_venv["sdist"]) as t:
        in_sdist = _shipped(n.split("/data/", 1)[1] for n in t.getnames() if "/data/" in n)
    assert in_sdist == checkout
    assert not any("results/" in n or "figures/" in n for n in names)


def test_the_installed_wheel_runs_from_another_folder(wheel_venv):
    v = wheel_venv
    where = subprocess.run([str(v["venv"] / "bin" / "python"), "-c",
                            "import workbench, sys; print(workbench.__file__, workbench.__version__)"],
                           cwd=v["cwd"], env=v["env"], capture_output=True, text=True)
    path, version = where.stdout.split()
    assert path.startswith(str(v["venv"])) and version == workbench.__version__
    out = _wb(v, "scenarios")
    assert out.returncode == 0 and set(workbench.scenario_names()) <= set(out.stdout.split())
    out = _wb(v, "run", "lazy-accept-boot")
    assert out.returncode == 0, out.stderr
    assert "lazy-accept-boot" in out.stdout
    for name in workbench.scenario_names():
        out = _wb(v, "run", name, "--set", "horizon_us=200", "--quiet")
        assert out.returncode == 0, f"{name}: {out.stderr[-500:]}"


def test_the_store_lands_in_the_user_data_folder_never_in_the_package(wheel_venv):
    v = wheel_venv
    (v["cwd"] / "tiny.yaml").write_text("scenario: touch-storm\nsets: {horizon_us: 300}\n"
                                        "factors: {timings.sept_add_us: [3]}\npolicies: [upstream]\nreps: 1\n")
    out = _wb(v, "sweep", "tiny.yaml", timeout=600)
    assert out.returncode == 0, out.stderr[-800:]
    store = v["home"] / ".local" / "share" / "tdx-contention-workbench" / "results"
    assert (store / "workbench-store.json").is_file()
    assert not list(v["venv"].rglob("workbench-store.json"))
    out = _wb(v, "results")
    assert out.returncode == 0 and str(store) in out.stdout
    env = {**v["env"], "WORKBENCH_RESULTS": str(v["home"] / "mine")}
    out = subprocess.run([str(v["venv"] / "bin" / "workbench"), "results"], cwd=v["cwd"],
                         env=env, capture_output=True, text=True)
    assert str(v["home"] / "mine") in out.stdout


def _start(v, module, *args):
    return subprocess.Popen([str(v["venv"] / "bin" / "python"), "-m", module, *args],
                            cwd=v["cwd"], env=v["env"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def test_a_cluster_of_separate_processes_gives_the_serial_tables(wheel_venv):
    pytest.importorskip("distributed")
    from distributed import Client
    v = wheel_venv
    sched_file = v["home"] / "scheduler.json"
    procs = [_start(v, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--no-dashboard", "--scheduler-file", str(sched_file))]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            procs.append(_start(v, "distributed.cli.dask_worker", "--scheduler-file",
                                str(sched_file), "--nthreads", "1", "--no-dashboard"))
        with Client(scheduler_file=str(sched_file), timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            files = client.run(lambda: __import__("workbench").__file__)
            assert all(f.startswith(str(v["venv"])) for f in files.values())
            kw = dict(reps=2, seed=3, sets={"horizon_us": 400})
            serial = workbench.compare("malicious-accept", ["upstream", "zero-tolerance"], **kw)
            dask = workbench.compare("malicious-accept", ["upstream", "zero-tolerance"], **kw,
                                     engine="dask", client=client)
        pd.testing.assert_frame_equal(serial.summary, dask.summary)
        pd.testing.assert_frame_equal(serial.ops, dask.ops)
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
