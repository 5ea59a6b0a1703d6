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
    return schema.to_codes(fashion.read_csv(path, categorical=True))


def infer_schema(*paths: Path | str) -> CategoricalSchema:
    """The schema of categorical CSVs read together: their columns, and for each
    the sorted distinct values found in any of the files (so a held-out value
    absent from training is a category, not an error)."""
    frames = [fashion.read_csv(p, categorical=True) for p in paths]
    columns = [str(c) for c in frames[0].columns]
    for path, df in zip(paths[1:], frames[1:]):
        missing = [c for c in columns if c not in df.columns]
        extra = [str(c) for c in df.columns if str(c) not in columns]
        if missing or extra:
            raise ValueError(
                f"{path} and {paths[0]} must have the same columns: "
                + "; ".join(part for part in (
                    f"{path} lacks {', '.join(missing)}" if missing else "",
                    f"{path} has {', '.join(extra)}, which {paths[0]} lacks" if extra else "")
                    if part))
    values: dict[str, set[str]] = {c: set() for c in columns}
    for df in frames:
        for c in columns:
            values[c].update(str(v) for v in df[c].cat.categories)
    return CategoricalSchema(tuple((c, tuple(sorted(values[c]))) for c in columns), inferred=True)


def load_image_folder(folder: Path | str) -> tuple[list[str], np.ndarray]:
    """A folder of same-sized 8-bit grayscale PNGs: (names, X of shape (n, h, w) uint8)."""
    return images.read_png_folder(folder)


def load_points(path: Path | str) -> np.ndarray:
    """A lon/lat CSV: (n, 2) float64, columns (lon, lat)."""
    return land.read_csv(path)
