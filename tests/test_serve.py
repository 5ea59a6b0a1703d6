"""Schedules and new data, for real: a `prefect server start` on 127.0.0.1 (started
and stopped here), `pmodel serve` as users run it, MLflow's store on disk."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

FASHION_ONLY = """
name: served
seed: 3
n_samples: 100
build: {n_train: 20, n_heldout: 100}
datasets:
  fashion: {builtin: fashion}
families:
  - family: naive_bayes
    params: {alpha: 1.0}
"""

PLACES = """
name: places
seed: 0
n_samples: 200
datasets:
  places: {kind: points, train: ../data/incoming/places.csv}
families:
  - family: naive_bayes
    params: {alpha: 1.0}
    points: {bin_deg: 10.0}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str, poll_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"

    def healthy():
        try:
            return httpx.get(api + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(healthy, 120, "the Prefect server")
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _flow_runs(api: str, deployment: str) -> list[dict]:
    body = {"deployments": {"name": {"any_": [deployment]}}, "limit": 200}
    return httpx.post(api + "/flow_runs/filter", json=body, timeout=10).json()


def _completed(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r["state"] and r["state"]["type"] == "COMPLETED"]


@pytest.fixture
def project(tmp_path, prefect_server):
    home = tmp_path / "home"
    (home / "experiments").mkdir(parents=True)
    env = {**os.environ, "PMODEL_HOME": str(home), "PREFECT_API_URL": prefect_server,
           "PREFECT_HOME": str(tmp_path / "prefect-client")}
    return home, env


def _serve(env, *args):
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _stop(proc) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


def test_serve_without_a_server_says_how_to_start_one(tmp_path):
    env = {**os.environ, "PMODEL_HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = subprocess.run([sys.executable, "-m", "flows.cli", "serve"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "prefect server start --background" in result.stderr
    assert "prefect server status --wait" in result.stderr and "--start-server" in result.stderr


def test_a_served_schedule_produces_a_completed_run_recorded_in_mlflow(project, prefect_server):
    home, env = project
    (home / "experiments" / "served.yaml").write_text(FASHION_ONLY)
    proc = _serve(env, "--only", "chapter1-nightly", "--interval", "10",
                  "--experiment", str(home / "experiments" / "served.yaml"))
    try:
        _wait(lambda: _completed(_flow_runs(prefect_server, "chapter1-nightly")), 240,
              "a completed scheduled run")
    finally:
        out = _stop(proc)
    assert "Traceback" not in out, out[-3000:]
    deployment = httpx.get(prefect_server + "/deployments/name/run-experiment/chapter1-nightly",
                           timeout=10).json()
    assert deployment["paused"] is False  # stopping serve left the schedule on
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///" + str(home / "mlruns" / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id],
                              filter_string="attributes.status = 'FINISHED'")
    assert any("mlflow.parentRunId" not in r.data.tags for r in runs)


def _points(path: Path, seed: int, bad: bool = False) -> Path:
    from pmodel.datasets import land

    X = np.random.default_rng(seed).uniform([-10, 35], [30, 60], size=(150, 2))
    if bad:
        X[3, 0] = 200.0
    land.write_csv(X, path)
    return path


def _add(env, path: Path) -> None:
    subprocess.run([sys.executable, "-m", "flows.cli", "data", "add", str(path)], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=120)


def _changed_events(api: str) -> list[dict]:
    body = {"filter": {"event": {"name": ["pmodel.data.changed"]}}, "limit": 50}
    return httpx.post(api + "/events/filter", json=body, timeout=10).json()["events"]


def test_new_data_triggers_exactly_the_runs_it_should(project, prefect_server, tmp_path):
    """data-watch only emits pmodel.data.changed; the trigger of on-new-data (prefect.yaml,
    attached by `pmodel serve`) makes the server start the rerun, once per change."""
    from pmodel.datasets.digest import path_digest

    home, env = project
    (home / "experiments" / "places.yaml").write_text(PLACES)
    watch_state = home / ".cache" / "watch-state.json"
    incoming = home / "data" / "incoming" / "places.csv"
    proc = _serve(env, "--only", "on-new-data", "data-watch", "--interval", "4")

    def on_new_data():
        return _flow_runs(prefect_server, "on-new-data")

    def watch_checks():
        return len(_completed(_flow_runs(prefect_server, "data-watch")))

    try:
        # a new file that the `places` experiment uses: exactly one run, started by the trigger
        _add(env, _points(tmp_path / "places.csv", seed=1))
        _wait(lambda: len(_completed(on_new_data())) == 1, 240, "one on-new-data run")
        run = _completed(on_new_data())[0]
        experiment = (home / "experiments" / "places.yaml").resolve()
        assert Path(run["parameters"]["experiment"]).resolve() == experiment
        assert run["created_by"]["type"] == "AUTOMATION"
        assert run["created_by"]["display_value"] == "rerun-on-new-data"
        automation = httpx.get(f"{prefect_server}/automations/{run['created_by']['id']}",
                               timeout=10).json()
        assert automation["trigger"]["expect"] == ["pmodel.data.changed"]
        assert automation["actions"][0]["type"] == "run-deployment"
        assert automation["actions"][0]["deployment_id"] == run["deployment_id"]
        # the event names the experiment (resource) and the file with its digest (related, payload)
        events = _wait(lambda: _changed_events(prefect_server), 60, "the pmodel.data.changed event",
                       poll_s=1)
        assert len(events) == 1
        event = events[0]
        assert event["resource"]["prefect.resource.id"] == "pmodel.experiment.places"
        assert {"prefect.resource.id": "pmodel.data.places.csv", "prefect.resource.role": "data",
                "prefect.resource.name": "places.csv"} in event["related"]
        assert [f["sha256"] for f in event["payload"]["files"]] == [path_digest(incoming)]
        assert any(r["prefect.resource.role"] == "flow-run" for r in event["related"])  # the check's run

        # the same event sent again (as by a check that died before saving its state): the
        # server acts on an event id once
        resend = {k: event[k] for k in ("id", "occurred", "event", "resource", "related", "payload")}
        assert httpx.post(prefect_server + "/events", json=[resend], timeout=10).status_code == 204

        # the same bytes again, and a file nobody uses: nothing more
        _add(env, _points(tmp_path / "places.csv", seed=1))
        _add(env, _points(tmp_path / "unused.csv", seed=2))
        checks = watch_checks()
        _wait(lambda: watch_checks() >= checks + 3, 120, "three more watch checks")
        assert len(on_new_data()) == 1

        # new bytes: one more run. The server's triggers and actions handle events in the
        # order they arrive, so by the time this change's run exists the resent event
        # above has been handled too, and had it started a run there would be three.
        changed_dir = tmp_path / "changed"
        changed_dir.mkdir()
        _add(env, _points(changed_dir / "places.csv", seed=4))
        _wait(lambda: len(_completed(on_new_data())) == 2, 240, "a second on-new-data run")
        assert len(on_new_data()) == 2
        events = _changed_events(prefect_server)
        assert len({e["id"] for e in events}) == 2
        assert {f["sha256"] for e in events for f in e["payload"]["files"]} == {
            event["payload"]["files"][0]["sha256"], path_digest(incoming)}

        # an invalid file: reported, no run
        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        _add(env, _points(bad_dir / "places.csv", seed=3, bad=True))
        reports = home / "reports" / "validation"
        _wait(lambda: any(not json.loads(p.read_text())["success"] for p in reports.glob("*.json")),
              120, "the validation report of the invalid file")
        checks = watch_checks()
        _wait(lambda: watch_checks() >= checks + 2, 120, "two more watch checks")
        assert len(on_new_data()) == 2
        assert len(_changed_events(prefect_server)) == 2
        state = json.loads(watch_state.read_text())
        assert str(incoming.resolve()) in state["triggered"]
    finally:
        out = _stop(proc)
    assert "Traceback" not in out, out[-3000:]


def test_on_new_data_is_served_with_the_trigger_of_prefect_yaml():
    """One declaration: `pmodel serve` attaches the triggers that `prefect deploy` reads."""
    import yaml

    from flows.serve import build_deployments, prefect_yaml, read_deployments

    entries = yaml.safe_load(prefect_yaml().read_text())["deployments"]
    declared = {e["name"]: e.get("triggers") or [] for e in entries}
    served = {d.name: d.triggers for d in build_deployments(read_deployments())}
    assert set(served) == set(declared)
    for name, triggers in served.items():
        assert len(triggers) == len(declared[name])
        for trigger, spec in zip(triggers, declared[name]):
            assert trigger.expect == set(spec["expect"]) and trigger.parameters == spec["parameters"]
    (trigger,) = served["on-new-data"]
    assert trigger.expect == {"pmodel.data.changed"} and trigger.threshold == 1
    assert trigger.match.root == {"prefect.resource.id": "pmodel.experiment.*"}
    assert trigger.parameters == {"experiment": "{{ event.payload.experiment }}"}


def test_the_id_of_a_change_event_names_the_change(tmp_path):
    """Same change, same id (the server drops the second); a new change, even back to
    bytes seen before (A, then B, then A again), a new id."""
    from flows.watch import change_event_id

    exp, data = tmp_path / "places.yaml", tmp_path / "places.csv"
    first = change_event_id(exp, [(data, "A", None)])
    assert change_event_id(exp, [(data, "A", None)]) == first
    assert change_event_id(tmp_path / "other.yaml", [(data, "A", None)]) != first
    to_b = change_event_id(exp, [(data, "B", "A")])
    back_to_a = change_event_id(exp, [(data, "A", "B")])
    assert len({first, to_b, back_to_a}) == 3
    two = [(data, "A", None), (tmp_path / "more.csv", "C", None)]
    assert change_event_id(exp, two) == change_event_id(exp, two[::-1])


def test_the_watcher_emits_one_event_per_experiment_and_starts_nothing_itself(
        prefect_harness, tmp_path, monkeypatch):
    """A check (under Prefect's test harness) groups the changed files by experiment: one
    event each, carrying every changed file it uses; what could not be sent is retried."""
    import flows.watch as watch
    from pmodel.datasets.digest import path_digest

    home = tmp_path / "home"
    (home / "experiments").mkdir(parents=True)
    (home / "experiments" / "both.yaml").write_text(PLACES.replace("name: places", "name: both").replace(
        "datasets:\n", "datasets:\n  more: {kind: points, train: ../data/incoming/more.csv}\n"))
    (home / "experiments" / "places.yaml").write_text(PLACES)
    monkeypatch.setenv("PMODEL_HOME", str(home))
    incoming = home / "data" / "incoming"
    incoming.mkdir(parents=True)
    _points(incoming / "places.csv", seed=1)
    _points(incoming / "more.csv", seed=2)
    sent = []
    reruns_before = _experiment_runs()
    monkeypatch.setattr(watch, "emit_changed", lambda *args: None)  # nowhere to send it
    assert watch.watch_data(settle_seconds=0)["triggered"] == []
    monkeypatch.setattr(watch, "emit_changed", lambda *args: sent.append(args) or object.__new__(_Sent))
    summary = watch.watch_data(settle_seconds=0)
    experiments = home / "experiments"
    assert sorted(summary["triggered"]) == [str(experiments / "both.yaml"),
                                            str(experiments / "places.yaml")]
    by_name = {name: (exp_file, sorted(changes)) for exp_file, name, changes in sent}
    assert len(sent) == 2 and set(by_name) == {"both", "places"}
    assert by_name["both"] == (experiments / "both.yaml", [
        (incoming / "more.csv", path_digest(incoming / "more.csv"), None),
        (incoming / "places.csv", path_digest(incoming / "places.csv"), None)])
    assert by_name["places"][1] == [(incoming / "places.csv", path_digest(incoming / "places.csv"),
                                     None)]
    assert watch.watch_data(settle_seconds=0)["triggered"] == []  # acted on once
    assert len(sent) == 2
    assert _experiment_runs() == reruns_before  # the server's trigger starts them, not the check


class _Sent:
    id = "sent"


def _experiment_runs() -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["run-experiment"])))
    return len(runs)


