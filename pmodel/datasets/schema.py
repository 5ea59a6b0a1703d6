"""Categorical schemas: the columns of a table and the categories of each.

A schema fixes the order of columns and of categories, so a row maps to one
integer code per column and to one cell of the full joint table
(``n_cells = prod(n_categories)``). Users give a schema as YAML::

    columns:
      accessories_type: [Blank, Round, Sunglasses]
      hair_color: [Black, Blonde]

or let pmodel infer one from the data (sorted distinct values per column);
``CategoricalSchema.inferred`` then says so.

Categories are labels, kept exactly as written, in the data and in the schema
file alike: ``TRUE``, ``yes``, ``01`` and ``NA`` are strings (the YAML is read
without YAML's own guessing, which would make ``yes`` a boolean and ``01`` the
integer 1). Only an empty cell is missing; what a missing value means is a
dataset's ``missing`` policy (:data:`MISSING_POLICIES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

#: What an empty cell means: ``error`` (it is refused, naming the file, column
#: and lines) or ``category`` (it is read as the category :data:`MISSING_LABEL`).
MISSING_POLICIES = ("error", "category")

#: The category an empty cell becomes under ``missing: category``.
MISSING_LABEL = "<missing>"

#: The most distinct values a column may have when its categories are read off
#: the data (more is likely an ID or free text); a dataset's ``max_categories``.
MAX_CATEGORIES = 100


@dataclass(frozen=True)
class CategoricalSchema:
    """Ordered columns, each with its ordered categories.

    Parameters
    ----------
    columns : tuple of (name, tuple of category strings)
    inferred : bool
        True when the categories were read off the data rather than declared.
    """

    columns: tuple[tuple[str, tuple[str, ...]], ...]
    inferred: bool = False

    def __post_init__(self):
        names = [name for name, _ in self.columns]
        if not names:
            raise ValueError("a schema needs at least one column")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in schema: {names}")
        for name, cats in self.columns:
            if len(cats) == 0:
                raise ValueError(f"column {name!r} has no categories")
            if len(set(cats)) != len(cats):
                raise ValueError(f"column {name!r} lists a category twice: {list(cats)}")

    # -- shape -------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def categories(self) -> list[tuple[str, ...]]:
        return [cats for _, cats in self.columns]

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of categories per column, in column order."""
        return tuple(len(cats) for _, cats in self.columns)

    @property
    def n_cells(self) -> int:
        """Size of the full joint table (the multinomial's cells)."""
        return prod(self.shape)

    # -- codes -------------------------------------------------------------
    def to_codes(self, df: pd.DataFrame) -> np.ndarray:
        """Map a frame of category strings to integer codes.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_features), int64

        Raises ValueError naming the column, the value, the first row and how many
        rows break it when a value is not in the schema or missing (validation
        catches this earlier for files). Columns are matched by name, in any order.
        """
        codes = np.empty((len(df), len(self.columns)), dtype=np.int64)
        for j, (name, cats) in enumerate(self.columns):
            col = _category_codes(df[name], cats)  # -1: not a category
            bad = col < 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                value = df[name].iloc[i]
                shown = "an empty cell" if value is pd.NA or value != value else f"value {value!r}"
                more = f" ({int(bad.sum())} rows in all)" if bad.sum() > 1 else ""
                raise ValueError(
                    f"column {name!r}: {shown} in row {i} is not one of {list(cats)}{more}")
            codes[:, j] = col
        return codes

    def from_codes(self, codes: np.ndarray) -> pd.DataFrame:
        """Inverse of :meth:`to_codes`: (n, n_features) ints -> frame of strings."""
        codes = np.asarray(codes)
        return pd.DataFrame({
            name: np.asarray(cats, dtype=object)[codes[:, j]]
            for j, (name, cats) in enumerate(self.columns)
        })

    def cell_index(self, codes: np.ndarray) -> np.ndarray:
        """Flat index of each row's cell in the joint table (C order), shape (n,)."""
        codes = np.asarray(codes)
        return np.ravel_multi_index(tuple(codes.T), self.shape)

    def cell_codes(self, index: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`cell_index`: flat indices -> (n, n_features) codes."""
        return np.stack(np.unravel_index(np.asarray(index), self.shape), axis=1).astype(np.int64)

    # -- files -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"columns": {name: list(cats) for name, cats in self.columns}}

    def to_yaml(self, path: Path | str) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "schema") -> "CategoricalSchema":
        if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
            raise ValueError(
                f"{source}: expected a mapping with a 'columns' mapping of "
                f"column name -> list of categories, got {type(data).__name__}")
        extra = set(data) - {"columns"}
        if extra:
            raise ValueError(f"{source}: unknown keys {sorted(extra)}; only 'columns' is allowed")
        columns = []
        for name, cats in data["columns"].items():
            if not isinstance(cats, list) or not cats:
                raise ValueError(f"{source}: column {name!r} needs a non-empty list of categories")
            columns.append((str(name), tuple(str(c) for c in cats)))
        try:
            return cls(tuple(columns))
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: Path | str) -> "CategoricalSchema":
        path = Path(path)
        try:
            # BaseLoader: every scalar a string, as written (safe_load reads yes as True, 01 as 1)
            data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=yaml.BaseLoader)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def infer(cls, df: pd.DataFrame) -> "CategoricalSchema":
        """Schema read off the data: every column, its sorted distinct non-null values."""
        columns = tuple(
            (str(name), tuple(sorted(str(v) for v in df[name].dropna().unique())))
            for name in df.columns
        )
        return cls(columns, inferred=True)


def _category_codes(column: pd.Series, cats: tuple[str, ...]) -> np.ndarray:
    """Position of each value of ``column`` in ``cats``, -1 when absent or missing."""
    index = pd.Index(cats)
    if isinstance(column.dtype, pd.CategoricalDtype):
        # look up each distinct value once, then index by the column's own codes
        lookup = np.append(index.get_indexer(column.cat.categories.astype(object)), -1)
        return lookup[column.cat.codes.to_numpy()]  # code -1 (missing) -> lookup[-1] = -1
    return index.get_indexer(column.astype(object))
