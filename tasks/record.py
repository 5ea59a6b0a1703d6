"""The ``log`` step: child runs per (dataset, family) and the parent's summary, in MLflow.

Pictures are drawn by ``pmodel.plots`` into a scratch folder and logged as
artifacts; every MLflow call goes through ``tasks.tracking`` with explicit
run ids.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from pmodel.records import Ingested, RunResult
from tasks import models, tracking


#: Scores that can be infinite: their ``<name>_is_infinite`` flag is logged on every run.
MAY_BE_INFINITE = ("heldout_loglik", "heldout_bits_per_dim", "heldout_loglik_bound", "kl_to_truth_bound",
                   "heldout_bits_per_dim_bound", "kl_to_truth", "n_parameters", "kl_to_truth_estimate",
                   "kl_to_truth_bound_estimate")

#: The main picture of every child run, at the artifact root under one name,
#: so MLflow's compare view shows the children of a dataset side by side.
MAIN_PICTURE = "samples.png"
#: the main picture as an MLflow image (the chart view's image grid)
SAMPLES_IMAGE_KEY = "samples"
#: the sample grids a deep family drew while it trained: an MLflow image sequence (one per epoch step)
TRAINING_IMAGES_KEY = "samples-while-training"


def run_name(result: RunResult) -> str:
    """The child run's name, the part that differs first: ``"NB a=1 | pixels"``."""
    from pmodel.glossary import short_run_name

    entry = result.entry or result.label
    head, *rest = entry.split()
    seed = f" | seed {result.seed}" if result.seed is not None else ""  # one seed of several
    if head != result.family or not all("=" in t for t in rest):
        return short_run_name(result.family, result.params, result.dataset,
                              label=result.label) + seed
    shared = [t.split("=", 1)[0] for t in rest]
    return short_run_name(result.family, result.params, result.dataset, shared=shared) + seed


