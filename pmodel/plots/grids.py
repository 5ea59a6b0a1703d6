"""Image grids: sampled images, upscaled, in a grid, alone or in captioned pairs (Pillow only)."""

from __future__ import annotations

from pathlib import Path
import math

from PIL import Image, ImageDraw, ImageFont
import numpy as np

from pmodel.plots._common import GRID_GAP, GRID_MAX_IMAGES, GRID_TITLE_HEIGHT, _prepare

PAIR_LABEL_HEIGHT = 18  # px of label strip under each pair of rows
PAIR_GAP = 10           # px between one pair of rows and the next, a grey rule across its middle
PAIR_RULE = 170         # the rule's grey: white-backed images would otherwise run together


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
    images = _check_images(images, "image_grid")
    _check_layout(n_cols, scale)
    path = _prepare(path)
    images = _as_uint8(images[:GRID_MAX_IMAGES])
    n, h, w = images.shape
    cols = min(n_cols, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h * scale, w * scale
    canvas = np.full((rows * cell_h + (rows - 1) * GRID_GAP, cols * cell_w + (cols - 1) * GRID_GAP),
                     255, dtype=np.uint8)
    up = _upscale(images, scale)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = r * (cell_h + GRID_GAP), c * (cell_w + GRID_GAP)
        canvas[y:y + cell_h, x:x + cell_w] = up[k]
    _finish(Image.fromarray(canvas, mode="L"), title, caption).save(path, optimize=True)
    return path


def image_pairs(upper, lower, labels, path, *, n_cols: int = 10, scale: int = 3,
                title: str | None = None, caption: str | None = None) -> Path:
    """Write pairs of grayscale images, ``upper[k]`` above ``lower[k]``, each pair labelled.

    The pairs fill a grid of ``n_cols`` columns: each grid row is a row of
    upper images, the row of their lower images 2 px below, a strip of
    ``PAIR_LABEL_HEIGHT`` px with each pair's label centred under it, then
    ``PAIR_GAP`` px of white with a 1 px grey rule (``PAIR_RULE``) across its
    middle row. Upper image ``k`` has its top-left pixel at
    ``(top + r * (2 * h * scale + 2 + PAIR_LABEL_HEIGHT + PAIR_GAP), c * (w * scale + 2))``
    with ``r, c = divmod(k, n_cols)`` (``top`` as in :func:`image_grid`), its
    lower image ``h * scale + 2`` px further down. Upscaling, rounding and the
    title and caption are as in :func:`image_grid`.

    Parameters
    ----------
    upper, lower : array-like of shape (n, h, w)
        Values 0..255; only the first 100 pairs are drawn.
    labels : sequence of str, length n
        Drawn under each pair, e.g. ``"d=5.3"``.
    path : str or Path
    n_cols, scale, title, caption
        As in :func:`image_grid`.

    Returns
    -------
    Path

    Examples
    --------
    >>> image_pairs(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), ["a", "b"], "p.png")  # doctest: +SKIP
    """
    upper, lower = _check_images(upper, "image_pairs"), _check_images(lower, "image_pairs")
    if upper.shape != lower.shape or len(labels) != len(upper):
        raise ValueError(f"image_pairs needs as many upper and lower images of one size as labels, "
                         f"got {upper.shape}, {lower.shape} and {len(labels)} labels")
    _check_layout(n_cols, scale)
    path = _prepare(path)
    upper, lower = _as_uint8(upper[:GRID_MAX_IMAGES]), _as_uint8(lower[:GRID_MAX_IMAGES])
    n, h, w = upper.shape
    cols = min(n_cols, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h * scale, w * scale
    pair_h = 2 * cell_h + GRID_GAP + PAIR_LABEL_HEIGHT
    canvas = np.full((rows * pair_h + (rows - 1) * PAIR_GAP, cols * cell_w + (cols - 1) * GRID_GAP),
                     255, dtype=np.uint8)
    up_upper, up_lower = _upscale(upper, scale), _upscale(lower, scale)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = r * (pair_h + PAIR_GAP), c * (cell_w + GRID_GAP)
        canvas[y:y + cell_h, x:x + cell_w] = up_upper[k]
        canvas[y + cell_h + GRID_GAP:y + 2 * cell_h + GRID_GAP, x:x + cell_w] = up_lower[k]
    for r in range(rows - 1):
        canvas[r * (pair_h + PAIR_GAP) + pair_h + PAIR_GAP // 2] = PAIR_RULE
    img = Image.fromarray(canvas, mode="L")
    draw, font = ImageDraw.Draw(img), _title_font()
    for k in range(n):
        r, c = divmod(k, cols)
        text = str(labels[k])
        x = c * (cell_w + GRID_GAP) + (cell_w - draw.textlength(text, font=font)) / 2
        draw.text((max(x, 0), r * (pair_h + PAIR_GAP) + 2 * cell_h + GRID_GAP + 1), text, fill=0,
                  font=font)
    _finish(img, title, caption).save(path, optimize=True)
    return path


def _check_images(images, who: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"{who} needs images of shape (n, h, w) with n >= 1, got {images.shape}")
    return images


def _check_layout(n_cols, scale) -> None:
    if not (isinstance(n_cols, (int, np.integer)) and n_cols >= 1
            and isinstance(scale, (int, np.integer)) and scale >= 1):
        raise ValueError(f"n_cols and scale must be positive integers, got n_cols={n_cols!r}, "
                         f"scale={scale!r}")


def _as_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 as is; other dtypes rounded and clipped to 0..255 (NaN drawn black)."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(np.nan_to_num(images.astype(np.float64), nan=0.0)), 0, 255).astype(np.uint8)


def _upscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Pixel repetition, no smoothing: (n, h, w) -> (n, h * scale, w * scale)."""
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def _finish(img: Image.Image, title: str | None, caption: str | None) -> Image.Image:
    """``img`` with ``title`` in a strip above it and ``caption`` below, when given."""
    if title:
        # a narrow grid would cut a long title: widen the strip's canvas, never the images
        font = _title_font()
        text_w = int(ImageDraw.Draw(img).textlength(title, font=font)) + 8
        titled = Image.new("L", (max(img.width, text_w), img.height + GRID_TITLE_HEIGHT), 255)
        titled.paste(img, (0, GRID_TITLE_HEIGHT))
        ImageDraw.Draw(titled).text((4, 4), title, fill=0, font=font)
        img = titled
    if caption:
        img = _with_caption(img, caption)
    return img


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
