"""run_experiment for real: Prefect (test harness), MLflow (a SQLite store), GE.

Asserts on what the MLflow store holds, not on logs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "tiny.yaml"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.fixture(scope="module")
def first_run(prefect_harness, store, renders):
    from flows.experiment import run_experiment

    state = run_experiment(str(TINY), tracking_uri=store, return_state=True)
    return state, state.result(raise_on_failure=False)


def _client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store)


def _children(store, parent_run_id):
    client = _client(store)
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def _artifacts(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(_artifacts(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def test_flow_completes_and_records_parent_and_children(first_run, store):
    state, outcome = first_run
    assert state.is_completed(), state.message
    assert outcome.failures == {}
    client = _client(store)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert client.get_experiment(parent.info.experiment_id).name == "tiny"
    children = _children(store, outcome.parent_run_id)
    assert len(children) == 9 == len(outcome.results)
    pairs = {(c.data.tags["dataset"], c.data.tags["family"]) for c in children}
    assert pairs == {(d, f) for d in ("fashion", "pixels", "land")
                     for f in ("box", "multinomial", "naive_bayes")}
    assert all(c.info.status == "FINISHED" for c in children)
    parent_files = _artifacts(client, parent.info.run_id)
    assert {"config.yaml", "comparison.csv", "comparison.png"} <= set(parent_files)
    assert sum(p.startswith("validation/") and p.endswith(".json") for p in parent_files) == 6



def test_parent_run_logs_each_validation_data_docs_page_and_links_it(first_run, store, tmp_path):
    from tasks.record import DATA_DOCS_DIR

    _, outcome = first_run
    client = _client(store)
    parent = client.get_run(outcome.parent_run_id)
    run_id, experiment_id = parent.info.run_id, parent.info.experiment_id
    files = _artifacts(client, run_id)
    # the pages the logged reports name: one per GX suite run (land: its cells, then its numbers)
    expected = []
    for path in sorted(p for p in files if p.startswith("validation/") and p.endswith(".json")):
        report = json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())
        pages = report["data_docs"]
        assert len(pages) == (2 if report["kind"] == "land" else 1)
        expected += [f"{Path(path).stem}{f'-{i + 1}' if len(pages) > 1 else ''}.html"
                     for i in range(len(pages))]
    logged = sorted(p.removeprefix(DATA_DOCS_DIR + "/") for p in files if p.startswith(DATA_DOCS_DIR))
    assert logged == sorted(expected) and len(logged) == 8
    description = parent.data.tags["mlflow.note.content"]
    assert "### Validation (Great Expectations Data Docs)" in description
    for name in logged:
        assert f"(#/experiments/{experiment_id}/runs/{run_id}/artifacts/{DATA_DOCS_DIR}/{name}?" in description
    page = Path(client.download_artifacts(run_id, f"{DATA_DOCS_DIR}/{logged[0]}", str(tmp_path)))
    html = page.read_text()
    assert "Great Expectations" in html and "pmodel-" in html and "Evaluated Expectations" in html


EXPECTED = {
    "fashion": {"heldout_loglik", "out_of_support_rate", "entropy_truth", "kl_to_truth",
                "novelty_rate", "fit_seconds", "sample_seconds", "n_parameters"},
    "pixels": {"heldout_loglik", "heldout_bits_per_dim", "out_of_support_rate", "entropy_truth",
               "kl_to_truth", "valid_rate", "novelty_rate", "fit_seconds", "sample_seconds"},
    "land": {"heldout_loglik", "out_of_support_rate", "entropy_truth", "kl_to_truth",
             "on_land_rate", "land_coverage", "prdc_precision", "prdc_recall", "prdc_density",
             "prdc_coverage", "novelty_rate", "fit_seconds", "sample_seconds"},
}
PICTURES = {
    ("fashion", "naive_bayes"): {"pictures/naive-bayes-parameters.png", "pictures/samples-10-rows.md",
                                 "samples.png"},
    ("fashion", "box"): {"pictures/samples-10-rows.csv", "samples.png"},
    ("pixels", "box"): {"samples.png"},
    ("land", "box"): {"samples.png"},
    ("land", "multinomial"): {"samples.png"},
}


def test_child_runs_hold_scores_params_inputs_and_pictures(first_run, store):
    from pmodel.datasets.digest import path_digest
    from tasks.tracking import read_metrics

    _, outcome = first_run
    client = _client(store)
    for child in _children(store, outcome.parent_run_id):
        dataset, family = child.data.tags["dataset"], child.data.tags["family"]
        # an infinite score is a tag and a flag, not a metric: read_metrics gives every score
        assert EXPECTED[dataset] <= set(read_metrics(child)), (dataset, family)
        if family != "box":
            assert float(child.data.params["alpha"]) == 1.0
        inputs = child.inputs.dataset_inputs
        assert {i.dataset.name for i in inputs} == {f"{dataset}-train", f"{dataset}-heldout"}
        for i in inputs:
            source = json.loads(i.dataset.source)["uri"]
            assert path_digest(source).startswith(i.dataset.digest)
            assert json.loads(i.dataset.profile)["sha256"] == path_digest(source)
        assert PICTURES.get((dataset, family), set()) <= set(_artifacts(client, child.info.run_id))
        if (dataset, family) == ("land", "box"):
            assert 0 < child.data.metrics["box_sea_share"] < 1


def test_recorded_kl_equals_an_independent_computation(first_run, store):
    from tasks.tracking import read_metric

    from pmodel.datasets import fashion

    _, outcome = first_run
    child = next(c for c in _children(store, outcome.parent_run_id)
                 if c.data.tags["dataset"] == "fashion" and c.data.tags["family"] == "multinomial")
    train = next(json.loads(i.dataset.source)["uri"] for i in child.inputs.dataset_inputs
                 if i.dataset.name == "fashion-train")
    codes = fashion.SCHEMA.to_codes(fashion.read_csv(train))
    counts = np.bincount(fashion.SCHEMA.cell_index(codes), minlength=4032)
    q = (counts + 1.0) / (len(codes) + 4032)  # Laplace, written out
    p = fashion.probability_table().ravel()
    assert read_metric(child, "kl_to_truth") == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-9)
    assert child.data.metrics["n_parameters"] == 4031
    box = next(c for c in _children(store, outcome.parent_run_id)
               if c.data.tags["dataset"] == "land" and c.data.tags["family"] == "box")
    assert read_metric(box, "kl_to_truth") == math.inf  # the box misses land: exactly inf, not hidden


def test_every_child_model_loads_back_from_its_run_and_samples(first_run, store, tmp_path, monkeypatch):
    from flows.cli import main
    from tasks.tracking import load_model_from_run

    from pmodel.problems import load_problem
    from tasks.steps import load_model

    _, outcome = first_run
    for result in outcome.results:
        recorded = load_model_from_run(f"runs:/{result.run_id}/model", store)
        assert recorded.name == result.family and recorded.get_params() == result.params
        heldout = load_problem(result.problem_path).heldout
        original, _ = load_model(result.model_path)  # the flow's own fitted model
        np.testing.assert_array_equal(recorded.log_prob(heldout), original.log_prob(heldout))
        np.testing.assert_array_equal(recorded.sample(5, rng=np.random.default_rng(0)),
                                      original.sample(5, rng=np.random.default_rng(0)))
    by_dataset = {r.dataset: r.run_id for r in outcome.results if r.family == "naive_bayes"}
    assert main(["sample", by_dataset["pixels"], "-n", "4", "--out", str(tmp_path / "px"),
                 "--tracking-uri", store]) == 0
    assert len(list((tmp_path / "px").glob("*.png"))) == 4
    assert main(["sample", by_dataset["fashion"], "-n", "6", "--out", str(tmp_path / "rows"),
                 "--tracking-uri", store]) == 0
    from pmodel.datasets import fashion

    rows = fashion.read_csv(tmp_path / "rows" / "samples.csv")
    assert len(rows) == 6 and list(rows.columns) == list(fashion.COLUMNS)
    fashion.SCHEMA.to_codes(rows)  # every value one of its column's categories
    assert main(["sample", "no-such-run", "--out", str(tmp_path / "x"), "--tracking-uri", store]) == 1


def test_rerun_with_unchanged_inputs_hits_the_cache(first_run, store):
    from flows.experiment import run_experiment

    _, outcome = first_run
    models = Path(os.environ["PMODEL_HOME"]) / ".cache" / "work" / "models"
    before = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    state = run_experiment(str(TINY), tracking_uri=store, return_state=True)
    again = state.result()
    assert set(again.fit_states.values()) == {"Cached"}, again.fit_states
    assert {p.name: p.stat().st_mtime_ns for p in models.iterdir()} == before  # nothing refitted
    assert again.parent_run_id != outcome.parent_run_id
    old = {(r.dataset, r.label): r.metrics["heldout_loglik"] for r in outcome.results}
    new = {(r.dataset, r.label): r.metrics["heldout_loglik"] for r in again.results}
    assert new == old


BAD_EXPERIMENT = """
name: tiny-bad
seed: 1
n_samples: 100
build: {{n_train: 20, n_heldout: 100}}
datasets:
  fashion: {{builtin: fashion}}
  mine: {{kind: categorical, train: {bad}, schema: {schema}}}
