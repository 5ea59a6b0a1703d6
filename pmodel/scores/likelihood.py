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
    """

    mean_loglik: float
    mean_loglik_in_support: float
    out_of_support_rate: float
    n: int
    n_finite: int
    bits_per_dim: float | None
    bits_per_dim_in_support: float | None


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

    return LogLikScore(mean_loglik=mean, mean_loglik_in_support=in_support,
                       out_of_support_rate=(n - n_finite) / n, n=n, n_finite=n_finite,
                       bits_per_dim=bpd(mean), bits_per_dim_in_support=bpd(in_support))
