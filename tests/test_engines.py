"""Sweeps and the engines replications run on: the same seed gives the same tables on
every engine."""
import pandas as pd
import pytest

import workbench
from workbench.core.config import ConfigError
from workbench.experiments.engines import map_jobs

SHORT = ["horizon_us=1500"]


@pytest.mark.parametrize("engine", ["processes", "dask"])
def test_every_engine_gives_the_serial_tables(engine):
    kw = dict(reps=2, seed=4, sets=SHORT)
    serial = workbench.compare("malicious-accept", ["upstream", "zero-tolerance"], **kw)
    other = workbench.compare("malicious-accept", ["upstream", "zero-tolerance"], **kw,
                              engine=engine, workers=2)
    pd.testing.assert_frame_equal(serial.summary, other.summary)
    pd.testing.assert_frame_equal(serial.ops, other.ops)


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(ConfigError, match="engine must be one of"):
        map_jobs(abs, [1, 2], engine="threads")


def test_sweep_has_one_table_row_per_value_and_policy():
    c = workbench.sweep("scale", "vcpus.1.count", [3, 7], ["upstream", "vm-spinlock"], reps=2,
                        seed=1, sets=SHORT)
    t = c.table
    assert list(zip(t["value"], t["policy"])) == [(3, "upstream"), (3, "vm-spinlock"),
                                                  (7, "upstream"), (7, "vm-spinlock")]
    assert (t["reps"] == 2).all() and set(c.summary["param"]) == {"vcpus.1.count"}
    assert set(c.summary.loc[c.summary["value"] == 7, "vcpus"]) == {8}
    assert {"value", "policy", "op", "pooled_p99_us"} <= set(c.latency.columns)


def test_sweep_with_a_bad_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="vcpus.1.count"):
        workbench.sweep("scale", "vcpus.1.count", [3, 0], ["upstream"], reps=1, sets=SHORT)


def test_workers_alone_mean_a_process_pool_and_bad_workers_are_refused():
    with pytest.raises(ConfigError, match="workers must be"):
        map_jobs(abs, [1, 2], workers=0)
    assert map_jobs(abs, [-1, -2, -3], workers=2) == [1, 2, 3]


def test_a_comparison_round_trips_through_its_folder(tmp_path):
    c = workbench.sweep("scale", "vcpus.1.count", [3], ["upstream"], reps=1, sets=SHORT)
    back = workbench.Comparison.load(c.save(tmp_path / "s"))
    pd.testing.assert_frame_equal(back.table, c.table)
    assert back.param == "vcpus.1.count"


def test_dask_starts_one_cluster_per_session_and_closes_it():
    from workbench.experiments import engines
    assert map_jobs(abs, [-1, -2, -3], engine="dask", workers=2) == [1, 2, 3]
    first = engines._SESSION["client"]
    assert map_jobs(abs, [-4, -5], engine="dask", workers=2) == [4, 5]
    assert engines._SESSION["client"] is first        # reused, not started again
    engines.close_session_cluster()
    assert "client" not in engines._SESSION and first.status != "running"
