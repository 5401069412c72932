"""The panel used as a person would, without a browser: columns, Run, Cancel, Save."""
import threading

import workbench
from workbench.present import widgets

SMALL = dict(scenario="fault-storm", reps=2, seed=3, horizon_us=1000.0)


def hp_on_off():
    panel = widgets.ComparePanel(columns=("upstream",), **SMALL)
    panel.add_column("upstream").host_priority.value = False
    return panel


def test_two_columns_differing_in_host_priority_show_what_compare_gives():
    panel = hp_on_off()
    assert panel.result is None                       # nothing runs before Run
    on, off = (c.label() for c in panel.columns)
    assert (on, off) == ("upstream · HP on", "upstream · HP off")
    panel.run_button.click()
    panel.wait()
    table = panel.result.table.set_index("policy")
    for label, hp in ((on, "true"), (off, "false")):
        ref = workbench.compare("fault-storm", ["upstream"], reps=2, seed=3, sets=[
            "horizon_us=1000.0", f"module.host_priority={hp}"]).table.iloc[0]
        assert table.loc[label, "kicks"] == ref["kicks"]
        assert table.loc[label, "accept_throughput_per_ms"] == ref["accept_throughput_per_ms"]
    jain = next(t for t in panel.figure.data if t.name == "Jain's index")
    assert list(jain.x) == [on, off]
    lines = {t.name.split(" (")[0] for t in panel.figure.data if t.legendgroup in (on, off)}
    assert lines == {on, off}
    assert on in panel.status.value and off in panel.status.value
    shown = panel.output.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert len(shown["data"]) == len(panel.figure.data)


def test_run_is_disabled_while_running_and_a_second_click_queues_nothing(monkeypatch):
    calls, gate = [], threading.Event()
    real = widgets.run

    def slow_run(*a, **k):
        gate.wait(10)
        calls.append(k["policy"])
        return real(*a, **k)
    monkeypatch.setattr(widgets, "run", slow_run)
    panel = hp_on_off()
    panel.run_button.click()
    assert panel.run_button.disabled and panel.running
    assert "running" in panel.status.value
    panel.run_button.click()                          # ignored: one run is on its way
    gate.set()
    panel.wait()
    assert len(calls) == 2 * 2                        # 2 columns x 2 replications, once
    assert not panel.run_button.disabled and panel.progress.value == 4


def test_cancel_keeps_the_previous_result_and_says_so(monkeypatch):
    panel = hp_on_off()
    panel.reps.value = 1
    panel.run()
    panel.wait()
    before = panel.result
    gate = threading.Event()
    real = widgets.run
    monkeypatch.setattr(widgets, "run", lambda *a, **k: (gate.wait(10), real(*a, **k))[1])
    panel.run()
    assert "wb-stale" in panel.output._dom_classes    # old figures greyed while running
    panel.cancel()
    gate.set()
    panel.wait()
    assert "cancelled after 1 of 2 runs" in panel.status.value
    assert panel.result is before and not panel.run_button.disabled


def test_labels_say_exactly_what_ran_and_bad_input_is_one_line():
    panel = widgets.ComparePanel(columns=("upstream", {"preset": "upstream",
                                                       "accept": "linux-guest"}), **SMALL)
    assert panel.columns[1].label() == "upstream+accept=linux-guest · HP on"
    panel.columns[1].sites["accept"].value = widgets.KEEP
    panel.run_button.click()
    assert not panel.running
    assert "two columns run the same thing" in panel.status.value
    assert "\n" not in panel.status.value


def test_save_and_export(tmp_path):
    panel = widgets.ComparePanel(columns=("upstream", "zero-tolerance"), store=tmp_path / "st",
                                 **{**SMALL, "reps": 1})
    panel.run()
    panel.wait()
    where = panel.save("panel-test")
    assert where.is_dir()
    listed = workbench.results(store=tmp_path / "st")
    assert "panel-test" in set(listed["experiment"])
    stored = workbench.results("panel-test", store=tmp_path / "st", table="table")
    assert list(stored["policy"]) == list(panel.result.table["policy"])
    files = panel.export(tmp_path / "figs", formats=())
    assert {p.name for p in files} >= {"dashboard.html", "tail.html"}


def test_your_own_policy_is_offered_at_its_call_site():
    @workbench.register
    class PanelTwoTries(workbench.Policy):
        name = "panel-two-tries"
        origin = "test"
        sites = (workbench.policies.Site.FAULT,)

        def on_busy(self, ctx, rng):
            return workbench.policies.Retry() if ctx.attempt < 2 else \
                workbench.policies.ResumeGuest()

    panel = widgets.ComparePanel(columns=("upstream",), **SMALL)
    col = panel.add_column({"preset": "upstream", "fault": "panel-two-tries"})
    assert "panel-two-tries" in col.sites["fault"].options
    assert "panel-two-tries" not in col.sites["zap"].options
    assert col.label() == "upstream+fault=panel-two-tries · HP on"


