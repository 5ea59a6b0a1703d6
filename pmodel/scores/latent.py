"""What a latent space has learned: linear read-out of the factors, and the mutual information gap.

Both judge a model's ``encode`` against the latent factors a dataset knows for
each example (jars: height and width; pixels: the avatar's five features).

Linear read-out (R^2). A linear regression from the code ``z`` to a factor
``y`` is fitted on the training split's codes and judged on the held-out split::

    R^2 = 1 - sum_i (y_i - yhat_i)^2 / sum_i (y_i - mean(y))^2      (held-out i)

1 when the factor is a linear function of the code, 0 when the code tells
nothing a constant would not (it can go below 0 on held-out data). A
categorical factor (a hair colour) has no order: it is read out one-hot, and
its R^2 is the share of the one-hot vector's total variance explained
(scikit-learn's ``variance_weighted`` R^2 over the indicator columns).

Mutual information gap (Chen et al. 2018, "Isolating sources of
disentanglement in VAEs"), with disentanglement_lib's discretisation: each
code dimension is cut into 20 equal-width bins over its range, and for each
factor ``k``::

    MIG_k = (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k)

where ``z_(1)``, ``z_(2)`` are the code dimensions with the largest and second
largest mutual information with ``v_k`` (plug-in estimates on the held-out
split, nats); MIG is the mean over factors. 1: each factor is captured by one
dimension alone; 0: no dimension stands out (or none knows the factor).
"""

from __future__ import annotations

import numpy as np

N_BINS = 20


def _as_2d(codes) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim == 1:
        codes = codes[:, None]
    if codes.ndim != 2:
        raise ValueError(f"expected codes of shape (n, latent_dim), got {codes.shape}")
    if not np.isfinite(codes).all():
        raise ValueError("codes must be finite numbers (the model's encode returned NaN or inf)")
    return codes


def linear_readout_r2(codes_train, y_train, codes_heldout, y_heldout, *,
                      categorical: bool = False) -> float:
    """Held-out R^2 of a linear regression (with intercept) from codes to one factor.

    Parameters
    ----------
    codes_train, codes_heldout : array-like (n, latent_dim)
    y_train, y_heldout : array-like (n,)
        The factor's values (numbers, or category codes when ``categorical``).
    categorical : bool
        Read the factor out one-hot (categories seen in either split).

    Returns
    -------
    float, at most 1

    Examples
    --------
    >>> z = np.arange(10.0)[:, None]
    >>> linear_readout_r2(z, 3 * z[:, 0] + 1, z, 3 * z[:, 0] + 1)
    1.0
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    Zt, Zh = _as_2d(codes_train), _as_2d(codes_heldout)
    yt, yh = np.asarray(y_train, dtype=np.float64), np.asarray(y_heldout, dtype=np.float64)
    if len(Zt) != len(yt) or len(Zh) != len(yh):
        raise ValueError(f"codes and factor lengths differ: {len(Zt)} vs {len(yt)} (train), "
                         f"{len(Zh)} vs {len(yh)} (held-out)")
    if categorical:
        cats = np.unique(np.concatenate([yt, yh]))
        yt = (yt[:, None] == cats).astype(np.float64)
        yh = (yh[:, None] == cats).astype(np.float64)
    pred = LinearRegression().fit(Zt, yt).predict(Zh)
    return float(r2_score(yh, pred, multioutput="variance_weighted" if categorical else "uniform_average"))


def discretize(codes, n_bins: int = N_BINS) -> np.ndarray:
    """Each code dimension cut into ``n_bins`` equal-width bins over its range: (n, d) int.

    As disentanglement_lib's ``_histogram_discretize``:
    ``np.digitize(z, np.histogram(z, n_bins)[1][:-1])`` per dimension (bins 1..n_bins).
    """
    Z = _as_2d(codes)
    out = np.zeros(Z.shape, dtype=np.int64)
    for i in range(Z.shape[1]):
        out[:, i] = np.digitize(Z[:, i], np.histogram(Z[:, i], n_bins)[1][:-1])
    return out


def mutual_information_gap(codes, factors, *, n_bins: int = N_BINS) -> tuple[float, np.ndarray]:
    """MIG of codes against discrete factors.

    Parameters
    ----------
    codes : array-like (n, latent_dim)
    factors : array-like (n, n_factors)
        Discrete values (a grid's values, or category codes).

    Returns
    -------
    mig : float
        Mean over the factors that vary (nan if none does).
    per_factor : ndarray (n_factors,)
        ``MIG_k``; nan for a factor that takes one value only (its entropy is 0).
    """
    from sklearn.metrics import mutual_info_score

    Z = discretize(codes, n_bins)
    V = np.asarray(factors)
    if V.ndim == 1:
        V = V[:, None]
    if len(V) != len(Z):
        raise ValueError(f"codes and factors lengths differ: {len(Z)} vs {len(V)}")
    per_factor = np.full(V.shape[1], np.nan)
    for k in range(V.shape[1]):
        v = np.unique(V[:, k], return_inverse=True)[1]
        h = mutual_info_score(v, v)  # H(v_k), nats
        if h <= 0:
            continue
        mi = np.sort([mutual_info_score(v, Z[:, i]) for i in range(Z.shape[1])])[::-1]
        second = mi[1] if len(mi) > 1 else 0.0
        per_factor[k] = (mi[0] - second) / h
    mig = float(np.nanmean(per_factor)) if np.isfinite(per_factor).any() else float("nan")
    return mig, per_factor


def readout_scores(codes_train, codes_heldout, factors_train, factors_heldout,
                   factor_names, factor_categorical=None) -> dict[str, float]:
    """``latent_r2_<factor>`` for every factor, and their mean ``latent_r2``."""
    Ft, Fh = np.asarray(factors_train), np.asarray(factors_heldout)
    cat = tuple(factor_categorical or (False,) * len(factor_names))
    out = {f"latent_r2_{name}": linear_readout_r2(codes_train, Ft[:, k], codes_heldout, Fh[:, k],
                                                  categorical=cat[k])
           for k, name in enumerate(factor_names)}
    out["latent_r2"] = float(np.mean(list(out.values())))
    return out
