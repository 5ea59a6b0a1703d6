"""Domains: the space a family's examples live in, and so its support.

Every family is built on a domain, which fixes the shape and type of ``X``
and what "all possible examples" means (the multinomial's cells, the
quadrature of a KL). Three kinds:

==============  ===============================  ==============================
kind            X                                examples
==============  ===============================  ==============================
``categorical`` (n, n_features) int64 codes      fashion rows, a user's CSV
``image``       (n, height, width) uint8 0..255  pixels, a user's PNG folder
``points``      (n, 2) float64 (lon, lat)        land, a user's lon/lat CSV
==============  ===============================  ==============================
"""

from __future__ import annotations

from dataclasses import dataclass
from math import log, prod

import numpy as np


@dataclass(frozen=True)
class CategoricalDomain:
    """Rows of codes; column ``j`` takes values ``0 .. shape[j] - 1``."""

    shape: tuple[int, ...]
    kind = "categorical"

    @property
    def n_features(self) -> int:
        return len(self.shape)

    @property
    def n_cells(self) -> int:
        return prod(self.shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (len(self.shape),)

    def check(self, X) -> np.ndarray:
        """X as int64 (n, n_features); ValueError when it is not in the domain."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected codes of shape (n, {self.n_features}), got {X.shape}")
        if not np.issubdtype(X.dtype, np.integer):
            raise ValueError(f"expected integer codes, got dtype {X.dtype}")
        X = X.astype(np.int64, copy=False)
        bad = (X < 0) | (X >= np.asarray(self.shape))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"row {i}, column {j}: code {X[i, j]} outside 0..{self.shape[j] - 1}")
        return X

    def in_support(self, X) -> np.ndarray:
        """Boolean (n,): which rows are valid codes (others get log_prob -inf)."""
        X = np.asarray(X)
        return ((X >= 0) & (X < np.asarray(self.shape))).all(axis=1)

    def all_cells(self) -> np.ndarray:
        """Every possible row, (n_cells, n_features), in C order of the joint table."""
        return np.stack(np.unravel_index(np.arange(self.n_cells), self.shape), axis=1)


@dataclass(frozen=True)
class ImageDomain:
    """Grayscale images with ``levels`` intensity values (256: 8-bit)."""

    height: int
    width: int
    levels: int = 256
    kind = "image"

    @property
    def n_features(self) -> int:
        return self.height * self.width

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.height, self.width)

    @property
    def log_n_cells(self) -> float:
        """log of the number of possible images, levels ** (height * width)."""
        return self.n_features * log(self.levels)

    def check_shape(self, X) -> np.ndarray:
        """X as an integer array (n, height, width); values are not checked."""
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[1:] != (self.height, self.width):
            raise ValueError(f"expected images of shape (n, {self.height}, {self.width}), "
                             f"got {X.shape}")
        if not np.issubdtype(X.dtype, np.integer):
            raise ValueError(f"expected integer pixel values, got dtype {X.dtype}")
        return X

    def check(self, X) -> np.ndarray:
        """X as images of the domain; ValueError naming the first value outside it."""
        X = self.check_shape(X)
        bad = ~self.in_support(X)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"image {i} has pixel values outside 0..{self.levels - 1}")
        return X

    def in_support(self, X) -> np.ndarray:
        X = np.asarray(X).reshape(len(X), -1)
        return ((X >= 0) & (X < self.levels)).all(axis=1)


@dataclass(frozen=True)
class PointsDomain:
    """Points (lon, lat) in a rectangle, degrees; density is per deg^2."""

    lon_min: float = -180.0
    lon_max: float = 180.0
    lat_min: float = -90.0
    lat_max: float = 90.0
    kind = "points"

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2,)

    @property
    def n_features(self) -> int:
        return 2

    @property
    def area(self) -> float:
        return (self.lon_max - self.lon_min) * (self.lat_max - self.lat_min)

    def check(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 2:
            raise ValueError(f"expected points of shape (n, 2) = (lon, lat), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("points must be finite numbers")
        return X

    def in_support(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return ((X[:, 0] >= self.lon_min) & (X[:, 0] <= self.lon_max)
                & (X[:, 1] >= self.lat_min) & (X[:, 1] <= self.lat_max))


Domain = CategoricalDomain | ImageDomain | PointsDomain

#: Every data kind and its domain class.
DOMAINS: dict[str, type] = {"categorical": CategoricalDomain, "image": ImageDomain,
                            "points": PointsDomain}


def domain_from_dict(d: dict) -> Domain:
    """Inverse of ``{"kind": domain.kind, **dataclasses.asdict(domain)}``."""
    d = dict(d)
    kind = d.pop("kind")
    if kind == "categorical":
        d["shape"] = tuple(d["shape"])
    return DOMAINS[kind](**d)
