"""Latent scores: linear read-out R^2 and the mutual information gap, against slow references."""

from __future__ import annotations

import numpy as np
import pytest

from pmodel.scores.latent import (discretize, linear_readout_r2, mutual_information_gap,
                                  readout_scores)


def _r2_lstsq(Zt, yt, Zh, yh):
    """Least squares with an intercept by numpy, R^2 by its definition (yt, yh: (n, m))."""
    A = np.column_stack([np.ones(len(Zt)), Zt])
    beta, *_ = np.linalg.lstsq(A, yt, rcond=None)
    pred = np.column_stack([np.ones(len(Zh)), Zh]) @ beta
    return 1.0 - ((yh - pred) ** 2).sum() / ((yh - yh.mean(axis=0)) ** 2).sum()


def _mi_by_hand(a, b):
    """Plug-in mutual information (nats) from the joint histogram of two discrete arrays."""
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((len(ua), len(ub)))
    for i, j in zip(ia, ib):
        joint[i, j] += 1
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _bins_by_hand(z, n_bins=20):
    """Equal-width bins over [min, max], the maximum in the last bin: 1..n_bins."""
    width = (z.max() - z.min()) / n_bins
    return np.minimum(np.floor((z - z.min()) / width).astype(int), n_bins - 1) + 1


def _mig_by_hand(Z, V):
    D = np.column_stack([_bins_by_hand(Z[:, i]) for i in range(Z.shape[1])])
    out = []
    for k in range(V.shape[1]):
        mi = sorted((_mi_by_hand(D[:, i], V[:, k]) for i in range(D.shape[1])), reverse=True)
        out.append((mi[0] - mi[1]) / _mi_by_hand(V[:, k], V[:, k]))
    return np.array(out)


def test_r2_equals_numpy_least_squares_on_held_out_data():
    rng = np.random.default_rng(0)
    Zt, Zh = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))
    w = np.array([1.0, -2.0, 0.5, 0.0])
    yt = Zt @ w + np.sin(3 * Zt[:, 0]) + rng.normal(size=300)
    yh = Zh @ w + np.sin(3 * Zh[:, 0]) + rng.normal(size=200)
    expected = _r2_lstsq(Zt, yt[:, None], Zh, yh[:, None])
    assert 0.3 < expected < 0.95
    assert linear_readout_r2(Zt, yt, Zh, yh) == pytest.approx(expected, abs=1e-10)


def test_categorical_r2_reads_the_factor_out_one_hot():
    rng = np.random.default_rng(1)
    yt, yh = rng.integers(0, 4, 400), rng.integers(0, 4, 300)
    # a code that knows category 2 only
    Zt = np.column_stack([(yt == 2) + 0.3 * rng.normal(size=400), rng.normal(size=400)])
    Zh = np.column_stack([(yh == 2) + 0.3 * rng.normal(size=300), rng.normal(size=300)])
    onehot = lambda y: (y[:, None] == np.arange(4)).astype(float)  # noqa: E731
    expected = _r2_lstsq(Zt, onehot(yt), Zh, onehot(yh))  # share of total variance explained
    assert linear_readout_r2(Zt, yt, Zh, yh, categorical=True) == pytest.approx(expected, abs=1e-10)
    # relabelling the categories changes nothing, unlike a read-out of the codes as numbers
    perm = np.array([3, 0, 2, 1])
    assert linear_readout_r2(Zt, perm[yt], Zh, perm[yh], categorical=True) == pytest.approx(expected)


def test_discretisation_is_twenty_equal_width_bins():
    z = np.random.default_rng(2).normal(size=(1000, 3))
    np.testing.assert_array_equal(discretize(z), np.column_stack([_bins_by_hand(z[:, i]) for i in range(3)]))
    assert discretize(z).min() == 1 and discretize(z).max() == 20


