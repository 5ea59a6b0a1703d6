"""box: the chapter's orange box, uniform over what the training data spans.

    p(x) = 1 / |B|  if x in B, else 0,   B = the smallest box around the training data

- points: B = [min lon, max lon] x [min lat, max lat]; |B| its area (deg^2).
- categorical: B = the product of each column's seen categories.
- image: B = for every pixel, the integers from its lowest to its highest seen value.

Failure modes: -inf for anything outside the training box (the chapter's
point B: land just outside the box gets probability 0), and probability spent
on everything inside it (point A: sea inside the box is as likely as land).
4 parameters on points; a seen/unseen flag per category; 2 per pixel.
"""

from __future__ import annotations

import numpy as np

from pmodel.families.base import Family
from pmodel.families.domains import CategoricalDomain, ImageDomain, PointsDomain


class PointsBox(Family):
    """Uniform density over the training points' bounding box (the orange box).

    Attributes
    ----------
    box_ : tuple (lon_min, lon_max, lat_min, lat_max)
    area_ : float, deg^2
    """

    name, kinds = "box", ("points",)
    taxonomy = "counting"
    assumes = "uniform over the bounding box of the training points (sea included)"
    #: capability: the fitted box_ (lon_min, lon_max, lat_min, lat_max) is the chapter's orange box
    has_box = True

    def __init__(self, domain: PointsDomain):
        super().__init__(domain)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "PointsBox":
        X = self._check_train(X)
        lo, hi = X.min(axis=0), X.max(axis=0)
        area = float(np.prod(hi - lo))
        if not area > 0:
            raise ValueError("the training points span no area (all on one line or point): "
                             "the box would have zero area")
        self.box_ = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
        self.area_ = area
        self.n_parameters_ = 4
        return self

    def _inside(self, X) -> np.ndarray:
        lon_min, lon_max, lat_min, lat_max = self.box_
        return ((X[:, 0] >= lon_min) & (X[:, 0] <= lon_max)
                & (X[:, 1] >= lat_min) & (X[:, 1] <= lat_max))

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = self.domain.check(X)
        return np.where(self._inside(X), -np.log(self.area_), -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        lon_min, lon_max, lat_min, lat_max = self.box_
        return np.column_stack([rng.uniform(lon_min, lon_max, n), rng.uniform(lat_min, lat_max, n)])


class CategoricalBox(Family):
    """Each column uniform over the categories seen in training.

    Attributes
    ----------
    seen_ : list of bool arrays, one (n_categories_j,) per column
    """

    name, kinds = "box", ("categorical",)
    taxonomy = "counting"
    assumes = "every combination of the categories seen in training is equally likely"

    def __init__(self, domain: CategoricalDomain):
        super().__init__(domain)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "CategoricalBox":
        X = self._check_train(X)
        self.seen_ = [np.bincount(X[:, j], minlength=k) > 0 for j, k in enumerate(self.domain.shape)]
        self._log_size = float(sum(np.log(s.sum()) for s in self.seen_))
        # one seen/unseen flag per category
        self.n_parameters_ = int(sum(self.domain.shape))
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X)
        inside = self.domain.in_support(X)
        Xs = np.where(inside[:, None], X, 0)
        for j, seen in enumerate(self.seen_):
            inside &= seen[Xs[:, j]]
        return np.where(inside, -self._log_size, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        out = np.empty((n, self.domain.n_features), dtype=np.int64)
        for j, seen in enumerate(self.seen_):
            values = np.flatnonzero(seen)
            out[:, j] = values[rng.integers(0, len(values), size=n)]
        return out


class ImageBox(Family):
    """Each pixel uniform over the integers between its lowest and highest seen value.

    Attributes
    ----------
    low_, high_ : ndarray (height, width), uint8 (inclusive bounds)
    """

    name, kinds = "box", ("image",)
    taxonomy = "counting"
    assumes = "each pixel uniform between its lowest and highest training value, independently"

    def __init__(self, domain: ImageDomain):
        super().__init__(domain)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "ImageBox":
        X = self._check_train(X)
        self.low_, self.high_ = X.min(axis=0), X.max(axis=0)
        width = self.high_.astype(np.int64) - self.low_ + 1
        self._log_size = float(np.log(width).sum())
        self.n_parameters_ = 2 * self.domain.n_features
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = self.domain.check_shape(X)
        inside = ((X >= self.low_) & (X <= self.high_)).reshape(len(X), -1).all(axis=1)
        return np.where(inside, -self._log_size, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        low = self.low_.astype(np.int64)
        X = rng.integers(low, self.high_.astype(np.int64) + 1, size=(n, *low.shape))
        return X.astype(self.low_.dtype)
