"""run_experiment: one experiment file, end to end, in the chapter's order.

    ingest -> validate -> split -> fit -> sample -> score -> log

Datasets are ingested and validated one branch each; a dataset that fails
validation stops only its own branch. With ``seeds: [..]`` the whole experiment
(built-in data, splits, fits, samples, scores, child runs) runs once per seed under
the one parent run, each seed's built-in data in its own folder; the children are
tagged with their seed, and the parent also reports each (dataset, family)'s mean
and standard deviation over the seeds (``pmodel.repeats``). Fits of every (dataset, family) pair
run concurrently on the task runner; fit, sample, score and split are cached
on data digest + step config + code version, so a rerun with unchanged
inputs recomputes nothing. MLflow gets a parent run for the flow run and a
child run per (dataset, family). The flow ends Failed when any branch failed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.states import Failed

from pmodel import paths
from pmodel.config import find_experiment, load_experiment
from pmodel.datasets.build import ensure_built
from pmodel.families import cannot_hold
from pmodel.problems import problem_domain
from pmodel.records import Ingested, Outcome, RunResult
from pmodel.repeats import over_seeds
from pmodel.version import code_version, source_version
from flows.runners import env_task_runner
from flows.runtime import experiments_dir
from tasks import recovery, tracking
from tasks.models import register_champions
from tasks.record import log_child_run, log_parent_summary
from tasks.steps import (cache_key, fit_family, ingest_dataset, must_recompute, sample_family,
                         score_family, split_dataset, validate_dataset)


def family_version(name: str, kind: str) -> str:
    """Digest of the source of a family's class (part of its fit's cache key)."""
    from pmodel.families import family_class

    return source_version(family_class(name, kind))


def training_device(name: str, kind: str, params: dict) -> str:
    """Where a family that trains on a device would train here (``cpu``, ``cuda``, ...), part of
    its fit's cache key, so that ``device: auto`` on a machine with a GPU does not reuse a fit
    made on the CPU; ``-`` for a family without a device (torch is imported only for one with)."""
    from pmodel.families import family_class

    if "device" not in family_class(name, kind).hyperparameters:
        return "-"
    from pmodel.families.deep._torch import resolve_device

    return str(resolve_device(params.get("device", "auto")))


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
def _size_params(config) -> dict:
    """The parent's sizes, per dataset (a dataset may set its own, so one global number would
    contradict its children): ``n_samples.<dataset>``, and for built-in data the sizes it is
    built with, ``n_train.<dataset>`` and ``n_heldout.<dataset>`` (a user's files are as big
    as they are: their row counts are on the dataset inputs)."""
    from pmodel.config import BuiltinDataset

    out = {}
    for name, ds in config.datasets.items():
        out[f"n_samples.{name}"] = config.n_samples_for(name)
        if isinstance(ds, BuiltinDataset):
            build = config.build_config(name)
            out[f"n_train.{name}"], out[f"n_heldout.{name}"] = build.n_train, build.n_heldout
    return out


@flow(name="run-experiment", flow_run_name="{experiment}", log_prints=True,
      task_runner=env_task_runner())
def run_experiment(experiment: str, overrides: list[str] | None = None,
                   tracking_uri: str | None = None, refresh: bool = False,
                   system_metrics: bool = False) -> Outcome:
    """Run an experiment (a name in experiments/ or a YAML path); return the outcome.

    The outcome: experiment and parent run ids, one result per (dataset,
    family) with its metrics and child run id, and the failures by dataset.
    ``system_metrics``: MLflow's system metrics (CPU, memory, disk, network, GPU) on the
    parent run while the flow runs.
    """
    logger = get_run_logger()
    config_path = find_experiment(experiment, experiments_dir())
    config = load_experiment(config_path, overrides or [])
    clock = _Clock()
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.prepare_store(uri)
    recovery.fail_dead_runs(uri, log=logger.warning)  # runs left RUNNING by a dead process
    experiment_id = tracking.get_or_create_experiment(uri, config.name)
    parent = tracking.start_run(uri, experiment_id, config.name,
                                tags={"pmodel.config": str(config_path),
                                      "pmodel.code_version": code_version(), **recovery.owner_tags()})
    seeds = tuple(config.seeds or ())
    tracking.log_params(uri, parent, {"experiment": config.name,
                                      "seed": ",".join(map(str, seeds)) if seeds else config.seed,
                                      **_size_params(config),
                                      "overrides": " ".join(overrides or []) or "-"})
    clock.lap("prepare_tracking")
    monitor = contextlib.ExitStack()  # the system metrics, sampled until the fits are logged
    if system_metrics:
        monitor.enter_context(tracking.system_metrics(uri, parent))
    try:
        results, reports, failures, fit_states, inputs = [], [], {}, {}, {}
        for run in config.seed_configs():  # the experiment itself, or one copy per seed
            prefix = f"seed{run.seed}/" if seeds else ""
            if seeds:
                logger.info(f"seed {run.seed} ({seeds.index(run.seed) + 1} of {len(seeds)})")
            builtin_dirs = build_builtins(run, logger)
            clock.lap("build_data")
            ingested, seed_reports, seed_failures = ingest_and_validate(run, builtin_dirs, logger, refresh)
            clock.lap("ingest_validate")
            branches = fit_sample_score(run, ingested, refresh)
            clock.lap("split_fit_sample_score")
            seed_results, seed_states = log_children(uri, experiment_id, parent, run, ingested, branches,
                                                     seed_failures, logger, repeat=bool(seeds))
            clock.lap("log_children")
            results += seed_results
            reports += seed_reports
            failures.update({prefix + k: v for k, v in seed_failures.items()})
            fit_states.update({prefix + k: v for k, v in seed_states.items()})
            inputs.update({(f"{name}-seed{run.seed}" if seeds else name): ing for name, ing in ingested.items()})
        over = tuple(over_seeds(results)) if seeds else ()
        log_parent_summary(uri, parent, config.model_dump(mode="json", by_alias=True), list(results),
                           sorted(set(reports)), failures, inputs, over_seeds=list(over) or None)
        clock.lap("log_summary")
        register_champions(uri, parent, config.name, list(results))  # all children have ended
        clock.lap("register_models")
        tracking.log_metrics(uri, parent, {f"time_{k}_seconds": v for k, v in clock.timings.items()})
    except BaseException as exc:
        monitor.close()
        tracking.set_tags(uri, parent, {"error": f"{type(exc).__name__}: {exc}"[:5000]})
        tracking.end_run(uri, parent, "FAILED")
        raise
    monitor.close()
    outcome = Outcome(config.name, experiment_id, parent, uri, tuple(results), failures, fit_states,
                      clock.timings, over_seeds=over, seeds=seeds)
    if failures:
        tracking.end_run(uri, parent, "FAILED")
        return Failed(message="; ".join(f"{k}: {v.splitlines()[0]}" for k, v in failures.items()),
                      data=outcome)
    tracking.end_run(uri, parent, "FINISHED")
    return outcome


class _Clock:
    """Wall time of the flow's phases (logged on the parent run as time_*_seconds)."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self.t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self.t
        self.t = now


