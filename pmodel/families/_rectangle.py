"""Normal probabilities of a lon/lat rectangle (the points domain), in closed form.

A Gaussian (a GMM component, a KDE kernel) puts part of its mass outside the
domain's rectangle; pmodel's point families renormalise by that mass exactly:

- axis-aligned (a kernel ``N(x_i, h^2 I)``): a product of two 1-D normal CDFs;
- full covariance (a GMM component): the bivariate normal CDF, by Owen's (1956)
  formula with his T function (``scipy.special.owens_t``), for correlation rho
  and standardised limits (h, k)::

      Phi2(h, k; rho) = Phi(h)/2 + Phi(k)/2 - T(h, a_h) - T(k, a_k) - beta
      a_h = (k - rho h) / (h sqrt(1 - rho^2)),   a_k = (h - rho k) / (k sqrt(1 - rho^2))
      beta = 0 if h k > 0 or (h k = 0 and h + k >= 0), else 1/2

  and the rectangle's mass by inclusion-exclusion of its four corners.
"""

from __future__ import annotations

import numpy as np


def _phi(x):
    from scipy.special import ndtr

    return ndtr(x)


def bivariate_normal_cdf(h, k, rho) -> np.ndarray:
    """P(X <= h, Y <= k) for standard normals with correlation rho (|rho| < 1); arrays broadcast."""
    from scipy.special import owens_t

    h, k, rho = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(rho, float))
    # the formula divides by h and k: move an exact 0 by a hair (the CDF is continuous)
    h = np.where(h == 0, 1e-200, h)
    k = np.where(k == 0, 1e-200, k)
    s = np.sqrt(1.0 - rho**2)
    with np.errstate(over="ignore", invalid="ignore"):
        a_h = (k - rho * h) / (h * s)
        a_k = (h - rho * k) / (k * s)
    beta = np.where(np.sign(h) == np.sign(k), 0.0, 0.5)  # signs: h * k may underflow
    out = 0.5 * _phi(h) + 0.5 * _phi(k) - owens_t(h, a_h) - owens_t(k, a_k) - beta
    # an infinite limit: the other variable's marginal
    out = np.where(np.isposinf(h), _phi(k), out)
    out = np.where(np.isposinf(k), _phi(h), out)
    out = np.where(np.isneginf(h) | np.isneginf(k), 0.0, out)
    return np.clip(out, 0.0, 1.0)


def gaussian_rectangle_mass(means: np.ndarray, covariances: np.ndarray, lo, hi) -> np.ndarray:
    """Mass of ``[lo[0], hi[0]] x [lo[1], hi[1]]`` under each N(mean_k, cov_k): (K,).

    means (K, 2), covariances (K, 2, 2).
    """
    means, cov = np.asarray(means, float), np.asarray(covariances, float)
    sx, sy = np.sqrt(cov[:, 0, 0]), np.sqrt(cov[:, 1, 1])
    rho = cov[:, 0, 1] / (sx * sy)
    x = [(lo[0] - means[:, 0]) / sx, (hi[0] - means[:, 0]) / sx]
    y = [(lo[1] - means[:, 1]) / sy, (hi[1] - means[:, 1]) / sy]
    F = lambda a, b: bivariate_normal_cdf(a, b, rho)  # noqa: E731
    mass = F(x[1], y[1]) - F(x[0], y[1]) - F(x[1], y[0]) + F(x[0], y[0])
    return np.clip(mass, 0.0, 1.0)


def isotropic_rectangle_mass(centres: np.ndarray, bandwidth: float, lo, hi) -> np.ndarray:
    """Mass of the rectangle under each N(centre_i, bandwidth^2 I): (n,), a product of 1-D CDFs."""
    c = np.asarray(centres, float)
    mass = np.ones(len(c))
    for axis in range(2):
        mass *= _phi((hi[axis] - c[:, axis]) / bandwidth) - _phi((lo[axis] - c[:, axis]) / bandwidth)
    return mass


def domain_limits(domain) -> tuple[tuple[float, float], tuple[float, float]]:
    """(lo, hi) corners of a PointsDomain's rectangle, (lon, lat)."""
    return (domain.lon_min, domain.lat_min), (domain.lon_max, domain.lat_max)


def check_inside(X: np.ndarray, domain) -> None:
    """ValueError naming the first training point outside the domain's rectangle."""
    outside = ~domain.in_support(X)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise ValueError(f"training point {k} ({X[k, 0]}, {X[k, 1]}) is outside the domain {domain}")


def rejection_sample(draw, inside, n: int, rng: np.random.Generator, acceptance: float) -> np.ndarray:
    """n points from ``draw(m, rng) -> (m, 2)`` kept when ``inside``; batches sized by ``acceptance``."""
    if acceptance < 1e-6:
        raise ValueError(f"the model keeps only {acceptance:.2e} of its mass inside the domain: "
                         "rejection sampling would not finish")
    out, have = [], 0
    while have < n:
        m = int(min(1e7, max(64, 1.2 * (n - have) / acceptance)))
        batch = draw(m, rng)
        batch = batch[inside(batch)]
        out.append(batch)
        have += len(batch)
    return np.concatenate(out)[:n] if out else np.zeros((0, 2))
