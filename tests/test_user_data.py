"""Loaders for users' own files."""

from __future__ import annotations

import json
import re
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmodel.datasets import fashion, images, land, user
from pmodel.datasets.schema import CategoricalSchema


def test_categorical_csv_with_schema_keeps_the_schemas_order(tmp_path):
    df = fashion.sample(40, rng=np.random.default_rng(0))
    path = tmp_path / "rows.csv"
    fashion.write_csv(df[list(reversed(fashion.COLUMNS))], path)  # columns in another order
    schema_path = tmp_path / "schema.yaml"
    fashion.SCHEMA.to_yaml(schema_path)
    np.testing.assert_array_equal(user.load_categorical_csv(path, schema_path),
                                  fashion.SCHEMA.to_codes(df))


def test_users_categorical_problem_without_schema_infers_and_says_so(tmp_path):
    from pmodel.problems import load_user

    path = tmp_path / "pets.csv"
    pd.DataFrame({"animal": ["dog", "cat", "dog", "cat", "dog"],
                  "size": ["S", "L", "M", "S", "S"]}).to_csv(path, index=False)
    problem = load_user("pets", "categorical", path, heldout_fraction=0.2, seed=0)
    assert problem.schema.inferred
    assert problem.schema.columns == (("animal", ("cat", "dog")), ("size", ("L", "M", "S")))
    rows = {tuple(r) for r in np.concatenate([problem.train, problem.heldout]).tolist()}
    assert rows == {(1, 2), (0, 0), (1, 1), (0, 2)}
    assert any("inferred" in note for note in problem.notes)
    assert any("held out 1 of 5" in note for note in problem.notes)


def test_image_folder_and_points(tmp_path):
    X = np.random.default_rng(1).integers(0, 256, size=(4, 12, 9), dtype=np.uint8)
    images.write_png_folder(X, tmp_path / "imgs")
    names, back = user.load_image_folder(tmp_path / "imgs")
    assert len(names) == 4
    np.testing.assert_array_equal(back, X)
    P = np.array([[2.35, 48.85], [-74.0, 40.7]])
    land.write_csv(P, tmp_path / "p.csv")
    np.testing.assert_array_equal(user.load_points(tmp_path / "p.csv"), P)


def test_train_and_heldout_with_other_columns_are_refused_naming_both(tmp_path):
    import pytest

    from pmodel.problems import load_user

    train, heldout = tmp_path / "train.csv", tmp_path / "heldout.csv"
    train.write_text("colour,shape\nred,round\nblue,square\n")
    heldout.write_text("colour,size\nred,S\ngreen,L\n")
    with pytest.raises(ValueError) as info:
        load_user("mine", "categorical", train, heldout)
    message = str(info.value)
    assert str(train) in message and str(heldout) in message
    assert "lacks shape" in message and "has size" in message
    # same columns in another order, a held-out category unseen in train: fine
    heldout.write_text("shape,colour\nround,green\n")
    problem = load_user("mine", "categorical", train, heldout)
    assert problem.schema.columns == (("colour", ("blue", "green", "red")),
                                      ("shape", ("round", "square")))
    np.testing.assert_array_equal(problem.heldout, [[1, 0]])


# ---------------------------------------------------------------------------
# Real-world encodings: every label is read exactly as written
# ---------------------------------------------------------------------------
# Each case: a training CSV (bytes, as a user's tool writes it) and, for some, a
# held-out CSV. The oracle is Python's csv module on the same bytes (utf-8-sig:
# a byte order mark is no part of the first name), not pandas.

