"""`workbench scenarios` lists the scenarios without loading YAML and pydantic (issue 11)."""
import subprocess
import sys


def test_quick_scenario_listing_matches_the_validated_one():
    from workbench.cli.info import quick_describe
    from workbench.core.scenarios import describe
    assert quick_describe() == describe()


def test_listing_scenarios_imports_no_heavy_module():
    code = ("import sys; from workbench.cli import main; main(['scenarios']); "
            "print([m for m in ('pandas', 'pydantic', 'yaml', 'simpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("[]") and "lazy-accept-boot" in out
