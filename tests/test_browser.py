"""What a person sees, in Debian's headless chromium: 00-start-here in real JupyterLab
(the panel, a column added with HOST_PRIORITY off, Run, the dashboard) and the
presentation mode (Voila: no code on screen). Screenshots go to build/screenshots/ (or
$WB_SCREENSHOTS), printed at the end of each test."""
import os
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
SHOTS = Path(os.environ.get("WB_SCREENSHOTS") or ROOT / "build" / "screenshots")
PANEL_DONE = ("() => [...document.querySelectorAll('.wb-status')]"
              ".some(e => e.innerText.includes('replications per column'))")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepared(tmp_path: Path, name: str) -> Path:
    """A copy of a notebook with small parameters injected (not executed)."""
    nb = tmp_path / f"{name}.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", "--prepare-only", "-k", "python3",
                    str(ROOT / "notebooks" / f"{name}.ipynb"), str(nb),
                    "-p", "reps", "1", "-p", "horizon_us", "1000"],
                   check=True, capture_output=True)
    return nb


def serve(cmd: list, tmp_path: Path, url: str, env: dict):
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    deadline = time.time() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail("server died: " + (tmp_path / "server.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, log
        except OSError:
            if time.time() > deadline:
                pytest.fail("server did not start in 90 s")
            time.sleep(0.5)


def stop(proc, log):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def kernel_env(tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    return env


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def watch(page) -> list:
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def served_without_token(url: str) -> bool:
    """Whether the page is served to someone without the token."""
    import urllib.error
    try:
        with urllib.request.urlopen(f"{url}/", timeout=5) as r:
            return "login" not in r.geturl() and b"wb-compare-panel" in r.read()
    except urllib.error.HTTPError:
        return False


def check(page, errors):
    assert "Error displaying widget" not in page.inner_text("body")
    real = [e for e in errors if not any(h in e for h in HARMLESS)]
    assert not real, real


def press_run_and_wait(page, shot: str):
    page.locator(".wb-run button, button.wb-run").first.click()
    page.wait_for_function(PANEL_DONE, timeout=120_000)
    page.wait_for_selector(".wb-output .js-plotly-plot", timeout=60_000)
    page.locator(".wb-output").scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / shot), full_page=True)


def test_start_here_in_jupyterlab_two_columns_and_the_dashboard(tmp_path, browser):
    prepared(tmp_path, "00-start-here")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, log = serve([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                       "--ServerApp.ip=127.0.0.1", "--allow-root",
                       f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}"],
                      tmp_path, f"{url}/api/status?token={TOKEN}", kernel_env(tmp_path))
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        errors = watch(page)
        page.goto(f"{url}/lab/tree/00-start-here.ipynb?token={TOKEN}&reset")
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
        page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        page.wait_for_selector(".wb-compare-panel", timeout=180_000)
        assert page.locator(".wb-column").count() == 2
        page.locator(".wb-add button, button.wb-add").first.click()
        page.wait_for_function("() => document.querySelectorAll('.wb-column').length == 3")
        page.locator(".wb-column").nth(2).get_by_text("HOST_PRIORITY").click()
        page.wait_for_function("() => [...document.querySelectorAll('.wb-column')][2]"
                               ".innerText.includes('HP off')", timeout=30_000)
        press_run_and_wait(page, "start-here-panel.png")
        status = page.inner_text(".wb-status")
        assert ("host-priority-retry · HP on" in status
                and "host-priority-retry · HP off" in status)
        assert "identical numbers" not in status      # the two columns differ
        check(page, errors)
    finally:
        stop(proc, log)
    print(f"screenshots: {SHOTS}")


def test_presentation_mode_shows_the_panel_without_code(tmp_path, browser):
    prepared(tmp_path, "00-start-here")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, log = serve([sys.executable, "-m", "voila", "00-start-here.ipynb", "--no-browser",
                       "--Voila.ip=127.0.0.1", f"--port={port}", f"--token={TOKEN}",
                       "--strip_sources=True"],
                      tmp_path, f"{url}/?token={TOKEN}", kernel_env(tmp_path))
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        errors = watch(page)
        page.goto(f"{url}/?token={TOKEN}", timeout=120_000)
        page.wait_for_selector(".wb-compare-panel", timeout=180_000)
        body = page.inner_text("body")
        assert "Start here" in body and "ComparePanel" not in body   # prose, no code
        press_run_and_wait(page, "presentation.png")
        check(page, errors)
        assert not served_without_token(url)
    finally:
        stop(proc, log)
    print(f"screenshots: {SHOTS}")