ENCODINGS = {
    "true_false": (b"ANAPHYLAXIS,SEX\nTRUE,F\nFALSE,M\nTRUE,M\nFALSE,F\n", None),
    "yes_no": (b"smoker,asthma\nyes,no\nno,no\nyes,yes\nno,yes\n", None),
    "zero_one_two": (b"Age,Flag\n0,1\n1,0\n2,1\n0,0\n", None),
    "leading_zeros": (b"code,region\n01,1\n1,01\n001,1\n10,01\n", None),
    "spaces": (b"colour,size\nlight blue, small\n light blue,small \nlight blue,small\n", None),
    "quotes_and_commas": (b'city,remark\n"Washington, D.C.","said ""no"""\n"Paris","a, b"\n'
                          b'Paris,"said ""no"""\n', None),
    "na_is_a_label": (b"answer,other\nNA,N/A\nyes,NaN\nNA,null\nno,None\n", None),
    "dates_and_decimals": (b"day,dose\n2024-01-02,1.0\n2024-01-02,1\n02/01/2024,1e3\n", None),
    "bom": ("\ufeffgroup,outcome\nA,x\nB,y\nA,y\n".encode("utf-8"), None),
    "crlf": (b"group,outcome\r\nA,x\r\nB,y\r\nA,y\r\n", None),
    "heldout_columns_reordered": (b"Age,Smoker\n0,TRUE\n1,FALSE\n2,TRUE\n",
                                  b"Smoker,Age\nFALSE,2\nTRUE,0\n"),
}


def _csv_rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    """Header and rows as the csv module reads them: the labels as written."""
    import csv
    import io

    header, *rows = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    return header, rows


def _write_case(tmp_path, name):
    train_bytes, heldout_bytes = ENCODINGS[name]
    train = tmp_path / f"{name}-train.csv"
    train.write_bytes(train_bytes)
    heldout = None
    if heldout_bytes is not None:
        heldout = tmp_path / f"{name}-heldout.csv"
        heldout.write_bytes(heldout_bytes)
    return train, heldout


@pytest.mark.parametrize("name", ENCODINGS)
def test_labels_are_loaded_exactly_as_written_and_codes_round_trip(name, tmp_path):
    from pmodel.problems import load_user

    train, heldout = _write_case(tmp_path, name)
    before = {p: p.read_bytes() for p in (train, heldout) if p is not None}
    problem = load_user("mine", "categorical", train, heldout)
    header, rows = _csv_rows(before[train])
    assert problem.schema.names == header          # no BOM on the first name
    expected = {name: sorted({row[j] for row in rows}) for j, name in enumerate(header)}
    if heldout is not None:
        h_header, h_rows = _csv_rows(before[heldout])
        for j, c in enumerate(h_header):
            expected[c] = sorted(set(expected[c]) | {row[j] for row in h_rows})
    assert {c: list(cats) for c, cats in problem.schema.columns} == expected
    # with a held-out file the split is the files; the training codes give back the rows
    back = problem.schema.from_codes(problem.train if heldout is not None
                                     else np.concatenate([problem.train, problem.heldout]))
    got = sorted(map(tuple, back[header].to_numpy().tolist()))
    assert got == sorted(map(tuple, rows))
    if heldout is not None:
        h_header, h_rows = _csv_rows(before[heldout])
        assert problem.schema.from_codes(problem.heldout)[h_header].to_numpy().tolist() == h_rows
    for path, data in before.items():
        assert path.read_bytes() == data               # the input is never modified


def test_codes_with_leading_zeros_are_different_categories(tmp_path):
    train, _ = _write_case(tmp_path, "leading_zeros")
    schema = user.infer_schema(train)
    assert dict(schema.columns) == {"code": ("001", "01", "1", "10"), "region": ("01", "1")}
    X = user.load_categorical_csv(train, schema)
    assert X[:, 0].tolist() == [1, 2, 0, 3]           # 01, 1, 001, 10: four labels, four codes


def test_the_issue_s_table_fits_where_it_failed(tmp_path):
    """Issue 17: validation passed, then every fit failed (np.False_ / np.int64(0) not in
    ['TRUE', 'FALSE'] / ['0', '1', '2'])."""
    from pmodel.evaluate import run_family
    from pmodel.problems import load_user

    path = tmp_path / "survey.csv"
    path.write_bytes(b"ANAPHYLAXIS,Age\n" + b"".join(
        f"{'TRUE' if i % 3 == 0 else 'FALSE'},{i % 3}\n".encode() for i in range(30)))
    problem = load_user("survey", "categorical", path)
    assert dict(problem.schema.columns) == {"ANAPHYLAXIS": ("FALSE", "TRUE"),
                                            "Age": ("0", "1", "2")}
    result = run_family("naive_bayes", {"alpha": 1.0}, problem, n_samples=20, seed=0)
    assert np.isfinite(result.metrics["heldout_loglik"])
    rows = problem.schema.from_codes(result.samples)
    assert set(rows["ANAPHYLAXIS"]) <= {"TRUE", "FALSE"} and set(rows["Age"]) <= {"0", "1", "2"}


