"""Process set-up for running flows: settings, and Prefect's embedded server.

Without ``PREFECT_API_URL`` Prefect starts a temporary server per process on
the SQLite database in ``PREFECT_HOME``. pmodel starts that server itself
(:class:`EmbeddedServer`, the same command Prefect runs) first thing in a
run, so it starts while the run imports and validates. Several ``pmodel run``
processes starting at once on a fresh database race on its migrations and
time out, so the embedded server is started under a file lock, one process at
a time, and a watchdog ends it when this process dies without cleaning up
(kill -9).
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from pmodel import paths

EMBEDDED_STARTUP_TIMEOUT_S = 120


def experiments_dir() -> Path:
    """experiments/ of the project; falls back to the checkout's when $PMODEL_HOME has none."""
    home = paths.project_root() / "experiments"
    if home.is_dir():
        return home
    return Path(__file__).resolve().parents[1] / "experiments"


def configure_runtime() -> None:
    """Settings for Prefect and MLflow before either is imported: no analytics,
    results and caches in the project (not in whoever's current directory)."""
    root = paths.project_root()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(root / ".cache" / "prefect-results"))
    os.environ.setdefault("DO_NOT_TRACK", "1")


#: Where ``prefect server start`` listens by default.
LOCAL_SERVER_API = "http://127.0.0.1:4200/api"


def reuse_local_server(api: str = LOCAL_SERVER_API, timeout_s: float = 0.5) -> str | None:
    """Point this process at a Prefect server already running on this machine
    (``prefect server start``), instead of starting a temporary one: sets
    ``PREFECT_API_URL`` and returns the URL, or None when no server answers or
    ``PREFECT_API_URL`` is already set, or ``PMODEL_TEMPORARY_PREFECT=1`` asks for
    the temporary server. Call before Prefect is imported (its settings are read
    then)."""
    if os.environ.get("PREFECT_API_URL") or os.environ.get("PMODEL_TEMPORARY_PREFECT") == "1":
        return None
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api}/health", timeout=timeout_s) as response:
            healthy = response.status == 200 and json.loads(response.read() or b"false") is True
    except (OSError, ValueError):
        return None
    if not healthy:
        return None
    os.environ["PREFECT_API_URL"] = api
    return api


class EmbeddedServer:
    """Prefect's temporary server for this process, started the way Prefect starts it
    (``SubprocessASGIServer``: uvicorn serving ``prefect.server.api.server:create_app`` on
    127.0.0.1 with the UI off and Prefect's ephemeral-server flags), but launched by pmodel
    at the very start of a run, without importing Prefect's server app into this process
    (2 s), so that it starts while the run imports and validates. Once Prefect is imported
    (and has read its profile: a server configured there wins, and this one is stopped),
    the run points ``PREFECT_API_URL`` at it; the flow's client, its events and logs, and
    local Dask workers all use it. It ends with this process: at exit, or through the
    watchdog when this process is killed."""

    PORTS = range(8000, 9000)  # Prefect's own range for its temporary servers

    def __init__(self):
        import random

        self._random = random.Random()  # not the run's generators: ports are not results
        self.process = None
        self.port = None
        self._lock = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def spawn(self) -> None:
        """Start the server process (under a file lock that :meth:`wait_ready` releases: several
        runs starting on a fresh database would race on its migrations)."""
        import atexit
        import socket
        import subprocess

        if self._lock is None:
            home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
            home.mkdir(parents=True, exist_ok=True)
            self._lock = open(home / ".pmodel-embedded-server.lock", "w")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        for _ in range(50):
            port = self._random.choice(self.PORTS)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            break
        self.port = port
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(self.command(port), env=env)
        _guard_once(self.process)
        # registered before Prefect's log and event workers register their drains, so it
        # runs after them (atexit is last in, first out)
        atexit.register(self.stop)

    @staticmethod
    def command(port: int) -> list[str]:
        """What Prefect's ``SubprocessASGIServer`` runs (its UI off through the environment)."""
        return [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]

    def wait_ready(self, timeout_s: float = EMBEDDED_STARTUP_TIMEOUT_S) -> str:
        """Wait until the server answers its health check; returns its API URL. A server that
        lost its port to another process is started again on another one."""
        import time
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout_s
        restarts = 0
        try:
            while True:
                code = self.process.poll()
                if code is not None:  # exited: most likely the port was taken meanwhile
                    if restarts == 3 or time.monotonic() > deadline:
                        raise RuntimeError(f"Prefect's temporary server exited with code {code} "
                                           f"({restarts + 1} tries; its messages are above)")
                    restarts += 1
                    self.spawn()
                    continue
                try:
                    with urllib.request.urlopen(f"{self.api_url}/health", timeout=1) as response:
                        if response.status == 200:
                            return self.api_url
                except (OSError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Prefect's temporary server did not answer within "
                                       f"{timeout_s:.0f} s on {self.api_url}")
                time.sleep(0.05)
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the lock
                self._lock = None

    def stop(self) -> None:
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_embedded: EmbeddedServer | None = None


def spawn_embedded_prefect() -> EmbeddedServer | None:
    """Start Prefect's temporary server now, without waiting for it, unless an API URL is
    set (``PREFECT_API_URL``, e.g. by :func:`reuse_local_server`); best called before
    Prefect is imported. Returns the server (``wait_ready()`` before the first flow, and
    point ``PREFECT_API_URL`` at it), or None."""
    global _embedded
    if _embedded is not None:
        return _embedded
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return None
    elif os.environ.get("PREFECT_API_URL"):
        return None
    _embedded = EmbeddedServer()
    _embedded.spawn()
    return _embedded


def start_embedded_prefect() -> str | None:
    """Start Prefect's temporary server now (serialised across processes) unless an API URL
    is set; returns the API URL of the temporary server, or None for a configured one.
    When Prefect was imported before, call it under ``temporary_settings({PREFECT_API_URL:
    url})`` (Prefect read its settings then)."""
    server = spawn_embedded_prefect()
    if server is None:
        return None
    url = server.wait_ready()
    os.environ["PREFECT_API_URL"] = url  # for processes started from here on (Dask workers)
    return url


_guarded: set[int] = set()


def _guard_once(process) -> None:
    """The server dies with this process, kill -9 included (flows/watchdog.py)."""
    from flows import watchdog

    if process is not None and process.pid not in _guarded:
        _guarded.add(process.pid)
        watchdog.guard(process.pid)


def warm_up(dataset_kinds: set[str], *, refresh: bool = False) -> "threading.Thread":
    """Import and load, in a background thread, what the flow will need, so that it
    overlaps with the start of Prefect's server instead of following it: MLflow always
    (about 1.5 s); with ``refresh`` (every step recomputed) also Great Expectations (about
    2.5 s) and the datasets' truths (the land mask: about 3 s). Without ``refresh`` most
    steps are usually cached, and loading those speculatively would only slow this process
    down; a step that needs them loads them itself."""
    import threading

    def work():
        try:
            import mlflow  # noqa: F401

            if not refresh:
                return
            import great_expectations  # noqa: F401

            from pmodel.datasets.registry import truth_of

            for name in dataset_kinds:
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
