"""The Dask runner: same scores as threads, and the Prefect server question.

The flow test runs a small experiment on threads and on a local 2-worker Dask
cluster (worker processes) under Prefect's test harness, whose server the
workers reach through PREFECT_API_URL (prefect-dask sends the flow's settings
with every task), and compares what both recorded.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SMALL = """
name: small-dask
seed: 3
n_samples: 200
build: {n_train: 20, n_heldout: 100}
datasets:
  fashion: {builtin: fashion}
  land: {builtin: land}
families:
  - family: box
  - family: multinomial
    params: {alpha: 1.0}
    points: {cell_deg: 10.0}
  - family: naive_bayes
    params: {alpha: 0.5}
    points: {bin_deg: 10.0}
"""


def _metrics(outcome: dict) -> dict:
    return {(r.dataset, r.label): {k: v for k, v in r.metrics.items()
                                         if not k.endswith("_seconds")}
            for r in outcome.results}


def _same(a: dict, b: dict) -> bool:
    """Equal dicts of floats, NaN equal to NaN, infinities exactly, finite values to
    1e-12 relative. (kl_land sums with np.sum, not a BLAS dot product whose last
    bits follow BLAS's thread count, so they agree exactly in practice; the margin
    keeps a last-bit difference of a vectorised numpy routine from failing a run.)"""
    def close(x, y):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if math.isinf(x) or math.isinf(y):
            return x == y
        return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15)

    return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)


def _stored(store: str, parent_run_id: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return {(c.data.tags["dataset"], c.data.tags["label"]): {k: v for k, v in c.data.metrics.items() if not k.endswith("_seconds")}
            for c in children}


@pytest.mark.slow
def test_dask_local_cluster_records_the_same_scores_as_threads(prefect_harness, tmp_path, renders):
    from flows.experiment import run_experiment
    from flows.runners import make_task_runner

    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    store = "sqlite:///" + str(tmp_path / "mlflow.db")

    threads = run_experiment.with_options(task_runner=make_task_runner("threads"))(
        str(path), tracking_uri=store, return_state=True)
    assert threads.is_completed(), threads.message
    on_threads = threads.result()

    models = Path(os.environ["PMODEL_HOME"]) / ".cache" / "work" / "models"
    started = time.time()
    dask = run_experiment.with_options(task_runner=make_task_runner("dask", n_workers=2))(
        str(path), tracking_uri=store, refresh=True, return_state=True)
    assert dask.is_completed(), dask.message
    on_dask = dask.result()

    assert on_threads.failures == on_dask.failures == {}
    # computed again (refresh), not read from the cache; by the workers, in the same work folder
    assert set(on_dask.fit_states.values()) == {"Completed"}, on_dask.fit_states
    assert len(on_dask.fit_states) == 6
    assert len([p for p in models.iterdir() if (p / "model.json").stat().st_mtime >= started - 1]) >= 6

    a, b = _metrics(on_threads), _metrics(on_dask)
    assert a.keys() == b.keys() and len(a) == 6
    for key in a:
        assert _same(a[key], b[key]), (key, a[key], b[key])
    assert math.isfinite(a["fashion", "multinomial alpha=1.0"]["kl_to_truth"])

    stored_threads = _stored(store, on_threads.parent_run_id)
    stored_dask = _stored(store, on_dask.parent_run_id)
    assert stored_threads.keys() == stored_dask.keys() and len(stored_threads) == 6
    for key in stored_threads:
        assert _same(stored_threads[key], stored_dask[key]), key


def _pmodel(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _embedded_env(tmp: Path) -> dict:
    env = {**os.environ, "PMODEL_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect")}
    for name in ("PREFECT_API_URL", "PMODEL_RUNNER", "PMODEL_DASK_ADDRESS"):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_cli_dask_in_embedded_mode_uses_one_temporary_server(tmp_path, renders):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.replace("small-dask", "small-cli"))
    result = _pmodel(["run", str(path), "--runner", "dask"], _embedded_env(tmp_path))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "no Prefect server is configured" in result.stderr
    assert "prefect server start --background" in result.stderr
    # the workers report to the run's server instead of starting one each
    assert out.count("Starting temporary server") <= 1, out[-3000:]
    assert "best first" in result.stdout


def test_cli_refuses_a_dask_address_without_a_server(tmp_path):
    result = _pmodel(["run", "chapter1", "--dask-address", "tcp://127.0.0.1:9"],
                     _embedded_env(tmp_path), timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "PREFECT_API_URL" in result.stderr and "prefect server start" in result.stderr
    assert "Starting temporary server" not in result.stderr + result.stdout


# ---------------------------------------------------------------------------
# make_task_runner, check_dask_with_server, runner_session, runner_from_env
# ---------------------------------------------------------------------------

@pytest.fixture
def embedded():
    """No Prefect server configured (PREFECT_API_URL empty)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.fixture
