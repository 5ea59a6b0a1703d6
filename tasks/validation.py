"""Validate ingested data with Great Expectations before anything is fitted.

Every input becomes a pandas frame with one row per record (a CSV line, an
entry of an image folder); each data rule is a real GX expectation run on a GX
batch of that frame, through a GX checkpoint. A broken rule is reported with the
file, the rule and the first offending lines or images with their values; the
full report (GX results plus our summary) is kept as JSON under
``reports/validation/``, and each GX run's Data Docs page (HTML; a failing rule
lists every offending value with its file line or image name) under ``gx/``.
The input is only ever read.

This is the one module of the project that imports ``great_expectations``. It does
so lazily (importing GX costs seconds), into the project's file data context
(``gx/``: suites, validation definitions and checkpoints, validation results,
Data Docs), one per project and process, analytics and progress bars off.

Examples
--------
>>> report = validate("fashion", "data/fashion/train.csv")      # doctest: +SKIP
>>> print(report.summary())                                      # doctest: +SKIP
VALID fashion data: data/fashion/train.csv
...
data docs: gx/uncommitted/data_docs/local_site/validations/pmodel-fashion-.../pmodel-frame.html
>>> report.raise_if_failed()                                     # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from pmodel.datasets import fashion
from pmodel.datasets.registry import dataset_names, get_dataset, is_dataset
from pmodel.datasets.schema import MAX_CATEGORIES, MISSING_LABEL, MISSING_POLICIES, CategoricalSchema
from pmodel.datasets.user import fill_missing, header_problem
from pmodel.errors import DataValidationError
from pmodel import paths
from pmodel.paths import gx_dir, reports_dir, unwritable

#: Kinds for users' data; the built-in datasets' names (``fashion``, ``pixels``,
#: ``land``, ...) are kinds too, with the rules their registry entry declares.
#: Anything else must be the path of a schema YAML.
USER_KINDS = ("categorical", "images", "land")

#: Offending lines or images shown per rule (the JSON report lists them all).
N_EXAMPLES = 5

#: Land values read as missing, besides an empty cell.
LAND_MISSING = ("NaN", "nan")

#: A plain decimal number (optional sign, fraction, exponent); not inf or nan.
NUMBER_REGEX = r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$"

LAND_RANGES = {"lon": (-180.0, 180.0), "lat": (-90.0, 90.0)}

#: CSV rows validated at a time: a big file is checked chunk by chunk, so memory
#: stays at one chunk's (the rules are per row, or about the header).
CSV_CHUNK_ROWS = 500_000

#: Distinct values of a column kept while validating (beyond it: "or more").
DISTINCT_CAP = 100_000


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

@dataclass
class ValidationReport:
    """The outcome of validating one file or folder.

    Attributes
    ----------
    path : Path
        The file or folder validated.
    kind : str
        ``fashion``, ``pixels``, ``land``, ``categorical`` or ``images``.
    success : bool
        True when every rule held.
    failures : list of dict
        One per broken rule: ``rule`` (text), ``expectation`` (GX type, or None
        for a read step), ``column`` (or None), ``n_unexpected`` (offending
        rows, images or columns), ``examples`` (the first few, each
        ``{"line": int}`` or ``{"image": name}`` with its ``value``) and, for
        rules about the whole table, a ``detail`` text.
    notes : list of str
        What was assumed, e.g. categories inferred from the data.
    warnings : list of str
        What is valid but likely unwanted (a column with one value only).
    report_path : Path or None
        The full JSON report on disk.
    docs_pages : list of Path
        The Great Expectations Data Docs page (HTML) of each GX validation run
        (one per suite: most files need one; a land CSV two, its cells then its
        numbers; a big CSV one per chunk), in the order they ran. Empty when GX
        ran on no project (see the notes) or no rule could run.
    """

    path: Path
    kind: str
    success: bool
    failures: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    docs_pages: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """Human text: verdict and file, each broken rule with its first
        offending lines, images or columns, the warnings, the notes, and where
        the JSON report is."""
        lines = [f"{'VALID' if self.success else 'INVALID'} {self.kind} data: {self.path}"]
        for failure in self.failures:
            lines.append(f"  - {_describe_failure(failure)}")
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        lines += [f"data docs: {page}" for page in self.docs_pages]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`~pmodel.errors.DataValidationError` unless valid."""
        if not self.success:
            raise DataValidationError(self.summary(), path=self.path,
                                      report_path=self.report_path, failures=self.failures)


def _describe_failure(failure: dict) -> str:
    text = failure["rule"]
    examples = failure.get("examples") or []
    if examples:
        n = failure["n_unexpected"]
        noun = ("row" if "line" in examples[0] else "column" if "column" in examples[0]
                else "entry" if failure["column"] == "is_png" else "image")
        shown = ", ".join(_describe_example(e) for e in examples)
        more = f", and {n - len(examples)} more" if n > len(examples) else ""
        verb = "breaks" if n == 1 else "break"
        nouns = {"row": "rows", "image": "images", "entry": "entries", "column": "columns"}
        text += f" — {n} {noun if n == 1 else nouns[noun]} {verb} it: {shown}{more}"
    elif failure.get("detail"):
        text += f" — {failure['detail']}"
    return text


