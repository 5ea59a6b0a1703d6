"""Image grids: sampled images, upscaled, in a grid (Pillow only)."""

from __future__ import annotations

from pathlib import Path
import math

from PIL import Image, ImageDraw, ImageFont
import numpy as np

from pmodel.plots._common import GRID_GAP, GRID_MAX_IMAGES, GRID_TITLE_HEIGHT, _prepare


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
