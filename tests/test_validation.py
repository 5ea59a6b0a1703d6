"""tasks.validation: valid inputs pass, a catalogue of bad inputs fails with
messages that name the file, the rule and the first offender, inputs are never
touched, and the CLI maps the outcome to exit codes 0 / 1 / 2."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pmodel.datasets import fashion
from pmodel.datasets.schema import CategoricalSchema
from pmodel.errors import DataValidationError
from tasks.validation import (ValidationReport, validate, validate_categorical_csv,
                              validate_heldout_against_train,
                              validate_image_folder, validate_land_csv)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """Reports go under the test's tmp folder, never into the repository."""
    monkeypatch.setenv("PMODEL_HOME", str(tmp_path / "home"))


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------

def _fashion_rows(n: int = 10) -> pd.DataFrame:
    return fashion.sample(n, rng=np.random.default_rng(0))


def _write_fashion(folder: Path, df: pd.DataFrame, name: str = "fashion.csv") -> Path:
    path = folder / name
    fashion.write_csv(df, path)
    return path


def _fashion_with(folder: Path, row: int, column: str, value: str) -> Path:
    df = _fashion_rows()
    df.loc[row, column] = value
    return _write_fashion(folder, df)


def _write_text(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_bytes(text.encode())
    return path


def _png(path: Path, mode: str = "L", size: tuple[int, int] = (32, 32)) -> None:
    """A PNG of ``size = (width, height)`` in ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def _png_folder(folder: Path, n: int = 3, size: tuple[int, int] = (32, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _png(folder / f"img{i:02d}.png", size=size)
    return folder


def _truncated_png(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _fingerprint(path: Path):
    """Bytes of a file, or the listing and bytes of a folder (None if missing)."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return sorted((p.name, _fingerprint(p) if p.is_file() else "<dir>")
                      for p in path.iterdir())
    return None


# ---------------------------------------------------------------------------
# Valid inputs
# ---------------------------------------------------------------------------

def _valid_fashion(d: Path):
    return "fashion", _write_fashion(d, fashion.sample(200, rng=np.random.default_rng(0)))


def _valid_land(d: Path):
    path = d / "points.csv"
    pd.DataFrame({"lon": [2.35, -74.0, 180.0, -180.0], "lat": [48.85, 40.7, 90.0, -90.0]}
                 ).to_csv(path, index=False)
    return "land", path


def _valid_pixels(d: Path):
    return "pixels", _png_folder(d / "pixels")


def _valid_images(d: Path):
    return "images", _png_folder(d / "images", size=(20, 24))


def _valid_yaml(d: Path):
    schema = CategoricalSchema((("colour", ("red", "blue")), ("shape", ("round", "square"))))
    schema.to_yaml(d / "shapes.yaml")
    data = _write_text(d, "shapes.csv", "colour,shape\nred,round\nblue,square\nred,square\n")
    return str(d / "shapes.yaml"), data


def _valid_inferred(d: Path):
    return "categorical", _write_text(d, "any.csv", "a,b\nx,1\ny,2\nx,2\n")


@pytest.mark.parametrize("build", [_valid_fashion, _valid_land, _valid_pixels, _valid_images,
                                   _valid_yaml, _valid_inferred])
def test_valid_input_passes(build, tmp_path):
    kind, path = build(tmp_path)
    before = _fingerprint(path)
    report = validate(kind, path)
    assert report.success, report.summary()
    assert report.failures == []
    summary = report.summary()
    assert summary.startswith("VALID ") and str(path) in summary
    report.raise_if_failed()
    assert report.report_path.is_relative_to(tmp_path / "home" / "reports" / "validation")
    saved = json.loads(report.report_path.read_text())
    assert saved["success"] is True and saved["great_expectations"]["results"]
    assert _fingerprint(path) == before


def test_inferred_categories_are_said(tmp_path):
    _, path = _valid_inferred(tmp_path)
    report = validate("categorical", path)
    assert any("inferred" in note for note in report.notes)
    assert "inferred" in report.summary()


def test_images_size_is_the_most_common_one(tmp_path):
    folder = _png_folder(tmp_path / "imgs", n=3, size=(20, 24))
    _png(folder / "odd.png", size=(24, 20))
    report = validate("images", folder)
    assert not report.success
    assert "20x24" in report.summary() and "odd.png (24x20)" in report.summary()
    assert any("most common" in note for note in report.notes)


