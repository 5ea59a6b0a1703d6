"""fashion: the exact P_data, its sampling and its files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pmodel.datasets import fashion
from pmodel.datasets.schema import CategoricalSchema


def test_columns_and_values_are_the_chapters():
    assert fashion.COLUMNS == ("accessories_type", "clothing_color", "clothing_type",
                               "hair_color", "hair_type")
    assert fashion.SCHEMA.shape == (3, 8, 4, 6, 7)
    assert fashion.SCHEMA.n_cells == 4032
    assert fashion.HAIR_TYPE[0] == "NoHair" and fashion.CLOTHING_COLOR[-1] == "White"


def test_conditional_tables_are_distributions():
    for name, table in fashion.CONDITIONAL_TABLES.items():
        assert np.all(table > 0), name
        np.testing.assert_allclose(table.sum(axis=-1), 1.0, atol=1e-12, err_msg=name)


def test_probability_table_sums_to_one_over_4032_cells():
    p = fashion.probability_table()
    assert p.shape == (3, 8, 4, 6, 7)
    assert np.all(p > 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_probability_table_is_the_product_of_the_network_tables():
    p = fashion.probability_table()
    names = [cats for cats in fashion.SCHEMA.categories]
    for a, cc, ct, hc, ht in itertools.product(*(range(len(c)) for c in names)):
        direct = (fashion.P_HAIR_TYPE[ht] * fashion.P_HAIR_COLOR_GIVEN_HAIR_TYPE[ht, hc]
                  * fashion.P_ACCESSORIES_GIVEN_HAIR_COLOR[hc, a]
                  * fashion.P_CLOTHING_TYPE_GIVEN_HAIR_TYPE[ht, ct]
                  * fashion.P_CLOTHING_COLOR_GIVEN_CLOTHING_TYPE[ct, cc])
        assert p[a, cc, ct, hc, ht] == pytest.approx(direct, rel=1e-12)


def test_prefers_white_clothes_and_silvergray_hair():
    p = fashion.probability_table()
    clothing_color = p.sum(axis=(0, 2, 3, 4))
    hair_color = p.sum(axis=(0, 1, 2, 4))
    assert fashion.CLOTHING_COLOR[int(np.argmax(clothing_color))] == "White"
    assert fashion.HAIR_COLOR[int(np.argmax(hair_color))] == "SilverGray"


def test_columns_really_depend_on_each_other():
    # KL(P || product of marginals), the total correlation: zero iff independent
    p = fashion.probability_table()
    marginals = [p.sum(axis=tuple(k for k in range(5) if k != j)) for j in range(5)]
    q = np.einsum("a,b,c,d,e->abcde", *marginals)
    total_correlation = float((p * np.log(p / q)).sum())
    assert total_correlation > 0.1


def test_entropy_is_exact():
    p = fashion.probability_table().ravel()
    assert fashion.entropy() == pytest.approx(-sum(x * np.log(x) for x in p), rel=1e-12)
    assert 0 < fashion.entropy() < np.log(4032)


def test_log_prob_of_rows_matches_the_table():
    codes = fashion.sample_codes(100, rng=np.random.default_rng(5))
    p = fashion.probability_table()
    expected = np.log([p[tuple(row)] for row in codes])
    np.testing.assert_allclose(fashion.log_prob(codes), expected, rtol=1e-12)


def test_sampled_frequencies_agree_with_p_data():
    n = 400_000
    codes = fashion.sample_codes(n, rng=np.random.default_rng(20261125))
    observed = np.bincount(fashion.SCHEMA.cell_index(codes), minlength=4032)
    expected = fashion.probability_table().ravel() * n
    # pool the cells whose expected count is below 5 into one bin (chi-square's rule of thumb)
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    result = stats.chisquare(obs, exp)
    assert result.pvalue > 1e-3, result


def test_same_seed_same_rows_different_seed_different_rows():
    a = fashion.sample(50, rng=np.random.default_rng(1))
    b = fashion.sample(50, rng=np.random.default_rng(1))
    c = fashion.sample(50, rng=np.random.default_rng(2))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_csv_round_trip_keeps_rows_and_order(tmp_path):
    df = fashion.sample(30, rng=np.random.default_rng(3))
    path = tmp_path / "rows.csv"
    fashion.write_csv(df, path)
    before = path.read_bytes()
    back = fashion.read_csv(path)
    assert path.read_bytes() == before
    assert list(back.columns) == list(fashion.COLUMNS)
    assert (back.astype(object).to_numpy() == df.to_numpy()).all()
    np.testing.assert_array_equal(fashion.SCHEMA.to_codes(back), fashion.SCHEMA.to_codes(df))


# -- schema -------------------------------------------------------------------

def test_codes_and_cells_are_inverse():
    codes = fashion.sample_codes(200, rng=np.random.default_rng(4))
    df = fashion.SCHEMA.from_codes(codes)
    np.testing.assert_array_equal(fashion.SCHEMA.to_codes(df), codes)
    cells = fashion.SCHEMA.cell_index(codes)
    assert cells.min() >= 0 and cells.max() < 4032
    np.testing.assert_array_equal(fashion.SCHEMA.cell_codes(cells), codes)


def test_to_codes_names_the_unknown_value():
    df = fashion.sample(3, rng=np.random.default_rng(0))
    df.loc[2, "hair_color"] = "Purple"
    with pytest.raises(ValueError, match=r"hair_color.*'Purple'.*row 2"):
        fashion.SCHEMA.to_codes(df)


def test_schema_yaml_round_trip_and_errors(tmp_path):
    path = tmp_path / "schema.yaml"
    fashion.SCHEMA.to_yaml(path)
    assert CategoricalSchema.from_yaml(path) == fashion.SCHEMA
    path.write_text("columns:\n  a: []\n")
    with pytest.raises(ValueError, match="'a' needs a non-empty list"):
        CategoricalSchema.from_yaml(path)
    path.write_text("colums:\n  a: [x]\n")
    with pytest.raises(ValueError, match="'columns'"):
        CategoricalSchema.from_yaml(path)


def test_inferred_schema_says_so():
    df = pd.DataFrame({"b": ["y", "x", "y"], "a": ["p", "q", None]})
    schema = CategoricalSchema.infer(df)
    assert schema.inferred
    assert schema.columns == (("b", ("x", "y")), ("a", ("p", "q")))
