"""multinomial: the chapter's minimalist model, one parameter per cell.

    p(cell) = (count(cell) + alpha) / (N + alpha * d)        d = number of cells

additive (Laplace/Lidstone) smoothing: alpha = 0 is maximum likelihood,
alpha = 1 Laplace. d - 1 free parameters.

- categorical: the cells are the d = prod(n_categories) rows of the joint
  table (fashion: 4032 cells, 4031 parameters; an unseen cell gets
  alpha / (N + alpha * d), with N = 50 and alpha = 1 exactly 1/4082).
- points: the cells of a regular grid of ``cell_deg`` degrees over the
  domain; density = p(cell) / cell area, uniform inside a cell.
- image: every possible image is a cell, d = 256^(height*width) (256^1024
  for 32x32): never materialised, everything in log space. With alpha = 0 it
  only resamples training images and gives every other image probability 0;
  with alpha > 0 every unseen image gets the same tiny alpha / (N + alpha * d),
  random noise and a masterpiece alike, and almost every sample is noise.

Failure modes: alpha = 0 gives -inf to every unseen cell (most of them at
N = 50); alpha > 0 spreads nearly all mass uniformly when d >> N. On a wide
table the categorical joint table cannot be held at all (40 yes/no columns:
d = 2^40, about 10^12 cells): past :data:`MAX_TABLE_CELLS` the family says so
(``cannot_hold``) and is skipped for that dataset.
"""

from __future__ import annotations

import math

import numpy as np

from pmodel.families._grid import CELL_DEG, Bins, check_grid_cells
from pmodel.families.base import ALPHA, ALPHA_SEARCH, Family, check_alpha
from pmodel.families.domains import CategoricalDomain, ImageDomain, PointsDomain

#: The most cells of a categorical joint table the multinomial holds: its counts and
#: log-probabilities take 16 bytes a cell (160 MB here), sampling and saving touch every one.
MAX_TABLE_CELLS = 10**7


def _smoothed_log_probs(counts: np.ndarray, alpha: float) -> np.ndarray:
    """log((counts + alpha) / (N + alpha * d)), -inf where both are 0."""
    with np.errstate(divide="ignore"):
        return np.log(counts + alpha) - np.log(counts.sum() + alpha * counts.size)


