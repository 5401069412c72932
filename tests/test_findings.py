"""Findings as code (issue 22): each finding of docs/findings.md with a generated section is
an experiment plus claims checked with their intervals; `make findings` writes the
sections from stored results, and a section whose numbers differ is named."""
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from workbench.analysis import findings
from workbench.cli import main
from workbench.core.config import ConfigError
from workbench.experiments.comparison import Comparison
from workbench.experiments.runner import plan

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "findings.md"


def test_every_finding_loads_plans_and_has_its_section_in_the_docs():
    in_docs = findings.sections(DOCS.read_text())
    assert set(findings.names()) == set(in_docs) and len(in_docs) >= 5
    for name in findings.names():
        f = findings.load(name)
        assert f.claims and all(plan(e)[1] for _, e in f.experiments())


def _comparison(values: dict) -> Comparison:
    rows = [{"policy": p, "replication": r, "seed": 0, "m": v}
            for p, vs in values.items() for r, v in enumerate(vs)]
    return Comparison(pd.DataFrame(rows), pd.DataFrame(), factors=())


@pytest.mark.parametrize("claim, values, verdict", [
    ({"share": {"metric": "m", "policy": "a"}, "at_least": 0.9}, {"a": [1] * 40}, "holds"),
    ({"share": {"metric": "m", "policy": "a"}, "at_least": 0.9}, {"a": [1] * 3}, "consistent"),
    ({"share": {"metric": "m", "policy": "a"}, "at_least": 0.9}, {"a": [1, 0, 0]}, "fails"),
    ({"share": {"metric": "m", "policy": "a"}, "at_most": 0}, {"a": [0] * 5}, "consistent"),
    ({"mean": {"metric": "m", "policy": "a"}, "at_least": 1}, {"a": [7, 7.5, 6.5]}, "holds"),
    ({"mean": {"metric": "m", "policy": "a"}, "at_least": 1}, {"a": [0, 0.5, 3]}, "consistent"),
    ({"diff": {"metric": "m", "policy": "b", "baseline": "a"}, "at_most": 0},
     {"a": [10, 11, 12], "b": [5, 6, 6]}, "holds"),
    ({"diff": {"metric": "m", "policy": "b", "baseline": "a"}, "at_most": 0},
     {"a": [10, 11, 12], "b": [15, 16, 16]}, "fails"),
])
def test_a_claim_is_judged_by_its_interval(claim, values, verdict):
    f = findings.Finding("x", "x", {}, [{"text": "t", **claim}])
    (row,) = findings.evaluate(f, _comparison(values))
    assert row["verdict"] == verdict and row["low"] <= row["estimate"] <= row["high"]


def test_a_factor_difference_and_a_two_sided_bound():
    rows = [{"policy": "a", "replication": r, "seed": 0, "hp": hp, "v": v, "m": m}
            for v, shift in (("x", 0.1), ("y", 9.0)) for hp in (True, False)
            for r, m in enumerate([10.0, 12.0, 11.0]) for m in [m + (shift if hp else 0)]]
    c = Comparison(pd.DataFrame(rows), pd.DataFrame(), factors=("v", "hp"))
    f = findings.Finding("x", "x", {}, [{"text": "t", "between": [-1, 1], "diff": {
        "metric": "m", "policy": "a", "factor": "hp", "a": True, "b": False}}])
    got = {r["group"]: (r["verdict"], r["estimate"]) for r in findings.evaluate(f, c)}
    assert got["v x"][0] == "holds" and got["v x"][1] == pytest.approx(0.1)
    assert got["v y"] == ("fails", pytest.approx(9.0))


def test_a_bad_finding_is_one_line(tmp_path):
    (tmp_path / "f.yaml").write_text("experiment: {scenario: touch-storm}\n"
                                     "claims: [{text: t, share: {metric: m, policy: a}}]\n")
    with pytest.raises(ConfigError, match="one of at_least, at_most"):
        findings.load(tmp_path / "f.yaml")


def test_make_findings_writes_the_docs_and_a_changed_number_is_caught(tmp_path):
    docs = tmp_path / "findings.md"
    shutil.copy(DOCS, docs)
    names = ["resume-arms-zero-step", "serialising-lazy-accept-boot", "hp-does-not-decide"]
    store = tmp_path / "st"
    bodies = findings.run(names, store=store, docs=docs, quick=True, engine="serial")
    text = docs.read_text()
    for n in names:
        assert findings.sections(text)[n] == bodies[n] and "| claim |" in bodies[n]
        assert re.search(r"\*\*(holds|consistent|fails)\*\*", bodies[n])
    # outside the generated sections nothing moved
    strip = lambda t: findings.SECTION.sub("", t)  # noqa: E731
    assert strip(text) == strip(DOCS.read_text())
    assert [b for b in findings.check_docs(docs, store, quick=True) if "not in" not in b] == []
    # one number changed by hand in one section: that section is named
    body = findings.sections(text)["serialising-lazy-accept-boot"]
    number = re.search(r"\| (\d+(\.\d+)?) \[", body).group(1)
    edited = body.replace(f"| {number} [", f"| {number}1 [", 1)
    docs.write_text(text.replace(body, edited))
    bad = findings.check_docs(docs, store, quick=True)
    assert "serialising-lazy-accept-boot" in bad and "resume-arms-zero-step" not in bad


def test_cli_check_names_a_section_out_of_step(tmp_path, capsys):
    docs = tmp_path / "findings.md"
    shutil.copy(DOCS, docs)
    assert main(["findings", "--check", "--docs", str(docs), "--store",
                 str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert "patch-09-21-bugs-the-vm (not in the store)" in out and "out of step" in out
