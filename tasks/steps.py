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
import logging
import time
import zipfile
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from pmodel import paths
from pmodel.datasets.digest import path_digest
from pmodel.paths import atomic_write
from pmodel.records import Ingested

_logger = logging.getLogger(__name__)


def work_dir() -> Path:
    """Where tasks keep problems, models and samples: ``<root>/.cache/work``."""
    return paths.project_root() / ".cache" / "work"


def cache_key(*parts) -> str:
    """A step's cache key: sha256 of its inputs as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# Where each cached step writes its output, by its key: the cache key function
# below checks that output before Prefect may reuse the cached result.
_OUTPUTS = {"split": ("problems", ".npz"), "fit": ("models", ""), "sample": ("samples", ".npz")}


def output_path(step: str, key: str) -> Path:
    folder, suffix = _OUTPUTS[step]
    return work_dir() / folder / f"{key}{suffix}"


def _npz_intact(path: Path) -> bool:
    """Whether a .npz opens and every member passes its CRC check (a truncated or
    overwritten file fails)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def intact(path: Path) -> bool:
    """Whether a cached output (a .npz, or a saved model folder) is whole."""
    path = Path(path)
    if path.suffix == ".npz":
        return path.is_file() and _npz_intact(path)
    try:
        json.loads((path / "model.json").read_text())
        json.loads((path / "fit.json").read_text())
    except (OSError, ValueError):
        return False
    return _npz_intact(path / "arrays.npz")


def _by_key(context, parameters) -> str:
    return parameters["key"]


_CACHED = dict(cache_key_fn=_by_key, persist_result=True, cache_expiration=None)


def must_recompute(step: str, key: str) -> bool:
    """Whether a cached step's output (named by its key) is missing or corrupt, so that
    the step must run again even if Prefect holds a cached result for the key. A
    corrupt file is reported with its path (then rewritten by the step)."""
    path = output_path(step, key)
    if intact(path):
        return False
    if path.exists():
        _logger.warning("cached %s output %s is corrupt: recomputing it", step, path)
    return True


def _atomic_npz(path: Path, **arrays) -> Path:
    """Write arrays to ``path`` under a unique temporary name, then rename (any
    number of writers, in any processes, of the same path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


# ---------------------------------------------------------------------------
# ingest, validate, split
# ---------------------------------------------------------------------------

@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE, task_run_name="ingest-{name}")
def ingest_dataset(name: str, spec: dict, builtin_dir: str | None) -> Ingested:
    """Locate a dataset's files and digest them."""
    if "builtin" in spec:
        from pmodel.datasets.registry import get_dataset
        from pmodel.problems import builtin_files

        b = spec["builtin"]
        files = builtin_files(b, Path(builtin_dir))
        kind = get_dataset(b).kind
    else:
        b = None
        kind = spec["kind"]
        files = {k: Path(spec[k]) for k in ("train", "heldout", "schema_file") if spec.get(k)}
    for role, p in files.items():
        if not p.exists():
            raise FileNotFoundError(f"dataset {name!r}: {role} file {p} does not exist")
    digests = {role: path_digest(p) for role, p in files.items()}
    return Ingested(name=name, kind=kind, builtin=b, spec=spec,
                    files={k: str(v) for k, v in files.items()}, digests=digests,
                    digest=cache_key(sorted(digests.items())))


def validation_kind(kind: str, builtin: str | None = None, schema_file: str | None = None) -> str:
    """The ``pmodel validate`` KIND for a dataset's files: a built-in dataset's name, a
    user's schema file, or the rules of the data kind."""
    if builtin:
        return builtin
    if kind == "categorical":
        return schema_file or "categorical"
    return {"image": "images", "points": "land"}[kind]


def validation_key(ingested: Ingested, kind: str) -> str | None:
    """The key of a validation: the dataset, its files (paths and content digests), the
    rules (the code of ``pmodel`` and ``tasks``) and Great Expectations' version; None
    without digests."""
    if not ingested.digests:
        return None
    from importlib.metadata import version

    from pmodel.version import code_version

    return cache_key("validate", ingested.name, kind, sorted(ingested.files.items()),
                     sorted(ingested.digests.items()), code_version(), version("great_expectations"),
                     *([table_rules(ingested.spec)] if ingested.kind == "categorical" else []))