def _describe_example(example: dict) -> str:
    value = example.get("value")
    if "image" in example:
        return f"{example['image']} ({value})"
    if "column" in example:
        return f"{example['column']!r} ({value})"
    shown = "empty" if value is None else repr(value)
    if example.get("hint"):
        shown += f"; {example['hint']}"
    return f"line {example['line']} ({shown})"


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

def validate(kind: str, path: Path | str, *, report_dir: Path | str | None = None,
             missing: str = "error", max_categories: int = MAX_CATEGORIES) -> ValidationReport:
    """Validate a file or folder against the rules of its kind.

    Parameters
    ----------
    kind : str
        ``fashion`` (the built-in fashion schema), ``pixels`` (a folder of
        32x32 8-bit grayscale PNGs), ``land`` (a CSV of lon, lat),
        ``categorical`` (a CSV; categories inferred from the data),
        ``images`` (a folder of same-sized 8-bit grayscale PNGs of any size),
        or the path of a schema YAML for a categorical CSV.
    path : path-like
        The CSV file or image folder. It is only read.
    report_dir : path-like, optional
        Where the JSON report goes (default ``reports/validation``).
    missing : ``error`` or ``category``
        A user's categorical CSV: what an empty cell is (refused, or the
        category ``<missing>``).
    max_categories : int
        A categorical CSV without a schema: the most distinct values a column
        may have (more is likely an ID or free text).

    Returns
    -------
    ValidationReport
        Never raises for bad data; call ``raise_if_failed`` to stop on it.

    Raises
    ------
    ValueError
        When ``kind`` is unknown or its schema file cannot be read.
    """
    if is_dataset(kind):
        return validate_builtin(kind, path, report_dir=report_dir)
    table = {"missing": missing, "max_categories": max_categories}
    if kind == "categorical":
        return validate_categorical_csv(path, None, report_dir=report_dir, **table)
    if kind == "land":
        return validate_land_csv(path, report_dir=report_dir)
    if kind == "images":
        return validate_image_folder(path, None, report_dir=report_dir)
    schema_path = Path(kind)
    if schema_path.suffix.lower() not in (".yaml", ".yml") and not schema_path.is_file():
        kinds = sorted(set(dataset_names()) | set(USER_KINDS))
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(kinds)}, "
                         "or the path of a schema YAML file")
    try:
        schema = CategoricalSchema.from_yaml(schema_path)
    except OSError as exc:
        raise ValueError(f"cannot read schema file {schema_path}: {exc.strerror or exc}") from None
    return validate_categorical_csv(path, schema, report_dir=report_dir,
                                    schema_source=schema_path, **table)


def validate_builtin(name: str, path: Path | str, *, report_dir: Path | str | None = None
                     ) -> ValidationReport:
    """Validate a file of built-in dataset ``name`` with the rules its registry entry declares."""
    rules = get_dataset(name).validation
    if rules.format == "categorical-csv":
        from pmodel.datasets.registry import resolve

        schema = resolve(rules.schema) if isinstance(rules.schema, str) else rules.schema
        return validate_categorical_csv(path, schema, kind=name, report_dir=report_dir)
    if rules.format == "points-csv":
        return validate_land_csv(path, kind=name, report_dir=report_dir)
    if rules.format == "png-folder":
        return validate_image_folder(path, rules.image_size, kind=name, report_dir=report_dir)
    raise ValueError(f"dataset {name!r}: unknown validation format {rules.format!r}")


# ---------------------------------------------------------------------------
# Categorical CSV
# ---------------------------------------------------------------------------

