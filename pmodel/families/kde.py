"""kde: a Gaussian kernel on every training point, truncated to the domain's rectangle.

    p(x) = (1/n) sum_i N(x; x_i, h^2 I) / Z      for x in the rectangle, 0 outside
    Z    = (1/n) sum_i P_i(rectangle)             (a product of two normal CDFs per kernel)

scikit-learn's ``KernelDensity`` evaluates the sum (a k-d tree, relative
tolerance 1e-10). The bandwidth h (degrees) is, unless given, the one of a
log-spaced grid around Scott's rule with the best 5-fold cross-validated
log-likelihood on the training set, each fold scored with its own truncated,
renormalised density (folds shuffled with the fit's ``rng``). The mass the
kernels spill outside the rectangle is put back exactly by Z, so the density
integrates to 1 on the domain, per deg^2. Samples: a training point drawn
uniformly, plus N(0, h^2 I), kept when inside (rejection).

Parameters: the n training points and h, counted as ``2n + 1``.

Failure modes: the sea again, at the scale of h (every coast is blurred), and
memory of the training set: with a small h the samples are copies of training
points plus a little noise.
"""

from __future__ import annotations

import numpy as np

from pmodel.families._rectangle import check_inside, domain_limits, isotropic_rectangle_mass, rejection_sample
from pmodel.families.base import Family, Hyper, Search
from pmodel.families.domains import PointsDomain

RTOL = 1e-10


def _kde(points: np.ndarray, bandwidth: float):
    from sklearn.neighbors import KernelDensity

    return KernelDensity(bandwidth=bandwidth, kernel="gaussian", rtol=RTOL).fit(points)


def truncated_log_density(kde, points: np.ndarray, bandwidth: float, X: np.ndarray, lo, hi) -> np.ndarray:
    """log p(x) of the truncated KDE at X (n, 2), all assumed inside the rectangle."""
    log_z = np.log(isotropic_rectangle_mass(points, bandwidth, lo, hi).mean())
    return kde.score_samples(X) - log_z


def choose_bandwidth(X: np.ndarray, lo, hi, rng: np.random.Generator, *, n_grid: int = 15,
                     n_folds: int = 5) -> tuple[float, np.ndarray, np.ndarray]:
    """The grid bandwidth with the best mean held-out-fold log-likelihood; and the grid and scores."""
    from sklearn.model_selection import KFold

    scott = float(np.mean(X.std(axis=0)) * len(X) ** (-1 / 6))
    grid = scott * np.logspace(-1.5, 0.5, n_grid)
    folds = list(KFold(min(n_folds, len(X)), shuffle=True,
                       random_state=int(rng.integers(2**31 - 1))).split(X))
    scores = np.zeros(len(grid))
    for g, h in enumerate(grid):
        for train, test in folds:
            kde = _kde(X[train], h)
            scores[g] += truncated_log_density(kde, X[train], h, X[test], lo, hi).sum()
    scores /= len(X)
    return float(grid[int(np.argmax(scores))]), grid, scores


class PointsKernelDensity(Family):
    """Gaussian kernel density estimate on the map, renormalised on the domain's rectangle.

    Parameters
    ----------
    bandwidth : float, default 0.0
        Kernel standard deviation h in degrees; 0 chooses it by cross-validated likelihood.

    Attributes
    ----------
    bandwidth_ : the bandwidth used
    points_ : (n, 2) the training points (the kernels' centres)
    log_z_ : log of the kernels' mean mass inside the rectangle
    cv_bandwidths_, cv_loglik_ : the grid searched and its mean held-out log-likelihood
    """

    name, kinds = "kde", ("points",)
    taxonomy = "counting"  # a histogram whose bins are smooth kernels on the training points
    hyperparameters = {"bandwidth": Hyper(float, 0.0, ge=0.0, le=360.0,
                                          doc="kernel width in degrees; 0 = by cross-validated likelihood")}
    search_space = {"bandwidth": Search(0.05, 5.0, log=True)}
    assumes = "the density is smooth at the scale of the bandwidth"

    def __init__(self, domain: PointsDomain, bandwidth: float = 0.0):
        super().__init__(domain, bandwidth=bandwidth)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "PointsKernelDensity":
        X = self._check_train(X)
        check_inside(X, self.domain)
        lo, hi = domain_limits(self.domain)
        if self.bandwidth > 0:
            self.bandwidth_ = float(self.bandwidth)
            self.cv_bandwidths_, self.cv_loglik_ = np.zeros(0), np.zeros(0)
        elif len(X) < 2:
            raise ValueError("kde: choosing the bandwidth needs at least 2 training points; "
                             "give a bandwidth")
        else:
            self.bandwidth_, self.cv_bandwidths_, self.cv_loglik_ = choose_bandwidth(
                X, lo, hi, rng if rng is not None else np.random.default_rng(0))
        self.points_ = X.copy()
        self.log_z_ = float(np.log(isotropic_rectangle_mass(X, self.bandwidth_, lo, hi).mean()))
        self.n_parameters_ = 2 * len(X) + 1
        self._tree = None
        return self

    # the k-d tree is rebuilt from the points, never saved
    def _state(self) -> dict:
        return {k: v for k, v in super()._state().items() if k != "_tree"}

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        self._tree = None

    def log_prob(self, X) -> np.ndarray:
        """log density per deg^2 of the truncated KDE; -inf outside the rectangle."""
        self._check_fitted()
        if self._tree is None:
            self._tree = _kde(self.points_, self.bandwidth_)
        return self._log_prob_in_support(self.domain.check(X),
                                         lambda x: self._tree.score_samples(x) - self.log_z_)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)

        def draw(m, rng):
            i = rng.integers(len(self.points_), size=m)
            return self.points_[i] + self.bandwidth_ * rng.standard_normal((m, 2))

        return rejection_sample(draw, self.domain.in_support, n, rng, float(np.exp(self.log_z_)))