def table_rules(spec: dict) -> dict:
    """A categorical dataset's own rules, from its config entry: what an empty cell means
    (``missing``) and the most distinct values a column may have (``max_categories``)."""
    from pmodel.datasets.schema import MAX_CATEGORIES

    return {"missing": spec.get("missing") or "error",
            "max_categories": spec.get("max_categories") or MAX_CATEGORIES}


@task(retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE, task_run_name="validate-{ingested.name}")
def validate_dataset(ingested: Ingested, report_dir: str, refresh: bool = False) -> list[str]:
    """Great Expectations on every file of a dataset, then on held-out against train;
    raises DataValidationError naming file, rows or images and rules. Returns the
    JSON report paths.

    Files whose exact bytes passed the same rules before (same digests, same code, same
    Great Expectations) are not validated again: their reports are returned, and the log
    says so. Failures are never remembered; ``refresh`` validates again."""
    kind = validation_kind(ingested.kind, ingested.builtin, ingested.files.get("schema_file"))
    key = validation_key(ingested, kind)
    passed = work_dir() / "validated" / f"{key}.json"
    if key is not None and not refresh:
        try:
            reports = json.loads(passed.read_text())["reports"]
        except (OSError, ValueError, KeyError, TypeError):
            reports = None
        if reports and all(Path(r).is_file() for r in reports):
            _logger.info("dataset %r: these exact files passed validation before (reports: %s); "
                         "not validated again", ingested.name, ", ".join(reports))
            _log_warnings(ingested.name, reports)
            return reports
    from tasks.validation import validate, validate_heldout_against_train

    files = ingested.files
    rules = table_rules(ingested.spec) if ingested.kind == "categorical" else {}
    reports, failed = [], []
    for role in ("train", "heldout"):
        if role not in files:
            continue
        report = validate(kind, files[role], report_dir=report_dir, **rules)
        reports.append(str(report.report_path))
        if not report.success:
            failed.append(report)
    if not failed and "heldout" in files and (report := validate_heldout_against_train(
            kind, files["train"], files["heldout"], report_dir=report_dir)):
        reports.append(str(report.report_path))
        failed += [] if report.success else [report]
    _log_warnings(ingested.name, reports)
    if failed:
        for report in failed[1:]:
            failed[0].notes.append(f"also invalid: {report.path} (report: {report.report_path})")
        failed[0].raise_if_failed()
    if key is not None:
        passed.parent.mkdir(parents=True, exist_ok=True)
        _atomic_text(passed, json.dumps({"reports": reports}))
    return reports


def _log_warnings(dataset: str, reports: list[str]) -> None:
    """Log the warnings the validation reports hold (a column with one value only, ...)."""
    for path in reports:
        try:
            warnings = json.loads(Path(path).read_text()).get("warnings", [])
        except (OSError, ValueError):
            continue
        for warning in warnings:
            _logger.warning("dataset %r, %s: %s", dataset, Path(path).name, warning)


@task(retries=2, retry_delay_seconds=1, task_run_name="split-{ingested.name}", **_CACHED)
def split_dataset(ingested: Ingested, seed: int, key: str) -> str:
    """Load the files into train / held-out arrays; write them as one problem file."""
    from pmodel.problems import load_builtin, load_user, save_problem

    if ingested.builtin:
        problem = load_builtin(ingested.builtin, Path(ingested.files["train"]).parent,
                               with_truth=False)
    else:
        spec, files = ingested.spec, ingested.files
        problem = load_user(ingested.name, ingested.kind, Path(files["train"]),
                            Path(files["heldout"]) if "heldout" in files else None,
                            schema=Path(files["schema_file"]) if "schema_file" in files else None,
                            heldout_fraction=spec.get("heldout_fraction", 0.2), seed=seed,
                            **(table_rules(spec) if ingested.kind == "categorical" else {}))
    return str(save_problem(problem, output_path("split", key)))


# ---------------------------------------------------------------------------
# fit, sample, score
# ---------------------------------------------------------------------------

def _require(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} is gone (a cached step refers to it): rerun with --refresh")
    return p


#: the sample grids a deep image fit draws while it trains, in its model folder
PROGRESS_DIR = "progress"


#: the samples of each map drawn while a deep family trains on land
PROGRESS_POINTS = 1000