def _sample_cells(log_p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    p = np.exp(log_p)
    return rng.choice(p.size, size=n, p=p / p.sum())


class CategoricalMultinomial(Family):
    """One probability per cell of the joint table of all columns.

    Parameters
    ----------
    alpha : float, default 0.0
        Additive smoothing (0: maximum likelihood, 1: Laplace).

    Attributes
    ----------
    counts_ : ndarray (n_cells,), int64
        Training rows per cell, in the C order of ``domain.shape``.
    """

    name, kinds = "multinomial", ("categorical",)
    taxonomy = "counting"
    hyperparameters = {"alpha": ALPHA}
    search_space = {"alpha": ALPHA_SEARCH}
    assumes = "nothing: one probability per cell of the full table (counts + alpha)"

    def __init__(self, domain: CategoricalDomain, alpha: float = 0.0):
        super().__init__(domain, alpha=alpha)

    @classmethod
    def cannot_hold(cls, domain: CategoricalDomain) -> str | None:
        n = domain.n_cells   # an exact Python int: 10^17 and more on wide tables
        if n <= MAX_TABLE_CELLS:
            return None
        product = " x ".join(map(str, domain.shape)) if len(domain.shape) <= 8 else (
            f"the category counts of its {len(domain.shape)} columns")
        size = f"{float(n):.2g}" if n < 10**300 else f"about 10^{math.log10(n):.0f}"
        return (f"the full joint table of this data has {size} cells ({product}), more than "
                f"the {MAX_TABLE_CELLS:,} a multinomial holds in memory "
                "(16 bytes a cell); families that factorise the table (naive_bayes, chow_liu, "
                "latent_class, autoregressive, vae) hold it")

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "CategoricalMultinomial":
        reason = self.cannot_hold(self.domain)
        if reason is not None:
            raise ValueError(f"multinomial cannot be fitted: {reason}")
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        cells = np.ravel_multi_index(tuple(X.T), self.domain.shape)
        self.counts_ = np.bincount(cells, minlength=self.domain.n_cells)
        self.log_probs_ = _smoothed_log_probs(self.counts_, alpha)
        self.n_parameters_ = self.domain.n_cells - 1
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X)
        inside = self.domain.in_support(X)
        cells = np.ravel_multi_index(tuple(np.where(inside[:, None], X, 0).T), self.domain.shape)
        return np.where(inside, self.log_probs_[cells], -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        cells = _sample_cells(self.log_probs_, self._check_n(n_samples), rng)
        return np.stack(np.unravel_index(cells, self.domain.shape), axis=1).astype(np.int64)


class PointsMultinomial(Family):
    """A regular lon/lat grid, one probability per cell, uniform inside each cell.

    Parameters
    ----------
    alpha : float, default 0.0
        Additive smoothing over the grid's cells.
    cell_deg : float, default 1.0
        Cell size in degrees; must divide the domain's lon and lat extents.

    Attributes
    ----------
    counts_ : ndarray (n_lat_cells, n_lon_cells), int64
    """

    name, kinds = "multinomial", ("points",)
    taxonomy = "counting"
    hyperparameters = {"alpha": ALPHA, "cell_deg": CELL_DEG}
    search_space = {"alpha": ALPHA_SEARCH}
    assumes = "uniform inside each grid cell; one probability per cell (counts + alpha)"

    @staticmethod
    def check_resources(params: dict) -> None:
        check_grid_cells(params["cell_deg"], params["cell_deg"], "cell_deg")

    def __init__(self, domain: PointsDomain, alpha: float = 0.0, cell_deg: float = 1.0):
        super().__init__(domain, alpha=alpha, cell_deg=cell_deg)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "PointsMultinomial":
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        d = self.domain
        self._lon = Bins.of_width(d.lon_min, d.lon_max, self.cell_deg, "cell_deg")
        self._lat = Bins.of_width(d.lat_min, d.lat_max, self.cell_deg, "cell_deg")
        i, j = self._lat.index(X[:, 1]), self._lon.index(X[:, 0])
        if (i < 0).any() or (j < 0).any():
            k = int(np.flatnonzero((i < 0) | (j < 0))[0])
            raise ValueError(f"training point {k} {tuple(X[k])} is outside the domain {d}")
        shape = (self._lat.n, self._lon.n)
        self.counts_ = np.bincount(i * shape[1] + j, minlength=shape[0] * shape[1]).reshape(shape)
        self._cell_area = self._lon.width * self._lat.width
        self.log_probs_ = _smoothed_log_probs(self.counts_.ravel(), alpha)
        self.n_parameters_ = self.counts_.size - 1
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = self.domain.check(X)
        i, j = self._lat.index(X[:, 1]), self._lon.index(X[:, 0])
        inside = (i >= 0) & (j >= 0)
        cells = np.where(inside, i * self._lon.n + j, 0)
        return np.where(inside, self.log_probs_[cells] - np.log(self._cell_area), -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        cells = _sample_cells(self.log_probs_, self._check_n(n_samples), rng)
        i, j = np.divmod(cells, self._lon.n)
        return np.column_stack([self._lon.uniform(j, rng), self._lat.uniform(i, rng)])


class ImageMultinomial(Family):
    """Every possible image is a cell; only the seen ones are stored.

    Parameters
    ----------
    alpha : float, default 0.0
        Additive smoothing over all ``levels ** (height * width)`` images.

    Attributes
    ----------
    images_ : ndarray (n_distinct, height, width)
        The distinct training images.
    counts_ : ndarray (n_distinct,), int64
    n_parameters_ : int
        ``levels ** (height * width) - 1``, an exact Python integer (for 32x32
        8-bit images a number with 2467 digits).
    """

    name, kinds = "multinomial", ("image",)
    taxonomy = "counting"
    hyperparameters = {"alpha": ALPHA}
    search_space = {"alpha": ALPHA_SEARCH}
    assumes = "nothing: one probability per possible image (only the seen ones are stored)"

    def __init__(self, domain: ImageDomain, alpha: float = 0.0):
        super().__init__(domain, alpha=alpha)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "ImageMultinomial":
        X = self._check_train(X).astype(np.uint8, copy=False)
        alpha = check_alpha(self.alpha)
        keys = [row.tobytes() for row in X.reshape(len(X), -1)]
        index: dict[bytes, int] = {}
        first, counts = [], []
        for i, key in enumerate(keys):
            k = index.setdefault(key, len(first))
            if k == len(first):
                first.append(i)
                counts.append(0)
            counts[k] += 1
        self.images_ = X[first]
        self.counts_ = np.asarray(counts, dtype=np.int64)
        self._index = index
        n = len(X)
        # log(N + alpha * d) with d = levels^(h*w), in log space
        log_d = self.domain.log_n_cells
        self._log_norm = np.logaddexp(np.log(n), np.log(alpha) + log_d) if alpha > 0 else np.log(n)
        # share of the mass on the seen images as a mixture weight:
        # (c + alpha) / (N + alpha d) = w * c / N + (1 - w) / d,  w = N / (N + alpha d)
        self._log_w_seen = np.log(n) - self._log_norm
        self.n_parameters_ = self.domain.levels ** self.domain.n_features - 1
        return self

    def _state(self) -> dict:
        # the lookup index is derived from images_: rebuilt on load, not saved
        return {k: v for k, v in super()._state().items() if k != "_index"}

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        self._index = {row.tobytes(): k for k, row in
                       enumerate(self.images_.reshape(len(self.images_), -1))}

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = self.domain.check_shape(X)
        inside = self.domain.in_support(X)
        rows = np.where(inside[:, None], X.reshape(len(X), -1), 0).astype(np.uint8)
        counts = np.array([self.counts_[k] if (k := self._index.get(row.tobytes())) is not None
                           else 0 for row in rows], dtype=np.float64)
        with np.errstate(divide="ignore"):
            lp = np.log(counts + self.alpha) - self._log_norm
        return np.where(inside, lp, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        seen = rng.random(n) < np.exp(self._log_w_seen)
        out = rng.integers(0, self.domain.levels, size=(n, *self.domain.event_shape)).astype(np.uint8)
        picks = rng.choice(len(self.counts_), size=int(seen.sum()), p=self.counts_ / self.counts_.sum())
        out[seen] = self.images_[picks]
        return out
