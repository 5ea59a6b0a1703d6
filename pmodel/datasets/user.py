"""Users' own data: categorical CSVs, folders of grayscale PNGs, lon/lat CSVs.

The truth behind these is unknown, so truth-based scores are skipped for
them. Validation (``tasks/validation.py``) checks the files first; these
loaders turn valid files into arrays, and refuse invalid ones with the same
kind of message (file, column, lines, rule) when called on their own.

A categorical CSV is read as written: every label a string (``TRUE``, ``01``
and ``NA`` are labels, not a boolean, a number and a missing value), columns
matched by name in any order. An empty cell follows the dataset's ``missing``
policy (:data:`~pmodel.datasets.schema.MISSING_POLICIES`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from pmodel.datasets import fashion, images, land
from pmodel.datasets.schema import (MAX_CATEGORIES, MISSING_LABEL, MISSING_POLICIES,
                                    CategoricalSchema)

#: Offending lines named in an error (the count says how many in all).
N_LINES_SHOWN = 5


# ---------------------------------------------------------------------------
# Categorical CSVs
# ---------------------------------------------------------------------------

def read_table(path: Path | str, *, missing: str = "error") -> pd.DataFrame:
    """A categorical CSV as a frame of Categoricals of the labels as written,
    with the ``missing`` policy applied (see :func:`fill_missing`)."""
    problem = header_problem(path)
    if problem is not None:
        raise ValueError(f"{path}: every column must have a name, used once: {problem}")
    return fill_missing(fashion.read_csv(path, categorical=True), missing, source=path)


def header_problem(path: Path | str) -> str | None:
    """What is wrong with a CSV's header line that pandas would paper over (it names an
    unnamed column ``Unnamed: 2`` and a second ``a`` ``a.1``): a column without a name, a
    name used twice. None when the header is fine, or cannot be read (the reader says why)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not header:
        return None
    unnamed = [str(i + 1) for i, name in enumerate(header) if name == ""]
    twice = {name: header.count(name) for name in header if name and header.count(name) > 1}
    parts = []
    if unnamed:
        parts.append(f"column{'s' if len(unnamed) > 1 else ''} {', '.join(unnamed)} of "
                     f"{len(header)} {'have' if len(unnamed) > 1 else 'has'} no name"
                     + (" (a trailing comma?)" if unnamed[-1] == str(len(header)) else ""))
    parts += [f"{name!r} names {n} columns" for name, n in twice.items()]
    return "; ".join(parts) or None


def fill_missing(df: pd.DataFrame, missing: str, *, source: Path | str | None = None,
                 first_line: int = 2) -> pd.DataFrame:
    """Apply a missing-value policy to a frame read by :func:`fashion.read_csv`.

    ``error``: the frame unchanged when no cell is empty, else ValueError naming
    ``source``, each column with empty cells, the first lines (data row ``i`` is
    line ``first_line + i``) and how many. ``category``: every empty cell becomes
    the label :data:`MISSING_LABEL` (a category of its own).
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing: expected one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    empty = df.isna()
    if not empty.to_numpy().any():
        return df
    if missing == "error":
        where = f"{source}: " if source is not None else ""
        lines = []
        for name in df.columns[empty.any().to_numpy()]:
            rows = np.flatnonzero(empty[name].to_numpy())
            shown = ", ".join(str(first_line + int(i)) for i in rows[:N_LINES_SHOWN])
            more = f" and {len(rows) - N_LINES_SHOWN} more" if len(rows) > N_LINES_SHOWN else ""
            lines.append(f"column {name!r}: {len(rows)} empty cell{'s' if len(rows) > 1 else ''} "
                         f"(line{'s' if len(rows) > 1 else ''} {shown}{more})")
        raise ValueError(f"{where}missing values are not allowed (missing: error): "
                         + "; ".join(lines) + f". Fill them in, or set `missing: category` on the "
                         f"dataset to read an empty cell as the category {MISSING_LABEL!r}")
    out = {}
    for name in df.columns:
        column = df[name]
        if empty[name].any():
            if isinstance(column.dtype, pd.CategoricalDtype):
                if MISSING_LABEL not in column.cat.categories:
                    column = column.cat.add_categories([MISSING_LABEL])
            column = column.fillna(MISSING_LABEL)
        out[name] = column
    return pd.DataFrame(out, index=df.index)


def load_categorical_csv(path: Path | str, schema: CategoricalSchema | Path | str, *,
                         missing: str = "error") -> np.ndarray:
    """Read a categorical CSV as codes (n_samples, n_features) int64 on ``schema``
    (an object or a YAML path): columns and categories in the schema's order,
    the file's columns matched by name."""
    if not isinstance(schema, CategoricalSchema):
        schema = CategoricalSchema.from_yaml(schema)
    df = read_table(path, missing=missing)
    absent = [name for name in schema.names if name not in df.columns]
    if absent:
        raise ValueError(f"{path}: no column {', '.join(map(repr, absent))} (the schema's "
                         f"columns are {schema.names}; the file's {[str(c) for c in df.columns]})")
    try:
        return schema.to_codes(df)
    except ValueError as exc:  # row i is line i + 2 of the file
        raise ValueError(f"{path}: {exc} (data row i is line i + 2)") from None


