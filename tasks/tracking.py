"""Record runs in MLflow: experiments, parent and child runs, scores, pictures.

This is the one module of pmodel that imports ``mlflow``. It does so lazily
(importing MLflow costs about 1.5 s), after setting, unless the user already
set them, the environment variables that keep MLflow offline and quiet:

- ``MLFLOW_DISABLE_TELEMETRY=true`` and ``DO_NOT_TRACK=true``: no usage
  telemetry (MLflow 3 would otherwise send events and fetch a remote config);
- ``MLFLOW_DISABLE_AGENT_HINT=1``: no hint printed on import;
- ``GIT_PYTHON_REFRESH=quiet``: no warning when ``git`` is missing.

MLflow's fluent "active run" is thread-local and Prefect runs tasks on threads,
so nothing here uses it: every function takes the tracking URI and the run id
and talks to the store through :class:`mlflow.tracking.MlflowClient`.

The embedded default store is a SQLite file with an artifact folder beside it,
both in the project (``mlruns/mlflow.db`` and ``mlruns/artifacts``); an
``http(s)://`` URI points at a tracking server instead.

Examples
--------
>>> uri = resolve_tracking_uri()                                    # doctest: +SKIP
>>> prepare_store(uri)                                              # doctest: +SKIP
>>> eid = get_or_create_experiment(uri, "chapter1")                 # doctest: +SKIP
>>> parent = start_run(uri, eid, "chapter1")                        # doctest: +SKIP
>>> child = start_run(uri, eid, "fashion/naive_bayes", parent_run_id=parent,
...                   tags={"dataset": "fashion", "family": "naive_bayes"})  # doctest: +SKIP
>>> log_metrics(uri, child, {"kl": float("inf"), "test-nll": 5.1})  # doctest: +SKIP
>>> end_run(uri, child, "FINISHED")                                 # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pmodel import paths

_logger = logging.getLogger(__name__)

#: Environment defaults applied before MLflow is imported (see module docstring).
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_AGENT_HINT": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}

#: Run states :func:`end_run` accepts.
END_STATUSES = ("FINISHED", "FAILED", "KILLED")

#: Tag that makes a run the child of another (what the MLflow UI nests on).
PARENT_RUN_TAG = "mlflow.parentRunId"

#: Input tag MLflow uses for a dataset's role ("training", "eval", ...).
DATASET_CONTEXT_TAG = "mlflow.data.context"

#: Address ``pmodel ui`` serves a local store on.
UI_HOST, UI_PORT = "127.0.0.1", 5000

# Limits of the installed MLflow (mlflow/utils/validation.py); checked in tests.
_MAX_PARAM_VAL_LENGTH = 6000
_MAX_TAG_VAL_LENGTH = 8000
_MAX_DATASET_DIGEST_SIZE = 36
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000

# A dataset written by two runs of one experiment at once can collide on the
# store's (experiment, name, digest) key; the loser retries and reuses it.
_INPUT_RETRIES = 3


# ---------------------------------------------------------------------------
# Where the store is
# ---------------------------------------------------------------------------

def default_tracking_uri() -> str:
    """The embedded store: ``sqlite:///<root>/mlruns/mlflow.db`` (absolute)."""
    return "sqlite:///" + str(paths.project_root() / "mlruns" / "mlflow.db")


def default_artifact_root() -> str:
    """The embedded artifact folder, ``<root>/mlruns/artifacts``, as a file URI."""
    return (paths.project_root() / "mlruns" / "artifacts").as_uri()


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """The tracking URI to use: ``cli_value``, else ``$MLFLOW_TRACKING_URI``,
    else :func:`default_tracking_uri`."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for others and in-memory)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a SQLite file (for the
    embedded store that is :func:`default_artifact_root`), the project folder
    for another local database, the server's choice for a server (None)."""
    if _is_server(tracking_uri):
        return None
    db = _sqlite_path(tracking_uri)
    if db is not None:
        return (db.resolve().parent / "artifacts").as_uri()
    return default_artifact_root()


# ---------------------------------------------------------------------------
# MLflow, imported late and quietly
# ---------------------------------------------------------------------------