def validate_categorical_csv(path: Path | str, schema: CategoricalSchema | None, *,
                             kind: str = "categorical", report_dir: Path | str | None = None,
                             schema_source: Path | None = None, missing: str = "error",
                             max_categories: int = MAX_CATEGORIES) -> ValidationReport:
    """Validate a CSV of categorical columns.

    Every cell is read as the label written (``TRUE``, ``01``, ``NA`` are
    labels); only an empty cell is missing. Rules: at least one data row;
    columns exactly the schema's (any order); with ``missing="error"`` no
    missing value (empty cell, blank line); with ``missing="category"`` an
    empty cell is the category ``<missing>``, so that label may not be written
    in the file and no line may be blank (every cell empty: a stray line, not a
    record) when the table has two columns or more; every value one of its
    column's categories (``<missing>`` included, where the schema lists it).
    Without a schema (``schema=None``) the columns and categories are read off
    the data, which the notes say, and a column may have at most
    ``max_categories`` distinct values. A column with one value only is valid,
    with a warning. Data row ``i`` is reported as file line ``i + 2``.
    ``kind`` names the data in messages and reports; ``schema_source`` is the
    YAML the schema came from, if any (said in the notes).
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing: expected one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    path = Path(path)
    notes = []
    if schema is None:
        notes.append("categories inferred from the data (no schema given)")
    elif is_dataset(kind):
        notes.append(f"checked against the built-in {kind} schema")
    elif schema_source is not None:
        notes.append(f"checked against the schema in {schema_source}")
    if missing == "category":
        notes.append(f"missing: category (an empty cell is the category {MISSING_LABEL!r})")
    label = kind if schema_source is None else f"schema_{schema_source.stem}"
    # a report per set of rules: the same file checked under other rules keeps its own
    label += "".join(part for part, default in ((f"+missing_{missing}", missing == "error"),
                                                (f"+max_{max_categories}",
                                                 schema is not None or max_categories == MAX_CATEGORIES))
                     if not default)
    check = _Check(path, kind, label, notes, report_dir)
    if check.expect_file() and check.expect_named_columns():
        distinct: dict[str, _Distinct] = {}
        for df in check.read_csv_chunks(fashion.read_csv):
            filled = fill_missing(df, "category") if missing == "category" else df
            on_read, on_filled = _categorical_rules(df, filled, schema, missing)
            if filled is df:   # missing: error, nothing filled: one suite on one batch
                check.run(df, on_read + on_filled)
            else:
                check.run(df, on_read)
                if on_filled:
                    check.run(filled, on_filled)
            if missing == "category" and len(df.columns) > 1:
                check.run(*_blank_line_rule(df))
            for c in filled.columns:
                values = filled[c].dropna()
                distinct.setdefault(str(c), _Distinct()).update(values.unique(), len(values))
        if check.n_rows and distinct:
            if schema is None:
                counts = ", ".join(f"{c} ({v.text()})" for c, v in distinct.items())
                check.notes.append(f"categories per column: {counts}")
                check.run(*_category_count_rule(distinct, max_categories))
            for c, v in distinct.items():
                if v.n == 1:
                    where = (f"in all {check.n_rows} rows" if v.n_cells == check.n_rows else
                             f"in {v.n_cells} of {check.n_rows} rows, the others empty")
                    check.warnings.append(
                        f"column {c!r} has one value only ({next(iter(v.values))!r} {where}): it "
                        "carries no information; drop it from the CSV")
    return check.finish()


class _Distinct:
    """A column's distinct values across chunks, kept up to :data:`DISTINCT_CAP` (an ID
    column of ten million rows must not hold them all)."""

    def __init__(self):
        self.values: set[str] = set()
        self.capped = False
        self.n_cells = 0   # cells with a value

    def update(self, values, n_cells: int) -> None:
        self.n_cells += n_cells
        if self.capped:
            return
        self.values.update(str(v) for v in values)
        if len(self.values) > DISTINCT_CAP:
            self.capped = True

    @property
    def n(self) -> int:
        return len(self.values)

    def text(self) -> str:
        return f"{self.n:,}" + (" or more" if self.capped else "")


def _category_count_rule(distinct: dict[str, "_Distinct"], max_categories: int
                         ) -> tuple[pd.DataFrame, list["_Rule"]]:
    """The limit on distinct values, a GX rule on a table of one row per column."""
    names = list(distinct)
    table = pd.DataFrame({"n_distinct": [distinct[c].n for c in names]},
                         index=pd.Index(names, dtype=object))

    def shown(name: str) -> str:
        d = distinct[name]
        some = ", ".join(repr(v) for v in sorted(d.values)[:3])
        return f"{d.text()} distinct values, e.g. {some}"

    rule = _Rule(_expectations().ExpectColumnValuesToBeBetween(column="n_distinct",
                                                               max_value=max_categories),
                 f"a column may have at most {max_categories} distinct values (max_categories; "
                 "more is likely an ID or free text: drop the column from the CSV, or raise "
                 "max_categories if its values really are categories)",
                 value=shown, key="column")   # the offenders are columns, named in the examples
    return table, [rule]


def _categorical_rules(df: pd.DataFrame, filled: pd.DataFrame, schema: CategoricalSchema | None,
                       missing: str) -> tuple[list["_Rule"], list["_Rule"]]:
    """The rules of one chunk: those on ``df`` as read (missing cells <NA>), and those on
    ``filled``, the same after the missing policy (the categories)."""
    gxe = _expectations()
    names = schema.names if schema is not None else [str(c) for c in df.columns]
    rules = [_row_count_rule("the file must have at least one data row",
                             "no data rows (header only)"),
             _Rule(gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=True),
                   f"columns must be exactly [{', '.join(names)}] (in any order)")]
    present = [name for name in names if name in df.columns]
    for name in present:
        if missing == "error":
            rules.append(_Rule(gxe.ExpectColumnValuesToNotBeNull(column=name),
                               f"column {name!r}: no value may be missing (empty cell or blank "
                               f"line; missing: category would read it as {MISSING_LABEL!r})",
                               column=name, value=_cell(df, name)))
        else:
            rules.append(_Rule(gxe.ExpectColumnValuesToNotBeInSet(column=name,
                                                                  value_set=[MISSING_LABEL]),
                               f"column {name!r}: {MISSING_LABEL!r} may not be written in the file "
                               "(missing: category reads an empty cell as that category)",
                               column=name, value=_cell(df, name)))
    in_set = []
    if schema is not None:
        categories = dict(schema.columns)
        for name in present:
            cats = list(categories[name])
            in_set.append(_Rule(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=cats),
                               f"column {name!r}: values must be one of {_short_list(cats)}",
                               column=name, value=_cell(filled, name),
                               hint=_case_hint(cats, missing)))
    return rules, in_set


def _blank_line_rule(df: pd.DataFrame) -> tuple[pd.DataFrame, list["_Rule"]]:
    """Under ``missing: category``: no line may be blank. A GX rule on a frame of its own
    (one column, ``blank``, True where every cell of the line is empty)."""
    table = pd.DataFrame({"blank": df.isna().all(axis=1).to_numpy()}, index=df.index)
    return table, [_Rule(_expectations().ExpectColumnValuesToBeInSet(column="blank",
                                                                     value_set=[False]),
                         "no line may be blank (every cell empty): missing: category reads "
                         "empty cells, not empty lines", column="blank",
                         value=lambda key: None)]


def _case_hint(categories: list[str], missing: str = "error") -> Callable[[Any], str | None]:
    folded = {c.strip().casefold(): c for c in categories}

    def hint(value: Any) -> str | None:
        if missing == "category" and value == MISSING_LABEL:
            return f"an empty cell: list {MISSING_LABEL!r} among the column's categories in the schema"
        match = folded.get(str(value).strip().casefold())
        return None if match is None else f"did you mean {match!r}?"
    return hint


def _short_list(items: list[str], limit: int = 12) -> str:
    if len(items) <= limit:
        return f"[{', '.join(items)}]"
    return f"[{', '.join(items[:limit - 2])}, ... ({len(items)} in all)]"


# ---------------------------------------------------------------------------
# Land CSV
# ---------------------------------------------------------------------------

def validate_land_csv(path: Path | str, *, kind: str = "land",
                      report_dir: Path | str | None = None) -> ValidationReport:
    """Validate a CSV of points with exactly the columns ``lon`` and ``lat``.

    Rules: at least one row; columns exactly lon, lat; no missing value
    (empty cell, ``NaN``, ``nan``); every value a plain decimal number (so
    ``abc`` and ``inf`` fail); lon in [-180, 180] and lat in [-90, 90]
    (checked on the numbers; ``inf`` is out of range too).
    """
    path = Path(path)
    check = _Check(path, kind, kind, [], report_dir)
    if check.expect_file():
        for text in check.read_csv_chunks(_read_land_csv):   # the cells as written, to show
            gxe = _expectations()
            raw = text.mask(text.isin(LAND_MISSING))
            rules = [_row_count_rule("the file must have at least one data row",
                                     "no data rows (header only)"),
                     _Rule(gxe.ExpectTableColumnsToMatchSet(column_set=list(LAND_RANGES),
                                                            exact_match=True),
                           "columns must be exactly [lon, lat] (in any order)")]
            present = [c for c in LAND_RANGES if c in raw.columns]
            for c in present:
                rules.append(_Rule(gxe.ExpectColumnValuesToNotBeNull(column=c),
                                   f"column {c!r}: no value may be missing "
                                   f"(empty cell, {', '.join(LAND_MISSING)})",
                                   column=c, value=_cell(text, c)))
                rules.append(_Rule(gxe.ExpectColumnValuesToMatchRegex(column=c,
                                                                      regex=NUMBER_REGEX),
                                   f"column {c!r}: values must be numbers",
                                   column=c, value=_cell(text, c)))
            check.run(raw, rules)
            if present:
                # Ranges are checked on numbers; text that is no number becomes
                # missing here (the regex rule above names it), inf stays inf.
                numbers = pd.DataFrame(
                    {c: pd.to_numeric(raw[c], errors="coerce").astype("float64")
                     for c in present}, index=raw.index)
                rules = [_Rule(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo,
                                                                 max_value=hi),
                               f"column {c!r}: values must be between {lo:g} and {hi:g}",
                               column=c, value=_cell(text, c))
                         for c, (lo, hi) in LAND_RANGES.items() if c in present]
                check.run(numbers, rules)
    return check.finish()


def _read_land_csv(path: Path, chunksize: int | None = None):
    return pd.read_csv(path, dtype="string", skip_blank_lines=False, keep_default_na=False,
                       na_values=[""], chunksize=chunksize)


# ---------------------------------------------------------------------------
# A held-out file against its training file
# ---------------------------------------------------------------------------

def validate_heldout_against_train(kind: str, train: Path | str, heldout: Path | str, *,
                                   report_dir: Path | str | None = None
                                   ) -> ValidationReport | None:
    """Check a dataset's held-out file against its training file, each valid alone.

    Rules: ``categorical`` (no schema): the held-out CSV has exactly the
    training CSV's columns, in any order (its categories may differ: the
    schema is inferred from both files); ``images``: the held-out images have
    the training images' size (the most common one in the training folder).
    Other kinds have fixed columns or a schema that both files were checked
    against already: None (nothing to compare).
    """
    train, heldout = Path(train), Path(heldout)
    if kind == "categorical":
        names = [str(c) for c in _read_header(train).columns]
        check = _Check(heldout, kind, f"{kind}-vs-train", [f"compared with the training file {train}"],
                       report_dir)
        for df in check.read_csv_chunks(_read_header):
            check.run(df, [_Rule(_expectations().ExpectTableColumnsToMatchSet(
                column_set=names, exact_match=True),
                f"columns must be those of the training file {train}: "
                f"[{', '.join(names)}] (in any order)")])
        return check.finish()
    if kind == "images":
        sizes = Counter(s for s in _image_table(train)["size"] if isinstance(s, str))
        if not sizes:
            return None  # the training folder's own report says it has no image
        expected = sizes.most_common(1)[0][0]
        check = _Check(heldout, kind, f"{kind}-vs-train", [f"compared with the training folder {train}"],
                       report_dir)
        if check.expect_folder():
            df = _image_table(heldout)
            check.run(df, [_Rule(_expectations().ExpectColumnValuesToBeInSet(
                column="size", value_set=[expected]),
                f"every image must be {expected} pixels (width x height), the size of the "
                f"training images in {train}", column="size", value=_cell(df, "size"))])
        return check.finish()
    return None


def _read_header(path: Path, chunksize: int | None = None):
    """The CSV's header as an empty frame (in a list, the shape of a chunk reader)."""
    header = pd.read_csv(path, dtype="string", nrows=0)
    return header if chunksize is None else [header]


