"""pca and factor_analysis: the Gaussian is scikit-learn's, the dequantised bound is below the
exact mass of each pixel cube, encode is the posterior mean."""

from __future__ import annotations

import numpy as np
import pytest

from pmodel.families import ImageDomain, make_family
from pmodel.families._rectangle import gaussian_rectangle_mass

FAMILIES = ["pca", "factor_analysis"]


def _images(n, domain, rng):
    """Correlated pixels: a random linear image of 2 factors plus noise, quantised."""
    D = domain.n_features
    basis = rng.normal(0, 1.0, (2, D))
    V = domain.levels / 2 + rng.normal(size=(n, 2)) @ basis + rng.normal(0, 0.4, (n, D))
    return np.clip(np.floor(V), 0, domain.levels - 1).astype(np.uint8).reshape(n, *domain.event_shape)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_density_is_scikit_learns(name):
    from sklearn.decomposition import PCA, FactorAnalysis

    rng = np.random.default_rng(0)
    domain = ImageDomain(3, 4, levels=8)
    V = _images(300, domain, rng).reshape(300, -1) + rng.random((300, 12))
    model = make_family(name, domain, n_components=3)
    model._fit_gaussian(V, seed=0)
    model._chol = None
    sk = (PCA(3, svd_solver="full") if name == "pca" else FactorAnalysis(3, random_state=0)).fit(V)
    np.testing.assert_allclose(model.log_density(V[:40]), sk.score_samples(V[:40]), rtol=1e-9)
    np.testing.assert_allclose(model.covariance(), sk.get_covariance(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_bound_is_the_expected_log_density_over_the_cube(name):
    """Closed form log p(x + 1/2) - tr(C^-1)/24 against a Monte Carlo average of log p(x + u)."""
    rng = np.random.default_rng(1)
    domain = ImageDomain(2, 3, levels=8)
    X = _images(200, domain, rng)
    model = make_family(name, domain, n_components=2).fit(X, rng=rng)
    x = X[:3].reshape(3, -1).astype(float)
    u = rng.random((200_000, 6))
    for row, bound in zip(x, model.log_prob(X[:3])):
        mc = model.log_density(row + u)
        assert bound == pytest.approx(mc.mean(), abs=4 * mc.std() / np.sqrt(len(u)))


@pytest.mark.parametrize("name", FAMILIES)
def test_the_bound_sits_below_the_exact_mass_of_each_pixel_cube(name):
    """Two pixels: each image's exact probability, the Gaussian's mass on its unit square, is
    known in closed form (bivariate normal CDF) and by numerical integration."""
    rng = np.random.default_rng(2)
    domain = ImageDomain(1, 2, levels=6)
    X = _images(400, domain, rng)
    model = make_family(name, domain, n_components=1).fit(X, rng=rng)
    every = np.array([[[a, b]] for a in range(6) for b in range(6)], dtype=np.uint8)
    lo = every.reshape(36, 2).astype(float)
    cov = np.repeat(model.covariance()[None], 36, axis=0)
    mass = np.array([gaussian_rectangle_mass(model.mean_[None], cov[:1], l, l + 1)[0] for l in lo])
    # the same masses by a 200 x 200 midpoint rule on two of the squares
    t = (np.arange(200) + 0.5) / 200
    for i in (0, 20):
        grid = lo[i] + np.stack(np.meshgrid(t, t), -1).reshape(-1, 2)
        assert mass[i] == pytest.approx(np.exp(model.log_density(grid)).mean(), rel=1e-4)
    bound = model.log_prob(every)
    assert (bound <= np.log(mass) + 1e-12).all()
    assert mass.sum() <= 1.0  # the Gaussian's mass outside [0, 6)^2 is lost
    assert np.exp(bound).sum() <= mass.sum()
    assert model.log_prob_kind == "lower_bound"


@pytest.mark.parametrize("name", FAMILIES)
def test_encode_is_the_posterior_mean(name):
    rng = np.random.default_rng(3)
    domain = ImageDomain(3, 3, levels=16)
    X = _images(300, domain, rng)
    model = make_family(name, domain, n_components=2).fit(X, rng=rng)
    V = X[:10].reshape(10, -1) + 0.5
    # E[z | v] = W C^-1 (v - mu) for z ~ N(0, I), v = mu + W^T z + e
    expected = (model.W_ @ np.linalg.solve(model.covariance(), (V - model.mean_).T)).T
    np.testing.assert_allclose(model.encode(X[:10]), expected, rtol=1e-8, atol=1e-10)
    assert model.decode(np.zeros((1, 2))).shape == (1, 3, 3)


def test_pca_recovers_a_two_dimensional_latent_space_of_the_jars():
    from pmodel.datasets import jars
    from pmodel.scores.latent import readout_scores

    rng = np.random.default_rng(4)
    renders, grid = jars.load_renders(), jars.grid_factors()
    train, held = jars.sample_cells(600, rng=rng), jars.sample_cells(600, rng=rng)
    model = make_family("pca", ImageDomain(32, 32), n_components=8).fit(renders[train], rng=rng)
    r2 = readout_scores(model.encode(renders[train]), model.encode(renders[held]), grid[train], grid[held],
                        jars.FACTOR_NAMES)
    assert r2["latent_r2_height"] > 0.95 and r2["latent_r2_width"] > 0.95


@pytest.mark.parametrize("name", FAMILIES)
def test_too_many_components_are_refused(name):
    X = np.zeros((5, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="n_components=4 must be below"):
        make_family(name, ImageDomain(2, 2), n_components=4).fit(X)