def training_copies(samples: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(n,) bool: whether each sample equals some training example exactly."""
    flat = lambda a: np.ascontiguousarray(a.reshape(len(a), -1))  # noqa: E731
    seen = {row.tobytes() for row in flat(train)}
    return np.array([row.tobytes() in seen for row in flat(samples)], dtype=bool)


def caption(result: RunResult, problem, samples: np.ndarray) -> str | None:
    """One line under a picture whose lesson is not obvious; None when it is."""
    family, alpha = result.family, result.params.get("alpha")
    n = len(problem.train)
    if problem.kind == "image":
        levels = problem.domain.levels
        if family == "naive_bayes" and alpha:
            share = alpha * levels / (n + alpha * levels)
            return (f"alpha={alpha:g} adds {alpha * levels:g} pseudo-counts per pixel against {n} "
                    f"images: {share:.0%} of each pixel's probability is spread evenly over the "
                    f"{levels} grey levels. Smoothing, more than independence, makes this static.")
        if family == "naive_bayes":
            return ("Each pixel is drawn on its own from its training histogram (independence): "
                    "the parts of the face do not agree.")
        if family == "multinomial" and alpha:
            # seen cells hold (N + alpha m) / (N + alpha K) of the mass, K = levels^pixels
            m = len({row.tobytes() for row in problem.train.reshape(n, -1)})
            log10_share = (math.log10(n + alpha * m) - math.log10(alpha)
                           - problem.domain.n_features * math.log10(levels))
            return (f"alpha={alpha:g} over {levels}^{problem.domain.n_features} possible images: "
                    f"the {n} training images keep about 10^{log10_share:.0f} of the probability, "
                    "so every sample is uniform noise.")
        if family == "multinomial":
            return "alpha=0 (maximum likelihood): every sample is a copy of a training image."
        if family == "box":
            return "Each pixel uniform over its training range, independently of the others."
    return None


def _pictures(result: RunResult, problem, model, samples: np.ndarray, out: Path,
              name: str) -> tuple[list[tuple[Path, str | None]], str | None]:
    """The pictures of one child run (written into ``out``) with their artifact
    folders (None: the root), and the main picture's caption."""
    from pmodel import plots

    kind, files, note = problem.kind, [], caption(result, problem, samples)
    if kind == "image" and _has_renders(problem):
        note = " ".join(filter(None, [note, _near_render_note(result, len(samples))]))
        files.append((plots.samples_beside_renders(
            samples[:50], problem.truth.index, out / MAIN_PICTURE, n_cols=10,
            title=f"{name}: 50 samples, each above its nearest valid render (d: RMS distance, "
            "grey levels)", caption=note), None))
    elif kind == "image":
        files.append((plots.image_grid(samples[:50], out / MAIN_PICTURE, n_cols=10,
                                       title=f"{name}: 50 samples", caption=note), None))
    elif kind == "points" and problem.truth is not None:
        box = getattr(model, "box_", None)
        files.append((plots.land_map(problem.truth.land, samples[:5000], out / MAIN_PICTURE,
                                     train=problem.train, box=box, title=name), None))
    if kind == "categorical" and problem.schema is not None:
        rows = problem.schema.from_codes(samples[:10])
        copied = training_copies(samples[:10], problem.train)
        rows["copy of a training row"] = np.where(copied, "COPY", "new")
        note = (f"{int(copied.sum())} of these 10 rows are copies of training rows "
                f"(novelty_rate over all {len(samples)} samples: "
                f"{result.metrics.get('novelty_rate', float('nan')):.1%}).")
        files.append((plots.rows_table(rows, out / MAIN_PICTURE, caption=f"{name}: {note}",
                                       highlight=copied), None))
        files.append((plots.rows_table(rows, out / "samples-10-rows.csv"), "pictures"))
        files.append((plots.rows_table(rows, out / "samples-10-rows.md"), "pictures"))
        if result.family == "naive_bayes":
            table = model.parameter_table(problem.schema)
            table.to_csv(out / "naive-bayes-parameters.csv", index=False)
            files.append((out / "naive-bayes-parameters.csv", "pictures"))
            files.append((plots.parameter_table_plot(table, out / "naive-bayes-parameters.png",
                                                     title=f"naive Bayes: {name}"), "pictures"))
    if model.has_encoder:  # the latent space and, for families that decode, a traversal
        from pmodel.plots.latent import latent_pictures

        files.extend((path, "pictures") for path in latent_pictures(model, problem, out, name))
    files.extend((path, "pictures") for path in _deep_pictures(problem, model, out, name))
    return files, note


def _has_renders(problem) -> bool:
    """Whether the problem's truth is a finite set of valid renders (built-in images)."""
    return problem.truth is not None and problem.truth.name == "renders"


def _near_render_note(result: RunResult, n_samples: int) -> str | None:
    """The main image picture's line on distances: how many samples the eye would
    take for a render, and how many are strictly valid."""
    m = result.metrics or {}
    if "near_render_rate" not in m:
        return None
    return (f"Over all {n_samples} samples, {m['near_render_rate']:.0%} are within 8 grey levels "
            f"RMS of a render (near_render_rate), {m.get('near_render_rate_16', math.nan):.0%} "
            f"within 16, {m.get('valid_rate', math.nan):.0%} strictly valid (valid_rate); median "
            f"d = {m.get('median_render_distance', math.nan):.1f}.")


def picture_dir() -> Path:
    """Where drawn pictures are kept between runs: ``<root>/.cache/work/pictures``."""
    from tasks.steps import work_dir

    return work_dir() / "pictures"


def stage_pictures(result: RunResult, problem, model, samples: np.ndarray, stage: Path,
                   name: str, code_version: str) -> str | None:
    """Put a child's pictures into ``stage`` in their artifact layout and return the main
    picture's caption. Drawn once per (samples, run name, code version): a rerun that
    reuses a cached fit and its samples copies the pictures instead of drawing them again
    (the land map alone scans the 0.9 GB mask)."""
    from tasks.steps import cache_key

    key = cache_key("pictures", Path(result.samples_path).name, name, code_version)
    cached = picture_dir() / key
    index = cached / "pictures.json"
    if not index.exists():
        tmp = picture_dir() / f".{key}.{os.getpid()}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        files, note = _pictures(result, problem, model, samples, tmp, name)
        layout = [[path.name, folder] for path, folder in files]
        (tmp / "pictures.json").write_text(json.dumps({"files": layout, "note": note}))
        try:
            tmp.rename(cached)
        except OSError:  # another writer finished first: theirs is the same
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads(index.read_text())
    for file_name, folder in meta["files"]:
        target = stage / folder if folder else stage
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached / file_name, target / file_name)
    return meta["note"]