def _quiet_env() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def _mlflow():
    """Import and return ``mlflow`` with :data:`QUIET_ENV` in place."""
    _quiet_env()
    import mlflow
    import mlflow.tracking

    return mlflow


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (no lock where there is no fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows: MLflow itself skips its init lock there too
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_store(tracking_uri: str) -> None:
    """Make a SQLite store ready to use, once, safely across processes.

    Creates the database's folder, then, under an exclusive lock on
    ``<db>.lock``, opens the store: on a fresh file MLflow creates the tables,
    runs its alembic migrations and adds the "Default" experiment, which is not
    safe to do from several processes at once. On an existing store this only
    checks the schema. Server URIs need nothing: the server
    owns its store.
    """
    if _is_server(tracking_uri):
        return
    db = _sqlite_path(tracking_uri)
    if db is None:  # another database (postgres, ...): MLflow migrates on connect
        _open_client(tracking_uri)
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    mlflow = _mlflow()
    with _file_lock(db.with_name(db.name + ".lock")):
        if not db.exists() or db.stat().st_size == 0:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            # Built directly so that the "Default" experiment's artifacts go to
            # our artifact root, not to ./mlruns of whatever the cwd is.
            SqlAlchemyStore(tracking_uri, _artifact_root(tracking_uri)).engine.dispose()
        mlflow.tracking.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)


def _open_client(tracking_uri: str):
    return _mlflow().tracking.MlflowClient(tracking_uri=tracking_uri)


@functools.lru_cache(maxsize=16)
def _client(tracking_uri: str):
    """A client on a prepared store (prepared once per process and URI)."""
    prepare_store(tracking_uri)
    return _open_client(tracking_uri)


# ---------------------------------------------------------------------------
# Experiments and runs
# ---------------------------------------------------------------------------

def get_or_create_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (or restored, if deleted) as needed.

    Safe when several processes create the same new experiment at once: the
    losers of the race catch MLflow's ``RESOURCE_ALREADY_EXISTS`` and read the
    winner's. On a local store the artifacts go to ``<artifact root>/<name>``.
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = _artifact_root(tracking_uri)
        location = None if root is None else f"{root}/{_path_safe(name)}"
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _path_safe(name: str) -> str:
    """A folder name for an experiment: runs of other characters become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "experiment"


def start_run(tracking_uri: str, experiment_id: str, run_name: str, *,
              parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> str:
    """Create a RUNNING run and return its id; a child run when ``parent_run_id``
    is given (tag ``mlflow.parentRunId``)."""
    all_tags = {key: str(value) for key, value in (tags or {}).items()}
    if parent_run_id is not None:
        all_tags[PARENT_RUN_TAG] = parent_run_id
    run = _client(tracking_uri).create_run(experiment_id, tags=all_tags, run_name=run_name)
    return run.info.run_id


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    """Mark a run ``FINISHED``, ``FAILED`` or ``KILLED``."""
    if status not in END_STATUSES:
        raise ValueError(f"status must be one of {END_STATUSES}, got {status!r}")
    _client(tracking_uri).set_terminated(run_id, status=status)


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where to look at a run: the server's UI, or the address ``pmodel ui``
    serves a local store on."""
    base = tracking_uri.rstrip("/") if _is_server(tracking_uri) else f"http://{UI_HOST}:{UI_PORT}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def ui_command(tracking_uri: str, host: str = UI_HOST, port: int = UI_PORT) -> list[str]:
    """The argv of an MLflow UI server on a local store.

    Artifacts stay where the client wrote them (file URIs per experiment); the
    server reads them from there to show them, so it is started with
    ``--no-serve-artifacts`` (no proxied artifact store of its own).
    Also puts :data:`QUIET_ENV` in ``os.environ`` for the child to inherit.

    Examples
    --------
    >>> subprocess.run(ui_command(resolve_tracking_uri()))    # doctest: +SKIP
    """
    if _is_server(tracking_uri):
        raise ValueError(f"{tracking_uri} is a tracking server: open it in a browser instead")
    _quiet_env()
    return [sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", tracking_uri,
            "--default-artifact-root", _artifact_root(tracking_uri),
            "--no-serve-artifacts",
            "--host", host, "--port", str(port),
            "--workers", "1"]


