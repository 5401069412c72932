"""Layer 6: where replications run. ``serial`` in this process; ``processes`` on a local
process pool; ``dask`` on a Dask cluster (a LocalCluster of single-threaded worker processes
unless you pass your own ``client``, e.g. one connected to a cluster of many machines).

SimPy is GIL-bound, so threads do not help: every engine uses processes. A job must pickle;
policies pickle by registered name, so a policy of your own must be importable by the
workers (define it in a module; the CLI's ``--import``).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

from .config import ConfigError

ENGINES = ("serial", "processes", "dask")


def map_jobs(fn, jobs: list, engine: str | None = None, workers: int | None = None,
             client=None) -> list:
    """``[fn(j) for j in jobs]``, in order, on the chosen engine (default: ``processes``
    when more than one worker is asked for, else ``serial``)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"workers must be a whole number >= 1, not {workers!r}")
    engine = engine or ("processes" if (workers or 1) > 1 else "serial")
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    n = workers or os.cpu_count() or 1
    if engine == "serial" or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    if engine == "processes":
        with ProcessPoolExecutor(min(n, len(jobs))) as pool:
            try:
                return list(pool.map(fn, jobs))
            except BaseException:           # Ctrl-C or an error: do not wait for the rest
                _stop(pool)
                raise
    return _dask(fn, jobs, n, client)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (exiting the ``with`` would wait
    for every running job)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()


def _dask(fn, jobs, n, client):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("engine 'dask' needs the dist extra: pip install -e '.[dist]'") from None
    if client is not None:
        # pure=False: equal arguments must still run (every job carries its replication)
        return client.gather(client.map(fn, jobs, pure=False))
    with LocalCluster(n_workers=min(n, len(jobs)), threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        return c.gather(c.map(fn, jobs, pure=False))
