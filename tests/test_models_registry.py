"""Fitted models as MLflow models (pyfunc from code) and the champion of each dataset in the
Model Registry, through a real tiny run (Prefect harness, MLflow SQLite store)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = """\
name: models-tiny
seed: 4
n_samples: 100
build: {n_train: 50, n_heldout: 200}
datasets:
  fashion: {builtin: fashion}
families:
  - family: box
  - family: multinomial
    params: {alpha: 1.0}
  - family: naive_bayes
    params: {alpha: 1.0}
"""


@pytest.fixture(scope="module")
def models_run(prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment

    folder = tmp_path_factory.mktemp("models")
    (folder / "models-tiny.yaml").write_text(EXPERIMENT)
    store = "sqlite:///" + str(folder / "mlflow.db")
    state = run_experiment(str(folder / "models-tiny.yaml"), tracking_uri=store, return_state=True)
    assert state.is_completed(), state.message
    return state.result(), store


def _client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store, registry_uri=store)


def _champion_uri() -> str:
    return "models:/models-tiny-fashion@champion"


def test_each_child_logs_a_logged_model_linked_to_its_run(models_run):
    outcome, store = models_run
    client = _client(store)
    logged = client.search_logged_models(experiment_ids=[outcome.experiment_id])
    by_run = {m.source_run_id: m for m in logged}
    assert set(by_run) == {r.run_id for r in outcome.results}
    for result in outcome.results:
        model = by_run[result.run_id]
        assert model.name == "model" and model.tags["family"] == result.family
        # the run's scores are on the model too (the Models views show them)
        run = client.get_run(result.run_id)
        metrics = {m.key: m.value for m in model.metrics or []}
        assert "n_parameters" in metrics and "kl_to_truth_is_infinite" in metrics
        assert all(metrics[k] == v for k, v in run.data.metrics.items() if k in metrics)
        if math.isfinite(result.metrics["kl_to_truth"]):  # an infinity is a tag, not a metric
            assert metrics["kl_to_truth"] == pytest.approx(result.metrics["kl_to_truth"])
        assert run.info.status == "FINISHED"
        assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]


def test_the_champion_is_the_lowest_exact_kl_and_the_parent_says_why(models_run):
    outcome, store = models_run
    client = _client(store)
    kl = {r.run_id: r.metrics["kl_to_truth"] for r in outcome.results}
    best = min(kl, key=kl.get)  # independent of tasks/models.py: the children's own metric
    version = client.get_model_version_by_alias("models-tiny-fashion", "champion")
    assert version.run_id == best
    assert version.tags["chosen_by"] == "kl_to_truth"
    assert float(version.tags["kl_to_truth"]) == pytest.approx(kl[best])
    parent = client.get_run(outcome.parent_run_id)
    line = parent.data.tags["pmodel.champion.fashion"]
    assert best in line and "lowest exact kl_to_truth" in line and _champion_uri() in line
    assert "### Champions" in parent.data.tags["mlflow.note.content"]


def test_pyfunc_predict_samples_equal_pmodel_sample(models_run, tmp_path):
    import mlflow.pyfunc

    from flows.cli import main

    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    outcome, store = models_run

    with _use_tracking_uri(store):
        pyfunc = mlflow.pyfunc.load_model(_champion_uri())
        drawn = pyfunc.predict(None, params={"n": 16, "seed": 7})
    assert main(["sample", _champion_uri(), "-n", "16", "--seed", "7", "--out", str(tmp_path / "s"),
                 "--tracking-uri", store]) == 0
    written = pd.read_csv(tmp_path / "s" / "samples.csv", dtype=str)
    pd.testing.assert_frame_equal(drawn.reset_index(drop=True), written, check_dtype=False)
    # and another seed draws other rows
    with _use_tracking_uri(store):
        other = pyfunc.predict(None, params={"n": 16, "seed": 8})
    assert not other.equals(drawn)


def test_pyfunc_scores_equal_the_familys_own_log_prob(models_run):
    import mlflow.pyfunc
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from pmodel.datasets import fashion
    from pmodel.problems import load_problem
    from tasks.steps import load_model

    outcome, store = models_run
    for result in outcome.results:
        with _use_tracking_uri(store):
            pyfunc = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
        heldout = load_problem(result.problem_path).heldout
        own, _ = load_model(result.model_path)  # the flow's fitted model, not the logged one
        expected = own.log_prob(heldout)
        np.testing.assert_array_equal(pyfunc.predict(heldout, params={"score": "log_prob"}), expected)
        # rows by their category names score the same
        named = fashion.SCHEMA.from_codes(heldout)
        np.testing.assert_array_equal(pyfunc.predict(named, params={"score": "log_prob"}), expected)
        # an exact model refuses to call its value a bound
        with pytest.raises(Exception, match="ask for score='log_prob'"):
            pyfunc.predict(heldout, params={"score": "log_prob_lower_bound"})
    # the box gives the unseen cells probability 0: -inf, not an error
    box = next(r for r in outcome.results if r.family == "box")
    assert np.isneginf(load_model(box.model_path)[0].log_prob(load_problem(box.problem_path).heldout)).any()


def test_runs_uri_keeps_working_for_the_pmodel_helpers(models_run):
    from tasks.tracking import download_model_folder, load_model_from_run

    outcome, store = models_run
    result = outcome.results[0]
    folder = download_model_folder(f"runs:/{result.run_id}/model", store)
    assert {"model.json", "arrays.npz", "schema.json"} <= {p.name for p in folder.iterdir()}
    assert download_model_folder(result.run_id, store).name == folder.name
    model = load_model_from_run(_champion_uri(), store)
    champion = next(r for r in outcome.results if r.run_id == _client(store).get_model_version_by_alias(
        "models-tiny-fashion", "champion").run_id)
    assert model.name == champion.family and model.get_params() == champion.params


FRESH = """
import json, sys, warnings
import numpy as np
import mlflow.pyfunc
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    champion = mlflow.pyfunc.load_model(sys.argv[1])
    by_run = mlflow.pyfunc.load_model(sys.argv[2])
