"""The lazy public API (PEP 562) against its one trap: a public name that is also a
submodule's name is rebound to the module by ``import workbench.NAME``."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import workbench

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import importlib, workbench
if {first_import}:
    importlib.import_module("workbench.analysis.robustness")
    importlib.import_module("workbench.present.plots")
try:
    workbench.robustness("fault-storm", ["upstream"])   # needs two policies: its own error
except workbench.ConfigError as e:
    assert "at least two policies" in str(e), e
else:
    raise SystemExit("workbench.robustness ran with one policy")
from workbench.analysis import robustness as R
assert R.headline_holds and R.robustness is workbench.robustness
assert workbench.plots is importlib.import_module("workbench.present.plots")
print("ok")
"""


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})


def test_public_names_work_before_and_after_importing_their_modules():
    for first_import in (False, True):
        p = _fresh(CHECK.format(first_import=first_import))
        assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_no_public_name_is_a_subpackage():
    modules = {m.name for m in pkgutil.iter_modules(workbench.__path__)}
    assert not modules & set(workbench.__all__)
    for name in workbench.__all__:
        assert getattr(workbench, name) is not None
