"""Compile a LaTeX table the way a two-column paper includes it (tests only)."""
import re
import shutil
import subprocess
from pathlib import Path

PDFLATEX = shutil.which("pdflatex")
NUMBER_E = re.compile(r"\d[eE][+-]?\d")


def structure(text: str) -> None:
    """What every table must be without a TeX to compile it: its packages named on the
    first line, booktabs rules, no e-notation, no raw snake_case header."""
    first = text.splitlines()[0]
    assert first.startswith("% needs:") and r"\usepackage{booktabs}" in first
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}"):
        assert rule in text
    assert not NUMBER_E.search(text), NUMBER_E.search(text)
    header = text.split(r"\toprule")[1].split(r"\midrule")[0]
    assert not re.search(r"[a-z]\\_[a-z]", header), header


def compile_table(text: str, folder: Path) -> str:
    """Compile ``text`` in a two-column article with the packages its first line names;
    fail on any error or on a box wider than the column. Returns the log."""
    needs = text.splitlines()[0].removeprefix("% needs:").strip()
    doc = "\n".join([r"\documentclass[twocolumn,10pt]{article}", needs,
                     r"\begin{document}", text, r"\end{document}"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.tex").write_text(doc)
    run = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    log = (folder / "t.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log, log[log.index("Overfull"):][:600]
    return log
