"""``pmodel ui``: the MLflow UI on a local store, started, watched and stopped.

The MLflow server is not one process: ``mlflow server`` starts uvicorn, which
starts its workers (and, with job execution on, job consumers). So the server
runs in a process group of its own, and whatever way ``pmodel ui`` ends, that
group goes with it:

- Ctrl-C, SIGTERM or SIGHUP: ``pmodel ui`` stops the group (SIGTERM, then
  SIGKILL after a grace period) and exits;
- SIGKILL of ``pmodel ui`` itself, which it cannot catch: a small guard
  process holds the read end of a pipe whose write end only ``pmodel ui``
  holds; when the kernel closes it (the process is gone, however it died),
  the guard stops the group and exits.

The address is printed only once the server answers, and ``pmodel ui`` exits
1 with a clear message when the port is taken or the server dies on its way up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Callable

#: Seconds the server's process group gets to stop after SIGTERM before SIGKILL.
GRACE_SECONDS = 5.0

# The guard: wait for EOF on stdin (its parent is gone), then stop the group.
_GUARD = r"""
import os, signal, sys, time
pgid = int(sys.argv[1]); grace = float(sys.argv[2])
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
if alive():
    os.killpg(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    if alive():
        os.killpg(pgid, signal.SIGKILL)
"""


class PortTaken(RuntimeError):
    pass


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortTaken` when something already listens on ``host:port``.

    Binds with SO_REUSEADDR, as uvicorn does, so a port with only closed
    connections in TIME_WAIT counts as free, and a listening socket as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortTaken(f"port {port} on {host} is already in use ({exc.strerror}): "
                            f"stop what serves it, or choose another with --port") from exc


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_group(server: subprocess.Popen, grace: float = GRACE_SECONDS) -> str:
    """SIGTERM the server's process group, then SIGKILL what is left after ``grace`` seconds.

    Returns ``"terminated"`` when the group ended within the grace, else ``"killed"``. The
    server (the group's leader) is reaped while waiting: until it is, its zombie still
    counts as a member of the group, and the wait would always last the whole grace.
    """
    pgid = server.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        server.poll()
        return "terminated"
    end = time.monotonic() + grace
    while time.monotonic() < end:
        server.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return "terminated"
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.poll()
    return "killed"


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def serve(cmd: list[str], host: str, port: int, *, on_ready: Callable[[float], None],
          say: Callable[[str], None], ready_timeout: float = 300.0) -> int:
    """Run the server ``cmd`` until it ends or this process is told to stop.

    Calls ``on_ready(seconds)`` once ``http://host:port/health`` answers.
    Returns the exit status for ``pmodel ui``: 0 when stopped by a signal or
    Ctrl-C, 1 when the port is taken or the server ended by itself.
    """
    try:
        check_port_free(host, port)
    except PortTaken as exc:
        say(f"pmodel ui: {exc}")
        return 1
    started = time.perf_counter()
    server = subprocess.Popen(cmd, process_group=0)
    guard = subprocess.Popen([sys.executable, "-c", _GUARD, str(server.pid), str(GRACE_SECONDS)],
                             stdin=subprocess.PIPE, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the UI, whatever this process inherited: a
    # parent may start it with SIGINT ignored or blocked (both survive exec), and then
    # Python's own KeyboardInterrupt never comes
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in stop_signals}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    health = f"http://{host}:{port}/health"
    try:
        deadline = time.monotonic() + ready_timeout
        while not _answers(health):
            if server.poll() is not None:
                say(f"pmodel ui: the MLflow server stopped before it answered (exit status "
                    f"{server.returncode}); its messages are above")
                return 1
            if time.monotonic() > deadline:
                say(f"pmodel ui: the MLflow server did not answer on {health} within "
                    f"{ready_timeout:.0f} s")
                return 1
            time.sleep(0.2)
        on_ready(time.perf_counter() - started)
        code = server.wait()
        say(f"pmodel ui: the MLflow server stopped (exit status {code})")
        return 1
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_group(server)
        guard.stdin.close()   # the guard sees EOF, finds the group gone, exits
        try:
            guard.wait(timeout=GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            guard.kill()
