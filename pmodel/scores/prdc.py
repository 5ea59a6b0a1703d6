"""Precision, recall, density and coverage (Naeem et al. 2020) from k-nearest-neighbour radii."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


_QUERY_CHUNK = 4096


def _neighbours(X: np.ndarray) -> NearestNeighbors:
    # k-d tree distances are computed directly (sqrt of a plain sum of squares);
    # brute force, the only fast choice in high dimension, expands
    # |x|^2 - 2 x.y + |y|^2, which is exact for integer-valued data such as images.
    algorithm = "kd_tree" if X.shape[1] <= 15 else "brute"
    return NearestNeighbors(algorithm=algorithm).fit(X)


def _kth_radius(nn: NearestNeighbors, k: int) -> np.ndarray:
    """Distance of every fitted point to its k-th nearest other point, (n,)."""
    dist, _ = nn.kneighbors(n_neighbors=k)  # X=None: a point is not its own neighbour
    return dist[:, -1]


def _balls_containing(queries: np.ndarray, nn: NearestNeighbors, radii: np.ndarray) -> np.ndarray:
    """For each query point, how many balls B(x_i, radii[i]) of the fitted points hold it.

    Closed balls (distance <= radius). Candidates come from one radius search
    with the largest radius, then each is checked against its own ball.
    """
    # The tree compares squared distances, which can drop an exact tie by one
    # ulp; widen the search a little and decide on distances.
    search = float(radii.max()) * (1.0 + 1e-9)
    counts = np.empty(len(queries), dtype=np.int64)
    for s in range(0, len(queries), _QUERY_CHUNK):
        dists, idxs = nn.radius_neighbors(queries[s:s + _QUERY_CHUNK], radius=search)
        lengths = np.fromiter((len(d) for d in dists), dtype=np.int64, count=len(dists))
        if lengths.sum() == 0:
            counts[s:s + len(dists)] = 0
            continue
        inside = np.concatenate(dists) <= radii[np.concatenate(idxs)]  # candidates, flat
        query = np.repeat(np.arange(len(dists)), lengths)
        counts[s:s + len(dists)] = np.bincount(query[inside], minlength=len(dists))
    return counts


def prdc(real, fake, *, k: int = 5) -> dict:
    """Precision, recall, density and coverage (Naeem et al., 2020).

    "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020.
    Each point's ball ``B(x, r_k(x))`` has as radius the distance to its k-th
    nearest neighbour in its own set (itself excluded). With N real points
    X_i and M fake points Y_j::

        precision = (1/M) sum_j 1[exists i: Y_j in B(X_i, r_k(X_i))]
        recall    = (1/N) sum_i 1[exists j: X_i in B(Y_j, r_k(Y_j))]
        density   = (1/(kM)) sum_j sum_i 1[Y_j in B(X_i, r_k(X_i))]
        coverage  = (1/N) sum_i 1[min_j |X_i - Y_j| <= r_k(X_i)]

    Balls are closed (``<=``). The authors' code (clovaai/generative-evaluation-prdc)
    uses ``<``; the two agree except at exact ties, which only discrete data
    produce, and there ``<`` scores an exact copy of a point with duplicates
    (radius 0) as outside.

    Parameters
    ----------
    real : array-like of shape (N, ...)
        Real (held-out) examples; flattened to (N, d) float64.
    fake : array-like of shape (M, ...)
        Generated examples, same trailing shape.
    k : int, default 5
        Neighbour rank for the radii; needs N > k and M > k.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``density``, ``coverage`` (floats; density
        can exceed 1).

    Notes
    -----
    Neighbour search with scikit-learn (k-d tree up to 15 dimensions, brute
    force above); no N x M distance matrix is formed. Ball counts take one
    radius search with the largest radius, so a few outliers with huge radii
    make it slower, not wrong.
    """
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if real.ndim < 1 or fake.ndim < 1 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake need the same example shape, got {real.shape} and "
                         f"{fake.shape}")
    real = real.reshape(len(real), -1)
    fake = fake.reshape(len(fake), -1)
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"prdc needs more than k={k} real and fake examples, got "
                         f"{len(real)} real and {len(fake)} fake")
    if not (np.isfinite(real).all() and np.isfinite(fake).all()):
        raise ValueError("real and fake must be finite")

    nn_real, nn_fake = _neighbours(real), _neighbours(fake)
    r_real, r_fake = _kth_radius(nn_real, k), _kth_radius(nn_fake, k)
    real_balls_per_fake = _balls_containing(fake, nn_real, r_real)  # (M,)
    fake_balls_per_real = _balls_containing(real, nn_fake, r_fake)  # (N,)
    nearest_fake, _ = nn_fake.kneighbors(real, n_neighbors=1)       # (N, 1)
    return {
        "precision": float(np.mean(real_balls_per_fake > 0)),
        "recall": float(np.mean(fake_balls_per_real > 0)),
        "density": float(real_balls_per_fake.sum() / (k * len(fake))),
        "coverage": float(np.mean(nearest_fake[:, 0] <= r_real)),
    }
