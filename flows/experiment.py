"""run_experiment: one experiment file, end to end, in the chapter's order.

    ingest -> validate -> split -> fit -> sample -> score -> log

Datasets are ingested and validated one branch each; a dataset that fails
validation stops only its own branch. Fits of every (dataset, family) pair
run concurrently on the task runner; fit, sample, score and split are cached
on data digest + step config + code version, so a rerun with unchanged
inputs recomputes nothing. MLflow gets a parent run for the flow run and a
child run per (dataset, family). The flow ends Failed when any branch failed.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.states import Failed

from pmodel import paths
from pmodel.config import BuiltinDataset, find_experiment, load_experiment
from pmodel.datasets.build import ensure_built
from pmodel.version import code_version, source_version
from flows.runners import env_task_runner
from tasks import tracking
from tasks.record import log_child_run, log_parent_summary
from tasks.steps import (cache_key, fit_family, ingest_dataset, must_recompute, sample_family,
                         score_family, split_dataset, validate_dataset)


def experiments_dir() -> Path:
    """experiments/ of the project; falls back to the checkout's when $PMODEL_HOME has none."""
    home = paths.project_root() / "experiments"
    if home.is_dir():
        return home
    return Path(__file__).resolve().parents[1] / "experiments"


def family_version(name: str, kind: str) -> str:
    """Digest of the source of a family's class (part of its fit's cache key)."""
    from pmodel.families import family_class

    return source_version(family_class(name, kind))


def dataset_version(builtin: str | None) -> str:
    """Digest of the source of a built-in dataset's loader (part of its split's cache key)."""
    if builtin is None:
        return "-"
    from pmodel.datasets.registry import resolve, get_dataset

    return source_version(resolve(get_dataset(builtin).load))


def _error_text(future) -> str:
    try:
        future.result()
    except BaseException as exc:  # the task's own exception, re-raised by result()
        return f"{type(exc).__name__}: {exc}"
    return "unknown error"


# Deployments take their task runner from the environment of the process that
# runs them (PMODEL_RUNNER=dask, PMODEL_DASK_ADDRESS=tcp://...), read when a run
# starts; `pmodel run` passes its --runner explicitly.
@flow(name="run-experiment", flow_run_name="{experiment}", log_prints=True,
      task_runner=env_task_runner())
def run_experiment(experiment: str, overrides: list[str] | None = None,
                   tracking_uri: str | None = None, refresh: bool = False) -> dict:
    """Run an experiment (a name in experiments/ or a YAML path); return the outcome.

    The outcome: experiment and parent run ids, one result per (dataset,
    family) with its metrics and child run id, and the failures by dataset.
    """
    logger = get_run_logger()
    config_path = find_experiment(experiment, experiments_dir())
    config = load_experiment(config_path, overrides or [])
    t0 = time.perf_counter()
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.prepare_store(uri)
    experiment_id = tracking.get_or_create_experiment(uri, config.name)
    parent = tracking.start_run(uri, experiment_id, config.name,
                                tags={"pmodel.config": str(config_path),
                                      "pmodel.code_version": code_version()})
    tracking.log_params(uri, parent, {"experiment": config.name, "seed": config.seed,
                                      "n_samples": config.n_samples, "n_train": config.build.n_train,
                                      "n_heldout": config.build.n_heldout,
                                      "overrides": " ".join(overrides or []) or "-"})
    outcome = {"experiment": config.name, "experiment_id": experiment_id, "parent_run_id": parent,
               "tracking_uri": uri, "results": [], "failures": {}, "fit_states": {},
               "timings": {"prepare_tracking": time.perf_counter() - t0}}
    try:
        _run(config, uri, experiment_id, parent, outcome, refresh, logger)
    except BaseException as exc:
        tracking.set_tags(uri, parent, {"error": f"{type(exc).__name__}: {exc}"[:5000]})
        tracking.end_run(uri, parent, "FAILED")
        raise
    if outcome["failures"]:
        tracking.end_run(uri, parent, "FAILED")
        return Failed(message="; ".join(f"{k}: {v.splitlines()[0]}" for k, v in outcome["failures"].items()),
                      data=outcome)
    tracking.end_run(uri, parent, "FINISHED")
    return outcome


class _Clock:
    """Wall time of the flow's phases (logged on the parent run as time_*_seconds)."""

    def __init__(self, timings: dict):
        self.timings, self.t = timings, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self.t
        self.t = now