# -- the deep families' pictures (pmodel.plots_deep): training curves, a diffusion strip --
def _deep_pictures(problem, model, out: Path, name: str) -> list[Path]:
    if not getattr(model, "history_", None):
        return []
    from pmodel.plots import deep as plots_deep

    files = [plots_deep.training_curves(model.history_, out / "training-curves.png", title=name,
                                        family=getattr(model, "name", None), kind=problem.kind)]
    if hasattr(model, "denoising_steps"):
        d = problem.domain
        region = (d.lon_min, d.lon_max, d.lat_min, d.lat_max) if problem.kind == "points" else None
        chain = model.denoising_steps(6 if problem.kind == "image" else 2000,
                                      rng=np.random.default_rng([0, 11]))
        files.append(plots_deep.denoising_strip(chain, out / "denoising-steps.png", kind=problem.kind,
                                                levels=getattr(d, "levels", 256), region=region,
                                                title=f"{name}: from noise to a sample"))
    return files


def _value_text(value: float) -> str:
    from pmodel.leaderboard import fmt

    return fmt(float(value))


def _first_clause(text: str) -> str:
    """``text`` up to its first ``;``, or, when that ``;`` is inside parentheses (as in "one
    known factor (jars: height, width; pixels: ...)"), up to where they open: a cut inside
    them would leave the parenthesis open."""
    opened = []  # where each parenthesis still open began
    for i, ch in enumerate(text):
        if ch == "(":
            opened.append(i)
        elif ch == ")" and opened:
            opened.pop()
        elif ch == ";":
            return text[:opened[0] if opened else i].rstrip()
    return text


def child_description(result: RunResult, name: str, kind: str, n_train: int | None,
                      n_heldout: int | None, picture_note: str | None,
                      pictures: list[str] = (), parent_pictures: list[str] = ()) -> str:
    """The child run's Markdown description: what the family assumes, what its
    pictures show (``pictures``: the artifact paths of those logged on the run,
    ``parent_pictures``: on its parent), its scores with exact values and what each means."""
    from pmodel.glossary import FAMILY_ASSUMES, PICTURE_SHOWS, describe, md_cell
    from pmodel.leaderboard import loglik_kind

    family = result.family
    sizes = f", {n_train} training and {n_heldout} held-out examples" if n_train is not None else ""
    lines = [f"**{name}**: family `{family}` "
             f"({', '.join(f'{k}={v}' for k, v in result.params.items()) or 'no hyperparameters'})"
             f" on dataset `{result.dataset}` ({kind} data{sizes}).", ""]
    if family in FAMILY_ASSUMES:
        lines += [f"**Assumes**: {FAMILY_ASSUMES[family]}.", ""]
    if MAIN_PICTURE in pictures and kind in PICTURE_SHOWS:
        others = [p for p in pictures if p != MAIN_PICTURE]
        lines += [f"**Pictures**: {PICTURE_SHOWS[kind]}."
                  + (f" {picture_note}" if picture_note else "")
                  + (" Also in this run's artifacts: " + ", ".join(f"`{p}`" for p in others) + "."
                     if others else "")
                  + (" On the parent run: " + ", ".join(f"`{p}`" for p in parent_pictures) + "."
                     if parent_pictures else ""), ""]
    if result.error:
        lines += [f"**Failed**: `{result.error.splitlines()[0][:300]}` (full text: `error.txt`)."]
        return "\n".join(lines)
    metrics = result.metrics or {}
    ll_kind = loglik_kind(result)
    lines += [f"**Likelihood**: {ll_kind.replace('_', ' ')}"
              + {"exact": " (`heldout_loglik` is the model's exact log-likelihood).",
                 "lower_bound": " (`heldout_loglik_bound` is a lower bound; no exact value).",
                 "none": " (this family gives no likelihood: sample scores only)."}.get(ll_kind, "."),
              "", "**Scores** (exact values; an infinite one is left out of MLflow's metric "
              "columns, flagged by `<name>_is_infinite` = 1, so sorting puts it last):", "",
              "| score | value | better | meaning |", "|---|---|---|---|"]
    for key, value in metrics.items():
        entry = describe(key)
        meaning = _first_clause(entry.meaning) if entry else ""
        better = (entry.better if entry else "") or "-"
        lines.append(f"| `{key}` | {_value_text(value)} | {md_cell(better)} | {md_cell(meaning)} |")
    if result.notes:
        lines += ["", "**Skipped or noted**:", ""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines)


def _artifact_paths(stage: Path) -> list[str]:
    """The pictures and tables staged for a child run (not its model): artifact paths,
    ``samples.png`` first."""
    paths = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()
                   and p.relative_to(stage).parts[0] != tracking.MODEL_ARTIFACT
                   and p.suffix in (".png", ".csv", ".md"))
    return sorted(paths, key=lambda p: p != MAIN_PICTURE)


