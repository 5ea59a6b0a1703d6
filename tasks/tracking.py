"""Record runs in MLflow: experiments, parent and child runs, scores, pictures.

This is the one module of the project that imports ``mlflow``. It does so lazily
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
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per model logged or loaded, in the logs
}

#: Run states :func:`end_run` accepts.
END_STATUSES = ("FINISHED", "FAILED", "KILLED")

#: Tag that makes a run the child of another (what the MLflow UI nests on).
PARENT_RUN_TAG = "mlflow.parentRunId"

#: Input tag MLflow uses for a dataset's role ("training", "eval", ...).
DATASET_CONTEXT_TAG = "mlflow.data.context"

#: Address ``pmodel ui`` serves a local store on.
UI_HOST, UI_PORT = "127.0.0.1", 5000

#: Experiment tag MLflow 3 reads to choose between its GenAI and model-training
#: views, and our value: model training (custom models), so the experiment opens
#: on its runs. MLflow 3.17's UI also keeps the choice in the page address
#: (``workflowType``), which the links we print set (:data:`UI_VIEW`).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
UI_VIEW = "workflowType=machine_learning"

#: Tag MLflow shows as the description of an experiment or a run (Markdown).
NOTE_TAG = "mlflow.note.content"

#: A runs-table view kept in an experiment tag, opened by the page address
#: ``?viewStateShareKey=KEY`` (MLflow's "share view"): sorting, grouping and
#: columns. :data:`RUNS_VIEW` is the one pmodel's links open.
SHARED_VIEW_PREFIX, RUNS_VIEW = "mlflow.sharedViewState.", "pmodel-runs"

# Limits of the installed MLflow (mlflow/utils/validation.py); checked in tests.
_MAX_PARAM_VAL_LENGTH = MAX_PARAM_VAL_LENGTH = 6000
_MAX_TAG_VAL_LENGTH = 8000
_MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
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
    with paths.file_lock(db.with_name(db.name + ".lock")):
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
            return client.create_experiment(name, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def set_experiment_tags(tracking_uri: str, experiment_id: str, tags: dict[str, str]) -> None:
    """Set experiment tags (values longer than MLflow's 20000 characters cut with a note)."""
    client = _client(tracking_uri)
    for key, value in tags.items():
        client.set_experiment_tag(experiment_id, key,
                                  _clip(str(value), _MAX_EXPERIMENT_TAG_VAL_LENGTH, "tag", key))


def experiment_id_of_run(tracking_uri: str, run_id: str) -> str:
    return _client(tracking_uri).get_run(run_id).info.experiment_id


def _path_safe(name: str) -> str:
    """A folder name for an experiment: runs of other characters become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "experiment"


def start_run(tracking_uri: str, experiment_id: str, run_name: str, *,
              parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> str:
    """Create a RUNNING run and return its id; a child run when ``parent_run_id``
    is given (tag ``mlflow.parentRunId``). Every run gets :func:`provenance_tags`."""
    all_tags = {**provenance_tags(), **{key: str(value) for key, value in (tags or {}).items()}}
    if parent_run_id is not None:
        all_tags[PARENT_RUN_TAG] = parent_run_id
    run = _client(tracking_uri).create_run(experiment_id, tags=all_tags, run_name=run_name)
    return run.info.run_id


def end_run(tracking_uri: str, run_id: str, status: str) -> None:
    """Mark a run ``FINISHED``, ``FAILED`` or ``KILLED``."""
    if status not in END_STATUSES:
        raise ValueError(f"status must be one of {END_STATUSES}, got {status!r}")
    _client(tracking_uri).set_terminated(run_id, status=status)


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------

#: Where MLflow expects the code's provenance (mlflow/utils/mlflow_tags.py).
SOURCE_NAME_TAG, SOURCE_TYPE_TAG = "mlflow.source.name", "mlflow.source.type"
GIT_COMMIT_TAG, GIT_BRANCH_TAG = "mlflow.source.git.commit", "mlflow.source.git.branch"
GIT_REPO_TAG, USER_TAG = "mlflow.source.git.repoURL", "mlflow.user"
#: Ours: whether the checkout had uncommitted changes, or why no commit is recorded.
GIT_STATE_TAG = "pmodel.git.state"


def _git(root: Path, *args: str) -> str | None:
    """``git -C root ARGS`` stripped output, None when git is missing or fails."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER: a container
        return "unknown"


@functools.lru_cache(maxsize=4)
def provenance_tags(root: str | None = None) -> dict[str, str]:
    """Tags saying which code made a run, where MLflow's UI looks for them.

    ``root`` is the checkout of the code (default: this file's). A clean git
    checkout gives its commit (and branch, and remote when there is one) with
    :data:`GIT_STATE_TAG` ``clean``; a dirty one the same with ``dirty: N
    files changed`` (the commit alone does not reproduce the run); no checkout
    (or no git) records no commit and says why.
    """
    code_root = Path(root) if root else Path(__file__).resolve().parents[1]
    tags = {USER_TAG: _user(), SOURCE_TYPE_TAG: "LOCAL",
            SOURCE_NAME_TAG: "pmodel (flows/experiment.py run_experiment)"}
    commit = _git(code_root, "rev-parse", "--verify", "HEAD")
    if commit is None:
        why = ("git is not installed" if _git(Path("/"), "--version") is None
               else f"{code_root} is not a git checkout (or has no commit)")
        tags[GIT_STATE_TAG] = f"no commit recorded: {why}"
        return tags
    tags[GIT_COMMIT_TAG] = commit
    branch = _git(code_root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        tags[GIT_BRANCH_TAG] = branch
    remote = _git(code_root, "config", "--get", "remote.origin.url")
    if remote:
        tags[GIT_REPO_TAG] = remote
    changes = _git(code_root, "status", "--porcelain", "--untracked-files=no")
    if changes is None:
        tags[GIT_STATE_TAG] = "unknown (git status failed)"
    elif changes:
        n = len(changes.splitlines())
        tags[GIT_STATE_TAG] = f"dirty: {n} tracked file{'s' if n != 1 else ''} changed since the commit"
    else:
        tags[GIT_STATE_TAG] = "clean"
    return tags


def ui_base_url(tracking_uri: str, port: int = UI_PORT) -> str:
    """The UI's address: the server's own, or where ``pmodel ui`` serves a local store."""
    return tracking_uri.rstrip("/") if _is_server(tracking_uri) else f"http://{UI_HOST}:{port}"


def experiment_url(tracking_uri: str, experiment_id: str, port: int = UI_PORT,
                   view: str | None = None) -> str:
    """The experiment's runs table, in MLflow's model-training view, opened on
    the shared view ``view`` when given (see :func:`set_runs_view`)."""
    shared = f"&viewStateShareKey={view}" if view else ""
    return f"{ui_base_url(tracking_uri, port)}/#/experiments/{experiment_id}/runs?{UI_VIEW}{shared}"


def artifact_link(experiment_id: str, run_id: str, path: str) -> str:
    """A link, relative to the UI's page, that opens ``path`` in the run's artifacts: for
    Markdown the UI shows (a description), so it holds on any host and port."""
    return f"#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}?{UI_VIEW}"


def set_runs_view(tracking_uri: str, experiment_id: str, *, sort_by: str, ascending: bool,
                  metrics: list[str], params: list[str] = (), tags: list[str] = (),
                  search_filter: str = "", key: str = RUNS_VIEW) -> None:
    """Keep a runs-table view in the experiment: sorted by metric ``sort_by``, the runs
    ``search_filter`` selects (MLflow's search syntax; "" all), with these columns in this
    order, each wide enough to show its whole name.

    No grouping: MLflow's group rows aggregate every column with one function (min, max or
    average), so a group's row would pair the best KL with the worst log-likelihood."""
    def column(kind: str, name: str) -> str:
        return f"{kind}.`{name}`"

    columns = ([column("tags", t) for t in tags] + [column("metrics", m) for m in metrics]
               + [column("params", p) for p in params])
    # MLflow cuts a header at its column's width ("heldout_loglik_..." for both the bound and
    # the in-support mean): about 7 px a character, and room for the sort arrow
    widths = {c: max(90, 7 * len(c.split("`")[1]) + 40) for c in columns}
    state = {"orderByKey": column("metrics", sort_by), "orderByAsc": ascending,
             "searchFilter": search_filter, "startTime": "ALL", "lifecycleFilter": "Active",
             "datasetsFilter": [], "modelVersionFilter": "All Runs",
             "selectedColumns": columns, "columnOrder": columns, "columnWidths": widths,
             "groupBy": None, "runListHidden": False, "viewMaximized": False}
    set_experiment_tags(tracking_uri, experiment_id, {SHARED_VIEW_PREFIX + key: json.dumps(state)})


def runs_view_link(experiment_id: str, key: str = RUNS_VIEW) -> str:
    """A link, relative to the UI's page, that opens the runs-table view ``key`` (for
    Markdown the UI shows: it holds on any host and port)."""
    return f"#/experiments/{experiment_id}/runs?{UI_VIEW}&viewStateShareKey={key}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str, port: int = UI_PORT) -> str:
    """Where to look at a run (model-training view): the server's UI, or the
    address ``pmodel ui`` serves a local store on."""
    return f"{ui_base_url(tracking_uri, port)}/#/experiments/{experiment_id}/runs/{run_id}?{UI_VIEW}"


def ui_links(tracking_uri: str, port: int = UI_PORT, max_experiments: int = 10) -> list[tuple[str, str]]:
    """``(experiment name, runs-table link)`` for the store's experiments that
    have runs, most recently created first."""
    client = _client(tracking_uri)
    out = []
    for experiment in client.search_experiments(order_by=["creation_time DESC"],
                                                max_results=max_experiments + 1):
        if not client.search_runs([experiment.experiment_id], max_results=1):
            continue
        view = RUNS_VIEW if SHARED_VIEW_PREFIX + RUNS_VIEW in experiment.tags else None
        out.append((experiment.name, experiment_url(tracking_uri, experiment.experiment_id, port,
                                                    view=view)))
    return out[:max_experiments]


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
    # job execution serves GenAI features (scorers, prompt optimisation) that
    # pmodel does not use; off, the server starts faster and with fewer processes
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
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
    log_batch(tracking_uri, run_id, params=params)


def _non_finite_name(value: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


#: Tag that holds the exact value of a metric that is not a finite number.
METRIC_TAG_PREFIX = "metric."

#: Suffix of the 0/1 metric that flags an infinite score.
INFINITE_SUFFIX = "_is_infinite"


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int = 0, *,
                flag_infinite=()) -> None:
    """Log scores at ``step``; a value that is not a finite number is never
    logged as a number.

    MLflow's SQL store cannot hold infinities: it would store +-inf as
    +-1.7976931348623157e308, which the UI shows as is and sorts as a real
    number (and its charts drop). So a non-finite value is left out of the
    metrics (MLflow then sorts the run last on that column), the tag
    ``metric.<key>`` holds it exactly (``"inf"``, ``"-inf"`` or ``"nan"``) and,
    for an infinity, the metric ``<key>_is_infinite`` is 1. Keys listed in
    ``flag_infinite`` also get ``<key>_is_infinite`` = 0 when finite, so the
    flag is a column on every run. :func:`read_metric` gives back the exact value.
    """
    log_batch(tracking_uri, run_id, metrics=metrics, step=step, flag_infinite=flag_infinite)


def _metric_entries(metrics: dict[str, float], step: int, flag_infinite, timestamp: int):
    """MLflow metrics and tags for scores: a non-finite value becomes a tag (and a flag)."""
    from mlflow.entities import Metric, RunTag

    entries, marks = [], []
    flag_infinite = set(flag_infinite)
    for key, value in metrics.items():
        value = float(value)
        name = _non_finite_name(value)
        if name is None:
            entries.append(Metric(key, value, timestamp, step))
            if key in flag_infinite:
                entries.append(Metric(key + INFINITE_SUFFIX, 0.0, timestamp, step))
            continue
        marks.append(RunTag(METRIC_TAG_PREFIX + key, name))
        if name != "nan":
            entries.append(Metric(key + INFINITE_SUFFIX, 1.0, timestamp, step))
    return entries, marks


def log_batch(tracking_uri: str, run_id: str, *, metrics: dict[str, float] | None = None,
              params: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
              history: dict[str, list[float]] | None = None, step: int = 0,
              flag_infinite=(), model_id: str | None = None) -> None:
    """Metrics (as :func:`log_metrics` logs them), params, tags and step metrics
    (``history``: key -> one value per step) in as few store calls as MLflow's
    batch limits allow (one, for a child run). ``model_id``: the run's logged model,
    which gets the metrics too (the Models views show them)."""
    from mlflow.entities import Metric, Param, RunTag

    timestamp = _now_ms()
    m, tag_entries = _metric_entries(metrics or {}, step, flag_infinite, timestamp)
    if model_id is not None:
        m = [Metric(e.key, e.value, e.timestamp, e.step, model_id=model_id) for e in m]
    for key, values in (history or {}).items():
        for i, value in enumerate(values):
            value = float(value)
            if math.isfinite(value):
                m.append(Metric(key, value, timestamp, i))
    p = [Param(key, _clip(str(value), _MAX_PARAM_VAL_LENGTH, "param", key))
         for key, value in (params or {}).items()]
    tag_entries += [RunTag(key, _clip(str(value), _MAX_TAG_VAL_LENGTH, "tag", key))
                    for key, value in (tags or {}).items()]
    client = _client(tracking_uri)
    while m or p or tag_entries:
        # MLflow's limits per call: 1000 metrics, 100 params, 100 tags, 1000 entries in all
        p_chunk, p = p[:_MAX_PARAMS_TAGS_PER_BATCH], p[_MAX_PARAMS_TAGS_PER_BATCH:]
        t_chunk, tag_entries = tag_entries[:_MAX_PARAMS_TAGS_PER_BATCH], tag_entries[_MAX_PARAMS_TAGS_PER_BATCH:]
        room = _MAX_METRICS_PER_BATCH - len(p_chunk) - len(t_chunk)
        m_chunk, m = m[:room], m[room:]
        client.log_batch(run_id, metrics=m_chunk, params=p_chunk, tags=t_chunk)


def read_metric(run, key: str) -> float:
    """The exact value of metric ``key`` of a fetched MLflow ``Run``: from the
    ``metric.<key>`` tag that :func:`log_metrics` writes for a non-finite
    value, else the stored metric (KeyError when neither exists)."""
    mark = run.data.tags.get(METRIC_TAG_PREFIX + key)
    if mark is not None:
        return float(mark)
    return run.data.metrics[key]


def read_metrics(run) -> dict[str, float]:
    """Every score of a fetched run with its exact value (infinities from
    their tags), without the ``<key>_is_infinite`` flags."""
    marked = {t[len(METRIC_TAG_PREFIX):] for t in run.data.tags if t.startswith(METRIC_TAG_PREFIX)}
    out = {}
    for key, value in run.data.metrics.items():
        base = key[: -len(INFINITE_SUFFIX)] if key.endswith(INFINITE_SUFFIX) else None
        if base is not None and (base in marked or base in run.data.metrics):
            continue
        out[key] = value
    for tag, value in run.data.tags.items():
        if tag.startswith(METRIC_TAG_PREFIX):
            out[tag[len(METRIC_TAG_PREFIX):]] = float(value)
    return out


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set run tags (values stringified; longer than 8000 characters cut with a note)."""
    log_batch(tracking_uri, run_id, tags=tags)


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


def log_artifacts(tracking_uri: str, run_id: str, folder: str | Path,
                  artifact_path: str | None = None) -> None:
    """Copy the contents of ``folder`` (its files and subfolders, as laid out there)
    into the run's artifacts, in one call."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no artifact folder to log at {folder}")
    _client(tracking_uri).log_artifacts(run_id, str(folder), artifact_path)


def list_artifacts(tracking_uri: str, run_id: str, path: str | None = None) -> list:
    """The run's artifacts directly under ``path`` (the root by default)."""
    return _client(tracking_uri).list_artifacts(run_id, path)


def log_image_steps(tracking_uri: str, run_id: str, key: str, pictures: list[tuple[int, Path]]) -> None:
    """PNG pictures as one MLflow image sequence under ``key``, each at its step (the UI's
    image slider on the run's page)."""
    from PIL import Image

    client = _client(tracking_uri)
    for step, path in pictures:
        with Image.open(path) as im:
            client.log_image(run_id, im.convert("RGB"), key=key, step=int(step), synchronous=True)


#: seconds between two samples of the system metrics (MLflow's default is 10; a pmodel run is
#: often shorter); MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it
SYSTEM_METRICS_INTERVAL_S = 2.0


@contextmanager
def system_metrics(tracking_uri: str, run_id: str | None) -> Iterator[None]:
    """MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk, network,
    and the GPU's where pynvml sees one) sampled on ``run_id`` while the block runs, every
    :data:`SYSTEM_METRICS_INTERVAL_S` seconds; nothing when ``run_id`` is None. MLflow's
    ``SystemMetricsMonitor`` with the run id and store passed explicitly (pmodel has no active
    run)."""
    if run_id is None:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                   tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def log_text(tracking_uri: str, run_id: str, text: str, artifact_file: str) -> None:
    """Write ``text`` to the run's artifact ``artifact_file`` (e.g. ``"notes/run.md"``)."""
    _client(tracking_uri).log_text(run_id, text, artifact_file)


def log_dict(tracking_uri: str, run_id: str, data: dict, artifact_file: str) -> None:
    """Write ``data`` to the run's artifact ``artifact_file``: YAML for ``.yaml``
    or ``.yml``, JSON otherwise (objects JSON cannot hold become strings)."""
    _client(tracking_uri).log_dict(run_id, data, artifact_file)


def log_table(tracking_uri: str, run_id: str, frame, artifact_file: str) -> None:
    """Log a table (a DataFrame) as MLflow does with ``log_table``: a JSON
    artifact the UI shows as a table. Infinities become the strings ``"inf"``
    and ``"-inf"`` (JSON has no infinity), NaN becomes null."""
    import pandas as pd

    def cell(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return v

    clean = pd.DataFrame({c: [cell(v) for v in frame[c].tolist()] for c in frame.columns})
    _client(tracking_uri).log_table(run_id, clean, artifact_file)


def columns_schema(columns: dict[str, str]) -> dict:
    """An MLflow column schema (what ``mlflow.data`` datasets record), from
    ``{column: type}`` with MLflow type names (``"string"``, ``"double"``...)."""
    return {"mlflow_colspec": [{"type": t, "name": c, "required": True} for c, t in columns.items()]}


def tensor_schema(dtype: str, shape: list[int]) -> dict:
    """An MLflow tensor schema, e.g. ``tensor_schema("uint8", [-1, 32, 32])`` for images."""
    spec = [{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": list(shape)}}]
    return {"mlflow_tensorspec": {"features": json.dumps(spec), "targets": None}}


def log_dataset_input(tracking_uri: str, run_id: str, *, name: str, digest: str, source: str,
                      context: str, n_rows: int | None = None, schema: dict | None = None) -> None:
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
                      source=json.dumps({"uri": str(source)}),
                      schema=json.dumps(schema) if schema is not None else None,
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
# Fitted models in runs
# ---------------------------------------------------------------------------

#: Where a child run keeps its fitted model (``pmodel.families`` save format).
MODEL_ARTIFACT = "model"


def download_model_folder(run_ref: str, tracking_uri: str | None = None,
                          dst: str | Path | None = None) -> Path:
    """The local folder of a recorded model, in ``pmodel.families`` save format: ``run_ref`` is a
    run id, ``runs:/<run id>/model`` or ``models:/<name>@<alias>`` (``/<version>``). A run's
    model is an MLflow pyfunc (``tasks/models.py``) holding that folder, found inside it; a run
    recorded before that holds the folder itself. Downloads into ``dst`` (default: a new
    temporary folder)."""
    import tempfile

    from mlflow.exceptions import MlflowException

    from tasks import models

    ref = run_ref.strip()
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    if ref.startswith("models:/"):
        what, source = f"model {ref}", ref
    else:
        if ref.startswith("runs:/"):
            run_id, _, path = ref.removeprefix("runs:/").partition("/")
            path = path.strip("/") or MODEL_ARTIFACT
        else:
            run_id, path = ref, MODEL_ARTIFACT
        try:
            client.get_run(run_id)
        except MlflowException:
            raise ValueError(f"no run {run_id!r} in the tracking store {uri}") from None
        what, source = f"run {run_id}", f"runs:/{run_id}/{path}"
    dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="pmodel-model-"))
    try:
        with models.fluent_tracking_uri(uri):  # a run's model resolves through the global URI
            local = _mlflow().artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst),
                                                           tracking_uri=uri, registry_uri=uri)
    except (MlflowException, OSError) as exc:
        raise ValueError(f"{what} has no model at {source} (runs before models were recorded "
                         f"have none): {exc}") from None
    return models.pmodel_folder(local)


def load_model_from_run(run_ref: str, tracking_uri: str | None = None):
    """The fitted model a child run recorded (or ``models:/NAME@champion``): ``pmodel.load_model``
    on the folder :func:`download_model_folder` finds.

    Examples
    --------
    >>> model = load_model_from_run("runs:/0a1b.../model")                  # doctest: +SKIP
    >>> model.sample(16, rng=np.random.default_rng(0))                     # doctest: +SKIP
    """
    from pmodel import load_model

    return load_model(download_model_folder(run_ref, tracking_uri))


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
