"""The docs: the worked example runs as written, the README is a short front door, every
link resolves, and no page tells the history of the tracker."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_policies_doc_example_runs(capsys):
    text = (ROOT / "docs" / "policies.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "docs/policies.md", "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert "adaptive-budget" in out and "done in" in out


# The front door and the pages it links: a short README, no tracker history, no dead link.
DOCS = sorted((ROOT / "docs").glob("*.md"))
FRONT = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines (at most 150)"


# docs/findings.md still tells its history by issue number; its owner is rewriting it. Non-
# strict xfail: the check runs and reports, and passes (XPASS) once the page is rewritten.
_HISTORY_PENDING = {"docs/findings.md"}


@pytest.mark.parametrize("name", [str(p.relative_to(ROOT)) for p in
                                  [ROOT / "README.md", *DOCS, ROOT / "benchmarks" / "README.md"]])
def test_no_issue_numbers_in_readme_or_docs(name, request):
    if name in _HISTORY_PENDING:
        request.applymarker(pytest.mark.xfail(reason="being rewritten by its owner",
                                              strict=False))
    for n, line in enumerate((ROOT / name).read_text().splitlines(), 1):
        assert not re.search(r"\bissue [0-9]", line, re.I), \
            f"{name}:{n} names a tracker issue: {line.strip()}"


def test_every_link_of_the_readme_and_docs_resolves():
    for path in FRONT:
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue                                  # https://, mailto:
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)} -> {target}"
            assert dest.is_file(), f"{where}: no such file"
            if anchor and dest.suffix == ".md":
                slugs = {_slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}
                assert anchor in slugs, f"{where}: no such heading"


def test_the_index_links_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    linked = {(ROOT / "docs" / t.partition("#")[0]).resolve() for t in LINK.findall(index)}
    missing = [p.name for p in DOCS if p.name != "index.md" and p.resolve() not in linked]
    assert not missing, f"docs/index.md does not link {missing}"
    assert (ROOT / "benchmarks" / "README.md").resolve() in linked


def test_the_docs_name_modules_that_exist():
    """Every `workbench/...py` path the docs name is a file of the package."""
    for path in FRONT:
        for name in re.findall(r"workbench/[\w/]+\.py", path.read_text()):
            assert (ROOT / name).is_file(), f"{path.relative_to(ROOT)} names {name}"


def test_bench_writes_its_table_between_the_markers(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "benchmarks" / "README.md").read_text())
    run.write_readme("| a | b |\n|---|---|\n| 1 | 2 |\n", readme)
    text = readme.read_text()
    assert f"{run.BEGIN}\n| a | b |\n|---|---|\n| 1 | 2 |\n{run.END}" in text
    before, after = (ROOT / "benchmarks" / "README.md").read_text().split(run.BEGIN)
    assert text.startswith(before) and text.endswith(after.split(run.END)[1])