# ---------------------------------------------------------------------------
# The steps, in the chapter's order
# ---------------------------------------------------------------------------

def build_builtins(config, logger) -> dict[str, str]:
    """The folder of each built-in dataset the experiment uses (datasets may set their
    own sizes, so there is one folder per build), built when missing."""
    builtin_dirs: dict[str, str] = {}
    for build_config, builtins, names in config.builtin_builds():
        folder = str(ensure_built(build_config, builtins, progress=True, log=logger.info))
        builtin_dirs.update(dict.fromkeys(names, folder))
    return builtin_dirs


def ingest_and_validate(config, builtin_dirs: dict[str, str], logger, refresh: bool = False
                        ) -> tuple[dict[str, Ingested], list[str], dict[str, str]]:
    """Ingest and validate every dataset, one branch each: the valid datasets, every
    validation report (failed ones too), and the failures by dataset with the failing
    step's own message (file, rows or images, rules)."""
    report_dir = str(paths.reports_dir() / "validation")
    ingest = {name: ingest_dataset.submit(name, ds.model_dump(mode="json", by_alias=False),
                                          builtin_dirs.get(name))
              for name, ds in config.datasets.items()}
    validated = {name: validate_dataset.submit(fut, report_dir, refresh)
                 for name, fut in ingest.items()}
    wait(list(validated.values()))
    reports: list[str] = []
    ingested: dict[str, Ingested] = {}
    failures: dict[str, str] = {}
    for name, fut in validated.items():
        if fut.state.is_completed():
            reports.extend(fut.result())
            ingested[name] = ingest[name].result()
            continue
        failed = ingest[name] if not ingest[name].state.is_completed() else fut
        exc = failed.result(raise_on_failure=False)
        if getattr(exc, "report_path", None):
            reports.append(str(exc.report_path))  # the failed validation's report is kept too
        failures[name] = _error_text(failed)
        logger.error(f"dataset {name!r} failed and is skipped:\n{failures[name]}")
    return ingested, reports, failures


@dataclass(frozen=True)
class _Branch:
    """The futures of one (dataset, family entry): split -> fit -> sample -> score; or,
    when the family cannot hold the dataset, no fit and the reason (``skip``)."""

    dataset: str
    spec: Any
    label: str
    params: dict
    split: Any
    fit: Any = None
    sample: Any = None
    score: Any = None
    skip: str | None = None


def data_key(ingested: Ingested) -> str:
    """What a dataset's problem is made of: its files' digest and, for a user's files, the
    options that change how they are read and split (``missing``, ``heldout_fraction``, ...)."""
    if ingested.builtin:
        return ingested.digest
    options = {k: v for k, v in ingested.spec.items() if k not in ("train", "heldout", "schema_file")}
    return cache_key(ingested.digest, sorted(options.items()))


