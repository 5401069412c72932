"""A stored run is bound to what produced it (issue 22): the source it executes, the
calibration's content, SimPy/NumPy; a dirty tree is refused; a manifest reproduces its
tables bit for bit on a fresh clone."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import workbench
from workbench.cli import main
from workbench.core.config import ConfigError
from workbench.experiments import fingerprint
from workbench.experiments.runner import code_status, results, run_experiment

ROOT = Path(__file__).resolve().parent.parent
TINY = {"name": "tiny", "scenario": "fault-storm", "sets": {"horizon_us": 300},
        "policies": ["upstream"], "reps": 2, "seed": 3}
SCRIPT = """
import json, sys, workbench
c = workbench.run_experiment(json.loads(sys.argv[1]), store=sys.argv[2], progress=False,
                             engine="serial")
print(json.dumps({"computed": c.manifest["runs_computed"], "file": workbench.__file__,
                  "pages": float(c.summary["pages_accepted"].sum())}))
"""


def _tree(where: Path) -> Path:
    """A copy of the package beside the repository's data (not a git checkout)."""
    where.mkdir()
    shutil.copytree(ROOT / "workbench", where / "workbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", where)
    (where / "data").symlink_to(ROOT / "data")
    return where


def _run_in(tree: Path, store: Path, exp=TINY) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(exp), str(store)],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tree)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["file"].startswith(str(tree))
    return {**r, "stderr": out.stderr}


def test_a_change_to_the_model_code_recomputes_every_run_and_marks_the_store_stale(tmp_path):
    store = tmp_path / "st"
    a = _run_in(_tree(tmp_path / "a"), store)
    assert a["computed"] == 2
    b = _tree(tmp_path / "b")     # the same code elsewhere: the same keys, all reused
    assert _run_in(b, store)["computed"] == 0
    assert results(store=store).loc[0, "code"] == "current"       # this checkout's code
    host = b / "workbench" / "model" / "host.py"
    text = host.read_text()
    assert text.count("self.duration(self.cal.kvm_fault_us)") == 1
    host.write_text(text.replace("self.duration(self.cal.kvm_fault_us)",
                                 "self.duration(3 * self.cal.kvm_fault_us)"))
    assert fingerprint.code_fingerprint(b / "workbench") != fingerprint.code_fingerprint()
    changed = _run_in(b, store)
    assert changed["computed"] == 2 and changed["pages"] != a["pages"]
    assert "tiny: the stored runs were made by other code; 2 runs are computed again" in \
        changed["stderr"]
    listing = results(store=store)       # the stored runs are the tripled model's now
    assert listing.loc[0, "code"] == "stale" and listing.loc[0, "stale_runs"] == 2


def test_a_calibration_change_recomputes_and_its_content_not_its_path_is_the_key(tmp_path):
    cal = (ROOT / "data" / "calibration" / "default.yaml").read_text()
    for name in ("one.yaml", "two.yaml"):
        (tmp_path / name).write_text(cal)
    exp = {**TINY, "reps": 1}
    first = run_experiment({**exp, "sets": {**exp["sets"], "calibration": str(
        tmp_path / "one.yaml")}}, store=tmp_path / "st", progress=False)
    assert first.manifest["runs_computed"] == 1
    # batch work runs on every core unless told otherwise
    cores = os.cpu_count() or 1
    assert first.manifest["provenance"]["engine"] == ("processes" if cores > 1 else "serial")
    assert first.manifest["provenance"]["workers"] == (cores if cores > 1 else None)
    same = run_experiment({**exp, "sets": {**exp["sets"], "calibration": str(
        tmp_path / "two.yaml")}}, store=tmp_path / "st", progress=False)
    assert same.manifest["runs_computed"] == 0        # same content, another path
    import yaml
    raw = yaml.safe_load(cal)
    raw["quantities"]["kvm_fault_us"]["value"] *= 3
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(raw))
    other = run_experiment({**exp, "sets": {**exp["sets"], "calibration": str(
        tmp_path / "two.yaml")}}, store=tmp_path / "st", progress=False)
    assert other.manifest["runs_computed"] == 1
    # the manifest carries the calibration: its content hash, values and file text
    (sha, rec), = other.manifest["calibrations"].items()
    assert rec["values"]["kvm_fault_us"] == raw["quantities"]["kvm_fault_us"]["value"]
    assert yaml.safe_load(other.manifest["archive"][rec["file_sha256"]]["text"]) == raw
    run = json.loads(next((tmp_path / "st" / "runs").glob(
        f"{other.manifest['runs'][0]}/run.json")).read_text())
    assert run["calibration_sha256"] == sha and run["code"] == fingerprint.code_fingerprint()
    assert {"simpy", "numpy"} <= set(run) and {"simpy", "numpy"} <= set(other.manifest["code"])


