"""Fitted models as MLflow models: logged as pyfuncs, found again, and the best one registered.

Each child run logs its fitted model as an MLflow pyfunc made from code
(:mod:`tasks.pyfunc_model`), linked to the run as a LoggedModel named :data:`MODEL_NAME`, so
``runs:/<run id>/model`` and the Models views find it. The model's content is pmodel's own
pickle-free folder, the pyfunc's artifact ``pmodel-model``; no object is pickled.

After a run, :func:`register_champion` registers the best model of each dataset as
``<experiment>-<dataset>`` with the alias ``champion``: by exact KL to the truth, else by exact
held-out log-likelihood. A bound or a Monte Carlo estimate never competes with an exact value.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking

#: The LoggedModel's name, and so the path in ``runs:/<run id>/model``.
MODEL_NAME = tracking.MODEL_ARTIFACT
#: The alias of the registered version that is the best model of its dataset.
CHAMPION_ALIAS = "champion"
#: The models-from-code file MLflow copies into each model and runs on load.
CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
#: pmodel's folder in the model: the pyfunc artifact's key and folder name under ``artifacts/``.
#: The same as ``tasks/pyfunc_model.py``'s, which cannot import this module (it runs on its own
#: when a model loads); ``tasks.pyfunc_model`` is not imported here because it imports mlflow.
ARTIFACT_KEY = "pmodel-model"
#: Parent-run tag prefix: ``pmodel.champion.<dataset>`` says which model won and why.
CHAMPION_TAG = "pmodel.champion"

#: What a champion is chosen by, in order: (metric, "min" | "max"). Both are exact values
#: (``kl_to_truth`` and ``heldout_loglik`` are computed only from an exact likelihood); the
#: bounds (``*_bound``) and sample estimates (``*_estimate``) are other metrics and never enter.
CRITERIA = (("kl_to_truth", "min"), ("heldout_loglik", "max"))

# MLflow's fluent model logging reads the process-wide tracking URI and the thread's active run:
# one pmodel model is logged at a time, with both set for just that call.
_FLUENT = threading.RLock()


# ---------------------------------------------------------------------------
# Logging a fitted model
# ---------------------------------------------------------------------------

def _pip_requirements() -> list[str]:
    """The installed versions of what the model's code imports (pmodel pins the rest). Written
    so that MLflow infers nothing (no import of the model to scan it) and so a loader in another
    environment is warned of a mismatch; loading never installs anything."""
    from importlib import metadata

    pins = []
    for dist in ("pmodel", "mlflow", "numpy", "pandas"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # pmodel run from a checkout without installing it
            continue
    return pins


def signature():
    """The pyfunc's signature: its params (``n``, ``seed``: sample; ``score``: score rows). No
    input schema, so that sampling takes no input (``predict(None, params=...)``); the rows to
    score are checked by the family's domain, with errors that name the row."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    return ModelSignature(inputs=None, params=ParamSchema([
        ParamSpec("n", "long", 16), ParamSpec("seed", "long", 0), ParamSpec("score", "string", "")]))


@contextmanager
def fluent_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """``tracking_uri`` as MLflow's process-wide URI for one call (its fluent API and parts of
    its artifact resolution read no other), one such call at a time; ``$MLFLOW_TRACKING_URI`` as
    it was afterwards (MLflow's own reset would unset it)."""
    tracking._mlflow()
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _FLUENT:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            with _use_tracking_uri(tracking_uri):
                yield
        finally:
            if env is not None:
                os.environ["MLFLOW_TRACKING_URI"] = env


@contextmanager
def _active(tracking_uri: str, run_id: str) -> Iterator[None]:
    """``run_id`` active in this thread, on ``tracking_uri``, for one call."""
    mlflow = tracking._mlflow()
    with fluent_tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id, nested=True,
                                                             log_system_metrics=False):
        yield


