"""Novelty: samples that are not copies of training examples, nor of each other."""

from __future__ import annotations

import numpy as np


def _row_ids(*arrays: np.ndarray) -> list[np.ndarray]:
    """Integer id of each example, equal ids for equal examples across all arrays."""
    dtype = np.result_type(*arrays)
    flat = [np.asarray(a, dtype=dtype).reshape(len(a), -1) for a in arrays]
    # np.unique over rows compares values (so -0.0 == 0.0), not bit patterns
    _, ids = np.unique(np.concatenate(flat), axis=0, return_inverse=True)
    ids = ids.ravel()
    return np.split(ids, np.cumsum([len(f) for f in flat])[:-1])


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
    sample_ids, train_ids = _row_ids(samples, train)
    n = len(sample_ids)
    return {
        "novelty_rate": float(np.mean(~np.isin(sample_ids, train_ids))),
        "unique_rate": len(np.unique(sample_ids)) / n,
    }
