"""Folders of grayscale PNGs: the on-disk form of image datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_png_folder(folder: Path | str) -> tuple[list[str], np.ndarray]:
    """Read every ``*.png`` in a folder, sorted by name.

    Returns
    -------
    names : list of str
    X : ndarray of shape (n_images, height, width), uint8

    Raises ValueError naming the image when one is not 8-bit grayscale or
    not the size of the first (validation reports these earlier, in full).
    """
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise ValueError(f"{folder}: no PNG images")
    arrays = []
    for p in paths:
        with Image.open(p) as im:
            if im.mode != "L":
                raise ValueError(f"{p}: mode {im.mode!r}, expected 8-bit grayscale 'L'")
            a = np.asarray(im, dtype=np.uint8)
        if arrays and a.shape != arrays[0].shape:
            raise ValueError(f"{p}: size {a.shape[::-1]}, expected {arrays[0].shape[::-1]} "
                             f"like {paths[0].name}")
        arrays.append(a)
    return [p.name for p in paths], np.stack(arrays)


def write_png_folder(X: np.ndarray, folder: Path | str, names: list[str] | None = None) -> list[str]:
    """Write images (n, height, width) uint8 as grayscale PNGs ``00000.png``, ...

    Returns the file names written, in order.
    """
    X = np.asarray(X)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ValueError(f"expected images of shape (n, height, width) uint8, got {X.shape} {X.dtype}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(X))))
    names = names or [f"{i:0{width}d}.png" for i in range(len(X))]
    for name, a in zip(names, X):
        Image.fromarray(a, mode="L").save(folder / name, optimize=False)
    return names
