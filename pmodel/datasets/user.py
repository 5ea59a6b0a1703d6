"""Users' own data: categorical CSVs, folders of grayscale PNGs, lon/lat CSVs.

The truth behind these is unknown, so truth-based scores are skipped for
them. Validation (``tasks/validation.py``) checks the files first; these
loaders turn valid files into arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmodel.datasets import fashion, images, land
from pmodel.datasets.schema import CategoricalSchema


def load_categorical_csv(path: Path | str, schema: CategoricalSchema | Path | str) -> np.ndarray:
    """Read a categorical CSV as codes (n_samples, n_features) int64 on ``schema``
    (an object or a YAML path): columns and categories in the schema's order."""
    if not isinstance(schema, CategoricalSchema):
        schema = CategoricalSchema.from_yaml(schema)
    return schema.to_codes(fashion.read_csv(path))


def load_image_folder(folder: Path | str) -> tuple[list[str], np.ndarray]:
    """A folder of same-sized 8-bit grayscale PNGs: (names, X of shape (n, h, w) uint8)."""
    return images.read_png_folder(folder)


def load_points(path: Path | str) -> np.ndarray:
    """A lon/lat CSV: (n, 2) float64, columns (lon, lat)."""
    return land.read_csv(path)
