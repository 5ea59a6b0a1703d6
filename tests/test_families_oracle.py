"""Each family's numbers against a plain, independent computation, and the chapter's numbers."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmodel.datasets import fashion
from pmodel.families import CategoricalDomain, ImageDomain, PointsDomain, make_family

FASHION = CategoricalDomain(fashion.SCHEMA.shape)


@pytest.fixture(scope="module")
def rows50():
    return fashion.sample_codes(50, rng=np.random.default_rng(11))


# -- the chapter's numbers ------------------------------------------------------

def test_chapter_parameter_counts(rows50):
    assert make_family("multinomial", FASHION).fit(rows50).n_parameters_ == 4031
    assert make_family("naive_bayes", FASHION).fit(rows50).n_parameters_ == 23
    assert make_family("box", CategoricalDomain((2, 3))).fit(np.array([[0, 0]])).n_parameters_ == 5


def test_laplace_unseen_cell_is_exactly_one_over_4082(rows50):
    model = make_family("multinomial", FASHION, alpha=1.0).fit(rows50)
    seen = set(map(tuple, rows50))
    unseen = np.array([c for c in FASHION.all_cells()[:300] if tuple(c) not in seen][:5])
    np.testing.assert_allclose(np.exp(model.log_prob(unseen)), 1 / 4082, rtol=1e-12)
    mle = make_family("multinomial", FASHION, alpha=0.0).fit(rows50)
    assert (mle.log_prob(unseen) == -np.inf).all()


def test_naive_bayes_row_probability_is_the_product_of_its_five_table_entries(rows50):
    model = make_family("naive_bayes", FASHION, alpha=1.0).fit(rows50)
    table = model.parameter_table(fashion.SCHEMA)
    assert len(table) == 3 + 8 + 4 + 6 + 7
    lookup = {(r.feature, r.value): r.probability for r in table.itertuples()}
    row = {"accessories_type": "Round", "clothing_color": "White", "clothing_type": "Hoodie",
           "hair_color": "SilverGray", "hair_type": "NoHair"}
    product = math.prod(lookup[(k, v)] for k, v in row.items())
    codes = fashion.SCHEMA.to_codes(fashion.pd.DataFrame([row]))
    assert np.exp(model.log_prob(codes))[0] == pytest.approx(product, rel=1e-12)
    # each feature's table sums to 1
    assert np.allclose(table.groupby("feature")["probability"].sum(), 1.0)


# -- categorical ------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_categorical_multinomial_against_direct_counting(rows50, alpha):
    model = make_family("multinomial", FASHION, alpha=alpha).fit(rows50)
    counts = Counter(map(tuple, rows50))
    test = np.vstack([rows50[:10], fashion.sample_codes(20, rng=np.random.default_rng(1))])
    for row, lp in zip(test, model.log_prob(test)):
        p = (counts[tuple(row)] + alpha) / (50 + alpha * 4032)
        assert lp == (-np.inf if p == 0 else pytest.approx(math.log(p), rel=1e-12))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_categorical_naive_bayes_against_direct_counting(rows50, alpha):
    model = make_family("naive_bayes", FASHION, alpha=alpha).fit(rows50)
    test = fashion.sample_codes(30, rng=np.random.default_rng(2))
    for row, lp in zip(test, model.log_prob(test)):
        p = 1.0
        for j, k in enumerate(FASHION.shape):
            p *= (sum(1 for r in rows50 if r[j] == row[j]) + alpha) / (50 + alpha * k)
        assert lp == (-np.inf if p == 0 else pytest.approx(math.log(p), rel=1e-12))


def test_categorical_box_against_direct_computation(rows50):
    model = make_family("box", FASHION).fit(rows50)
    seen = [set(rows50[:, j]) for j in range(5)]
    size = math.prod(len(s) for s in seen)
    test = fashion.sample_codes(40, rng=np.random.default_rng(3))
    for row, lp in zip(test, model.log_prob(test)):
        inside = all(row[j] in seen[j] for j in range(5))
        assert lp == (pytest.approx(-math.log(size)) if inside else -np.inf)


# -- points -------------------------------------------------------------------------

DOMAIN = PointsDomain(-10.0, 10.0, 35.0, 45.0)
POINTS = np.random.default_rng(4).uniform([-9, 36], [7, 44], size=(80, 2))
QUERIES = np.vstack([POINTS[:5], np.random.default_rng(5).uniform([-10, 35], [10, 45], size=(40, 2)),
                     [[10.0, 45.0], [-10.0, 35.0], [11.0, 40.0]]])


def test_points_box_is_one_over_the_box_area():
    model = make_family("box", DOMAIN).fit(POINTS)
    lo, hi = POINTS.min(axis=0), POINTS.max(axis=0)
    area = (hi[0] - lo[0]) * (hi[1] - lo[1])
    for x, lp in zip(QUERIES, model.log_prob(QUERIES)):
        inside = lo[0] <= x[0] <= hi[0] and lo[1] <= x[1] <= hi[1]
        assert lp == (pytest.approx(-math.log(area)) if inside else -np.inf)


@pytest.mark.parametrize("alpha,cell", [(0.0, 1.0), (1.0, 2.0), (0.5, 0.5)])
def test_points_multinomial_against_direct_counting(alpha, cell):
    model = make_family("multinomial", DOMAIN, alpha=alpha, cell_deg=cell).fit(POINTS)
    n_lon, n_lat = round(20 / cell), round(10 / cell)

    def cell_of(x):
        return (min(math.floor((x[0] + 10) / cell), n_lon - 1),
                min(math.floor((x[1] - 35) / cell), n_lat - 1))

    counts = Counter(cell_of(x) for x in POINTS)
    for x, lp in zip(QUERIES, model.log_prob(QUERIES)):
        if not (-10 <= x[0] <= 10 and 35 <= x[1] <= 45):
            assert lp == -np.inf
            continue
        p = (counts[cell_of(x)] + alpha) / (80 + alpha * n_lon * n_lat) / cell**2
        assert lp == (-np.inf if p == 0 else pytest.approx(math.log(p), rel=1e-12))
    assert model.n_parameters_ == n_lon * n_lat - 1


@pytest.mark.parametrize("alpha,width", [(0.0, 1.0), (1.0, 2.5)])
def test_points_naive_bayes_against_direct_counting(alpha, width):
    model = make_family("naive_bayes", DOMAIN, alpha=alpha, bin_deg=width).fit(POINTS)
    n_lon, n_lat = round(20 / width), round(10 / width)

    def density(values, lo, n, k):
        b = min(math.floor((k - lo) / width), n - 1)
        c = sum(1 for v in values if min(math.floor((v - lo) / width), n - 1) == b)
        return (c + alpha) / (80 + alpha * n) / width

    for x, lp in zip(QUERIES[:-1], model.log_prob(QUERIES[:-1])):
        p = density(POINTS[:, 0], -10, n_lon, x[0]) * density(POINTS[:, 1], 35, n_lat, x[1])
        assert lp == (-np.inf if p == 0 else pytest.approx(math.log(p), rel=1e-12))
    assert model.n_parameters_ == (n_lon - 1) + (n_lat - 1)


# -- images -------------------------------------------------------------------------

IMG = ImageDomain(2, 2, levels=4)
IMAGES = np.random.default_rng(6).integers(0, 3, size=(25, 2, 2)).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_image_naive_bayes_against_direct_counting(alpha):
    model = make_family("naive_bayes", IMG, alpha=alpha).fit(IMAGES)
    test = np.random.default_rng(7).integers(0, 4, size=(30, 2, 2)).astype(np.uint8)
    for x, lp in zip(test, model.log_prob(test)):
        p = 1.0
        for (r, c), v in np.ndenumerate(x):
            p *= (int((IMAGES[:, r, c] == v).sum()) + alpha) / (25 + alpha * 4)
        assert lp == (-np.inf if p == 0 else pytest.approx(math.log(p), rel=1e-12))
    assert model.n_parameters_ == 4 * 3


def test_image_box_against_direct_computation():
    model = make_family("box", IMG).fit(IMAGES)
    lo, hi = IMAGES.min(axis=0).astype(int), IMAGES.max(axis=0).astype(int)
    size = math.prod(int(h - l + 1) for l, h in zip(lo.ravel(), hi.ravel()))
    test = np.random.default_rng(8).integers(0, 4, size=(30, 2, 2)).astype(np.uint8)
    for x, lp in zip(test, model.log_prob(test)):
        inside = ((x >= lo) & (x <= hi)).all()
        assert lp == (pytest.approx(-math.log(size)) if inside else -np.inf)


def test_image_multinomial_on_32px_images_in_exact_arithmetic():
    d = ImageDomain(32, 32)
    rng = np.random.default_rng(9)
    train = rng.integers(0, 256, size=(5, 32, 32)).astype(np.uint8)
    train = np.concatenate([train, train[:2]])  # two images seen twice: N = 7
    unseen = rng.integers(0, 256, size=(3, 32, 32)).astype(np.uint8)
    mle = make_family("multinomial", d, alpha=0.0).fit(train)
    np.testing.assert_allclose(mle.log_prob(train[:2]), math.log(2 / 7))
    np.testing.assert_allclose(mle.log_prob(train[2:5]), math.log(1 / 7))
    assert (mle.log_prob(unseen) == -np.inf).all()
    laplace = make_family("multinomial", d, alpha=1.0).fit(train)
    n_cells = 256 ** 1024  # an exact Python integer
    assert laplace.n_parameters_ == n_cells - 1
    # math.log of an exact big integer: an independent computation of log(1 / (N + d))
    np.testing.assert_allclose(laplace.log_prob(unseen), -math.log(7 + n_cells), rtol=1e-12)
    np.testing.assert_allclose(laplace.log_prob(train[:1]), math.log(3) - math.log(7 + n_cells),
                               rtol=1e-12)
    # with d = 256^1024 >> N, essentially every Laplace sample is noise, never a training image
    samples = laplace.sample(50, rng=np.random.default_rng(0))
    assert not any((s == t).all() for s in samples for t in train)
    # the MLE only ever repeats its training images
    again = mle.sample(50, rng=np.random.default_rng(0))
    assert all(any((s == t).all() for t in train) for s in again)


# -- properties ------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       alpha=st.sampled_from([0.0, 0.3, 1.0, 5.0]), n=st.integers(1, 30), seed=st.integers(0, 99))
def test_categorical_families_sum_to_one_for_any_small_table(shape, alpha, n, seed):
    domain = CategoricalDomain(tuple(shape))
    X = np.random.default_rng(seed).integers(0, shape, size=(n, len(shape)))
    cells = domain.all_cells()
    for name, params in [("box", {}), ("multinomial", {"alpha": alpha}),
                         ("naive_bayes", {"alpha": alpha})]:
        model = make_family(name, domain, **params).fit(X)
        assert np.exp(model.log_prob(cells)).sum() == pytest.approx(1.0, abs=1e-9), name
        assert np.isfinite(model.log_prob(X)).all(), name
