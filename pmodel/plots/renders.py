"""Samples against the valid renders: what a distance in grey levels looks like.

Both pictures show ``d(x, r) = sqrt(mean_pixels (x - r)^2)``, the RMS pixel
difference (0..255 scale) from an image to its nearest valid render, as
``RenderIndex.nearest`` computes it for ``valid_rate`` and ``near_render_rate``:
on the images as given (a continuous model's float samples are drawn rounded
and clipped, but their distance is the float one the scores use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmodel.plots._common import _new_figure, _prepare, _save
from pmodel.plots.grids import image_pairs


def samples_beside_renders(samples, index, path, *, n_cols: int = 10, scale: int = 3,
                           title: str | None = None, caption: str | None = None) -> Path:
    """Each sample above its nearest valid render, the pair labelled with their distance.

    Parameters
    ----------
    samples : array-like of shape (n, h, w)
        Sampled images, 0..255; the first 100 are drawn.
    index : RenderIndex
        The valid renders (``truth.index``): ``nearest`` gives each sample's render
        and distance.
    path : str or Path
    n_cols, scale, title, caption
        As in :func:`pmodel.plots.image_grid`.

    Returns
    -------
    Path

    Examples
    --------
    >>> samples_beside_renders(samples, truth.index, "samples.png")  # doctest: +SKIP
    """
    samples = np.asarray(samples)[:100]
    _, idx, rms = index.nearest(samples)
    nearest = index.valid[idx].reshape(len(samples), *index.shape)  # (n, h, w) float rows
    return image_pairs(samples, nearest, [f"d={d:.1f}" for d in rms], path, n_cols=n_cols,
                       scale=scale, title=title, caption=caption)


def render_tolerance(render, sample, index, path, *, rng: np.random.Generator,
                     sigmas=(2, 4, 8), tolerance: float = 8.0,
                     sample_name: str = "naive Bayes sample", title: str | None = None) -> Path:
    """A render, the same render under Gaussian noise, and a model's sample, each titled
    with its RMS distance to its nearest render: what a tolerance in grey levels means.

    The noisy renders are ``clip(rint(render + sigma * z), 0, 255)`` with ``z``
    standard normal per pixel, so their distance is about ``sigma`` (a little
    less where clipping at 0 or 255 takes some noise off). Each panel also says
    whether the image counts at ``tolerance`` (``near_render_rate``) and under
    its nearest render's strict threshold (``valid_rate``).

    Parameters
    ----------
    render : array-like of shape (h, w)
        A valid render, 0..255.
    sample : array-like of shape (h, w)
        A model's sample (e.g. naive Bayes'), 0..255.
    index : RenderIndex
        The valid renders and their strict thresholds.
    path : str or Path
    rng : numpy.random.Generator
        Draws the noise.
    sigmas : sequence of float, default (2, 4, 8)
    tolerance : float, default 8
    sample_name : str
        The sample's panel title.
    title : str, optional
        Above the panels; a default explains the tolerance.

    Returns
    -------
    Path
    """
    path = _prepare(path)
    render = np.asarray(render, dtype=np.float64)
    noisy = [np.clip(np.rint(render + s * rng.normal(size=render.shape)), 0, 255) for s in sigmas]
    images = np.stack([render, *noisy, np.asarray(sample, dtype=np.float64)])  # (k, h, w)
    ok, _, rms = index.nearest(images)
    names = ["a render", *(f"+ noise, sigma {s:g}" for s in sigmas), sample_name]
    fig = _new_figure(2.0 * len(images), 2.9)
    for k, (image, name) in enumerate(zip(images, names)):
        ax = fig.add_subplot(1, len(images), k + 1)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}\nd = {rms[k]:.1f} levels", fontsize=10)
        ax.set_xlabel(f"within {tolerance:g}: {'yes' if rms[k] <= tolerance else 'no'}\n"
                      f"strictly valid: {'yes' if ok[k] else 'no'}", fontsize=9)
    fig.suptitle(title or f"d: RMS distance to the nearest valid render, in grey levels (0..255); "
                 f"near_render_rate counts d <= {tolerance:g}", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.74, bottom=0.2, wspace=0.15)
    return _save(fig, path)
