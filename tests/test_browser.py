"""What a person sees: the notebook in real JupyterLab, in Debian's headless chromium.
Run all, the figures and the panel appear, pressing Run in the panel shows a comparison."""
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
TOKEN = "wb-test-token"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        "--disable-dev-shm-usage"]
HARMLESS = ("r.setData is not a function",)   # from the plotly lab extension

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of notebook 01 with small parameters."""
    nb = tmp_path / "01-compare-policies.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", "--prepare-only", "-k", "python3",
                    str(ROOT / "notebooks" / "01-compare-policies.ipynb"), str(nb),
                    "-p", "reps", "1", "-p", "horizon_us", "1500"],
                   check=True, capture_output=True)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port = free_port()
    log = open(tmp_path / "lab.log", "w")
    env = {**__import__("os").environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={TOKEN}",
         f"--ServerApp.root_dir={tmp_path}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail("jupyter lab died: " + (tmp_path / "lab.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("jupyter lab did not start in 90 s")
                time.sleep(0.5)
        yield url, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_notebook_in_jupyterlab_shows_figures_and_a_working_panel(lab):
    from playwright.sync_api import sync_playwright
    url, tmp = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/lab/tree/01-compare-policies.ipynb?token={TOKEN}&reset")
            page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
            page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
            page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
            page.wait_for_selector(".wb-compare-panel", timeout=180_000)
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp / "figures.png"))
            page.locator(".wb-compare-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp / "notebook.png"))
            page.locator(".wb-run button, button.wb-run").first.click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.wb-status')]"
                ".some(e => e.innerText.includes('replications'))", timeout=120_000)
            page.locator(".wb-output").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp / "panel.png"))
            text = page.inner_text("body")
            assert "Error displaying widget" not in text
            assert page.locator(".js-plotly-plot").count() >= 3
            real = [e for e in errors if not any(h in e for h in HARMLESS)]
            assert not real, real
        finally:
            browser.close()
        keep = __import__("os").environ.get("WB_SCREENSHOTS")   # a folder to keep them in
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for png in ("figures.png", "notebook.png", "panel.png"):
                shutil.copy(tmp / png, Path(keep) / png)
