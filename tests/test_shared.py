"""The host's shared resources (workbench/model/shared.py): all off is the model as it was
before them; a hot line is a queue that saturates where k*s reaches T; each switch matters
at 32 vCPUs and hardly at 1."""
import math
from pathlib import Path

import numpy as np
import pytest
import simpy

import workbench
from workbench.core.config import ModuleOptions
from workbench.core.errors import ConfigError
from workbench.model.shared import HOT_LINES, MECHANISMS, Server

DATA = Path(__file__).parent / "data"


# All off is the model before them: tests/test_golden.py (shared.off=all, every scenario).
def _closed_loop(k: int, s: float, period: float, horizon: float = 20_000.0, seed: int = 0):
    """k CPUs, each: one access to the line, then on average ``period`` of its own work
    (exponential). Returns (accesses per us, mean wait per access in us)."""
    env, line = simpy.Environment(), Server("line", s)
    rng = np.random.default_rng(seed)

    def cpu(i):
        yield env.timeout(rng.random() * period)
        while True:
            delay, _ = line.access(env.now, i)
            yield env.timeout(delay)
            yield env.timeout(rng.exponential(period))

    for i in range(k):
        env.process(cpu(i))
    env.run(until=horizon)
    return line.uses / horizon, line.wait_us / max(1, line.uses)


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16, 32, 64, 128])
def test_a_hot_line_saturates_where_k_times_s_reaches_t(k):
    s, period = 0.15, 10.0
    rate, wait = _closed_loop(k, s, period)
    # asymptotic bounds of a closed queue: X <= k / (T + s) and X <= 1 / s
    bound = min(k / (period + s), 1.0 / s)
    assert rate <= bound * 1.05
    rho = k * s / period
    if rho <= 0.3:      # far from saturation: throughput near k/(T+s), wait near M/D/1's
        assert rate >= k / (period + s) * 0.93
        md1 = rho * s / (2 * (1 - rho))
        assert wait <= 1.5 * md1 + 1e-9
    if rho >= 2.0:      # saturated: the line is busy all the time, waits grow with k
        assert rate * s >= 0.97
        assert wait >= (k * s - period) * 0.8


def test_a_line_used_by_one_cpu_stays_in_its_cache():
    line = Server("line", 0.15, affinity=True)
    assert line.access(0.0, "a") == (0.15, 0.0)     # first use: a transfer
    assert line.access(1.0, "a") == (0.0, 0.0)      # still in a's cache
    assert line.access(1.0, "b")[0] == pytest.approx(0.15)
    assert line.access(1.0, "a")[0] == pytest.approx(0.30)   # queued behind b's transfer


SMALL = {"memory_mb": 64, "horizon_us": 2000, "shared.idle_share": 0.5}


def _throughput(n, off=()):
    sets = {**SMALL, "vcpus.0.count": n, **{f"shared.{m}": False for m in off}}
    return workbench.run("lazy-accept-boot", seed=2, sets=sets).summary.iloc[0][
        "accept_throughput_per_ms"]


@pytest.fixture(scope="module")
def all_on():
    return {n: _throughput(n) for n in (1, 32)}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_switch_bends_32_vcpus_and_leaves_1_vcpu(all_on, mechanism):
    assert _throughput(32, [mechanism]) != all_on[32]
    assert _throughput(1, [mechanism]) == pytest.approx(all_on[1], rel=0.03)


def test_the_time_lost_shows_in_the_breakdown_and_the_report():
    r = workbench.run("lazy-accept-boot", seed=2, sets={**SMALL, "vcpus.0.count": 8})
    s, v = r.summary.iloc[0], r.vcpus
    assert s["hot_line_us"] > 0 and math.isclose(
        s["hot_line_us"], sum(s[f"hot_line_{n}_us"] for n in HOT_LINES))
    # booked = spent, except the waits still running at the horizon (a vCPU that pays
    # its releases' transfers then is in state hot_line past the end)
    in_flight = s["hot_line_us"] - v["hot_line_us"].sum()
    assert -1e-6 <= in_flight <= 0.01 * s["hot_line_us"]
    assert (v.loc[v["role"] == "idle", "halted_us"] > 0).all()
    assert (v["role"] == "idle").sum() == 8                 # share 0.5 beside 8 busy
    from workbench.cli.runs import run_report
    assert "hot lock lines" in run_report(r) and "halted" in run_report(r)


def test_a_bad_share_is_one_line():
    with pytest.raises(ConfigError, match="idle_share"):
        workbench.run("lazy-accept-boot", sets={"shared.idle_share": 2})


def test_the_scaling_experiments_turn_each_mechanism_off_in_turn():
    from workbench.experiments.designs import load_experiment, points
    for name, counts in (("lazy-accept-scaling", "vcpus.0.count"), ("scale-shared", "vcpus.1.count")):
        exp = load_experiment(name)
        assert exp.factors[counts] == [1, 2, 4, 8, 16, 32, 64]
        assert set(exp.factors["shared.off"]) == {"none", "all", *MECHANISMS}
        assert len(points(exp)) == np.prod([len(v) for v in exp.factors.values()])


