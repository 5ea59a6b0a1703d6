"""gmm and kde on the map: the rectangle's normal mass in closed form, truncation, bandwidth by CV."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from pmodel.families import PointsDomain, make_family
from pmodel.families._rectangle import (bivariate_normal_cdf, gaussian_rectangle_mass,
                                        isotropic_rectangle_mass)

REGION = PointsDomain(-10.0, 10.0, 35.0, 45.0)


def test_bivariate_normal_cdf_equals_scipys():
    rng = np.random.default_rng(0)
    cases = [(0.0, 0.0, 0.5), (0.0, -1.3, -0.2), (-0.5, 0.0, 0.7), (8.0, -8.0, 0.3)]
    cases += [(*rng.normal(size=2) * 2, rng.uniform(-0.95, 0.95)) for _ in range(30)]
    for h, k, rho in cases:
        expected = multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([h, k])
        assert bivariate_normal_cdf(h, k, rho) == pytest.approx(expected, abs=1e-7), (h, k, rho)
    assert bivariate_normal_cdf(0.0, 0.0, 0.5) == pytest.approx(0.25 + np.arcsin(0.5) / (2 * np.pi), abs=1e-15)
    assert bivariate_normal_cdf(np.inf, 0.3, 0.4) == pytest.approx(norm.cdf(0.3))


def test_rectangle_mass_equals_numerical_integration():
    mean, cov = np.array([9.0, 44.0]), np.array([[4.0, 1.5], [1.5, 2.0]])  # across a corner
    step = 0.005
    lon = np.arange(-10 + step / 2, 10, step)
    lat = np.arange(35 + step / 2, 45, step)
    grid = np.stack(np.meshgrid(lon, lat), -1).reshape(-1, 2)
    numeric = multivariate_normal(mean, cov).pdf(grid).sum() * step**2
    exact = gaussian_rectangle_mass(mean[None], cov[None], (-10, 35), (10, 45))[0]
    assert 0.1 < exact < 0.9 and exact == pytest.approx(numeric, abs=1e-6)
    iso = isotropic_rectangle_mass(mean[None], 1.5, (-10, 35), (10, 45))[0]
    assert iso == pytest.approx((norm.cdf(1 / 1.5) - norm.cdf(-19 / 1.5)) * (norm.cdf(1 / 1.5) - norm.cdf(-9 / 1.5)))


def _edge_data(n, rng):
    """Points piled against the region's east edge: a Gaussian fitted to them spills out."""
    return np.column_stack([10 - np.abs(rng.normal(0, 1.5, n)), rng.uniform(36, 44, n)]).clip([-10, 35], [10, 45])


def test_gmm_puts_back_the_mass_outside_the_rectangle():
    X = _edge_data(400, np.random.default_rng(1))
    model = make_family("gmm", REGION, n_components=1).fit(X, rng=np.random.default_rng(0))
    # a good part of the Gaussian lies east of 10 degrees: renormalised, not dropped
    assert np.exp(model.log_z_) == pytest.approx(model.component_mass_[0]) and 0.6 < np.exp(model.log_z_) < 0.95
    x = np.array([[9.0, 40.0], [0.0, 40.0]])
    untruncated = multivariate_normal(model.means_[0], model.covariances_[0]).logpdf(x)
    np.testing.assert_allclose(model.log_prob(x), untruncated - model.log_z_, rtol=1e-12)
    s = model.sample(2000, rng=np.random.default_rng(2))
    assert REGION.in_support(s).all() and s[:, 0].max() <= 10


def test_gmm_density_is_scikit_learns_mixture_inside():
    from sklearn.mixture import GaussianMixture

    X = np.random.default_rng(3).uniform([-8, 36], [6, 44], (300, 2))
    model = make_family("gmm", REGION, n_components=3).fit(X, rng=np.random.default_rng(4))
    sk = GaussianMixture(3, covariance_type="full").fit(X)
    sk.weights_, sk.means_, sk.covariances_ = model.weights_, model.means_, model.covariances_
    sk.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(model.covariances_))
    np.testing.assert_allclose(model.log_prob(X[:50]) + model.log_z_, sk.score_samples(X[:50]), rtol=1e-10)


def test_kde_log_prob_is_the_sum_of_truncated_kernels_by_hand():
    X = _edge_data(60, np.random.default_rng(5))
    h = 0.8
    model = make_family("kde", REGION, bandwidth=h).fit(X)
    Z = np.mean([(norm.cdf((10 - a) / h) - norm.cdf((-10 - a) / h)) * (norm.cdf((45 - b) / h) - norm.cdf((35 - b) / h))
                 for a, b in X])
    q = np.array([[9.5, 40.0], [0.0, 38.0], [-9.99, 44.99]])
    by_hand = [np.log(np.mean([norm.pdf(x, a, h) * norm.pdf(y, b, h) for a, b in X]) / Z) for x, y in q]
    np.testing.assert_allclose(model.log_prob(q), by_hand, rtol=1e-8)
    assert model.n_parameters_ == 2 * 60 + 1


def test_kde_bandwidth_is_the_best_cross_validated_one_and_shrinks_with_more_data():
    rng = np.random.default_rng(6)
    pts = lambda n: np.column_stack([rng.normal(0, 2, n), rng.normal(40, 1.5, n)]).clip([-10, 35], [10, 45])  # noqa: E731
    small = make_family("kde", REGION).fit(pts(60), rng=np.random.default_rng(0))
    large = make_family("kde", REGION).fit(pts(2000), rng=np.random.default_rng(0))
    for m in (small, large):
        assert m.bandwidth_ == m.cv_bandwidths_[np.argmax(m.cv_loglik_)]
        assert m.cv_bandwidths_[0] < m.bandwidth_ < m.cv_bandwidths_[-1]  # an interior optimum
    assert large.bandwidth_ < small.bandwidth_
    again = make_family("kde", REGION).fit(pts(60) * 0 + small.points_, rng=np.random.default_rng(0))
    assert again.bandwidth_ == small.bandwidth_  # seeded folds: the same choice


@pytest.mark.parametrize("name", ["gmm", "kde"])
def test_a_training_point_outside_the_domain_is_named(name):
    X = np.array([[0.0, 40.0], [1.0, 41.0], [0.0, 10.0]])
    with pytest.raises(ValueError, match=r"training point 2 \(0.0, 10.0\) is outside"):
        make_family(name, REGION).fit(X)
