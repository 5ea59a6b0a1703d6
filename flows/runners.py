"""Where the flow's tasks run: threads in this process, or a Dask cluster.

``threads`` (the default) runs the (dataset, family) tasks on Prefect's
thread pool in the ``pmodel run`` process. ``dask`` runs them on a Dask
cluster through ``prefect-dask``: the scheduler at ``dask_address`` when
given (an existing cluster, e.g. ``tcp://10.0.0.5:8786``), else a local
cluster started for the flow run (``n_workers`` processes with one thread
each) and torn down after it.

Prefect's server and Dask workers
---------------------------------
Every task run reports its state to the Prefect API *from the process that
runs it*. With ``PREFECT_API_URL`` unset, Prefect's client starts a
temporary ("embedded") server in whichever process first needs one, so each
Dask worker process would start its own server (measured: 2 extra servers,
about 7 s each, on the same SQLite file, racing on its migrations when it is
fresh). prefect-dask sends the flow's *settings* with every task
(``prefect.context.serialize_context``), so a worker uses the API URL the
flow process had when it submitted the task - but none at all in embedded
mode, where the flow's own URL is unset.

Hence :func:`runner_session`:

- a real server configured (``PREFECT_API_URL`` set, e.g. after
  ``prefect server start --background``; also under Prefect's test harness):
  nothing to do, the workers use it.
- embedded mode, local cluster: *allowed, with a warning*. The temporary
  server is started in this process first and ``PREFECT_API_URL`` pointed
  at it (in Prefect's settings, which travel with each task, and in the
  workers' environment), so the workers, which run on this machine, report
  to it: one server, no per-worker servers. Tried for real: the runs record
  the same scores as with threads. The warning says so, and how to start a
  real server.
- embedded mode, external cluster (``dask_address``): *refused*. Its
  workers may be on other machines, cannot reach a server bound to this
  machine's 127.0.0.1, and would otherwise each start their own; the
  message says to start a server and set ``PREFECT_API_URL``.

Same scores on every runner: Dask's nannies start workers with
OMP/MKL/OPENBLAS_NUM_THREADS=1 (distributed's ``pre-spawn-environ``), and on
threads scikit-learn's neighbour searches set BLAS to 1 thread process-wide
while they run, so no score may depend on BLAS's thread count (a long
``np.dot`` does: OpenBLAS splits the sum between its threads, and the last
bits change; pmodel.scores.kl_land must sum with np.sum).

Workers of a local cluster are processes spawned from this one: they
inherit its environment (``PMODEL_HOME``, ``PMODEL_CACHE_DIR``, Prefect's
settings), so they read and write the same work folder. The workers of an
external cluster must see the project folder at the same path (a shared
file system), with the same ``PMODEL_HOME``, and have pmodel installed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

RUNNERS = ("threads", "dask")
SERVER_HINT = ("start one with `prefect server start --background` and set "
               "PREFECT_API_URL=http://127.0.0.1:4200/api")  # where `prefect server start` listens


class RunnerError(ValueError):
    """A task runner setting that cannot work; the message says what to do."""


def _check_runner(runner: str, dask_address: str | None = None) -> None:
    if runner not in RUNNERS:
        raise RunnerError(f"unknown runner {runner!r}; choose one of: {', '.join(RUNNERS)}")
    if dask_address and runner != "dask":
        raise RunnerError(f"a Dask address ({dask_address}) needs the dask runner, not {runner!r}")


def make_task_runner(runner: str = "threads", dask_address: str | None = None, n_workers: int = 2,
                     worker_env: dict[str, str] | None = None):
    """A Prefect task runner: ``threads`` -> ThreadPoolTaskRunner; ``dask`` ->
    DaskTaskRunner on the scheduler at ``dask_address``, or on a local cluster of
    ``n_workers`` processes with one thread each (``worker_env`` set in them).

    Use it as ``run_experiment.with_options(task_runner=make_task_runner("dask"))``.
    Raises :class:`RunnerError` (a ValueError) naming the choices for an unknown runner.
    """
    _check_runner(runner, dask_address)
    if runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # an optional extra in some installs
        raise RunnerError("the dask runner needs prefect-dask: pip install 'prefect-dask>=0.3.7'") from exc
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    if n_workers < 1:
        raise RunnerError(f"a local Dask cluster needs at least 1 worker, not {n_workers}")
    cluster_kwargs = {"n_workers": n_workers, "threads_per_worker": 1, "processes": True}
    if worker_env:
        cluster_kwargs["env"] = dict(worker_env)  # distributed.Nanny sets these in each worker
    return DaskTaskRunner(cluster_kwargs=cluster_kwargs)


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_dask_with_server(runner: str, dask_address: str | None) -> str | None:
    """None, or a warning for ``dask`` without a configured Prefect server.

    No server configured means ``PREFECT_API_URL`` is empty: Prefect's
    temporary embedded server, which every Dask worker process would start for
    itself. A local cluster is then allowed with the warning returned
    (:func:`runner_session` points its workers at this process's temporary
    server); an external cluster by address is refused.

    Raises :class:`RunnerError` for an unknown runner, an address without
    ``dask``, and an address without a server (saying to start one and set
    PREFECT_API_URL).
    """
    _check_runner(runner, dask_address)
    if runner != "dask" or _api_url():
        return None
    if dask_address:
        raise RunnerError(
            f"the Dask cluster at {dask_address} needs a Prefect server that its workers can "
            "reach, and none is configured (PREFECT_API_URL is empty, so Prefect would use a "
            "temporary server inside this process, and every Dask worker would start its own). "
            f"To use that cluster, {SERVER_HINT} (when the workers are on other machines: "
            "`--host 0.0.0.0`, and this machine's address in place of 127.0.0.1), then run "
            "again; or leave out the address (--dask-address) to run on a local cluster.")
    return ("no Prefect server is configured (PREFECT_API_URL is empty): the local Dask workers "
            "will report to this run's temporary Prefect server, which stops when the run ends "
            "(without that, every Dask worker would start a temporary server of its own). To watch "
            f"runs live and to use a Dask cluster by address, {SERVER_HINT}.")


@contextlib.contextmanager
def quiet_dask_logging() -> Iterator[None]:
    """The scheduler's and nannies' INFO lines (about 35 a run) down to warnings."""
    import logging

    import distributed  # noqa: F401  (importing it sets its loggers' levels: first)

    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def runner_session(runner: str = "threads", dask_address: str | None = None, n_workers: int = 2,
                   warn: Callable[[str], None] | None = None) -> Iterator[object]:
    """Yield the task runner to run a flow with, set up for the Prefect server in use.

    For ``dask`` in embedded mode with a local cluster, starts the temporary
    server now (flows.runtime.start_embedded_prefect) and, while the block
    runs, points PREFECT_API_URL at it so that the workers report to it;
    ``warn`` gets the warning of :func:`check_dask_with_server`. Raises
    :class:`RunnerError` before starting anything when the setting cannot work.
    Dask's own INFO logging is quietened to warnings while the block runs.
    """
    message = check_dask_with_server(runner, dask_address)
    with contextlib.ExitStack() as stack:
        if runner == "dask":
            stack.enter_context(quiet_dask_logging())
        if message is None:
            yield make_task_runner(runner, dask_address, n_workers)
            return
        if warn is not None:
            warn(message)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.runtime import start_embedded_prefect

        url = start_embedded_prefect()
        if url is None:  # a URL was configured meanwhile: nothing to point
            yield make_task_runner(runner, dask_address, n_workers)
            return
        stack.enter_context(temporary_settings({PREFECT_API_URL: url}))
        yield make_task_runner(runner, dask_address, n_workers, worker_env={"PREFECT_API_URL": url})


def runner_from_env(environ: dict[str, str] | None = None):
    """The task runner named by PMODEL_RUNNER (default threads) and PMODEL_DASK_ADDRESS,
    for deployments, whose flow runs start from the flow's definition."""
    env = os.environ if environ is None else environ
    runner = env.get("PMODEL_RUNNER", "").strip() or "threads"
    address = env.get("PMODEL_DASK_ADDRESS", "").strip() or None
    try:
        return make_task_runner(runner, address,
                                n_workers=int(env.get("PMODEL_DASK_WORKERS", "").strip() or 2))
    except (RunnerError, ValueError) as exc:
        raise RunnerError(f"PMODEL_RUNNER / PMODEL_DASK_ADDRESS / PMODEL_DASK_WORKERS: {exc}") from None


def _env_task_runner_class():
    from prefect.task_runners import TaskRunner

    class EnvTaskRunner(TaskRunner):
        """A placeholder that becomes the runner PMODEL_RUNNER names when a flow run
        starts: Prefect calls ``duplicate()`` on the flow's runner at the start of every
        run, and this returns the real one, read from the environment then (not when
        the flow's module is imported)."""

        def duplicate(self):
            return runner_from_env()

        def submit(self, *args, **kwargs):  # never entered itself: duplicate() replaces it
            raise RuntimeError("EnvTaskRunner is resolved by duplicate() at flow start")

        def __eq__(self, other) -> bool:
            return type(other) is type(self)

    return EnvTaskRunner


def env_task_runner():
    """The flow's default task runner: resolved from PMODEL_RUNNER when each run starts."""
    return _env_task_runner_class()()
