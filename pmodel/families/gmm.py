"""gmm: a mixture of K Gaussians on the lon/lat map, truncated to the domain's rectangle.

    p(x) = sum_k w_k N(x; mu_k, Sigma_k) / Z     for x in the rectangle, 0 outside
    Z    = sum_k w_k P_k(rectangle)

fitted by scikit-learn's ``GaussianMixture`` (EM, full covariances, k-means
initialisation seeded from the fit's ``rng``). A Gaussian spills mass outside
the rectangle (a component over Alaska reaches past 180°); that mass is put
back by dividing by Z, computed exactly per component with the bivariate
normal CDF (``pmodel.families._rectangle``), so the density integrates to 1 on
the domain. Densities are per deg^2, as the counting families'. Samples are
drawn from the mixture and kept when inside (rejection; the acceptance rate is Z).

Parameters: ``6K - 1`` (K weights summing to 1, 2 means and 3 covariances each).

Failure modes: the sea. Every Gaussian is smooth and unbounded, so a mixture
fitted to points on land puts density on every coast's sea and between
continents: its on-land rate stays well below 1 and KL to the truth stays
finite only because it is never 0 anywhere.
"""

from __future__ import annotations

import numpy as np

from pmodel.families._rectangle import check_inside, domain_limits, gaussian_rectangle_mass, rejection_sample
from pmodel.families.base import Family, Hyper, Search
from pmodel.families.domains import PointsDomain


def mixture_log_density(X: np.ndarray, weights, means, covariances) -> np.ndarray:
    """log sum_k w_k N(x; mu_k, Sigma_k) for X (n, 2), by Cholesky factors."""
    out = np.empty((len(X), len(weights)))
    for k, (w, mu, cov) in enumerate(zip(weights, means, covariances)):
        L = np.linalg.cholesky(cov)
        z = np.linalg.solve(L, (X - mu).T)  # (2, n)
        out[:, k] = (np.log(w) - 0.5 * (z**2).sum(axis=0) - np.log(np.diag(L)).sum()
                     - np.log(2 * np.pi))
    m = out.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(out - m).sum(axis=1, keepdims=True)))[:, 0]


class PointsGaussianMixture(Family):
    """Gaussian mixture on the map, renormalised on the domain's rectangle.

    Parameters
    ----------
    n_components : int, default 10
    reg_covar : float, default 1e-6
        Added to each covariance's diagonal (deg^2), as scikit-learn's.
    n_init : int, default 1
        EM runs (k-means starts); the best is kept.

    Attributes
    ----------
    weights_ (K,), means_ (K, 2), covariances_ (K, 2, 2) : the untruncated mixture
    component_mass_ (K,) : each component's mass inside the rectangle
    log_z_ : log Z, the mixture's mass inside the rectangle
    """

    name, kinds = "gmm", ("points",)
    taxonomy = "latent variable"
    hyperparameters = {
        "n_components": Hyper(int, 10, ge=1, le=10_000, doc="number of Gaussians"),
        "reg_covar": Hyper(float, 1e-6, ge=0.0, le=1e6, doc="added to each covariance's diagonal, deg^2"),
        "n_init": Hyper(int, 1, ge=1, le=100, doc="EM runs from k-means starts"),
    }
    search_space = {"n_components": Search(1, 64, log=True)}
    assumes = "the density is a sum of a few smooth Gaussian bumps"

    def __init__(self, domain: PointsDomain, n_components: int = 10, reg_covar: float = 1e-6,
                 n_init: int = 1):
        super().__init__(domain, n_components=n_components, reg_covar=reg_covar, n_init=n_init)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "PointsGaussianMixture":
        from sklearn.mixture import GaussianMixture

        X = self._check_train(X)
        check_inside(X, self.domain)
        if len(X) < self.n_components:
            raise ValueError(f"gmm: {self.n_components} components need at least as many training "
                             f"points, got {len(X)}")
        seed = int((rng if rng is not None else np.random.default_rng(0)).integers(2**31 - 1))
        gm = GaussianMixture(self.n_components, covariance_type="full", reg_covar=self.reg_covar,
                             n_init=self.n_init, random_state=seed).fit(X)
        self.weights_, self.means_, self.covariances_ = gm.weights_, gm.means_, gm.covariances_
        lo, hi = domain_limits(self.domain)
        self.component_mass_ = gaussian_rectangle_mass(self.means_, self.covariances_, lo, hi)
        self.log_z_ = float(np.log(self.weights_ @ self.component_mass_))
        self.converged_ = bool(gm.converged_)
        self.n_parameters_ = 6 * self.n_components - 1
        return self

    def log_prob(self, X) -> np.ndarray:
        """log density per deg^2 of the truncated mixture; -inf outside the rectangle."""
        self._check_fitted()
        return self._log_prob_in_support(self.domain.check(X), lambda x: mixture_log_density(
            x, self.weights_, self.means_, self.covariances_) - self.log_z_)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        chol = np.linalg.cholesky(self.covariances_)  # (K, 2, 2)

        def draw(m, rng):
            k = rng.choice(len(self.weights_), size=m, p=self.weights_ / self.weights_.sum())
            z = rng.standard_normal((m, 2))
            return self.means_[k] + np.einsum("mij,mj->mi", chol[k], z)

        return rejection_sample(draw, self.domain.in_support, n, rng, float(np.exp(self.log_z_)))
