"""Novelty: samples that are not copies of training examples, nor of each other."""

from __future__ import annotations

import numpy as np

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
    # distinct rows by their bytes (canonical rows: equal values, equal bytes; far faster
    # than np.unique(axis=0) on long rows that mostly agree); the distinct samples are then
    # looked up in the training set chunk by chunk (it can be millions of rows)
    rows = S.view(np.dtype((np.void, S.shape[1] * S.itemsize))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    U = S[first]
    seen = _seen_in(np.ascontiguousarray(U), train, dtype)
    return {
        "novelty_rate": float(np.mean(~seen[inverse.ravel()])),
        "unique_rate": len(U) / len(S),
    }
