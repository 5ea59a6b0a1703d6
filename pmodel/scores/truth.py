"""Scores against a known P_data: entropy and KL divergence, exact (tables, the land map, a
network's joint table in chunks) or estimated by Monte Carlo with their standard error."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from pmodel.datasets.land import LandData, Region


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


def kl_monte_carlo_se(p, log_q, log_q_again) -> float | None:
    """The Monte-Carlo standard error of ``kl_categorical(p, log_q)`` when each ``log_q`` is
    an estimate (a bound estimated with random draws, independent from cell to cell), from a
    second, independent estimate ``log_q_again`` of the same cells, nats.

    The KL is ``sum_x p(x) (log p(x) - log_q(x))`` over fixed cells, so its only noise is
    the draws': ``Var = sum_x p(x)^2 Var(log_q(x))``, and ``(log_q - log_q_again)^2 / 2``
    is an unbiased estimate of ``Var(log_q(x))``::

        se = sqrt( sum_{x: p(x) > 0} p(x)^2 (log_q(x) - log_q_again(x))^2 / 2 )

    Parameters
    ----------
    p : array-like, the probabilities of P (sums to 1)
    log_q, log_q_again : array-like, same shape, two independent estimates of log q

    Returns
    -------
    float, or None when either estimate is -inf on a cell of P (the KL is then infinite)

    Examples
    --------
    >>> kl_monte_carlo_se([0.5, 0.5], [-1.0, -1.0], [-1.0, -3.0])
    0.7071067811865476
    """
    p = _probability_table(p)
    a = np.asarray(log_q, dtype=np.float64)
    b = np.asarray(log_q_again, dtype=np.float64)
    if a.shape != p.shape or b.shape != p.shape:
        raise ValueError(f"log_q and log_q_again must have the shape of p, {p.shape}; got "
                         f"{a.shape} and {b.shape}")
    pos = p > 0
    if not (np.isfinite(a[pos]).all() and np.isfinite(b[pos]).all()):
        return None
    return float(np.sqrt(np.sum(p[pos]**2 * (a[pos] - b[pos])**2) / 2.0))


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
# Tables too large to hold at once: exact sums in chunks
# ---------------------------------------------------------------------------

def entropy_by_chunks(log_p_chunks: Iterable[np.ndarray]) -> float:
    """Entropy of a distribution given as chunks of ``log p`` over all of its cells, nats.

    ``H = -sum_{x: p(x) > 0} p(x) log p(x)``, summed chunk by chunk (cells with p = 0 add
    nothing). The chunks together must cover every cell once; their probabilities must sum to 1.
    """
    total, mass = 0.0, 0.0
    for lp in log_p_chunks:
        lp = np.asarray(lp, dtype=np.float64)
        pos = lp > -np.inf
        p = np.exp(lp[pos])
        total -= float(np.sum(p * lp[pos]))
        mass += float(np.sum(p))
    if abs(mass - 1.0) > 1e-9:
        raise ValueError(f"the probabilities sum to {mass!r}, not 1: not every cell was given once")
    return total


def kl_by_chunks(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """KL(P || Q) over a table given as chunks of ``(log p, log q)`` on the same cells, nats.

    ``KL = sum_{x: p(x) > 0} p(x) (log p(x) - log q(x))``: exact, as :func:`kl_categorical`,
    without holding the table; +inf as soon as q = 0 where p > 0.
    """
    total, mass = 0.0, 0.0
    for lp, lq in chunks:
        lp, lq = np.asarray(lp, dtype=np.float64), np.asarray(lq, dtype=np.float64)
        if lq.shape != lp.shape:
            raise ValueError(f"log q must have the shape of log p, {lp.shape}; got {lq.shape}")
        if np.isnan(lq).any() or (lq == np.inf).any():
            raise ValueError("log q must be finite or -inf (no NaN, no +inf)")
        pos = lp > -np.inf
        if (lq[pos] == -np.inf).any():
            return float("inf")
        p = np.exp(lp[pos])
        total += float(np.sum(p * (lp[pos] - lq[pos])))
        mass += float(np.sum(p))
    if abs(mass - 1.0) > 1e-9:
        raise ValueError(f"the probabilities of P sum to {mass!r}, not 1: not every cell was given once")
    return total


# ---------------------------------------------------------------------------
# Monte Carlo: means of draws from P_data, with their standard error
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate: the mean of ``n`` independent terms and its standard error
    ``se = sd / sqrt(n)`` (sd with n - 1 degrees of freedom)."""

    value: float
    se: float
    n: int


def mc_mean(terms) -> Estimate:
    """The mean of i.i.d. terms and its standard error.

    A term of +inf (a draw from P_data that the model gives probability 0) makes the estimate
    +inf with standard error 0: one such draw proves the KL infinite.

    Examples
    --------
    >>> mc_mean([1.0, 2.0, 3.0])
    Estimate(value=2.0, se=0.5773502691896258, n=3)
    """
    t = np.asarray(terms, dtype=np.float64).ravel()
    if t.size < 2:
        raise ValueError(f"a Monte-Carlo mean needs at least 2 terms, got {t.size}")
    if np.isnan(t).any():
        raise ValueError("a Monte-Carlo term is NaN: check the model's log_prob")
    if (t == np.inf).any():
        return Estimate(math.inf, 0.0, int(t.size))
    if (t == -np.inf).any():
        raise ValueError("a Monte-Carlo term is -inf: a draw the truth itself calls impossible")
    return Estimate(float(t.mean()), float(t.std(ddof=1) / math.sqrt(t.size)), int(t.size))