def _csv_columns(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM is no part of a name
        return next(csv.reader(f), [])


def dataset_shape(kind: str, path: str | Path) -> tuple[int | None, dict | None]:
    """Rows (or images) and MLflow schema of a dataset file or folder (counted once per
    process for each version of the file: every child run of a dataset logs it)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return _dataset_shape(kind, path, None)
    return _dataset_shape(kind, path, (st.st_mtime_ns, st.st_size, st.st_ino))


@functools.lru_cache(maxsize=256)
def _dataset_shape(kind: str, path: Path, version) -> tuple[int | None, dict | None]:
    if path.is_dir():
        pngs = sorted(path.glob("*.png"))
        if not pngs:
            return 0, None
        from PIL import Image

        with Image.open(pngs[0]) as img:
            width, height = img.size
        return len(pngs), tracking.tensor_schema("uint8", [-1, height, width])
    if path.suffix.lower() != ".csv":
        return None, None
    with open(path, "rb") as f:
        n_lines = sum(1 for line in f if line.strip())
    columns = _csv_columns(path)
    types = "double" if kind == "points" else "string"
    return max(n_lines - 1, 0), tracking.columns_schema({c: types for c in columns})


def _log_inputs(uri: str, run_id: str, dataset: str, ingested: Ingested) -> None:
    for role, digest in ingested.digests.items():
        n_rows, schema = dataset_shape(ingested.kind, ingested.files[role])
        tracking.log_dataset_input(uri, run_id, name=f"{dataset}-{role}", digest=digest,
                                   source=ingested.files[role], n_rows=n_rows, schema=schema,
                                   context="training" if role == "train" else "evaluation"
                                   if role == "heldout" else role)


def _log_once(uri: str, parent_run_id: str, folder: str | None, name: str, draw) -> str:
    """Log the picture ``draw(name)`` draws at ``folder/name`` on the parent run, unless an
    earlier child of the dataset did (the picture is drawn only when logged); its path."""
    path = f"{folder}/{name}" if folder else name
    if not any(a.path == path for a in tracking.list_artifacts(uri, parent_run_id, folder)):
        tracking.log_artifact(uri, parent_run_id, draw(name), folder)
    return path


def _log_training_grid_once(uri: str, parent_run_id: str, dataset: str, problem, out: Path) -> str:
    """The training images of an image dataset, once, on the parent run."""
    from pmodel import plots

    n = len(problem.train)
    return _log_once(uri, parent_run_id, None, f"training-images-{dataset}.png",
              lambda name: plots.image_grid(problem.train[:50], out / name, n_cols=10,
                                            title=f"{dataset}: the first {min(50, n)} of {n} "
                                            "training images"))


def _log_render_tolerance_once(uri: str, parent_run_id: str, dataset: str, problem,
                               out: Path) -> str:
    """What a distance in grey levels looks like, once per image dataset with valid renders,
    on the parent run: a training image (a render) under noise of sigma 2, 4 and 8, and a
    sample of naive Bayes (alpha 0.01) fitted here on the training images."""
    from pmodel import plots
    from pmodel.families import make_family

    def draw(name: str) -> Path:
        # seeded: the same picture for the same training data
        nb = make_family("naive_bayes", problem.domain, alpha=0.01).fit(problem.train)
        sample = nb.sample(1, rng=np.random.default_rng([0, 5]))[0]
        return plots.render_tolerance(problem.train[0], sample, problem.truth.index, out / name,
                                      rng=np.random.default_rng([0, 6]),
                                      sample_name="naive Bayes, a=0.01")

    return _log_once(uri, parent_run_id, "pictures", f"render-tolerance-{dataset}.png", draw)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE,
      task_run_name="log-{result.dataset}-{result.label}")
def log_child_run(uri: str, experiment_id: str, parent_run_id: str, result: RunResult,
                  ingested: Ingested, context: dict) -> str:
    """One child run: name, description, tags, hyperparameters, scores, data
    digests, pictures."""
    from tasks.steps import PROGRESS_DIR, load_model, load_samples, progress_pictures
    from pmodel.problems import load_problem

    name = run_name(result)
    run_id = tracking.start_run(
        uri, experiment_id, name, parent_run_id=parent_run_id,
        tags={"dataset": result.dataset, "family": result.family, "label": result.label,
              "kind": ingested.kind, "seed": str(context["seed"]),
              "pmodel.code_version": context["code_version"]})
    try:
        params = {"family": result.family, **result.params, "seed": context["seed"],
                  "n_samples": context["n_samples"]}
        _log_inputs(uri, run_id, result.dataset, ingested)
        if result.error:
            tracking.log_params(uri, run_id, params)
            tracking.set_tags(uri, run_id, {"error": result.error[:5000], tracking.NOTE_TAG:
                                            child_description(result, name, ingested.kind,
                                                              None, None, None)})
            tracking.log_text(uri, run_id, result.error, "error.txt")
            tracking.end_run(uri, run_id, "FAILED")
            return run_id
        metrics = result.metrics
        problem = load_problem(result.problem_path)
        model, _ = load_model(result.model_path)
        samples, _ = load_samples(result.samples_path)
        # the exact count, every digit (a multinomial over pixels has hundreds): a parameter
        # while it fits MLflow's limit, else an artifact the parameter names
        exact = str(model.n_parameters_)
        fits = len(exact) <= tracking.MAX_PARAM_VAL_LENGTH
        params.update(n_train=len(problem.train), n_heldout=len(problem.heldout),
                      n_parameters_exact=exact if fits else
                      f"{len(exact)} digits: see n_parameters_exact.txt")
        tags = {"log_prob_kind": result.log_prob_kind or model.log_prob_kind,
                "taxonomy": result.taxonomy or getattr(model, "taxonomy", ""),
                **result.tags,   # where a deep family trained: device, device_name, torch and CUDA versions
                **{f"skipped.{score}": why for score, why in (result.skipped or {}).items()}}
        with tempfile.TemporaryDirectory() as tmp:
            # everything the run keeps as files, staged in its artifact layout, logged in one call
            stage = Path(tmp) / "artifacts"
            stage.mkdir()  # not every run has pictures to stage
            note = stage_pictures(result, problem, model, samples, stage, name, context["code_version"])
            # the fitted model: pmodel's folder, logged below as the content of an MLflow model
            folder = shutil.copytree(result.model_path, Path(tmp) / models.ARTIFACT_KEY,
                                     ignore=shutil.ignore_patterns(PROGRESS_DIR))  # logged as images
            if problem.schema is not None:  # so samples can be written with their names
                (folder / "schema.json").write_text(json.dumps(problem.schema.to_dict()))
            if not fits:
                (stage / "n_parameters_exact.txt").write_text(exact + "\n")
            if result.skipped:
                (stage / "skipped-scores.txt").write_text(
                    "".join(f"{score}: skipped, {why}\n" for score, why in result.skipped.items()))
            if result.notes:
                (stage / "notes.txt").write_text("\n".join(result.notes) + "\n")
            pictures = _artifact_paths(stage)  # what the description names: what was logged
            parent_pictures = []
            tracking.log_artifacts(uri, run_id, stage)
            # the main picture also as an MLflow image: the runs table's chart view shows it for
            # any number of runs, each under its run's name (the compare view's artifact list
            # is squeezed out past three runs)
            tracking.log_image_steps(uri, run_id, SAMPLES_IMAGE_KEY, [(0, stage / MAIN_PICTURE)]
                                     if (stage / MAIN_PICTURE).suffix == ".png" and
                                     (stage / MAIN_PICTURE).exists() else [])
            progress = progress_pictures(result.model_path)
            tracking.log_image_steps(uri, run_id, TRAINING_IMAGES_KEY, progress)
            if progress:
                grids = "1 sample grid" if len(progress) == 1 else f"{len(progress)} sample grids"
                note = " ".join(filter(None, [note, f"{grids} drawn while it trained, by epoch: "
                                              f"the image sequence `{TRAINING_IMAGES_KEY}`."]))
            if problem.kind == "image":
                parent_pictures.append(_log_training_grid_once(uri, parent_run_id, result.dataset,
                                                               problem, Path(tmp)))
            if problem.kind == "image" and _has_renders(problem):
                parent_pictures.append(_log_render_tolerance_once(uri, parent_run_id, result.dataset,
                                                                  problem, Path(tmp)))
            tags[tracking.NOTE_TAG] = child_description(result, name, ingested.kind, len(problem.train),
                                                        len(problem.heldout), note, pictures,
                                                        parent_pictures)
            # the model before the scores, so that they are logged to the run and the model at once
            model_id = models.log_pyfunc_model(uri, run_id, folder, params=params, tags={
                "dataset": result.dataset, "family": result.family, "label": result.label})
            tracking.log_batch(uri, run_id, metrics=metrics, params=params, tags=tags,
                               history=getattr(model, "history_", None) or {},
                               flag_infinite=[k for k in MAY_BE_INFINITE if k in metrics],
                               model_id=model_id)
    except BaseException:
        tracking.end_run(uri, run_id, "FAILED")
        raise
    tracking.end_run(uri, run_id, "FINISHED")
    return run_id


def skipped_fits(results: list[RunResult]) -> dict[str, str]:
    """``dataset/label`` -> why the family was not fitted (it cannot hold the data)."""
    return {f"{r.dataset}/{r.label}": r.skip for r in results if r.skip}


def comparison_frame(results: list[RunResult]) -> pd.DataFrame:
    """One row per (dataset, family): the leaderboard."""
    rows = []
    for r in results:
        # "entry": the experiment's family entry (same on every dataset, so the plot's rows
        # line up); "label": with the kind's own hyperparameters (e.g. a grid's cell size)
        row = {"dataset": r.dataset, "family": r.family, "entry": r.entry, "label": r.label,
               **({"seed": r.seed} if r.seed is not None else {}),
               "status": "skipped" if r.skip else "failed" if r.error else "ok",
               # the chapter's taxonomy and what the likelihood figure is (exact / lower_bound / none)
               "taxonomy": r.taxonomy or "", "log_prob_kind": r.log_prob_kind or ""}
        if r.skip:
            row["skipped_because"] = r.skip
        row.update(r.metrics or {})
        rows.append(row)
    return pd.DataFrame(rows)


def parent_description(config: dict, results: list[RunResult], failures: dict[str, str],
                       limit: int = 8000, over_seeds: list[RunResult] | None = None,
                       glossary_link: str | None = None, experiment_id: str | None = None,
                       validation: str = "") -> str:
    """The parent run's Markdown description: the experiment file's
    description, the leaderboard ranked by KL, and the glossary of the scores
    it records: all of them when they fit in ``limit`` characters, else those the
    leaderboard shows, else none; what is left out is in ``glossary.md`` (a link to
    it when ``glossary_link`` is given) and in the experiment's description. With
    ``experiment_id``, a link to each dataset's runs. Over several seeds the leaderboard is
    ``over_seeds``: each (dataset, family)'s mean ± sd."""
    from pmodel.glossary import glossary_markdown
    from pmodel.leaderboard import as_markdown

    names = {(r.dataset, r.label): run_name(r) for r in results}
    if over_seeds:
        names = {(r.dataset, r.label): f"{run_name(r)} (mean ± sd over {int(r.metrics.get('n_seeds', 0))} "
                 "seeds)" for r in over_seeds}
        results = over_seeds
    head = [f"## {config['name']}", "", (config.get("description") or "").strip(), "",
            "Each child run is one model family fitted to one dataset. To find the best model of a "
            "dataset, sort the runs by `kl_to_truth` (ascending) or by `heldout_loglik` "
            "(descending); a model that gives some held-out example probability 0 has "
            "`heldout_loglik` = -inf and sorts last. The runs table's chart view shows every "
            f"child's `{MAIN_PICTURE}` under its name (the image `{SAMPLES_IMAGE_KEY}`); the compare "
            "view, side by side for up to three runs.", "",
            *([f"Each dataset's runs, best first: " + " · ".join(
                f"[{d}]({tracking.runs_view_link(experiment_id, dataset_view_key(d))})"
                for d in dict.fromkeys(r.dataset for r in results)), ""] if experiment_id else []),
            "### Leaderboard", "",
            as_markdown(results, names), ""]
    if failures:
        head += ["### Failed", ""] + [f"- `{k}`: {v.splitlines()[0][:200]}" for k, v in failures.items()] + [""]
    skips = skipped_fits(results)
    if skips:
        head += ["### Skipped (not fitted: neither a success nor a failure)", ""] + [
            f"- `{k}`: {why}" for k, why in skips.items()] + [""]
    if validation:
        head += [validation, ""]
    seen = list(dict.fromkeys(k for r in results for k in (r.metrics or {})))
    shown = [k for k in (*KL_COLUMNS, "heldout_loglik", "heldout_loglik_bound",
                         "heldout_loglik_in_support", "out_of_support_rate", "on_land_rate",
                         "valid_rate", "near_render_rate", "near_render_rate_16",
                         "median_render_distance", "novelty_rate") if k in seen]
    where = (f"[`glossary.md`]({glossary_link})" if glossary_link else "`glossary.md`")
    rest = (f"Every score, with its meaning, unit and better direction: {where} in this run's "
            "artifacts, and the experiment's description.")
    for names, note in ((seen, []), (shown, ["", "The scores of the leaderboard's columns. " + rest])):
        text = "\n".join(head + ["### What the scores mean", "", glossary_markdown(names)] + note)
        if len(text) <= limit:
            return text
    return "\n".join(head + ["### What the scores mean", "", rest])


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE, task_run_name="log-summary")
def log_parent_summary(uri: str, parent_run_id: str, config: dict, results: list[RunResult],
                       reports: list[str], failures: dict[str, str],
                       ingested: Ingested | None = None,
                       over_seeds: list[RunResult] | None = None) -> None:
    """On the parent run: description, config, validation reports, dataset
    inputs, the comparison table (one logged table, not a metric per child)
    and plot, failures; and the experiment's description. Over several seeds also
    ``comparison-over-seeds.csv`` and ``.json``: per (dataset, family), each metric's
    mean and ``<metric>_sd`` over the seeds, with ``n_seeds``."""
    from pmodel import plots
    from pmodel.glossary import glossary_markdown

    tracking.log_dict(uri, parent_run_id, config, "config.yaml")
    for report in reports:
        if Path(report).exists():
            tracking.log_artifact(uri, parent_run_id, report, "validation")
    experiment_id = tracking.experiment_id_of_run(uri, parent_run_id)
    validation = log_data_docs(uri, experiment_id, parent_run_id, reports)
    for dataset, ing in (ingested or {}).items():
        _log_inputs(uri, parent_run_id, dataset, ing)
    frame = comparison_frame(results)
    if len(frame):
        frame.insert(0, "run", [run_name(r) for r in results])
    over = comparison_frame(over_seeds or [])
    if len(over):
        over.insert(0, "run", [run_name(r) for r in over_seeds])
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "comparison.csv"
        frame.to_csv(table, index=False)
        tracking.log_artifact(uri, parent_run_id, table)
        if len(over):  # per (dataset, family): the mean and sd of each metric over the seeds
            over.to_csv(Path(tmp) / "comparison-over-seeds.csv", index=False)
            tracking.log_artifact(uri, parent_run_id, Path(tmp) / "comparison-over-seeds.csv")
            tracking.log_table(uri, parent_run_id, over, "comparison-over-seeds.json")
        if len(frame):
            tracking.log_table(uri, parent_run_id, frame, "comparison.json")
            plotted = over if len(over) else frame  # over seeds: one bar per family, the mean
            ok = plotted[plotted["status"] == "ok"]
            if len(ok):
                tracking.log_artifact(uri, parent_run_id, plots.comparison_plot(
                    ok, Path(tmp) / "comparison.png",
                    metrics=("kl_to_truth", *(["kl_to_truth_estimate"] if "kl_to_truth_estimate" in ok
                                              else []), "heldout_loglik", "out_of_support_rate"),
                    title=f"{config['name']}: KL to the truth, held-out log-likelihood "
                    "(over all held-out examples), out-of-support rate"
                    + (" (means over the seeds)" if len(over) else "")))
    tracking.log_text(uri, parent_run_id, glossary_markdown() + "\n", "glossary.md")
    if failures:
        tracking.log_text(uri, parent_run_id,
                          "\n\n".join(f"{k}:\n{v}" for k, v in failures.items()) + "\n", "failures.txt")
        tracking.set_tags(uri, parent_run_id, {"failed": ", ".join(sorted(failures))[:5000]})
    skips = skipped_fits(results)
    if skips:
        tracking.log_text(uri, parent_run_id, "".join(f"{k}: skipped, {why}\n" for k, why in skips.items()),
                          "skipped-fits.txt")
        tracking.set_tags(uri, parent_run_id, {"skipped": "; ".join(
            f"{k}: {why}" for k, why in skips.items())[:5000]})
    description = parent_description(config, results, failures, over_seeds=over_seeds,
                                     glossary_link=tracking.artifact_link(experiment_id, parent_run_id,
                                                                          "glossary.md"),
                                     experiment_id=experiment_id, validation=validation)
    tracking.set_tags(uri, parent_run_id, {tracking.NOTE_TAG: description})
    tracking.set_experiment_tags(uri, experiment_id, {tracking.NOTE_TAG: experiment_description(
        config, results, failures, parent_run_id, over_seeds=over_seeds,
        experiment_id=experiment_id)})
    _set_runs_view(uri, experiment_id, results)
    tracking.log_metrics(uri, parent_run_id, {"n_runs": sum(1 for r in results if not r.skip),
                                              "n_failed": sum(1 for r in results if r.error),
                                              "n_skipped": len(skips)})