def test_the_default_panel_shows_what_host_priority_changes():
    """The newcomer's path: default panel, "add column" (a copy of the last), untick
    HOST_PRIORITY, Run: the HP-off column gives what the API gives for HP off, and the
    status says so when the two columns come out identical (at the panel's defaults the
    lock model of docs/model.md §10.1 leaves zap retries the same with HP on and off)."""
    panel = widgets.ComparePanel()
    panel.add_button.click()
    assert [c.preset.value for c in panel.columns] == ["upstream", "host-priority-retry",
                                                       "host-priority-retry"]
    panel.columns[-1].host_priority.value = False
    panel.run_button.click()
    panel.wait()
    t = panel.result.table.set_index("policy")
    on, off = "host-priority-retry · HP on", "host-priority-retry · HP off"
    ref = workbench.compare("malicious-accept", ["host-priority-retry"], reps=2, seed=1, sets={
        "horizon_us": 1500.0, "vcpus.1.per_page": 4, "module.host_priority": False}).table
    assert t.loc[off, "retries_zap"] == ref["retries_zap"].iloc[0]
    same = t.loc[on].drop(["label"], errors="ignore").equals(
        t.loc[off].drop(["label"], errors="ignore"))
    assert ("identical" in panel.status.value) == same


def test_identical_columns_are_named_with_why_in_one_line():
    panel = widgets.ComparePanel(columns=("upstream", {"preset": "upstream",
                                                       "host_priority": False}),
                                 knobs={"vcpus.1.per_page": 1}, reps=1)
    panel.run()
    panel.wait()
    assert ("identical numbers, run for run: upstream · HP on = upstream · HP off"
            in panel.status.value)
    assert "HOST_PRIORITY has nothing to act on" in panel.status.value


def test_after_cancel_save_export_and_review_say_they_keep_the_previous_result(
        tmp_path, monkeypatch):
    panel = widgets.ComparePanel(columns=("upstream", "patch-09-21"), store=tmp_path / "st",
                                 figures_dir=tmp_path / "figs", **{**SMALL, "reps": 1})
    panel.run()
    panel.wait()
    assert panel.latest
    panel.save("first")
    assert "previous complete Run" not in panel.status.value
    shown = panel.result
    gate = threading.Event()
    real = widgets.run
    monkeypatch.setattr(widgets, "run", lambda *a, **k: (gate.wait(10), real(*a, **k))[1])
    panel.seed.value = 4
    panel.run()
    panel.cancel()
    gate.set()
    panel.wait()
    assert panel.result is shown and not panel.latest
    panel.save("after-cancel")
    assert "the previous complete Run, fault-storm seed 3" in panel.status.value
    m = workbench.results("after-cancel", store=tmp_path / "st", table="summary")
    assert set(m["seed"]) == {3}
    panel.export(formats=())
    assert "wrote" in panel.status.value and "previous complete Run" in panel.status.value
    review = panel.review()
    assert review.exists() and "previous complete Run" in panel.status.value


def test_a_panel_save_lists_its_seed_and_runs(tmp_path, capsys):
    from workbench.cli import main
    panel = widgets.ComparePanel(columns=("upstream", "zero-tolerance"), store=tmp_path / "st",
                                 **{**SMALL, "reps": 2})
    panel.run()
    panel.wait()
    panel.save("panel-listed")
    row = workbench.results(store=tmp_path / "st").set_index("experiment").loc["panel-listed"]
    assert (row["policies"], row["reps"], row["runs"]) == (2, 2, 4)
    assert main(["results", "panel-listed", "--store", str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert "(seed 3, common random numbers)" in out and "4 runs: 4 computed" in out


def test_the_status_line_says_which_policy_bugged_the_vm():
    panel = widgets.ComparePanel(columns=("upstream", "patch-09-21"), reps=2,
                                 horizon_us=3000.0, knobs={"vcpus.1.per_page": 4})
    panel.run()
    panel.wait()
    s = panel.result.summary
    bugged = int((s.loc[s["policy"] == "patch-09-21 · HP on", "vm_bugged"] > 0).sum())
    assert bugged, "patch 09/21 bugs the VM under ACCEPT spam (docs/findings.md)"
    assert f"patch-09-21 · HP on: VM bugged in {bugged} of 2 runs" in panel.status.value
    assert "latency not compared" in panel.status.value


def test_the_presentation_runs_on_opening_with_the_controls_folded():
    panel = widgets.ComparePanel(columns=("upstream",), present=True, **{**SMALL, "reps": 1})
    panel.wait()
    assert panel.result is not None and panel.latest
    assert panel.controls.selected_index is None
    kids = list(panel.children)
    assert kids.index(panel.status) < kids.index(panel.output) < kids.index(panel.controls)


def test_export_writes_every_figure_in_one_browser_session(tmp_path, monkeypatch):
    from workbench.present import plots
    from workbench.present.plots.dashboard import EXPORT_WIDTH
    calls = []
    monkeypatch.setattr(plots, "save_all", lambda figs, folder, formats, quiet=False: (
        calls.append((dict(figs), formats)), [folder / f"{k}.html" for k in figs])[1])
    panel = widgets.ComparePanel(columns=("upstream",), **{**SMALL, "reps": 1})
    panel.run()
    panel.wait()
    panel.export(tmp_path)
    assert len(calls) == 1
    figs, formats = calls[0]
    assert set(figs) == {"dashboard", "tail", "percentiles", "time-breakdown"}
    assert formats == ("png",) and figs["dashboard"].layout.width == EXPORT_WIDTH
    assert panel.figure.layout.width is None          # the panel's own fills its output
    assert "(HTML only: no browser for the images" in panel.status.value
