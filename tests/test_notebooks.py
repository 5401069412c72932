"""Notebooks: paired with their jupytext text file, committed without outputs, executed
with small parameters, and the panel used as a person would (controls, then Run)."""
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

import workbench
from workbench import widgets

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMALL = {"reps": 1, "horizon_us": 2000.0}   # every notebook's parameters cell has these


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_paired_and_committed_without_outputs(nb):
    py = nb.with_suffix(".py")
    assert py.exists(), f"{nb.name} has no jupytext pair"
    a, b = jupytext.read(nb), jupytext.read(py)
    assert [c.source for c in a.cells] == [c.source for c in b.cells], "run jupytext --sync"
    raw = json.loads(nb.read_text())
    for cell in raw["cells"]:
        assert not cell.get("outputs") and not cell.get("execution_count")
    tags = [c.get("metadata", {}).get("tags", []) for c in raw["cells"]]
    assert ["parameters"] in tags


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_small_parameters(nb, tmp_path):
    out = tmp_path / nb.name
    args = [sys.executable, "-m", "papermill", "-k", "python3", str(nb), str(out), "--cwd",
            str(tmp_path)]
    for k, v in SMALL.items():
        args += ["-p", k, str(v)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    cells = json.loads(out.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    shown = json.dumps(cells)
    assert "application/vnd.plotly.v1+json" in shown

