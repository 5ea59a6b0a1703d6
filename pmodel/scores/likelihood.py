"""Held-out log-likelihood: exact, a bound, and the examples a model calls impossible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogLikScore:
    """Held-out log-likelihood, with the examples the model calls impossible kept in view.

    Attributes
    ----------
    mean_loglik : float
        Mean log-probability over ALL examples, nats per example: -inf as soon
        as one example has probability 0 (a model that calls real data
        impossible is infinitely wrong, however well it fits the rest).
    mean_loglik_in_support : float
        Mean over the examples with a finite log-probability; nan if none is.
        Reported beside ``out_of_support_rate``, never alone.
    out_of_support_rate : float
        Share of examples with log-probability -inf (probability 0 under the model).
    n, n_finite : int
        Number of examples, and of those with a finite log-probability.
    bits_per_dim, bits_per_dim_in_support : float or None
        ``-mean / (n_dims ln 2)`` of the two means when ``n_dims`` was given
        (+inf when ``mean_loglik`` is -inf), else None.
    se, se_in_support : float or None
        Standard errors of the two means, :func:`mean_se` of the log-probabilities
        they average: ``sd / sqrt(n)``, the rows being independent draws of P_data.
        None where the mean is infinite or nan, or rests on fewer than 2 examples.
        When each row's value is itself a Monte-Carlo estimate (a bound estimated
        with random draws independent from row to row), this se holds both the
        data's noise and the draws' noise: the rows' values are then independent
        and identically distributed, and their spread has both in it.
    bits_per_dim_se, bits_per_dim_in_support_se : float or None
        The same in bits per dimension (``se / (n_dims ln 2)``).
    """

    mean_loglik: float
    mean_loglik_in_support: float
    out_of_support_rate: float
    n: int
    n_finite: int
    bits_per_dim: float | None
    bits_per_dim_in_support: float | None
    se: float | None = None
    se_in_support: float | None = None
    bits_per_dim_se: float | None = None
    bits_per_dim_in_support_se: float | None = None


def mean_se(values) -> float | None:
    """Standard error of the mean of independent values: ``sd / sqrt(n)``, ``sd`` the
    sample standard deviation (ddof 1); None when fewer than 2 values or any is not finite.

    Examples
    --------
    >>> round(mean_se([1.0, 2.0, 3.0, 4.0]), 6)
    0.645497
    >>> mean_se([1.0, -np.inf]) is None
    True
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2 or not np.isfinite(v).all():
        return None
    return float(np.std(v, ddof=1) / np.sqrt(v.size))


def proportion_se(rate: float, n: int) -> float:
    """Standard error of a share of ``n`` independent yes/no outcomes (a binomial
    proportion), plug-in: ``sqrt(p (1 - p) / n)``. It is 0 when the share is 0 or 1;
    then the share itself is only known to within about 3 / n (the rule of three).

    Examples
    --------
    >>> proportion_se(0.5, 100)
    0.05
    """
    if n < 1:
        raise ValueError(f"a proportion needs at least one outcome, got n = {n}")
    p = float(rate)
    return float(np.sqrt(max(p * (1.0 - p), 0.0) / n))


def heldout_loglik(log_probs, *, n_dims: int | None = None) -> LogLikScore:
    """Score per-example log-probabilities (or lower bounds on them) of held-out data.

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
    >>> s.mean_loglik, s.mean_loglik_in_support, s.out_of_support_rate
    (-inf, -2.0, 0.3333333333333333)
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
    in_support = float(lp[finite].mean()) if n_finite else float("nan")
    mean = in_support if n_finite == n else float("-inf")

    def bpd(m: float) -> float | None:
        # bits/dim = -(nats per example) / (n_dims ln 2)
        return None if n_dims is None else float(-m / (n_dims * np.log(2.0)))

    se_in_support = mean_se(lp[finite])
    se = se_in_support if n_finite == n else None

    def bpd_se(s: float | None) -> float | None:
        return None if s is None or n_dims is None else float(s / (n_dims * np.log(2.0)))

    return LogLikScore(mean_loglik=mean, mean_loglik_in_support=in_support,
                       out_of_support_rate=(n - n_finite) / n, n=n, n_finite=n_finite,
                       bits_per_dim=bpd(mean), bits_per_dim_in_support=bpd(in_support),
                       se=se, se_in_support=se_in_support, bits_per_dim_se=bpd_se(se),
                       bits_per_dim_in_support_se=bpd_se(se_in_support))
