"""naive_bayes: every feature independent of the others.

    p(x) = prod_j theta_j[x_j],   theta_j[v] = (count_j(v) + alpha) / (N + alpha * K_j)

additive (Laplace/Lidstone) smoothing per feature; sum_j (K_j - 1) free
parameters (fashion: 2 + 7 + 3 + 5 + 6 = 23).

- categorical: one table per column; :meth:`CategoricalNaiveBayes.parameter_table`
  lists every value's probability (the chapter's table).
- image: 1024 independent pixels, each a distribution over 256 levels.
- points: a longitude histogram times a latitude histogram (``bin_deg`` wide
  bins over the domain); density = theta_lon / bin width * theta_lat / bin height.

Failure modes: dependencies between features are lost (fashion's hair type
and clothing, a face's symmetric pixels, land's shape: the product of two
marginals puts mass at sea wherever a land longitude meets a land latitude);
alpha = 0 gives -inf to any value unseen in its column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmodel.families._grid import BIN_DEG, Bins, check_grid_cells
from pmodel.families.base import ALPHA, ALPHA_SEARCH, Family, check_alpha
from pmodel.families.domains import CategoricalDomain, ImageDomain, PointsDomain


def _log_theta(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Row-wise log((counts + alpha) / (N + alpha * K)) for counts (n_features, K)."""
    with np.errstate(divide="ignore"):
        return np.log(counts + alpha) - np.log(counts.sum(axis=-1, keepdims=True) + alpha * counts.shape[-1])


def _sample_columns(log_theta: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Independent inverse-CDF draws, one column per table: (n, n_features) int64."""
    out = np.empty((n, len(log_theta)), dtype=np.int64)
    for j, lt in enumerate(log_theta):
        cdf = np.cumsum(np.exp(lt))
        out[:, j] = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"),
                               len(cdf) - 1)
    return out


class CategoricalNaiveBayes(Family):
    """Independent categorical columns.

    Parameters
    ----------
    alpha : float, default 0.0
        Additive smoothing per column (0: maximum likelihood, 1: Laplace).

    Attributes
    ----------
    log_theta_ : list of ndarray, one (n_categories_j,) per column
    """

    name, kinds = "naive_bayes", ("categorical",)
    taxonomy = "counting"
    hyperparameters = {"alpha": ALPHA}
    search_space = {"alpha": ALPHA_SEARCH}
    assumes = "the columns are independent of each other"

    def __init__(self, domain: CategoricalDomain, alpha: float = 0.0):
        super().__init__(domain, alpha=alpha)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "CategoricalNaiveBayes":
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        self.counts_ = [np.bincount(X[:, j], minlength=k) for j, k in enumerate(self.domain.shape)]
        self.log_theta_ = [_log_theta(c, alpha) for c in self.counts_]
        self.n_parameters_ = int(sum(k - 1 for k in self.domain.shape))
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X)
        inside = self.domain.in_support(X)
        Xs = np.where(inside[:, None], X, 0)
        total = np.zeros(len(X))
        for j, lt in enumerate(self.log_theta_):
            total += lt[Xs[:, j]]
        return np.where(inside, total, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        return _sample_columns(self.log_theta_, self._check_n(n_samples), rng)

    def parameter_table(self, schema=None) -> pd.DataFrame:
        """Each feature value's probability: columns feature, value, count, probability.

        With a :class:`~pmodel.datasets.schema.CategoricalSchema`, features and
        values are named; otherwise they are codes.
        """
        self._check_fitted()
        rows = []
        for j, (counts, lt) in enumerate(zip(self.counts_, self.log_theta_)):
            name = schema.names[j] if schema is not None else j
            for v, (c, p) in enumerate(zip(counts, np.exp(lt))):
                value = schema.categories[j][v] if schema is not None else v
                rows.append({"feature": name, "value": value, "count": int(c), "probability": float(p)})
        return pd.DataFrame(rows)


class ImageNaiveBayes(Family):
    """Independent pixels, each a categorical distribution over intensity levels.

    Parameters
    ----------
    alpha : float, default 0.0

    Attributes
    ----------
    log_theta_ : ndarray (height * width, levels)
    """

    name, kinds = "naive_bayes", ("image",)
    taxonomy = "counting"
    hyperparameters = {"alpha": ALPHA}
    search_space = {"alpha": ALPHA_SEARCH}
    assumes = "the pixels are independent of each other"

    def __init__(self, domain: ImageDomain, alpha: float = 0.0):
        super().__init__(domain, alpha=alpha)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "ImageNaiveBayes":
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        d, levels = self.domain.n_features, self.domain.levels
        pixels = np.ascontiguousarray(X.reshape(len(X), d).T)  # (d, n): one row per pixel
        self.counts_ = np.stack([np.bincount(row, minlength=levels) for row in pixels])
        self.log_theta_ = _log_theta(self.counts_, alpha)
        self.n_parameters_ = d * (levels - 1)
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = self.domain.check_shape(X)
        inside = self.domain.in_support(X)
        flat = np.where(inside[:, None], X.reshape(len(X), -1), 0).astype(np.int64)
        return np.where(inside, self.log_theta_[np.arange(flat.shape[1]), flat].sum(axis=1), -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        flat = _sample_columns(list(self.log_theta_), n, rng)
        return flat.reshape(n, *self.domain.event_shape).astype(np.uint8)


class PointsNaiveBayes(Family):
    """Independent longitude and latitude histograms.

    Parameters
    ----------
    alpha : float, default 0.0
        Additive smoothing per histogram.
    bin_deg : float, default 1.0
        Bin width in degrees; must divide the domain's lon and lat extents.
    """

    name, kinds = "naive_bayes", ("points",)
    taxonomy = "counting"
    hyperparameters = {"alpha": ALPHA, "bin_deg": BIN_DEG}
    search_space = {"alpha": ALPHA_SEARCH}
    assumes = "longitude and latitude are independent (a product of two histograms)"

    @staticmethod
    def check_resources(params: dict) -> None:
        check_grid_cells(params["bin_deg"], None, "bin_deg")

    def __init__(self, domain: PointsDomain, alpha: float = 0.0, bin_deg: float = 1.0):
        super().__init__(domain, alpha=alpha, bin_deg=bin_deg)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "PointsNaiveBayes":
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        d = self.domain
        self._bins = (Bins.of_width(d.lon_min, d.lon_max, self.bin_deg, "bin_deg"),
                      Bins.of_width(d.lat_min, d.lat_max, self.bin_deg, "bin_deg"))
        self.counts_ = []
        for axis, bins in enumerate(self._bins):
            b = bins.index(X[:, axis])
            if (b < 0).any():
                k = int(np.flatnonzero(b < 0)[0])
                raise ValueError(f"training point {k} {tuple(X[k])} is outside the domain {d}")
            self.counts_.append(np.bincount(b, minlength=bins.n))
        self.log_theta_ = [_log_theta(c, alpha) for c in self.counts_]
        self.n_parameters_ = sum(b.n - 1 for b in self._bins)
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = self.domain.check(X)
        total = np.zeros(len(X))
        inside = np.ones(len(X), dtype=bool)
        for axis, (bins, lt) in enumerate(zip(self._bins, self.log_theta_)):
            b = bins.index(X[:, axis])
            inside &= b >= 0
            total += lt[np.maximum(b, 0)] - np.log(bins.width)
        return np.where(inside, total, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        b = _sample_columns(self.log_theta_, n, rng)
        return np.column_stack([bins.uniform(b[:, axis], rng) for axis, bins in enumerate(self._bins)])
