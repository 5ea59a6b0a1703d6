"""Prefect tasks: thin adapters from the flow to pmodel, in the chapter's order.

ingest -> validate -> split -> fit -> sample -> score -> log

Every task takes and returns small things (paths, digests, dicts of floats);
arrays and fitted models live in files under the work folder, named by the
cache key, so Prefect's cache and retries stay cheap. fit, sample, score and
split cache on an explicit ``key``: a digest of the data, the config that
matters to the step and the code version.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from pmodel import paths
from pmodel.datasets.digest import path_digest


def work_dir() -> Path:
    """Where tasks keep problems, models and samples: ``<root>/.cache/work``."""
    return paths.project_root() / ".cache" / "work"


def cache_key(*parts) -> str:
    """A step's cache key: sha256 of its inputs as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _by_key(context, parameters) -> str:
    return parameters["key"]


_CACHED = dict(cache_key_fn=_by_key, persist_result=True, cache_expiration=None)


# ---------------------------------------------------------------------------
# ingest, validate, split
# ---------------------------------------------------------------------------

@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE, task_run_name="ingest-{name}")
def ingest_dataset(name: str, spec: dict, builtin_dir: str | None) -> dict:
    """Locate a dataset's files and digest them: {kind, builtin, files, digests, digest}."""
    from pmodel.config import BUILTIN_KINDS

    if "builtin" in spec:
        b = spec["builtin"]
        d = Path(builtin_dir)
        files = {"fashion": {"train": d / "fashion-train.csv", "heldout": d / "fashion-heldout.csv"},
                 "pixels": {"train": d / "pixels-train", "heldout": d / "pixels-heldout"},
                 "land": {"train": d / "land-train.csv", "heldout": d / "land-heldout.csv"}}[b]
        kind = BUILTIN_KINDS[b]
    else:
        b = None
        kind = spec["kind"]
        files = {k: Path(spec[k]) for k in ("train", "heldout", "schema_file") if spec.get(k)}
    for role, p in files.items():
        if not p.exists():
            raise FileNotFoundError(f"dataset {name!r}: {role} file {p} does not exist")
    digests = {role: path_digest(p) for role, p in files.items()}
    return {"name": name, "kind": kind, "builtin": b, "spec": spec,
            "files": {k: str(v) for k, v in files.items()}, "digests": digests,
            "digest": cache_key(sorted(digests.items()))}


def validation_kind(ingested: dict) -> str:
    """The ``pmodel validate`` KIND for a dataset's files."""
    if ingested["builtin"]:
        return ingested["builtin"]
    if ingested["kind"] == "categorical":
        return ingested["files"].get("schema_file", "categorical")
    return {"image": "images", "points": "land"}[ingested["kind"]]


@task(retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE, task_run_name="validate-{ingested[name]}")
def validate_dataset(ingested: dict, report_dir: str) -> list[str]:
    """Great Expectations on every file of a dataset, then on held-out against train;
    raises DataValidationError naming file, rows or images and rules. Returns the
    JSON report paths."""
    from tasks.validation import validate, validate_heldout_against_train

    reports, failed = [], []
    for role in ("train", "heldout"):
        if role not in ingested["files"]:
            continue
        report = validate(validation_kind(ingested), ingested["files"][role], report_dir=report_dir)
        reports.append(str(report.report_path))
        if not report.success:
            failed.append(report)
    files = ingested["files"]
    if not failed and "heldout" in files and (report := validate_heldout_against_train(
            validation_kind(ingested), files["train"], files["heldout"], report_dir=report_dir)):
        reports.append(str(report.report_path))
        failed += [] if report.success else [report]
    if failed:
        for report in failed[1:]:
            failed[0].notes.append(f"also invalid: {report.path} (report: {report.report_path})")
        failed[0].raise_if_failed()
    return reports


@task(retries=2, retry_delay_seconds=1, task_run_name="split-{ingested[name]}", **_CACHED)
def split_dataset(ingested: dict, seed: int, key: str) -> str:
    """Load the files into train / held-out arrays; write them as one problem file."""
    from pmodel.problems import load_builtin, load_user, save_problem

    if ingested["builtin"]:
        problem = load_builtin(ingested["builtin"], Path(ingested["files"]["train"]).parent,
                               with_truth=False)
    else:
        spec, files = ingested["spec"], ingested["files"]
        problem = load_user(ingested["name"], ingested["kind"], Path(files["train"]),
                            Path(files["heldout"]) if "heldout" in files else None,
                            schema=Path(files["schema_file"]) if "schema_file" in files else None,
                            heldout_fraction=spec.get("heldout_fraction", 0.2), seed=seed)
    path = work_dir() / "problems" / f"{key}.npz"
    save_problem(problem, path, builtin=ingested["builtin"])
    return str(path)


# ---------------------------------------------------------------------------
# fit, sample, score
# ---------------------------------------------------------------------------

def _require(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} is gone (a cached step refers to it): rerun with --refresh")
    return p


@task(task_run_name="fit-{dataset}-{label}", **_CACHED)
def fit_family(problem_path: str, dataset: str, family: str, params: dict, label: str, key: str) -> str:
    """Fit one family to a problem's training data; pickle the model; return its path."""
    from pmodel.families import make_family
    from pmodel.problems import load_problem

    problem = load_problem(_require(problem_path))
    model = make_family(family, problem.domain, **params)
    t = time.perf_counter()
    model.fit(problem.train)
    seconds = time.perf_counter() - t
    path = work_dir() / "models" / f"{key}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".partial"), "wb") as f:
        pickle.dump({"model": model, "fit_seconds": seconds}, f)
    path.with_suffix(".partial").replace(path)
    return str(path)


def load_model(model_path: str) -> tuple[object, float]:
    with open(_require(model_path), "rb") as f:
        saved = pickle.load(f)
    return saved["model"], saved["fit_seconds"]


@task(task_run_name="sample-{dataset}-{label}", **_CACHED)
def sample_family(model_path: str, dataset: str, label: str, n_samples: int, seed: int, key: str) -> str:
    """Draw samples from a fitted model (numpy Generator from the seed); return the .npy path."""
    model, _ = load_model(model_path)
    t = time.perf_counter()
    samples = model.sample(n_samples, rng=np.random.default_rng([seed, 7]))
    seconds = time.perf_counter() - t
    path = work_dir() / "samples" / f"{key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, samples=samples, sample_seconds=seconds)
    tmp.replace(path)
    return str(path)


def load_samples(samples_path: str) -> tuple[np.ndarray, float]:
    with np.load(_require(samples_path)) as f:
        return f["samples"], float(f["sample_seconds"])


@task(task_run_name="score-{dataset}-{label}", **_CACHED)
def score_family(problem_path: str, model_path: str, samples_path: str, dataset: str,
                 label: str, key: str) -> dict:
    """Every score that applies (pmodel.evaluate.score), plus timings and parameter counts."""
    from pmodel.evaluate import parameter_counts, score
    from pmodel.problems import load_problem

    problem = load_problem(_require(problem_path))
    model, fit_seconds = load_model(model_path)
    samples, sample_seconds = load_samples(samples_path)
    metrics, notes = score(model, problem, samples)
    metrics.update(fit_seconds=fit_seconds, sample_seconds=sample_seconds,
                   **parameter_counts(model))
    return {"metrics": metrics, "notes": notes + list(problem.notes)}