# ---------------------------------------------------------------------------
# Image folder
# ---------------------------------------------------------------------------

def validate_image_folder(path: Path | str, size: tuple[int, int] | None = None, *,
                          kind: str = "images", report_dir: Path | str | None = None
                          ) -> ValidationReport:
    """Validate a folder of 8-bit grayscale PNGs that share one size.

    Every entry of the folder counts (hidden files and subfolders too), in
    sorted order. Rules: at least one entry; every entry a ``.png`` file;
    every PNG readable (Pillow opens and decodes it); mode ``L``; one size,
    ``size = (height, width)`` or, when None, the most common size in the
    folder (the notes say which).
    """
    path = Path(path)
    check = _Check(path, kind, kind, [], report_dir)
    if check.expect_folder():
        df = _image_table(path)
        gxe = _expectations()
        rules = [_row_count_rule("the folder must hold at least one image",
                                 "no images (the folder is empty)"),
                 _Rule(gxe.ExpectColumnValuesToBeInSet(column="is_png", value_set=[True]),
                       "every entry must be a .png file", column="is_png",
                       value=_cell(df, "entry")),
                 _Rule(gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
                       "every PNG must be readable (Pillow opens and decodes it as a PNG)",
                       column="readable", value=_cell(df, "error")),
                 _Rule(gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=["L"]),
                       "every image must be 8-bit grayscale (mode 'L')", column="mode",
                       value=lambda name: f"mode {df.at[name, 'mode']}")]
        expected = _expected_size(df, size, check.notes)
        if expected is not None:
            rules.append(_Rule(gxe.ExpectColumnValuesToBeInSet(column="size",
                                                               value_set=[expected]),
                               f"every image must be {expected} pixels (width x height)",
                               column="size", value=_cell(df, "size")))
        check.run(df, rules)
    return check.finish()