def test_a_schema_yaml_keeps_its_labels_as_written(tmp_path):
    """YAML would read yes as True, TRUE as True and 01 as the integer 1: the schema file is
    read without that guessing, so unquoted labels mean what they say."""
    from pmodel.datasets.schema import CategoricalSchema

    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  smoker: [yes, no]\n  flag: [TRUE, FALSE]\n  code: [01, 1, 1.0]\n"
                    "  answer: [NA, null, ~, '007']\n")
    schema = CategoricalSchema.from_yaml(path)
    assert dict(schema.columns) == {"smoker": ("yes", "no"), "flag": ("TRUE", "FALSE"),
                                    "code": ("01", "1", "1.0"), "answer": ("NA", "null", "~", "007")}
    schema.to_yaml(tmp_path / "again.yaml")
    assert CategoricalSchema.from_yaml(tmp_path / "again.yaml") == schema
    data = tmp_path / "rows.csv"
    data.write_bytes(b"smoker,flag,code,answer\nyes,TRUE,01,NA\nno,FALSE,1.0,007\n")
    np.testing.assert_array_equal(user.load_categorical_csv(data, path),
                                  [[0, 0, 0, 0], [1, 1, 2, 3]])


# ---------------------------------------------------------------------------
# Missing values, the category limit and constant columns when loading
# ---------------------------------------------------------------------------

def test_empty_cells_are_refused_by_default_naming_file_column_lines_and_count(tmp_path):
    from pmodel.problems import load_user

    path = tmp_path / "survey.csv"
    rows = "".join(f"{'' if i % 3 == 0 else 'yes'},{i % 2}\n" for i in range(20))
    path.write_text("smoker,Age\n" + rows)
    with pytest.raises(ValueError) as info:
        load_user("survey", "categorical", path)
    message = str(info.value)
    assert str(path) in message and "'smoker'" in message
    assert "7 empty cells (lines 2, 5, 8, 11, 14 and 2 more)" in message
    assert "missing: category" in message and "'Age'" not in message


def test_missing_category_reads_an_empty_cell_as_a_category_of_its_own(tmp_path):
    from pmodel.problems import load_user

    train, heldout = tmp_path / "train.csv", tmp_path / "heldout.csv"
    train.write_text("smoker,sex\nyes,F\n,M\nno,F\nyes,\n")
    heldout.write_text("sex,smoker\nM,\nF,no\n")
    before = train.read_bytes(), heldout.read_bytes()
    problem = load_user("survey", "categorical", train, heldout, missing="category")
    assert dict(problem.schema.columns) == {"smoker": ("<missing>", "no", "yes"),
                                            "sex": ("<missing>", "F", "M")}
    back = problem.schema.from_codes(problem.train)
    assert back.to_numpy().tolist() == [["yes", "F"], ["<missing>", "M"], ["no", "F"],
                                        ["yes", "<missing>"]]
    assert problem.schema.from_codes(problem.heldout).to_numpy().tolist() == [
        ["<missing>", "M"], ["no", "F"]]
    assert (train.read_bytes(), heldout.read_bytes()) == before


def test_a_likely_id_column_is_refused_at_load_with_what_to_do(tmp_path):
    from pmodel.problems import load_user

    path = tmp_path / "patients.csv"
    path.write_text("patient_id,smoker\n" + "".join(f"P{i},{i % 2}\n" for i in range(30)))
    with pytest.raises(ValueError) as info:
        load_user("patients", "categorical", path, max_categories=20)
    message = str(info.value)
    assert str(path) in message and "'patient_id' has 30 distinct values" in message
    assert "max_categories (20)" in message and "Drop the column" in message
    assert load_user("patients", "categorical", path, max_categories=30).schema.shape == (30, 2)


def test_a_header_pandas_would_rename_is_refused_at_load(tmp_path):
    from pmodel.problems import load_user

    path = tmp_path / "export.csv"
    path.write_text("smoker,age,smoker,\nyes,1,no,\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{path}: every column must have a name, used once: column 4 of 4 has no name "
            "(a trailing comma?); 'smoker' names 2 columns")):
        load_user("export", "categorical", path)


