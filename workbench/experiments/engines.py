"""Layer 6: where replications run. ``serial`` in this process; ``processes`` on a local
process pool; ``dask`` on a Dask cluster (a LocalCluster of single-threaded worker processes,
started once and reused for the whole session, unless you pass your own ``client``, e.g.
one connected to a cluster of many machines).

SimPy is GIL-bound, so threads do not help: every engine uses processes. A job must pickle;
policies pickle by registered name, so a policy of your own must be importable by the
workers (define it in a module; the CLI's ``--import``).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..core.config import ConfigError

ENGINES = ("serial", "processes", "dask")


def map_jobs(fn, jobs: list, engine: str | None = None, workers: int | None = None,
             client=None) -> list:
    """``[fn(j) for j in jobs]``, in order, on the chosen engine (default: ``processes``
    when more than one worker is asked for, else ``serial``)."""
    engine, n = _check(engine, workers)
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
    c = client if client is not None else session_client(n)
    # pure=False: equal arguments must still run (every job carries its replication)
    return c.gather(c.map(fn, jobs, pure=False))


# -- one LocalCluster per session ---------------------------------------------------------
_SESSION: dict = {}      # {"n": workers, "cluster": LocalCluster, "client": Client}


def session_client(n: int):
    """The session's Dask client on a LocalCluster of ``n`` single-threaded worker
    processes, started on first use and reused by every later call (a cluster takes 1-2 s
    to start); closed at interpreter exit or by :func:`close_session_cluster`. Asking for
    another number of workers replaces it."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("engine 'dask' needs the dist extra: pip install -e '.[dist]'") from None
    c = _SESSION.get("client")
    if c is not None and _SESSION["n"] == n and c.status == "running":
        return c
    close_session_cluster()
    import dask
    # Linux: fork the workers (as the processes engine's pool does), so that they start
    # with this process's imports: 0.1 s instead of about 1 s for spawn's fresh
    # interpreters, each importing workbench, numpy and pandas again
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    _SESSION.update(n=n, cluster=cluster, client=Client(cluster))
    if not _SESSION.get("atexit"):
        import atexit
        atexit.register(close_session_cluster)
        _SESSION["atexit"] = True
    return _SESSION["client"]


def close_session_cluster() -> None:
    """Close the session's Dask client and cluster, if one was started."""
    c, cluster = _SESSION.pop("client", None), _SESSION.pop("cluster", None)
    for x in (c, cluster):
        if x is not None:
            try:
                x.close()
            except Exception:  # noqa: BLE001  (a cluster already gone at exit)
                pass


# -- runs as they finish (the results store writes each one at once) ---------------------
def default_engine() -> tuple[str, int | None]:
    """What batch work (experiment files, ``run_experiment``, ``make paper``, ``make
    findings``) runs on unless told otherwise: a process pool of one worker per core
    (serial on one core). Results are the same on every engine."""
    cpus = os.cpu_count() or 1
    return ("processes", cpus) if cpus > 1 else ("serial", None)


def _check(engine, workers) -> tuple[str, int]:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"workers must be a whole number >= 1, not {workers!r}")
    engine = engine or ("processes" if (workers or 1) > 1 else "serial")
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    cpus = os.cpu_count() or 1
    if workers and workers > cpus and engine != "serial":
        warnings.warn(f"--workers {workers} is more than the {cpus} CPUs of this machine: "
                      "the runs will not go faster (SimPy uses one CPU per run)",
                      stacklevel=3)
    return engine, workers or cpus


def imap_jobs(fn, jobs: list, engine: str | None = None, workers: int | None = None,
              client=None):
    """Yield ``(index, fn(jobs[index]))`` as each job finishes, on the chosen engine. Pool
    workers end themselves when this process dies (even by SIGKILL)."""
    engine, n = _check(engine, workers)
    if engine == "serial" or len(jobs) <= 1:
        for i, j in enumerate(jobs):
            yield i, fn(j)
        return
    if engine == "processes":
        with ProcessPoolExecutor(min(n, len(jobs)), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(fn, j): i for i, j in enumerate(jobs)}
            try:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in sorted(done, key=futures.get):
                        yield futures[f], f.result()
            except BaseException:   # Ctrl-C, an error, or the caller stopped: end now
                _stop(pool)
                raise
        return
    yield from _dask_iter(fn, jobs, n, client)


def die_with_parent(parent: int) -> None:
    """Process-pool initializer: end this worker when its parent is gone. Linux delivers
    SIGKILL at once (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread polls the parent."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _dask_iter(fn, jobs, n, client):
    try:
        from dask.distributed import as_completed
    except ImportError:
        raise ConfigError("engine 'dask' needs the dist extra: pip install -e '.[dist]'") from None

    def run(c):
        # pure=False: equal arguments must still run (every job carries its replication)
        futures = c.map(fn, jobs, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for f in as_completed(futures):
            yield index[f.key], f.result()
    yield from run(client if client is not None else session_client(n))