def _image_table(folder: Path) -> pd.DataFrame:
    """One row per folder entry, indexed by name: what it is and, for a PNG,
    whether Pillow decodes it, its mode and its size as ``"{w}x{h}"``."""
    from PIL import Image

    rows = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        is_png = entry.is_file() and entry.suffix == ".png"
        if entry.is_dir():
            what = "a folder"
        elif entry.suffix:
            what = f"a {entry.suffix} file"
        else:
            what = "a file without extension"
        row = {"name": entry.name, "entry": what, "is_png": is_png, "readable": None,
               "error": None, "mode": None, "width": None, "height": None, "size": None}
        if is_png:
            try:
                with Image.open(entry) as im:
                    im.load()
                    if im.format != "PNG":
                        raise ValueError(f"a {im.format} image, not a PNG")
                    row.update(mode=im.mode, width=im.width, height=im.height,
                               size=f"{im.width}x{im.height}")
                row["readable"] = True
            except Exception as exc:  # Pillow raises many types for bad files
                message = str(exc).replace(str(entry), entry.name)
                row.update(readable=False, error=f"{type(exc).__name__}: {message}")
        rows.append(row)
    columns = ["name", "entry", "is_png", "readable", "error", "mode", "width", "height",
               "size"]
    # object columns keep None as None (pandas 3 would infer str and use NaN)
    df = pd.DataFrame(rows, columns=columns, dtype=object)
    return df.set_index(pd.Index(df["name"].tolist(), dtype=object))


def _expected_size(df: pd.DataFrame, size: tuple[int, int] | None,
                   notes: list[str]) -> str | None:
    if size is not None:
        height, width = size
        return f"{width}x{height}"
    sizes = Counter(s for s in df["size"] if isinstance(s, str))
    if not sizes:
        return None
    expected, count = sizes.most_common(1)[0]
    notes.append(f"expected size {expected} (width x height): the most common in the folder "
                 f"({count} of {sum(sizes.values())} readable images)")
    return expected


# ---------------------------------------------------------------------------
# Running one validation
# ---------------------------------------------------------------------------

@dataclass
class _Rule:
    """A GX expectation with the text we report and how to show an offender."""

    expectation: Any
    text: str
    column: str | None = None
    value: Callable[[Any], Any] | None = None   # index key -> value to show
    hint: Callable[[Any], str | None] | None = None
    detail: str | None = None                   # for table-level rules
    key: str | None = None                      # what the frame's index names: "line" (an int),
                                                # "image" (a str; the default for both), "column"


