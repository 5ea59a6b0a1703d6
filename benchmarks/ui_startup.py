"""How long `pmodel ui` takes until the MLflow UI answers (prints figures; not a test).

Starts `pmodel ui` on a free port against the project's store (or the URI given
as the first argument) REPEAT times each with MLflow's job execution off (pmodel's
default) and on, and prints the seconds from launch until the server answers
``/health``, until `pmodel ui` prints its address, and until a runs search answers.

    .venv/bin/python benchmarks/ui_startup.py [TRACKING_URI] [REPEAT]
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str, data: bytes | None = None) -> bool:
    try:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def once(uri: str, jobs: bool) -> dict[str, float]:
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if jobs else "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", "--port", str(port),
                             "--tracking-uri", uri], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out: dict[str, float] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        while "health" not in out:
            if _answers(base + "/health"):
                out["health"] = time.perf_counter() - t0
            time.sleep(0.05)
        for line in proc.stdout:
            if "ready on" in line:
                out["printed"] = time.perf_counter() - t0
                break
        body = json.dumps({"experiment_ids": ["0"], "max_results": 1}).encode()
        while not _answers(base + "/api/2.0/mlflow/runs/search", body):
            time.sleep(0.05)
        out["runs_search"] = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    return out


def main() -> None:
    sys.path.insert(0, str(REPO))
    from tasks import tracking

    uri = (sys.argv[1] if len(sys.argv) > 1 else "") or tracking.resolve_tracking_uri()
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tracking.prepare_store(uri)
    print(f"pmodel ui startup on {uri}, {repeat} runs each (seconds from launch; median, min..max)")
    for jobs in (False, True):
        runs = [once(uri, jobs) for _ in range(repeat)]
        label = "job execution on " if jobs else "job execution off"
        cells = []
        for key in ("health", "printed", "runs_search"):
            values = [r[key] for r in runs]
            cells.append(f"{key} {statistics.median(values):.1f} ({min(values):.1f}..{max(values):.1f})")
        print(f"  {label}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
