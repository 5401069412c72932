"""The guided strategy, the coverage report, the planted-bug mutants, the lock holder in
the trace and how much shrinking shortens (issue 25). Budgets are in schedules and runs,
never in seconds; every search is seeded."""
import pytest

import workbench
from workbench.cli import main
from workbench.policies.conformance import check_policy
from workbench.racefinder import guided, mutants, reach
from workbench.racefinder.explore import explore, make_target
from workbench.racefinder.replay import replay, save, trace_rows
from workbench.racefinder.schedule import prefix_source, random_source, run_schedule
from workbench.racefinder.shrink import shrink_choices


def _mutant(label):
    return next(m for m in mutants.MUTANTS if m.label == label)


def test_every_mutant_is_a_conforming_policy_with_a_stated_mistake():
    assert len(mutants.MUTANTS) >= 8
    assert len({m.label for m in mutants.MUTANTS}) == len(mutants.MUTANTS)
    for m in mutants.MUTANTS:
        site = next(s for s in ("fault", "zap", "vp_enter") if s in m.policy)
        check_policy(m.policy[site])
        assert len(m.mistake) > 40 and m.scenario in workbench.scenario_names("small")


@pytest.mark.parametrize("label,budget", [("zap-3rd-busy-fatal", 48),
                                          ("fault-3rd-busy-fatal", 48),
                                          ("vp-enter-2nd-busy-fatal", 48)])
def test_guided_finds_a_mutant_that_needs_repeated_busy(label, budget):
    m = _mutant(label)
    v = explore(m.scenario, m.policy, strategy="guided", schedules=budget, oracles=m.oracles,
                shrink=False, progress=False, engine="serial")
    assert v.failure and v.failure[0] == "vm_bugged", v.text()
    k = {"zap-3rd-busy-fatal": 3, "fault-3rd-busy-fatal": 3, "vp-enter-2nd-busy-fatal": 2}
    assert max(reach.deepest(v.reached).values()) >= k[label]


def test_the_score_reports_found_mutants_and_a_clean_upstream():
    rows = mutants.score(strategy="guided", seconds=1e6, max_schedules=32, engine="serial",
                         mutants=[_mutant("zap-busy-fatal")], clean=["malicious-accept-small"])
    assert [(r.label, r.found) for r in rows] == [("zap-busy-fatal", True),
                                                  ("upstream", False)]
    assert rows[0].schedules <= 32 and rows[1].schedules == 32 and all(r.ok for r in rows)
    text = mutants.score_text(rows)
    assert "1 of 1 mutants found (100 %)" in text and "clean on 1 of 1" in text


def test_a_guided_search_is_a_function_of_its_seed_whatever_the_engine():
    kw = dict(strategy="guided", schedules=32, progress=False, sets={"horizon_us": 400},
              seed=5, oracles=["vm_bugged"], shrink=False)
    a = explore("zero-step-small", "blind-retry-all", engine="serial", **kw)
    b = explore("zero-step-small", "blind-retry-all", engine="processes", workers=2, **kw)
    assert (a.failure, a.schedules, a.interleavings, a.reached) == \
        (b.failure, b.schedules, b.interleavings, b.reached)
    assert a.schedules == 32


def test_upstream_stays_clean_under_the_guided_search():
    v = explore("zero-step-small", "upstream", strategy="guided", schedules=32,
                progress=False, engine="serial")
    assert v.failure is None, v.text()


def test_swarm_variants_stay_within_the_scenarios_size():
    cfg = workbench.load_scenario("malicious-accept-small")
    sets = guided.swarm_sets(cfg, 0, 3)
    assert sets[0] == {} and len(sets) == 4 and len({str(s) for s in sets}) == 4
    for s in sets[1:]:
        v = workbench.load_scenario("malicious-accept-small", s)
        assert 2 <= v.n_vcpus <= cfg.n_vcpus and v.memory_mb == cfg.memory_mb
        for g, g0 in zip(v.vcpus, cfg.vcpus):
            assert g.count <= g0.count and g.range_kb <= g0.range_kb


def test_a_counterexample_found_on_a_swarm_variant_replays_bit_for_bit(tmp_path):
    m = _mutant("zap-busy-fatal")
    v = explore(m.scenario, m.policy, strategy="guided", schedules=64, seed=1,
                oracles=m.oracles, shrink_seconds=1e6, progress=False, engine="serial")
    assert v.failure
    p = save(tmp_path / "g.json", v.target, v.shrunk)
    o, same = replay(p)
    assert same and o.failure == v.shrunk.failure


def test_small_scenarios_reach_three_busy_in_one_zap_fault_and_accept():
    """The coverage report's numbers: retrying policies meet the same held lock at least
    three times in one zap and one fault (zero-step-small) and one ACCEPT
    (malicious-accept-small)."""
    v = explore("zero-step-small", "blind-retry-all", strategy="guided", schedules=48,
                oracles=["vm_bugged"], shrink=False, progress=False, engine="serial")
    deep = reach.deepest(v.reached)
    assert deep["zap"] >= 3 and deep["fault"] >= 3, deep
    v = explore("malicious-accept-small", "host-priority-retry", strategy="guided",
                schedules=16, oracles=["vm_bugged"], shrink=False, progress=False,
                engine="serial")
    assert reach.deepest(v.reached)["accept"] >= 3
    text = reach.coverage_report(v.reached, "malicious-accept-small", "host-priority-retry",
                                 seeds=(0,))
    assert "against 1 ordinary runs of malicious-accept" in text
    assert "TDG.MEM.PAGE.ACCEPT" in text and "states:" in text