# ---------------------------------------------------------------------------
# Params, metrics, tags
# ---------------------------------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def _clip(text: str, limit: int, what: str, key: str) -> str:
    """``text`` cut to ``limit`` characters, ending in a note of the cut."""
    if len(text) <= limit:
        return text
    note = f"... [truncated: {len(text)} chars, MLflow keeps {limit}]"
    _logger.warning("%s %r is %d characters long; logged truncated to %d",
                    what, key, len(text), limit)
    return text[: limit - len(note)] + note


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def log_params(tracking_uri: str, run_id: str, params: dict[str, Any]) -> None:
    """Log hyperparameters, stringified; values longer than MLflow's limit
    (6000 characters) are cut and end in a note saying so."""
    from mlflow.entities import Param

    entries = [Param(key, _clip(str(value), _MAX_PARAM_VAL_LENGTH, "param", key))
               for key, value in params.items()]
    client = _client(tracking_uri)
    for chunk in _chunks(entries, _MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk)


def _non_finite_name(value: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log scores at ``step``, non-finite ones included and marked.

    MLflow's SQL store (``SqlAlchemyStore.sanitize_metric_value``) cannot hold
    infinities: it stores +inf as 1.7976931348623157e308 and -inf as
    -1.7976931348623157e308 (the largest floats) and reads them back as such.
    NaN is stored as 0 with an ``is_nan`` flag and read back as nan. So every
    non-finite value is logged as is (the store keeps what it can) and the run
    also gets the tag ``metric.<key>`` = ``"inf"``, ``"-inf"`` or ``"nan"``:
    nothing is hidden, and :func:`read_metric` gives back the exact value.
    The tag describes the last non-finite value logged for that key.
    """
    from mlflow.entities import Metric, RunTag

    timestamp = _now_ms()
    entries, marks = [], []
    for key, value in metrics.items():
        value = float(value)
        entries.append(Metric(key, value, timestamp, step))
        if (name := _non_finite_name(value)) is not None:
            marks.append(RunTag(f"metric.{key}", name))
    client = _client(tracking_uri)
    for chunk in _chunks(entries, _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks(marks, _MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk)


def read_metric(run, key: str) -> float:
    """The exact value of metric ``key`` of a fetched MLflow ``Run``: the
    ``metric.<key>`` tag written by :func:`log_metrics` wins over the stored
    stand-in for infinities."""
    mark = run.data.tags.get(f"metric.{key}")
    if mark is not None:
        return float(mark)
    return run.data.metrics[key]


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set run tags (values stringified; longer than 8000 characters cut with a note)."""
    from mlflow.entities import RunTag

    entries = [RunTag(key, _clip(str(value), _MAX_TAG_VAL_LENGTH, "tag", key))
               for key, value in tags.items()]
    client = _client(tracking_uri)
    for chunk in _chunks(entries, _MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk)


# ---------------------------------------------------------------------------
# Artifacts and inputs
# ---------------------------------------------------------------------------

def log_artifact(tracking_uri: str, run_id: str, local_path: str | Path,
                 artifact_path: str | None = None) -> None:
    """Copy a file, or a folder (kept as a folder of that name), into the run's
    artifacts, under ``artifact_path`` when given."""
    local_path = Path(local_path)
    if not local_path.exists():
        raise FileNotFoundError(f"no artifact to log at {local_path}")
    _client(tracking_uri).log_artifact(run_id, str(local_path), artifact_path)


def log_text(tracking_uri: str, run_id: str, text: str, artifact_file: str) -> None:
    """Write ``text`` to the run's artifact ``artifact_file`` (e.g. ``"notes/run.md"``)."""
    _client(tracking_uri).log_text(run_id, text, artifact_file)


def log_dict(tracking_uri: str, run_id: str, data: dict, artifact_file: str) -> None:
    """Write ``data`` to the run's artifact ``artifact_file``: YAML for ``.yaml``
    or ``.yml``, JSON otherwise (objects JSON cannot hold become strings)."""
    _client(tracking_uri).log_dict(run_id, data, artifact_file)


def log_dataset_input(tracking_uri: str, run_id: str, *, name: str, digest: str, source: str,
                      context: str, n_rows: int | None = None) -> None:
    """Record a dataset as an input of the run, as ``mlflow.log_input`` does.

    MLflow keeps at most 36 characters of a digest, so a sha256 hex digest is
    stored cut to its first 36 characters; the full digest is in the dataset's
    profile (``{"sha256": ..., "num_rows": ...}``). ``source`` is a path or
    URI of the data (source type ``local``); ``context`` its role
    (``"training"``, ``"test"``, ...), as the input tag ``mlflow.data.context``.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    profile: dict[str, Any] = {"sha256": digest}
    if n_rows is not None:
        profile["num_rows"] = int(n_rows)
    dataset = Dataset(name=name, digest=digest[:_MAX_DATASET_DIGEST_SIZE], source_type="local",
                      source=json.dumps({"uri": str(source)}), schema=None,
                      profile=json.dumps(profile))
    tags = [InputTag(key=DATASET_CONTEXT_TAG, value=context)]
    inputs = [DatasetInput(dataset=dataset, tags=tags)]
    client = _client(tracking_uri)
    for attempt in range(_INPUT_RETRIES):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as exc:
            if not _is_integrity_error(exc) or attempt == _INPUT_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _is_integrity_error(exc: BaseException) -> bool:
    """Whether an MLflow error comes from a unique-key clash in the database."""
    from sqlalchemy.exc import IntegrityError

    while exc is not None:
        if isinstance(exc, IntegrityError) or "IntegrityError" in str(exc):
            return True
        exc = exc.__cause__
    return False


def last_input_digest(tracking_uri: str, experiment_name: str, source: str | Path,
                      *, max_runs: int = 500) -> str | None:
    """The full sha256 of ``source`` as logged by the most recent FINISHED run of
    the experiment that used it as an input; None when no finished run did."""
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    wanted = str(Path(source).resolve())
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=max_runs)
    for run in runs:
        for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
            ds = dataset_input.dataset
            try:
                uri = json.loads(ds.source).get("uri")
                full = json.loads(ds.profile or "{}").get("sha256", ds.digest)
            except (ValueError, AttributeError):
                continue
            if uri and str(Path(uri).resolve()) == wanted:
                return full
    return None


# ---------------------------------------------------------------------------
# Runs left RUNNING (used by tasks/recovery.py)
# ---------------------------------------------------------------------------

def search_running_runs(tracking_uri: str) -> list[dict]:
    """Every RUNNING run of the store, in every experiment (deleted ones too):
    ``{"run_id", "experiment_id", "start_time" (ms), "tags"}`` each."""
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    found = []
    for ids in _chunks(experiment_ids, 100):
        token = None
        while True:
            page = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'",
                                      run_view_type=ViewType.ALL, max_results=1000,
                                      page_token=token)
            found.extend({"run_id": r.info.run_id, "experiment_id": r.info.experiment_id,
                          "start_time": r.info.start_time, "tags": dict(r.data.tags)}
                         for r in page)
            token = page.token
            if not token:
                break
    return found


def run_tags(tracking_uri: str, run_id: str) -> dict[str, str]:
    """The tags of one run ({} when there is no such run)."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(_client(tracking_uri).get_run(run_id).data.tags)
    except MlflowException:
        return {}


def store_write_problems(tracking_uri: str) -> list[str]:
    """Why a run could not write to a local store, each naming its path; [] when
    it can (and always for a tracking server, which answers for itself).

    A SQLite store needs its database file and its folder writable (SQLite
    writes a journal beside the file), and the artifact folder.
    """
    if _is_server(tracking_uri):
        return []
    problems = []
    db = _sqlite_path(tracking_uri)
    places = [] if db is None else [(db, "the MLflow store's database"),
                                    (db.parent, "the MLflow store's folder")]
    root = _artifact_root(tracking_uri)
    if root is not None and root.startswith("file://"):
        from urllib.parse import unquote, urlparse

        places.append((Path(unquote(urlparse(root).path)), "the MLflow artifact folder"))
    for path, what in places:
        blocked = paths.unwritable(path)
        if blocked is not None:
            problems.append(f"{what} {path} is not writable ({blocked} is read-only "
                            f"for this user){f' [store: {tracking_uri}]' if what.endswith('database') else ''}")
    return problems
