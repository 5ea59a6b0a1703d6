"""The MLflow adapter against a real SQLite store in a temporary folder.

Everything written through ``tasks.tracking`` is read back through a separate
``MlflowClient`` (and, for the concurrency test, from another process).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from tasks import tracking

REPO = Path(__file__).resolve().parents[1]
SHA256 = "0123456789abcdef" * 4  # a 64-hex digest


def _uri(folder: Path) -> str:
    return "sqlite:///" + str(folder / "store" / "mlflow.db")


def _reader(uri: str):
    """A client of its own, not the adapter's cached one."""
    mlflow = tracking._mlflow()
    return mlflow.tracking.MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """One prepared store (URI, folder) shared by the tests that need no fresh one:
    each uses its own experiment. Creating a store takes seconds."""
    folder = tmp_path_factory.mktemp("shared")
    uri = _uri(folder)
    tracking.prepare_store(uri)
    return uri, folder


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


# ---------------------------------------------------------------------------
# Pure parts: URIs, commands, limits
# ---------------------------------------------------------------------------

def test_import_does_not_import_mlflow():
    code = "import sys, tasks.tracking; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_child_env(), cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_default_uris_live_in_the_project(monkeypatch, tmp_path):
    monkeypatch.setenv("PMODEL_HOME", str(tmp_path))
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert tracking.default_artifact_root() == (tmp_path / "mlruns" / "artifacts").as_uri()