#: The KL columns of the leaderboard: exact, an upper bound, Monte-Carlo estimates.
KL_COLUMNS = ("kl_to_truth", "kl_to_truth_bound", "kl_to_truth_estimate", "kl_to_truth_bound_estimate")

#: Where the parent run keeps the Great Expectations Data Docs pages of its validations.
DATA_DOCS_DIR = "validation/data-docs"


def log_data_docs(uri: str, experiment_id: str, parent_run_id: str, reports: list[str]) -> str:
    """Log the Data Docs page of each validation report (its ``data_docs``) on the parent
    run, named after the report; return the description's section linking them."""
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for report in reports:
            try:
                payload = json.loads(Path(report).read_text())
            except (OSError, ValueError):
                continue
            pages = [Path(p) for p in payload.get("data_docs", []) if Path(p).is_file()]
            links = []
            for i, page in enumerate(pages):
                name = f"{Path(report).stem}{f'-{i + 1}' if len(pages) > 1 else ''}.html"
                shutil.copyfile(page, Path(tmp) / name)
                tracking.log_artifact(uri, parent_run_id, Path(tmp) / name, DATA_DOCS_DIR)
                links.append(f"[{name}]({tracking.artifact_link(experiment_id, parent_run_id, f'{DATA_DOCS_DIR}/{name}')})")
            if links:
                verdict = "valid" if payload.get("success") else "**invalid**"
                lines.append(f"- `{Path(payload['path']).name}` ({payload['kind']}): {verdict}; "
                             + ", ".join(links))
    if not lines:
        return ""
    return "\n".join(["### Validation (Great Expectations Data Docs)", "", *lines])