def infer_schema(*paths: Path | str, missing: str = "error",
                 max_categories: int | None = MAX_CATEGORIES) -> CategoricalSchema:
    """The schema of categorical CSVs read together: their columns, and for each
    the sorted distinct labels found in any of the files (so a held-out value
    absent from training is a category, not an error). ``max_categories``
    (None: no limit): a column with more distinct labels is refused, with what
    to do about it."""
    frames = [read_table(p, missing=missing) for p in paths]
    columns = [str(c) for c in frames[0].columns]
    for path, df in zip(paths[1:], frames[1:]):
        missing_cols = [c for c in columns if c not in df.columns]
        extra = [str(c) for c in df.columns if str(c) not in columns]
        if missing_cols or extra:
            raise ValueError(
                f"{path} and {paths[0]} must have the same columns: "
                + "; ".join(part for part in (
                    f"{path} lacks {', '.join(missing_cols)}" if missing_cols else "",
                    f"{path} has {', '.join(extra)}, which {paths[0]} lacks" if extra else "")
                    if part))
    values: dict[str, set[str]] = {c: set() for c in columns}
    for df in frames:
        for c in columns:
            values[c].update(str(v) for v in df[c].cat.categories)
    if max_categories is not None:
        wide = {c: len(v) for c, v in values.items() if len(v) > max_categories}
        if wide:
            files = " and ".join(str(p) for p in paths)
            raise ValueError(f"{files}: " + "; ".join(
                f"column {c!r} has {n} distinct values" for c, n in wide.items())
                + f", more than max_categories ({max_categories}): likely an ID or free text, "
                "not a category. Drop the column from the CSV, or raise the dataset's "
                "max_categories if its values really are categories")
    return CategoricalSchema(tuple((c, tuple(sorted(values[c]))) for c in columns), inferred=True)


def constant_columns(schema: CategoricalSchema, X: np.ndarray) -> list[str]:
    """What to say of each column with one value only in ``X`` (codes on ``schema``): it
    carries no information. A warning, not an error: fitting is unharmed."""
    notes = []
    for j, (name, cats) in enumerate(schema.columns):
        seen = np.unique(X[:, j]) if len(X) else np.array([], dtype=np.int64)
        if len(seen) == 1:
            notes.append(f"column {name!r} has one value only ({cats[seen[0]]!r} in all {len(X)} "
                         "rows): it carries no information; drop it from the CSV")
    return notes


# ---------------------------------------------------------------------------
# Images and points
# ---------------------------------------------------------------------------

def values_per_example(kind: str, train: Path | str, schema: Path | str | None = None
                       ) -> tuple[int, str] | None:
    """How many values one example of a user's dataset has, and where that count comes
    from: a categorical CSV's columns (its schema's, else its header's), an image's pixels
    (the first PNG of the folder), a point's 2. None when the file cannot be read (yet):
    ingest and validation say why."""
    train = Path(train)
    try:
        if kind == "points":
            return 2, "lon, lat"
        if kind == "categorical":
            if schema is not None:
                n = len(CategoricalSchema.from_yaml(schema).names)
                return n, f"{n} columns in {schema}"
            n = len(pd.read_csv(train, dtype="string", nrows=0).columns)
            return n, f"{n} columns in {train}"
        if kind == "image":
            from PIL import Image

            first = min(p for p in train.iterdir() if p.suffix == ".png")
            with Image.open(first) as image:
                width, height = image.size
            return width * height, f"{width}x{height} pixels, as {first}"
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    return None


def load_image_folder(folder: Path | str) -> tuple[list[str], np.ndarray]:
    """A folder of same-sized 8-bit grayscale PNGs: (names, X of shape (n, h, w) uint8)."""
    return images.read_png_folder(folder)


def load_points(path: Path | str) -> np.ndarray:
    """A lon/lat CSV: (n, 2) float64, columns (lon, lat)."""
    return land.read_csv(path)
