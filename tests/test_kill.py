"""kill -9 of `pmodel run`: nothing of it stays alive, and the next run on the
store marks what it left RUNNING as FAILED (MLflow and Prefect).

These run the real command line (a temporary Prefect server, a SQLite MLflow
store) in a fresh project folder, and kill the process mid-flow.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "tiny.yaml"


def _env(tmp: Path) -> dict:
    env = {**os.environ, "PMODEL_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect")}
    env.pop("PREFECT_API_URL", None)
    return env


def _processes_with(env_entry: str) -> dict[int, str]:
    """Live processes whose environment holds ``env_entry`` (e.g. this test's
    PREFECT_HOME), pid -> command line: everything a run started."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if env_entry.encode() not in environ:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":  # a zombie holds nothing (its parent has yet to reap it)
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _kill_mid_flow(env: dict, timeout: float = 300) -> list[str]:
    """Start `pmodel run tiny`, SIGKILL that one process once a fit has finished;
    return the lines it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(TINY)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "pmodel run ended before it could be killed:\n" + "".join(seen)
            continue
        seen.append(line)
        if "Task run 'fit-" in line and "Completed" in line:
            break
    else:
        proc.kill()
        pytest.fail("no fit finished in time:\n" + "".join(seen[-40:]))
    os.kill(proc.pid, signal.SIGKILL)  # that process alone, not its group
    proc.wait()
    return seen


@pytest.fixture(scope="module")
def killed(tmp_path_factory, renders):
    """A `pmodel run` killed with SIGKILL mid-flow, in a fresh project."""
    tmp = tmp_path_factory.mktemp("killed")
    env = _env(tmp)
    printed = _kill_mid_flow(env)
    return tmp, env, printed


@pytest.mark.slow
def test_kill_9_of_pmodel_run_leaves_no_process_behind(killed):
    tmp, env, _ = killed
    marker = f"PREFECT_HOME={env['PREFECT_HOME']}"
    deadline = time.monotonic() + 20  # the watchdog acts within a second; give it room
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:  # clean up before failing, so no orphan outlives the test either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphaned after kill -9 of pmodel run: {left}"


@pytest.mark.slow
def test_the_next_run_marks_the_killed_run_failed_in_mlflow_and_prefect(killed):
    import sqlite3

    from mlflow.tracking import MlflowClient

    tmp, env, _ = killed
    client = MlflowClient(tracking_uri="sqlite:///" + str(tmp / "home" / "mlruns" / "mlflow.db"))
    experiment = client.get_experiment_by_name("tiny")
    (dead,) = client.search_runs([experiment.experiment_id])
    assert dead.info.status == "RUNNING" and "mlflow.parentRunId" not in dead.data.tags
    owner = json.loads(dead.data.tags["pmodel.owner"])

    second = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(TINY)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]

    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    dead = client.get_run(dead.info.run_id)
    assert dead.info.status == "FAILED"
    note = f"marked failed: the process that ran it (pid {owner['pid']} on {socket.gethostname()}) is gone"
    assert note in dead.data.tags["pmodel.recovery"]
    assert note in dead.data.tags["mlflow.note.content"]  # the run's description in the UI
    assert note in second.stdout + second.stderr
    # the new parent finished, and the killed one is the only FAILED run
    assert sorted(r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags) == [
        "FAILED", "FINISHED"]

    with sqlite3.connect(tmp / "prefect" / "prefect.db") as db:
        states = {str(i).replace("-", ""): (t, m) for i, t, m in db.execute(
            "select flow_run.id, flow_run.state_type, flow_run_state.message from flow_run "
            "left join flow_run_state on flow_run.state_id = flow_run_state.id")}
    state, message = states[owner["flow_run"].replace("-", "")]
    assert state == "CRASHED" and note in message
    assert [s for s, _ in states.values()].count("RUNNING") == 0


def _dead_owner() -> dict:
    """The owner record of a process that has exited."""
    out = subprocess.run([sys.executable, "-c", "import json; from tasks.recovery import owner; "
                          "print(json.dumps(owner()))"], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_fail_dead_runs_marks_only_runs_whose_process_is_gone(tmp_path):
    from mlflow.tracking import MlflowClient

    from tasks import recovery, tracking

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    eid = tracking.get_or_create_experiment(uri, "kills")
    dead_owner = _dead_owner()
    assert recovery.is_gone(dead_owner)

    def parent(name, owner):
        tags = {} if owner is None else {recovery.OWNER_TAG: json.dumps(owner)}
        return tracking.start_run(uri, eid, name, tags=tags)

    dead = parent("dead", dead_owner)
    dead_child = tracking.start_run(uri, eid, "dead/child", parent_run_id=dead)
    done_child = tracking.start_run(uri, eid, "dead/done", parent_run_id=dead)
    tracking.end_run(uri, done_child, "FINISHED")
    alive = parent("alive", recovery.owner())  # this very process
    alive_child = tracking.start_run(uri, eid, "alive/child", parent_run_id=alive)
    elsewhere = parent("elsewhere", {**dead_owner, "host": "another-host"})
    reused = parent("reused", {**recovery.owner(), "start": "1"})  # our pid, another start time
    unknown = parent("no owner", None)

    marked = recovery.fail_dead_runs(uri, log=lambda msg: None)

    assert sorted(marked) == sorted([dead, dead_child, reused])
    client = MlflowClient(tracking_uri=uri)
    status = {r: client.get_run(r).info.status for r in
              (dead, dead_child, done_child, alive, alive_child, elsewhere, reused, unknown)}
    assert status == {dead: "FAILED", dead_child: "FAILED", done_child: "FINISHED",
                      alive: "RUNNING", alive_child: "RUNNING", elsewhere: "RUNNING",
                      reused: "FAILED", unknown: "RUNNING"}
    note = client.get_run(dead_child).data.tags[recovery.NOTE_TAG]
    assert note.startswith(f"marked failed: the process that ran it (pid {dead_owner['pid']} on "
                           f"{socket.gethostname()}) is gone")
    assert recovery.fail_dead_runs(uri, log=lambda msg: None) == []  # nothing left to mark


@pytest.mark.slow
def test_pmodel_run_starts_its_temporary_server_first_without_prefects_server_code(tmp_path, renders):
    """The temporary server is a separate process started before Prefect is imported (so it
    starts while the run imports and validates); the run never imports Prefect's server app,
    reports to that server, and leaves no process behind."""
    env = _env(tmp_path)
    code = ("import sys\nfrom flows.cli import main\ncode = main(['run', sys.argv[1]])\n"
            "print('server app imported:', 'prefect.server.api.server' in sys.modules)\n"
            "sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code, str(TINY)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "server app imported: False" in out.stdout
    started = [line for line in out.stderr.splitlines() if "temporary server for this run is at" in line]
    assert len(started) == 1 and "http://127.0.0.1:" in started[0], out.stderr[-3000:]
    assert "best first" in out.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:  # the flow reported to it
        assert [s for (s,) in db.execute("select state_type from flow_run")] == ["COMPLETED"]
    assert not _processes_with(f"PREFECT_HOME={env['PREFECT_HOME']}")


def test_a_temporary_server_that_cannot_start_is_reported_after_a_few_tries(tmp_path, monkeypatch):
    from flows.runtime import EmbeddedServer

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    tries = []

    class Broken(EmbeddedServer):
        @staticmethod
        def command(port):
            tries.append(port)
            return [sys.executable, "-c", "import sys; sys.exit(3)"]

    server = Broken()
    server.spawn()
    with pytest.raises(RuntimeError, match="exited with code 3 .4 tries"):
        server.wait_ready(timeout_s=60)
    assert len(tries) == 4 and all(8000 <= p < 9000 for p in tries)
    assert server._lock is None  # released: the next run is not blocked
