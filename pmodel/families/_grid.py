"""Regular bins over an interval (shared by the grid and histogram families)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmodel.families.base import Hyper

#: The most grid cells (or histogram bins) a family may allocate: 2e7 cells hold
#: int64 counts and float64 log-probabilities in about 320 MB.
MAX_GRID_CELLS = 20_000_000

CELL_DEG = Hyper(float, 1.0, gt=0.0, le=360.0, doc="grid cell size in degrees; must divide the region")
BIN_DEG = Hyper(float, 1.0, gt=0.0, le=360.0, doc="histogram bin width in degrees; must divide the region")


def check_grid_cells(lon_deg: float, lat_deg: float | None, key: str) -> None:
    """Refuse a grid over the whole map (360 x 180 degrees) with more than
    :data:`MAX_GRID_CELLS` cells (or, for two histograms, bins), naming ``key``."""
    n_lon = 360.0 / lon_deg
    n = n_lon * (180.0 / lat_deg) if lat_deg is not None else n_lon + 180.0 / lon_deg
    if n > MAX_GRID_CELLS:
        raise ValueError(f"{key}: {lon_deg} degrees makes {n:.3g} cells over the map, more than the "
                         f"limit of {MAX_GRID_CELLS:.0e} (about {MAX_GRID_CELLS * 16 / 1e6:.0f} MB); "
                         f"use a larger {key}")

# keep a uniform offset inside its bin: (j + u) * w must not round up into bin j + 1
_U_MAX = 1.0 - 2.0**-30


@dataclass(frozen=True)
class Bins:
    """``n`` equal bins over [lo, hi]; the upper edge belongs to the last bin."""

    lo: float
    hi: float
    n: int

    @classmethod
    def of_width(cls, lo: float, hi: float, width: float, what: str) -> "Bins":
        """Bins of a given width; the width must divide the extent."""
        if not width > 0:
            raise ValueError(f"{what} must be > 0, got {width}")
        k = (hi - lo) / width
        if abs(k - round(k)) > 1e-9 * max(1.0, k):
            raise ValueError(f"{what}={width} does not divide the domain's extent {hi - lo} "
                             f"({lo} .. {hi}) into whole bins")
        return cls(lo, hi, int(round(k)))

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / self.n

    def index(self, values) -> np.ndarray:
        """Bin of each value, int64; -1 outside [lo, hi] (and for NaN)."""
        values = np.asarray(values, dtype=np.float64)
        inside = (values >= self.lo) & (values <= self.hi)
        idx = np.floor((np.where(inside, values, self.lo) - self.lo) / self.width).astype(np.int64)
        return np.where(inside, np.clip(idx, 0, self.n - 1), -1)

    def uniform(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniform position inside each given bin."""
        u = np.minimum(rng.random(len(bins)), _U_MAX)
        return np.minimum(self.lo + (bins + u) * self.width, self.hi)

    def edges(self) -> np.ndarray:
        return self.lo + np.arange(self.n + 1) * self.width
