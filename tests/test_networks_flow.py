"""Published networks through the real flow (Prefect harness, MLflow SQLite store): exact KL on a
small network, a Monte-Carlo estimate with its standard error on a large one, never under one
name; skeleton scores for the structure learners, skipped with the reason for the others."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "networks-tiny.yaml"


@pytest.fixture(scope="module")
def networks_run(prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment

    store = "sqlite:///" + str(tmp_path_factory.mktemp("networks-mlflow") / "mlflow.db")
    state = run_experiment(str(TINY), tracking_uri=store, return_state=True)
    return state, state.result(raise_on_failure=False), store


def _children(store, parent):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_run(parent).info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    return {(r.data.tags["dataset"], r.data.tags["family"]): r for r in runs}


def test_exact_and_estimated_kl_are_recorded_under_their_own_names(networks_run):
    state, outcome, store = networks_run
    assert state.is_completed(), state.message
    children = _children(store, outcome.parent_run_id)
    assert set(children) == {(d, f) for d in ("asia", "alarm") for f in ("naive_bayes", "chow_liu", "bayes_net")}
    for (dataset, family), run in children.items():
        m, tags = run.data.metrics, run.data.tags
        if dataset == "asia":  # 256 joint states: exact sums
            assert {"kl_to_truth", "entropy_truth"} <= set(m) and m["kl_to_truth"] >= 0
            assert not any(k.startswith(("kl_to_truth_estimate", "entropy_truth_estimate")) for k in m)
            assert "exact value is recorded" in tags["skipped.kl_to_truth_estimate"]
        else:  # 10^16.2 joint states: Monte Carlo, with the standard error beside it
            assert {"kl_to_truth_estimate", "kl_to_truth_estimate_se", "entropy_truth_estimate",
                    "entropy_truth_estimate_se"} <= set(m)
            assert "kl_to_truth" not in m and "entropy_truth" not in m
            assert "10^16.2 joint states" in tags["skipped.kl_to_truth"]
            assert 0 < m["kl_to_truth_estimate_se"] < 0.1 * m["kl_to_truth_estimate"]
        assert run.data.params["n_train"] == "300"
    # every model of alarm is scored on the same draws: one entropy estimate for all
    assert len({children[("alarm", f)].data.metrics["entropy_truth_estimate"]
                for f in ("naive_bayes", "chow_liu", "bayes_net")}) == 1
    # the structure learners beat naive Bayes on both, as the truth says they should
    for dataset, kl in (("asia", "kl_to_truth"), ("alarm", "kl_to_truth_estimate")):
        nb = children[(dataset, "naive_bayes")].data.metrics[kl]
        assert children[(dataset, "chow_liu")].data.metrics[kl] < nb
        assert children[(dataset, "bayes_net")].data.metrics[kl] < nb


def test_structure_learners_get_skeleton_scores_and_the_others_the_reason(networks_run):
    _, outcome, store = networks_run
    for (dataset, family), run in _children(store, outcome.parent_run_id).items():
        m = run.data.metrics
        if family == "naive_bayes":
            assert not any(k.startswith("skeleton_") for k in m)
            assert "learns no graph" in run.data.tags["skipped.skeleton"]
        else:
            assert 0 < m["skeleton_recall"] <= 1 and 0 < m["skeleton_precision"] <= 1, (dataset, family)


def test_every_recorded_metric_is_in_the_glossary_and_the_leaderboard_shows_the_error(networks_run):
    from pmodel.glossary import describe
    from pmodel.leaderboard import as_text
    from tasks import tracking

    _, outcome, store = networks_run
    for run in _children(store, outcome.parent_run_id).values():
        for key in tracking.read_metrics(run):
            assert describe(key) is not None, key
    text = as_text(list(outcome.results))
    assert "±" in text and "Monte-Carlo estimate" in text