# ------------------------------------------------------------------------ the per-call table
DOC = Path(__file__).resolve().parent.parent / "docs" / "model.md"
_ABBREV = {"T3": "PAMT_1G[TDR] PAMT_2M[TDR] TDR", "T3r": "TDR PAMT_2M[TDR] PAMT_1G[TDR]",
           "P": "pamt[1G] pamt[2M]", "Pr": "pamt[2M] pamt[1G]"}


def _doc_words() -> dict:
    """docs/model.md §10.1's table: call -> (acquisitions, after), abbreviations expanded,
    the bracketed zero-step words kept with their brackets."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 4 and cells[0].lstrip("| ").startswith("TDH."):
            before, after = cells[1].split("\\|")
            words = [" ".join(_ABBREV.get(w, w) for w in part.split()).split()
                     for part in (before, after)]
            rows[cells[0].lstrip("| ")] = (words[0], [w for w in words[1] if w != "(TD"
                                                      and w != "exit)"])
    return rows


def _booked(monkeypatch, drive, **opts):
    """The names of the hot lines ``drive(env, m, log)`` books, in order (a 2 MB or 1 GB
    range's PAMT line without its range)."""
    from tests.test_module import CAL0, make
    from workbench.core.config import SharedOptions
    from workbench.model.shared import SharedResources
    log = []
    real = Server.access

    def access(self, now, cpu, service_us=None):
        name = self.name.split(":")[0] + "]" if self.name.startswith("pamt[") else self.name
        log.append(name)
        return real(self, now, cpu, service_us)
    monkeypatch.setattr(Server, "access", access)
    env, rec, m = make(ModuleOptions(version="1.5.28", **opts))
    m.attach_hot(SharedResources(env, CAL0, SharedOptions()))
    drive(env, m, log)
    return log


def test_each_call_books_the_shared_words_of_the_docs_table_in_order(monkeypatch):
    """The model's hot lines per call, in order, as docs/model.md §10.1 lists them from the
    source (a change to either must change the other)."""
    from tests.test_module import G, REGION, RIP, arm, call, leaf, run_gen, tables
    from workbench.model.sept import LEVEL_2M, State
    doc = _doc_words()
    assert set(doc) == {"TDH.MEM.SEPT.ADD", "TDH.MEM.PAGE.AUG", "TDH.MEM.RANGE.BLOCK",
                        "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE", "TDH.VP.ENTER",
                        "TDH.MEM.PAGE.DEMOTE", "TDH.PHYMEM.PAMT.ADD"}

    def check(leaf_name, setup, make_call, armed=False, **opts):
        def drive(env, m, log):
            setup(env, m)
            env.run()
            log.clear()
            st = run_gen(env, make_call(env, m))
            assert (st[0] if isinstance(st, tuple) else st) == 0, leaf_name
        got = _booked(monkeypatch, drive, **opts)
        before, after = doc[leaf_name]
        expected = [w.strip("[]") if w.startswith("[") and armed else w
                    for w in before + after
                    if not (w.startswith("[SEPT") and not armed)]
        assert got == expected, (leaf_name, got, expected)

    nothing = lambda env, m: None                                            # noqa: E731
    check("TDH.MEM.SEPT.ADD", lambda env, m: tables(m, G, LEVEL_2M + 1),
          lambda env, m: m.tdh_mem_sept_add("h", G, LEVEL_2M))
    check("TDH.MEM.PAGE.AUG", lambda env, m: tables(m, G),
          lambda env, m: m.tdh_mem_page_aug("h", G))
    check("TDH.MEM.RANGE.BLOCK", lambda env, m: leaf(m, G, State.MAPPED),
          lambda env, m: m.tdh_mem_range_block("h", G))
    check("TDH.MEM.TRACK", nothing, lambda env, m: m.tdh_mem_track("h"))

    def blocked_tracked(env, m):
        leaf(m, G, State.MAPPED)
        call(env, 0.0, m.tdh_mem_range_block("h", G))
        call(env, 5.0, m.tdh_mem_track("h"))
    check("TDH.MEM.PAGE.REMOVE", blocked_tracked, lambda env, m: m.tdh_mem_page_remove("h", G))

    def blocked_tracked_2m(env, m):
        leaf(m, REGION, State.MAPPED, LEVEL_2M)
        call(env, 0.0, m.tdh_mem_range_block("h", REGION, LEVEL_2M))
        call(env, 5.0, m.tdh_mem_track("h"))
    check("TDH.MEM.PAGE.DEMOTE", blocked_tracked_2m,
          lambda env, m: m.tdh_mem_page_demote("h", REGION))

    def enter_and_exit(env, m):
        v = m.vcpus["v0"]
        st = yield from m.tdh_vp_enter(v, RIP)
        yield from m.td_exit(v, RIP)
        return st
    check("TDH.VP.ENTER", lambda env, m: m.add_vcpu("v0"), enter_and_exit)

    def armed_vcpu(env, m):
        v = m.add_vcpu("v0")
        gpas = [0x4000_0000 + k * 0x1000 for k in range(7)]
        run_gen(env, arm(m, v, gpas))
        assert v.epf_gpas
        leaf(m, gpas[6], State.MAPPED)          # mapped now: the entry goes through
    check("TDH.VP.ENTER", armed_vcpu, enter_and_exit, armed=True)
    check("TDH.PHYMEM.PAMT.ADD", nothing, lambda env, m: m.tdh_phymem_pamt_add("h", G),
          dynamic_pamt=True)
