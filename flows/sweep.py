"""run_sweep: Optuna's TPE over one family's declared ranges on one dataset of an experiment.

    data -> validate -> split -> objective -> trials (fit -> sample -> score, pruned) -> best

The family's experiment entry gives every hyperparameter the sweep does not search (the
budget among them); its ``search_space`` (``pmodel.sweeps``) gives the ranges. The
objective is the exact KL where P_data is known, else the exact held-out log-likelihood,
else the family's bound, and its name is recorded on the parent run (``sweep.objective``).
Trials run ``n_jobs`` at a time on the flow's task runner (threads or Dask, as ``pmodel
run``'s fits): each is a child run, a finished one recorded like any fit of an experiment
(``tasks.record.log_child_run``), a pruned one KILLED and tagged ``sweep.state = PRUNED``.
The study lives in ``<PMODEL_HOME>/sweeps/optuna.db`` under ``<experiment>-<family>-<dataset>``,
so the same command again adds trials to it. The best trial of the whole study (its run id,
number, value and hyperparameters) is recorded on the parent run: ``sweep.best_run_id`` is
what a model registry takes as the champion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from pmodel.config import find_experiment, load_experiment
from pmodel.records import RunResult
from pmodel.version import code_version
from flows.experiment import build_builtins, data_key, dataset_version, ingest_and_validate
from flows.runners import env_task_runner
from flows.runtime import experiments_dir
from tasks import models, recovery, tracking
from tasks.record import log_child_run
from tasks.steps import cache_key, must_recompute, split_dataset


@dataclass(frozen=True)
class Trial:
    """One trial of this flow run: its number in the study, state, value and child run."""

    number: int
    state: str            # "COMPLETE" | "PRUNED" | "FAIL"
    params: dict
    value: float | None = None
    run_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class SweepOutcome:
    """What one ``pmodel sweep`` did: this run's trials, and the study's best so far."""

    experiment: str
    study: str
    objective: str
    direction: str
    objective_what: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    problem_path: str     # the split the trials were fitted and scored on
    trials: tuple[Trial, ...] = ()
    n_in_study: int = 0
    best: dict = field(default_factory=dict)  # number, value, params, run_id
    seconds: float = 0.0


class SweepError(ValueError):
    """A sweep that cannot be run as asked (dataset, family, entry): said before any trial."""


def base_params(config, family: str, dataset: str) -> tuple[dict, str]:
    """The hyperparameters of ``family``'s first entry that runs on ``dataset`` (what the sweep
    does not search), and where they came from."""
    kind = config.datasets[dataset].kind
    for name, spec in config.runs():
        if name == dataset and spec.family == family:
            return config.params_for(spec, kind), f"the experiment's entry {spec.display(kind)!r}"
    raise SweepError(f"the experiment {config.name!r} has no entry of family {family!r} on dataset "
                     f"{dataset!r}; entries on it: "
                     f"{', '.join(s.family for d, s in config.runs() if d == dataset) or 'none'}")


def check_sweep(config, family: str, dataset: str) -> dict:
    """The searched ranges, after checking that the sweep can run (SweepError or
    ``pmodel.sweeps.NoSearchSpace`` naming what is wrong)."""
    from pmodel.sweeps import search_space

    if dataset not in config.datasets:
        raise SweepError(f"the experiment {config.name!r} has no dataset {dataset!r}; "
                         f"its datasets: {', '.join(config.datasets)}")
    base_params(config, family, dataset)
    return search_space(family, config.datasets[dataset].kind)


@flow(name="run-sweep", flow_run_name="{experiment}-{family}-{dataset}", log_prints=True,
      task_runner=env_task_runner())
def run_sweep(experiment: str, family: str, dataset: str, trials: int, n_jobs: int = 1,
              pruner: str = "median", overrides: list[str] | None = None,
              tracking_uri: str | None = None, refresh: bool = False) -> SweepOutcome:
    """Add ``trials`` trials to the study of (experiment, family, dataset); return the outcome."""
    from pmodel.families import make_family
    from pmodel.problems import load_problem
    from pmodel.sweeps import choose_objective, trial_params
    from tasks import sweeps

    started = time.perf_counter()
    logger = get_run_logger()
    config_path = find_experiment(experiment, experiments_dir())
    config = load_experiment(config_path, overrides or [])
    ranges = check_sweep(config, family, dataset)
    base, source = base_params(config, family, dataset)
    one = config.model_copy(update={"datasets": {dataset: config.datasets[dataset]}})
    ingested, reports, failures = ingest_and_validate(one, build_builtins(one, logger), logger, refresh)
    if failures:
        raise SweepError(f"dataset {dataset!r} failed validation: {failures[dataset]}")
    ing = ingested[dataset]
    split_key = cache_key("split", data_key(ing), config.seed, code_version(), dataset_version(ing.builtin))
    problem_path = split_dataset.with_options(
        refresh_cache=refresh or must_recompute("split", split_key))(ing, config.seed, key=split_key)
    problem = load_problem(problem_path)
    objective = choose_objective(make_family(family, problem.domain, **base), problem)
    name = sweeps.study_name(config.name, family, dataset)
    study = sweeps.open_study(name, objective, seed=config.seed, pruner=pruner)
    logger.info(f"study {name!r} ({len(study.trials)} trials so far) in {sweeps.storage_path()}: "
                f"{objective.direction} {objective.metric} ({objective.what}); searching "
                f"{', '.join(ranges)}; the rest from {source}")

    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.prepare_store(uri)
    recovery.fail_dead_runs(uri, log=logger.warning)
    experiment_id = tracking.get_or_create_experiment(uri, config.name)
    parent = tracking.start_run(uri, experiment_id, f"sweep {family} | {dataset}", tags={
        "pmodel.config": str(config_path), "pmodel.code_version": code_version(),
        "sweep.study": name, "sweep.storage": sweeps.storage_url(),
        "sweep.objective": objective.metric, "sweep.objective_direction": objective.direction,
        "sweep.objective_kind": objective.kind, "sweep.objective_what": objective.what,
        "sweep.pruner": pruner, **recovery.owner_tags()})
    tracking.log_params(uri, parent, {"experiment": config.name, "family": family, "dataset": dataset,
                                      "trials": trials, "n_jobs": n_jobs, "pruner": pruner,
                                      "seed": config.seed, "search": ", ".join(ranges),
                                      "overrides": " ".join(overrides or []) or "-"})
    try:
        done = run_trials(study, sweeps.distributions(ranges), base, trials=trials, n_jobs=n_jobs,
                          problem_path=problem_path, ing=ing, config=config, family=family,
                          objective=objective, pruner=pruner, uri=uri, experiment_id=experiment_id,
                          parent=parent, logger=logger, trial_params=trial_params)
        best = record_best(uri, parent, study, objective)
        if best.get("run_id"):  # the best trial challenges the dataset's champion, as any run's would
            line = models.challenge_champion(uri, f"{config.name}-{dataset}", best["run_id"])
            tracking.set_tags(uri, parent, {f"{models.CHAMPION_TAG}.{dataset}": line})
            logger.info(f"champion of {dataset}: {line}")
        tracking.log_metrics(uri, parent, {
            "n_trials": len(done), "n_pruned": sum(t.state == "PRUNED" for t in done),
            "n_failed": sum(t.state == "FAIL" for t in done), "n_trials_in_study": len(study.trials),
            "time_sweep_seconds": time.perf_counter() - started})
        tracking.set_tags(uri, parent, {tracking.NOTE_TAG: describe(name, objective, done, best, source)})
    except BaseException as exc:
        tracking.set_tags(uri, parent, {"error": f"{type(exc).__name__}: {exc}"[:5000]})
        tracking.end_run(uri, parent, "FAILED")
        raise
    tracking.end_run(uri, parent, "FINISHED" if best else "FAILED")
    return SweepOutcome(config.name, name, objective.metric, objective.direction, objective.what,
                        experiment_id, parent, uri, problem_path, tuple(done), len(study.trials), best,
                        time.perf_counter() - started)


def run_trials(study, distributions: dict, base: dict, *, trials: int, n_jobs: int, problem_path: str,
               ing, config, family: str, objective, pruner: str, uri: str, experiment_id: str,
               parent: str, logger, trial_params) -> list[Trial]:
    """Keep ``n_jobs`` trials running on the task runner, each asked of TPE when a slot frees;
    record each as it ends (:func:`record_trial`). With one job the sweep repeats exactly (same
    seed, same study: same proposals, same scores); with several, which trials TPE has seen
    when it proposes the next depends on which ended first."""
    from tasks import sweeps

    done: list[Trial] = []
    n_samples = config.n_samples_for(ing.name)
    context = {"seed": config.seed, "n_samples": n_samples, "code_version": code_version()}
    running: dict = {}  # future -> its optuna trial
    params: dict[int, dict] = {}
    asked = 0
    while len(done) < trials:
        while len(running) < n_jobs and asked < trials:  # keep n_jobs trials running
            t = study.ask(distributions)
            asked += 1
            params[t.number] = trial_params(base, t.params)
            running[sweeps.run_trial.submit(
                problem_path, ing.name, family, params[t.number], config.seed, n_samples,
                study.study_name, t._trial_id, t.number, sweeps.objective_dict(objective), pruner)] = t
        fut = next(as_completed(list(running)))
        t = running.pop(fut)
        trial = record_trial(t, fut, params[t.number], ing=ing, family=family, objective=objective,
                             uri=uri, experiment_id=experiment_id, parent=parent, context=context,
                             problem_path=problem_path, seed=config.seed)
        if trial.state == "FAIL":
            logger.error(f"trial {t.number} failed: {trial.note}")
        logger.info(f"trial {t.number}: {trial.state}"
                    + (f", {objective.metric} = {trial.value:.5g}" if trial.value is not None else
                       f" ({trial.note})" if trial.note else "") + f"; {t.params}")
        done.append(trial)
    return done


def record_trial(t, fut, params: dict, *, ing, family: str, objective, uri: str, experiment_id: str,
                 parent: str, context: dict, problem_path: str, seed: int) -> Trial:
    """A trial's child run (a finished trial's like any fit's; a pruned one KILLED, tagged
    PRUNED; a failed one FAILED with its error), its id kept as the trial's user attribute
    ``mlflow_run_id``; then the study is told (TPE's next proposal learns from it)."""
    from tasks import sweeps

    label = f"{family} #{t.number}"
    error = None
    try:
        out = fut.result()
    except Exception as exc:  # the task's own exception
        out, error = None, f"{type(exc).__name__}: {exc}"
    if out is not None and out["state"] == "PRUNED":
        run_id = sweeps.log_pruned_trial(
            uri, experiment_id, parent, name=f"{label} | {ing.name}", dataset=ing.name,
            family=family, kind=ing.kind, params=params, seed=seed,
            number=t.number, outcome=out, code_version=context["code_version"])
        trial = Trial(t.number, "PRUNED", t.params, run_id=run_id, note=out["reason"])
    else:
        result = RunResult(ing.name, family, label, label, params)
        if out is None:
            result = result.with_(error=error)
        else:
            result = result.with_(
                metrics=out["metrics"], skipped=out["skipped"], notes=tuple(out["notes"]),
                log_prob_kind=out["log_prob_kind"], taxonomy=out["taxonomy"], tags=out["tags"],
                problem_path=problem_path, model_path=out["model_path"],
                samples_path=out["samples_path"])
        run_id = log_child_run(uri, experiment_id, parent, result, ing, context)
        state = "FAIL" if out is None else "COMPLETE"
        tracking.set_tags(uri, run_id, {"sweep.trial": t.number, "sweep.state": state,
                                        "sweep.objective": objective.metric})
        trial = Trial(t.number, state, t.params, None if out is None else out["value"], run_id,
                      note=result.error or "")
    t.set_user_attr("mlflow_run_id", trial.run_id)
    sweeps.tell(t.study, t, out)
    return trial


def record_best(uri: str, parent: str, study, objective) -> dict:
    """The study's best finished trial (over every run of the sweep so far), on the parent run:
    tags ``sweep.best_run_id`` (its child run: the champion a registry takes), ``sweep.best_trial``
    and ``sweep.best_params``, and the metric ``best_<objective>``. Empty when no trial finished."""
    import json

    import optuna

    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return {}
    t = study.best_trial
    best = {"number": t.number, "value": float(t.value), "params": dict(t.params),
            "run_id": t.user_attrs.get("mlflow_run_id")}
    tracking.set_tags(uri, parent, {"sweep.best_run_id": best["run_id"], "sweep.best_trial": t.number,
                                    "sweep.best_params": json.dumps(best["params"], sort_keys=True)})
    tracking.log_metrics(uri, parent, {f"best_{objective.metric}": best["value"]})
    return best


def describe(name: str, objective, done: list[Trial], best: dict, source: str) -> str:
    """The parent run's description: the objective, this run's trials, the best of the study."""
    lines = [f"## Sweep `{name}`", "",
             f"Optuna's TPE, objective **{objective.metric}** ({objective.what}; "
             f"{objective.direction}d). Hyperparameters not searched: from {source}.", "",
             "| trial | state | value | hyperparameters |", "|---|---|---|---|"]
    for t in done:
        value = f"{t.value:.5g}" if t.value is not None else "-"
        lines.append(f"| {t.number} | {t.state.lower()} | {value} | "
                     + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in t.params.items()) + " |")
    if best:
        lines += ["", f"Best of the study so far: trial {best['number']}, {objective.metric} = "
                  f"{best['value']:.6g} (child run `{best['run_id']}`)."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The command (``pmodel sweep``)
# ---------------------------------------------------------------------------

def sweep_command(args) -> int:
    """``pmodel sweep``: check what can be checked before Prefect starts (usage errors, exit
    2), run the flow on the chosen runner, print the trials and the best; exit 1 when no trial
    of the study finished."""
    import os
    import sys

    from flows.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
    from flows.runtime import configure_runtime, reuse_local_server, spawn_embedded_prefect
    from flows.runners import RunnerError, check_dask_with_server, runner_session
    from pmodel.config import ConfigError
    from pmodel.sweeps import NoSearchSpace

    say = lambda m: print(f"pmodel sweep: {m}", file=sys.stderr)  # noqa: E731
    configure_runtime()
    reuse_local_server()
    try:
        config = load_experiment(find_experiment(args.experiment, experiments_dir()), args.set or [])
        check_sweep(config, args.family, args.dataset)
        runner = args.runner or ("dask" if args.dask_address else "threads")
        note = check_dask_with_server(runner, args.dask_address)
    except (ConfigError, SweepError, NoSearchSpace, RunnerError, KeyError) as exc:
        say(str(exc))
        return EXIT_USAGE
    server = spawn_embedded_prefect()
    if note:
        say(f"note: {note}")
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    settings = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if server is not None:
        settings[PREFECT_API_URL] = os.environ["PREFECT_API_URL"] = server.wait_ready()
    try:
        with temporary_settings(settings), runner_session(runner, args.dask_address,
                                                          warn=lambda m: say(f"note: {m}")) as task_runner:
            state = run_sweep.with_options(task_runner=task_runner)(
                args.experiment, args.family, args.dataset, args.trials, n_jobs=args.jobs,
                pruner=args.pruner, overrides=args.set or [], tracking_uri=args.tracking_uri,
                return_state=True)
    except RunnerError as exc:
        say(str(exc))
        return EXIT_USAGE
    out = state.result(raise_on_failure=False)
    if not isinstance(out, SweepOutcome):
        say(f"the sweep failed: {out}")
        return EXIT_FAILED
    print(f"\nstudy {out.study}: {len(out.trials)} trials added, {out.n_in_study} in all; objective "
          f"{out.objective} ({out.objective_what}), {out.direction}d")
    for t in out.trials:
        value = f"{out.objective} = {t.value:.6g}" if t.value is not None else t.note
        print(f"  trial {t.number:>3}  {t.state:<8}  {value}  {t.params}")
    if out.best:
        print(f"\nbest of the study: trial {out.best['number']}, {out.objective} = {out.best['value']:.6g}, "
              f"{out.best['params']}\n  child run {out.best['run_id']} (parent run {out.parent_run_id})")
    print(f"time: {out.seconds:.1f} s in the flow")
    return EXIT_OK if out.best else EXIT_FAILED
