"""Figures that say what they mean: failed operations are never drawn as fast successes,
one policy has one colour everywhere, outcomes that are 0 for every policy are not drawn."""
from __future__ import annotations

import pandas as pd
import pytest

import workbench
from workbench.present import plots

SHORT = {"horizon_us": 3000}


@pytest.fixture(scope="module")
def comparison():
    return workbench.compare("zero-step", ["upstream", "zero-tolerance"], reps=1, seed=1,
                             sets=SHORT)


def test_the_ecdf_never_draws_a_failed_op_as_a_success(comparison):
    ops = comparison.ops
    fig = plots.latency_ecdf(ops, "private_fault")
    zt = ops[(ops["policy"] == "zero-tolerance") & (ops["op"] == "private_fault")
             & (ops["role"] != "stepper")]
    failed = int((zt["outcome"] != "ok").sum())
    assert failed > 0, "zero tolerance turns contended faults into exits"
    trace = next(t for t in fig.data if t.name.startswith("zero-tolerance"))
    assert len(trace.x) == len(zt) - failed
    assert max(trace.y) == pytest.approx((len(zt) - failed) / len(zt))
    assert f"{failed} not ok" in trace.name


def test_one_policy_has_one_colour_in_every_figure(comparison):
    figs = [plots.latency_ecdf(comparison.ops, "zap_4k"), plots.outcomes(comparison.table)]
    ecdf = {t.name.split(" ")[0]: t.line.color for t in figs[0].data}
    assert ecdf["upstream"] == plots.policy_color("upstream") != ecdf["zero-tolerance"]
    bars = figs[1].data[0]
    assert dict(zip(bars.y, bars.marker.color)) == {p: plots.policy_color(p) for p in bars.y}
    assert plots.policy_color("mine+fault=resume-guest") == plots.policy_color("mine+fault=resume-guest")


def test_outcomes_drop_panels_that_are_zero_for_every_policy():
    table = pd.DataFrame({"policy": ["a", "b"], "reps": [1, 1], "kicks": [3, 5],
                          "vm_bugged": [0, 0], "error_exits": [0, 2]})
    fig = plots.outcomes(table)
    assert [a.text for a in fig.layout.annotations][:2] == ["all-vCPU kicks",
                                                            "error exits to userspace"]
    assert "runs with the VM bugged" in fig.layout.title.text


def test_fairness_shows_each_vcpus_useful_work():
    r = workbench.run("lazy-accept-boot", seed=1, sets=SHORT)
    fig = plots.fairness(r.vcpus)
    assert len(fig.data) == 1 and list(fig.data[0].y) == list(r.vcpus["useful_work"])
    assert "Jain" in fig.data[0].name


@pytest.fixture(scope="module")
def report():
    return workbench.compare("malicious-accept", ["upstream", "zero-tolerance", "patch-09-21"],
                             reps=2, seed=1, sets={"horizon_us": 1500})


def test_the_tail_counts_failures_apart_and_never_draws_them(report):
    ops = report.ops
    fig = plots.latency_ccdf(ops, "zap_4k")
    zaps = ops[ops["op"] == "zap_4k"]
    for t in fig.data[:-1]:
        policy = t.name.split(" (")[0]
        own = zaps[zaps["policy"] == policy]
        ok = int((own["outcome"] == "ok").sum())
        assert len(t.x) == ok and (ok == len(own) or f"{len(own) - ok} of {len(own)} failed" in t.name)
    failed = fig.data[-1]
    assert max(failed.y) > 0, "zero tolerance and patch 09/21 fail zaps here"


def colours(fig):
    """(policy, colour) of every mark: a per-policy list of colours along a category
    axis, or one colour per trace named after its policy."""
    for t in fig.data:
        marker = getattr(t, "marker", None)
        many = marker is not None and isinstance(marker.color, (list, tuple))
        if many:
            cats = t.y if getattr(t, "orientation", None) == "h" else t.x
            yield from zip(cats, marker.color)
        elif t.name:
            line = getattr(t, "line", None)
            yield t.name.split(" (")[0], (line.color if line is not None and line.color
                                          else marker.color)


def test_one_policy_has_one_colour_in_every_figure_of_a_report(report):
    figs = [plots.dashboard(report), plots.latency_ccdf(report.ops, "zap_4k"),
            plots.percentile_bars(report.ops, "zap_4k"), plots.fairness(report.vcpus),
            plots.jain_interval(report.summary), plots.outcomes(report.table)]
    seen = {}
    for fig in figs:
        for policy, colour in colours(fig):
            if policy in plots.PRESET_COLORS:
                seen.setdefault(policy, set()).add(colour)
    assert set(seen) == {"upstream", "zero-tolerance", "patch-09-21"}
    assert all(s == {plots.policy_color(n)} for n, s in seen.items()), seen


def test_the_dashboard_drops_outcomes_zero_for_every_policy(report):
    fig = plots.dashboard(report)
    titles = [a.text.replace("<br>", " ") for a in fig.layout.annotations]
    table = report.table
    for col in plots.OUTCOMES:
        drawn = plots.title(col) in titles
        assert drawn == bool(table[col].abs().max() > 0), col
    assert "0 for every policy" in fig.layout.title.text
    assert plots.title("guest_panics") not in titles