def _row_count_rule(text: str, detail: str) -> _Rule:
    return _Rule(_expectations().ExpectTableRowCountToBeBetween(min_value=1), text,
                 detail=detail)


def _cell(df: pd.DataFrame, column: str) -> Callable[[Any], Any]:
    def value(key: Any) -> Any:
        v = df.at[key, column]
        return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v
    return value


class _Check:
    """Collects the failures, notes and GX results of one validation and
    writes its report."""

    def __init__(self, path: Path, kind: str, label: str, notes: list[str],
                 report_dir: Path | str | None):
        self.path, self.kind, self.label, self.notes = path, kind, label, notes
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.failures: list[dict] = []
        self.warnings: list[str] = []
        self.gx_results: list[dict] = []
        self.docs_pages: list[Path] = []
        self.n_rows = 0  # data rows read so far

    # -- read steps (no GX batch can exist yet) ------------------------------
    def _fail_read(self, rule: str, detail: str) -> None:
        self.failures.append({"rule": rule, "expectation": None, "column": None,
                              "n_unexpected": 0, "examples": [], "detail": detail})

    def expect_file(self) -> bool:
        if not self.path.exists():
            self._fail_read("the file must exist", "no such file")
        elif not self.path.is_file():
            self._fail_read("the path must be a CSV file", "it is a folder, not a file")
        else:
            return True
        return False

    def expect_named_columns(self) -> bool:
        """A CSV's header names every column, once (pandas would rename silently)."""
        problem = header_problem(self.path)
        if problem is not None:
            self._fail_read("every column must have a name, used once (the header line)", problem)
            return False
        return True

    def expect_folder(self) -> bool:
        if not self.path.exists():
            self._fail_read("the folder must exist", "no such folder")
        elif not self.path.is_dir():
            self._fail_read("the path must be a folder of PNG images",
                            "it is a file, not a folder")
        else:
            return True
        return False

    def read_csv_chunks(self, reader: Callable[..., Any]) -> Iterator[pd.DataFrame]:
        """The CSV in frames of up to ``CSV_CHUNK_ROWS`` rows, indexed by file line
        (data row i is line i + 2); or, when it cannot be read, record why and
        stop. ``reader(path, chunksize=n)`` returns pandas' chunk iterator.

        A header-only file gives one empty frame (pandas' own behaviour), so the
        row-count rule sees it.
        """
        rule = "the file must be readable as a CSV with a header line"
        try:
            for df in reader(self.path, chunksize=CSV_CHUNK_ROWS):
                if not isinstance(df.index, pd.RangeIndex):
                    # pandas takes the first field as an index when every line has
                    # one field more than the header
                    self._fail_read(rule, "the data lines have more fields than the header")
                    return
                df.index = pd.RangeIndex(2 + self.n_rows, 2 + self.n_rows + len(df))
                self.n_rows += len(df)
                yield df
        except pd.errors.EmptyDataError:
            size = self.path.stat().st_size
            self._fail_read(rule, "the file is empty" + (" (0 bytes)" if size == 0 else
                                                          " (no header line)"))
        except UnicodeDecodeError as exc:
            self._fail_read(rule, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        except (pd.errors.ParserError, ValueError, OSError) as exc:
            self._fail_read(rule, " ".join(str(exc).split()))

    # -- GX -------------------------------------------------------------------
    def run(self, df: pd.DataFrame, rules: list[_Rule]) -> None:
        """Run the rules as one GX suite on a batch of ``df``; keep the results
        and turn every unsuccessful one into a failure."""
        results, page = _run_suite(df, [r.expectation for r in rules], f"pmodel-{self.label}",
                                   run_name=f"{self.label}-{self.path.stem}")
        self.gx_results.append(results.to_json_dict())
        if page is not None:
            self.docs_pages.append(page)
        elif (note := _gx().note) and note not in self.notes:
            self.notes.append(note)
        for rule, result in zip(rules, _in_suite_order(results, len(rules))):
            if not result.success:
                self._add_failure(_failure(rule, result))

    def _add_failure(self, failure: dict) -> None:
        """Record a failure; the same rule broken again in a later chunk adds
        its offending rows to the first report of it."""
        same = next((f for f in self.failures if f["rule"] == failure["rule"]), None)
        if same is None:
            self.failures.append(failure)
        elif same["examples"] or failure["examples"]:
            same["n_unexpected"] += failure["n_unexpected"]
            same["examples"] = (same["examples"] + failure["examples"])[:N_EXAMPLES]

    # -- report -----------------------------------------------------------------
    def finish(self) -> ValidationReport:
        report = ValidationReport(path=self.path, kind=self.kind, success=not self.failures,
                                  failures=self.failures, notes=self.notes,
                                  warnings=self.warnings, docs_pages=self.docs_pages)
        digest = _digest(self.path)
        folder = self.report_dir if self.report_dir is not None else (
            reports_dir() / "validation")
        report.report_path = folder / f"{self.label}-{self.path.stem}-{digest[:12]}.json"
        payload = {
            "path": str(self.path), "kind": self.kind, "success": report.success,
            "input_sha256": digest, "summary": report.summary(), "notes": report.notes,
            "warnings": report.warnings, "failures": report.failures,
            "data_docs": [str(page) for page in report.docs_pages],
            "great_expectations": {"version": _gx_version(), "results": self.gx_results},
        }
        folder.mkdir(parents=True, exist_ok=True)
        # write then rename, to a name of its own: threads may validate the same input
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{report.report_path.name}.",
                                   suffix=".tmp")
        os.chmod(fd, 0o644)   # mkstemp makes it private; a report is for reading
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(payload, indent=2, default=str))
        os.replace(tmp, report.report_path)
        return report


