"""Calibration from measurements (issue 13): measured samples replace a guessed mean and
jitter, and a run draws from them with its own streams."""
import numpy as np
import pandas as pd
import pytest
import yaml

import workbench
from workbench.cli import main
from workbench.core.config import load_calibration


def _samples(tmp_path, n=3000, name="samples.csv"):
    """Whole TDH.MEM.PAGE.AUG calls (SEAMCALL to return) from a known lognormal."""
    rng = np.random.default_rng(5)
    us = rng.lognormal(np.log(4.0), 0.4, n)
    pd.DataFrame({"quantity": "TDH.MEM.PAGE.AUG", "us": us}).to_csv(tmp_path / name,
                                                                     index=False)
    return tmp_path / name, us


def _aug_durations(cal, seed=1):
    # shared.off=all: the AUG's own duration, without the hot lines' transfers (model/shared.py)
    # that contention adds on top of it
    r = workbench.run("fault-storm", seed=seed, sets=["horizon_us=3000", f"calibration={cal}",
                                                      "shared.off=all"])
    c = r.calls[(r.calls["leaf"] == "TDH.MEM.PAGE.AUG") & (r.calls["status"] == 0)]
    return (c["t_end_us"] - c["t_start_us"]).to_numpy(), r


def test_measured_samples_round_trip_through_a_calibration_and_runs(tmp_path, capsys):
    src, us = _samples(tmp_path)
    out = tmp_path / "my-machine.yaml"
    assert main(["calibrate", "--from", str(src), "--out", str(out), "--source", "lab"]) == 0
    printed = capsys.readouterr().out
    assert "page_aug_us" in printed and "guess" in printed      # what changed, and from what
    row = yaml.safe_load(out.read_text())["quantities"]["page_aug_us"]
    assert row["status"] == "measured" and row["source"].startswith("lab")
    cal, meta = load_calibration(str(out))
    assert set(cal.measured) == {"page_aug_us"} and meta["sept_add_us"]["status"] == "guess"
    d, r = _aug_durations(out)
    assert len(d) > 500
    se = us.std() / np.sqrt(len(d))
    assert abs(d.mean() - us.mean()) < 4 * se                   # the whole call's mean
    assert d.mean() > 1.4 * 3.0                                  # not the default (3 us)
    assert np.percentile(d, 99) == pytest.approx(np.percentile(us, 99), rel=0.12)
    assert np.array_equal(d, _aug_durations(out)[0])             # seeded: same draws
    assert not np.array_equal(d, _aug_durations(out, seed=2)[0])
    assert r.summary["run_id"].iloc[0]


@pytest.mark.parametrize("text, says", [
    ("quantity,seconds\npage_aug_us,1\n", "needs the columns quantity and us"),
    ("quantity,us\n" + "page_aug_us,2\n" * 30 + "page_aug_us,-1\n", "not a positive duration"),
    ("quantity,us\n" + "page_aug_us,2\n" * 5, "at least 20"),
    ("quantity,us\n" + "tdx_magic,2\n" * 30, "neither a calibration row"),
    ("\x00\x01garbage", "quantity"),
])
def test_bad_samples_are_one_line_errors(tmp_path, capsys, text, says):
    (tmp_path / "s.csv").write_text(text)
    assert main(["calibrate", "--from", str(tmp_path / "s.csv"), "--out",
                 str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not (tmp_path / "c.yaml").exists()


def test_calibrate_never_replaces_a_file(tmp_path, capsys):
    src, _ = _samples(tmp_path)
    (tmp_path / "mine.yaml").write_text("keep")
    assert main(["calibrate", "--from", str(src), "--out", str(tmp_path / "mine.yaml")]) == 2
    assert "exists" in capsys.readouterr().err and (tmp_path / "mine.yaml").read_text() == "keep"


def test_an_override_replaces_a_measured_row_and_changed_samples_are_refused(tmp_path):
    from workbench.core.config import ConfigError
    from workbench.core.samples import samples_of
    src, _ = _samples(tmp_path, n=50)
    out = tmp_path / "m.yaml"
    assert main(["calibrate", "--from", str(src), "--out", str(out)]) == 0
    cal, _ = load_calibration(str(out))
    assert len(samples_of(cal.measured)["page_aug_us"]) == 50
    over, _ = load_calibration(str(out), {"page_aug_us": 1.0})
    assert not over.measured and type(over.page_aug_us) is float
    pd.DataFrame({"quantity": ["page_aug_us"] * 30, "us": [1.0] * 30}).to_parquet(
        tmp_path / "m.samples.parquet", index=False)
    with pytest.raises(ConfigError, match="changed since"):
        samples_of(cal.measured)
