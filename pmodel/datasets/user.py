"""Users' own data: categorical CSVs, folders of grayscale PNGs, lon/lat CSVs.

The truth behind these is unknown, so truth-based scores are skipped for
them. Validation (``tasks/validation.py``) checks the files first; these
loaders turn valid files into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmodel.datasets import fashion, images, land
from pmodel.datasets.schema import CategoricalSchema


@dataclass(frozen=True)
class CategoricalData:
    """A categorical table as codes.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), int64
        Category codes in the schema's column and category order.
    schema : CategoricalSchema
    notes : list of str
        What the loader decided for the user (e.g. categories inferred).
    """

    X: np.ndarray
    schema: CategoricalSchema
    path: Path
    notes: list[str] = field(default_factory=list)


def load_categorical_csv(path: Path | str,
                         schema: CategoricalSchema | Path | str | None = None) -> CategoricalData:
    """Read a categorical CSV with a schema (object or YAML path), or infer one.

    Without a schema the categories are the sorted distinct values of each
    column, and ``notes`` says so: a category absent from this file is then
    unknown to every model fitted to it.
    """
    path = Path(path)
    df = fashion.read_csv(path, categorical=True)
    notes = []
    if schema is None:
        schema = CategoricalSchema.infer(df)
        notes.append(f"{path}: no schema given; categories inferred from the data: "
                     + "; ".join(f"{name} ({len(cats)})" for name, cats in schema.columns))
    elif not isinstance(schema, CategoricalSchema):
        schema = CategoricalSchema.from_yaml(schema)
    return CategoricalData(X=schema.to_codes(df), schema=schema, path=path, notes=notes)


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