def test_measured_samples_are_archived_with_the_results(tmp_path):
    import numpy as np
    us = np.random.default_rng(5).lognormal(np.log(4.0), 0.4, 100)
    pd.DataFrame({"quantity": "TDH.MEM.PAGE.AUG", "us": us}).to_csv(tmp_path / "s.csv",
                                                                     index=False)
    assert main(["calibrate", "--from", str(tmp_path / "s.csv"), "--out",
                 str(tmp_path / "mine.yaml")]) == 0
    c = run_experiment({**TINY, "reps": 1, "sets": {**TINY["sets"], "calibration": str(
        tmp_path / "mine.yaml")}}, store=tmp_path / "st", progress=False)
    (rec,) = c.manifest["calibrations"].values()
    digest = rec["samples"]["page_aug_us"]
    kept = c.manifest["archive"][digest]
    folder = tmp_path / "restored"
    folder.mkdir()
    used = workbench.load_calibration(str(tmp_path / "mine.yaml"))[0].measured["page_aug_us"]
    assert fingerprint.restore(kept, folder).read_bytes() == Path(used[0]).read_bytes()
    # the key holds the samples' sha256, never their path
    assert str(tmp_path) not in json.dumps(rec["values"])


def test_a_dirty_tree_is_refused_unless_allowed_and_marked_wherever_shown(tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.delenv(fingerprint.ALLOW_DIRTY_ENV, raising=False)
    monkeypatch.setattr(fingerprint, "tree_state", lambda root=None: {
        "git_commit": "0" * 40, "git_dirty": True, "dirty_files": ["workbench/model/host.py"]})
    with pytest.raises(ConfigError, match="uncommitted changes .workbench/model/host.py.*"
                                          "--allow-dirty"):
        run_experiment(TINY, store=tmp_path / "st", progress=False)
    assert not (tmp_path / "st").exists()
    yaml_file = tmp_path / "tiny.yaml"
    yaml_file.write_text(json.dumps(TINY))
    assert main(["sweep", str(yaml_file), "--store", str(tmp_path / "st"), "--reps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-dirty" in err
    assert main(["sweep", str(yaml_file), "--store", str(tmp_path / "st"), "--reps", "1",
                 "--allow-dirty"]) == 0
    assert "DIRTY" in capsys.readouterr().out
    m = json.loads((tmp_path / "st" / "experiments" / "tiny" / "manifest.json").read_text())
    assert m["provenance"]["git_dirty"] and m["provenance"]["dirty_files"]
    assert code_status(m)["dirty"] and results(store=tmp_path / "st").loc[0, "dirty"]
    assert main(["results", "--store", str(tmp_path / "st")]) == 0
    assert "True" in capsys.readouterr().out
    # a robustness run is refused before its work too
    assert main(["robustness", "touch-storm", "--policies", "upstream,sean-per-path",
                 "--store", str(tmp_path / "st")]) == 2
    assert "--allow-dirty" in capsys.readouterr().err


def test_a_real_checkout_with_a_change_is_refused(tmp_path):
    repo = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    assert fingerprint.tree_state(repo)["git_dirty"] is False
    (repo / "workbench" / "model" / "host.py").write_text("# edited\n")
    (repo / "docs" / "findings.md").write_text("# docs do not decide results\n")
    state = fingerprint.tree_state(repo)
    assert state["dirty_files"] == ["workbench/model/host.py"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_manifest_reproduces_its_tables_bit_for_bit_on_a_fresh_clone(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != fingerprint.ALLOW_DIRTY_ENV}
    design = tmp_path / "tiny.yaml"
    design.write_text(json.dumps({**TINY, "policies": ["upstream", "zero-tolerance"]}))

    def clone(name, commit):
        d = tmp_path / name
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(d)], check=True)
        subprocess.run(["git", "checkout", "-q", "--detach", commit], cwd=d, check=True)
        return d

    def cli(tree, *args):
        return subprocess.run([sys.executable, "-m", "workbench", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300,
                              env={**env, "PYTHONPATH": str(tree)})
    a = clone("a", head)        # a clean checkout is never refused
    made = cli(a, "sweep", str(design), "--store", str(tmp_path / "s1"))
    assert made.returncode == 0, made.stderr
    manifest = tmp_path / "s1" / "experiments" / "tiny" / "manifest.json"
    m = json.loads(manifest.read_text())
    assert m["provenance"]["git_commit"] == head and m["provenance"]["git_dirty"] is False
    assert m["provenance"]["lock"]["sha256"] and m["provenance"]["platform"]
    assert m["provenance"]["command"][:2] == ["__main__.py", "sweep"] or \
        "sweep" in m["provenance"]["command"]
    b = clone("b", m["provenance"]["git_commit"])
    again = cli(b, "reproduce", str(manifest), "--store", str(tmp_path / "s2"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "run keys match the manifest" in again.stdout and "bit for bit" in again.stdout
    for table in ("summary.parquet", "ops.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "s1" / "experiments" / "tiny" / table),
            pd.read_parquet(tmp_path / "s2" / "experiments" / "tiny" / table), check_exact=True)
    (b / "workbench" / "model" / "host.py").write_text(
        (b / "workbench" / "model" / "host.py").read_text() + "\n# an edit\n")
    refused = cli(b, "sweep", str(design), "--store", str(tmp_path / "s3"))
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr
