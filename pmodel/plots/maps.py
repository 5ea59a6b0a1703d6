"""The chapter's land map: samples on land and at sea, the orange box, points A, B, C."""

from __future__ import annotations

from pathlib import Path
import json

from matplotlib.colors import LinearSegmentedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
import numpy as np

from pmodel.datasets import land
from pmodel.datasets.land import LandData
from pmodel.plots._common import DPI, LAND_COLOR, SEA_COLOR, BOX_COLOR, TRAIN_COLOR, _new_figure, _prepare, _save


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
    the region) red dots, training points small grey dots under them. With ``box``, the
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
    ax.scatter(X[on, 0], X[on, 1], s=marker, c=LAND_COLOR, linewidths=0, zorder=3)
    handles.append(Line2D([], [], ls="", marker="o", ms=5, color=LAND_COLOR,
                          label=f"on land: {counts['on_land']} ({_pct(counts['on_land_share'])})"))
    ax.scatter(X[~on, 0], X[~on, 1], s=marker * 1.3, c=SEA_COLOR, linewidths=0, zorder=4)
    sea_label = f"at sea: {counts['at_sea']} ({_pct(counts['at_sea_share'])})"
    if counts["outside_region"]:
        sea_label += f", of which {counts['outside_region']} off the map"
    handles.append(Line2D([], [], ls="", marker="o", ms=5, color=SEA_COLOR, label=sea_label))
    if train is not None:
        # under the samples, small and faint: 10,000 black crosses on top hid a good model's
        # samples (188 green pixels were left on the flow's map)
        T = _points(train)
        m = len(T)
        ax.scatter(T[:, 0], T[:, 1], s=12 if m <= 300 else 2.5 if m <= 3000 else 1.0, marker="o",
                   c=TRAIN_COLOR, alpha=0.7 if m <= 300 else 0.35, linewidths=0, zorder=1)
        handles.append(Line2D([], [], ls="", marker="o", ms=4, color=TRAIN_COLOR,
                              label=f"training points: {m} (under the samples)"))

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