def test_mig_equals_a_hand_written_histogram_computation():
    rng = np.random.default_rng(3)
    V = np.column_stack([rng.integers(0, 24, 2000), rng.integers(0, 5, 2000)])
    Z = np.column_stack([V[:, 0] + rng.normal(0, 3, 2000), V[:, 1] + V[:, 0] / 10 + rng.normal(0, 1, 2000),
                         rng.normal(size=2000)])
    mig, per_factor = mutual_information_gap(Z, V)
    expected = _mig_by_hand(Z, V)
    np.testing.assert_allclose(per_factor, expected, atol=1e-10)
    assert mig == pytest.approx(expected.mean())


def test_a_code_equal_to_the_factors_scores_one_and_a_random_code_zero():
    from pmodel.datasets import jars

    rng = np.random.default_rng(4)
    grid = jars.grid_factors()
    Ft, Fh = grid[rng.integers(0, len(grid), 2000)], grid[rng.integers(0, len(grid), 3000)]
    perfect = readout_scores(Ft, Fh, Ft, Fh, ("height", "width"))
    assert perfect["latent_r2_height"] == pytest.approx(1.0) and perfect["latent_r2"] == pytest.approx(1.0)
    mig, per_factor = mutual_information_gap(Fh, Fh)
    # 24 grid values in 20 bins: a few values share a bin, so a little information is lost
    assert mig > 0.9 and (per_factor > 0.9).all()
    noise_t, noise_h = rng.normal(size=(2000, 2)), rng.normal(size=(3000, 2))
    random = readout_scores(noise_t, noise_h, Ft, Fh, ("height", "width"))
    assert abs(random["latent_r2"]) < 0.01
    assert mutual_information_gap(noise_h, Fh)[0] < 0.02


def test_mig_sees_entanglement_that_r2_does_not():
    """Two code dimensions that each hold height: a perfect read-out, no gap."""
    from pmodel.datasets import jars

    F = jars.grid_factors()[np.random.default_rng(5).integers(0, 576, 3000)]
    Z = np.column_stack([F[:, 0] + F[:, 1], F[:, 0] - F[:, 1]])  # a rotation of the factors
    assert readout_scores(Z, Z, F, F, ("height", "width"))["latent_r2"] == pytest.approx(1.0)
    assert mutual_information_gap(Z, F)[0] < 0.2 < mutual_information_gap(F, F)[0]


def test_the_scores_run_for_an_encoder_on_data_with_factors_and_say_why_not_otherwise():
    from pmodel.families import ImageDomain, make_family
    from pmodel.problems import Problem
    from pmodel.scores import run_scores

    rng = np.random.default_rng(6)
    X = rng.integers(0, 3, size=(80, 2, 3)).astype(np.uint8)
    F = X.reshape(80, -1)[:, :2].astype(float)  # two pixels are the "factors"
    domain = ImageDomain(2, 3, levels=3)
    problem = Problem("toy", domain, X[:50], X[50:], factors={"train": F[:50], "heldout": F[50:]},
                      factor_names=("a", "b"), factor_categorical=(False, False))
    nb = make_family("naive_bayes", domain, alpha=1.0).fit(X[:50])
    metrics, skipped = run_scores(nb, problem, nb.sample(10, rng=rng))
    assert "latent_r2" not in metrics and "no latent space" in skipped["latent_r2"]
    assert "no latent space" in skipped["latent_mig"]
    no_factors = Problem("toy", domain, X[:50], X[50:])

    class Identity:  # a model whose code is its pixels: reads its own "factors" perfectly
        name, log_prob_kind, has_encoder = "identity", "none", True

        def encode(self, X):
            return np.asarray(X).reshape(len(X), -1).astype(float)

    metrics, skipped = run_scores(Identity(), problem, X[:10])
    assert metrics["latent_r2_a"] == pytest.approx(1.0) and metrics["latent_r2_b"] == pytest.approx(1.0)
    assert {"latent_mig", "latent_mig_a", "latent_mig_b"} <= set(metrics)
    _, skipped = run_scores(Identity(), no_factors, X[:10])
    assert "factors are unknown" in skipped["latent_r2"]
