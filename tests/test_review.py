"""The review file (``workbench review``): one self-contained HTML file with the scenario's
question, a verdict line per policy, the figures and the provenance; opened in a real
browser offline in tests/test_browser.py."""
import re
import subprocess
import sys

import pytest

ARGS = ["malicious-accept", "--policies", "upstream,patch-09-21", "--reps", "1",
        "--set", "horizon_us=1000", "--set", "vcpus.1.per_page=4"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    out = tmp_path_factory.mktemp("review") / "review.html"
    run = cli("review", *ARGS, "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout and "no robustness run" in run.stdout
    return out.read_text()


def text(page: str) -> str:
    """The page's visible words (tags and scripts dropped)."""
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_the_review_file_answers_the_question_policy_by_policy(review):
    words = text(review)
    assert "The question: A hostile guest spams TDG.MEM.PAGE.ACCEPT" in words
    assert "upstream: 4 KB zap p99" in words
    assert re.search(r"patch-09-21: VM bugged in 1 of 1 runs; .*latency not compared", words)
    assert "no successful 4 KB zap under patch-09-21" in words   # no line, said so
    for heading in ("How long is the tail of the 4 KB zap", "Who gets work done",
                    "Where does the vCPUs' time go", "What does each policy cost"):
        assert heading in words
    assert "None was run for this file. workbench robustness malicious-accept" in words


def test_the_review_file_needs_no_network_and_says_where_it_comes_from(review):
    assert review.count("<script") >= 4 and len(review) > 3_000_000     # plotly.js inlined
    assert not re.search(r"<(script|link)[^>]+(src|href)=", review)    # nothing fetched
    words = text(review)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=str(__import__("pathlib").Path(__file__).parent)).stdout.strip()
    assert f"commit {commit}" in words
    assert "calibration default" in words and "root seed 0" in words
    assert "command workbench review malicious-accept --policies upstream,patch-09-21" in words


def test_review_refuses_what_it_cannot_do_in_one_line(tmp_path):
    (tmp_path / "there.html").write_text("keep me")
    for extra, says in ((["--out", str(tmp_path / "there.html")], "exists"),
                        (["--out", str(tmp_path / "r.pdf")], "is HTML"),
                        (["--out", str(tmp_path / "r.html"), "--samples", "2"],
                         "at least 4 calibrations")):
        run = cli("review", *ARGS, *extra)
        assert run.returncode == 2 and says in run.stderr and run.stderr.count("\n") == 1
    assert (tmp_path / "there.html").read_text() == "keep me"
    assert not (tmp_path / "r.html").exists()


def test_robustness_samples_put_the_ranking_in_the_file(tmp_path):
    out = tmp_path / "r.html"
    run = cli("review", *ARGS, "--out", str(out), "--samples", "4")
    assert run.returncode == 0, run.stderr
    words = text(out.read_text())
    assert re.search(r"zap_4k_p99_us \(lower is better\) under 4 calibrations drawn over "
                     r"\d+ guessed timings \(few samples: a first look, not a finding\)", words)
    assert "upstream patch-09-21" in words or "patch-09-21 upstream" in words
    assert "Read with the verdicts" in words
