"""The pictures only trained (deep) families have.

    training_curves   every curve of ``history_`` against the epoch (loss, val_loss;
                      a GAN's loss_d and loss_g), one panel per unit
    denoising_strip   a diffusion model's chain x_T .. x_0: images (rows = samples,
                      columns = steps) or points (one small map per step)

Each function writes one PNG to the path it is given and returns the path;
figures use an explicit Agg canvas (no pyplot state), as ``pmodel.plots``.
The samples themselves (avatar grid, land map) are ``pmodel.plots``'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["training_curves", "denoising_strip"]


def _figure(w, h) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def training_curves(history: dict, path, *, title: str | None = None) -> Path:
    """Each of ``history``'s per-epoch lists against the epoch; the GAN's two players
    share a panel, loss and val_loss share one. Raises ValueError when history is empty."""
    curves = {k: np.asarray(v, dtype=np.float64) for k, v in (history or {}).items() if len(v)}
    if not curves:
        raise ValueError("training_curves needs a non-empty history (a family trained by a loop)")
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for k, v in curves.items():
        ax.plot(np.arange(1, len(v) + 1), v, marker="o" if len(v) < 30 else None, ms=3, label=k)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    ax.set_ylabel("loss (per example, or bits/dim on images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def denoising_strip(chain, path, *, kind: str, levels: int = 256, region=None,
                    title: str | None = None) -> Path:
    """The chain of a diffusion model's sampling, from noise (left) to data (right).

    Parameters
    ----------
    chain : list of (t, array) pairs, from ``model.denoising_steps``: images (n, h, w)
        in level units, or points (n, 2) lon/lat.
    kind : "image" or "points".
    levels : grey levels of the images (values are clipped to 0 .. levels - 1 for display).
    region : (lon_min, lon_max, lat_min, lat_max) for points: the domain's frame.
    """
    if not chain:
        raise ValueError("denoising_strip needs at least one step")
    cols = len(chain)
    if kind == "image":
        n = min(len(chain[0][1]), 6)
        fig = _figure(1.1 * cols, 1.1 * n + 0.4)
        for j, (t, x) in enumerate(chain):
            for i in range(n):
                ax = fig.add_subplot(n, cols, i * cols + j + 1)
                ax.imshow(np.clip(x[i], 0, levels - 1), cmap="gray", vmin=0, vmax=levels - 1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"t={t}", fontsize=8)
    elif kind == "points":
        fig = _figure(2.0 * cols, 1.6)
        for j, (t, x) in enumerate(chain):
            ax = fig.add_subplot(1, cols, j + 1)
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
            if region is not None:
                ax.set_xlim(region[0], region[1])
                ax.set_ylim(region[2], region[3])
            ax.set_title(f"t={t}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    else:
        raise ValueError(f"kind must be 'image' or 'points', got {kind!r}")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
