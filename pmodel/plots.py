"""plots: the pictures a run shows in the MLflow UI.

Every function writes one file (PNG, or CSV / markdown where stated) to the
path it is given and returns that path:

    image_grid            sampled images, upscaled, in a grid (Pillow only)
    land_map              the chapter's map: samples on land (green) and at sea (red),
                          training points, the orange box and its points A, B, C
    parameter_table_plot  naive Bayes: one bar chart of P(value) per feature
    rows_table            a few rows as markdown, CSV or a PNG table
    comparison_plot       every family on every dataset, one panel per (dataset, metric)

The numbers a picture prints come from small public helpers
(:func:`split_land_sea`, :func:`land_sea_counts`, :func:`chapter_points`,
:func:`comparison_panels`) so they can be tested apart from the drawing. ``land_map`` also stores its
counts in the PNG's text chunks (key ``pmodel-counts``, JSON).

Drawing uses ``matplotlib.figure.Figure`` with an explicit Agg canvas, never
pyplot's global state, so plots can be made from several threads at once and
importing this module changes no backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw, ImageFont

from pmodel.datasets import land
from pmodel.datasets.land import LandData

__all__ = [
    "image_grid", "land_map", "split_land_sea", "land_sea_counts", "chapter_points",
    "parameter_table_plot", "rows_table", "comparison_panels", "comparison_plot",
]

DPI = 100
GRID_GAP = 2             # px of white between images
GRID_MAX_IMAGES = 100
GRID_TITLE_HEIGHT = 24   # px of title strip above the grid when a title is given
TABLE_PNG_MAX_ROWS = 40  # a PNG table longer than this is cut (CSV / markdown keep all rows)

LAND_COLOR = "#1a9641"
SEA_COLOR = "#d7191c"
BOX_COLOR = "#ff7f00"


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)  # Agg explicitly, per figure: no global backend
    return fig


def _prepare(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _hspace(total_in: float, n: int, gap_in: float) -> float:
    """GridSpec ``hspace`` (a fraction of the mean panel height) for gaps of ``gap_in`` inches."""
    if n < 2:
        return 0.0
    mean_panel = (total_in - (n - 1) * gap_in) / n
    return gap_in / mean_panel


def _save(fig: Figure, path: Path, metadata: dict | None = None) -> Path:
    fig.savefig(path, dpi=DPI, metadata=metadata)
    return path


# ---------------------------------------------------------------------------
# Image grid
# ---------------------------------------------------------------------------

def image_grid(images, path, *, n_cols: int = 10, scale: int = 3, title: str | None = None,
               caption: str | None = None) -> Path:
    """Write up to 100 grayscale images as one PNG grid.

    Each image is upscaled ``scale`` times by pixel repetition (nearest
    neighbour, no smoothing) and images are separated by 2 px of white. Image
    ``k`` (row-major, ``k < n_cols`` on the first row) has its top-left pixel at
    ``(top + r * (h * scale + 2), c * (w * scale + 2))`` with
    ``r, c = divmod(k, n_cols)`` and ``top = 24`` with a title, 0 without.

    Parameters
    ----------
    images : array-like of shape (n, h, w)
        Values 0..255; uint8 is drawn as is, other dtypes are rounded and
        clipped to 0..255. Only the first 100 are drawn.
    path : str or Path
        Where to write the PNG.
    n_cols : int, default 10
    scale : int, default 3
    title : str, optional
        Drawn in a strip above the grid.
    caption : str, optional
        One line drawn in a strip below the grid (wrapped to the grid's width).

    Returns
    -------
    Path

    Examples
    --------
    >>> image_grid(np.zeros((4, 8, 8), np.uint8), "grid.png", n_cols=2)  # doctest: +SKIP
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"image_grid needs images of shape (n, h, w) with n >= 1, got {images.shape}")
    if not (isinstance(n_cols, (int, np.integer)) and n_cols >= 1
            and isinstance(scale, (int, np.integer)) and scale >= 1):
        raise ValueError(f"n_cols and scale must be positive integers, got n_cols={n_cols!r}, "
                         f"scale={scale!r}")
    path = _prepare(path)
    images = images[:GRID_MAX_IMAGES]
    if images.dtype != np.uint8:
        images = np.clip(np.rint(np.nan_to_num(images.astype(np.float64), nan=0.0)), 0, 255)
        images = images.astype(np.uint8)
    n, h, w = images.shape
    cols = min(n_cols, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h * scale, w * scale
    top = GRID_TITLE_HEIGHT if title else 0
    canvas = np.full((top + rows * cell_h + (rows - 1) * GRID_GAP,
                      cols * cell_w + (cols - 1) * GRID_GAP), 255, dtype=np.uint8)
    up = images.repeat(scale, axis=1).repeat(scale, axis=2)  # (n, h*scale, w*scale)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = top + r * (cell_h + GRID_GAP), c * (cell_w + GRID_GAP)
        canvas[y:y + cell_h, x:x + cell_w] = up[k]
    img = Image.fromarray(canvas, mode="L")
    if title:
        # a narrow grid would cut a long title: widen the strip's canvas, never the images
        font = _title_font()
        text_w = int(ImageDraw.Draw(img).textlength(title, font=font)) + 8
        if text_w > img.width:
            wide = Image.new("L", (text_w, img.height), 255)
            wide.paste(img, (0, 0))
            img = wide
        ImageDraw.Draw(img).text((4, 4), title, fill=0, font=font)
    if caption:
        img = _with_caption(img, caption)
    img.save(path, optimize=True)
    return path


def _with_caption(img: Image.Image, caption: str) -> Image.Image:
    """``img`` with ``caption`` below it, wrapped to the image's width."""
    font = _title_font()
    draw = ImageDraw.Draw(img)
    lines, line = [], ""
    for word in caption.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > img.width - 8:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    out = Image.new("L", (img.width, img.height + 4 + GRID_TITLE_HEIGHT * len(lines)), 255)
    out.paste(img, (0, 0))
    for k, text in enumerate(lines):
        ImageDraw.Draw(out).text((4, img.height + 4 + k * GRID_TITLE_HEIGHT), text, fill=0, font=font)
    return out


def _title_font():
    try:
        return ImageFont.load_default(size=14)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


# ---------------------------------------------------------------------------
# The land map
# ---------------------------------------------------------------------------

def split_land_sea(truth: LandData, samples) -> np.ndarray:
    """Which samples are on land inside the region: ``truth.log_prob(samples) > -inf``.

    Parameters
    ----------
    truth : LandData
    samples : array-like of shape (n, 2)
        Points (lon, lat). NaN or off-region points count as not on land.

    Returns
    -------
    on_land : ndarray of shape (n,), bool
    """
    X = _points(samples)
    return truth.log_prob(X) > -np.inf


def land_sea_counts(truth: LandData, samples) -> dict:
    """The numbers :func:`land_map` prints.

    Returns
    -------
    dict
        ``n``, ``on_land``, ``at_sea`` (= n - on_land: at sea, or outside the
        region), ``outside_region`` (off the map, counted in ``at_sea``),
        ``on_land_share``, ``at_sea_share`` (NaN when n = 0).
    """
    X = _points(samples)
    on = split_land_sea(truth, X)
    n, k = len(X), int(on.sum())
    outside = int(np.sum(~truth.region.contains(X[:, 0], X[:, 1]))) if n else 0
    return {
        "n": n, "on_land": k, "at_sea": n - k, "outside_region": outside,
        "on_land_share": k / n if n else float("nan"),
        "at_sea_share": (n - k) / n if n else float("nan"),
    }


def _points(samples) -> np.ndarray:
    X = np.asarray(samples, dtype=np.float64)
    if X.size == 0:
        return X.reshape(0, 2)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"expected points of shape (n, 2) = (lon, lat), got {X.shape}")
    return X


