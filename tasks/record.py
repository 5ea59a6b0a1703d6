"""The ``log`` step: child runs per (dataset, family) and the parent's summary, in MLflow.

Pictures are drawn by ``pmodel.plots`` into a scratch folder and logged as
artifacts; every MLflow call goes through ``tasks.tracking`` with explicit
run ids.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking


def _pictures(result: dict, problem, model, samples: np.ndarray, out: Path) -> list[Path]:
    """The pictures of one child run (written into ``out``)."""
    from pmodel import plots

    kind, files = problem.kind, []
    if kind == "image":
        files.append(plots.image_grid(samples[:50], out / "samples-grid.png", n_cols=10,
                                      title=f"{result['label']}: 50 samples"))
        files.append(plots.image_grid(problem.train[:50], out / "train-grid.png", n_cols=10,
                                      title="training images"))
    elif kind == "points" and problem.truth is not None:
        box = getattr(model, "box_", None)
        files.append(plots.land_map(problem.truth.land, samples[:5000], out / "land-map.png",
                                    train=problem.train, box=box,
                                    title=f"{result['dataset']}: {result['label']}"))
    if kind == "categorical" and problem.schema is not None:
        rows = problem.schema.from_codes(samples[:10])
        files.append(plots.rows_table(rows, out / "samples-10-rows.csv"))
        files.append(plots.rows_table(rows, out / "samples-10-rows.md"))
        files.append(plots.rows_table(rows, out / "samples-10-rows.png"))
        if result["family"] == "naive_bayes":
            table = model.parameter_table(problem.schema)
            table.to_csv(out / "naive-bayes-parameters.csv", index=False)
            files.append(out / "naive-bayes-parameters.csv")
            files.append(plots.parameter_table_plot(table, out / "naive-bayes-parameters.png",
                                                    title=f"naive Bayes: {result['label']}"))
    files.extend(_deep_pictures(result, problem, model, out))
    return files


# -- the deep families' pictures (pmodel.plots_deep): training curves, a diffusion strip --
def _deep_pictures(result: dict, problem, model, out: Path) -> list[Path]:
    if not getattr(model, "history_", None):
        return []
    from pmodel import plots_deep

    files = [plots_deep.training_curves(model.history_, out / "training-curves.png",
                                        title=f"{result['dataset']}: {result['label']}")]
    if hasattr(model, "denoising_steps"):
        d = problem.domain
        region = (d.lon_min, d.lon_max, d.lat_min, d.lat_max) if problem.kind == "points" else None
        chain = model.denoising_steps(6 if problem.kind == "image" else 2000,
                                      rng=np.random.default_rng([int(result.get("seed", 0)), 11]))
        files.append(plots_deep.denoising_strip(chain, out / "denoising-steps.png", kind=problem.kind,
                                                levels=getattr(d, "levels", 256), region=region,
                                                title=f"{result['label']}: from noise to a sample"))
    return files


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE,
      task_run_name="log-{result[dataset]}-{result[label]}")
def log_child_run(uri: str, experiment_id: str, parent_run_id: str, result: dict,
                  ingested: dict, context: dict) -> str:
    """One child run: tags, hyperparameters, scores, data digests, pictures."""
    from tasks.steps import load_model, load_samples
    from pmodel.problems import load_problem

    run_id = tracking.start_run(
        uri, experiment_id, f"{result['dataset']} / {result['label']}",
        parent_run_id=parent_run_id,
        tags={"dataset": result["dataset"], "family": result["family"], "label": result["label"],
              "kind": ingested["kind"], "pmodel.code_version": context["code_version"]})
    try:
        tracking.log_params(uri, run_id, {"family": result["family"], **result["params"],
                                          "seed": context["seed"], "n_samples": context["n_samples"]})
        for role, digest in ingested["digests"].items():
            tracking.log_dataset_input(uri, run_id, name=f"{result['dataset']}-{role}", digest=digest,
                                       source=ingested["files"][role],
                                       context="training" if role == "train" else "evaluation"
                                       if role == "heldout" else role)
        if result.get("error"):
            tracking.set_tags(uri, run_id, {"error": result["error"][:5000]})
            tracking.log_text(uri, run_id, result["error"], "error.txt")
            tracking.end_run(uri, run_id, "FAILED")
            return run_id
        tracking.log_metrics(uri, run_id, result["metrics"])
        problem = load_problem(result["problem_path"])
        model, _ = load_model(result["model_path"])
        samples, _ = load_samples(result["samples_path"])
        tracking.log_params(uri, run_id, {"n_train": len(problem.train), "n_heldout": len(problem.heldout),
                                          "n_parameters_exact": str(model.n_parameters_)[:200]})
        log_scoring_record(uri, run_id, result, model)
        schema = {"schema.json": json.dumps(problem.schema.to_dict())} if problem.schema is not None else {}
        tracking.log_model_folder(uri, run_id, result["model_path"], extra=schema)
        if result.get("notes"):
            tracking.log_text(uri, run_id, "\n".join(result["notes"]) + "\n", "notes.txt")
        with tempfile.TemporaryDirectory() as tmp:
            for path in _pictures(result, problem, model, samples, Path(tmp)):
                tracking.log_artifact(uri, run_id, path, "pictures")
    except BaseException:
        tracking.end_run(uri, run_id, "FAILED")
        raise
    tracking.end_run(uri, run_id, "FINISHED")
    return run_id


def log_scoring_record(uri: str, run_id: str, result: dict, model) -> None:
    """What kind of likelihood the model gives, the scores skipped and why (tags and
    ``skipped-scores.txt``), and the training history as step metrics."""
    skipped = result.get("skipped") or {}
    tracking.set_tags(uri, run_id, {"log_prob_kind": result.get("log_prob_kind", model.log_prob_kind),
                                    "taxonomy": result.get("taxonomy") or getattr(model, "taxonomy", ""),
                                    **{f"skipped.{name}": why for name, why in skipped.items()}})
    if skipped:
        tracking.log_text(uri, run_id, "".join(f"{name}: skipped, {why}\n" for name, why in skipped.items()),
                          "skipped-scores.txt")
    for key, values in (getattr(model, "history_", None) or {}).items():
        for step, value in enumerate(values):
            tracking.log_metrics(uri, run_id, {key: value}, step=step)


def comparison_frame(results: list[dict]) -> pd.DataFrame:
    """One row per (dataset, family): the leaderboard."""
    rows = []
    for r in results:
        # "family": the experiment's entry (same on every dataset, so the plot's rows line up);
        # "label": with the kind's own hyperparameters (e.g. a grid's cell size)
        row = {"dataset": r["dataset"], "family": r.get("entry", r["label"]), "label": r["label"],
               "status": "failed" if r.get("error") else "ok",
               # the chapter's taxonomy and what the likelihood figure is (exact / lower_bound / none)
               "taxonomy": r.get("taxonomy", ""), "log_prob_kind": r.get("log_prob_kind", "")}
        row.update(r.get("metrics") or {})
        rows.append(row)
    return pd.DataFrame(rows)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE, task_run_name="log-summary")
def log_parent_summary(uri: str, parent_run_id: str, config: dict, results: list[dict],
                       reports: list[str], failures: dict[str, str]) -> None:
    """On the parent run: config, validation reports, comparison table and plot, failures."""
    from pmodel import plots

    tracking.log_dict(uri, parent_run_id, config, "config.yaml")
    for report in reports:
        if Path(report).exists():
            tracking.log_artifact(uri, parent_run_id, report, "validation")
    frame = comparison_frame(results)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "comparison.csv"
        frame.to_csv(table, index=False)
        tracking.log_artifact(uri, parent_run_id, table)
        if len(frame):
            ok = frame[frame["status"] == "ok"]
            if len(ok):
                tracking.log_artifact(uri, parent_run_id, plots.comparison_plot(
                    ok, Path(tmp) / "comparison.png",
                    metrics=("heldout_loglik", "out_of_support_rate", "kl_to_truth"),
                    title=f"{config['name']}: held-out log-likelihood, out-of-support rate, KL"))
    if failures:
        tracking.log_text(uri, parent_run_id,
                          "\n\n".join(f"{k}:\n{v}" for k, v in failures.items()) + "\n", "failures.txt")
        tracking.set_tags(uri, parent_run_id, {"failed": ", ".join(sorted(failures))[:5000]})
    finite = {f"{r['dataset']}.{r['label'].replace(' ', '_').replace('=', '')}.heldout_loglik":
              r["metrics"]["heldout_loglik"] for r in results
              if not r.get("error") and not math.isnan(r["metrics"].get("heldout_loglik", math.nan))}
    tracking.log_metrics(uri, parent_run_id, {"n_runs": len(results),
                                              "n_failed": sum(1 for r in results if r.get("error")),
                                              **finite})
