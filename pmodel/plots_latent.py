"""Pictures of a latent space: where the examples land, and what each direction draws.

    latent_space_plot   the codes in 2-D (the first two dimensions when there are two,
                        else the top two principal components of the codes), one panel
                        per known factor coloured by it, beside the images themselves
                        drawn at their positions: the chapter's figure 4.2, from the model
    traversal_grid      for families that decode: each latent dimension varied from
                        -span to +span standard deviations, the others held at 0

Each function writes one PNG to the path it is given and returns the path. As
``pmodel.plots``: ``matplotlib.figure.Figure`` with an explicit Agg canvas, no
pyplot state. The 2-D coordinates come from :func:`latent_2d`, a pure function
(tested apart from the drawing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["latent_2d", "latent_space_plot", "traversal_grid", "pick_thumbnails", "latent_pictures"]

DPI = 100


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def latent_2d(codes) -> tuple[np.ndarray, str]:
    """Codes (n, d) as 2-D points (n, 2), and how they were made (for the axis labels).

    d = 1: the code against 0; d = 2: the code itself; d > 2: the projection on
    the codes' top two principal directions (centred).
    """
    Z = np.asarray(codes, dtype=np.float64)
    if Z.ndim != 2 or len(Z) == 0:
        raise ValueError(f"expected codes of shape (n, d), got {Z.shape}")
    if Z.shape[1] == 1:
        return np.column_stack([Z[:, 0], np.zeros(len(Z))]), "z"
    if Z.shape[1] == 2:
        return Z.copy(), "z"
    C = Z - Z.mean(axis=0)
    _, _, vt = np.linalg.svd(C, full_matrices=False)
    P = C @ vt[:2].T
    # a deterministic sign: the largest-magnitude coefficient of each direction positive
    signs = np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    return P * signs, "PC of z"


def pick_thumbnails(points: np.ndarray, n_cells: int = 10) -> np.ndarray:
    """Indices of the examples to draw as images: in each cell of an n_cells x n_cells grid
    over the points' range, the one nearest the cell's centre (empty cells skipped)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    cell = np.minimum(((points - lo) / span * n_cells).astype(int), n_cells - 1)
    centre = lo + (cell + 0.5) / n_cells * span
    dist = (((points - centre) / span) ** 2).sum(axis=1)
    best: dict[tuple[int, int], int] = {}
    for i, (c, d) in enumerate(zip(map(tuple, cell), dist)):
        if c not in best or d < dist[best[c]]:
            best[c] = i
    return np.array(sorted(best.values()), dtype=np.int64)


def latent_space_plot(codes, factors, factor_names, path, *, images=None, categorical=None,
                      title: str | None = None, max_points: int = 3000) -> Path:
    """The latent space in 2-D coloured by each factor, and (for images) the examples at their positions.

    Parameters
    ----------
    codes : (n, d) the model's ``encode`` of some examples
    factors : (n, n_factors) their known factors
    factor_names : names of the factors (panel titles)
    images : (n, h, w) uint8, optional; the examples, drawn at their positions in a last panel
    categorical : per factor, whether it is a category (a qualitative colour map)
    """
    P, how = latent_2d(codes)
    F = np.asarray(factors, dtype=np.float64).reshape(len(P), -1)
    names = list(factor_names)
    cat = list(categorical or [False] * len(names))
    show = np.arange(len(P))[:max_points]
    n_panels = len(names) + (images is not None)
    fig = _figure(4.2 * n_panels, 4.4)
    for j, name in enumerate(names):
        ax = fig.add_subplot(1, n_panels, j + 1)
        sc = ax.scatter(P[show, 0], P[show, 1], c=F[show, j], s=6, cmap="tab10" if cat[j] else "viridis",
                        linewidths=0)
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(f"coloured by {name}", fontsize=10)
        ax.set_xlabel(f"{how} 1", fontsize=8)
        ax.set_ylabel(f"{how} 2", fontsize=8)
        ax.tick_params(labelsize=7)
    if images is not None:
        ax = fig.add_subplot(1, n_panels, n_panels)
        imgs = np.asarray(images)
        lo, hi = P.min(axis=0), P.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        n_cells = 10
        half = span / n_cells / 2 * 0.95
        for i in pick_thumbnails(P, n_cells):
            x, y = P[i]
            ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest",
                      extent=(x - half[0], x + half[0], y - half[1], y + half[1]))
        ax.set_xlim(lo[0] - span[0] * 0.06, hi[0] + span[0] * 0.06)
        ax.set_ylim(lo[1] - span[1] * 0.06, hi[1] + span[1] * 0.06)
        ax.set_aspect("auto")
        ax.set_title("the examples at their positions", fontsize=10)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def traversal_grid(decode, latent_dim: int, path, *, n_steps: int = 9, span: float = 2.5,
                   max_dims: int = 8, title: str | None = None) -> Path:
    """Rows: latent dimensions; columns: that dimension from -span to +span, the others 0.

    ``decode(Z) -> (m, h, w)`` continuous images (clipped to 0..255 for display).
    """
    dims = min(latent_dim, max_dims)
    steps = np.linspace(-span, span, n_steps)
    rows = []
    for i in range(dims):
        Z = np.zeros((n_steps, latent_dim))
        Z[:, i] = steps
        rows.append(np.clip(np.asarray(decode(Z)), 0, 255))
    fig = _figure(0.9 * n_steps + 0.8, 0.9 * dims + 0.8)
    for i, row in enumerate(rows):
        for s, img in enumerate(row):
            ax = fig.add_subplot(dims, n_steps, i * n_steps + s + 1)
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(f"z{i + 1}", fontsize=8)
            if i == dims - 1:
                ax.set_xlabel(f"{steps[s]:+.1f}", fontsize=7)
    fig.suptitle(title or f"latent traversal: z_i from {-span} to {span} sd, others 0", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def latent_pictures(model, problem, out: Path, label: str = "") -> list[Path]:
    """The latent pictures of a fitted model on a problem (written into ``out``): the latent
    space coloured by the held-out examples' factors (when the data knows them), and a
    traversal grid (when the family decodes)."""
    files: list[Path] = []
    if not getattr(model, "has_encoder", False):
        return files
    X = problem.heldout[:3000]
    if problem.factors:
        images = X if problem.kind == "image" else None
        files.append(latent_space_plot(model.encode(X), problem.factors["heldout"][:len(X)],
                                       problem.factor_names, out / "latent-space.png", images=images,
                                       categorical=problem.factor_categorical,
                                       title=f"{problem.name}: {label} latent space (held-out)"))
    if hasattr(model, "decode") and problem.kind == "image":
        files.append(traversal_grid(model.decode, model.encode(X[:1]).shape[1], out / "latent-traversal.png",
                                    title=f"{label}: each latent dimension from -2.5 to +2.5 sd"))
    return files