#: The runs table's columns, in this order of preference, when some run has them.
VIEW_METRICS = ("kl_to_truth", "kl_to_truth_is_infinite", "kl_to_truth_bound", "kl_to_truth_estimate",
                "kl_to_truth_estimate_se", "kl_to_truth_bound_estimate", "heldout_loglik", "heldout_loglik_bound",
                "heldout_loglik_in_support", "out_of_support_rate", "heldout_bits_per_dim",
                "on_land_rate", "valid_rate", "near_render_rate", "novelty_rate")


def dataset_view_key(dataset: str) -> str:
    """The runs-table view of one dataset's runs (see :func:`_set_runs_view`)."""
    return f"{tracking.RUNS_VIEW}-{dataset}"


def _sort_key(present: set[str]) -> str | None:
    return next((k for k in ("kl_to_truth", "kl_to_truth_estimate", "heldout_loglik", "heldout_loglik_bound")
                 if k in present), None)


def _set_runs_view(uri: str, experiment_id: str, results: list[RunResult]) -> None:
    """The views the printed links and the descriptions open: all the children, and one
    per dataset; best first (by KL where the truth is known, else by held-out
    log-likelihood), the dataset the first column. Not grouped (see
    :func:`tasks.tracking.set_runs_view`): a view per dataset instead."""
    def metrics_of(rows: list[RunResult]) -> set[str]:
        present = {k for r in rows for k in (r.metrics or {})}
        return present | {f"{k}_is_infinite" for k in MAY_BE_INFINITE if k in present}

    params = sorted({k for r in results for k in r.params})
    views = [(tracking.RUNS_VIEW, "", results)]
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset]
        views.append((dataset_view_key(dataset), f"tags.dataset = '{dataset}'", rows))
    for key, where, rows in views:
        present = metrics_of(rows)
        sort_by = _sort_key(present)
        if sort_by is None:
            continue
        tracking.set_runs_view(uri, experiment_id, sort_by=sort_by, ascending=sort_by.startswith("kl_"),
                               tags=["dataset"], metrics=[m for m in VIEW_METRICS if m in present],
                               params=params, search_filter=where, key=key)


def experiment_description(config: dict, results: list[RunResult], failures: dict[str, str],
                           parent_run_id: str, over_seeds: list[RunResult] | None = None,
                           experiment_id: str | None = None) -> str:
    """The experiment's description: the parent's, with the latest run named
    and the whole glossary."""
    from pmodel.glossary import glossary_markdown

    text = parent_description(config, results, failures, limit=10**9, over_seeds=over_seeds,
                              experiment_id=experiment_id)
    text = text.replace("### Leaderboard", f"### Leaderboard of the latest run (`{parent_run_id}`)", 1)
    cut = text.index("### What the scores mean")
    return text[:cut] + "### What the scores mean\n\n" + glossary_markdown()
