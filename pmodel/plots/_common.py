"""What every picture shares: resolution, colours, an Agg figure per picture, saving."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
GRID_GAP = 2             # px of white between images
GRID_MAX_IMAGES = 100
GRID_TITLE_HEIGHT = 24   # px of title strip above the grid when a title is given
TABLE_PNG_MAX_ROWS = 40  # a PNG table longer than this is cut (CSV / markdown keep all rows)

LAND_COLOR = "#1a9641"
SEA_COLOR = "#d7191c"
BOX_COLOR = "#ff7f00"
TRAIN_COLOR = "#4a4a8a"   # training points on a map: under the samples, faint


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
