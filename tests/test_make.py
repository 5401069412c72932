"""The Makefile's lab and present targets as root and as anyone else (dry runs; the
browser test runs `make present` for real and opens the URL it prints)."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry(target: str, *extra: str) -> str:
    return subprocess.run(["make", "-s", "-n", "-C", str(ROOT), target, "BIN=/venv/bin", "NB=",
                           *extra], capture_output=True, text=True, check=True).stdout


def test_lab_passes_allow_root_only_as_root():
    line = next(x for x in dry("lab").splitlines() if "jupyter lab" in x)
    assert ("--allow-root" in line) == (os.geteuid() == 0)
    assert "--port=8890" in dry("lab", "LAB_FLAGS=--port=8890")


def test_present_draws_its_token_once_and_culls_closed_pages_kernels():
    recipe = dry("present", "CULL_S=7")
    assert recipe.count("secrets.token_hex") == 1           # one token: printed = served
    assert "?token=$token" in recipe and "--token=$token" in recipe
    assert "--MappingKernelManager.cull_idle_timeout=7" in recipe
    assert "--Voila.ip=127.0.0.1" in recipe and "08-design-review.ipynb" in recipe
