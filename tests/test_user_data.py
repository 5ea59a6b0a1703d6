"""Loaders for users' own files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmodel.datasets import fashion, images, land, user


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