def fit_sample_score(config, ingested: dict[str, Ingested], refresh: bool) -> list[_Branch]:
    """Split every valid dataset, then fit, sample and score every (dataset, family)
    concurrently on the task runner; wait for all. Each step caches on a key of its
    inputs (data digest, seed, hyperparameters, code versions). A family that cannot
    hold a dataset (``Family.cannot_hold`` on the split's domain: a joint table too big
    for memory) is not fitted to it: its branch carries the reason instead."""
    version = code_version()

    def options(step: str, key: str) -> dict:
        # recompute on --refresh, and whenever the step's output file is missing or corrupt
        return {"refresh_cache": True} if refresh or must_recompute(step, key) else {}

    data_keys = {name: data_key(ing) for name, ing in ingested.items()}
    split_keys = {name: cache_key("split", data_keys[name], config.seed, version, dataset_version(ing.builtin))
                  for name, ing in ingested.items()}
    splits = {name: split_dataset.with_options(**options("split", split_keys[name])).submit(
        ing, config.seed, key=split_keys[name]) for name, ing in ingested.items()}
    wait(list(splits.values()))  # the domains decide which families can hold which data
    domains = {name: problem_domain(split.result()) for name, split in splits.items()
               if split.state.is_completed()}
    branches = []
    for dataset, spec in config.runs():
        if dataset not in ingested:
            continue
        kind = ingested[dataset].kind
        params = config.params_for(spec, kind)
        label = spec.display(kind)
        reason = cannot_hold(spec.family, domains[dataset]) if dataset in domains else None
        if reason is not None:
            branches.append(_Branch(dataset, spec, label, params, splits[dataset], skip=reason))
            continue
        fit_key = cache_key("fit", data_keys[dataset], config.seed, spec.family, params,
                            version, family_version(spec.family, kind),
                            training_device(spec.family, kind, params))
        sample_key = cache_key("sample", fit_key, config.n_samples_for(dataset), config.seed)
        score_key = cache_key("score", sample_key)
        fit = fit_family.with_options(**options("fit", fit_key)).submit(
            splits[dataset], dataset, spec.family, params, label, config.seed, key=fit_key,
            pictures=config.pictures_while_training)
        sample = sample_family.with_options(**options("sample", sample_key)).submit(
            fit, dataset, label, config.n_samples_for(dataset), config.seed, key=sample_key)
        score = score_family.with_options(**({"refresh_cache": True} if refresh else {})).submit(
            splits[dataset], fit, sample, dataset, label, key=score_key)
        branches.append(_Branch(dataset, spec, label, params, splits[dataset], fit, sample, score))
    wait([b.score for b in branches if b.skip is None])
    return branches


def log_children(uri: str, experiment_id: str, parent: str, config, ingested: dict[str, Ingested],
                 branches: list[_Branch], failures: dict[str, str], logger, repeat: bool = False
                 ) -> tuple[tuple[RunResult, ...], dict[str, str]]:
    """A child run per branch, in this thread (MLflow writes stay serial within the
    process); failed branches are recorded FAILED with their error and added to
    ``failures``; a skipped one (the family cannot hold the data) gets no child run: its
    reason goes on the parent run and the leaderboard. Returns the results and each
    fit's final state. ``repeat``: one seed of several (the results carry their seed, the
    run names say it)."""
    context = {"seed": config.seed, "n_samples": config.n_samples, "code_version": code_version()}
    results, fit_states = [], {}
    for b in branches:
        result = RunResult(b.dataset, b.spec.family, b.label, b.spec.entry_label(), b.params,
                           seed=config.seed if repeat else None)
        if b.skip is not None:
            fit_states[f"{b.dataset}/{b.label}"] = "Skipped"
            logger.warning(f"{b.dataset} / {b.label} skipped (not fitted): {b.skip}")
            results.append(result.with_(skip=b.skip))
            continue
        fit_states[f"{b.dataset}/{b.label}"] = b.fit.state.name
        if b.score.state.is_completed():
            scored = b.score.result()
            result = result.with_(metrics=scored["metrics"], notes=tuple(scored["notes"]),
                                  skipped=scored["skipped"], log_prob_kind=scored["log_prob_kind"],
                                  taxonomy=scored.get("taxonomy"), tags=scored.get("tags", {}),
                                  problem_path=b.split.result(), model_path=b.fit.result(),
                                  samples_path=b.sample.result())
        else:
            failed = next(f for f in (b.split, b.fit, b.sample, b.score) if not f.state.is_completed())
            result = result.with_(error=_error_text(failed))
            failures[f"{b.dataset}/{b.label}"] = result.error
            logger.error(f"{b.dataset} / {b.label} failed: {result.error}")
        run_id = log_child_run(uri, experiment_id, parent, result, ingested[b.dataset],
                               {**context, "n_samples": config.n_samples_for(b.dataset)})
        results.append(result.with_(run_id=run_id))
    return tuple(results), fit_states
