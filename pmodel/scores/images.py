"""Images: validity (distance to the nearest valid render) and the renders reached."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


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
    ok, idx, rms, thresholds, _ = _nearest_valid(samples, renders, threshold)
    return {
        "valid_rate": float(ok.mean()),
        "n_valid_combinations": int(np.unique(idx[ok]).size),
        "mean_distance": float(rms.mean()),
        "threshold_min": float(thresholds.min()),
        "threshold_median": float(np.median(thresholds)),
    }


def _nearest_valid(samples, renders, threshold=None):
    """Per sample: valid or not, index of its nearest distinct render, RMS distance;
    and the thresholds and the distinct renders (m', hw)."""
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
    return ok, idx[:, 0], rms, thresholds, valid


def valid_novel_rate(samples, renders, train) -> float:
    """Share of samples that are valid AND show a combination absent from the training set.

    A sample is valid as in :func:`image_validity` (within its nearest render's
    threshold); it is novel when that nearest render (the combination it shows)
    is none of the training images. The chapter's second challenge: finding
    the tiny valid part of pixel space, beyond copying what was seen. Samples
    are rounded to whole levels first (``np.rint``, clipped to 0..255), so
    continuous models' float images are scored as the images they would save.

    Examples
    --------
    >>> r = np.array([[[0]], [[100]], [[200]]])
    >>> valid_novel_rate(np.array([[[1.2]], [[99]], [[300.0]]]), r, train=r[:1])  # 300 -> 255: invalid
    0.3333333333333333
    """
    samples = np.clip(np.rint(np.asarray(samples, dtype=np.float64)), 0, 255)
    ok, idx, _, _, valid = _nearest_valid(samples, renders)
    train = np.asarray(train).reshape(len(train), -1).astype(np.float64)
    seen = np.zeros(len(valid), dtype=bool)
    if len(train):
        # each distinct render: is it one of the training images?
        both = np.concatenate([valid, train])
        _, ids = np.unique(both, axis=0, return_inverse=True)
        ids = ids.ravel()
        seen = np.isin(ids[:len(valid)], ids[len(valid):])
    return float(np.mean(ok & ~seen[idx]))