families:
  - family: naive_bayes
    params: {{alpha: 1.0}}
"""


@pytest.fixture(scope="module")
def bad_experiment(tmp_path_factory):
    from pmodel.datasets import fashion

    d = tmp_path_factory.mktemp("bad")
    rows = fashion.sample(30, rng=np.random.default_rng(0))
    rows.loc[4, "clothing_color"] = "Purple"
    fashion.write_csv(rows, d / "mine.csv")
    fashion.SCHEMA.to_yaml(d / "schema.yaml")
    path = d / "bad.yaml"
    path.write_text(BAD_EXPERIMENT.format(bad=d / "mine.csv", schema=d / "schema.yaml"))
    return path, (d / "mine.csv").read_bytes()


def test_bad_input_fails_its_branch_only(prefect_harness, store, bad_experiment, renders):
    from flows.experiment import run_experiment

    path, original = bad_experiment
    state = run_experiment(str(path), tracking_uri=store, return_state=True)
    assert state.is_failed()
    outcome = state.result(raise_on_failure=False)
    message = outcome.failures["mine"]
    assert "mine.csv" in message and "clothing_color" in message and "'Purple'" in message
    assert "line 6" in message  # data row 4 is line 6 of the file
    assert set(outcome.failures) == {"mine"}
    client = _client(store)
    assert client.get_run(outcome.parent_run_id).info.status == "FAILED"
    children = _children(store, outcome.parent_run_id)
    assert [(c.data.tags["dataset"], c.info.status) for c in children] == [("fashion", "FINISHED")]
    assert (path.parent / "mine.csv").read_bytes() == original


def _pmodel(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _env(tmp, **extra):
    env = {**os.environ, "PMODEL_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect"),
           **extra}
    env.pop("PREFECT_API_URL", None)
    return env


@pytest.mark.slow
def test_cli_exits_1_on_bad_data_and_2_on_a_bad_config(tmp_path, bad_experiment, renders):
    path, _ = bad_experiment
    result = _pmodel(["run", str(path), "--set", "n_samples=50"], _env(tmp_path))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "'Purple'" in result.stderr and "mine.csv" in result.stderr
    assert "fashion" in result.stdout  # the other branch's leaderboard is printed
    usage = _pmodel(["run", str(path), "--set", "families.0.params.beta=1"], _env(tmp_path))
    assert usage.returncode == 2 and "beta" in usage.stderr


CONCURRENT = """
name: concurrent
seed: 2
n_samples: 100
build: {n_train: 20, n_heldout: 100}
datasets:
  fashion: {builtin: fashion}