def test_interval_bands_keep_a_second_factor_apart():
    import pandas as pd
    st = pd.DataFrame({"x": [1, 2] * 4, "f": ["on"] * 4 + ["off"] * 4,
                       "policy": (["a"] * 2 + ["b"] * 2) * 2, "metric": "kicks", "n": 2,
                       "mean": range(8), "ci_low": range(8), "ci_high": range(1, 9)})
    with pytest.raises(ValueError, match="another factor"):
        plots.interval_lines(st, "kicks", "x")
    fig = plots.interval_lines(st, "kicks", "x", facet="f")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 4 and {t.xaxis for t in lines} == {"x", "x2"}


def test_labels_are_human():
    assert plots.label("zap_4k_p99_us") == "4 KB zap p99 (µs)"
    assert plots.title("vcpus.1.count") == "vCPUs of the second role"
    assert plots.unit("host_busy_rate") == "%"


def test_save_writes_html_always_and_refuses_an_unknown_format(tmp_path):
    fig = plots.jain_interval(pd.DataFrame({"policy": ["a", "a"], "jain_work": [0.9, 1.0]}))
    assert plots.save(fig, tmp_path / "j.html") == [tmp_path / "j.html"]
    assert "Jain" in (tmp_path / "j.html").read_text()
    with pytest.raises(workbench.ConfigError, match="docx"):
        plots.save(fig, tmp_path / "j.docx")


def test_the_timeline_marks_every_busy_reply():
    r = workbench.run("malicious-accept", seed=2, policy="zero-tolerance",
                      sets={"horizon_us": 600})
    fig = plots.run_timeline(r)
    busy = next(t for t in fig.data if t.name.startswith("BUSY"))
    assert len(busy.x) == r.calls["status_name"].str.startswith("TDX_OPERAND_BUSY").sum() > 0
    assert set(busy.y) <= set(fig.layout.yaxis.categoryarray)


def test_a_variant_keeps_its_presets_colour_with_its_own_dash_and_pattern(comparison):
    on, off = "upstream · HP on", "upstream · HP off"
    names = {"upstream": on, "zero-tolerance": off}
    relabel = {k: getattr(comparison, k).assign(policy=lambda d: d["policy"].map(names))
               for k in ("summary", "ops", "vcpus")}
    c = workbench.Comparison(relabel["summary"], relabel["ops"],
                                         vcpus=relabel["vcpus"])
    blue = plots.PRESET_COLORS["upstream"]
    assert plots.policy_color(on) == plots.policy_color(off) == blue
    assert plots.policy_color("upstream+accept=linux-guest · HP off") == blue
    dash = {t.name.split(" (")[0]: t.line.dash for t in plots.latency_ccdf(c.ops, "zap_4k").data
            if t.type == "scatter"}
    assert dash[on] != dash[off]
    fig = plots.dashboard(c)
    for t in fig.data:
        if t.type == "bar" and isinstance(t.marker.color, tuple):
            assert set(t.marker.color) == {blue}
            shapes = dict(zip(t.x, t.marker.pattern.shape))
            assert shapes[on] != shapes[off] and shapes[on] == ""
    jain = next(t for t in fig.data if t.name == "Jain's index")
    assert len(set(jain.marker.symbol)) == 2
    other = plots.dashboard(comparison)      # presets as shipped: solid, own colours
    assert {t.line.dash for t in other.data if t.type == "scatter" and t.legendgroup} >= {"solid"}


def test_the_time_breakdown_draws_every_state_the_model_keeps():
    """Every vCPU state of the model has a name and a colour, and the breakdown's shares
    add up to the whole of the vCPUs' time (the shared resources' waits included)."""
    from workbench.core.records import VCPU_STATES
    assert set(VCPU_STATES) <= set(plots.STATES)
    r = workbench.run("lazy-accept-boot", sets={"horizon_us": 1500, "vcpus.0.count": 8})
    v = r.vcpus.assign(policy="upstream")
    b = plots.breakdown_table(v)
    assert b.loc[b["state"] == "hot_line", "share"].iloc[0] > 0
    assert b["share"].sum() == pytest.approx(1.0)
    names = {t.name for t in plots.time_breakdown(v).data}
    assert plots.STATES["hot_line"] in names


def test_counterexample_step_numbers_never_print_on_top_of_each_other():
    """Three calls within a hair of each other on one lane: one number above, one below,
    the third left to the hover (and counted in the subtitle)."""
    trace = pd.DataFrame({
        "step": [1, 2, 3, 4], "actor": ["vcpu1"] * 3 + ["zap:vcpu0"],
        "call": ["TDG.MEM.PAGE.ACCEPT"] * 3 + ["TDH.MEM.RANGE.BLOCK"],
        "t_start_us": [0.0, 0.1, 0.2, 50.0], "t_end_us": [1.0, 1.1, 1.2, 60.0],
        "status": ["SUCCESS"] * 3 + ["OPERAND_BUSY"], "lock": ["S-EPT entry"] * 4,
        "action": ["", "", "", "BugVm"]})
    fig = plots.counterexample(trace)
    printed = {t.textposition: list(t.text) for t in fig.data if t.mode == "text"}
    assert printed == {"top center": ["1", "4"], "bottom center": ["2"]}
    assert "1 too close to another to print" in fig.layout.title.text
