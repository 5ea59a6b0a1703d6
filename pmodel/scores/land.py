"""Land vs ocean: on-land rate, normalised land coverage, the chapter's points A and B."""

from __future__ import annotations

import numpy as np

from pmodel.datasets import land
from pmodel.datasets.land import LandData, Region


def _points(samples) -> np.ndarray:
    X = np.asarray(samples, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"expected points of shape (n, 2) = (lon, lat), got {X.shape}")
    if len(X) == 0:
        raise ValueError("expected at least one point, got none")
    return X


def box_land_shares(truth: LandData, box) -> dict:
    """The chapter's points A and B for a box: sea inside it, land outside it.

    Computed exactly from the mask. The box is clipped to ``truth.region``
    (what lies outside the region counts as neither land nor sea) and, like any
    :class:`~pmodel.datasets.land.Region`, snapped inward to the 1/120-degree
    grid, so a box edge off the grid loses the partial mask cells along it: an
    error of at most one mask cell (1/120 degree) along each edge.

    Parameters
    ----------
    truth : LandData
        P_data and its region.
    box : tuple of 4 floats
        ``(lon_min, lon_max, lat_min, lat_max)`` in degrees.

    Returns
    -------
    dict
        ``box_sea_share``: share of the box's area that is sea (point A);
        ``land_outside_box_share``: share of the region's land outside the box (point B).

    Raises
    ------
    ValueError
        If the box is degenerate or does not overlap the region.
    """
    lon_min, lon_max, lat_min, lat_max = (float(v) for v in box)
    if not (lon_min < lon_max and lat_min < lat_max):
        raise ValueError(f"box must be (lon_min, lon_max, lat_min, lat_max) with min < max, "
                         f"got {tuple(box)}")
    reg = truth.region
    clipped = (max(lon_min, reg.lon_min), min(lon_max, reg.lon_max),
               max(lat_min, reg.lat_min), min(lat_max, reg.lat_max))
    if not (clipped[0] < clipped[1] and clipped[2] < clipped[3]):
        raise ValueError(f"box {tuple(box)} does not overlap the region {reg}")
    inside = Region(*clipped)
    r0, r1, c0, c1 = inside.cells()
    n_cells = (r1 - r0) * (c1 - c0)
    n_land = land.n_land_cells(inside)
    return {
        "box_sea_share": (n_cells - n_land) / n_cells,
        "land_outside_box_share": (truth.n_land_cells - n_land) / truth.n_land_cells,
    }


def on_land_rate(samples, truth: LandData) -> float:
    """Share of samples that lie on land inside the region (the map's precision).

    Parameters
    ----------
    samples : array-like of shape (n, 2)
        Points (lon, lat); NaN or off-globe points count as not on land.
    truth : LandData

    Returns
    -------
    float in [0, 1]
    """
    X = _points(samples)
    return float(np.mean(truth.log_prob(X) > -np.inf))


def land_coverage(samples, truth: LandData, *, cell_deg: float = 1.0) -> dict:
    """How much of the land the samples reach, relative to P_data itself.

    The land cells are the cells of ``truth.land_area_grid(cell_deg)`` with
    land area ``a_c > 0``. With ``n`` samples (all of them, on land or not)::

        coverage                = share of land cells holding >= 1 on-land sample
        expected_coverage_truth = mean_c [1 - (1 - a_c / A)^n]
        land_coverage           = coverage / expected_coverage_truth

    ``expected_coverage_truth`` is the exact expected coverage of ``n`` draws
    from P_data (each lands in cell c with probability a_c / A), so
    ``land_coverage`` is 1.0 for a model as good as the truth, below 1 for one
    that misses land (or wastes samples at sea), and can exceed 1 slightly for
    samples spread more evenly than independent draws.

    Parameters
    ----------
    samples : array-like of shape (n, 2)
        Points (lon, lat).
    truth : LandData
    cell_deg : float, default 1.0
        Grid cell size, a whole multiple of 1/120 degree.

    Returns
    -------
    dict
        ``coverage``, ``expected_coverage_truth``, ``land_coverage``, ``cell_deg``.
    """
    X = _points(samples)
    n = len(X)
    _, _, area = truth.land_area_grid(cell_deg)  # (n_lat, n_lon)
    k = int(round(cell_deg * land.CELLS_PER_DEGREE))
    on = truth.log_prob(X) > -np.inf
    # grid cell from the mask cell, so a sample is binned exactly as the mask judged it
    i, j = land.cell_index(X[on, 0], X[on, 1])
    r0, _, c0, _ = truth.region.cells()
    hit = np.zeros(area.shape, dtype=bool)
    hit[(i - r0) // k, (j - c0) // k] = True
    is_land_cell = area > 0
    coverage = float(hit[is_land_cell].mean())
    share = area[is_land_cell] / truth.land_area_deg2
    expected = float(np.mean(-np.expm1(n * np.log1p(-share))))  # 1 - (1 - share)^n
    return {
        "coverage": coverage,
        "expected_coverage_truth": expected,
        "land_coverage": coverage / expected,
        "cell_deg": float(cell_deg),
    }