def _map_cell_deg(region: land.Region) -> float:
    """Background grid cell: about 1200 cells along the region's longer side,
    a whole number of mask cells (0.3 degree for the world)."""
    span = max(region.lon_max - region.lon_min, region.lat_max - region.lat_min)
    k = max(1, round(span / 1200 * land.CELLS_PER_DEGREE))
    return k / land.CELLS_PER_DEGREE


def _land_fraction_grid(truth: LandData, cell_deg: float):
    """(lon_edges, lat_edges, fraction (n_lat, n_lon) of each cell that is land)."""
    lon_edges, lat_edges, area = truth.land_area_grid(cell_deg)
    cell_area = np.outer(-np.diff(lat_edges), np.diff(lon_edges))  # last cells may be cut
    return lon_edges, lat_edges, np.clip(area / cell_area, 0.0, 1.0)


def _check_box(box) -> tuple[float, float, float, float]:
    vals = tuple(float(v) for v in box)
    if len(vals) != 4 or not (vals[0] < vals[1] and vals[2] < vals[3]):
        raise ValueError(f"box must be (lon_min, lon_max, lat_min, lat_max) with min < max, "
                         f"got {tuple(box)}")
    return vals


def chapter_points(truth: LandData, box, rng: np.random.Generator) -> dict:
    """The chapter's three points for a box, found on the real mask.

    - ``A``: in the box (strictly inside, and in the region), at sea.
    - ``B``: on land in the region, outside the box.
    - ``C``: on land, in the box.

    Points are preferably centres of background-grid cells (the map's
    ~0.3 degree cells) that are wholly sea or wholly land, away from coasts,
    so the picture shows them unambiguously; for a small box or a thin strip
    of sea or land, the full-resolution mask is searched. A point that does
    not exist (a box with no sea, no land, or no land outside it) is ``None``.

    Parameters
    ----------
    truth : LandData
    box : tuple of 4 floats
        ``(lon_min, lon_max, lat_min, lat_max)``, degrees.
    rng : numpy Generator
        Picks among the qualifying cells.

    Returns
    -------
    dict
        ``{"A": (lon, lat) or None, "B": ..., "C": ...}``
    """
    box = _check_box(box)
    reg = truth.region
    lon_edges, lat_edges, frac = _land_fraction_grid(truth, _map_cell_deg(reg))
    # cell (i, j) spans lon [lon_edges[j], lon_edges[j+1]], lat [lat_edges[i+1], lat_edges[i]]
    lon0, lon1 = lon_edges[:-1][None, :], lon_edges[1:][None, :]
    lat1, lat0 = lat_edges[:-1][:, None], lat_edges[1:][:, None]
    cell_in_box = (lon0 >= box[0]) & (lon1 <= box[1]) & (lat0 >= box[2]) & (lat1 <= box[3])
    cell_out_box = (lon1 <= box[0]) | (lon0 >= box[1]) | (lat1 <= box[2]) | (lat0 >= box[3])
    all_sea, all_land = _eroded(frac == 0.0), _eroded(frac == 1.0)
    pure_sea, pure_land = frac == 0.0, frac == 1.0
    centres_lon = (lon_edges[:-1] + lon_edges[1:]) / 2
    centres_lat = (lat_edges[:-1] + lat_edges[1:]) / 2

    def from_grid(candidates: list[np.ndarray]):
        for cand in candidates:
            idx = np.flatnonzero(cand)
            if idx.size:
                i, j = np.unravel_index(rng.choice(idx), cand.shape)
                return float(centres_lon[j]), float(centres_lat[i])
        return None

    # clip the box to the region for the fine search (outside the region is neither)
    clipped = (max(box[0], reg.lon_min), min(box[1], reg.lon_max),
               max(box[2], reg.lat_min), min(box[3], reg.lat_max))
    box_rects = [clipped] if clipped[0] < clipped[1] and clipped[2] < clipped[3] else []
    outside_rects = _rects_outside(reg, clipped) if box_rects else \
        [(reg.lon_min, reg.lon_max, reg.lat_min, reg.lat_max)]

    a = from_grid([all_sea & cell_in_box, pure_sea & cell_in_box]) \
        or _search_mask(box_rects, want_land=False, rng=rng)
    c = from_grid([all_land & cell_in_box, pure_land & cell_in_box]) \
        or _search_mask(box_rects, want_land=True, rng=rng)
    b = from_grid([all_land & cell_out_box, pure_land & cell_out_box]) \
        or _search_mask(outside_rects, want_land=True, rng=rng)
    return {"A": a, "B": b, "C": c}