def log_pyfunc_model(tracking_uri: str, run_id: str, folder: str | Path,
                     params: dict | None = None, tags: dict[str, str] | None = None) -> str:
    """Log pmodel's saved ``folder`` as run ``run_id``'s MLflow model; return its model id.

    The LoggedModel gets ``params`` and ``tags`` besides the run's params, and the run's
    metrics logged so far (one store query each: log the scores afterwards with
    ``tracking.log_batch(..., model_id=...)`` instead). The run stays RUNNING.
    """
    mlflow = tracking._mlflow()
    folder = Path(folder)
    if folder.name != ARTIFACT_KEY:
        raise ValueError(f"{folder}: the pmodel folder must be named {ARTIFACT_KEY!r} "
                         "(its name under the model's artifacts/)")
    with _active(tracking_uri, run_id), warnings.catch_warnings():
        # the model takes no input to sample from, so there is no input example to give
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=str(CODE_FILE), artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature(), pip_requirements=_pip_requirements(),
            params={k: str(v)[:tracking.MAX_PARAM_VAL_LENGTH] for k, v in (params or {}).items()},
            tags=tags or {})
    # the run ends by its caller; the fluent context's end marked it FINISHED: back to RUNNING
    tracking._client(tracking_uri).update_run(run_id, status="RUNNING")
    return info.model_id


def pmodel_folder(model_dir: str | Path) -> Path:
    """pmodel's saved folder inside a downloaded MLflow model (read from its ``MLmodel``), or
    ``model_dir`` itself when it is a plain pmodel folder (runs recorded before models were
    MLflow models)."""
    model_dir = Path(model_dir)
    if not (model_dir / "MLmodel").exists():
        return model_dir
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = meta.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    if ARTIFACT_KEY not in artifacts:
        raise ValueError(f"{model_dir}: an MLflow model, but not a pmodel one (no "
                         f"{ARTIFACT_KEY!r} artifact)")
    return model_dir / artifacts[ARTIFACT_KEY]["path"]


