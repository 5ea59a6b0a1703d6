"""A watchdog that ends a child process when its parent dies, even by kill -9.

``pmodel run`` starts Prefect's temporary server as a child process (uvicorn,
a port, about 240 MB). Prefect stops it at exit, but a process killed with
SIGKILL runs no exit handler, and the server lived on as an orphan.
:func:`guard` starts this module beside the child::

    python -m flows.watchdog PARENT_PID CHILD_PID CHILD_START_TIME

It waits for its parent to go (Linux tells it at once through
``PR_SET_PDEATHSIG``; elsewhere, or if that fails, it looks every
``POLL_S`` seconds), then ends the child: SIGTERM, and SIGKILL after
``GRACE_S``. The child's start time (from /proc) is checked first, so a pid
reused by another process is never signalled. It ignores SIGINT: on Ctrl-C
the parent shuts down on its own and the watchdog follows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tasks.recovery import process_start_time

POLL_S = 0.5
GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def guard(child_pid: int) -> subprocess.Popen | None:
    """Start a watchdog that ends ``child_pid`` when this process dies.

    Returns the watchdog's Popen, or None where /proc is missing (not Linux).
    Call it from a thread that lives as long as the process (the main thread):
    the kernel's parent-death signal follows the thread that started the
    watchdog, and the watchdog then checks that the process itself is gone.
    """
    started = process_start_time(child_pid)
    if started is None:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "flows.watchdog", str(os.getpid()), str(child_pid), started],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), close_fds=True)


class _ParentGone(Exception):
    pass


def _on_parent_death(signum, frame):
    raise _ParentGone


def _ask_for_parent_death_signal() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1)
    except (OSError, AttributeError):
        pass  # not Linux: polling alone


def _end(pid: int, started: str) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        if process_start_time(pid) != started:
            return  # gone (or the pid now names another process)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and process_start_time(pid) == started:
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    parent, child, started = int(argv[0]), int(argv[1]), argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, _on_parent_death)
    _ask_for_parent_death_signal()
    while True:
        try:
            if os.getppid() != parent:  # reparented: the parent is gone
                break
            if process_start_time(child) != started:
                return 0  # the child ended first: nothing left to guard
            time.sleep(POLL_S)
        except _ParentGone:
            continue  # the signal follows the parent's thread: check the process
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    _end(child, started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