def test_a_busy_in_the_trace_names_the_holder_and_how_long_it_held_the_lock():
    t = make_target("malicious-accept-small", "patch-09-21", oracles=["vm_bugged"])
    o = next(o for o in (run_schedule(t, random_source(s), keep=True) for s in range(40))
             if o.failure)
    busy = [r for r in trace_rows(o) if r[6] == "OPERAND_BUSY" and r[3].startswith("TDH")]
    assert busy and busy[-1][8].startswith("vcpu1 TDG.MEM.PAGE.ACCEPT, under way ")
    held_us = float(busy[-1][8].split(" under way ")[1].split()[0])
    assert 0.0 < held_us < 5.0


def test_the_shrunk_patch_09_21_counterexample_is_at_most_half_its_found_length():
    """The failing schedule explore picks (the shortest of its failures), shrunk within a
    run budget of 150, no wall clock: at most half as many choices."""
    t = make_target("malicious-accept-small", "patch-09-21", oracles=["vm_bugged"])
    v = explore(t.cfg, "patch-09-21", schedules=64, oracles=["vm_bugged"], shrink=False,
                progress=False, engine="serial")
    assert v.failure and v.failure[0] == "vm_bugged"
    s, runs = shrink_choices(t, v.choices, "vm_bugged", max_seconds=1e6, max_runs=150)
    assert s.failure[0] == "vm_bugged" and runs <= 151
    assert 2 * len(s.choices) <= len(v.choices), (len(v.choices), len(s.choices))
    again = run_schedule(t, prefix_source(s.choices))
    assert again.failure == s.failure


def test_explore_mutants_and_coverage_on_the_command_line(capsys):
    assert main(["explore", "malicious-accept-small", "--policy", "host-priority-retry",
                 "--strategy", "guided", "--schedules", "8", "--engine", "serial",
                 "--oracle", "vm_bugged", "--coverage"]) == 0
    out = capsys.readouterr().out
    assert "coverage: states (call x status x retry)" in out and "full-size" in out
    assert main(["explore"]) == 2
    assert "name a scenario" in capsys.readouterr().err


def test_an_invariant_is_checked_as_the_run_goes_and_names_the_call_that_broke_it(monkeypatch):
    """A planted model bug: the TD epoch lock grants every try, so a TRACK (exclusive)
    and a VP.ENTER (shared) hold it together; the oracle names the module call after
    which the invariant first failed, not only the end of the run."""
    from workbench.core.tdx_errno import TDX_SUCCESS
    from workbench.model.locks import Mode, SharexLock

    def grant_all(self, owner, mode=Mode.EXCLUSIVE, side=None):
        if mode is Mode.EXCLUSIVE:
            self.exclusive_owner = owner
        else:
            self.shared_owners[owner] = self.shared_owners.get(owner, 0) + 1
        return TDX_SUCCESS

    def release_any(self, owner, mode=Mode.EXCLUSIVE):
        if mode is Mode.EXCLUSIVE:
            self.exclusive_owner = None
        elif self.shared_owners.get(owner, 0) > 1:
            self.shared_owners[owner] -= 1
        else:
            self.shared_owners.pop(owner, None)

    monkeypatch.setattr(SharexLock, "try_acquire", grant_all)
    monkeypatch.setattr(SharexLock, "release", release_any)
    t = make_target("conversion-storm-small", "upstream", oracles=["invariants"])
    broken = [o for o in (run_schedule(t, random_source(s)) for s in range(16)) if o.failure]
    assert broken
    why = broken[0].failure[1]
    assert "exclusive" in why and "shared holders together" in why
    step = int(why.split("broken after module call ")[1].split(",")[0])
    assert 1 <= step < broken[0].steps


def test_the_td_itself_is_shrunk_and_still_fails_the_same_way():
    """Delta debugging over the scenario: fewer vCPUs or pages per conversion, each kept
    only if the same choices still fail the same oracle."""
    from workbench.racefinder.explore import _sizes
    from workbench.racefinder.shrink import shrink_scenario
    m = _mutant("zap-kick-on-entry-only")
    t = make_target(m.scenario, m.policy, oracles=["vm_bugged"])
    o = next(o for o in (run_schedule(t, random_source(s)) for s in range(40)) if o.failure)
    small, chs, kept, runs = shrink_scenario(t, o.choices, "vm_bugged", max_seconds=1e6,
                                             max_runs=12)
    assert kept and runs <= 12
    before, after = _sizes(t.cfg), _sizes(small.cfg)
    assert after != before and all(a <= b for a, b in zip(after, before))
    again = run_schedule(small, prefix_source(chs))
    assert again.failure and again.failure[0] == "vm_bugged"