def test_data_add_is_atomic_and_leaves_the_source(tmp_path):
    from flows.watch import add_data

    src = _points(tmp_path / "p.csv", seed=0)
    before = src.read_bytes()
    target = add_data(src, tmp_path / "incoming")
    assert target.read_bytes() == before == src.read_bytes()
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == ["p.csv"]  # no partial left


def test_serve_start_server_starts_one_on_localhost(tmp_path):
    port = _free_port()
    env = {**os.environ, "PMODEL_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    api = f"http://127.0.0.1:{port}/api"
    proc = _serve(env, "--start-server", "--server-port", str(port), "--only", "chapter1-nightly")
    try:
        def up():
            try:
                return httpx.get(api + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, 180, "the server started by pmodel serve")
        # its UI asks this port's API (not 4200's)
        assert httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=5).json()["api_url"] == api
        _wait(lambda: httpx.get(api + "/deployments/name/run-experiment/chapter1-nightly",
                                timeout=5).status_code == 200, 120, "the served deployment")
    finally:
        out = _stop(proc)
        subprocess.run([sys.executable, "-m", "prefect", "server", "stop"], env=env,
                       capture_output=True, timeout=120)
    assert f"started a Prefect server: {api}" in out
    with pytest.raises(httpx.HTTPError):
        httpx.get(api + "/health", timeout=2)