def _watch_training(folder: Path, pictures: int, truth=None):
    """``before_fit`` for :func:`pmodel.evaluate.fit_model`: a deep family on images (16 samples
    in a grid) or on land (:data:`PROGRESS_POINTS` samples on the map; ``truth`` is the land's)
    draws samples ``pictures`` times while it trains (evenly over its budget's epochs), each
    written to ``folder/progress/samples-epoch-NNNN.png``, for the child run's image sequence.
    Users' points have no land to draw them on: no pictures."""

    def before_fit(model) -> None:
        if pictures < 1 or not hasattr(model, "watch") or model.kind not in ("image", "points"):
            return
        on_land = model.kind == "points" and getattr(truth, "name", None) == "land"
        if model.kind == "points" and not on_land:
            return
        from pmodel import plots

        out = folder / PROGRESS_DIR
        out.mkdir(parents=True, exist_ok=True)
        if on_land:
            model.watch(lambda epoch, x: plots.land_map(
                truth.land, x, out / f"samples-epoch-{epoch:04d}.png",
                title=f"{model.name}: {len(x)} samples after epoch {epoch}"),
                pictures=pictures, n_samples=PROGRESS_POINTS)
            return
        model.watch(lambda epoch, x: plots.image_grid(
            x, out / f"samples-epoch-{epoch:04d}.png", n_cols=8,
            title=f"{model.name}: 16 samples after epoch {epoch}"), pictures=pictures, n_samples=16)

    return before_fit


def progress_pictures(model_path: str) -> list[tuple[int, Path]]:
    """The (epoch, PNG) pictures a fit drew while training, in order."""
    folder = Path(model_path) / PROGRESS_DIR
    return sorted((int(p.stem.rsplit("-", 1)[1]), p) for p in folder.glob("samples-epoch-*.png"))


@task(task_run_name="fit-{dataset}-{label}", **_CACHED)
def fit_family(problem_path: str, dataset: str, family: str, params: dict, label: str,
               seed: int, key: str, pictures: int = 0) -> str:
    """Fit one family to a problem's training data (seeded); save the model; return its folder.
    A deep family on images draws ``pictures`` sample grids while it trains."""
    from pmodel.evaluate import fit_model
    from pmodel.problems import load_problem

    problem = load_problem(_require(problem_path))
    path = output_path("fit", key)
    path.mkdir(parents=True, exist_ok=True)
    model, seconds = fit_model(family, params, problem, seed=seed,
                               before_fit=_watch_training(path, pictures, problem.truth))
    _atomic_text(path / "fit.json", json.dumps({"fit_seconds": seconds}))
    model.save(path)
    return str(path)


def load_model(model_path: str) -> tuple[object, float]:
    """A fitted model from its folder, and the seconds its fit took."""
    from pmodel.families import load_model as _load

    model = _load(_require(model_path))
    fit = json.loads((Path(model_path) / "fit.json").read_text())
    return model, fit["fit_seconds"]


@task(task_run_name="sample-{dataset}-{label}", **_CACHED)
def sample_family(model_path: str, dataset: str, label: str, n_samples: int, seed: int, key: str) -> str:
    """Draw samples from a fitted model (seeded); return the .npz path."""
    from pmodel.evaluate import draw_samples

    model, _ = load_model(model_path)
    samples, seconds = draw_samples(model, n_samples, seed=seed)
    return str(_atomic_npz(output_path("sample", key), samples=samples, sample_seconds=seconds))


def load_samples(samples_path: str) -> tuple[np.ndarray, float]:
    with np.load(_require(samples_path)) as f:
        return f["samples"], float(f["sample_seconds"])


@task(task_run_name="score-{dataset}-{label}", **_CACHED)
def score_family(problem_path: str, model_path: str, samples_path: str, dataset: str,
                 label: str, key: str) -> dict:
    """Every score that applies (pmodel.evaluate.score), with the skipped ones' reasons."""
    from pmodel.evaluate import score
    from pmodel.problems import load_problem

    problem = load_problem(_require(problem_path))
    model, fit_seconds = load_model(model_path)
    samples, sample_seconds = load_samples(samples_path)
    metrics, skipped = score(model, problem, samples, fit_seconds=fit_seconds,
                             sample_seconds=sample_seconds)
    return {"metrics": metrics, "skipped": skipped, "notes": list(problem.notes),
            "log_prob_kind": model.log_prob_kind, "taxonomy": model.taxonomy,
            "tags": dict(getattr(model, "device_info_", {}))}
