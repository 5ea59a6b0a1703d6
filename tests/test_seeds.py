"""Repeats over seeds: the whole experiment once per seed, the mean and sd over the seeds.

- pure: ``pmodel.repeats.over_seeds`` against a plain computation, infinities kept;
- the standard error of the held-out log-likelihood agrees with the spread of the
  held-out log-likelihood across seeds (fresh data per seed), and both with the exact
  variance P_data gives it (a case whose variance is known);
- for real, under Prefect and MLflow: ``seeds: [0, 1, 2]`` keeps every seed's children,
  tagged with their seed, each seed's data its own, and the parent's mean and sd per
  (dataset, family) equal those computed here from the children's recorded metrics.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmodel.records import RunResult
from pmodel.repeats import over_seeds

REPO = Path(__file__).resolve().parents[1]
SEEDS_TINY = REPO / "tests" / "experiments" / "seeds-tiny.yaml"


def test_over_seeds_is_the_mean_and_sd_of_each_metric_and_keeps_infinities():
    def r(label, seed, metrics, error=None):
        return RunResult("d", "f", label, label, {}, metrics=metrics, seed=seed, error=error)

    rows = [r("a", 0, {"kl_to_truth": 1.0, "heldout_loglik": -3.0, "heldout_loglik_se": 0.1}),
            r("b", 0, {"kl_to_truth": math.inf}),
            r("a", 1, {"kl_to_truth": 2.5, "heldout_loglik": -2.0, "heldout_loglik_se": 0.1}),
            r("b", 1, {"kl_to_truth": 0.5}),
            r("a", 2, {}, error="ValueError: boom"),
            r("c", 0, {}, error="ValueError: always"), r("c", 1, {}, error="ValueError: always")]
    a, b, c = over_seeds(rows)
    assert a.metrics == {"kl_to_truth": 1.75, "kl_to_truth_sd": pytest.approx(np.std([1.0, 2.5], ddof=1)),
                         "heldout_loglik": -2.5, "heldout_loglik_sd": pytest.approx(np.std([-3, -2], ddof=1)),
                         "n_seeds": 2.0}
    assert a.seed is None and a.notes == ("seed 2 failed: ValueError: boom",)
    assert b.metrics == {"kl_to_truth": math.inf, "n_seeds": 2.0}  # infinite: no sd
    assert c.error.startswith("failed on every seed")


def _fashion_problem(seed, n_train, n_heldout):
    from pmodel.datasets import fashion
    from pmodel.families import CategoricalDomain
    from pmodel.problems import Problem
    from pmodel.truths import TableTruth

    rng = np.random.default_rng([seed, 99])
    X = fashion.sample_codes(n_train + n_heldout, rng=rng)
    return Problem("fashion", CategoricalDomain(fashion.SCHEMA.shape), X[:n_train], X[n_train:],
                   truth=TableTruth(fashion.probability_table().ravel()))


def test_the_heldout_standard_error_agrees_with_the_spread_across_seeds():
    """Naive Bayes on the fashion table, 40 seeds, each drawing its own 4000 training and 300
    held-out rows. For a fixed model q the held-out mean's variance is known exactly,
    Var_P(log q(X)) / n, a sum over the 4032 cells; the recorded se matches it, and the sd of
    heldout_loglik across the seeds (refits included, small at 4000 rows) matches both within
    a factor of 2 (here within 25%)."""
    from pmodel.datasets import fashion
    from pmodel.evaluate import run_family

    n = 300
    lls, ses, exact = [], [], []
    p = fashion.probability_table().ravel()
    for seed in range(40):
        result = run_family("naive_bayes", {"alpha": 1.0}, _fashion_problem(seed, 4000, n), n_samples=10,
                            seed=seed)
        lls.append(result.metrics["heldout_loglik"])
        ses.append(result.metrics["heldout_loglik_se"])
        log_q = result.model.log_prob(result.model.domain.all_cells())
        exact.append(math.sqrt((np.sum(p * log_q**2) - np.sum(p * log_q)**2) / n))
    spread, se, known = np.std(lls, ddof=1), np.mean(ses), np.mean(exact)
    assert 0.9 < se / known < 1.1
    assert 0.5 < spread / se < 2.0 and 0.75 < spread / known < 1.25, (spread, se, known)


# ---------------------------------------------------------------------------
# For real: Prefect, MLflow
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds_run(prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment

    store = "sqlite:///" + str(tmp_path_factory.mktemp("seeds-mlflow") / "mlflow.db")
    state = run_experiment(str(SEEDS_TINY), tracking_uri=store, return_state=True)
    return store, state.result(raise_on_failure=False)


def test_seeds_keep_every_seeds_children_and_the_parent_reports_mean_and_sd(seeds_run):
    from mlflow.tracking import MlflowClient

    from tasks import tracking

    store, outcome = seeds_run
    assert outcome.seeds == (0, 1, 2) and not outcome.failures
    assert len(outcome.results) == 6 and {r.seed for r in outcome.results} == {0, 1, 2}
    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(outcome.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
    assert len(children) == 6
    by = {(c.data.tags["label"], int(c.data.tags["seed"])): c for c in children}
    assert set(by) == {(lab, s) for lab in ("naive_bayes alpha=1.0", "multinomial alpha=0.0")
                       for s in (0, 1, 2)}
    assert all(c.info.run_name.endswith(f"| seed {s}") for (_, s), c in by.items())
    assert {c.data.params["seed"] for c in children} == {"0", "1", "2"}
    # each seed drew its own data: three different training files
    digests = {s: {d.dataset.digest for d in by[("naive_bayes alpha=1.0", s)].inputs.dataset_inputs
                   if d.dataset.name == "fashion-train"} for s in (0, 1, 2)}
    assert all(len(v) == 1 for v in digests.values()) and len(set.union(*digests.values())) == 3
    # the parent's table: mean and sd over the seeds, as computed here from the children's metrics
    path = client.download_artifacts(outcome.parent_run_id, "comparison-over-seeds.csv")
    table = pd.read_csv(path).set_index("label")
    for label in ("naive_bayes alpha=1.0", "multinomial alpha=0.0"):
        recorded = [tracking.read_metrics(by[(label, s)]) for s in (0, 1, 2)]
        assert table.loc[label, "n_seeds"] == 3
        for key in ("kl_to_truth", "heldout_loglik_in_support", "novelty_rate", "out_of_support_rate"):
            values = [m[key] for m in recorded]
            assert table.loc[label, key] == pytest.approx(np.mean(values), rel=1e-12)
            if all(map(math.isfinite, values)):
                assert table.loc[label, key + "_sd"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    # the copying multinomial is infinitely wrong on every seed: its mean stays infinite, no sd
    assert table.loc["multinomial alpha=0.0", "kl_to_truth"] == math.inf
    assert pd.isna(table.loc["multinomial alpha=0.0", "kl_to_truth_sd"])
    # the description's leaderboard is the mean ± sd
    note = parent.data.tags[tracking.NOTE_TAG]
    assert "mean ± sd over 3 seeds" in note and "±" in note


def test_the_printed_leaderboard_shows_mean_and_sd_over_the_seeds(seeds_run):
    from flows.cli import leaderboard

    _, outcome = seeds_run
    text = leaderboard(outcome)
    assert text.splitlines()[1].startswith("mean ± sd over 3 seeds 0, 1, 2")
    nb = next(x for x in text.splitlines() if x.strip().startswith("naive_bayes"))
    mean = over_seeds(list(outcome.results))[0].metrics
    assert f"{mean['kl_to_truth']:.4g}" in nb and f"± {mean['kl_to_truth_sd']:.2g}" in nb
    assert "standard deviation" in text