def test_a_constant_column_is_kept_and_noted(tmp_path):
    from pmodel.problems import load_user

    path = tmp_path / "site.csv"
    path.write_text("site,smoker\n" + "".join(f"A,{'yes' if i % 2 else 'no'}\n" for i in range(10)))
    problem = load_user("mine", "categorical", path)
    assert problem.schema.shape == (1, 2)
    assert any("'site' has one value only ('A' in all 10 rows)" in n for n in problem.notes)
    assert not any("'smoker'" in n for n in problem.notes)


@pytest.mark.parametrize("name", ENCODINGS)
def test_each_encoding_passes_validation_as_written(name, tmp_path, monkeypatch):
    """The `pmodel validate` path: inferred categories, and a hand-written schema YAML with the
    labels unquoted (as a user writes them) both accept the file as written."""
    from tasks.validation import validate, validate_heldout_against_train

    monkeypatch.setenv("PMODEL_HOME", str(tmp_path / "home"))
    train, heldout = _write_case(tmp_path, name)
    before = train.read_bytes()
    header, rows = _csv_rows(before)
    report = validate("categorical", train)
    assert report.success, report.summary()
    counts = ", ".join(f"{c} ({len({r[j] for r in rows})})" for j, c in enumerate(header))
    assert f"categories per column: {counts}" in report.notes
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n" + "".join(
        f"  {_yaml_key(c)}: [{', '.join(_yaml_flow(v) for v in sorted({r[j] for r in rows}))}]\n"
        for j, c in enumerate(header)))
    report = validate(str(schema), train)
    assert report.success, report.summary()
    if heldout is not None:
        assert validate_heldout_against_train("categorical", train, heldout).success
    assert train.read_bytes() == before


def _yaml_flow(label: str) -> str:
    """A label in a YAML flow list: plain when YAML's syntax allows (so TRUE, yes and 01 are
    written unquoted, as a user would), else single-quoted."""
    plain = label and label == label.strip() and not any(ch in label for ch in ",[]{}#&*!|>'\"%@`:")
    return label if plain else "'" + label.replace("'", "''") + "'"


def _yaml_key(name: str) -> str:
    return _yaml_flow(name)


def test_the_missing_policy_is_part_of_the_cache_keys(tmp_path):
    """A cached split, fit or validation of the same bytes read under another policy would be
    wrong: the policy is in every key that depends on how the files are read."""
    from flows.experiment import data_key
    from tasks.steps import ingest_dataset, validation_key

    path = tmp_path / "survey.csv"
    path.write_text("smoker,sex\nyes,F\n,M\n")
    spec = {"kind": "categorical", "train": str(path), "heldout": None, "heldout_fraction": 0.2,
            "schema_file": None, "missing": "error", "max_categories": 100}
    keys = []
    for change in ({}, {"missing": "category"}, {"max_categories": 5}, {"heldout_fraction": 0.3}):
        ingested = ingest_dataset.fn("mine", {**spec, **change}, None)
        keys.append((data_key(ingested), validation_key(ingested, "categorical")))
    assert len({k[0] for k in keys}) == 4
    assert len({k[1] for k in keys[:3]}) == 3   # the split fraction is no validation rule


# ---------------------------------------------------------------------------
# The real flow on users' tables (Prefect's test harness, an MLflow SQLite store)
# ---------------------------------------------------------------------------

USERS_EXPERIMENT = """
name: users-tables
seed: 0
n_samples: 60
datasets:
  survey: {{kind: categorical, train: {survey}, heldout: {survey_heldout}}}
  wide: {{kind: categorical, train: {wide}, missing: category}}
families:
  - family: box
  - family: naive_bayes
    params: {{alpha: 1.0}}
  - family: multinomial
    params: {{alpha: 1.0}}
  - family: chow_liu
    params: {{alpha: 1.0}}
"""


def _survey_bytes(n: int, seed: int, order=("ANAPHYLAXIS", "Age", "region")) -> bytes:
    """A medical-survey table as Excel writes it: a BOM, CRLF line ends, TRUE/FALSE, 0/1/2
    and codes with leading zeros."""
    rng = np.random.default_rng(seed)
    rows = {"ANAPHYLAXIS": rng.choice(["TRUE", "FALSE"], n), "Age": rng.choice(["0", "1", "2"], n),
            "region": rng.choice(["01", "1", "10"], n)}
    lines = [",".join(order)] + [",".join(rows[c][i] for c in order) for i in range(n)]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()


