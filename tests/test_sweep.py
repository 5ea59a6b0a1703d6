"""pmodel sweep: the declared ranges, the objective, the epoch callback, and the flow for real
(Prefect's test harness, a SQLite MLflow store, the Optuna study in SQLite under PMODEL_HOME).

Asserts on what the MLflow store and the Optuna study hold, and checks the recorded values
against an independent refit.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "sweep-tiny.yaml"


# ---------------------------------------------------------------------------
# The declarations (pure)
# ---------------------------------------------------------------------------

def _classes():
    from pmodel.families import family_class, family_names, kinds_served

    return [(name, kind, family_class(name, kind)) for name in family_names() for kind in kinds_served(name)]


def test_every_declared_range_is_a_hyperparameter_within_its_rules():
    swept = []
    for name, kind, cls in _classes():
        for key, search in cls.search_space.items():
            assert key in cls.hyperparameters, f"{name} on {kind}: {key} is searched but not declared"
            for value in search.values():  # the ends of the range, or every choice, pass its rules
                cls.hyperparameters[key].check(f"{name}.{key}", value)
            swept.append((name, kind))
    # the land flow and a few others can be swept
    assert {("flow", "points"), ("multinomial", "categorical"), ("naive_bayes", "categorical"),
            ("autoregressive", "categorical"), ("gmm", "points")} <= set(swept)


def test_a_family_without_ranges_is_refused_with_the_ones_that_have_them():
    from pmodel.sweeps import NoSearchSpace, search_space

    with pytest.raises(NoSearchSpace, match=r"'box' declares no search ranges on categorical data.*"
                                            r"families with ranges on categorical data: .*multinomial"):
        search_space("box", "categorical")
    assert set(search_space("flow", "points")) == {"lr", "transforms", "hidden", "bins", "batch_size"}


def test_the_objective_is_the_exact_kl_else_the_exact_loglik_else_the_bound(tmp_path):
    from pmodel.datasets import fashion
    from pmodel.families import CategoricalDomain, make_family
    from pmodel.problems import Problem
    from pmodel.sweeps import choose_objective
    from pmodel.datasets.registry import truth_of

    X = np.zeros((5, 5), dtype=np.int64)
    domain = CategoricalDomain(fashion.SCHEMA.shape)
    known = Problem("fashion", domain, X, X, truth_of("fashion"), builtin="fashion")
    users = Problem("mine", domain, X, X, None)
    pick = lambda family, problem: choose_objective(make_family(family, domain), problem)  # noqa: E731
    assert (pick("multinomial", known).metric, pick("multinomial", known).direction) == ("kl_to_truth", "minimize")
    assert (pick("multinomial", users).metric, pick("multinomial", users).direction) == ("heldout_loglik", "maximize")
    bound = pick("vae", known)
    assert (bound.metric, bound.direction, bound.kind) == ("kl_to_truth_bound", "minimize", "bound")
    assert pick("vae", users).metric == "heldout_loglik_bound"


def test_the_epoch_callback_reads_every_epoch_changes_nothing_and_can_stop_the_fit():
    from pmodel.errors import StopTraining
    from pmodel.datasets import fashion
    from pmodel.families import CategoricalDomain, make_family

    X = fashion.sample_codes(200, rng=np.random.default_rng(0))
    domain = CategoricalDomain(fashion.SCHEMA.shape)
    params = dict(epochs=4, hidden=8, patience=0, batch_size=32, device="cpu")
    seen = []
    reported = make_family("autoregressive", domain, **params).fit(
        X, rng=np.random.default_rng(1), after_epoch=lambda e, h: seen.append((e, list(h["val_loss"]))))
    plain = make_family("autoregressive", domain, **params).fit(X, rng=np.random.default_rng(1))
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert seen[-1][1] == reported.history_["val_loss"]
    assert np.array_equal(reported.log_prob(X), plain.log_prob(X))

    def stop(epoch, history):
        if epoch == 2:
            raise StopTraining("enough")

    model = make_family("autoregressive", domain, **params)
    with pytest.raises(StopTraining, match="enough"):
        model.fit(X, rng=np.random.default_rng(1), after_epoch=stop)
    with pytest.raises(RuntimeError, match="not fitted"):  # a stopped fit is no model
        model.log_prob(X)


# ---------------------------------------------------------------------------
# The flow, for real
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


def _sweep(store, family, dataset, trials, *, name, pruner="median", n_jobs=1):
    from flows.sweep import run_sweep

    state = run_sweep(str(TINY), family, dataset, trials, n_jobs=n_jobs, pruner=pruner,
                      overrides=[f"name={name}"], tracking_uri=store, return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def _children(store, parent):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_run(parent).info.experiment_id
    return client, client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


@pytest.fixture(scope="module")
def resumed(prefect_harness, store):
    first = _sweep(store, "multinomial", "fashion", 2, name="sweep-resume")
    # the second run keeps two trials at once on the flow's thread pool
    second = _sweep(store, "multinomial", "fashion", 2, name="sweep-resume", n_jobs=2)
    return first, second


def test_a_sweep_resumes_its_study(resumed, store):
    import optuna
    from tasks.sweeps import storage_url

    first, second = resumed
    assert first.study == second.study == "sweep-resume-multinomial-fashion"
    study = optuna.load_study(study_name=first.study, storage=storage_url())
    assert len(study.trials) == 4 == second.n_in_study
    assert [t.number for t in first.trials] == [0, 1] and [t.number for t in second.trials] == [2, 3]
    alphas = [t.params["alpha"] for t in study.trials]
    assert len(set(alphas)) == 4, "the resumed sweep replayed the first run's proposals"
    for outcome in (first, second):  # a parent per run, a child per trial
        client, children = _children(store, outcome.parent_run_id)
        assert len(children) == 2
        assert {c.data.tags["sweep.state"] for c in children} == {"COMPLETE"}
        assert all(c.info.status == "FINISHED" for c in children)


def test_the_objective_is_named_and_the_best_is_the_best_child_rechecked_by_a_refit(resumed, store):
    from pmodel.evaluate import run_family
    from pmodel.problems import load_problem

    first, second = resumed
    client, children = _children(store, second.parent_run_id)
    _, earlier = _children(store, first.parent_run_id)
    parent = client.get_run(second.parent_run_id)
    tags = parent.data.tags
    assert (tags["sweep.objective"], tags["sweep.objective_direction"], tags["sweep.objective_kind"]) == \
        ("kl_to_truth", "minimize", "exact")
    kl = {c.info.run_id: c.data.metrics["kl_to_truth"] for c in [*children, *earlier]}
    best_id = min(kl, key=kl.get)  # the best of the whole study, over both runs
    assert tags["sweep.best_run_id"] == best_id == second.best["run_id"]
    assert parent.data.metrics["best_kl_to_truth"] == kl[best_id]
    # the recorded objective is the KL of the recorded alpha: refit it independently
    best = client.get_run(best_id)
    alpha = float(best.data.params["alpha"])
    assert alpha == second.best["params"]["alpha"]
    from tasks.tracking import download_model_folder

    model_dir = download_model_folder(best_id, store)
    problem = load_problem(second.problem_path)
    refit = run_family("multinomial", {"alpha": alpha}, problem, n_samples=10, seed=0)
    assert refit.metrics["kl_to_truth"] == pytest.approx(kl[best_id], rel=1e-12)
    assert Path(model_dir, "model.json").exists()
    # the best trial is the dataset's champion, registered like any other; each sweep run's best
    # challenged the champion, and a new version exists only where the champion changed
    version = client.get_model_version_by_alias("sweep-resume-fashion", "champion")
    assert version.run_id == best_id
    firsts_best = first.best["run_id"]
    n_versions = len(client.search_model_versions("name = 'sweep-resume-fashion'"))
    assert n_versions == (1 if firsts_best == best_id else 2)
    assert "kl_to_truth" in tags["pmodel.champion.fashion"]


def test_deep_trials_are_pruned_on_their_validation_loss(prefect_harness, store):
    import optuna
    from tasks.sweeps import storage_url

    out = _sweep(store, "autoregressive", "fashion", 6, name="sweep-prune", pruner="halving")
    client, children = _children(store, out.parent_run_id)
    assert len(children) == 6 == len(out.trials)
    by_state = {}
    for c in children:
        by_state.setdefault(c.data.tags["sweep.state"], []).append(c)
    assert by_state.get("PRUNED"), "successive halving pruned no trial"
    assert by_state.get("COMPLETE")
    study = optuna.load_study(study_name=out.study, storage=storage_url())
    trials = {t.number: t for t in study.trials}
    for c in by_state["PRUNED"]:
        assert c.info.status == "KILLED"
        trial = trials[int(c.data.tags["sweep.trial"])]
        assert trial.state == optuna.trial.TrialState.PRUNED
        curve = client.get_metric_history(c.info.run_id, "val_loss")
        epoch = int(c.data.metrics["pruned_at_epoch"])
        assert len(curve) == epoch < 8  # stopped before the budget's 8 epochs
        # what the pruner saw is the fit's validation loss, and some other trial did better there
        assert trial.intermediate_values[epoch] == pytest.approx(curve[-1].value)
        others = [t.intermediate_values[epoch] for t in study.trials
                  if t.number != trial.number and epoch in t.intermediate_values]
        assert min(others) < trial.intermediate_values[epoch]
        assert "kl_to_truth" not in c.data.metrics  # a pruned trial has no scores
    for c in by_state["COMPLETE"]:
        assert c.info.status == "FINISHED"
        assert len(client.get_metric_history(c.info.run_id, "val_loss")) == 8
        assert math.isfinite(c.data.metrics["kl_to_truth"])


def test_sweeping_a_family_without_ranges_is_a_usage_error(capsys):
    from flows.cli import EXIT_USAGE, main

    code = main(["sweep", str(TINY), "--family", "box", "--dataset", "fashion", "--trials", "1"])
    assert code == EXIT_USAGE
    assert "'box' declares no search ranges" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Training as MLflow shows it (issue 18 item 5)
# ---------------------------------------------------------------------------

def test_a_deep_fit_on_land_logs_a_map_per_epoch_and_the_run_its_system_metrics(prefect_harness, store):
    from flows.experiment import run_experiment

    state = run_experiment(str(REPO / "tests" / "experiments" / "watch-tiny.yaml"), tracking_uri=store,
                           system_metrics=True, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    client, children = _children(store, outcome.parent_run_id)
    (child,) = children
    pictures = [a.path for a in client.list_artifacts(child.info.run_id, "images") if a.path.endswith(".png")]
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in pictures if "samples-while-training" in p)
    assert steps == [1, 2, 3], pictures  # an MLflow image sequence: one map after each epoch
    parent = client.get_run(outcome.parent_run_id)
    system = {k for k in parent.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    assert 0 <= parent.data.metrics["system/cpu_utilization_percentage"] <= 100


def test_maps_while_training_on_points_do_not_change_the_weights():
    from pmodel.families import PointsDomain, make_family
    from pmodel.families.deep import _torch

    X = np.random.default_rng(0).uniform([-20, -10], [30, 40], size=(120, 2))
    params = dict(epochs=4, transforms=1, hidden=4, bins=4, batch_size=32, device="cpu")
    seen = []
    watched = make_family("flow", PointsDomain(), **params).watch(
        lambda e, x: seen.append((e, x.shape[1], bool(PointsDomain().in_support(x).all()))),
        pictures=2, n_samples=50)
    watched.fit(X, rng=np.random.default_rng(0))
    plain = make_family("flow", PointsDomain(), **params).fit(X, rng=np.random.default_rng(0))
    assert seen == [(2, 2, True), (4, 2, True)]  # before the rectangle's mass is known: in it
    for (k, a), b in zip(_torch.state_arrays(watched.module_).items(), _torch.state_arrays(plain.module_).values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