def _failure(rule: _Rule, result: Any) -> dict:
    info = result.result or {}
    failure = {"rule": rule.text, "expectation": result.expectation_config.type,
               "column": rule.column, "n_unexpected": 0, "examples": []}
    exception = result.exception_info or {}
    if exception.get("raised_exception"):
        failure["detail"] = f"GX could not evaluate it: {exception.get('exception_message')}"
    elif "unexpected_index_list" in info:
        keys = info["unexpected_index_list"] or []
        failure["n_unexpected"] = int(info.get("unexpected_count", len(keys)))
        failure["examples"] = [_example(rule, key) for key in keys[:N_EXAMPLES]]
    else:
        mismatched = (info.get("details") or {}).get("mismatched")
        if mismatched:
            missing, extra = mismatched.get("missing", []), mismatched.get("unexpected", [])
            failure["n_unexpected"] = len(missing) + len(extra)
            parts = [f"missing: {_names(missing)}" if missing else "",
                     f"unexpected: {_names(extra)}" if extra else ""]
            failure["detail"] = "; ".join(p for p in parts if p)
        else:
            failure["detail"] = rule.detail or f"observed {info.get('observed_value')!r}"
        failure["observed"] = info.get("observed_value")
    return failure


def _names(names: list[Any]) -> str:
    """Column names, quoted when blank or padded so they stay visible."""
    return ", ".join(n if isinstance(n, str) and n and n == n.strip() else repr(n)
                     for n in names)


def _example(rule: _Rule, key: Any) -> dict:
    # CSV frames are indexed by file line, image tables by file name, a table of columns by name
    if rule.key == "column":
        example: dict[str, Any] = {"column": key}
    else:
        example = {"image": key} if isinstance(key, str) else {"line": int(key)}
    value = rule.value(key) if rule.value is not None else None
    example["value"] = value.item() if hasattr(value, "item") else value
    if rule.hint is not None and value is not None:
        hint = rule.hint(value)
        if hint:
            example["hint"] = hint
    return example


def _digest(path: Path) -> str:
    """The input's sha256 as everything else records it (the manifest, the
    caches, the MLflow dataset inputs): :func:`pmodel.datasets.digest.path_digest`."""
    from pmodel.datasets.digest import path_digest

    return path_digest(path) if path.exists() else hashlib.sha256(b"<missing>").hexdigest()


# ---------------------------------------------------------------------------
# Great Expectations (imported lazily; one file data context per project)
# ---------------------------------------------------------------------------

# Prefect runs tasks on threads: GX's batch state and stores are shared, and the
# context must be made once.
_GX_LOCK = threading.Lock()
_INIT_LOCK = threading.Lock()

#: The Data Docs site pmodel builds (GX's default local site).
DOCS_SITE = "local_site"

#: Past validations listed on the Data Docs index page. pmodel renders only each
#: validation's own page; building the index (``context.build_data_docs()``) reads
#: every result it lists, so this bounds what that costs.
DOCS_INDEX_LIMIT = 50


#: Bumped when the checkpoints pmodel stores change shape (their actions, ...): stored
#: ones are found by a digest of this and their rules, so old ones are never reused.
CHECKPOINT_LAYOUT = 1


@dataclass(frozen=True)
class _GX:
    """GX on one project: the module, its data context (a file context under
    ``gx/``, or an ephemeral one where that folder cannot be written), the
    whole-dataframe batch definition, and the lock file other processes share."""

    gx: Any
    context: Any
    batch_definition: Any
    lock: Path | None   # None: an ephemeral context (no stores, no Data Docs)
    note: str | None = None


def _gx() -> _GX:
    """GX on the current project (``$PMODEL_HOME``), made on first use."""
    with _INIT_LOCK:
        return _make_gx(str(gx_dir()))


@functools.cache
def _make_gx(root: str) -> _GX:
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root_path = Path(root)
    blocked = unwritable(root_path)
    if blocked is None:
        root_path.mkdir(parents=True, exist_ok=True)
        lock = root_path / ".pmodel.lock"
        # made once per project, by one process at a time (GX's scaffolding and
        # great_expectations.yml are not safe to write concurrently)
        with paths.file_lock(lock):
            context = gx.get_context(mode="file", project_root_dir=str(root_path.parent))
            if context.variables.config_variables_file_path:
                # No config variables (pmodel validates in-memory frames: no credentials).
                # GX rereads that file on each of its settings' reads, about 60 a
                # validation, which doubled the cost of one.
                context.variables.config_variables_file_path = None
                context.variables.save()
                context = gx.get_context(mode="file", project_root_dir=str(root_path.parent))
            _configure_docs_site(context)
            batch_definition = _batch_definition(context)
        note = None
    else:
        context, lock = gx.get_context(mode="ephemeral"), None
        batch_definition = _batch_definition(context)
        note = (f"no Data Docs page: {blocked} is not writable (Great Expectations ran on a "
                "temporary context)")
    context.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                         metric_calculations=False)
    return _GX(gx, context, batch_definition, lock, note)


