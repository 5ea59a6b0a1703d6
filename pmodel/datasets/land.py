"""land: the chapter's map. Points (lon, lat) uniform on land, never at sea.

The truth is a real land mask: ``global-land-mask`` (GLOBE 1 km data, MIT),
a grid of 21600 x 43200 cells of 1/120 degree. In the flat (equirectangular)
plane every cell has the same area, (1/120)^2 deg^2, so for a region R::

    A(R)        = (number of land cells in R) / 120^2          [deg^2]
    p_data(x)   = 1 / A(R)  if x is on land in R, else 0       [1/deg^2]
    H(P_data)   = log A(R)                                      [nats]

all exact. A region's bounds are snapped to the mask's grid (multiples of
1/120 degree, inward) so that every cell is wholly in or out; the default
region leaves out Antarctica (lat >= -60).

Lookups use the package's own convention (its ``lat_to_index`` /
``lon_to_index``): cell ``(i, j)`` covers lat in ``(90 - (i+1)/120, 90 - i/120]``
and lon in ``[-180 + j/120, -180 + (j+1)/120)``; lat = -90 and lon = 180 fall in
the last row and column.

Sampling is exact and vectorised rejection: pick a 1-degree block (among
those with any land) with probability proportional to its area, draw a point
uniformly in it and keep it if it is on land; kept points are uniform on land.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CELLS_PER_DEGREE = 120
CELL_DEG = 1.0 / CELLS_PER_DEGREE
N_ROWS, N_COLS = 180 * CELLS_PER_DEGREE, 360 * CELLS_PER_DEGREE
BLOCK = CELLS_PER_DEGREE  # sampling block: 1 degree = 120 cells
COLUMNS = ("lon", "lat")
_GRID_LOCK = threading.Lock()  # land_area_grid computes each grid once per process


@dataclass(frozen=True)
class Region:
    """A lon/lat rectangle, in degrees. Bounds snap inward to the 1/120 grid."""

    lon_min: float = -180.0
    lon_max: float = 180.0
    lat_min: float = -60.0
    lat_max: float = 90.0

    def __post_init__(self):
        if not (-180 <= self.lon_min < self.lon_max <= 180):
            raise ValueError(f"region needs -180 <= lon_min < lon_max <= 180, got "
                             f"lon_min={self.lon_min}, lon_max={self.lon_max}")
        if not (-90 <= self.lat_min < self.lat_max <= 90):
            raise ValueError(f"region needs -90 <= lat_min < lat_max <= 90, got "
                             f"lat_min={self.lat_min}, lat_max={self.lat_max}")
        r0, r1, c0, c1 = self.cells()
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"region {self} is smaller than one mask cell (1/120 degree)")

    @classmethod
    def globe(cls) -> "Region":
        """The whole globe, Antarctica included."""
        return cls(-180.0, 180.0, -90.0, 90.0)

    def cells(self) -> tuple[int, int, int, int]:
        """Row and column ranges ``(r0, r1, c0, c1)`` of the mask cells inside."""
        eps = 1e-9  # absorb float error when a bound sits on a grid line
        r0 = int(np.ceil((90.0 - self.lat_max) * CELLS_PER_DEGREE - eps))
        r1 = int(np.floor((90.0 - self.lat_min) * CELLS_PER_DEGREE + eps))
        c0 = int(np.ceil((self.lon_min + 180.0) * CELLS_PER_DEGREE - eps))
        c1 = int(np.floor((self.lon_max + 180.0) * CELLS_PER_DEGREE + eps))
        return r0, r1, c0, c1

    def snapped(self) -> "Region":
        """The region the mask actually uses (bounds on the 1/120 grid)."""
        r0, r1, c0, c1 = self.cells()
        return Region(c0 / CELLS_PER_DEGREE - 180.0, c1 / CELLS_PER_DEGREE - 180.0,
                      90.0 - r1 / CELLS_PER_DEGREE, 90.0 - r0 / CELLS_PER_DEGREE)

    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Boolean (n,): is each point inside the (snapped) region's cells?"""
        r0, r1, c0, c1 = self.cells()
        i, j = cell_index(lon, lat)
        return (i >= r0) & (i < r1) & (j >= c0) & (j < c1)


