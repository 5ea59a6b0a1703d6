"""run_family on the built-in problems and on a user's data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pmodel.datasets import fashion
from pmodel.datasets.build import BuildConfig, build_all
from pmodel.evaluate import run_family
from pmodel.families import CategoricalDomain
from pmodel.datasets import pixels
from pmodel.problems import Problem, load_builtin


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, renders):
    out = tmp_path_factory.mktemp("data")
    build_all(BuildConfig(seed=1, n_train=30, n_heldout=200), out_dir=out, progress=False)
    return out


def test_pixels_truth_pools_no_hair_cells(renders):
    truth = pixels.truth_from_renders(renders)
    assert len(truth.images) == 3552 and truth.probs.sum() == pytest.approx(1.0)
    p = fashion.probability_table().ravel()
    h_pixels = -(truth.probs * np.log(truth.probs)).sum()
    assert h_pixels < -(p * np.log(p)).sum()  # merging cells loses exactly the hidden hair colour


def test_fashion_scores_match_their_definitions(data_dir):
    problem = load_builtin("fashion", data_dir)
    result = run_family("multinomial", {"alpha": 1.0}, problem, n_samples=300, seed=0)
    m = result.metrics
    lp = result.model.log_prob(problem.heldout)
    assert m["heldout_loglik"] == pytest.approx(lp.mean())
    assert m["out_of_support_rate"] == 0.0
    p = fashion.probability_table().ravel()
    q = np.exp(result.model.log_prob(problem.domain.all_cells()))
    assert m["kl_to_truth"] == pytest.approx(float((p * np.log(p / q)).sum()))
    assert m["entropy_truth"] == pytest.approx(fashion.entropy())
    assert m["n_parameters"] == 4031 and m["fit_seconds"] >= 0
    mle = run_family("multinomial", {"alpha": 0.0}, problem, n_samples=300, seed=0).metrics
    assert mle["kl_to_truth"] == math.inf and mle["out_of_support_rate"] > 0.5
    # over all held-out rows the MLE is -inf; over its support it looks best of all
    lp = run_family("multinomial", {"alpha": 0.0}, problem, n_samples=300, seed=0).model.log_prob(problem.heldout)
    assert mle["heldout_loglik"] == -math.inf
    assert mle["heldout_loglik_in_support"] == pytest.approx(lp[np.isfinite(lp)].mean())
    assert mle["heldout_loglik_in_support"] > m["heldout_loglik"]
    assert mle["novelty_rate"] == 0.0  # the MLE only repeats its training rows


def test_pixels_and_land_get_their_own_scores(data_dir, land_truth):
    pixels = load_builtin("pixels", data_dir)
    m = run_family("multinomial", {"alpha": 0.0}, pixels, n_samples=100, seed=0).metrics
    assert m["valid_rate"] == 1.0 and 1 <= m["n_valid_combinations"] <= 30
    assert "heldout_bits_per_dim" in m and m["log10_n_parameters"] == pytest.approx(1024 * math.log10(256))
    land = load_builtin("land", data_dir)
    m = run_family("box", {}, land, n_samples=500, seed=0).metrics
    for key in ("on_land_rate", "land_coverage", "prdc_precision", "prdc_recall", "prdc_density",
                "prdc_coverage", "box_sea_share", "land_outside_box_share", "kl_to_truth"):
        assert key in m and not math.isnan(m[key]), key
    assert 0 < m["on_land_rate"] < 1 and 0 < m["box_sea_share"] < 1


def test_user_data_skips_truth_scores_and_says_so():
    X = fashion.sample_codes(40, rng=np.random.default_rng(0))
    problem = Problem("mine", CategoricalDomain(fashion.SCHEMA.shape), X[:30], X[30:])
    result = run_family("naive_bayes", {"alpha": 1.0}, problem, n_samples=50, seed=0)
    assert "kl_to_truth" not in result.metrics and "entropy_truth" not in result.metrics
    for name in ("kl_to_truth", "entropy_truth", "truth_sample_scores"):
        assert "unknown" in result.skipped[name]
    assert "only for points" in result.skipped["prdc"]
    assert np.isfinite(result.metrics["heldout_loglik"])