def server():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        yield


def test_make_task_runner_threads_and_dask():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.runners import make_task_runner

    assert isinstance(make_task_runner(), ThreadPoolTaskRunner)
    local = make_task_runner("dask")
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 2, "threads_per_worker": 1, "processes": True}
    assert make_task_runner("dask", n_workers=3).cluster_kwargs["n_workers"] == 3
    remote = make_task_runner("dask", "tcp://10.0.0.5:8786")
    assert remote.address == "tcp://10.0.0.5:8786" and remote.cluster_kwargs == {}


def test_make_task_runner_rejects_what_cannot_work():
    from flows.runners import make_task_runner

    with pytest.raises(ValueError, match=r"unknown runner 'ray'.*threads, dask"):
        make_task_runner("ray")
    with pytest.raises(ValueError, match="needs the dask runner"):
        make_task_runner("threads", "tcp://10.0.0.5:8786")
    with pytest.raises(ValueError, match="at least 1 worker"):
        make_task_runner("dask", n_workers=0)


def test_check_dask_with_server_in_embedded_mode(embedded):
    from flows.runners import RunnerError, check_dask_with_server

    assert check_dask_with_server("threads", None) is None
    warning = check_dask_with_server("dask", None)
    assert "PREFECT_API_URL is empty" in warning
    assert "prefect server start --background" in warning
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in warning
    with pytest.raises(RunnerError, match="needs a Prefect server") as refused:
        check_dask_with_server("dask", "tcp://10.0.0.5:8786")
    assert "prefect server start --background" in str(refused.value)


def test_check_dask_with_server_with_a_server(server):
    from flows.runners import check_dask_with_server

    assert check_dask_with_server("dask", None) is None
    assert check_dask_with_server("dask", "tcp://10.0.0.5:8786") is None


def test_runner_session_points_local_workers_at_the_temporary_server(embedded, monkeypatch):
    import flows.runtime
    from prefect.settings import PREFECT_API_URL

    from flows.runners import RunnerError, runner_session

    monkeypatch.setattr(flows.runtime, "start_embedded_prefect", lambda: "http://127.0.0.1:8999/api")
    warnings = []
    with runner_session("dask", warn=warnings.append) as runner:
        assert PREFECT_API_URL.value() == "http://127.0.0.1:8999/api"  # travels with each task
        assert runner.cluster_kwargs["env"] == {"PREFECT_API_URL": "http://127.0.0.1:8999/api"}
    assert not PREFECT_API_URL.value()
    assert len(warnings) == 1 and "temporary" in warnings[0]
    with pytest.raises(RunnerError):
        with runner_session("dask", "tcp://10.0.0.5:8786"):
            pass
    with runner_session("threads", warn=warnings.append) as runner:
        assert not PREFECT_API_URL.value()
    assert len(warnings) == 1


def test_runner_session_with_a_server_changes_nothing(server):
    from prefect.settings import PREFECT_API_URL

    from flows.runners import runner_session

    with runner_session("dask", "tcp://10.0.0.5:8786", warn=pytest.fail) as runner:
        assert runner.address == "tcp://10.0.0.5:8786"
        assert PREFECT_API_URL.value() == "http://127.0.0.1:4200/api"


def test_runner_from_env():
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.runners import RunnerError, runner_from_env

    assert isinstance(runner_from_env({}), ThreadPoolTaskRunner)
    runner = runner_from_env({"PMODEL_RUNNER": "dask", "PMODEL_DASK_ADDRESS": "tcp://10.0.0.5:8786"})
    assert runner.address == "tcp://10.0.0.5:8786"
    assert runner_from_env({"PMODEL_RUNNER": "dask", "PMODEL_DASK_WORKERS": "4"}).cluster_kwargs["n_workers"] == 4
    with pytest.raises(RunnerError, match="PMODEL_RUNNER"):
        runner_from_env({"PMODEL_RUNNER": "processes"})


def test_deployments_take_the_runner_from_the_environment(tmp_path):
    # importing the flow reads no environment (a bad value there breaks nothing); the runner
    # is resolved when a run starts (Prefect duplicates the flow's runner then)
    code = ("import os; from flows.experiment import run_experiment as f; "
            "os.environ.update(PMODEL_RUNNER='dask', PMODEL_DASK_ADDRESS='tcp://10.0.0.5:8786'); "
            "r = f.task_runner.duplicate(); print(type(r).__name__, r.address)")
    env = {**_embedded_env(tmp_path), "PMODEL_RUNNER": "processes"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == ["DaskTaskRunner", "tcp://10.0.0.5:8786"], out.stderr[-2000:]
