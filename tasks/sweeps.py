"""The sweep's Optuna glue (the one place that imports optuna).

- :func:`open_study`: the study, kept in SQLite in the project
  (``<PMODEL_HOME>/sweeps/optuna.db``), named ``<experiment>-<family>-<dataset>``, so a
  second ``pmodel sweep`` with the same names resumes it (its trials count, TPE learns
  from them).
- :func:`distributions`: pmodel's plain-data ranges (``Family.search_space``) as Optuna
  distributions, for ``study.ask``.
- :func:`run_trial`: one trial's fit -> sample -> score, a Prefect task on the flow's
  task runner (threads or Dask). A deep fit reports its validation loss after every epoch
  to the trial (through the study's storage, so it works from a Dask worker too) and the
  pruner may stop it: the fit's ``after_epoch`` raises ``pmodel.errors.StopTraining``,
  which is Optuna's ``TrialPruned`` here.
- :func:`log_pruned_trial`: a pruned trial's child run (KILLED, ``sweep.state = PRUNED``:
  its hyperparameters and its curves up to the stop; no scores, it did not finish).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import optuna
from prefect import task
from prefect.cache_policies import NO_CACHE

from pmodel import paths
from pmodel.errors import StopTraining
from pmodel.families.base import Search
from pmodel.sweeps import Objective, intermediate_value, objective_value
from tasks import tracking
from tasks.steps import _atomic_npz, _atomic_text, cache_key, output_path

#: the pruners ``pmodel sweep --pruner`` offers
PRUNERS = ("median", "halving", "none")
#: trials run to the end before the median pruner stops any (it needs curves to compare with)
MEDIAN_STARTUP_TRIALS = 4
#: epochs every trial trains before the median pruner may stop it
MEDIAN_WARMUP_EPOCHS = 2


def storage_path() -> Path:
    """The SQLite file that holds every study of the project."""
    return paths.project_root() / "sweeps" / "optuna.db"


def storage_url() -> str:
    return f"sqlite:///{storage_path()}"


def study_name(experiment: str, family: str, dataset: str) -> str:
    return f"{experiment}-{family}-{dataset}"


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median``: stop a trial whose validation loss after an epoch is worse than the median
    of the earlier trials' at that epoch (after :data:`MEDIAN_STARTUP_TRIALS` trials and
    :data:`MEDIAN_WARMUP_EPOCHS` epochs); ``halving``: successive halving (rungs at epochs 1,
    2, 4, ...: only the best half goes on); ``none``: every trial runs to the end."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=MEDIAN_WARMUP_EPOCHS)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; one of {', '.join(PRUNERS)}")


def open_study(name: str, objective: Objective, *, seed: int, pruner: str) -> optuna.Study:
    """The study ``name`` in the project's SQLite file, created when new. Its direction and
    objective must match the stored ones (ValueError naming both). TPE is seeded by the seed
    and the number of trials already in the study, so a resumed sweep proposes new points
    (the same seed at every start would replay the first run's random start-up trials), and
    the same sweep from the same store proposes the same ones. ``constant_liar``: trials asked
    together (several jobs) are kept apart."""
    storage_path().parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(storage_url(), engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.create_study(study_name=name, storage=storage, direction=objective.direction,
                                load_if_exists=True, pruner=make_pruner(pruner))
    stored = study.user_attrs.get("objective")
    if stored is None:
        study.set_user_attr("objective", objective.metric)
    elif stored != objective.metric:
        raise ValueError(f"the study {name!r} in {storage_path()} optimises {stored}, this sweep "
                         f"{objective.metric}: use another experiment name, or delete the study")
    study.sampler = optuna.samplers.TPESampler(seed=_sampler_seed(seed, len(study.trials)),
                                               constant_liar=True)
    return study


def _sampler_seed(seed: int, n_trials: int) -> int:
    return int(cache_key("tpe", seed, n_trials)[:8], 16)


def distributions(ranges: dict[str, Search]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's distribution for each declared range (ints stay ints)."""
    out = {}
    for key, r in ranges.items():
        if r.choices is not None:
            out[key] = optuna.distributions.CategoricalDistribution(list(r.choices))
        elif isinstance(r.low, int) and isinstance(r.high, int) and not isinstance(r.low, bool):
            out[key] = optuna.distributions.IntDistribution(r.low, r.high, log=r.log, step=int(r.step or 1))
        else:
            out[key] = optuna.distributions.FloatDistribution(float(r.low), float(r.high), log=r.log,
                                                              step=r.step)
    return out


def _trial(name: str, trial_id: int, pruner: str) -> optuna.Trial:
    """The running trial, from the study's storage (in this thread or a Dask worker)."""
    storage = optuna.storages.RDBStorage(storage_url(), engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(pruner))
    return optuna.trial.Trial(study, trial_id)


@task(cache_policy=NO_CACHE, task_run_name="trial-{number}-{dataset}-{family}")
def run_trial(problem_path: str, dataset: str, family: str, params: dict, seed: int, n_samples: int,
              study: str, trial_id: int, number: int, objective: dict, pruner: str) -> dict:
    """Fit, sample and score one trial, reporting each epoch's validation loss to the pruner.

    Returns ``state`` "COMPLETE" (with ``value``, the scores and the model and samples'
    paths, as the flow's fit/sample/score tasks write them) or "PRUNED" (with the epoch it
    stopped at and the curves so far)."""
    from pmodel.evaluate import draw_samples, fit_model, score
    from pmodel.families import family_class
    from pmodel.problems import load_problem

    goal = Objective(**objective)
    trial = _trial(study, trial_id, pruner)
    problem = load_problem(Path(problem_path))
    seen: dict = {}
    declared = family_class(family, problem.kind).hyperparameters.get("epochs")
    last_epoch = params.get("epochs", declared.default if declared else math.inf)

    def after_epoch(epoch: int, history: dict) -> None:
        seen.update(history=history, epoch=epoch)
        value = intermediate_value(goal, history)
        if value is None or not math.isfinite(value):
            return
        trial.report(value, epoch)
        # the budget's last epoch is never pruned: the fit is done, and scoring it costs less
        # than the training it would have saved
        if epoch < last_epoch and trial.should_prune():
            raise StopTraining(f"pruned after epoch {epoch}: validation loss {abs(value):.5g}")

    t = time.perf_counter()
    try:
        model, fit_seconds = fit_model(family, params, problem, seed=seed, after_epoch=after_epoch)
    except StopTraining as stop:
        return {"state": "PRUNED", "reason": str(stop), "epoch": seen["epoch"],
                "history": seen["history"], "fit_seconds": time.perf_counter() - t}
    key = cache_key("trial", study, number, family, params, seed)
    path = output_path("fit", key)
    path.mkdir(parents=True, exist_ok=True)
    _atomic_text(path / "fit.json", json.dumps({"fit_seconds": fit_seconds}))
    model.save(path)
    samples, sample_seconds = draw_samples(model, n_samples, seed=seed)
    samples_path = _atomic_npz(output_path("sample", key), samples=samples, sample_seconds=sample_seconds)
    metrics, skipped = score(model, problem, samples, fit_seconds=fit_seconds, sample_seconds=sample_seconds)
    return {"state": "COMPLETE", "value": objective_value(goal, metrics), "metrics": metrics,
            "skipped": skipped, "notes": list(problem.notes), "log_prob_kind": model.log_prob_kind,
            "taxonomy": model.taxonomy, "tags": dict(getattr(model, "device_info_", {})),
            "model_path": str(path), "samples_path": str(samples_path),
            "history": getattr(model, "history_", {}) or {}}


def tell(study: optuna.Study, trial: optuna.Trial, outcome: dict | None) -> optuna.trial.FrozenTrial:
    """Record a trial's end in the study: its value, pruned, or failed (``outcome`` None)."""
    if outcome is None:
        return study.tell(trial, state=optuna.trial.TrialState.FAIL)
    if outcome["state"] == "PRUNED":
        return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study.tell(trial, outcome["value"])


def objective_dict(objective: Objective) -> dict:
    return asdict(objective)


def log_pruned_trial(uri: str, experiment_id: str, parent_run_id: str, *, name: str, dataset: str,
                     family: str, kind: str, params: dict, seed: int, number: int,
                     outcome: dict, code_version: str) -> str:
    """A pruned trial's child run: KILLED, tagged ``sweep.state = PRUNED`` with the reason, its
    hyperparameters and per-epoch curves up to the stop; no scores (it did not finish)."""
    run_id = tracking.start_run(uri, experiment_id, name, parent_run_id=parent_run_id,
                                tags={"dataset": dataset, "family": family, "label": f"trial {number}",
                                      "kind": kind, "seed": str(seed),
                                      "pmodel.code_version": code_version})
    note = (f"Sweep trial {number}, **pruned** after epoch {outcome['epoch']}: its validation loss "
            f"was not promising against the earlier trials' at that epoch ({outcome['reason']}). "
            "It did not finish, so it has no scores; its curves stop where it was stopped.")
    tracking.log_batch(uri, run_id, params={"family": family, **params, "seed": seed},
                       metrics={"pruned_at_epoch": outcome["epoch"], "fit_seconds": outcome["fit_seconds"]},
                       tags={"sweep.trial": number, "sweep.state": "PRUNED",
                             "sweep.pruned": outcome["reason"], tracking.NOTE_TAG: note},
                       history=outcome["history"])
    tracking.end_run(uri, run_id, "KILLED")
    return run_id
