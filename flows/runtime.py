"""Process set-up for running flows: settings, and Prefect's embedded server.

Without ``PREFECT_API_URL`` Prefect starts a temporary server per process on
the SQLite database in ``PREFECT_HOME``. Several ``pmodel run`` processes
starting at once on a fresh database race on its migrations and time out,
so the embedded server is started under a file lock, one process at a time,
and a watchdog ends it when this process dies without cleaning up (kill -9).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pmodel import paths

EMBEDDED_STARTUP_TIMEOUT_S = 120


def configure_runtime() -> None:
    """Settings for Prefect and MLflow before either is imported: no analytics,
    results and caches in the project (not in whoever's current directory)."""
    root = paths.project_root()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(root / ".cache" / "prefect-results"))
    os.environ.setdefault("DO_NOT_TRACK", "1")


def start_embedded_prefect() -> str | None:
    """Start Prefect's temporary server now (serialised across processes) unless
    an API URL is set; returns the API URL in use, or None for a configured one."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".pmodel-embedded-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = SubprocessASGIServer()  # the per-process singleton the flow's client will use
        server.start(timeout=EMBEDDED_STARTUP_TIMEOUT_S)
    _guard_once(server.server_process)
    return server.api_url


_guarded: set[int] = set()


def _guard_once(process) -> None:
    """The server dies with this process, kill -9 included (flows/watchdog.py)."""
    from flows import watchdog

    if process is not None and process.pid not in _guarded:
        _guarded.add(process.pid)
        watchdog.guard(process.pid)


def warm_up(dataset_kinds: set[str]) -> "threading.Thread":
    """Import and load, in a background thread, what the flow will need
    (Great Expectations, MLflow, the land mask, the avatar renders), so that
    it overlaps with the start of Prefect's server instead of following it."""
    import threading

    def work():
        try:
            import great_expectations  # noqa: F401  (about 4 s)
            import mlflow  # noqa: F401  (about 1.5 s)

            from pmodel.datasets.registry import truth_of

            for name in dataset_kinds:  # the land mask: about 4.5 s
                if name:
                    truth_of(name)
        except Exception:  # a warm-up only: the flow reports real errors itself
            pass

    thread = threading.Thread(target=work, name="pmodel-warm-up", daemon=True)
    thread.start()
    return thread



def write_problems(config, tracking_uri: str | None) -> list[str]:
    """The places a run must write and cannot, each with its path (checked before
    Prefect starts): the MLflow store, the work folder ``.cache/``, the reports
    folder, and ``data/`` only when the built-in datasets must still be built
    (built data is only read)."""
    from pmodel.datasets.build import built_dir
    from tasks import tracking

    problems = tracking.store_write_problems(tracking.resolve_tracking_uri(tracking_uri))
    root = paths.project_root()
    for folder, what in ((root / ".cache", "the work folder (Prefect results, models, samples)"),
                         (paths.reports_dir(), "the reports folder")):
        blocked = paths.unwritable(folder)
        if blocked is not None:
            problems.append(f"{what} {folder} is not writable ({blocked} is read-only for this user)")
    if any(built_dir(build, builtins) is None for build, builtins, _ in config.builtin_builds()):
        blocked = paths.unwritable(paths.data_dir() / "builds")
        if blocked is not None:
            problems.append(f"the data folder {paths.data_dir()} is not writable ({blocked} is "
                            "read-only for this user) and the built-in datasets must be built there")
    return problems