def _batch_definition(context: Any) -> Any:
    """The whole-dataframe batch definition every suite runs on (added once)."""
    try:
        source = context.data_sources.get("pmodel")
    except KeyError:
        source = context.data_sources.add_pandas("pmodel")
    try:
        asset = source.get_asset("frame")
    except LookupError:
        asset = source.add_dataframe_asset("frame")
    try:
        return asset.get_batch_definition("whole")
    except KeyError:
        return asset.add_batch_definition_whole_dataframe("whole")


def _configure_docs_site(context: Any) -> None:
    """GX's local site without its tutorial buttons; its index, when built
    (``context.build_data_docs()``), lists the latest :data:`DOCS_INDEX_LIMIT`
    validations. Saved in great_expectations.yml once."""
    site = context.variables.data_docs_sites[DOCS_SITE]
    index = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
    if site.get("show_how_to_buttons") is False and index.get("validation_results_limit"):
        return
    site["show_how_to_buttons"] = False
    index.update(show_how_to_buttons=False, validation_results_limit=DOCS_INDEX_LIMIT)
    context.update_data_docs_site(DOCS_SITE, site)


def _expectations() -> Any:
    _gx()
    import great_expectations.expectations as gxe

    return gxe


def _gx_version() -> str | None:
    gx = sys.modules.get("great_expectations")
    return getattr(gx, "__version__", None)


def _run_suite(df: pd.DataFrame, expectations: list[Any], name: str,
               run_name: str = "pmodel") -> tuple[Any, Path | None]:
    """Run ``expectations`` on ``df`` through a GX checkpoint: its results and the
    Data Docs page of this validation (None on an ephemeral context).

    The suite, its validation definition and its checkpoint are named
    ``{name}-{digest of the expectations}``: the same rules reuse them, other rules
    (another file's inferred columns) get their own, so concurrent validations never
    rewrite one another's. The checkpoint stores the result in the project's
    validation store; then only this validation's Data Docs page is rendered.
    """
    g = _gx()
    suite = g.gx.ExpectationSuite(name=name)
    for i, expectation in enumerate(expectations):
        expectation.meta = {"pmodel_rule": i}
        suite.add_expectation(expectation)
    result_format = {"result_format": "COMPLETE"}
    with _GX_LOCK:
        if g.lock is None:
            batch = g.batch_definition.get_batch(batch_parameters={"dataframe": df})
            return batch.validate(suite, result_format=result_format), None
        from great_expectations.core.run_identifier import RunIdentifier

        rules = json.dumps([CHECKPOINT_LAYOUT, result_format,
                            *(e.configuration.to_json_dict() for e in suite.expectations)],
                           sort_keys=True, default=str)
        suite.name = f"{name}-{hashlib.sha256(rules.encode()).hexdigest()[:12]}"
        with paths.file_lock(g.lock):
            checkpoint = _stored_checkpoint(g, suite, result_format)
            outcome = checkpoint.run(batch_parameters={"dataframe": df},
                                     run_id=RunIdentifier(run_name=run_name))
            (key, results), = outcome.run_results.items()
            # this validation's page only: UpdateDataDocsAction would also render the
            # suite's page and the index (which reads every listed result), costing
            # more than the validation itself
            g.context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[key],
                                      build_index=False)
        urls = g.context.get_docs_sites_urls(resource_identifier=key, site_name=DOCS_SITE)
        page = _file_path(urls[0]["site_url"]) if urls and urls[0].get("site_url") else None
        return results, page


def _stored_checkpoint(g: _GX, suite: Any, result_format: dict) -> Any:
    """The checkpoint (with its suite and validation definition) of ``suite.name``
    from the context's stores, added when missing."""
    from great_expectations.exceptions import DataContextError

    context = g.context
    try:
        return context.checkpoints.get(suite.name)
    except DataContextError:
        pass
    try:
        suite = context.suites.get(suite.name)
    except DataContextError:
        suite = context.suites.add(suite)
    try:
        definition = context.validation_definitions.get(suite.name)
    except DataContextError:
        definition = context.validation_definitions.add(g.gx.ValidationDefinition(
            name=suite.name, data=g.batch_definition, suite=suite))
    return context.checkpoints.add(g.gx.Checkpoint(
        name=suite.name, validation_definitions=[definition], result_format=result_format))


def _file_path(url: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


def _in_suite_order(results: Any, n: int) -> list[Any]:
    """The suite's results in the order its expectations were added."""
    ordered = [None] * n
    for result in results.results:
        ordered[(result.expectation_config.meta or {})["pmodel_rule"]] = result
    return ordered
