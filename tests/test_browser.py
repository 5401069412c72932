"""What a person sees, in Debian's headless chromium: 00-start-here in real JupyterLab
(the panel, a column added with HOST_PRIORITY off, Run, the dashboard, every panel of it
inside the output at 1440x900 and 1024x768), the presentation that `make present` prints
the URL of (Voila: the answer first, no code, its kernel gone once the page closes) and
the review file opened offline and printed to PDF. Screenshots go to build/screenshots/
(or $WB_SCREENSHOTS), printed at the end of each test."""
import os
import re
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

SIZES = ((1440, 900), (1024, 768))
# every part of the dashboard figure a reader needs (panels, their titles, the legends,
# the title) against the output area it sits in and the window
BOXES = """() => {
  const plot = document.querySelector('.wb-output .js-plotly-plot');
  const area = plot.closest('.jp-OutputArea-output') || plot.closest('.wb-output');
  const r = e => { const b = e.getBoundingClientRect();
                   return {left: b.left, right: b.right, top: b.top, bottom: b.bottom}; };
  const parts = [...plot.querySelectorAll('.nsewdrag, .legend, .annotation, .gtitle')]
      .map(e => ({what: e.getAttribute('class') + ' ' + (e.textContent || '').slice(0, 40),
                  ...r(e)}));
  return {area: r(area), width: window.innerWidth, parts: parts};
}"""

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


def clipped(page) -> tuple[dict, list]:
    """The dashboard's boxes and the parts of it that stick out of its output area or the
    window (left and right; the notebook scrolls down)."""
    b = page.evaluate(BOXES)
    right = min(b["area"]["right"], b["width"]) + 1
    return b, [p for p in b["parts"] if p["left"] < b["area"]["left"] - 1 or p["right"] > right]


def fits_at(page, width: int, height: int, shot: str) -> dict:
    """Resize the window, wait for the figure to follow, check that no panel is cut and
    save a screenshot; returns the boxes."""
    page.set_viewport_size({"width": width, "height": height})
    deadline = time.time() + 20
    while True:
        page.wait_for_timeout(500)
        b, out = clipped(page)
        if not out or time.time() > deadline:
            break
    panels = [p for p in b["parts"] if p["what"].startswith("nsewdrag")]
    print(f"{width}x{height}: output {b['area']['left']:.0f}-{b['area']['right']:.0f} px, "
          f"{len(panels)} panels from x={min(p['left'] for p in panels):.0f} to "
          f"{max(p['right'] for p in panels):.0f}")
    assert len(panels) >= 6
    assert not out, out
    page.locator(".wb-output").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / shot))
    return b


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
        for w, h in SIZES:
            fits_at(page, w, h, f"lab-dashboard-{w}x{h}.png")
        check(page, errors)
    finally:
        stop(proc, log)
    print(f"screenshots: {SHOTS}")