def _eroded(mask: np.ndarray) -> np.ndarray:
    """Cells whose 3 x 3 neighbourhood is all in ``mask`` (edges count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    out = np.ones_like(mask)
    h, w = mask.shape
    for di in range(3):
        for dj in range(3):
            out &= padded[di:di + h, dj:dj + w]
    return out


def _rects_outside(reg: land.Region, inner) -> list[tuple]:
    """The region minus the rectangle ``inner``, as up to four rectangles."""
    lon_min, lon_max, lat_min, lat_max = inner
    rects = [
        (reg.lon_min, reg.lon_max, lat_max, reg.lat_max),   # above
        (reg.lon_min, reg.lon_max, reg.lat_min, lat_min),   # below
        (reg.lon_min, lon_min, lat_min, lat_max),           # left
        (lon_max, reg.lon_max, lat_min, lat_max),           # right
    ]
    return [r for r in rects if r[0] < r[1] and r[2] < r[3]]


_SCAN_ROWS = 240  # mask rows per chunk: 240 x 43200 bytes = 10 MB at most


def _search_mask(rects, *, want_land: bool, rng: np.random.Generator):
    """A point of the wanted kind strictly inside one of ``rects``, or None.

    Exact: scans the full-resolution mask in row chunks, starting at a random
    chunk. The point is the centre of the part of a mask cell that lies in
    the rectangle, so a rectangle thinner than a cell, or with edges off the
    1/120 grid, is searched too.
    """
    ocean = land.ocean_mask()
    cpd = land.CELLS_PER_DEGREE
    for rect in rng.permutation(len(rects)) if rects else []:
        lon_min, lon_max, lat_min, lat_max = rects[rect]
        # every cell that overlaps the rectangle
        r0 = max(0, int(np.floor((90.0 - lat_max) * cpd)))
        r1 = min(land.N_ROWS, int(np.ceil((90.0 - lat_min) * cpd)))
        c0 = max(0, int(np.floor((lon_min + 180.0) * cpd)))
        c1 = min(land.N_COLS, int(np.ceil((lon_max + 180.0) * cpd)))
        if r1 <= r0 or c1 <= c0:
            continue
        starts = np.arange(r0, r1, _SCAN_ROWS)
        for s in np.roll(starts, -int(rng.integers(len(starts)))):
            chunk = ocean[s:min(s + _SCAN_ROWS, r1), c0:c1]
            ii, jj = np.nonzero(~chunk if want_land else chunk)
            if ii.size == 0:
                continue
            i, j = s + ii, c0 + jj
            # the cell's overlap with the rectangle, and its centre
            west = np.maximum(-180.0 + j / cpd, lon_min)
            east = np.minimum(-180.0 + (j + 1) / cpd, lon_max)
            south = np.maximum(90.0 - (i + 1) / cpd, lat_min)
            north = np.minimum(90.0 - i / cpd, lat_max)
            lon, lat = (west + east) / 2, (south + north) / 2
            back_i, back_j = land.cell_index(lon, lat)  # guard against rounding across an edge
            ok = (east > west) & (north > south) & (back_i == i) & (back_j == j)
            ok &= (lon > lon_min) & (lon < lon_max) & (lat > lat_min) & (lat < lat_max)
            if ok.any():
                k = rng.choice(np.flatnonzero(ok))
                return float(lon[k]), float(lat[k])
    return None


_POINT_TEXT = {
    "A": ("A: in the box, at sea", "A: none (the box holds no sea)"),
    "B": ("B: on land, outside the box", "B: none (no land outside the box)"),
    "C": ("C: on land, in the box", "C: none (the box holds no land)"),
}


def land_map(truth: LandData, samples, path, *, train=None, box=None, title: str | None = None,
             rng: np.random.Generator | None = None) -> Path:
    """The chapter's map: samples on land and at sea over the region's land mask.

    Land is light grey (shaded by the share of each ~0.3 degree cell that is
    land), sea white; samples on land are green dots, samples at sea (or off
    the region) red dots, training points black crosses. With ``box``, the
    orange box and the chapter's points A (in the box, at sea), B (on land,
    outside the box) and C (on land, in the box), from :func:`chapter_points`;
    a point that does not exist is named in the legend instead.

    The legend's counts are :func:`land_sea_counts`; they are also written to
    the PNG's text chunk ``pmodel-counts`` (JSON).

    Parameters
    ----------
    truth : LandData
    samples : array-like of shape (n, 2)
        Sampled points (lon, lat).
    path : str or Path
    train : array-like of shape (m, 2), optional
    box : tuple ``(lon_min, lon_max, lat_min, lat_max)``, optional
    title : str, optional
        First title line; the second line always gives the counts.
    rng : numpy Generator, optional
        Picks A, B and C; a fixed seed (0) by default, so the same map is drawn twice alike.

    Returns
    -------
    Path
    """
    path = _prepare(path)
    X = _points(samples)
    counts = land_sea_counts(truth, X)
    on = split_land_sea(truth, X)
    reg = truth.region
    lon_edges, lat_edges, frac = _land_fraction_grid(truth, _map_cell_deg(reg))

    width, height = reg.lon_max - reg.lon_min, reg.lat_max - reg.lat_min
    ax_w = 10.0
    ax_h = float(np.clip(ax_w * height / width, 2.5, 8.0))
    fig_w, fig_h = ax_w + 1.2, ax_h + 2.4  # room for the title above, the legend below
    fig = _new_figure(fig_w, fig_h)
    ax = fig.add_axes((0.85 / fig_w, 1.6 / fig_h, ax_w / fig_w, ax_h / fig_h))
    land_cmap = LinearSegmentedColormap.from_list("land", ["#ffffff", "#c8c8c8"])
    ax.imshow(frac, cmap=land_cmap, vmin=0, vmax=1, interpolation="nearest", origin="upper",
              extent=(lon_edges[0], lon_edges[-1], lat_edges[-1], lat_edges[0]), zorder=0)

    n = counts["n"]
    marker = 3.0 if n > 2000 else 6.0 if n > 300 else 12.0
    handles = []
    ax.scatter(X[on, 0], X[on, 1], s=marker, c=LAND_COLOR, linewidths=0, zorder=2)
    handles.append(Line2D([], [], ls="", marker="o", ms=5, color=LAND_COLOR,
                          label=f"on land: {counts['on_land']} ({_pct(counts['on_land_share'])})"))
    ax.scatter(X[~on, 0], X[~on, 1], s=marker * 1.3, c=SEA_COLOR, linewidths=0, zorder=3)
    sea_label = f"at sea: {counts['at_sea']} ({_pct(counts['at_sea_share'])})"
    if counts["outside_region"]:
        sea_label += f", of which {counts['outside_region']} off the map"
    handles.append(Line2D([], [], ls="", marker="o", ms=5, color=SEA_COLOR, label=sea_label))
    if train is not None:
        T = _points(train)
        ax.scatter(T[:, 0], T[:, 1], s=22, marker="x", c="black", linewidths=0.9, zorder=4)
        handles.append(Line2D([], [], ls="", marker="x", ms=6, mew=1.2, color="black",
                              label=f"training points: {len(T)}"))

    points = None
    if box is not None:
        b = _check_box(box)
        ax.add_patch(Rectangle((b[0], b[2]), b[1] - b[0], b[3] - b[2], fill=False,
                               edgecolor=BOX_COLOR, linewidth=2.0, zorder=8))
        box_px = min((b[1] - b[0]) / width * ax_w, (b[3] - b[2]) / height * ax_h) * DPI
        if box_px < 12:  # too small to see at this scale: ring it
            ax.plot((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, marker="o", ms=22, mfc="none",
                    mec=BOX_COLOR, mew=2.0, zorder=8)
        handles.append(Line2D([], [], color=BOX_COLOR, lw=2,
                              label=f"box: lon {b[0]:.4g}..{b[1]:.4g}, lat {b[2]:.4g}..{b[3]:.4g}"
                              + (" (ringed: too small to see)" if box_px < 12 else "")))
        points = chapter_points(truth, b, rng if rng is not None else np.random.default_rng(0))
        for name in ("A", "B", "C"):
            p = points[name]
            found, missing = _POINT_TEXT[name]
            if p is None:
                handles.append(Line2D([], [], ls="", marker="", label=missing))
                continue
            # a small dot on the point and the letter beside it, so a small box stays visible
            ax.plot(*p, marker="o", ms=6, mfc="white", mec="black", mew=1.3, zorder=7)
            # near the top or right edge the letter goes below / left, never onto the title
            top = p[1] > reg.lat_max - 0.12 * height
            right = p[0] > reg.lon_max - 0.06 * width
            ax.annotate(name, p, xytext=(-9 if right else 9, -9 if top else 9),
                        textcoords="offset points", fontsize=11, fontweight="bold",
                        ha="right" if right else "left", va="top" if top else "bottom", zorder=9,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="black", lw=0.8))
            handles.append(Line2D([], [], ls="", marker=f"${name}$", ms=8, color="black",
                                  label=f"{found} ({p[0]:.2f}, {p[1]:.2f})"))

    ax.set_xlim(reg.lon_min, reg.lon_max)
    ax.set_ylim(reg.lat_min, reg.lat_max)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("longitude (degrees)")
    ax.set_ylabel("latitude (degrees)")
    head = title or "Samples on the map"
    ax.set_title(f"{head}\n{n} samples: {counts['on_land']} on land ({_pct(counts['on_land_share'])}), "
                 f"{counts['at_sea']} at sea ({_pct(counts['at_sea_share'])})", fontsize=11)
    fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.95 / fig_h))
    meta = dict(counts)
    if points is not None:
        meta["points"] = points
    return _save(fig, path, metadata={"Title": head, "pmodel-counts": json.dumps(meta)})


def _pct(share: float) -> str:
    return "n/a" if share != share else f"{100 * share:.1f}%"


# ---------------------------------------------------------------------------
# Naive Bayes parameter table
# ---------------------------------------------------------------------------

def parameter_table_plot(table: pd.DataFrame, path, *, title: str | None = None) -> Path:
    """One horizontal bar chart per feature: each value's probability.

    Parameters
    ----------
    table : DataFrame
        Columns ``feature, value, count, probability``, as from
        ``CategoricalNaiveBayes.parameter_table(schema)``; values of a feature
        are drawn top to bottom in table order.
    path : str or Path
    title : str, optional

    Returns
    -------
    Path
    """
    missing = {"feature", "value", "count", "probability"} - set(table.columns)
    if missing:
        raise ValueError(f"parameter table needs columns feature, value, count, probability; "
                         f"missing {sorted(missing)}")
    if len(table) == 0:
        raise ValueError("parameter table is empty")
    path = _prepare(path)
    features = list(dict.fromkeys(table["feature"]))
    sizes = [int((table["feature"] == f).sum()) for f in features]
    bar_in, gap_in, top_in, bottom_in = 0.26, 0.45, 0.75, 0.55
    panels_in = [bar_in * (s + 0.4) for s in sizes]
    height = sum(panels_in) + gap_in * (len(features) - 1) + top_in + bottom_in
    fig = _new_figure(7.5, height)
    gs = fig.add_gridspec(len(features), 1, height_ratios=panels_in,
                          hspace=_hspace(height - top_in - bottom_in, len(features), gap_in),
                          left=0.3, right=0.97, top=1 - top_in / height, bottom=bottom_in / height)
    axes = []
    for g, (feature, size) in enumerate(zip(features, sizes)):
        ax = fig.add_subplot(gs[g], sharex=axes[0] if axes else None)
        axes.append(ax)
        rows = table[table["feature"] == feature]
        p = rows["probability"].to_numpy(dtype=np.float64)
        counts = rows["count"].to_numpy()
        n_total = int(np.nansum(counts))
        y = np.arange(size)
        ax.barh(y, np.nan_to_num(p, nan=0.0), height=0.7, color="#4c78a8")
        ax.set_yticks(y, [str(v) for v in rows["value"]], fontsize=9)
        ax.set_ylim(size - 0.4, -0.6)
        for yi, pi, ci in zip(y, p, counts):
            label = "n/a" if pi != pi else f"{pi:.2f}"
            label += f"  ({int(ci)}/{n_total})"
            inside = pi == pi and pi > 0.72
            ax.text(pi - 0.01 if inside else (0 if pi != pi else pi) + 0.01, yi, label,
                    va="center", ha="right" if inside else "left", fontsize=8,
                    color="white" if inside else "black")
        ax.set_title(f"{feature}  (N = {n_total})", fontsize=10, loc="left", pad=3)
        ax.tick_params(axis="x", labelbottom=False)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
    axes[0].set_xlim(0, 1)
    axes[-1].tick_params(axis="x", labelbottom=True)
    axes[-1].set_xlabel("probability (count / N, with smoothing)", fontsize=9)
    fig.suptitle(title or "Naive Bayes parameters: P(value) per feature", fontsize=12,
                 y=1 - 0.15 / height, va="top")
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Rows as a table
# ---------------------------------------------------------------------------

def rows_table(df: pd.DataFrame, path, *, caption: str | None = None, highlight=None) -> Path:
    """Write rows as markdown (``.md``), CSV (``.csv``) or a PNG picture of a table (``.png``).

    CSV keeps every value exactly (``pd.read_csv`` gives the frame back);
    markdown and PNG show floats to 6 significant digits. The index is not
    written. A PNG shows at most 40 rows and says how many it left out.

    Parameters
    ----------
    df : DataFrame
    path : str or Path
        Its suffix picks the format.
    caption : str, optional
        PNG only: a line above the table (default: the row count).
    highlight : sequence of bool, optional
        PNG only: rows to shade (e.g. copies of training rows).

    Returns
    -------
    Path
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".md", ".csv", ".png"):
        raise ValueError(f"rows_table writes .md, .csv or .png, got {path.name!r}")
    path = _prepare(path)
    if suffix == ".csv":
        df.to_csv(path, index=False, lineterminator="\n")
        return path
    cells = [[_cell_text(v) for v in row] for row in df.itertuples(index=False)]
    header = [str(c) for c in df.columns]
    if suffix == ".md":
        def line(values):
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
        lines = [line(header), "|" + "|".join(" --- " for _ in header) + "|"]
        lines += [line(r) for r in cells]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    shown = cells[:TABLE_PNG_MAX_ROWS]
    widths = [max([len(h)] + [len(r[j]) for r in shown]) for j, h in enumerate(header)]
    total = max(sum(widths), 1)
    fig_w = min(max(0.085 * total + 0.6, 4.0), 24.0)
    row_in, top_in = 0.27, 0.35
    fig_h = row_in * (len(shown) + 1) + top_in + 0.1
    fig = _new_figure(fig_w, fig_h)
    ax = fig.add_axes((0.01, 0.1 / fig_h, 0.98, 1 - (top_in + 0.1) / fig_h))
    ax.axis("off")
    tab = ax.table(cellText=shown or None, colLabels=header, cellLoc="left", colLoc="left",
                   colWidths=[w / total for w in widths], bbox=(0, 0, 1, 1))
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    for (r, _), cell in tab.get_celld().items():
        cell.set_edgecolor("#bbbbbb")
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.get_text().set_fontweight("bold")
        elif highlight is not None and r - 1 < len(highlight) and highlight[r - 1]:
            cell.set_facecolor("#fde0c5")
    head = f"{len(df)} rows"
    if len(df) > len(shown):
        head += f" (first {len(shown)} shown)"
    fig.suptitle(caption or head, fontsize=9, y=1 - 0.07 / fig_h, va="top")
    return _save(fig, path)