# ---------------------------------------------------------------------------
# The champion of a dataset
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A finished child run with a logged model, as the champion choice sees it."""

    run_id: str
    run_name: str
    model_id: str | None
    log_prob_kind: str
    metrics: dict


@dataclass(frozen=True)
class Champion:
    """The chosen model, by what, and its registered version (None until registered)."""

    run_id: str
    run_name: str
    model_id: str
    metric: str
    value: float
    why: str
    model_name: str | None = None
    version: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}@{CHAMPION_ALIAS}"


def _ranked(metrics: dict, metric: str, direction: str) -> float:
    """``metric`` as a value to minimise; a missing or NaN one ranks last."""
    value = metrics.get(metric, math.nan)
    if math.isnan(value):
        return math.inf
    return value if direction == "min" else -value


def choose_champion(candidates: list[Candidate]) -> tuple[Champion | None, str]:
    """The best candidate by :data:`CRITERIA`, and why (or None, and why none).

    Only candidates with an exact likelihood and a logged model compete. Ties go to the better
    value of the next criterion, then to the run name (so the choice is reproducible).
    """
    exact = [c for c in candidates if c.log_prob_kind == "exact" and c.model_id]
    for i, (metric, direction) in enumerate(CRITERIA):
        have = [c for c in exact if metric in c.metrics and not math.isnan(c.metrics[metric])]
        if not have:
            continue

        def key(c: Candidate):  # this criterion, then the next ones, then the name
            return (*(_ranked(c.metrics, m, d) for m, d in CRITERIA[i:]), c.run_name)

        best = min(have, key=key)
        value = best.metrics[metric]
        word = "lowest" if direction == "min" else "highest"
        why = (f"{best.run_name}: {word} exact {metric} = {value:.6g} of {len(have)} "
               f"candidate{'s' if len(have) != 1 else ''} with an exact value")
        if math.isinf(value):
            why += f" (every candidate's is {value}; ties broken by the next exact score)"
        others = len(candidates) - len(have)
        if others:
            why += f"; {others} other run{'s' if others != 1 else ''} without it did not compete"
        return Champion(best.run_id, best.run_name, best.model_id, metric, value, why), why
    return None, (f"no champion: none of the {len(candidates)} runs has an exact "
                  f"{' or '.join(m for m, _ in CRITERIA)} (bounds and sample estimates are not "
                  "compared with exact values, nor chosen by)")


def candidates_of(tracking_uri: str, run_ids: list[str]) -> list[Candidate]:
    """The FINISHED runs among ``run_ids``, with their logged model (None when they have none)."""
    client = tracking._client(tracking_uri)
    out = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        if run.info.status != "FINISHED":
            continue
        outputs = run.outputs.model_outputs if run.outputs else []
        ids = [o.model_id for o in outputs]
        model_id = next((m for m in ids if client.get_logged_model(m).name == MODEL_NAME), None)
        out.append(Candidate(run_id, run.info.run_name or run_id, model_id,
                             run.data.tags.get("log_prob_kind", ""),
                             tracking.read_metrics(run)))  # infinities exact, from their tags
    return out


def register_champion(tracking_uri: str, model_name: str, run_ids: list[str],
                      description: str = "") -> tuple[Champion | None, str]:
    """Register the best of ``run_ids``' models as a new version of ``model_name`` and point
    the alias ``champion`` at it; return it and why it won (None and why, when none may).

    ``description`` is the registered model's, set when it is created.
    """
    from mlflow.exceptions import MlflowException

    champion, why = choose_champion(candidates_of(tracking_uri, run_ids))
    if champion is None:
        return None, why
    client = tracking._client(tracking_uri)
    try:
        client.create_registered_model(model_name, description=description or None)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # the model's own artifact location as the source: a "models:/<id>" source is resolved by
    # MLflow's SQL registry through the process-wide tracking URI, not this client's
    version = client.create_model_version(
        model_name, source=client.get_logged_model(champion.model_id).artifact_location,
        run_id=champion.run_id,
        model_id=champion.model_id, description=why,
        tags={"chosen_by": champion.metric, champion.metric: repr(champion.value)})
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version.version)
    return replace(champion, model_name=model_name, version=str(version.version)), why


def champion_run_id(tracking_uri: str, model_name: str) -> str | None:
    """The run of the version ``model_name@champion`` points at; None without one."""
    from mlflow.exceptions import MlflowException

    try:
        return tracking._client(tracking_uri).get_model_version_by_alias(model_name, CHAMPION_ALIAS).run_id
    except MlflowException:
        return None


def challenge_champion(tracking_uri: str, model_name: str, run_id: str) -> str:
    """``run_id``'s model against ``model_name``'s current champion, by the same rules as any
    champion (:func:`choose_champion`): registered as the new champion when it wins, the alias
    left alone when the champion stays. Returns the line that says which and why."""
    previous = champion_run_id(tracking_uri, model_name)
    run_ids = [run_id] + ([previous] if previous and previous != run_id else [])
    champion, why = choose_champion(candidates_of(tracking_uri, run_ids))
    if champion is None:
        return why
    if champion.run_id == previous:
        return f"`models:/{model_name}@{CHAMPION_ALIAS}` stays (run {previous}): {why}"
    champion, why = register_champion(tracking_uri, model_name, run_ids)
    return f"`{champion.uri}` (version {champion.version}, run {champion.run_id}): {why}"


# no retries: a retry after a partial registration would add a second version
@task(cache_policy=NO_CACHE)
def register_champions(tracking_uri: str, parent_run_id: str, experiment: str,
                       results: list) -> dict[str, str]:
    """After every child run ended: each dataset's champion registered (:func:`register_champion`
    over its finished child runs, all seeds together) as ``<experiment>-<dataset>``; which model
    won and why, or why none did, on the parent run (a tag per dataset and a description
    section). Returns dataset -> that line."""
    by_dataset: dict[str, list[str]] = {}
    for r in results:
        if r.run_id and not r.error and not r.skip:
            by_dataset.setdefault(r.dataset, []).append(r.run_id)
    lines = {}
    for dataset, run_ids in by_dataset.items():
        name = f"{experiment}-{dataset}"
        champion, why = register_champion(
            tracking_uri, name, run_ids,
            description=f"The best pmodel model of dataset {dataset!r} in experiment {experiment!r}: "
            "the version with the alias 'champion' has the lowest exact kl_to_truth, else the "
            "highest exact heldout_loglik, of the experiment's latest run.")
        lines[dataset] = (f"`{champion.uri}` (version {champion.version}, run "
                          f"{champion.run_id}): {why}" if champion else why)
    if lines:
        note = tracking.run_tags(tracking_uri, parent_run_id).get(tracking.NOTE_TAG, "")
        section = "\n".join(["", "### Champions (registered models)", ""]
                            + [f"- {dataset}: {line}" for dataset, line in lines.items()])
        tracking.set_tags(tracking_uri, parent_run_id, {
            **{f"{CHAMPION_TAG}.{dataset}": line for dataset, line in lines.items()},
            tracking.NOTE_TAG: note.rstrip() + "\n" + section + "\n"})
    return lines
