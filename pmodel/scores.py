"""Scores: one definition of each number a run reports.

Held-out likelihood
    heldout_loglik        mean log p_model(x) over held-out x, nats per example (finite
                          ones), beside the share with p_model(x) = 0 (the out-of-support
                          rate); bits/dim = -mean / (n_dims ln 2).
Truth (exact, no sampling error)
    entropy_categorical   H(P) = -sum_x p(x) log p(x), nats.
    kl_categorical        KL(P || Q) = sum_{x: p(x)>0} p(x) (log p(x) - log q(x)), nats.
    kl_land               KL(P_data || P_model) for the land map by quadrature on the
                          mask grid: -log A - (1/A) sum_c a_c log q(centre_c), nats.
Land vs ocean
    box_land_shares       the chapter's points A and B for a box: share of the box that
                          is sea, share of the region's land outside the box.
    on_land_rate          share of samples on land inside the region (precision).
    land_coverage         share of land grid cells holding an on-land sample, divided by
                          its exact expectation for as many samples from P_data.
    prdc                  precision, recall, density, coverage of Naeem et al. (2020)
                          from k-nearest-neighbour radii.
Novelty
    novelty               share of samples that are not copies of a training example,
                          and share of distinct samples.
Images
    image_validity        share of samples within a threshold (RMS pixel distance) of a
                          valid render, and how many distinct renders they reach.

Conventions: logs are natural (nats); densities on the map are per deg^2;
functions return a frozen dataclass or a plain dict of floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.neighbors import KDTree, NearestNeighbors

from pmodel.datasets import land
from pmodel.datasets.land import LandData, Region

__all__ = [
    "LogLikScore", "heldout_loglik",
    "entropy_categorical", "kl_categorical", "kl_land",
    "box_land_shares", "on_land_rate", "land_coverage", "prdc",
    "novelty", "image_validity",
]

# ---------------------------------------------------------------------------
# Held-out log-likelihood
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLikScore:
    """Held-out log-likelihood, with the examples the model calls impossible kept in view.

    Attributes
    ----------
    mean_loglik : float
        Mean of the finite log-probabilities, nats per example; nan if none is finite.
    out_of_support_rate : float
        Share of examples with log-probability -inf (probability 0 under the model).
    n : int
        Number of examples.
    n_finite : int
        Number of examples with a finite log-probability.
    bits_per_dim : float or None
        ``-mean_loglik / (n_dims * ln 2)`` when ``n_dims`` was given, else None.
    mean_loglik_all : float
        Mean over all examples: -inf as soon as one example is out of support.
    """

    mean_loglik: float
    out_of_support_rate: float
    n: int
    n_finite: int
    bits_per_dim: float | None
    mean_loglik_all: float


def heldout_loglik(log_probs, *, n_dims: int | None = None) -> LogLikScore:
    """Score per-example log-probabilities of held-out data.

    Parameters
    ----------
    log_probs : array-like of shape (n,)
        ``model.log_prob(X_heldout)``, nats; -inf marks an example outside the
        model's support.
    n_dims : int, optional
        Dimensions per example (e.g. 1024 pixels) for bits per dimension.

    Returns
    -------
    LogLikScore

    Raises
    ------
    ValueError
        On an empty input, or any NaN or +inf (a broken model, not a score).

    Examples
    --------
    >>> s = heldout_loglik([-1.0, -3.0, -np.inf])
    >>> s.mean_loglik, s.out_of_support_rate, s.mean_loglik_all
    (-2.0, 0.3333333333333333, -inf)
    """
    lp = np.asarray(log_probs, dtype=np.float64).ravel()
    if lp.size == 0:
        raise ValueError("heldout_loglik needs at least one log-probability, got an empty array")
    if np.isnan(lp).any() or (lp == np.inf).any():
        bad = np.flatnonzero(np.isnan(lp) | (lp == np.inf))
        raise ValueError(f"log-probabilities must be finite or -inf; got {lp[bad[0]]} at "
                         f"index {bad[0]} ({bad.size} such values): check the model's log_prob")
    if n_dims is not None and n_dims < 1:
        raise ValueError(f"n_dims must be a positive integer, got {n_dims}")
    finite = np.isfinite(lp)
    n, n_finite = int(lp.size), int(finite.sum())
    mean = float(lp[finite].mean()) if n_finite else float("nan")
    bpd = None if n_dims is None else -mean / (n_dims * np.log(2.0))
    return LogLikScore(
        mean_loglik=mean,
        out_of_support_rate=(n - n_finite) / n,
        n=n,
        n_finite=n_finite,
        bits_per_dim=bpd,
        mean_loglik_all=mean if n_finite == n else float("-inf"),
    )


# ---------------------------------------------------------------------------
# Truth: entropy and KL divergence
# ---------------------------------------------------------------------------


def _probability_table(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0 or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("p must be a non-empty table of finite, non-negative probabilities")
    total = p.sum()
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"p must sum to 1, sums to {total!r}")
    return p


def entropy_categorical(p) -> float:
    """Entropy of a probability table, nats.

    ``H(P) = -sum_{x: p(x) > 0} p(x) log p(x)``.

    Parameters
    ----------
    p : array-like, any shape
        Probabilities of every cell; sums to 1.

    Returns
    -------
    float

    Examples
    --------
    >>> round(entropy_categorical([0.5, 0.25, 0.25]), 6)
    1.039721
    """
    p = _probability_table(p)
    pos = p > 0
    return float(-(p[pos] * np.log(p[pos])).sum())


def kl_categorical(p, log_q) -> float:
    """KL(P || Q) between two tables over the same cells, nats.

    ``KL = sum_{x: p(x) > 0} p(x) (log p(x) - log q(x))``; cells with p = 0
    contribute nothing, whatever q; +inf when q = 0 on a cell where p > 0.

    Parameters
    ----------
    p : array-like, any shape
        Probabilities of P (e.g. ``fashion.probability_table()``, (3, 8, 4, 6, 7));
        sums to 1.
    log_q : array-like, same shape as ``p``
        Log-probabilities of Q on the same cells, in the same order; -inf where q = 0.

    Returns
    -------
    float, >= 0

    Examples
    --------
    >>> kl_categorical([0.5, 0.5], np.log([0.5, 0.5]))
    0.0
    >>> kl_categorical([0.5, 0.5], [0.0, -np.inf])
    inf
    """
    p = _probability_table(p)
    log_q = np.asarray(log_q, dtype=np.float64)
    if log_q.shape != p.shape:
        raise ValueError(f"log_q must have the shape of p, {p.shape}; got {log_q.shape}")
    if np.isnan(log_q).any() or (log_q == np.inf).any():
        raise ValueError("log_q must be finite or -inf (no NaN, no +inf)")
    pos = p > 0
    lq = log_q[pos]
    if (lq == -np.inf).any():
        return float("inf")
    return float((p[pos] * (np.log(p[pos]) - lq)).sum())


_KL_LAND_CHUNK = 1 << 18  # grid cells per call of log_density (about 6 MB of points)


def kl_land(truth: LandData, log_density: Callable[[np.ndarray], np.ndarray], *,
            cell_deg: float = 0.1) -> float:
    """KL(P_data || P_model) for the land map, nats, by quadrature on the mask grid.

    P_data is uniform on the region's land, density 1/A (A = land area, deg^2),
    so with ``a_c`` the land area of grid cell ``c`` and ``q`` the model's
    density at its centre::

        KL = -log A - (1/A) sum_c a_c log q(centre_c)
           = sum_c (a_c / A) (-log A - log q(centre_c))        (the form computed)

    over the cells of ``truth.land_area_grid(cell_deg)`` with ``a_c > 0``.

    The result is exact whenever the model's density is constant on each grid
    cell: grid or histogram models whose cells are unions of these cells (cell
    sizes multiples of ``cell_deg``, aligned to the region's corner), uniform
    boxes with edges on the grid. Otherwise it is a midpoint rule whose error
    shrinks with ``cell_deg`` (the true density itself, which follows the coast
    at 1/120 degree, is not constant on 0.1-degree cells: pass it only with
    ``cell_deg = 1/120``); such an approximation can even come out slightly
    negative.

    Parameters
    ----------
    truth : LandData
        P_data (its region and mask).
    log_density : callable
        ``(m, 2)`` points (lon, lat) -> ``(m,)`` log density in nats per deg^2,
        -inf where the model puts no density (e.g. ``model.log_prob``).
    cell_deg : float, default 0.1
        Grid cell size, a whole multiple of 1/120 degree.

    Returns
    -------
    float
        +inf if the model's density is 0 (-inf log) at the centre of any cell
        holding land.

    Notes
    -----
    ``log_density`` is called on chunks of at most about 2^18 points, so memory
    stays small; about 1.6 million land cells at 0.1 degree for the default region.

    Examples
    --------
    >>> truth = LandData(Region(-10, 10, 35, 45))                  # doctest: +SKIP
    >>> kl_land(truth, lambda X: np.full(len(X), -np.log(truth.land_area_deg2)))  # doctest: +SKIP
    0.0
    """
    lon_edges, lat_edges, area = truth.land_area_grid(cell_deg)  # area (n_lat, n_lon)
    A = truth.land_area_deg2
    log_p = -np.log(A)
    lon_c = 0.5 * (lon_edges[:-1] + lon_edges[1:])
    lat_c = 0.5 * (lat_edges[:-1] + lat_edges[1:])
    rows_per_band = max(1, _KL_LAND_CHUNK // area.shape[1])
    total = 0.0
    for i0 in range(0, area.shape[0], rows_per_band):
        band = area[i0:i0 + rows_per_band]
        r, c = np.nonzero(band > 0)
        if r.size == 0:
            continue
        X = np.column_stack([lon_c[c], lat_c[i0 + r]])  # (m, 2) cell centres
        lq = np.asarray(log_density(X), dtype=np.float64)
        if lq.shape != (len(X),):
            raise ValueError(f"log_density must return shape ({len(X)},) for ({len(X)}, 2) "
                             f"points, got {lq.shape}")
        if np.isnan(lq).any() or (lq == np.inf).any():
            raise ValueError("log_density returned NaN or +inf; it must be finite or -inf")
        if (lq == -np.inf).any():
            return float("inf")
        # np.sum, not np.dot: BLAS splits a long dot product between its threads, so
        # the last bits would depend on its thread count (1 on Dask workers, and 1 or
        # all while scikit-learn's neighbour searches run); numpy's sum uses no threads
        total += float(np.sum((band[r, c] / A) * (log_p - lq)))
    return total


# ---------------------------------------------------------------------------
# Land vs ocean
# ---------------------------------------------------------------------------


def _points(samples) -> np.ndarray:
    X = np.asarray(samples, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"expected points of shape (n, 2) = (lon, lat), got {X.shape}")
    if len(X) == 0:
        raise ValueError("expected at least one point, got none")
    return X


def _n_land_cells(region: Region) -> int:
    """Land cells of the mask inside a (snapped) region; 0 when it is all sea."""
    r0, r1, c0, c1 = region.cells()
    return (r1 - r0) * (c1 - c0) - int(np.count_nonzero(land._ocean_mask()[r0:r1, c0:c1]))


def box_land_shares(truth: LandData, box) -> dict:
    """The chapter's points A and B for a box: sea inside it, land outside it.

    Computed exactly from the mask. The box is clipped to ``truth.region``
    (what lies outside the region counts as neither land nor sea) and, like any
    :class:`~pmodel.datasets.land.Region`, snapped inward to the 1/120-degree
    grid, so a box edge off the grid loses the partial mask cells along it: an
    error of at most one mask cell (1/120 degree) along each edge.

    Parameters
    ----------
    truth : LandData
        P_data and its region.
    box : tuple of 4 floats
        ``(lon_min, lon_max, lat_min, lat_max)`` in degrees.

    Returns
    -------
    dict
        ``box_sea_share``: share of the box's area that is sea (point A);
        ``land_outside_box_share``: share of the region's land outside the box (point B).

    Raises
    ------
    ValueError
        If the box is degenerate or does not overlap the region.
    """
    lon_min, lon_max, lat_min, lat_max = (float(v) for v in box)
    if not (lon_min < lon_max and lat_min < lat_max):
        raise ValueError(f"box must be (lon_min, lon_max, lat_min, lat_max) with min < max, "
                         f"got {tuple(box)}")
    reg = truth.region
    clipped = (max(lon_min, reg.lon_min), min(lon_max, reg.lon_max),
               max(lat_min, reg.lat_min), min(lat_max, reg.lat_max))
    if not (clipped[0] < clipped[1] and clipped[2] < clipped[3]):
        raise ValueError(f"box {tuple(box)} does not overlap the region {reg}")
    inside = Region(*clipped)
    r0, r1, c0, c1 = inside.cells()
    n_cells = (r1 - r0) * (c1 - c0)
    n_land = _n_land_cells(inside)
    return {
        "box_sea_share": (n_cells - n_land) / n_cells,
        "land_outside_box_share": (truth.n_land_cells - n_land) / truth.n_land_cells,
    }


def on_land_rate(samples, truth: LandData) -> float:
    """Share of samples that lie on land inside the region (the map's precision).

    Parameters
    ----------
    samples : array-like of shape (n, 2)
        Points (lon, lat); NaN or off-globe points count as not on land.
    truth : LandData

    Returns
    -------
    float in [0, 1]
    """
    X = _points(samples)
    return float(np.mean(truth.log_prob(X) > -np.inf))


def land_coverage(samples, truth: LandData, *, cell_deg: float = 1.0) -> dict:
    """How much of the land the samples reach, relative to P_data itself.

    The land cells are the cells of ``truth.land_area_grid(cell_deg)`` with
    land area ``a_c > 0``. With ``n`` samples (all of them, on land or not)::

        coverage                = share of land cells holding >= 1 on-land sample
        expected_coverage_truth = mean_c [1 - (1 - a_c / A)^n]
        land_coverage           = coverage / expected_coverage_truth

    ``expected_coverage_truth`` is the exact expected coverage of ``n`` draws
    from P_data (each lands in cell c with probability a_c / A), so
    ``land_coverage`` is 1.0 for a model as good as the truth, below 1 for one
    that misses land (or wastes samples at sea), and can exceed 1 slightly for
    samples spread more evenly than independent draws.

    Parameters
    ----------
    samples : array-like of shape (n, 2)
        Points (lon, lat).
    truth : LandData
    cell_deg : float, default 1.0
        Grid cell size, a whole multiple of 1/120 degree.

    Returns
    -------
    dict
        ``coverage``, ``expected_coverage_truth``, ``land_coverage``, ``cell_deg``.
    """
    X = _points(samples)
    n = len(X)
    _, _, area = truth.land_area_grid(cell_deg)  # (n_lat, n_lon)
    k = int(round(cell_deg * land.CELLS_PER_DEGREE))
    on = truth.log_prob(X) > -np.inf
    # grid cell from the mask cell, so a sample is binned exactly as the mask judged it
    i, j = land.cell_index(X[on, 0], X[on, 1])
    r0, _, c0, _ = truth.region.cells()
    hit = np.zeros(area.shape, dtype=bool)
    hit[(i - r0) // k, (j - c0) // k] = True
    is_land_cell = area > 0
    coverage = float(hit[is_land_cell].mean())
    share = area[is_land_cell] / truth.land_area_deg2
    expected = float(np.mean(-np.expm1(n * np.log1p(-share))))  # 1 - (1 - share)^n
    return {
        "coverage": coverage,
        "expected_coverage_truth": expected,
        "land_coverage": coverage / expected,
        "cell_deg": float(cell_deg),
    }


# ---------------------------------------------------------------------------
# Precision, recall, density, coverage (Naeem et al. 2020)
# ---------------------------------------------------------------------------

_TREE_MAX_DIMS = 15       # k-d tree up to here; chunked brute force above
_CHUNK_BYTES = 64 << 20   # working memory of one brute-force block of distances
_QUERY_CHUNK = 65536      # points per k-d tree query


def _tree(X: np.ndarray) -> KDTree:
    # metric "euclidean": every distance is sqrt of a plain sum of squares,
    # computed the same way for a radius and for the point it is compared with,
    # so exact ties stay exact ties.
    return KDTree(X, metric="euclidean")


def _tree_order(tree: KDTree) -> np.ndarray:
    """The tree's points in its own (spatial) order: queries in this order
    walk the tree with a warm cache, two to three times faster than at random."""
    return np.asarray(tree.get_arrays()[1])


def _brute_rows(n_cols: int) -> int:
    return max(1, _CHUNK_BYTES // (8 * max(n_cols, 1)))


def _brute_distances(A: np.ndarray, B: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """(len(A), len(B)) distances as sqrt(|a|^2 - 2 a.b + |b|^2): one matrix product,
    exact for integer-valued data such as images (every term is an integer below 2^53)."""
    sq = np.einsum("ij,ij->i", A, A)[:, None] - 2.0 * (A @ B.T) + b_sq[None, :]
    return np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq)


def _kth_radius(X: np.ndarray, k: int, tree: KDTree | None) -> np.ndarray:
    """Distance of every point to its k-th nearest other point, (n,).

    The (k+1)-th smallest distance with the point itself counted (it is 0), as
    the authors' ``get_kth_value(distances, k + 1)``; duplicates count as neighbours.
    """
    out = np.empty(len(X))
    if tree is not None:
        order = _tree_order(tree)
        for s in range(0, len(X), _QUERY_CHUNK):
            rows = order[s:s + _QUERY_CHUNK]
            dist, _ = tree.query(X[rows], k=k + 1)
            out[rows] = dist[:, -1]
        return out
    sq = np.einsum("ij,ij->i", X, X)
    step = _brute_rows(len(X))
    for s in range(0, len(X), step):
        d = _brute_distances(X[s:s + step], X, sq)
        out[s:s + len(d)] = np.partition(d, k, axis=1)[:, k]
    return out


def _balls_holding(queries: np.ndarray, centers: np.ndarray, radii: np.ndarray,
                   tree: KDTree | None, center_rows: np.ndarray | None = None) -> np.ndarray:
    """For each query point, how many open balls B(centers[i], radii[i]) hold it, (n_queries,).

    Open balls (distance < radius), as the authors' code. With a tree (built on
    ``queries``) each centre is searched with its own radius, so memory grows
    with the number of (centre, query) pairs inside a ball, not with N x M;
    without, blocks of centres against every query. ``center_rows``: the
    centres to search (default all), best in a spatial order.
    """
    rows = np.arange(len(centers)) if center_rows is None else np.asarray(center_rows)
    rows = rows[radii[rows] > 0]  # nothing lies strictly inside a ball of radius 0
    counts = np.zeros(len(queries), dtype=np.int64)
    if tree is not None:
        # The tree compares squared distances, which can drop a point one ulp
        # inside its ball: search a little wider and decide on distances.
        for s in range(0, len(rows), _QUERY_CHUNK):
            block = rows[s:s + _QUERY_CHUNK]
            r = radii[block]
            idxs, dists = tree.query_radius(centers[block], r * (1.0 + 1e-9), return_distance=True)
            lengths = np.fromiter((len(i) for i in idxs), dtype=np.int64, count=len(idxs))
            if lengths.sum() == 0:
                continue
            inside = np.concatenate(dists) < np.repeat(r, lengths)
            counts += np.bincount(np.concatenate(idxs)[inside], minlength=len(queries))
        return counts
    q_sq = np.einsum("ij,ij->i", queries, queries)
    step = _brute_rows(len(queries))
    for s in range(0, len(rows), step):
        block = rows[s:s + step]
        d = _brute_distances(centers[block], queries, q_sq)  # (block, n_queries)
        counts += (d < radii[block, None]).sum(axis=0)
    return counts


def _nearest_distance(X: np.ndarray, Y: np.ndarray, tree_y: KDTree | None,
                      x_order: np.ndarray | None = None) -> np.ndarray:
    """Distance of every point of X to its nearest point of Y, (len(X),)."""
    out = np.empty(len(X))
    if tree_y is not None:
        order = np.arange(len(X)) if x_order is None else x_order
        for s in range(0, len(X), _QUERY_CHUNK):
            rows = order[s:s + _QUERY_CHUNK]
            dist, _ = tree_y.query(X[rows], k=1)
            out[rows] = dist[:, 0]
        return out
    y_sq = np.einsum("ij,ij->i", Y, Y)
    step = _brute_rows(len(Y))
    for s in range(0, len(X), step):
        out[s:s + step] = _brute_distances(X[s:s + step], Y, y_sq).min(axis=1)
    return out


def prdc(real, fake, *, k: int = 5) -> dict:
    """Precision, recall, density and coverage (Naeem et al., 2020).

    "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020.
    Each point's ball ``B(x, r_k(x))`` has as radius the distance to its k-th
    nearest neighbour in its own set (itself excluded, duplicates counted).
    With N real points X_i and M fake points Y_j::

        precision = (1/M) sum_j 1[exists i: |Y_j - X_i| < r_k(X_i)]
        recall    = (1/N) sum_i 1[exists j: |X_i - Y_j| < r_k(Y_j)]
        density   = (1/(kM)) sum_j sum_i 1[|Y_j - X_i| < r_k(X_i)]
        coverage  = (1/N) sum_i 1[min_j |X_i - Y_j| < r_k(X_i)]

    Balls are open (``<``), as in the authors' code
    (clovaai/generative-evaluation-prdc). The choice shows only at exact ties,
    which discrete or rounded data produce: prdc(X, X) has density exactly 1
    (each point's own ball holds itself and its k-1 nearer neighbours), and a
    point whose k nearest neighbours are copies of it has radius 0 and holds
    nothing.

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
    Memory grows linearly with N + M: up to 15 dimensions a k-d tree searches
    each ball with its own radius (the pairs inside balls are about k (N + M)),
    above it distances are computed in blocks of 64 MB. No N x M matrix is
    formed. Results equal the authors' dense computation with exact distances.
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

    use_tree = real.shape[1] <= _TREE_MAX_DIMS
    tree_real = _tree(real) if use_tree else None
    tree_fake = _tree(fake) if use_tree else None
    r_real = _kth_radius(real, k, tree_real)
    r_fake = _kth_radius(fake, k, tree_fake)
    real_order = _tree_order(tree_real) if use_tree else None
    fake_order = _tree_order(tree_fake) if use_tree else None
    nearest_fake = _nearest_distance(real, fake, tree_fake, real_order)  # (N,)
    # only a real ball that holds its nearest fake point can hold any: search those
    holds = nearest_fake < r_real
    order = real_order[holds[real_order]] if use_tree else np.nonzero(holds)[0]
    real_balls_per_fake = _balls_holding(fake, real, r_real, tree_fake, order)  # (M,)
    fake_balls_per_real = _balls_holding(real, fake, r_fake, tree_real, fake_order)  # (N,)
    return {
        "precision": float(np.mean(real_balls_per_fake > 0)),
        "recall": float(np.mean(fake_balls_per_real > 0)),
        "density": float(real_balls_per_fake.sum() / (k * len(fake))),
        "coverage": float(np.mean(holds)),
    }


# ---------------------------------------------------------------------------
# Novelty
# ---------------------------------------------------------------------------


_NOVELTY_CHUNK = 1 << 20  # training rows compared at a time


def _canonical_rows(X: np.ndarray, dtype) -> np.ndarray:
    """(n, d) C-contiguous rows in ``dtype``, -0.0 turned to 0.0: equal values, equal bytes."""
    X = np.ascontiguousarray(np.asarray(X, dtype=dtype).reshape(len(X), -1))
    return X + 0.0 if X.dtype.kind == "f" else X  # -0.0 + 0.0 is +0.0


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """A uint64 hash of each row's bytes, (n,): equal rows hash equal (collisions are checked)."""
    b = X.view(np.uint8).reshape(len(X), -1)
    if b.shape[1] % 8:
        b = np.pad(b, ((0, 0), (0, 8 - b.shape[1] % 8)))
    words = np.ascontiguousarray(b).view(np.uint64)  # (n, n_words)
    mult = np.random.default_rng(0).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    h = (words * mult).sum(axis=1, dtype=np.uint64)  # wraps modulo 2^64
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return h ^ (h >> np.uint64(29))


def _seen_in(U: np.ndarray, train: np.ndarray, dtype) -> np.ndarray:
    """Which rows of U (distinct, canonical) equal some training row, (len(U),) bool.

    Streams the training set in chunks: hash lookup, then an exact comparison of
    the candidates, so memory stays at one chunk whatever the training size.
    """
    hashes = _row_hashes(U)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    seen = np.zeros(len(U), dtype=bool)
    for s in range(0, len(train), _NOVELTY_CHUNK):
        T = _canonical_rows(train[s:s + _NOVELTY_CHUNK], dtype)
        h = _row_hashes(T)
        lo = np.searchsorted(sorted_hashes, h, side="left")
        hi = np.searchsorted(sorted_hashes, h, side="right")
        cand = np.nonzero(hi > lo)[0]
        while cand.size:  # more than one distinct sample row per hash only on a collision
            u = order[lo[cand]]
            seen[u[(T[cand] == U[u]).all(axis=1)]] = True
            lo[cand] += 1
            cand = cand[lo[cand] < hi[cand]]
        if seen.all():
            break
    return seen


def novelty(samples, train) -> dict:
    """How many samples are new: not copies of training examples, and not of each other.

    Examples are compared whole and exactly (every feature, pixel or
    coordinate equal)::

        novelty_rate = share of samples equal to no training example
        unique_rate  = (number of distinct samples) / n

    Parameters
    ----------
    samples : array-like of shape (n, *event_shape)
        E.g. (n, n_features) int codes, (n, h, w) uint8 images, (n, 2) float points.
    train : array-like of shape (n_train, *event_shape)
        The training examples, same event shape.

    Returns
    -------
    dict
        ``novelty_rate``, ``unique_rate``.

    Examples
    --------
    >>> novelty(np.array([[0, 1], [0, 1], [2, 2]]), np.array([[0, 1]]))
    {'novelty_rate': 0.3333333333333333, 'unique_rate': 0.6666666666666666}
    """
    samples, train = np.asarray(samples), np.asarray(train)
    if samples.ndim < 1 or len(samples) == 0:
        raise ValueError("novelty needs at least one sample")
    if train.ndim < 1 or samples.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples and train need the same example shape, got {samples.shape} "
                         f"and {train.shape}")
    dtype = np.result_type(samples, train)
    S = _canonical_rows(samples, dtype)
    # np.unique over rows compares values; the distinct samples are then looked
    # up in the training set chunk by chunk (it can be millions of rows)
    U, inverse = np.unique(S, axis=0, return_inverse=True)
    seen = _seen_in(np.ascontiguousarray(U), train, dtype)
    return {
        "novelty_rate": float(np.mean(~seen[inverse.ravel()])),
        "unique_rate": len(U) / len(S),
    }


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


def image_validity(samples, renders, *, threshold: float | None = None) -> dict:
    """How many sampled images are (close to) a valid render, and how many renders they reach.

    The valid images, the images' "land", are the distinct ``renders``
    (duplicates dropped first: under NoHair several fashion cells share one
    render). A sample's distance is the root-mean-square pixel difference
    (0..255 scale) to its nearest distinct render,
    ``d(x, r) = sqrt(mean_pixels (x - r)^2)``.

    Default thresholds, one per render: half the distance from that render to
    its nearest other render, ``t_r = min_{r' != r} d(r, r') / 2``, and a
    sample is valid when ``d(x, r) <= t_r`` for its nearest render ``r``. The
    balls are disjoint (two of them overlapping would put their renders closer
    than ``t_r + t_r' <= d(r, r')``), so a valid sample is recognisably one
    combination, and each render gets all the room its neighbours leave it.
    (A single global threshold, half the closest pair, would be 0.38 grey
    levels for the avatars: Gray01 and PastelOrange clothes differ by at
    most 3 levels in 89 pixels, and every other render would pay for it.)

    Parameters
    ----------
    samples : array-like of shape (n, h, w)
        Sampled images, 0..255 (uint8, or float for continuous models).
    renders : array-like of shape (m, h, w)
        Valid images, e.g. ``pixels.load_renders()``; at least two distinct.
    threshold : float, optional
        One RMS distance (0..255 scale) for every render instead of the
        per-render default.

    Returns
    -------
    dict
        ``valid_rate``: share of valid samples;
        ``n_valid_combinations``: distinct renders that are the nearest render of
        some valid sample (distinct images, not fashion cells);
        ``mean_distance``: mean RMS distance to the nearest render, all samples;
        ``threshold_min``, ``threshold_median``: of the thresholds in use.
    """
    samples = np.asarray(samples)
    renders = np.asarray(renders)
    if renders.ndim != 3 or samples.ndim != 3 or samples.shape[1:] != renders.shape[1:]:
        raise ValueError(f"expected samples (n, h, w) and renders (m, h, w) of the same image "
                         f"size, got {samples.shape} and {renders.shape}")
    if len(samples) == 0:
        raise ValueError("image_validity needs at least one sample")
    n_pixels = renders.shape[1] * renders.shape[2]
    valid = np.unique(renders.reshape(len(renders), -1), axis=0).astype(np.float64)  # (m', hw)
    if len(valid) < 2:
        raise ValueError("image_validity needs at least two distinct renders")
    # Brute force on integer-valued images: squared distances are computed exactly.
    nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(valid)
    if threshold is None:
        d_pairs, _ = nn.kneighbors(n_neighbors=1)  # nearest other render, (m', 1)
        thresholds = d_pairs[:, 0] / np.sqrt(n_pixels) / 2.0
    else:
        thresholds = np.full(len(valid), float(threshold))
    X = samples.reshape(len(samples), -1).astype(np.float64)
    dist, idx = nn.kneighbors(X, n_neighbors=1)  # (n, 1)
    rms = dist[:, 0] / np.sqrt(n_pixels)
    ok = rms <= thresholds[idx[:, 0]]
    return {
        "valid_rate": float(ok.mean()),
        "n_valid_combinations": int(np.unique(idx[ok, 0]).size),
        "mean_distance": float(rms.mean()),
        "threshold_min": float(thresholds.min()),
        "threshold_median": float(np.median(thresholds)),
    }