def _wide_bytes(n: int, n_columns: int, seed: int) -> bytes:
    """A wide questionnaire: yes/no/NA answers and some empty cells."""
    rng = np.random.default_rng(seed)
    answers = rng.choice(["yes", "no", "NA", ""], size=(n, n_columns), p=[0.45, 0.4, 0.1, 0.05])
    lines = [",".join(f"q{j:02d}" for j in range(n_columns))] + [",".join(r) for r in answers]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def users_run(prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment

    d = tmp_path_factory.mktemp("users")
    files = {"survey": _survey_bytes(120, 0),
             "survey_heldout": _survey_bytes(40, 1, order=("region", "ANAPHYLAXIS", "Age")),
             "wide": _wide_bytes(150, 40, 2)}
    for name, data in files.items():
        (d / f"{name}.csv").write_bytes(data)
    path = d / "users.yaml"
    path.write_text(USERS_EXPERIMENT.format(**{k: d / f"{k}.csv" for k in files}))
    store = "sqlite:///" + str(d / "mlflow.db")
    state = run_experiment(str(path), tracking_uri=store, return_state=True)
    return state, state.result(raise_on_failure=False), store, d, files


def test_the_flow_fits_users_tables_as_written_and_records_them(users_run):
    from mlflow.tracking import MlflowClient

    from tasks.tracking import download_model_folder

    state, outcome, store, d, files = users_run
    assert state.is_completed(), state.message      # a skipped pair is not a failure
    assert outcome.failures == {}
    client = MlflowClient(tracking_uri=store)
    children = client.search_runs([outcome.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
    fitted = {(c.data.tags["dataset"], c.data.tags["family"]): c for c in children}
    assert set(fitted) == {("survey", f) for f in ("box", "naive_bayes", "multinomial", "chow_liu")} | {
        ("wide", f) for f in ("box", "naive_bayes", "chow_liu")}
    for child in children:
        assert child.info.status == "FINISHED"
        assert math.isfinite(child.data.metrics["heldout_loglik"]), child.data.tags["label"]
    # the model's schema holds the labels as written, and samples come back as those labels
    survey_nb = fitted[("survey", "naive_bayes")]
    schema = json.loads((download_model_folder(survey_nb.info.run_id, store, d) / "schema.json"
                         ).read_text())
    assert schema["columns"] == {"ANAPHYLAXIS": ["FALSE", "TRUE"], "Age": ["0", "1", "2"],
                                 "region": ["01", "1", "10"]}
    wide_nb = fitted[("wide", "naive_bayes")]
    wide_schema = json.loads((download_model_folder(wide_nb.info.run_id, store, d / "w")
                              / "schema.json").read_text())
    assert len(wide_schema["columns"]) == 40
    assert all(set(cats) <= {"yes", "no", "NA", "<missing>"} for cats in wide_schema["columns"].values())
    assert "<missing>" in wide_schema["columns"]["q00"]
    for name, data in files.items():
        assert (d / f"{name}.csv").read_bytes() == data


def test_a_family_that_cannot_hold_a_wide_table_is_skipped_with_its_reason(users_run):
    from mlflow.tracking import MlflowClient

    from pmodel.leaderboard import as_text

    state, outcome, store, d, _ = users_run
    (skipped,) = [r for r in outcome.results if r.skip]
    assert (skipped.dataset, skipped.family) == ("wide", "multinomial")
    assert "cells" in skipped.skip and "multinomial holds in memory" in skipped.skip
    assert skipped.run_id is None and skipped.error is None and not skipped.metrics
    assert outcome.fit_states["wide/multinomial alpha=1.0"] == "Skipped"
    parent = MlflowClient(tracking_uri=store).get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert "wide/multinomial alpha=1.0: the full joint table" in parent.data.tags["skipped"]
    assert parent.data.metrics["n_skipped"] == 1 and parent.data.metrics["n_failed"] == 0
    assert parent.data.metrics["n_runs"] == 7
    text = Path(MlflowClient(tracking_uri=store).download_artifacts(
        outcome.parent_run_id, "skipped-fits.txt", str(d))).read_text()
    assert text.startswith("wide/multinomial alpha=1.0: skipped, the full joint table")
    assert "Skipped (not fitted" in parent.data.tags["mlflow.note.content"]
    board = as_text(list(outcome.results))
    assert "multinomial alpha=1.0              SKIPPED: the full joint table" in board


# ---------------------------------------------------------------------------
# The sample-memory limit holds for users' data, refused when the config loads
# ---------------------------------------------------------------------------

def _user_experiment(tmp_path, datasets: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: mine\ndatasets:\n{datasets}families:\n  - family: naive_bayes\n")
    return path


def test_too_many_samples_of_a_users_table_are_refused_when_the_config_loads(tmp_path):
    from pmodel.config import MAX_SAMPLE_BYTES, ConfigError, load_experiment

    (tmp_path / "five.csv").write_text("a,b,c,d,e\n1,2,3,4,5\n")
    path = _user_experiment(tmp_path, "  five: {kind: categorical, train: five.csv}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path, ["n_samples=100000000"])
    message = str(info.value)
    most = MAX_SAMPLE_BYTES // (5 * 8)
    assert "n_samples: 100000000 samples of 'five' (5 values each: 5 columns in" in message
    assert "3.7 GiB" in message and f"at most {most} for this dataset" in message
    assert load_experiment(path, [f"n_samples={most}"]).n_samples == most
    # a schema file gives the count; a file not there yet is left to ingest
    CategoricalSchema((("a", ("1",)), ("b", ("2",)))).to_yaml(tmp_path / "two.yaml")
    two = _user_experiment(tmp_path, "  two: {kind: categorical, train: five.csv, schema: two.yaml}\n")
    assert load_experiment(two, ["n_samples=100000000"]).n_samples == 100_000_000   # 1.5 GiB
    gone = _user_experiment(tmp_path, "  gone: {kind: categorical, train: nowhere.csv}\n")
    assert load_experiment(gone, ["n_samples=100000000"]).n_samples == 100_000_000


def test_too_many_samples_of_a_users_images_are_refused(tmp_path):
    from pmodel.config import ConfigError, load_experiment

    images.write_png_folder(np.zeros((2, 32, 32), dtype=np.uint8), tmp_path / "imgs")
    path = _user_experiment(tmp_path, "  imgs: {kind: image, train: imgs}\n")
    with pytest.raises(ConfigError, match=r"300000 samples of 'imgs' \(1024 values each: 32x32 "
                                          r"pixels.*at most 262144"):
        load_experiment(path, ["n_samples=300000"])
    points = _user_experiment(tmp_path, "  places: {kind: points, train: places.csv}\n")
    assert load_experiment(points, ["n_samples=100000000"]).n_samples == 100_000_000  # 1.5 GiB


def test_pmodel_run_refuses_it_at_once_with_exit_code_2(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "five.csv").write_text("a,b,c,d,e\n1,2,3,4,5\n")
    path = _user_experiment(tmp_path, "  five: {kind: categorical, train: five.csv}\n")
    env = {**os.environ, "PMODEL_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(path), "--set",
                             "n_samples=100000000"], cwd=Path(__file__).resolve().parents[1],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "samples of 'five'" in result.stderr and "over the limit of 2 GiB" in result.stderr
    assert not (tmp_path / "home" / "mlruns").exists()   # nothing started


@pytest.mark.parametrize("entry,fragment", [
    ("{kind: categorical, train: a.csv, missing: drop}", "mine.missing: Input should be 'error' or 'category'"),
    ("{kind: categorical, train: a.csv, max_categories: 1}", "mine.max_categories: Input should be greater than or equal to 2"),
    ("{kind: points, train: a.csv, missing: category}", "'missing' applies to categorical data only"),
    ("{kind: image, train: imgs, max_categories: 50}", "'max_categories' applies to categorical data only"),
])
def test_the_table_options_are_checked_when_the_config_loads(entry, fragment, tmp_path):
    from pmodel.config import ConfigError, load_experiment

    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_experiment(_user_experiment(tmp_path, f"  mine: {entry}\n"))
