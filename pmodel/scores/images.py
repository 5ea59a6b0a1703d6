"""Images: validity (distance to the nearest valid render) and the renders reached.

Two readings of one distance, the RMS pixel difference (0..255 scale) from a
sample to its nearest distinct render, ``d(x, r) = sqrt(mean_pixels (x - r)^2)``:

- strict validity (``valid_rate``): within half the distance from that render
  to its nearest other render, so the sample shows one combination. The
  avatars' thresholds have a median of about 1 grey level (many clothing
  colours are almost the same grey), stricter than any eye.
- a tolerance in grey levels (``near_render_rate``, 8 by default, and
  ``near_render_rate_16``): whether the eye would take the sample for a
  render (a render plus sigma-8 noise is plainly the same avatar), and the
  ``median_render_distance`` itself.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

#: RMS grey levels (0..255) within which a sample is "near" a render: sigma-8 noise
#: on a render is plainly the same avatar.
NEAR_TOLERANCE = 8.0
#: The wider tolerance, where small CPU models first register.
NEAR_TOLERANCE_WIDE = 16.0


def image_validity(samples, renders, *, threshold: float | None = None,
                   index: RenderIndex | None = None, tolerance: float = NEAR_TOLERANCE) -> dict:
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
    index : RenderIndex, optional
        Built from ``renders`` (and ``threshold``) beforehand, to share it between calls.
    tolerance : float, default 8
        RMS distance (0..255 scale) of ``near_render_rate``.

    Returns
    -------
    dict
        ``valid_rate``: share of valid samples;
        ``n_valid_combinations``: distinct renders that are the nearest render of
        some valid sample (distinct images, not fashion cells);
        ``mean_distance``: mean RMS distance to the nearest render, all samples;
        ``threshold_min``, ``threshold_median``: of the thresholds in use;
        ``near_render_rate``, ``near_render_rate_16``, ``median_render_distance``:
        as :func:`near_render_scores`, from the same distances.
    """
    ok, idx, rms, index = _nearest_valid(samples, renders, threshold, index)
    thresholds = index.thresholds
    return {
        "valid_rate": float(ok.mean()),
        "n_valid_combinations": int(np.unique(idx[ok]).size),
        "mean_distance": float(rms.mean()),
        "threshold_min": float(thresholds.min()),
        "threshold_median": float(np.median(thresholds)),
        **near_render_scores(rms, tolerance=tolerance),
    }


def near_render_scores(distances, *, tolerance: float = NEAR_TOLERANCE) -> dict[str, float]:
    """Whether the eye would take the samples for renders, from their nearest-render distances.

    One tolerance for every render, in grey levels RMS, where strict validity
    gives each render its own (about 1 level for most avatars). A sample ``x``
    is near when ``d(x, r) <= tolerance`` for its nearest render ``r``. The
    distances are the ones :meth:`RenderIndex.nearest` returns for the
    samples as given: a continuous model's float samples are neither rounded
    nor clipped (as for ``valid_rate``).

    Parameters
    ----------
    distances : array-like of shape (n,)
        RMS distance (0..255 scale) of each sample to its nearest render.
    tolerance : float, default 8
        A render plus Gaussian noise of this sigma is about this far from it.

    Returns
    -------
    dict
        ``near_render_rate``: share of samples within ``tolerance``;
        ``near_render_rate_16``: share within 16 levels;
        ``median_render_distance``: median distance, grey levels.

    Examples
    --------
    >>> near_render_scores([0.0, 3.0, 12.0, 40.0])
    {'near_render_rate': 0.5, 'near_render_rate_16': 0.75, 'median_render_distance': 7.5}
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError(f"expected distances of shape (n,) with n >= 1, got {d.shape}")
    return {"near_render_rate": float(np.mean(d <= tolerance)),
            "near_render_rate_16": float(np.mean(d <= NEAR_TOLERANCE_WIDE)),
            "median_render_distance": float(np.median(d))}


class RenderIndex:
    """The distinct valid renders, their thresholds and a nearest-neighbour index over them:
    built once per set of renders (a truth keeps one) and shared by every score and sample set.

    Parameters
    ----------
    renders : array-like (m, h, w), at least two distinct images
    threshold : float, optional
        One RMS distance for every render instead of the per-render default
        (half the distance to the nearest other render).
    """

    def __init__(self, renders, threshold: float | None = None):
        renders = np.asarray(renders)
        if renders.ndim != 3:
            raise ValueError(f"expected renders (m, h, w), got {renders.shape}")
        self.shape = renders.shape[1:]
        self.n_pixels = renders.shape[1] * renders.shape[2]
        flat = renders.reshape(len(renders), -1)
        first = {row.tobytes(): i for i, row in reversed(list(enumerate(flat)))}  # distinct, first seen
        self.valid = flat[sorted(first.values())].astype(np.float64)  # (m', hw)
        if len(self.valid) < 2:
            raise ValueError("image_validity needs at least two distinct renders")
        self._row_of = {(row + 0.0).tobytes(): i for i, row in enumerate(self.valid)}
        # Brute force on integer-valued images: squared distances are computed exactly.
        self._nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(self.valid)
        if threshold is None:
            d_pairs, _ = self._nn.kneighbors(n_neighbors=1)  # nearest other render, (m', 1)
            self.thresholds = d_pairs[:, 0] / np.sqrt(self.n_pixels) / 2.0
        else:
            self.thresholds = np.full(len(self.valid), float(threshold))

    def nearest(self, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per sample: valid or not, index of its nearest distinct render, RMS distance."""
        samples = np.asarray(samples)
        if samples.ndim != 3 or samples.shape[1:] != self.shape:
            raise ValueError(f"expected samples (n, h, w) and renders (m, h, w) of the same image "
                             f"size, got {samples.shape} and renders of {self.shape}")
        if len(samples) == 0:
            raise ValueError("image_validity needs at least one sample")
        X = samples.reshape(len(samples), -1).astype(np.float64)
        dist, idx = self._nn.kneighbors(X, n_neighbors=1)  # (n, 1)
        rms = dist[:, 0] / np.sqrt(self.n_pixels)
        return rms <= self.thresholds[idx[:, 0]], idx[:, 0], rms

    def seen_in(self, train) -> np.ndarray:
        """Per distinct render: is it one of the ``train`` images? (bool, (m',))"""
        seen = np.zeros(len(self.valid), dtype=bool)
        train = np.asarray(train)
        for row in train.reshape(len(train), -1).astype(np.float64) + 0.0:  # + 0.0: no -0.0
            i = self._row_of.get(row.tobytes())
            if i is not None:
                seen[i] = True
        return seen


def _nearest_valid(samples, renders, threshold=None, index: RenderIndex | None = None):
    """Per sample: valid or not, index of its nearest distinct render, RMS distance;
    and the index of the distinct renders."""
    index = index if index is not None else RenderIndex(renders, threshold)
    return (*index.nearest(samples), index)


def valid_novel_rate(samples, renders, train, *, index: RenderIndex | None = None) -> float:
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
    ok, idx, _, index = _nearest_valid(samples, renders, index=index)
    seen = index.seen_in(train)
    return float(np.mean(ok & ~seen[idx]))
