"""Notebooks: paired with their jupytext text file, committed without outputs, and every
notebook in notebooks/ executed top to bottom with small parameters (papermill)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = Path("/usr/bin/chromium")
# small parameters per notebook (by file stem); a notebook not listed runs on its own
SMALL = {
    "00-start-here": {"reps": 1, "horizon_us": 1000.0},
    "01-compare-policies": {"reps": 1, "horizon_us": 1000.0},
    "02-scale-sweep": {"reps": 2, "horizon_us": 1000.0, "values": [3, 7]},
    "03-zero-step": {"reps": 1, "horizon_us": 1000.0, "window_us": [3, 60]},
    "04-malicious-guest": {"reps": 1, "horizon_us": 1000.0, "per_page": [1, 4],
                           "policies": ["upstream", "zero-tolerance"]},
    "05-paper": {"reps": 1, "horizon_us": 500.0, "values_per_factor": 1,
                 "formats": ["png"] if CHROMIUM.exists() else [],
                 "vector": CHROMIUM.exists()},
    "06-race-finder": {"schedules": 48},
    "07-robustness": {"samples": 4, "reps": 2, "horizon_us": 2000.0},
    "08-design-review": {"reps": 1, "horizon_us": 1000.0, "columns": ["upstream"]},
}
# the notebooks whose output is the panel (a widget), not a figure
PANELS = ("00-start-here", "08-design-review")
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"


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


def execute(nb: Path, tmp_path: Path, params: dict) -> list:
    out = tmp_path / nb.name
    args = [sys.executable, "-m", "papermill", "-k", "python3", str(nb), str(out), "--cwd",
            str(tmp_path)]
    if params:
        args += ["-y", json.dumps(params)]
    # the kernel imports this checkout's workbench, whatever the venv has installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    cells = json.loads(out.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    return cells


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_small_parameters(nb, tmp_path):
    params = dict(SMALL.get(nb.stem, {}))
    if nb.stem == "05-paper":
        params.update(out=str(tmp_path / "figures"), store=str(tmp_path / "store"))
    shown = json.dumps(execute(nb, tmp_path, params))
    assert (WIDGET if nb.stem in PANELS else PLOTLY) in shown
    if nb.stem == "05-paper":
        check_paper(tmp_path / "figures", params["formats"])


def check_paper(folder: Path, formats):
    """Every figure written as HTML (and PNG where a browser exists), every table as CSV
    and LaTeX, and paper.json names them and the lock."""
    record = json.loads((folder / "paper.json").read_text())
    figures = {Path(f).stem for f in record["files"] if f.endswith(".html")}
    assert {"main-dashboard", "main-tail", "main-useful-work", "hp-what-if-zap-4k-p99-us",
            "zero-step-window-zero-step-armings", "scale-zap-4k-p99-us",
            "hugepage-split-outcomes", "hugepage-split-latency", "zap-under-read-lock-outcomes",
            "zap-under-read-lock-latency", "upm-parallel-outcomes", "upm-parallel-latency",
            "lazy-accept-scaling-accept-throughput-per-ms-memory-mb-256"} <= figures
    for stem in figures:
        for ext in ["html", *formats]:
            assert (folder / f"{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    assert {"main-table.tex", "scale-table.csv"} <= set(record["files"])
    assert "lock" in record["lock"] and record["versions"]["pandas"]
    # the print set: PDF and SVG at a column's and a page's width, no dashboard
    if formats:
        for stem in ("main-tail", "scale-zap-4k-p99-us", "hugepage-split-latency"):
            for suffix in ("-3.5in.pdf", "-3.5in.svg", "-7in.pdf", "-7in.svg"):
                assert stem + suffix in record["files"], stem + suffix
        assert not any(f.startswith("main-dashboard-") for f in record["files"])
    from texcheck import PDFLATEX, compile_table, structure
    for tex in sorted(f for f in record["files"] if f.endswith(".tex")):
        text = (folder / tex).read_text()
        structure(text)
        if PDFLATEX:
            compile_table(text, folder.parent / "tex" / tex)