def test_image_size_is_height_then_width(tmp_path):
    folder = _png_folder(tmp_path / "imgs", size=(20, 24))   # width 20, height 24
    assert validate_image_folder(folder, (24, 20)).success
    assert not validate_image_folder(folder, (20, 24)).success


# ---------------------------------------------------------------------------
# The catalogue of bad inputs
# ---------------------------------------------------------------------------
# Each builder writes one bad input under `d` and returns
# (kind, path, fragments the summary must contain).

def _unknown_category(d):
    return "fashion", _fashion_with(d, 1, "clothing_color", "Purple"), [
        "clothing_color", "must be one of", "line 3 ('Purple')"]


def _wrong_case(d):
    return "fashion", _fashion_with(d, 4, "clothing_color", "white"), [
        "clothing_color", "line 6 ('white'", "did you mean 'White'"]


def _missing_column(d):
    return "fashion", _write_fashion(d, _fashion_rows().drop(columns="hair_type")), [
        "columns must be exactly", "missing: hair_type"]


def _extra_column(d):
    return "fashion", _write_fashion(d, _fashion_rows().assign(shoe_size="42")), [
        "columns must be exactly", "unexpected: shoe_size"]


def _empty_file(d):
    return "fashion", _write_text(d, "empty.csv", ""), ["readable as a CSV", "file is empty"]


def _header_only(d):
    return "fashion", _write_text(d, "header.csv", ",".join(fashion.COLUMNS) + "\n"), [
        "at least one data row", "no data rows"]


def _missing_value(d):
    return "fashion", _fashion_with(d, 2, "hair_color", ""), [
        "hair_color", "no value may be missing", "line 4 (empty)"]


def _blank_line(d):
    lines = _write_fashion(d, _fashion_rows()).read_text().splitlines(keepends=True)
    return "fashion", _write_text(d, "fashion.csv", "".join(lines[:3] + ["\n"] + lines[3:])), [
        "no value may be missing", "line 4 (empty)"]


def _binary_garbage(d):
    path = d / "garbage.csv"
    path.write_bytes(bytes(range(128, 256)) * 4)
    return "categorical", path, ["readable as a CSV", "not UTF-8"]


def _land(d, text):
    return _write_text(d, "points.csv", "lon,lat\n" + text)


def _nan_lat(d):
    return "land", _land(d, "1.0,2.0\n3.0,NaN\n"), ["'lat'", "missing", "line 3 ('NaN')"]


def _lon_200(d):
    return "land", _land(d, "200,10\n1,2\n"), ["'lon'", "between -180 and 180", "line 2 ('200')"]


def _lat_minus_91(d):
    return "land", _land(d, "1,2\n3,4\n5,-91\n"), ["'lat'", "between -90 and 90",
                                                   "line 4 ('-91')"]


def _lon_not_a_number(d):
    return "land", _land(d, "1,2\nabc,4\n"), ["'lon'", "must be numbers", "line 3 ('abc')"]


def _lon_inf(d):
    return "land", _land(d, "inf,2\n"), ["'lon'", "must be numbers", "line 2 ('inf')"]


def _land_wrong_columns(d):
    return "land", _write_text(d, "points.csv", "x,y\n1,2\n"), [
        "exactly [lon, lat]", "missing: lat, lon", "unexpected: x, y"]


def _land_is_a_folder(d):
    return "land", _png_folder(d / "points.csv"), ["must be a CSV file", "is a folder"]


def _pixels_with(d, name, mode="L", size=(32, 32)):
    folder = _png_folder(d / "pixels")
    _png(folder / name, mode=mode, size=size)
    return folder


def _rgb(d):
    return "pixels", _pixels_with(d, "colour.png", "RGB"), ["mode 'L'", "colour.png (mode RGB)"]


def _rgba(d):
    return "pixels", _pixels_with(d, "alpha.png", "RGBA"), ["mode 'L'", "alpha.png (mode RGBA)"]


def _sixteen_bit(d):
    return "pixels", _pixels_with(d, "deep.png", "I;16"), ["mode 'L'", "deep.png (mode I"]


def _other_size(d):
    return "pixels", _pixels_with(d, "wide.png", size=(33, 32)), [
        "32x32 pixels", "wide.png (33x32)"]