def test_resolve_tracking_uri_prefers_cli_then_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PMODEL_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri() == tracking.default_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.resolve_tracking_uri() == "http://tracking.example:5000"
    assert tracking.resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_run_url():
    assert (tracking.run_url("sqlite:////x/mlflow.db", "3", "abc")
            == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert (tracking.run_url("https://mlflow.example/", "3", "abc")
            == "https://mlflow.example/#/experiments/3/runs/abc?workflowType=machine_learning")


def test_limits_match_installed_mlflow():
    tracking._mlflow()
    from mlflow.utils import validation

    assert tracking._MAX_PARAM_VAL_LENGTH == validation.MAX_PARAM_VAL_LENGTH
    assert tracking._MAX_TAG_VAL_LENGTH == validation.MAX_TAG_VAL_LENGTH
    assert tracking._MAX_DATASET_DIGEST_SIZE == validation.MAX_DATASET_DIGEST_SIZE
    assert tracking._MAX_PARAMS_TAGS_PER_BATCH <= validation.MAX_PARAMS_TAGS_PER_BATCH
    assert tracking._MAX_METRICS_PER_BATCH <= validation.MAX_METRICS_PER_BATCH


def test_ui_command_is_accepted_by_mlflow_server(tmp_path):
    uri = _uri(tmp_path)
    argv = tracking.ui_command(uri, port=5123)
    assert argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    tracking._mlflow()
    from mlflow.cli import server

    # Parse (not run) the options with the installed CLI: unknown flags fail here.
    ctx = server.make_context("server", argv[4:])
    assert ctx.params["backend_store_uri"] == uri
    assert ctx.params["default_artifact_root"] == (tmp_path / "store" / "artifacts").as_uri()
    assert ctx.params["serve_artifacts"] is False
    assert (ctx.params["host"], ctx.params["port"]) == ("127.0.0.1", 5123)
    with pytest.raises(ValueError, match="tracking server"):
        tracking.ui_command("http://127.0.0.1:5000")


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------

def test_prepare_store_creates_the_database_once(tmp_path):
    uri = _uri(tmp_path)
    db = tmp_path / "store" / "mlflow.db"
    assert not db.exists()
    tracking.prepare_store(uri)
    assert db.stat().st_size > 0
    default = _reader(uri).get_experiment("0")
    assert default.artifact_location == (tmp_path / "store" / "artifacts" / "0").as_uri()
    tracking.prepare_store(uri)  # again: quick, nothing changes
    assert [e.name for e in _reader(uri).search_experiments()] == ["Default"]


def test_prepare_store_ignores_servers(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracking.prepare_store("http://127.0.0.1:1")  # nothing listens: fails if it connects


def test_experiment_is_reused_and_restored(store):
    uri, folder = store
    eid = tracking.get_or_create_experiment(uri, "chapter 1")
    assert tracking.get_or_create_experiment(uri, "chapter 1") == eid
    reader = _reader(uri)
    assert reader.get_experiment(eid).artifact_location == (
        (folder / "store" / "artifacts" / "chapter-1").as_uri())
    reader.delete_experiment(eid)
    assert reader.get_experiment(eid).lifecycle_stage == "deleted"
    assert tracking.get_or_create_experiment(uri, "chapter 1") == eid
    assert reader.get_experiment(eid).lifecycle_stage == "active"


# ---------------------------------------------------------------------------
# A parent with two children, read back
# ---------------------------------------------------------------------------

@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "samples.png"
    Image.new("L", (8, 8), color=128).save(path)
    return path


def test_parent_and_children_read_back(store, tmp_path, png):
    uri, _ = store
    eid = tracking.get_or_create_experiment(uri, "chapter1")
    parent = tracking.start_run(uri, eid, "chapter1", tags={"experiment-file": "chapter1.yaml"})
    children = {}
    for family, status in [("naive_bayes", "FINISHED"), ("multinomial", "FAILED")]:
        run_id = tracking.start_run(uri, eid, f"fashion/{family}", parent_run_id=parent,
                                    tags={"dataset": "fashion", "family": family})
        tracking.log_params(uri, run_id, {"alpha": 1.0, "n_train": 50, "family": family,
                                          "long": "x" * 7000})
        tracking.log_metrics(uri, run_id, {"kl": math.inf, "log-lik-min": -math.inf,
                                           "test-nll": 5.125, "odd": math.nan})
        tracking.set_tags(uri, run_id, {"seed": 0})
        tracking.log_artifact(uri, run_id, png, "plots")
        tracking.log_dict(uri, run_id, {"alpha": 1.0, "cells": 4032}, "config.json")
        tracking.log_dict(uri, run_id, {"alpha": 1.0}, "config.yaml")
        tracking.log_text(uri, run_id, "naive Bayes table", "notes/table.md")
        tracking.log_dataset_input(uri, run_id, name="fashion-train", digest=SHA256,
                                   source=str(tmp_path / "train.csv"), context="training",
                                   n_rows=50)
        tracking.end_run(uri, run_id, status)
        children[run_id] = (family, status)
    tracking.end_run(uri, parent, "FINISHED")

    reader = _reader(uri)
    assert reader.get_run(parent).info.status == "FINISHED"
    found = reader.search_runs([eid], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert {run.info.run_id for run in found} == set(children)
    for run in found:
        family, status = children[run.info.run_id]
        assert run.info.status == status
        assert run.info.run_name == f"fashion/{family}"
        tags = run.data.tags
        assert (tags["dataset"], tags["family"], tags["seed"]) == ("fashion", family, "0")
        assert tags["mlflow.parentRunId"] == parent

        params = run.data.params
        assert (params["alpha"], params["n_train"], params["family"]) == ("1.0", "50", family)
        assert len(params["long"]) == 6000 and "truncated: 7000 chars" in params["long"]

        # A non-finite value is never stored as a number (MLflow would keep +-DBL_MAX):
        # left out, flagged by <key>_is_infinite, and exact in the tag metric.<key>.
        metrics = run.data.metrics
        assert metrics["test-nll"] == 5.125
        assert "kl" not in metrics and tags["metric.kl"] == "inf" and metrics["kl_is_infinite"] == 1
        assert "log-lik-min" not in metrics and tags["metric.log-lik-min"] == "-inf"
        assert "odd" not in metrics and tags["metric.odd"] == "nan"
        assert "metric.test-nll" not in tags
        assert tracking.read_metric(run, "kl") == math.inf
        assert tracking.read_metric(run, "log-lik-min") == -math.inf
        assert math.isnan(tracking.read_metric(run, "odd"))
        assert tracking.read_metric(run, "test-nll") == 5.125

        run_id, downloads = run.info.run_id, tmp_path / f"dl-{family}"
        listed = {a.path for a in reader.list_artifacts(run_id)}
        assert listed == {"plots", "config.json", "config.yaml", "notes"}
        assert [a.path for a in reader.list_artifacts(run_id, "plots")] == ["plots/samples.png"]
        picture = reader.download_artifacts(run_id, "plots/samples.png", str(downloads))
        assert Image.open(picture).size == (8, 8)
        config = reader.download_artifacts(run_id, "config.json", str(downloads))
        assert json.loads(Path(config).read_text()) == {"alpha": 1.0, "cells": 4032}
        notes = reader.download_artifacts(run_id, "notes/table.md", str(downloads))
        assert Path(notes).read_text() == "naive Bayes table"

        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == "fashion-train"
        assert dataset.digest == SHA256[:36]
        assert json.loads(dataset.profile) == {"sha256": SHA256, "num_rows": 50}
        assert json.loads(dataset.source) == {"uri": str(tmp_path / "train.csv")}
        assert dataset.source_type == "local"
        assert ([(t.key, t.value) for t in dataset_input.tags]
                == [("mlflow.data.context", "training")])


def test_integrity_errors_are_recognised():
    tracking._mlflow()
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import IntegrityError

    clash = IntegrityError("INSERT INTO datasets", {}, Exception("UNIQUE constraint failed"))
    try:
        raise MlflowException("wrapped", error_code="BAD_REQUEST") from clash
    except MlflowException as exc:
        assert tracking._is_integrity_error(exc)
    assert not tracking._is_integrity_error(MlflowException("digest too long"))


def test_end_run_rejects_unknown_status(store):
    uri, _ = store
    eid = tracking.get_or_create_experiment(uri, "statuses")
    run_id = tracking.start_run(uri, eid, "r")
    with pytest.raises(ValueError, match="FINISHED"):
        tracking.end_run(uri, run_id, "DONE")
    assert _reader(uri).get_run(run_id).info.status == "RUNNING"


def test_log_artifact_folder_and_missing_file(store, tmp_path, png):
    uri, _ = store
    eid = tracking.get_or_create_experiment(uri, "folders")
    run_id = tracking.start_run(uri, eid, "r")
    folder = tmp_path / "grids"
    folder.mkdir()
    (folder / "a.png").write_bytes(png.read_bytes())
    tracking.log_artifact(uri, run_id, folder)
    assert [a.path for a in _reader(uri).list_artifacts(run_id, "grids")] == ["grids/a.png"]
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        tracking.log_artifact(uri, run_id, tmp_path / "nothing.png")


# ---------------------------------------------------------------------------
# Several processes on one fresh store
# ---------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tasks import tracking

    folder, index = Path(sys.argv[1]), sys.argv[2]
    uri = "sqlite:///" + str(folder / "store" / "mlflow.db")
    tracking._mlflow()                      # pay the import before the barrier
    (folder / f"ready-{index}").touch()
    while not (folder / "start").exists():
        time.sleep(0.001)
    tracking.prepare_store(uri)
    eid = tracking.get_or_create_experiment(uri, "together")
    parent = tracking.start_run(uri, eid, f"parent-{index}", tags={"worker": index})
    child = tracking.start_run(uri, eid, f"child-{index}", parent_run_id=parent)
    tracking.log_metrics(uri, child, {"score": float(index)})
    (folder / f"runs-{index}").touch()      # second barrier: all log one dataset at once
    while len(list(folder.glob("runs-*"))) < 4:
        time.sleep(0.001)
    tracking.log_dataset_input(uri, child, name="shared", digest="f" * 64,
                               source="data.csv", context="training")
    tracking.end_run(uri, child, "FINISHED")
    tracking.end_run(uri, parent, "FINISHED")
""")


def test_four_processes_share_one_fresh_store(tmp_path):
    n = 4
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(i)],
                              cwd=REPO, env=_child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < n:
            assert all(p.poll() is None for p in procs), "a worker died before the barrier"
            assert time.monotonic() < deadline, "workers never got ready"
            time.sleep(0.01)
        (tmp_path / "start").touch()
        results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, _, err in results:
        assert code == 0, err

    uri = _uri(tmp_path)
    reader = _reader(uri)
    experiments = [e for e in reader.search_experiments() if e.name == "together"]
    assert len(experiments) == 1
    eid = experiments[0].experiment_id
    runs = reader.search_runs([eid])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["worker"] for r in parents) == [str(i) for i in range(n)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(children) == n
    assert ({r.data.tags["mlflow.parentRunId"] for r in children}
            == {r.info.run_id for r in parents})
    assert sorted(r.data.metrics["score"] for r in children) == [float(i) for i in range(n)]
    assert all(len(r.inputs.dataset_inputs) == 1 for r in children)


def test_dataset_shape_is_counted_once_per_version_of_a_file(tmp_path):
    from tasks.record import dataset_shape

    path = tmp_path / "rows.csv"
    path.write_text("colour,shape\nred,round\nblue,square\n")
    n, schema = dataset_shape("categorical", path)
    assert n == 2 and schema is not None
    assert dataset_shape("categorical", path)[0] == 2
    with open(path, "a") as f:  # a new version of the file: counted again
        f.write("green,round\n")
    assert dataset_shape("categorical", path)[0] == 3
    folder = tmp_path / "images"
    folder.mkdir()
    assert dataset_shape("image", folder)[0] == 0
    from PIL import Image

    Image.new("L", (4, 3)).save(folder / "a.png")
    assert dataset_shape("image", folder)[0] == 1