def cell_index(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Mask row and column of each point (the package's truncation convention).

    Points outside [-180, 180] x [-90, 90], or NaN, get index -1.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    # invalid or out-of-range points go to index -1 (truncation toward 0 would fold them in)
    bad_lat = ~((lat >= -90.0) & (lat <= 90.0))
    bad_lon = ~((lon >= -180.0) & (lon <= 180.0))
    i = np.minimum(((90.0 - np.where(bad_lat, 0.0, lat)) * CELLS_PER_DEGREE).astype(np.int64),
                   N_ROWS - 1)
    j = np.minimum(((np.where(bad_lon, 0.0, lon) + 180.0) * CELLS_PER_DEGREE).astype(np.int64),
                   N_COLS - 1)
    return np.where(bad_lat, -1, i), np.where(bad_lon, -1, j)


@functools.cache
def ocean_mask() -> np.ndarray:
    """The GLOBE mask, (21600, 43200) bool, True = ocean (about 5 s to load, 0.9 GB)."""
    from global_land_mask import globe

    mask, lat, lon = globe._mask, globe._lat, globe._lon
    # The lookups below assume the package's grid; fail loudly if a release changes it.
    if (mask.shape != (N_ROWS, N_COLS) or lat[0] != 90.0 or lon[0] != -180.0
            or not np.isclose(lat[1] - lat[0], -CELL_DEG) or not np.isclose(lon[1] - lon[0], CELL_DEG)):
        raise RuntimeError("global_land_mask's grid is not the 1/120-degree grid pmodel expects")
    return mask


def n_land_cells(region: Region) -> int:
    """Land cells of the mask (1/120 degree) inside a snapped region; 0 when it is all sea."""
    r0, r1, c0, c1 = region.cells()
    return (r1 - r0) * (c1 - c0) - int(np.count_nonzero(ocean_mask()[r0:r1, c0:c1]))


def is_land(lon, lat) -> np.ndarray:
    """Vectorised on-land lookup: bool array, False outside the valid lon/lat ranges.

    Same answer as ``global_land_mask.is_land(lat, lon)`` (note its argument
    order) for every valid point, without its copies and checks.
    """
    ocean = ocean_mask()
    i, j = cell_index(lon, lat)
    valid = (i >= 0) & (i < N_ROWS) & (j >= 0) & (j < N_COLS)
    out = np.zeros(np.shape(i), dtype=bool)
    out[valid] = ~ocean[i[valid], j[valid]]
    return out


# ---------------------------------------------------------------------------
# The exact P_data of a region
# ---------------------------------------------------------------------------

class LandData:
    """P_data for a region: uniform on its land in the equirectangular plane.

    Parameters
    ----------
    region : Region
        Defaults to the world without Antarctica (lat >= -60).

    Attributes
    ----------
    land_area_deg2 : float
        Exact land area of the region in deg^2.
    n_land_cells : int
        Land cells of the mask inside the region.
    """

    def __init__(self, region: Region | None = None):
        self.region = (region or Region()).snapped()
        r0, r1, c0, c1 = self.region.cells()
        self._origin = (r0, c0)
        self._shape = (r1 - r0, c1 - c0)
        self._block_counts, self._row_starts, self._col_starts = self._land_cells_per_block(BLOCK)
        heights = np.diff(np.append(self._row_starts, self._shape[0]))
        widths = np.diff(np.append(self._col_starts, self._shape[1]))
        self.n_land_cells = int(self._block_counts.sum())
        if self.n_land_cells == 0:
            raise ValueError(f"region {self.region} holds no land: P_data would be empty")
        self.land_area_deg2 = self.n_land_cells / CELLS_PER_DEGREE**2
        # Blocks are drawn in proportion to their whole area (among those with
        # any land), then a uniform point in the block is kept if on land: a
        # block ends up chosen in proportion to area x land fraction = its land.
        sizes = np.outer(heights, widths).ravel() * (self._block_counts.ravel() > 0)
        self._block_cdf = np.cumsum(sizes) / sizes.sum()
        self._acceptance = self.n_land_cells / sizes.sum()

    def _land_cells_per_block(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Land cells in each k x k block of mask cells, blocks aligned to the
        region's top-left corner (the last row/column of blocks may be partial).

        Counted as cells minus ocean cells; a block's rows are summed in a small
        integer type without copying the 0.9 GB mask.
        """
        r0, c0 = self._origin
        n_rows, n_cols = self._shape
        ocean = ocean_mask()[r0:r0 + n_rows, c0:c0 + n_cols].view(np.uint8)
        row_starts = np.arange(0, n_rows, k)
        col_starts = np.arange(0, n_cols, k)
        acc = np.uint8 if k <= 255 else np.int32
        per_rowblock = np.stack([ocean[s:s + k].sum(axis=0, dtype=acc) for s in row_starts])
        ocean_blocks = np.add.reduceat(per_rowblock, col_starts, axis=1, dtype=np.int64)
        heights = np.diff(np.append(row_starts, n_rows))
        widths = np.diff(np.append(col_starts, n_cols))
        return np.outer(heights, widths) - ocean_blocks, row_starts, col_starts

    def land_area_grid(self, cell_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact land area of every cell of a grid over the region.

        Parameters
        ----------
        cell_deg : float
            Cell size in degrees, a whole multiple of the mask's 1/120 degree
            (e.g. 1, 0.5, 0.1, 1/12). The grid starts at the region's
            (lon_min, lat_max) corner; the last cells are cut by the region.

        Returns
        -------
        lon_edges : ndarray (n_lon + 1,), increasing
        lat_edges : ndarray (n_lat + 1,), decreasing from lat_max
        area : ndarray (n_lat, n_lon), deg^2 of land in each cell; sums to
            ``land_area_deg2``.
        """
        k = cell_deg * CELLS_PER_DEGREE
        if k < 1 or abs(k - round(k)) > 1e-9:
            raise ValueError(f"cell_deg must be a whole multiple of 1/120 degree, got {cell_deg}")
        k = int(round(k))
        cache = self.__dict__.setdefault("_grid_cache", {})
        if k not in cache:
            with _GRID_LOCK:  # once: concurrent scores (threads) would each count the 0.9 GB mask
                if k not in cache and k % BLOCK == 0:  # whole degrees: sum the 1-degree blocks
                    m = k // BLOCK
                    counts = self._block_counts
                    rows, cols = np.arange(0, counts.shape[0], m), np.arange(0, counts.shape[1], m)
                    cache[k] = (np.add.reduceat(np.add.reduceat(counts, rows, axis=0), cols, axis=1),
                                self._row_starts[rows], self._col_starts[cols])
                if k not in cache:
                    cache[k] = self._land_cells_per_block(k)
        counts, row_starts, col_starts = cache[k]
        lon_edges = self.region.lon_min + np.append(col_starts, self._shape[1]) * CELL_DEG
        lat_edges = self.region.lat_max - np.append(row_starts, self._shape[0]) * CELL_DEG
        return lon_edges, lat_edges, counts / CELLS_PER_DEGREE**2

    @property
    def region_area_deg2(self) -> float:
        return self._shape[0] * self._shape[1] / CELLS_PER_DEGREE**2

    def entropy(self) -> float:
        """Exact differential entropy H(P_data) = log(land area), nats (deg^2 units)."""
        return float(np.log(self.land_area_deg2))

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log density of points (n, 2) = (lon, lat): -log A on land in the region, -inf else."""
        X = np.asarray(X, dtype=np.float64)
        lon, lat = X[:, 0], X[:, 1]
        inside = self.region.contains(lon, lat) & is_land(lon, lat)
        return np.where(inside, -np.log(self.land_area_deg2), -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Draw points uniformly on the region's land.

        Returns
        -------
        X : ndarray of shape (n_samples, 2), float64, columns (lon, lat)
        """
        ocean = ocean_mask()
        r0, c0 = self._origin
        n_rows, n_cols = self._shape
        n_block_cols = len(self._col_starts)
        out = np.empty((n_samples, 2), dtype=np.float64)
        filled = 0
        while filled < n_samples:
            need = n_samples - filled
            # oversample by the acceptance rate so most calls take one round
            m = int(need / self._acceptance * 1.05) + 16
            b = np.searchsorted(self._block_cdf, rng.random(m), side="right")
            bi, bj = np.divmod(b, n_block_cols)
            y0, x0 = self._row_starts[bi], self._col_starts[bj]
            h = np.minimum(BLOCK, n_rows - y0)
            w = np.minimum(BLOCK, n_cols - x0)
            y = y0 + rng.random(m) * h  # continuous position in cell units
            x = x0 + rng.random(m) * w
            lon = -180.0 + (c0 + x) * CELL_DEG
            lat = 90.0 - (r0 + y) * CELL_DEG
            # accept on the final coordinates, looked up exactly as is_land does,
            # so a point that rounds across a cell edge is judged by the cell it is in
            i, j = cell_index(lon, lat)
            keep = ~ocean[i, j] & (i >= r0) & (i < r0 + n_rows) & (j >= c0) & (j < c0 + n_cols)
            lon, lat = lon[keep], lat[keep]
            take = min(need, lon.size)
            out[filled:filled + take, 0] = lon[:take]
            out[filled:filled + take, 1] = lat[:take]
            filled += take
        return out


def read_csv(path: Path | str) -> np.ndarray:
    """Read a lon/lat CSV (header ``lon,lat``) as an (n, 2) float64 array."""
    df = pd.read_csv(path)
    return df[list(COLUMNS)].to_numpy(dtype=np.float64)


def write_csv(X: np.ndarray, path: Path | str) -> None:
    """Write points (n, 2) as a ``lon,lat`` CSV with full float precision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(np.asarray(X), columns=list(COLUMNS)).to_csv(
        path, index=False, lineterminator="\n")  # shortest round-trip repr: exact


# ---------------------------------------------------------------------------
# As a built-in dataset (see pmodel.datasets.registry)
# ---------------------------------------------------------------------------

def build(out: Path, *, rng: dict, sizes: dict, progress: bool = True, log=lambda m: None) -> None:
    """Write ``land-{train,heldout}.csv``: points uniform on land in the default region."""
    log("land: loading the GLOBE land mask and sampling points on land")
    from pmodel.datasets.registry import truth_of

    data = truth_of("land").land
    for split, n in sizes.items():
        write_csv(data.sample(n, rng=rng[split]), Path(out) / f"land-{split}.csv")


def build_key() -> dict:
    from dataclasses import asdict

    return {"land_region": asdict(Region().snapped())}


def load(files: dict):
    from pmodel.datasets.registry import Loaded
    from pmodel.families.domains import PointsDomain

    r = Region().snapped()
    train, heldout = (read_csv(files[s]) for s in ("train", "heldout"))
    return Loaded(PointsDomain(r.lon_min, r.lon_max, r.lat_min, r.lat_max), train, heldout)


def truth():
    from pmodel.truths import LandTruth

    return LandTruth(LandData())