def _corrupt_png(d):
    folder = _png_folder(d / "pixels")
    _truncated_png(folder / "broken.png")
    return "pixels", folder, ["readable", "broken.png (OSError: image file is truncated"]


def _non_image_file(d):
    folder = _png_folder(d / "pixels")
    (folder / "notes.txt").write_text("not an image\n")
    return "pixels", folder, ["must be a .png file", "notes.txt (a .txt file)"]


def _subfolder(d):
    folder = _png_folder(d / "pixels")
    (folder / "more").mkdir()
    return "images", folder, ["must be a .png file", "more (a folder)"]


def _empty_folder(d):
    (d / "pixels").mkdir()
    return "pixels", d / "pixels", ["at least one image", "no images"]


def _pixels_is_a_file(d):
    return "pixels", _write_text(d, "pixels.csv", "a\n1\n"), ["folder of PNG", "is a file"]


def _not_in_yaml_schema(d):
    schema_kind, _ = _valid_yaml(d)
    data = _write_text(d, "shapes.csv", "colour,shape\nred,round\ngreen,square\n")
    return schema_kind, data, ["'colour'", "one of [red, blue]", "line 3 ('green')"]


# Real-world tables (issue 17). A builder may return a fourth element: the rules
# the dataset declares (``missing``, ``max_categories``), as ``pmodel validate``
# takes them (--missing, --max-categories) and an experiment file declares them.

def _yaml_schema(d, text):
    path = d / "schema.yaml"
    path.write_text(text)
    return str(path)


def _leading_zero_is_another_label(d):
    schema = _yaml_schema(d, "columns:\n  region: [1, 2, 10]\n  sex: [F, M]\n")
    data = _write_text(d, "codes.csv", "region,sex\n1,F\n01,M\n10,F\n2,M\n")
    return schema, data, ["'region'", "one of [1, 2, 10]", "line 3 ('01')"]


def _boolean_spelled_otherwise(d):
    schema = _yaml_schema(d, "columns:\n  ANAPHYLAXIS: [TRUE, FALSE]\n")
    data = _write_text(d, "pandas-wrote-it.csv", "ANAPHYLAXIS\nTRUE\nTrue\nFALSE\n")
    return schema, data, ["'ANAPHYLAXIS'", "one of [TRUE, FALSE]",
                          "line 3 ('True'; did you mean 'TRUE'?)"]


def _trailing_space(d):
    schema = _yaml_schema(d, "columns:\n  smoker: [yes, no]\n  sex: [F, M]\n")
    data = _write_text(d, "survey.csv", "smoker,sex\nyes,F\nno ,M\n")
    return schema, data, ["'smoker'", "line 3 ('no '; did you mean 'no'?)"]


def _empty_cells_named_with_lines_and_count(d):
    rows = "".join(f"{'' if i % 4 == 1 else 'yes'},{i % 3}\n" for i in range(20))
    data = _write_text(d, "survey.csv", "smoker,Age\n" + rows)
    return "categorical", data, ["'smoker'", "no value may be missing", "5 rows break it",
                                 "line 3 (empty), line 7 (empty)", "missing: category"]


def _empty_cell_not_in_the_schema(d):
    schema = _yaml_schema(d, "columns:\n  smoker: [yes, no]\n  sex: [F, M]\n")
    data = _write_text(d, "survey.csv", "smoker,sex\nyes,F\n,M\n")
    return schema, data, ["'smoker'", "line 3 ('<missing>'; an empty cell: list '<missing>'"], {
        "missing": "category"}


def _missing_label_written_in_the_file(d):
    data = _write_text(d, "survey.csv", "smoker,sex\nyes,F\n<missing>,M\n,F\n")
    return "categorical", data, ["'smoker'", "'<missing>' may not be written",
                                 "line 3 ('<missing>')"], {"missing": "category"}


def _blank_line_under_missing_category(d):
    data = _write_text(d, "survey.csv", "smoker,sex\nyes,F\n\n,M\n")
    return "categorical", data, ["no line may be blank", "line 3"], {"missing": "category"}


def _an_id_column(d):
    rows = "".join(f"P{i:04d},{'yes' if i % 2 else 'no'}\n" for i in range(150))
    data = _write_text(d, "patients.csv", "patient_id,smoker\n" + rows)
    return "categorical", data, ["at most 100 distinct values", "drop the column",
                                 "raise max_categories", "1 column breaks it",
                                 "'patient_id' (150 distinct values, e.g. 'P0000', 'P0001', 'P0002')"]