def kernels_of(pid: int) -> dict:
    """``{pid: RSS in MB}`` of the ipykernel processes under process ``pid``."""
    children, info = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            status = (d / "status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
        rss = re.search(r"VmRSS:\s+(\d+)", status)
        info[int(d.name)] = ("ipykernel" in cmd, int(rss.group(1)) // 1024 if rss else 0)
    out, todo = {}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            todo.append(c)
            if info.get(c, (False,))[0]:
                out[c] = info[c][1]
    return out


def test_make_present_prints_a_url_that_opens_on_the_answer(tmp_path, browser):
    """`make present` as root: the URL it prints opens the design-review presentation
    (verdicts and dashboard on the first screen at 1280x720, controls folded, no code),
    the server refuses a visitor without the token, and a closed page's kernel goes."""
    port = free_port()
    log = open(tmp_path / "make.log", "w")
    proc = subprocess.Popen(
        ["make", "-s", "-C", str(ROOT), "present", f"BIN={Path(sys.executable).parent}", "NB=",
         f"PORT={port}", "CULL_S=4", "CULL_EVERY=1"],
        stdout=log, stderr=subprocess.STDOUT, env=kernel_env(tmp_path), cwd=tmp_path)
    try:
        deadline = time.time() + 90
        while "voila/static" not in locals().get("url", "") and time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail("make present died: " + (tmp_path / "make.log").read_text()[-2000:])
            m = re.search(r"at (http://127\.0\.0\.1:\d+/\?token=\w+)",
                          (tmp_path / "make.log").read_text())
            if m:
                url = m.group(1)
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/voila.js",
                                           timeout=2)
                    break
                except OSError:
                    pass
            time.sleep(0.5)
        else:
            pytest.fail("make present printed no URL or did not serve in 90 s")
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        errors = watch(page)
        page.goto(url, timeout=120_000)
        page.wait_for_function(PANEL_DONE, timeout=180_000)
        page.wait_for_selector(".wb-output .js-plotly-plot .nsewdrag", timeout=60_000)
        body = page.inner_text("body")
        assert "ComparePanel" not in body and "import" not in body          # no code
        assert re.search(r"patch-09-21 · HP on: VM bugged in \d of \d runs", body)
        first = page.evaluate("""() => ['.wb-verdicts', '.wb-output .nsewdrag']
            .map(s => document.querySelector(s).getBoundingClientRect().top)""")
        assert all(0 <= top < 720 for top in first), first     # the answer on screen 1
        assert not page.locator(".wb-controls .wb-run").first.is_visible()   # folded
        b, out = clipped(page)
        assert not out, out
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "present-1280x720.png"))
        check(page, errors)
        assert not served_without_token(f"http://127.0.0.1:{port}")
        running = kernels_of(proc.pid)
        assert running, "the page's kernel"
        page.close()
        deadline = time.time() + 30
        while kernels_of(proc.pid) and time.time() < deadline:
            time.sleep(0.5)
        left = kernels_of(proc.pid)
        print(f"kernel RSS while the page was open: {running} MB; after close: {left}")
        assert not left, left
    finally:
        stop(proc, log)
    print(f"screenshots: {SHOTS}")


def test_the_review_file_opens_offline_shows_the_answer_first_and_prints(tmp_path, browser):
    from workbench.cli import main
    review = tmp_path / "review.html"
    assert main(["review", "malicious-accept", "--policies",
                 "upstream,patch-09-21,zero-tolerance", "--reps", "1", "--set",
                 "horizon_us=1000", "--set", "vcpus.1.per_page=4", "--out", str(review)]) == 0
    ctx = browser.new_context(viewport={"width": 1280, "height": 720}, offline=True)
    asked = []
    ctx.route("**/*", lambda route: (asked.append(route.request.url), route.continue_()
                                     if route.request.url.startswith("file:")
                                     else route.abort()))
    page = ctx.new_page()
    errors = watch(page)
    page.goto(review.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert [u for u in asked if not u.startswith("file:")] == []
    assert page.locator(".js-plotly-plot").count() >= 4
    boxes = page.evaluate("""() => [
        document.querySelector('ul.verdicts'),
        ...[...document.querySelectorAll('.pair .js-plotly-plot')]]
        .map(e => { const b = e.getBoundingClientRect();
                    return [b.left, b.top, b.right, b.bottom]; })""")
    assert len(boxes) == 3                    # verdicts, latency, fairness
    for left, top, right, bottom in boxes:    # all on the first screen
        assert left >= 0 and top >= 0 and right <= 1280 and bottom <= 720, boxes
    text = page.inner_text("body")
    assert "VM bugged" in text and "How long is the tail" in text and "Who gets work done" in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "review-1280x720.png"))
    assert not errors, errors
    ctx.close()
    pdf = tmp_path / "review.pdf"
    subprocess.run([CHROMIUM, *ARGS, "--disable-quic", f"--user-data-dir={tmp_path / 'ud'}",
                    "--no-pdf-header-footer", f"--print-to-pdf={pdf}", review.as_uri()],
                   check=True, capture_output=True, timeout=120)
    data = pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert data.startswith(b"%PDF") and 2 <= pages <= 8, pages
    (SHOTS / "review.pdf").write_bytes(data)
    print(f"screenshots: {SHOTS}; review.pdf: {pages} pages")
