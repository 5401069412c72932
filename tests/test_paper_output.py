"""Paper-ready output (issue 22): LaTeX tables that compile and fit a column, with human
headers and no e-notation; figures laid out for 3.5 in and 7 in with text >= 8 pt,
written as PDF and SVG at those widths."""
import re
from pathlib import Path

import pytest

import workbench
from workbench.experiments.stats import latex_table, plain_number
from workbench.present import paper
from workbench.present.plots import paperfig
from workbench.present.plots.export import size
from workbench.present.plots.style import is_share, label

from texcheck import PDFLATEX, compile_table, structure

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def sweep():
    # two factors' worth of rows: a sweep's value and the policy, shares and counts
    return workbench.sweep("malicious-accept", "vcpus.1.per_page", [1, 4],
                           ["upstream", "host-priority-retry"], reps=2, seed=1,
                           sets=["horizon_us=400"])


def test_numbers_are_positional():
    assert [plain_number(x) for x in (1.23e-5, 0.5, 29.26, 3303.4, 0.0)] == \
        ["0.0000123", "0.5", "29.3", "3,303", "0"]


def _table(c):
    metrics = [m for m in paper.TABLE_METRICS if m in c.summary.columns] + ["host_busy_rate"]
    return latex_table(c.stats(metrics), by=c.by, label=label,
                       scale=lambda m: 100.0 if is_share(m) else 1.0,
                       caption="malicious-accept: mean and 95 % t-interval")


def test_a_table_has_human_headers_units_and_no_e_notation(sweep):
    text = _table(sweep)
    structure(text)
    assert "4 KB zap p99 (µs)" in text and "BUSY share of host SEAMCALLs (\\%)" in text
    assert "zap_4k_p99_us" not in text and "95\\,\\% interval" in text


@pytest.mark.skipif(PDFLATEX is None, reason="needs pdflatex (texlive-latex-base, "
                                             "texlive-latex-recommended; .ci/run installs it)")
def test_a_table_compiles_and_fits_a_column(sweep, tmp_path):
    compile_table(_table(sweep), tmp_path / "tex")
    one = workbench.compare("touch-storm", ["upstream", "upstream+fault=resume-guest"],
                            reps=2, seed=1, sets=["horizon_us=300"])
    compile_table(_table(one), tmp_path / "tex1")


def test_figures_for_print_have_8_pt_text_at_both_widths(sweep):
    figs = {"lines": workbench.plots.interval_lines(sweep.stats(), "zap_4k_p99_us", "value"),
            "outcomes": workbench.plots.outcomes(sweep.table[sweep.table["value"] == 4]),
            "tail": workbench.plots.latency_ccdf(sweep.ops, "zap_4k")}
    assert paperfig.pt(paperfig.FONT_PX) >= 8
    for f in figs.values():
        # the screen version printed a column wide: about 3 pt
        assert min(paperfig.font_sizes(f)) * 3.5 * 72 / size(f)[0] < 5
        for width, inches in paperfig.WIDTHS.items():
            p = paperfig.for_paper(f, width)
            assert p.layout.width == inches * 96 and not p.layout.title.text
            assert paperfig.pt(min(paperfig.font_sizes(p))) >= 8
            assert "<sup>" not in str(p.to_plotly_json()["layout"])


def test_many_panel_figures_are_split_for_print(sweep):
    c = sweep
    many = workbench.plots.outcomes(c.table)
    cols, _ = workbench.plots.nonzero(c.table)
    assert paperfig.panels(many) == len(cols) > paperfig.MAX_PANELS
    split = paper._outcomes("x", c.table, paperfig.MAX_PANELS)
    assert len(split) == -(-len(cols) // paperfig.MAX_PANELS)
    assert all(paperfig.panels(f) <= paperfig.MAX_PANELS for f in split.values())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium for kaleido")
def test_pdf_and_svg_are_written_at_3_5_and_7_inches(sweep, tmp_path):
    fig = workbench.plots.interval_lines(sweep.stats(), "zap_4k_p99_us", "value")
    written = workbench.plots.save_paper({"zap": fig}, tmp_path)
    assert sorted(p.name for p in written) == ["zap-3.5in.pdf", "zap-3.5in.svg",
                                               "zap-7in.pdf", "zap-7in.svg"]
    for inches, name in ((3.5, "zap-3.5in"), (7.0, "zap-7in")):
        box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ", (tmp_path / f"{name}.pdf").read_bytes())
        assert float(box.group(1)) == pytest.approx(inches * 72, abs=0.5)
        svg = (tmp_path / f"{name}.svg").read_text()
        assert f'width="{int(inches * 96)}"' in svg[:400]
