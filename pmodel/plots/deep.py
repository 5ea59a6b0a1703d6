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

__all__ = ["training_curves", "curves_figure", "denoising_strip"]


def _figure(w, h) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


#: What a family's training curves measure, by (family, data kind): the y axis's label.
#: A family missing here gets "loss" (its own units, said nowhere else).
CURVE_UNITS: dict[tuple[str, str], str] = {
    ("autoregressive", "image"): "bits/dim (negative log-likelihood)",
    ("autoregressive", "points"): "nats per point, standardised lon/lat (-log-likelihood)",
    ("autoregressive", "categorical"): "nats per row (negative log-likelihood)",
    ("flow", "image"): "bits/dim (dequantised -log-likelihood)",
    ("flow", "points"): "nats per point, standardised lon/lat (-log-likelihood)",
    ("vae", "image"): "bits/dim (negative ELBO)",
    ("vae", "points"): "nats per point, standardised lon/lat (-ELBO)",
    ("vae", "categorical"): "nats per row (negative ELBO)",
    ("diffusion", "image"): "noise-prediction error\n(squared, mean per pixel)",
    # early stopping on the bound itself: val_loss is the negative bound, loss the simple loss
    ("diffusion", "points"): "loss: noise-prediction error (squared)\nval_loss: -bound, nats per point",
    ("gan", "image"): "nats (each player's binary cross-entropy)",
    ("gan", "points"): "nats (each player's binary cross-entropy)",
    ("latent_class", "categorical"): "nats per row (log-likelihood;\nobjective: penalised by the prior)",
    ("latent_class", "image"): "nats per image (log-likelihood;\nobjective: penalised by the prior)",
    ("factor_analysis", "image"): "log-likelihood\n(scikit-learn's, dequantised images)",
}

#: The x axis: an EM family's iterations, else the training loop's epochs.
CURVE_STEPS = {"latent_class": "EM iteration", "factor_analysis": "iteration"}


def training_curves(history: dict, path, *, title: str | None = None, family: str | None = None,
                    kind: str | None = None) -> Path:
    """Each of ``history``'s per-epoch lists against the epoch; the GAN's two players
    share a panel, loss and val_loss share one. The y axis says what ``family`` on ``kind``
    data minimises (:data:`CURVE_UNITS`); a curve of one epoch is a marked point, labelled so.
    Raises ValueError when history is empty."""
    return _save(curves_figure(history, title=title, family=family, kind=kind), path)


def curves_figure(history: dict, *, title: str | None = None, family: str | None = None,
                  kind: str | None = None) -> Figure:
    """The figure :func:`training_curves` saves."""
    curves = {k: np.asarray(v, dtype=np.float64) for k, v in (history or {}).items() if len(v)}
    if not curves:
        raise ValueError("training_curves needs a non-empty history (a family trained by a loop)")
    step = CURVE_STEPS.get(family, "epoch")
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for k, v in curves.items():
        few = len(v) < 30
        ax.plot(np.arange(1, len(v) + 1), v, marker="o" if few else None,
                ms=7 if len(v) == 1 else 3, label=k + (f" (1 {step} only)" if len(v) == 1 else ""))
    ax.set_xlabel(step)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    if max(len(v) for v in curves.values()) == 1:  # a lone point: say why there is no curve
        ax.text(0.5, 0.92, f"1 {step}: a point, not a curve", transform=ax.transAxes,
                ha="center", va="top", fontsize=9, color="#555555")
        ax.set_xlim(0.5, 1.5)
        ax.set_xticks([1])
    ax.set_ylabel(CURVE_UNITS.get((family, kind), "loss"), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


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