def _free_text_over_a_lower_limit(d):
    rows = "".join(f"{'ok' if i % 2 else 'fine'},note {i % 7}\n" for i in range(40))
    data = _write_text(d, "notes.csv", "status,comment\n" + rows)
    return "categorical", data, ["at most 5 distinct values", "'comment' (7 distinct values"], {
        "max_categories": 5}


def _a_column_name_used_twice(d):
    data = _write_text(d, "export.csv", "smoker,age,smoker\nyes,1,no\n")
    return "categorical", data, ["every column must have a name, used once",
                                 "'smoker' names 2 columns"]


def _a_trailing_comma_in_the_header(d):
    data = _write_text(d, "export.csv", "smoker,age,\nyes,1,\nno,2,\n")
    return "categorical", data, ["every column must have a name",
                                 "column 3 of 3 has no name (a trailing comma?)"]


CATALOGUE = [
    _unknown_category, _wrong_case, _missing_column, _extra_column, _empty_file, _header_only,
    _missing_value, _blank_line, _binary_garbage, _nan_lat, _lon_200, _lat_minus_91,
    _lon_not_a_number, _lon_inf, _land_wrong_columns, _land_is_a_folder, _rgb, _rgba,
    _sixteen_bit, _other_size, _corrupt_png, _non_image_file, _subfolder, _empty_folder,
    _pixels_is_a_file, _not_in_yaml_schema,
    _leading_zero_is_another_label, _boolean_spelled_otherwise, _trailing_space,
    _empty_cells_named_with_lines_and_count, _empty_cell_not_in_the_schema,
    _missing_label_written_in_the_file, _blank_line_under_missing_category, _an_id_column,
    _free_text_over_a_lower_limit, _a_column_name_used_twice, _a_trailing_comma_in_the_header,
]


