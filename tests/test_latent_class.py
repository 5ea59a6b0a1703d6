"""latent_class: EM never goes down, one class is naive Bayes, log_prob and encode by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pmodel.datasets import fashion
from pmodel.families import CategoricalDomain, ImageDomain, make_family

DOMAIN = CategoricalDomain(fashion.SCHEMA.shape)


def _two_class_data(n, rng):
    """Two well-separated naive Bayes classes over 6 binary-ish columns (3 values each)."""
    z = rng.random(n) < 0.4
    p = np.where(z[:, None], 0.85, 0.1)  # P(x_j = 2 | class)
    X = np.where(rng.random((n, 6)) < p, 2, rng.integers(0, 2, (n, 6)))
    return X.astype(np.int64), z


@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_em_objective_never_decreases(alpha):
    X = fashion.sample_codes(2000, rng=np.random.default_rng(0))
    model = make_family("latent_class", DOMAIN, n_components=6, alpha=alpha, n_init=2,
                        max_iter=300, tol=1e-12).fit(X, rng=np.random.default_rng(1))
    objective = np.array(model.history_["objective"])
    assert len(objective) > 10
    assert (np.diff(objective) >= -1e-10).all()
    # the objective is the log-likelihood plus alpha * sum log theta (the Dirichlet prior)
    lt = model.log_theta_
    assert objective[-1] == pytest.approx(model.log_prob(X).mean() + alpha * lt.sum() / len(X), rel=1e-6, abs=1e-6)


def test_em_log_likelihood_never_decreases_on_images():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 4, size=(3, 4, 4))
    X = np.clip(base[rng.integers(0, 3, 300)] + rng.integers(-1, 2, (300, 4, 4)), 0, 3).astype(np.uint8)
    model = make_family("latent_class", ImageDomain(4, 4, levels=4), n_components=3, alpha=0.05,
                        n_init=1, tol=1e-12).fit(X, rng=rng)
    assert (np.diff(model.history_["objective"]) >= -1e-10).all()
    assert (np.diff(model.history_["loglik"]) >= -1e-3).all()  # small alpha: the prior barely moves it


def test_one_class_is_naive_bayes():
    X = fashion.sample_codes(300, rng=np.random.default_rng(3))
    lc = make_family("latent_class", DOMAIN, n_components=1, alpha=0.5).fit(X, rng=np.random.default_rng(0))
    nb = make_family("naive_bayes", DOMAIN, alpha=0.5).fit(X)
    cells = DOMAIN.all_cells()
    np.testing.assert_allclose(lc.log_prob(cells), nb.log_prob(cells), rtol=1e-12, atol=1e-12)
    assert lc.n_parameters_ == nb.n_parameters_ == 23


def test_log_prob_and_encode_equal_a_slow_sum_over_classes():
    X = fashion.sample_codes(500, rng=np.random.default_rng(4))
    model = make_family("latent_class", DOMAIN, n_components=4, alpha=0.3).fit(X, rng=np.random.default_rng(0))
    w, theta, off = np.exp(model.log_weights_), np.exp(model.log_theta_), model.offsets_
    for x, lp, post in zip(X[:20], model.log_prob(X[:20]), model.encode(X[:20])):
        joint = np.array([w[k] * np.prod([theta[k, off[j] + x[j]] for j in range(5)]) for k in range(4)])
        assert lp == pytest.approx(np.log(joint.sum()), rel=1e-12)
        np.testing.assert_allclose(post, joint / joint.sum(), rtol=1e-10, atol=1e-15)


def test_two_hidden_classes_are_found_and_encoded():
    rng = np.random.default_rng(5)
    X, z = _two_class_data(3000, rng)
    model = make_family("latent_class", CategoricalDomain((3,) * 6), n_components=2, alpha=0.1).fit(X, rng=rng)
    guess = model.encode(X).argmax(axis=1) == 1
    accuracy = max((guess == z).mean(), (guess != z).mean())  # classes come back in either order
    assert accuracy > 0.95
    assert sorted(np.exp(model.log_weights_).round(1)) == [0.4, 0.6]


def test_the_same_rng_gives_the_same_fit_and_restarts_differ():
    X = fashion.sample_codes(800, rng=np.random.default_rng(6))
    fit = lambda seed: make_family("latent_class", DOMAIN, n_components=5, n_init=3).fit(  # noqa: E731
        X, rng=np.random.default_rng(seed))
    a, b = fit(0), fit(0)
    np.testing.assert_array_equal(a.log_theta_, b.log_theta_)
    assert a.history_ == b.history_
    assert len(set(np.round(a.final_objective_per_start_, 9))) > 1
    assert a.history_["objective"][-1] == max(a.final_objective_per_start_)


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_the_recorded_objective_is_that_of_the_returned_parameters_also_at_max_iter(max_iter):
    """EM stopped by max_iter (tol 0 never stops it) records, and picks its best start on, the
    objective of the parameters it returns, recomputed here from them."""
    X = fashion.sample_codes(800, rng=np.random.default_rng(5))
    alpha = 0.2
    model = make_family("latent_class", DOMAIN, n_components=5, alpha=alpha, n_init=3,
                        max_iter=max_iter, tol=1e-300).fit(X, rng=np.random.default_rng(2))
    loglik = model.log_prob(X).mean()
    objective = loglik + alpha * model.log_theta_.sum() / len(X)
    assert len(model.history_["objective"]) == max_iter + 1  # the start, then each M-step's result
    assert model.history_["loglik"][-1] == pytest.approx(loglik, rel=1e-12)
    assert model.history_["objective"][-1] == pytest.approx(objective, rel=1e-12)
    assert max(model.final_objective_per_start_) == model.history_["objective"][-1]