families:
  - family: multinomial
    params: {alpha: 1.0}
  - family: naive_bayes
    params: {alpha: 1.0}
"""


@pytest.mark.slow
def test_four_runs_at_once_on_one_fresh_embedded_store(tmp_path, renders):
    from mlflow.tracking import MlflowClient

    path = tmp_path / "concurrent.yaml"
    path.write_text(CONCURRENT)
    env = _env(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "Traceback" not in out and "database is locked" not in out, out[-3000:]
    store = "sqlite:///" + str(tmp_path / "home" / "mlruns" / "mlflow.db")
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 4 and all(r.info.status == "FINISHED" for r in parents)
    assert len(runs) == 4 + 4 * 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_pmodel_ui_serves_the_store(first_run, store, tmp_path):
    import json as _json
    import time
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "ui", "--port", str(port),
                             "--tracking-uri", store], cwd=REPO, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50"
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = _json.loads(response.read())
                break
            except OSError:
                time.sleep(1)
        assert body is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert "tiny" in {e["name"] for e in body["experiments"]}
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        proc.wait(timeout=30)


@pytest.mark.slow
def test_readme_main_command_in_a_fresh_clone(tmp_path, renders):
    """`./pm run chapter1` in a fresh clone (reusing this venv: same pyproject, no reinstall)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    venv = Path(sys.executable).parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PMODEL_HOME", "PREFECT_API_URL")}
    env.update(PMODEL_VENV=str(venv), PREFECT_HOME=str(tmp_path / "prefect"))
    result = subprocess.run(["./pm", "run", "chapter1"], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "best first" in result.stdout and "pmodel ui" in result.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///" + str(clone / "mlruns" / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("chapter1").experiment_id])
    assert len(runs) == 1 + 15
    assert all(r.info.status == "FINISHED" for r in runs)