drawn = champion.predict(None, params={"n": 5, "seed": 3})
scores = by_run.predict(np.asarray(json.loads(sys.argv[3])), params={"score": "log_prob"})
print(json.dumps({"rows": drawn.values.tolist(), "scores": scores.tolist(),
                  "flows": any(m == "flows" or m.startswith(("flows.", "prefect")) for m in sys.modules),
                  "warnings": [str(w.message) for w in caught]}))
"""


def test_a_fresh_process_loads_the_champion_and_a_runs_model(models_run):
    import mlflow.pyfunc
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from pmodel.problems import load_problem

    outcome, store = models_run
    result = outcome.results[0]
    rows = load_problem(result.problem_path).heldout[:7]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PIP_NO_INDEX": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", FRESH, _champion_uri(), f"runs:/{result.run_id}/model",
                           json.dumps(rows.tolist())], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["flows"] is False  # neither the flows nor Prefect were imported to load it
    # the environment it was logged from matches: no requirement-mismatch warning
    assert not [w for w in got["warnings"] if "requirement" in w.lower() or "mismatch" in w.lower()]
    with _use_tracking_uri(store):
        here = mlflow.pyfunc.load_model(_champion_uri()).predict(None, params={"n": 5, "seed": 3})
        scores = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model").predict(
            rows, params={"score": "log_prob"})
    assert got["rows"] == here.values.tolist()
    np.testing.assert_array_equal(np.asarray(got["scores"], dtype=float), scores)


def test_the_logged_environment_installs_nothing_new(models_run, tmp_path):
    import importlib.metadata as md

    import mlflow

    from tasks.models import fluent_tracking_uri

    outcome, store = models_run
    with fluent_tracking_uri(store):
        local = Path(mlflow.artifacts.download_artifacts(f"runs:/{outcome.results[0].run_id}/model",
                                                         dst_path=str(tmp_path)))
    pins = (local / "requirements.txt").read_text().split()
    # every requirement pinned to what this environment has: loading here has nothing to install
    for pin in pins:
        name, _, version = pin.partition("==")
        assert version == md.version(name), pin
    assert not any("cloudpickle" in p for p in pins)
    meta = (local / "MLmodel").read_text()
    assert "python_model.pkl" not in meta and "pyfunc_model.py" in meta  # models from code


# ---------------------------------------------------------------------------
# The choice itself, and what a model without a likelihood says
# ---------------------------------------------------------------------------

def _cand(name, kind, **metrics):
    from tasks.models import Candidate

    return Candidate(f"id-{name}", name, f"m-{name}", kind, metrics)


def test_a_bound_or_an_estimate_never_competes_with_an_exact_value():
    from tasks.models import choose_champion

    exact = _cand("nb", "exact", kl_to_truth=0.5, heldout_loglik=-8.0)
    bound = _cand("vae", "lower_bound", kl_to_truth_bound=0.01, heldout_loglik_bound=-1.0)
    estimate = _cand("flow", "exact", kl_to_truth_estimate=0.001, heldout_loglik=-9.0)
    champion, why = choose_champion([bound, exact, estimate])
    # the flow has no exact KL (only a sampled estimate) so it does not compete on KL at all
    assert champion.run_id == "id-nb" and champion.metric == "kl_to_truth"
    assert "1 candidate" in why and "2 other runs" in why
    # without an exact KL anywhere: the best exact held-out log-likelihood
    champion, _ = choose_champion([bound, _cand("a", "exact", heldout_loglik=-9.0),
                                   _cand("b", "exact", heldout_loglik=-7.5)])
    assert (champion.run_name, champion.metric) == ("b", "heldout_loglik")
    # bounds only: no champion, and the reason says so
    champion, why = choose_champion([bound])
    assert champion is None and "no champion" in why and "bounds" in why
    # infinite KL everywhere: ties go to the exact held-out log-likelihood
    champion, why = choose_champion([_cand("x", "exact", kl_to_truth=math.inf, heldout_loglik=-math.inf),
                                     _cand("y", "exact", kl_to_truth=math.inf, heldout_loglik=-3.0)])
    assert champion.run_name == "y" and "inf" in why


def test_a_model_without_a_likelihood_refuses_to_score(tmp_path):
    import mlflow.pyfunc

    from pmodel.datasets import fashion
    from pmodel.families import make_family
    from pmodel.families.base import register_family, unregister_family
    from pmodel.families.domains import CategoricalDomain
    from pmodel.families import family_class
    from tasks import models

    class NoLikelihood(family_class("naive_bayes", "categorical")):  # samples like naive Bayes, claims no likelihood (as a GAN)
        name = "test_no_likelihood"
        log_prob_kind = "none"

    register_family("test_no_likelihood", "categorical", NoLikelihood)
    try:
        X = fashion.sample_codes(40, rng=np.random.default_rng(0))
        model = make_family("test_no_likelihood", CategoricalDomain(fashion.SCHEMA.shape)).fit(X)
        folder = model.save(tmp_path / models.ARTIFACT_KEY)
        mlflow.pyfunc.save_model(tmp_path / "mlflow-model", python_model=str(models.CODE_FILE),
                                 artifacts={models.ARTIFACT_KEY: str(folder)},
                                 signature=models.signature(), pip_requirements=[])
        pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "mlflow-model"))
        assert pyfunc.predict(None, params={"n": 3, "seed": 0}).shape == (3, 5)
        with pytest.raises(Exception, match="has no likelihood"):
            pyfunc.predict(X, params={"score": "log_prob"})
    finally:
        unregister_family("test_no_likelihood")


def test_the_code_file_and_the_adapter_agree_on_the_artifact_name():
    import tasks.pyfunc_model as code
    from tasks import models

    assert code.ARTIFACT_KEY == models.ARTIFACT_KEY


def test_a_model_saved_by_another_pmodel_version_warns_on_load(tmp_path):
    import pmodel
    from pmodel import load_model
    from pmodel.families import make_family
    from pmodel.families.domains import CategoricalDomain

    X = np.array([[0, 1], [1, 0], [1, 1]])
    folder = make_family("naive_bayes", CategoricalDomain((2, 2)), alpha=1.0).fit(X).save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["pmodel_version"] == pmodel.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same version: silent
        load_model(folder)
    meta["pmodel_version"] = "0.0.1"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match=r"saved by pmodel 0\.0\.1, loaded by pmodel"):
        again = load_model(folder)
    assert np.isfinite(again.log_prob(X)).all()  # a warning, not a refusal


def test_a_run_recorded_before_models_were_mlflow_models_still_loads(tmp_path):
    from pmodel.families import make_family
    from pmodel.families.domains import CategoricalDomain
    from tasks import tracking

    store = "sqlite:///" + str(tmp_path / "mlflow.db")
    X = np.array([[0, 1], [1, 0], [1, 1]])
    model = make_family("naive_bayes", CategoricalDomain((2, 2)), alpha=1.0).fit(X)
    run_id = tracking.start_run(store, tracking.get_or_create_experiment(store, "old"), "old run")
    # the old layout: pmodel's folder itself as the run's artifact "model/"
    tracking.log_artifacts(store, run_id, model.save(tmp_path / "stage" / "model"), "model")
    tracking.end_run(store, run_id, "FINISHED")
    again = tracking.load_model_from_run(f"runs:/{run_id}/model", store)
    np.testing.assert_array_equal(again.log_prob(X), model.log_prob(X))
    with pytest.raises(ValueError, match="no run 'nope'"):
        tracking.download_model_folder("nope", store)