def _cell_text(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "n/a" if v != v else f"{v:.6g}"
    return str(v)


# ---------------------------------------------------------------------------
# Comparison of families
# ---------------------------------------------------------------------------

_BETTER = {
    "heldout_loglik": "higher is better",
    "kl_to_truth": "lower is better",
    "out_of_support_rate": "lower is better",
    "on_land_rate": "higher is better",
    "land_coverage": "closer to 1 is better",
    "novelty_rate": "higher is better",
    "valid_rate": "higher is better",
}


def comparison_panels(df: pd.DataFrame, metrics) -> dict:
    """What :func:`comparison_plot` draws: the bars of every (dataset, metric) panel.

    Returns
    -------
    dict
        ``{(dataset, metric): [(label, value), ...]}``, datasets and families in
        order of first appearance. Every family appears in every dataset's
        panels; ``value`` is a float, ``inf``/``-inf`` kept, NaN for a NaN, a
        non-numeric value, a missing column or a family with no row there.
        A family with several rows for a dataset gets one bar per row,
        labelled ``"family #k"``.
    """
    for col in ("dataset", "entry"):
        if col not in df.columns:
            raise ValueError(f"comparison_plot needs a {col!r} column, got columns {list(df.columns)}")
    metrics = list(metrics)
    if not metrics or len(df) == 0:
        raise ValueError("comparison_plot needs at least one metric and one row")
    families = list(dict.fromkeys(df["entry"]))
    out = {}
    for ds in dict.fromkeys(df["dataset"]):
        sub = df[df["dataset"] == ds]
        bars = []  # (label, row or None)
        for fam in families:
            rows = sub[sub["entry"] == fam]
            if len(rows) == 0:
                bars.append((str(fam), None))
            for k, (_, row) in enumerate(rows.iterrows()):
                bars.append((str(fam) if len(rows) == 1 else f"{fam} #{k + 1}", row))
        for metric in metrics:
            out[(ds, metric)] = [(label, _metric_value(row, metric)) for label, row in bars]
    return out


def comparison_plot(df: pd.DataFrame, path, *, metrics=("heldout_loglik", "kl_to_truth"),
                    title: str | None = None) -> Path:
    """Every family on every dataset: a grid of bar charts, rows = datasets, columns = metrics.

    Finite values are bars with their value written beside them. An infinite
    value is a hatched bar from 0 to the panel's edge labelled ``inf`` or
    ``-inf``; a NaN, a missing column or a family with no row for a dataset
    is written ``n/a``. Nothing is dropped: the bars are
    :func:`comparison_panels`.

    Parameters
    ----------
    df : DataFrame
        One row per child run, columns ``dataset``, ``family`` and the metrics.
    path : str or Path
    metrics : sequence of str
    title : str, optional

    Returns
    -------
    Path
    """
    metrics = list(metrics)
    panels = comparison_panels(df, metrics)
    path = _prepare(path)
    datasets = list(dict.fromkeys(ds for ds, _ in panels))
    n_bars = [len(panels[(ds, metrics[0])]) for ds in datasets]

    bar_in, gap_in, top_in, bottom_in = 0.3, 0.6, 0.8, 0.4
    heights = [bar_in * (n + 0.6) for n in n_bars]
    fig_h = sum(heights) + gap_in * (len(datasets) - 1) + top_in + bottom_in
    fig_w = 2.0 + 4.2 * len(metrics)
    fig = _new_figure(fig_w, fig_h)
    gs = fig.add_gridspec(len(datasets), len(metrics), height_ratios=heights,
                          left=2.0 / fig_w, right=1 - 0.25 / fig_w, top=1 - top_in / fig_h,
                          bottom=bottom_in / fig_h, wspace=0.12,
                          hspace=_hspace(fig_h - top_in - bottom_in, len(datasets), gap_in))
    for r, ds in enumerate(datasets):
        for c, metric in enumerate(metrics):
            ax = fig.add_subplot(gs[r, c])
            bars = panels[(ds, metric)]
            values = np.array([v for _, v in bars], dtype=np.float64)
            _bar_panel(ax, [label for label, _ in bars], values, show_labels=(c == 0))
            better = _BETTER.get(metric)
            ax.set_title(f"{ds}: {metric}" + (f"  ({better})" if better else ""), fontsize=9.5,
                         loc="left")
    fig.suptitle(title or "Every family on every dataset", fontsize=12, y=1 - 0.15 / fig_h,
                 va="top")
    return _save(fig, path)


def _metric_value(row, metric: str) -> float:
    if row is None or metric not in row.index:
        return float("nan")
    try:
        return float(row[metric])
    except (TypeError, ValueError):
        return float("nan")


def _bar_panel(ax, labels: list[str], values: np.ndarray, *, show_labels: bool) -> None:
    finite = values[np.isfinite(values)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(0.0, float(finite.max())) if finite.size else 0.0
    span = hi - lo if hi > lo else 1.0
    # room for the value labels; an infinite bar runs past every finite one to the edge
    x_lo = lo - 0.3 * span if lo < 0 else 0.0
    x_hi = hi + 0.3 * span if hi > 0 else 0.0
    if np.isneginf(values).any():
        x_lo = lo - 0.45 * span
    if np.isposinf(values).any():
        x_hi = hi + 0.45 * span
    if np.isnan(values).any():
        x_hi = max(x_hi, 0.25 * span)  # "n/a" is written right of 0
    y = np.arange(len(values))
    for yi, v in zip(y, values):
        if np.isfinite(v):
            ax.barh(yi, v, height=0.65, color="#4c78a8")
            ax.text(v, yi, f" {v:.4g} " if abs(v) < 1e5 else f" {v:.3e} ", va="center",
                    ha="left" if v >= 0 else "right", fontsize=8)
        elif np.isnan(v):
            ax.text(0, yi, " n/a", va="center", ha="left", fontsize=8, color="#555555",
                    style="italic")
        else:
            edge = x_hi if v > 0 else x_lo
            ax.barh(yi, edge, height=0.65, color="#f6d5d5", edgecolor="#b2182b", hatch="///",
                    linewidth=0.8)
            ax.text(edge, yi, "inf " if v > 0 else " -inf", va="center",
                    ha="right" if v > 0 else "left", fontsize=8.5, fontweight="bold",
                    color="#b2182b", bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(len(values) - 0.4, -0.6)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(y, labels if show_labels else [""] * len(labels), fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    if not finite.size and not np.isinf(values).any():
        ax.set_xticks([])  # nothing to measure: no scale
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