@pytest.mark.parametrize("build", CATALOGUE, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_input_fails_with_a_precise_message(build, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    kind, path, fragments, *rules = build(inputs)
    before, listing = _fingerprint(path), _fingerprint(inputs)

    report = validate(kind, path, **(rules[0] if rules else {}))

    assert not report.success
    assert report.failures
    summary = report.summary()
    assert summary.startswith("INVALID ")
    assert str(path) in summary.splitlines()[0]
    for fragment in fragments:
        assert fragment in summary, f"{fragment!r} not in:\n{summary}"
    assert f"report: {report.report_path}" in summary

    with pytest.raises(DataValidationError) as info:
        report.raise_if_failed()
    assert str(info.value) == summary
    assert info.value.path == path and info.value.report_path == report.report_path
    assert info.value.failures == report.failures

    saved = json.loads(report.report_path.read_text())
    assert saved["success"] is False and saved["path"] == str(path)
    assert saved["failures"] == json.loads(json.dumps(report.failures, default=str))
    assert report.report_path.is_relative_to(tmp_path / "home" / "reports" / "validation")

    assert _fingerprint(path) == before
    assert _fingerprint(inputs) == listing   # nothing written next to the input
    assert saved["input_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else True


@pytest.mark.parametrize("build", CATALOGUE, ids=lambda f: f.__name__.lstrip("_"))
def test_a_csv_read_in_chunks_gives_the_same_verdict(build, tmp_path, monkeypatch):
    # Big CSVs are validated a chunk of rows at a time (memory stays bounded);
    # with two rows a chunk every bad input above must be reported as in one piece.
    import tasks.validation as validation

    inputs = tmp_path / "in"
    inputs.mkdir()
    kind, path, _, *rules = build(inputs)
    rules = rules[0] if rules else {}
    whole = validate(kind, path, report_dir=tmp_path / "whole", **rules)
    monkeypatch.setattr(validation, "CSV_CHUNK_ROWS", 2)
    chunked = validate(kind, path, report_dir=tmp_path / "chunked", **rules)
    assert chunked.failures == whole.failures
    # the same text but for the Data Docs pages: one per chunk
    text = lambda r: [line for line in r.summary().splitlines() if not line.startswith("data docs: ")]
    assert [line.replace("chunked", "whole") for line in text(chunked)] == text(whole)


def test_offenders_in_several_chunks_are_counted_once_each(tmp_path, monkeypatch):
    import tasks.validation as validation

    monkeypatch.setattr(validation, "CSV_CHUNK_ROWS", 3)
    rows = ["0,0", "200,0", "1,1", "2,2", "300,x", "3,3", "4,4", "500,1", "5,5", "6,6", "700,2"]
    path = _land(tmp_path, "".join(r + "\n" for r in rows))
    failures = {f["rule"]: f for f in validate_land_csv(path).failures}
    lon = failures["column 'lon': values must be between -180 and 180"]
    assert lon["n_unexpected"] == 4
    assert [e["line"] for e in lon["examples"]] == [3, 6, 9, 12]
    lat = failures["column 'lat': values must be numbers"]
    assert lat["n_unexpected"] == 1 and lat["examples"] == [{"line": 6, "value": "x"}]


def test_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 18


# ---------------------------------------------------------------------------
# Report details
# ---------------------------------------------------------------------------

def test_failure_records_lines_values_and_expectation(tmp_path):
    path = _fashion_with(tmp_path, 1, "clothing_color", "Purple")
    report = validate("fashion", path)
    (failure,) = report.failures
    assert failure["expectation"] == "expect_column_values_to_be_in_set"
    assert failure["column"] == "clothing_color"
    assert failure["n_unexpected"] == 1
    assert failure["examples"] == [{"line": 3, "value": "Purple"}]


def test_only_the_first_five_offenders_are_shown(tmp_path):
    path = _land(tmp_path, "".join(f"{200 + i},0\n" for i in range(8)))
    report = validate_land_csv(path)
    (failure,) = report.failures
    assert failure["n_unexpected"] == 8
    assert [e["line"] for e in failure["examples"]] == [2, 3, 4, 5, 6]
    assert "8 rows break it" in report.summary() and "and 3 more" in report.summary()


def test_report_name_is_deterministic_and_tracks_the_bytes(tmp_path):
    _, path = _valid_land(tmp_path)
    first, second = validate("land", path), validate("land", path)
    assert first.report_path == second.report_path
    assert first.report_path.name.startswith("land-points-")
    path.write_text("lon,lat\n0,0\n")
    assert validate("land", path).report_path != first.report_path


def test_report_dir_is_honoured(tmp_path):
    _, path = _valid_land(tmp_path)
    report = validate("land", path, report_dir=tmp_path / "elsewhere")
    assert report.report_path.parent == tmp_path / "elsewhere"
    assert report.report_path.exists()


def test_building_blocks_take_a_schema(tmp_path):
    path = _write_fashion(tmp_path, _fashion_rows())
    assert validate_categorical_csv(path, fashion.SCHEMA).success
    narrow = CategoricalSchema(tuple((name, cats[:1]) for name, cats in fashion.SCHEMA.columns))
    assert not validate_categorical_csv(path, narrow).success


@pytest.mark.parametrize("kind", ["fashoin", "", "nope.yaml"])
def test_unknown_kind_or_schema_is_a_value_error(kind, tmp_path):
    _, path = _valid_land(tmp_path)
    with pytest.raises(ValueError, match="kind|schema"):
        validate(kind, path)


def test_unreadable_schema_yaml_is_a_value_error(tmp_path):
    bad = _write_text(tmp_path, "bad.yaml", "columns: [not, a, mapping]\n")
    _, path = _valid_inferred(tmp_path)
    with pytest.raises(ValueError, match="bad.yaml"):
        validate(str(bad), path)


def test_validations_on_threads_agree(tmp_path):
    """Prefect runs tasks on threads: concurrent validations must not mix up."""
    for name in ("good", "bad"):
        (tmp_path / name).mkdir()
    good = _valid_land(tmp_path / "good")[1]
    bad = _lon_200(tmp_path / "bad")[1]
    paths = [good, bad] * 4
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda p: validate("land", p), paths))
    assert [r.success for r in reports] == [True, False] * 4
    assert all(r.failures == reports[1].failures for r in reports[1::2])


def test_report_type():
    report = ValidationReport(path=Path("x.csv"), kind="land", success=True)
    assert report.summary() == "VALID land data: x.csv"


# ---------------------------------------------------------------------------
# Import cost and the CLI (subprocesses: each GX import costs seconds)
# ---------------------------------------------------------------------------

def _run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PMODEL_HOME": str(home)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_import_does_not_load_great_expectations(tmp_path):
    code = ("import sys, tasks.validation; "
            "assert 'great_expectations' not in sys.modules, 'GX imported eagerly'")
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr


def test_cli_exit_codes(tmp_path):
    home = tmp_path / "home"
    _, good = _valid_land(tmp_path)
    (tmp_path / "bad").mkdir()
    _, bad, _ = _lon_200(tmp_path / "bad")

    ok = _run(["-m", "flows.cli", "validate", "land", str(good)], home)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("VALID land data:")

    failed = _run(["-m", "flows.cli", "validate", "land", str(bad)], home)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert str(bad) in failed.stdout and "line 2 ('200')" in failed.stdout
    assert "Traceback" not in failed.stderr
    assert list((home / "reports" / "validation").glob("land-points-*.json"))

    usage = _run(["-m", "flows.cli", "validate", "no-such-kind", str(good)], home)
    assert usage.returncode == 2 and "no-such-kind" in usage.stderr

    missing = _run(["-m", "flows.cli", "validate", "land", str(tmp_path / "nope.csv")], home)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# ---------------------------------------------------------------------------
# Held-out against train (each valid alone, wrong together)
# ---------------------------------------------------------------------------

def _dataset(tmp_path, train_text, heldout_text, kind="categorical"):
    from tasks.steps import cache_key

    train = _write_text(tmp_path, "train.csv", train_text)
    heldout = _write_text(tmp_path, "heldout.csv", heldout_text)
    files = {"train": str(train), "heldout": str(heldout)}
    from pmodel.records import Ingested

    return Ingested(name="mine", kind=kind, builtin=None, spec={"kind": kind}, files=files,
                    digests={}, digest=cache_key(files))


def test_heldout_with_other_columns_fails_validation_naming_both_files(tmp_path):
    from tasks.steps import validate_dataset

    ingested = _dataset(tmp_path, "colour,shape\nred,round\nblue,square\n",
                        "colour,size\nred,S\nblue,L\n")
    for role in ("train", "heldout"):  # each file alone is valid
        assert validate("categorical", ingested.files[role]).success
    with pytest.raises(DataValidationError) as info:
        validate_dataset.fn(ingested, str(tmp_path / "reports"))
    message = str(info.value)
    assert ingested.files["heldout"] in message and ingested.files["train"] in message
    assert "missing: shape" in message and "unexpected: size" in message
    assert info.value.report_path.exists()


def test_heldout_with_the_same_columns_in_another_order_and_new_categories_passes(tmp_path):
    from tasks.steps import validate_dataset

    ingested = _dataset(tmp_path, "colour,shape\nred,round\nblue,square\n",
                        "shape,colour\nround,green\n")
    reports = validate_dataset.fn(ingested, str(tmp_path / "reports"))
    assert len(reports) == 3  # train, held-out, and the two together


def test_heldout_images_of_another_size_fail_naming_both_folders(tmp_path):
    train, heldout = _png_folder(tmp_path / "train", size=(20, 24)), _png_folder(tmp_path / "held", size=(16, 16))
    report = validate_heldout_against_train("images", train, heldout)
    assert not report.success
    summary = report.summary()
    assert str(train) in summary and str(heldout) in summary and "20x24" in summary
    assert validate_heldout_against_train("images", train, _png_folder(tmp_path / "same", size=(20, 24))).success
    assert validate_heldout_against_train("land", train, heldout) is None


def test_files_that_passed_are_not_validated_again_until_their_bytes_change(tmp_path, monkeypatch):
    import tasks.validation
    from tasks.steps import ingest_dataset, validate_dataset

    train = _write_text(tmp_path, "train.csv", "colour,shape\nred,round\nblue,square\n")
    heldout = _write_text(tmp_path, "heldout.csv", "colour,shape\nred,square\n")
    spec = {"kind": "categorical", "train": str(train), "heldout": str(heldout)}
    monkeypatch.setenv("PMODEL_HOME", str(tmp_path / "home"))
    reports = validate_dataset.fn(ingest_dataset.fn("mine", spec, None), str(tmp_path / "reports"))
    assert len(reports) == 3
    calls = []
    real = tasks.validation.validate
    monkeypatch.setattr(tasks.validation, "validate", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = validate_dataset.fn(ingest_dataset.fn("mine", spec, None), str(tmp_path / "reports"))
    assert again == reports and calls == []  # the same bytes: the reports of the pass
    assert validate_dataset.fn(ingest_dataset.fn("mine", spec, None), str(tmp_path / "reports"),
                               refresh=True) == reports and len(calls) == 2
    heldout.write_text("colour,shape\nred,square\n,round\n")  # an empty colour: now invalid
    with pytest.raises(DataValidationError, match="heldout.csv"):
        validate_dataset.fn(ingest_dataset.fn("mine", spec, None), str(tmp_path / "reports"))
    with pytest.raises(DataValidationError):  # a failure is never remembered as a pass
        validate_dataset.fn(ingest_dataset.fn("mine", spec, None), str(tmp_path / "reports"))


# ---------------------------------------------------------------------------
# Users' tables: the missing policy, the category limit, constant columns
# ---------------------------------------------------------------------------

def test_missing_category_makes_empty_cells_valid_and_keeps_a_report_per_policy(tmp_path):
    path = _write_text(tmp_path, "survey.csv", "smoker,sex\nyes,F\n,M\nno,\n")
    refused = validate("categorical", path)
    assert not refused.success and "line 3 (empty)" in refused.summary()
    accepted = validate("categorical", path, missing="category")
    assert accepted.success, accepted.summary()
    assert any("'<missing>'" in note for note in accepted.notes)
    assert accepted.report_path != refused.report_path and refused.report_path.exists()
    # a schema that lists '<missing>' accepts the empty cells as that category
    schema = _yaml_schema(tmp_path, "columns:\n  smoker: [yes, no, <missing>]\n"
                                    "  sex: [F, M, <missing>]\n")
    assert validate(schema, path, missing="category").success
    assert not validate(schema, path).success   # missing: error, the default


def test_a_column_with_one_value_is_valid_with_a_warning(tmp_path):
    path = _write_text(tmp_path, "site.csv", "site,smoker\nA,yes\nA,no\nA,yes\n")
    report = validate("categorical", path)
    assert report.success and report.failures == []
    (warning,) = report.warnings
    assert "'site'" in warning and "one value only ('A' in all 3 rows)" in warning
    assert "drop it from the CSV" in warning
    assert f"warning: {warning}" in report.summary()
    assert json.loads(report.report_path.read_text())["warnings"] == [warning]


def test_the_category_limit_counts_across_chunks(tmp_path, monkeypatch):
    # 12 distinct values, at most 4 in any chunk of 4 rows: only the whole file breaks a limit of 10
    import tasks.validation as validation

    path = _write_text(tmp_path, "ids.csv", "id,x\n" + "".join(f"{i},a\n" for i in range(12)))
    monkeypatch.setattr(validation, "CSV_CHUNK_ROWS", 4)
    report = validate("categorical", path, max_categories=10)
    assert not report.success and "'id' (12 distinct values" in report.summary()
    assert validate("categorical", path, max_categories=12).success


def test_a_declared_schema_is_not_held_to_the_category_limit(tmp_path):
    cats = [f"c{i}" for i in range(120)]
    schema = CategoricalSchema((("code", tuple(cats)),))
    schema.to_yaml(tmp_path / "codes.yaml")
    path = _write_text(tmp_path, "codes.csv", "code\n" + "".join(f"{c}\n" for c in cats))
    assert validate(str(tmp_path / "codes.yaml"), path).success
    assert not validate("categorical", path).success


def test_cli_validate_takes_the_missing_policy_and_the_limit(tmp_path):
    home = tmp_path / "home"
    path = _write_text(tmp_path, "survey.csv", "smoker,code\r\nyes,01\r\n,1\r\nno,02\r\n")
    refused = _run(["-m", "flows.cli", "validate", "categorical", str(path)], home)
    assert refused.returncode == 1 and "'smoker'" in refused.stdout and "line 3" in refused.stdout
    accepted = _run(["-m", "flows.cli", "validate", "categorical", str(path),
                     "--missing", "category"], home)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "code (3)" in accepted.stdout    # 01, 1 and 02: three labels
    limited = _run(["-m", "flows.cli", "validate", "categorical", str(path), "--missing",
                    "category", "--max-categories", "2"], home)
    assert limited.returncode == 1 and "'code' (3 distinct values" in limited.stdout
