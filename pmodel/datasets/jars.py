"""jars: 32x32 grayscale jars, each fixed by two numbers, its height and its width.

The chapter's section 4.2: a set of jar images lives in 1024-dimensional pixel
space, but each image is really two numbers. A jar is drawn from a (height,
width) on a known grid, the same way every time::

    heights = 8.00, 8.75, ..., 25.25 px      (24 values, step 0.75 px)
    widths  = 8.00, 8.75, ..., 25.25 px      (24 values)

    P(height_i, width_j) = a_i b_j,          a, b: Beta(2, 2) densities at the
                                             grid's midpoints, normalised

so P_data is exact: 576 distinct renders, each with a known probability
(:func:`prior`), and nothing else. Height and width are independent under
P_data (so the mutual information gap has a meaning); in each factor the
middle of the grid is about 12 times as likely as its ends.

Drawing (:func:`render`): at 8x the final size (256 x 256), on white, a dark
body with rounded shoulders standing on a common base line 3 px above the
bottom edge and centred left to right, a darker lid on top, and a light
vertical highlight on the body's left; then box-filtered down to 32 x 32 with
Pillow (each pixel the mean of the 8 x 8 it covers), so edges are anti-aliased
and a 0.75 px change of height or width changes the image (tested for every
pair of grid points).

Files written by :func:`build`: ``jars-{train,heldout}/`` (PNGs) and
``jars-{train,heldout}-factors.csv`` (file, height, width), the latent factors
of every image, read back by :func:`load` as the problem's factors.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

SIZE = 32
SCALE = 8
N_HEIGHTS = N_WIDTHS = 24
STEP = 0.75
HEIGHTS = 8.0 + STEP * np.arange(N_HEIGHTS)  # px of the 32-px frame
WIDTHS = 8.0 + STEP * np.arange(N_WIDTHS)
FACTOR_NAMES = ("height", "width")
BASE_LINE = 29.0  # px from the top: where every jar stands

BACKGROUND, BODY, LID, HIGHLIGHT = 255, 70, 35, 190
RENDER_SETTINGS = {"size": SIZE, "scale": SCALE, "heights": HEIGHTS.tolist(), "widths": WIDTHS.tolist(),
                   "base_line": BASE_LINE, "colours": [BACKGROUND, BODY, LID, HIGHLIGHT],
                   "resample": "BOX", "version": 1}


def _beta22(k: int) -> np.ndarray:
    u = (np.arange(k) + 0.5) / k
    w = u * (1.0 - u)
    return w / w.sum()


def prior() -> np.ndarray:
    """P_data over the grid: (24, 24) probabilities of (height_i, width_j); sums to 1."""
    return np.outer(_beta22(N_HEIGHTS), _beta22(N_WIDTHS))


def grid_factors() -> np.ndarray:
    """(height, width) of every grid cell in C order of :func:`prior`: (576, 2) float64."""
    h, w = np.meshgrid(HEIGHTS, WIDTHS, indexing="ij")
    return np.column_stack([h.ravel(), w.ravel()])


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------

def render_native(height: float, width: float) -> np.ndarray:
    """The jar at 8x size, (256, 256) uint8: body, lid and highlight on white."""
    from PIL import Image, ImageDraw

    s = SCALE
    n = SIZE * s
    img = Image.new("L", (n, n), BACKGROUND)
    draw = ImageDraw.Draw(img)
    cx, base = SIZE / 2.0, BASE_LINE
    top = base - height
    lid_h = 1.0 + 0.12 * height
    lid_w = 0.62 * width
    body_top = top + lid_h
    radius = 0.28 * width  # the shoulders
    px = lambda v: int(round(v * s))  # noqa: E731: native pixel of a 32-px coordinate
    # body: shoulders rounded, flat bottom on the base line
    draw.rounded_rectangle([px(cx - width / 2), px(body_top), px(cx + width / 2) - 1, px(base) - 1],
                           radius=px(radius), fill=BODY, corners=(True, True, False, False))
    # lid: a darker band, narrower than the body, touching its shoulders
    draw.rectangle([px(cx - lid_w / 2), px(top), px(cx + lid_w / 2) - 1, px(body_top + 0.3) - 1], fill=LID)
    # highlight: a light stripe on the body's left, below the shoulder
    hx = cx - width / 2 + 0.18 * width
    draw.rectangle([px(hx), px(body_top + 0.55 * radius), px(hx + 0.1 * width) - 1,
                    px(base - 0.12 * height) - 1], fill=HIGHLIGHT)
    return np.asarray(img, dtype=np.uint8)


def render(height: float, width: float) -> np.ndarray:
    """The 32x32 grayscale jar of one (height, width), (32, 32) uint8.

    Examples
    --------
    >>> img = render(HEIGHTS[5], WIDTHS[10])
    >>> img.shape, img.dtype, int(img[0, 0])
    ((32, 32), dtype('uint8'), 255)
    """
    from PIL import Image

    native = Image.fromarray(render_native(height, width), mode="L")
    return np.asarray(native.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def _renders() -> np.ndarray:
    out = np.stack([render(h, w) for h, w in grid_factors()])
    out.flags.writeable = False
    return out


def load_renders() -> np.ndarray:
    """Every grid cell's jar, (576, 32, 32) uint8 in the C order of :func:`prior`
    (about 0.5 s; made once per process)."""
    return _renders()


# ---------------------------------------------------------------------------
# As a built-in dataset (see pmodel.datasets.registry)
# ---------------------------------------------------------------------------

def sample_cells(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """Grid cells (indices into :func:`grid_factors`) drawn from P_data, (n,) int64."""
    return rng.choice(N_HEIGHTS * N_WIDTHS, size=n, p=prior().ravel())


def build(out: Path, *, rng: dict, sizes: dict, progress: bool = True, log=lambda m: None) -> None:
    """Write ``jars-{train,heldout}/`` and ``jars-{train,heldout}-factors.csv``."""
    from pmodel.datasets import images

    log(f"jars: drawing {' + '.join(str(n) for n in sizes.values())} jars from P_data")
    renders, factors = load_renders(), grid_factors()
    out = Path(out)
    for split, n in sizes.items():
        cells = sample_cells(n, rng=rng[split])
        folder = out / f"jars-{split}"
        tmp = out / f".jars-{split}.{os.getpid()}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        names = images.write_png_folder(np.ascontiguousarray(renders[cells]), tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        frame = pd.DataFrame({"file": names, "height": factors[cells, 0], "width": factors[cells, 1]})
        frame.to_csv(out / f"jars-{split}-factors.csv", index=False, lineterminator="\n")


def build_key() -> dict:
    return {"jars_render": RENDER_SETTINGS}


def read_factors(path: Path, names: list[str]) -> np.ndarray:
    """The factors CSV as (n, 2) float64 in the order of ``names`` (the PNGs read);
    ValueError naming the file and the first image it lacks."""
    frame = pd.read_csv(path)
    missing = [c for c in ("file", *FACTOR_NAMES) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected file, height, width")
    by_file = frame.set_index("file")
    absent = [n for n in names if n not in by_file.index]
    if absent:
        raise ValueError(f"{path}: no factors for image {absent[0]} ({len(absent)} images lack them)")
    return by_file.loc[names, list(FACTOR_NAMES)].to_numpy(dtype=np.float64)


def load(files: dict):
    from pmodel.datasets import images
    from pmodel.datasets.registry import Loaded
    from pmodel.families.domains import ImageDomain

    arrays, factors = {}, {}
    for split in ("train", "heldout"):
        folder = Path(files[split])
        names, arrays[split] = images.read_png_folder(folder)
        factors[split] = read_factors(folder.parent / f"jars-{split}-factors.csv", names)
    return Loaded(ImageDomain(SIZE, SIZE), arrays["train"], arrays["heldout"], factors=factors,
                  factor_names=FACTOR_NAMES, factor_categorical=(False, False))


def truth():
    """P_data: the 576 renders with their prior probabilities, and their factors."""
    from pmodel.truths import RenderTruth

    return RenderTruth(images=np.array(load_renders()), probs=prior().ravel(),
                       factor_names=FACTOR_NAMES, factors=grid_factors())