def _run(config, uri, experiment_id, parent, outcome, refresh, logger) -> None:
    clock = _Clock(outcome["timings"])
    context = {"seed": config.seed, "n_samples": config.n_samples, "code_version": code_version()}
    builtin_dir = None
    builtins = sorted({ds.builtin for ds in config.datasets.values() if isinstance(ds, BuiltinDataset)})
    if builtins:
        builtin_dir = str(ensure_built(config.build_config(), builtins, progress=True, log=logger.info))
    clock.lap("build_data")

    # ingest and validate, one branch per dataset
    report_dir = str(paths.reports_dir() / "validation")
    ingest = {name: ingest_dataset.submit(name, ds.model_dump(mode="json", by_alias=False), builtin_dir)
              for name, ds in config.datasets.items()}
    validated = {name: validate_dataset.submit(fut, report_dir) for name, fut in ingest.items()}
    wait(list(validated.values()))
    reports, ingested = [], {}
    for name, fut in validated.items():
        if fut.state.is_completed():
            reports.extend(fut.result())
            ingested[name] = ingest[name].result()
            continue
        # the failing step's own message: which file, rows or images, and rules
        failed = ingest[name] if not ingest[name].state.is_completed() else fut
        exc = failed.result(raise_on_failure=False)
        if getattr(exc, "report_path", None):
            reports.append(str(exc.report_path))  # the failed validation's report is kept too
        outcome["failures"][name] = _error_text(failed)
        logger.error(f"dataset {name!r} failed and is skipped:\n{outcome['failures'][name]}")

    clock.lap("ingest_validate")
    def options(step: str, key: str) -> dict:
        # recompute on --refresh, and whenever the step's output file is missing or corrupt
        return {"refresh_cache": True} if refresh or must_recompute(step, key) else {}

    split_keys = {name: cache_key("split", ing["digest"], config.seed, context["code_version"],
                                  dataset_version(ing["builtin"])) for name, ing in ingested.items()}
    splits = {name: split_dataset.with_options(**options("split", split_keys[name])).submit(
        ing, config.seed, key=split_keys[name]) for name, ing in ingested.items()}

    # fit -> sample -> score for every (dataset, family), concurrently
    branches = []
    for dataset, spec in config.runs():
        if dataset not in ingested:
            continue
        kind = ingested[dataset]["kind"]
        params = spec.params_for(kind)
        label = spec.display(kind)
        fit_key = cache_key("fit", ingested[dataset]["digest"], config.seed, spec.family, params,
                            context["code_version"], family_version(spec.family, kind))
        sample_key = cache_key("sample", fit_key, config.n_samples, config.seed)
        score_key = cache_key("score", sample_key)
        fit = fit_family.with_options(**options("fit", fit_key)).submit(
            splits[dataset], dataset, spec.family, params, label, config.seed, key=fit_key)
        sample = sample_family.with_options(**options("sample", sample_key)).submit(
            fit, dataset, label, config.n_samples, config.seed, key=sample_key)
        score = score_family.with_options(**({"refresh_cache": True} if refresh else {})).submit(
            splits[dataset], fit, sample, dataset, label, key=score_key)
        branches.append((dataset, spec, label, params, splits[dataset], fit, sample, score))
    wait([b[-1] for b in branches])
    clock.lap("split_fit_sample_score")

    # log, in this thread: MLflow writes stay serial within the process
    for dataset, spec, label, params, split, fit, sample, score in branches:
        result = {"dataset": dataset, "family": spec.family, "label": label, "params": params,
                  "entry": spec.entry_label()}
        outcome["fit_states"][f"{dataset}/{label}"] = fit.state.name
        if score.state.is_completed():
            scored = score.result()
            result.update(metrics=scored["metrics"], notes=scored["notes"], skipped=scored["skipped"],
                          log_prob_kind=scored["log_prob_kind"], taxonomy=scored.get("taxonomy", ""),
                          problem_path=split.result(),
                          model_path=fit.result(), samples_path=sample.result())
        else:
            failed = next(f for f in (split, fit, sample, score) if not f.state.is_completed())
            result["error"] = _error_text(failed)
            outcome["failures"][f"{dataset}/{label}"] = result["error"]
            logger.error(f"{dataset} / {label} failed: {result['error']}")
        result["run_id"] = log_child_run(uri, experiment_id, parent, result, ingested[dataset], context)
        outcome["results"].append({k: v for k, v in result.items()
                                   if k not in ("problem_path", "model_path", "samples_path")})
    clock.lap("log_children")
    log_parent_summary(uri, parent, config.model_dump(mode="json", by_alias=True), outcome["results"],
                       sorted(set(reports)), outcome["failures"])
    clock.lap("log_summary")
    tracking.log_metrics(uri, parent, {f"time_{k}_seconds": v for k, v in outcome["timings"].items()})
