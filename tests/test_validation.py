"""The model against published end-to-end measurements (issue 13): every entry is run and
printed with measurement, model, ratio and the calibration used."""
import math

import pytest

from workbench.cli import main
from workbench.analysis.validation import entries


def test_validate_prints_every_entry_with_its_ratio_and_calibration(capsys):
    names = [e.name for e in entries()]
    assert len(names) >= 4 and all(e.measurement.source and e.gap for e in entries())
    assert main(["validate", "--small"]) == 0
    out = capsys.readouterr().out
    assert "calibration default:" in out
    table = out.split("\n\n")[1]
    for name in names:
        row = next(line for line in table.splitlines() if line.strip().startswith(name))
        measured, model, ratio = (float(x) for x in row.split()[1:4])
        assert math.isfinite(model) and model > 0
        assert ratio == pytest.approx(model / measured, rel=0.01)
        assert f"{name}: " in out                       # its source and its gap


def test_a_bad_validation_entry_is_one_line(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text("name: x\nmeasurement: {value: -1, unit: us, what: w, "
                                     "source: s}\nscenario: fault-storm\nmodel: {op: zap_4k}\n"
                                     "gap: g\n")
    assert main(["validate", "--small", "--folder", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "validation x.yaml: measurement.value" in err and err.count("\n") == 1
    assert main(["validate", "--folder", str(tmp_path / "none")]) == 2
