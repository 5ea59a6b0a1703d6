"""scores: every score against an independent, plainly written computation."""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import pytest
from global_land_mask import globe
from scipy.spatial.distance import cdist

from pmodel import scores
from pmodel.datasets import fashion
from pmodel.datasets.land import LandData, Region

SMALL = Region(-10, 10, 35, 45)  # Iberia, the western Mediterranean, a bit of Africa


@pytest.fixture(scope="module")
def small_truth():
    return LandData(SMALL)


def mask_ocean(lon_min, lon_max, lat_min, lat_max):
    """The GLOBE mask over a grid-aligned box, read directly: True = ocean.

    Row i is lat 90 - i/120, column j is lon -180 + j/120.
    """
    rows = slice(round((90 - lat_max) * 120), round((90 - lat_min) * 120))
    cols = slice(round((lon_min + 180) * 120), round((lon_max + 180) * 120))
    return globe._mask[rows, cols]


# ---------------------------------------------------------------------------
# heldout_loglik
# ---------------------------------------------------------------------------

def test_heldout_loglik_fields_match_numpy():
    lp = np.array([-1.5, -np.inf, -2.25, -0.5, -np.inf, -3.0])
    s = scores.heldout_loglik(lp, n_dims=4)
    finite = np.array([-1.5, -2.25, -0.5, -3.0])
    assert s.n == 6 and s.n_finite == 4
    assert s.mean_loglik_in_support == finite.mean() == -1.8125
    assert s.out_of_support_rate == 2 / 6
    assert s.mean_loglik == -np.inf  # never silently drop the -inf
    assert s.bits_per_dim == np.inf
    assert s.bits_per_dim_in_support == pytest.approx(1.8125 / (4 * math.log(2)), rel=1e-15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n = 3


def test_heldout_loglik_all_finite_and_none_finite():
    lp = np.array([-0.25, -4.0, -1.0])
    s = scores.heldout_loglik(lp)
    assert s.mean_loglik == s.mean_loglik_in_support == pytest.approx(np.mean(lp), rel=1e-15)
    assert s.out_of_support_rate == 0.0 and s.n_finite == 3
    assert s.bits_per_dim is None
    s = scores.heldout_loglik([-np.inf, -np.inf], n_dims=2)
    assert math.isnan(s.mean_loglik_in_support) and math.isnan(s.bits_per_dim_in_support)
    assert s.out_of_support_rate == 1.0 and s.mean_loglik == -np.inf and s.n_finite == 0


@pytest.mark.parametrize("bad", [[-1.0, np.nan], [-1.0, np.inf], []])
def test_heldout_loglik_refuses_nan_plus_inf_and_empty(bad):
    with pytest.raises(ValueError):
        scores.heldout_loglik(np.array(bad))


# ---------------------------------------------------------------------------
# kl_categorical, entropy_categorical
# ---------------------------------------------------------------------------

def kl_loop(p, q):
    total = 0.0
    for pi, qi in zip(p.ravel().tolist(), q.ravel().tolist()):
        if pi > 0:
            if qi == 0:
                return math.inf
            total += pi * math.log(pi / qi)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_kl_categorical_matches_a_loop_over_cells(seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(60, 0.5)).reshape(3, 4, 5)
    p[0, 0, :3] = 0.0  # cells P never visits
    p /= p.sum()
    q = rng.dirichlet(np.ones(60)).reshape(3, 4, 5)
    q[0, 0, 0] = 0.0   # Q may be 0 where P is 0
    q /= q.sum()
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    expected = kl_loop(p, q)
    assert math.isfinite(expected) and expected > 0
    assert scores.kl_categorical(p, log_q) == pytest.approx(expected, rel=1e-12)
    assert scores.kl_categorical(p, np.log(p + (p == 0))) == 0.0


def test_kl_categorical_is_inf_when_q_misses_a_cell_of_p():
    p = np.array([0.5, 0.5, 0.0])
    assert scores.kl_categorical(p, np.log([0.5, 0.5, 0.0] + np.array([0, 0, 1]))) == 0.0
    assert scores.kl_categorical(p, np.array([0.0, -np.inf, -1.0])) == math.inf


def test_kl_of_fashion_against_uniform_is_log_cells_minus_entropy():
    p = fashion.probability_table()
    log_q = np.full(p.shape, -math.log(4032))
    assert scores.kl_categorical(p, log_q) == pytest.approx(
        math.log(4032) - fashion.entropy(), rel=1e-12)
    assert scores.entropy_categorical(p) == pytest.approx(fashion.entropy(), rel=1e-12)
    loop_h = -sum(x * math.log(x) for x in p.ravel().tolist() if x > 0)
    assert scores.entropy_categorical(p) == pytest.approx(loop_h, rel=1e-12)


def test_kl_categorical_refuses_bad_tables():
    with pytest.raises(ValueError, match="sum to 1"):
        scores.kl_categorical([0.5, 0.6], [0.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        scores.kl_categorical([0.5, 0.5], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        scores.kl_categorical([0.5, 0.5], [np.nan, 0.0])


# ---------------------------------------------------------------------------
# kl_land
# ---------------------------------------------------------------------------

def test_kl_land_of_the_truths_own_density_is_zero(small_truth):
    log_a = math.log(small_truth.land_area_deg2)
    assert scores.kl_land(small_truth, lambda X: np.full(len(X), -log_a)) == pytest.approx(
        0.0, abs=1e-9)


def test_kl_land_of_uniform_over_the_region_is_log_area_ratio(small_truth):
    region_area = 20.0 * 10.0  # (10 - -10) x (45 - 35) deg^2
    land_area = np.count_nonzero(~mask_ocean(-10, 10, 35, 45)) / 120**2
    kl = scores.kl_land(small_truth, lambda X: np.full(len(X), -math.log(region_area)))
    assert kl == pytest.approx(math.log(region_area / land_area), rel=1e-12)


def test_kl_land_is_inf_when_the_model_misses_land(small_truth):
    def west_only(X):  # uniform on lon < 0: Sardinia, Italy and Tunisia get nothing
        return np.where(X[:, 0] < 0, -math.log(100.0), -np.inf)

    assert scores.kl_land(small_truth, west_only) == math.inf


@pytest.mark.parametrize("chunk", [None, 500])  # 500: many bands of grid rows
def test_kl_land_is_exact_for_a_histogram_model_at_any_finer_grid(small_truth, chunk,
                                                                 monkeypatch):
    if chunk:
        monkeypatch.setattr(scores.truth, "_KL_LAND_CHUNK", chunk)
    # a 1-degree histogram model (Laplace-smoothed counts of truth samples)
    rng = np.random.default_rng(0)
    X = small_truth.sample(500, rng=rng)
    counts = np.zeros((10, 20))  # rows: lat 35..45, cols: lon -10..10
    np.add.at(counts, (np.floor(X[:, 1]).astype(int) - 35, np.floor(X[:, 0]).astype(int) + 10), 1)
    q = (counts + 1) / (counts.sum() + counts.size)  # per 1 deg^2 block

    def log_density(P):
        return np.log(q[np.floor(P[:, 1]).astype(int) - 35, np.floor(P[:, 0]).astype(int) + 10])

    # independent: integrate over the mask's land cells block by block
    n_land = np.count_nonzero(~mask_ocean(-10, 10, 35, 45))
    area_total = n_land / 120**2
    expected = 0.0
    for r in range(10):
        for c in range(20):
            land_b = np.count_nonzero(~mask_ocean(c - 10, c - 9, r + 35, r + 36)) / 120**2
            if land_b > 0:
                expected += land_b / area_total * (-math.log(area_total) - math.log(q[r, c]))
    assert expected > 0.05
    for cell_deg in (0.1, 0.5, 1.0):
        assert scores.kl_land(small_truth, log_density, cell_deg=cell_deg) == pytest.approx(
            expected, rel=1e-10)


def test_kl_land_refuses_a_broken_density(small_truth):
    with pytest.raises(ValueError, match="shape"):
        scores.kl_land(small_truth, lambda X: np.zeros((len(X), 1)), cell_deg=1.0)
    with pytest.raises(ValueError, match="NaN"):
        scores.kl_land(small_truth, lambda X: np.full(len(X), np.nan), cell_deg=1.0)


def test_kl_land_on_the_default_region(land_truth):
    A = land_truth.land_area_deg2
    assert scores.kl_land(land_truth, lambda X: np.full(len(X), -math.log(A))) == pytest.approx(
        0.0, abs=1e-9)
    region_area = 360.0 * 150.0
    kl = scores.kl_land(land_truth, lambda X: np.full(len(X), -math.log(region_area)))
    assert kl == pytest.approx(math.log(region_area / A), rel=1e-12)


# ---------------------------------------------------------------------------
# box_land_shares
# ---------------------------------------------------------------------------

def test_box_land_shares_match_direct_mask_counts(small_truth):
    ocean_box = mask_ocean(-5, 5, 38, 44)
    land_region = np.count_nonzero(~mask_ocean(-10, 10, 35, 45))
    got = scores.box_land_shares(small_truth, (-5, 5, 38, 44))
    assert got["box_sea_share"] == pytest.approx(ocean_box.sum() / ocean_box.size, rel=1e-14)
    assert got["land_outside_box_share"] == pytest.approx(
        (land_region - np.count_nonzero(~ocean_box)) / land_region, rel=1e-14)
    assert 0.1 < got["box_sea_share"] < 0.9 and 0.1 < got["land_outside_box_share"] < 0.9


def test_box_land_shares_clip_to_the_region_and_snap_inward(small_truth):
    aligned = scores.box_land_shares(small_truth, (-10, 0, 35, 40))
    assert scores.box_land_shares(small_truth, (-20, 0, 30, 40)) == aligned
    assert scores.box_land_shares(small_truth, (-10.004, 0.006, 34.9, 40.001)) == aligned


def test_box_land_shares_of_an_all_sea_box(small_truth):
    # the Atlantic west of Morocco
    assert np.count_nonzero(~mask_ocean(-10, -9, 35, 36)) == 0
    got = scores.box_land_shares(small_truth, (-10, -9, 35, 36))
    assert got == {"box_sea_share": 1.0, "land_outside_box_share": 1.0}
    with pytest.raises(ValueError, match="overlap"):
        scores.box_land_shares(small_truth, (20, 30, 35, 45))


# ---------------------------------------------------------------------------
# on_land_rate, land_coverage
# ---------------------------------------------------------------------------

def test_on_land_rate_on_known_points(land_truth):
    points = np.array([
        [2.35, 48.85],    # Paris: land
        [-3.70, 40.42],   # Madrid: land
        [-30.0, 0.0],     # Atlantic: sea
        [0.0, -80.0],     # Antarctica: land, but outside the default region
        [np.nan, np.nan],
    ])
    assert scores.on_land_rate(points, land_truth) == 2 / 5


def test_on_land_rate_agrees_with_the_package_lookup(land_truth):
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-180, 180, 20_000), rng.uniform(-59.5, 89.5, 20_000)
    expected = globe.is_land(lat.copy(), lon.copy()).mean()
    assert scores.on_land_rate(np.column_stack([lon, lat]), land_truth) == expected


def test_land_coverage_matches_a_direct_count(small_truth):
    rng = np.random.default_rng(5)
    at_sea = [[-9.5, 35.5], [-30.0, 0.0]]  # count in n, never in coverage
    X = np.concatenate([small_truth.sample(150, rng=rng), at_sea])
    n = len(X)
    # 1-degree blocks of the small region: land area of each, and which hold an on-land sample
    areas, hit = {}, set()
    for r in range(35, 45):
        for c in range(-10, 10):
            a = np.count_nonzero(~mask_ocean(c, c + 1, r, r + 1)) / 120**2
            if a > 0:
                areas[(r, c)] = a
    for lon, lat in X[:150]:
        hit.add((math.floor(lat), math.floor(lon)))
    A = sum(areas.values())
    coverage = len(hit) / len(areas)
    expected = sum(1 - (1 - a / A) ** n for a in areas.values()) / len(areas)
    got = scores.land_coverage(X, small_truth, cell_deg=1.0)
    assert got["coverage"] == pytest.approx(coverage, rel=1e-14)
    assert got["expected_coverage_truth"] == pytest.approx(expected, rel=1e-12)
    assert got["land_coverage"] == pytest.approx(coverage / expected, rel=1e-12)
    assert got["cell_deg"] == 1.0


def test_expected_coverage_matches_monte_carlo_over_truth_samples(small_truth):
    rng = np.random.default_rng(7)
    n, reps = 100, 300
    runs = [scores.land_coverage(small_truth.sample(n, rng=rng), small_truth) for _ in range(reps)]
    mc = np.array([r["coverage"] for r in runs])
    expected = runs[0]["expected_coverage_truth"]
    assert abs(mc.mean() - expected) < 4 * mc.std() / math.sqrt(reps) + 1e-3
    assert np.mean([r["land_coverage"] for r in runs]) == pytest.approx(1.0, abs=0.02)


def test_land_coverage_of_truth_samples_is_about_one_and_of_one_spot_is_small(land_truth):
    X = land_truth.sample(2000, rng=np.random.default_rng(11))
    assert scores.land_coverage(X, land_truth)["land_coverage"] == pytest.approx(1.0, abs=0.05)
    spot = np.tile([2.35, 48.85], (2000, 1))
    got = scores.land_coverage(spot, land_truth)
    _, _, area = land_truth.land_area_grid(1.0)
    assert got["coverage"] == 1 / np.count_nonzero(area > 0)
    assert got["land_coverage"] < 0.01


# ---------------------------------------------------------------------------
# prdc
# ---------------------------------------------------------------------------

def prdc_dense(real, fake, k):
    """The authors' compute_prdc (clovaai/generative-evaluation-prdc, prdc/prdc.py),
    transcribed on full distance matrices: open balls (``<``), radius the
    (k+1)-th smallest distance with the point itself counted. Distances are
    exact (scipy's cdist) where the authors call sklearn's pairwise_distances,
    whose |x|^2 - 2x.y + |y|^2 can move an exact tie by an ulp."""
    real = real.reshape(len(real), -1).astype(np.float64)
    fake = fake.reshape(len(fake), -1).astype(np.float64)

    def kth_value(unsorted, kk):  # the authors' get_kth_value
        indices = np.argpartition(unsorted, kk, axis=-1)[..., :kk]
        return np.take_along_axis(unsorted, indices, axis=-1).max(axis=-1)

    r_real = kth_value(cdist(real, real), k + 1)
    r_fake = kth_value(cdist(fake, fake), k + 1)
    d = cdist(real, fake)  # (N, M)
    in_real_ball = d < np.expand_dims(r_real, axis=1)
    return {
        "precision": in_real_ball.any(axis=0).mean(),
        "recall": (d < np.expand_dims(r_fake, axis=0)).any(axis=1).mean(),
        "density": (1.0 / float(k)) * in_real_ball.sum(axis=0).mean(),
        "coverage": (d.min(axis=1) < r_real).mean(),
    }


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["normal-2d", "normal-5d", "grid-2d", "sparse-grid-2d",
                                  "grid-3d", "ints-20d"])
def test_prdc_matches_dense_reference(kind, seed, k):
    rng = np.random.default_rng(seed)
    if kind.startswith("normal"):
        d = int(kind.split("-")[1][:-1])
        real = rng.normal(size=(200, d))
        fake = rng.normal(loc=0.4, scale=1.3, size=(150, d))
    elif kind == "grid-2d":  # many exact distance ties and duplicates
        real = rng.integers(0, 12, size=(200, 2))
        fake = rng.integers(2, 14, size=(150, 2))
    elif kind == "sparse-grid-2d":  # ties at radii such as sqrt(13), sqrt(18), whose square
        real = rng.integers(0, 40, size=(200, 2))  # rounds below: a tree would drop them
        fake = rng.integers(3, 43, size=(150, 2))
    elif kind == "grid-3d":  # ties at radii such as sqrt(3), sqrt(6)
        real = rng.integers(0, 8, size=(200, 3))
        fake = rng.integers(1, 9, size=(150, 3))
    else:  # high dimension: brute-force search
        real = rng.integers(0, 3, size=(120, 20))
        fake = rng.integers(0, 4, size=(100, 20))
    got = scores.prdc(real, fake, k=k)
    want = prdc_dense(real, fake, k)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert 0 < want["precision"] < 1 or kind != "normal-2d"


def test_prdc_of_identical_sets_is_perfect():
    X = np.random.default_rng(0).normal(size=(300, 3))
    got = scores.prdc(X, X.copy(), k=5)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    # each point's ball holds itself and its k-1 nearer neighbours, not the k-th
    # (open balls, as the authors' code); closed balls gave (k+1)/k = 1.2
    assert got["density"] == 1.0


@pytest.mark.parametrize("kind", ["same", "duplicated", "rounded", "images"])
def test_prdc_on_tied_data_matches_the_authors_figures(kind):
    rng = np.random.default_rng(5)
    if kind == "same":  # prdc(X, X) on a grid: every distance is tied many times
        real = rng.integers(0, 6, size=(150, 2))
        fake = real.copy()
    elif kind == "duplicated":  # each point three times: radius 0 for many
        base = rng.normal(size=(60, 2))
        real = np.repeat(base, 3, axis=0)
        fake = np.concatenate([base[:30], rng.normal(size=(90, 2))])
    elif kind == "rounded":  # coordinates rounded to 0.1 degree, as in a CSV
        real = np.round(rng.uniform(-5, 5, size=(300, 2)), 1)
        fake = np.round(rng.uniform(-4, 6, size=(250, 2)), 1)
    else:  # integer images (brute force)
        real = rng.integers(0, 2, size=(80, 4, 5)).astype(np.uint8)
        fake = np.concatenate([real[:40], rng.integers(0, 2, size=(40, 4, 5)).astype(np.uint8)])
    got = scores.prdc(real, fake, k=5)
    want = prdc_dense(real, fake, 5)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_prdc_memory_grows_with_the_points_not_with_the_pairs():
    # One isolated real point has a ball that covers the whole cloud: a search
    # of every fake with the largest radius (the former method) returned all
    # N x M pairs (over 1 GB here); searching each ball with its own radius
    # keeps the pairs near k (N + M).
    import tracemalloc

    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(size=(20_000, 2)), [[1000.0, 1000.0]]])
    fake = rng.normal(size=(20_000, 2))
    tracemalloc.start()
    try:
        got = scores.prdc(real, fake, k=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"prdc on 20,000 points peaked at {peak / 1e6:.0f} MB"
    assert got["precision"] > 0.99  # the outlier's ball holds nearly every fake point


def test_prdc_accepts_images_and_refuses_too_few_points():
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (40, 4, 4), dtype=np.uint8)
    fake = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    got = scores.prdc(real, fake, k=3)
    want = prdc_dense(real, fake, 3)
    assert all(got[key] == pytest.approx(want[key], abs=1e-12) for key in want)
    with pytest.raises(ValueError, match="more than k"):
        scores.prdc(real[:5], fake, k=5)


# ---------------------------------------------------------------------------
# novelty
# ---------------------------------------------------------------------------

def test_novelty_of_categorical_rows():
    train = np.array([[0, 1, 2], [1, 1, 1]])
    samples = np.array([[0, 1, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1], [0, 0, 0]])
    # new: [2,2,2] twice and [0,0,0]; distinct: 012, 222, 111, 000
    assert scores.novelty(samples, train) == {"novelty_rate": 3 / 5, "unique_rate": 4 / 5}


def test_novelty_of_images():
    a = np.zeros((2, 2), np.uint8)
    b = np.array([[0, 0], [0, 1]], np.uint8)
    c = np.array([[255, 0], [0, 0]], np.uint8)
    train = np.stack([a, c])
    samples = np.stack([a, a, b, c])  # b is the only new one; a, b, c distinct
    assert scores.novelty(samples, train) == {"novelty_rate": 1 / 4, "unique_rate": 3 / 4}


def test_novelty_of_points_compares_exact_values():
    train = np.array([[2.35, 48.85], [0.0, 1.0]])
    samples = np.array([[2.35, 48.85], [-0.0, 1.0], [2.35 + 1e-9, 48.85], [48.85, 2.35]])
    assert scores.novelty(samples, train) == {"novelty_rate": 2 / 4, "unique_rate": 1.0}


def test_novelty_matches_set_arithmetic_on_random_rows():
    rng = np.random.default_rng(2)
    train, samples = rng.integers(0, 3, (40, 3)), rng.integers(0, 3, (60, 3))
    train_set = {tuple(row) for row in train.tolist()}
    novel = sum(tuple(row) not in train_set for row in samples.tolist())
    distinct = len({tuple(row) for row in samples.tolist()})
    assert scores.novelty(samples, train) == {"novelty_rate": novel / 60,
                                              "unique_rate": distinct / 60}


@pytest.mark.parametrize("how", ["chunked", "every-hash-collides"])
def test_novelty_streams_the_training_set_and_checks_hash_collisions(monkeypatch, how):
    # The training set is read in chunks and looked up by hash; a hash match is
    # only a candidate, compared value by value. Force tiny chunks, or make every
    # row hash alike, and the answer must not move.
    rng = np.random.default_rng(3)
    train = np.concatenate([rng.integers(0, 4, (500, 3)), [[0, 0, 0]]]).astype(np.float64)
    samples = rng.integers(0, 5, (300, 3)).astype(np.float64)
    samples[0] = [-0.0, 0.0, -0.0]  # equal to the training row (0, 0, 0) by value
    train_set = {tuple(row) for row in (train + 0.0).tolist()}
    want = {"novelty_rate": sum(tuple(r) not in train_set for r in (samples + 0.0).tolist()) / 300,
            "unique_rate": len({tuple(r) for r in (samples + 0.0).tolist()}) / 300}
    if how == "chunked":
        monkeypatch.setattr(importlib.import_module("pmodel.scores.novelty"), "_NOVELTY_CHUNK", 7)
    else:
        monkeypatch.setattr(importlib.import_module("pmodel.scores.novelty"), "_row_hashes", lambda X: np.zeros(len(X), np.uint64))
    assert scores.novelty(samples, train) == want
    assert 0 < want["novelty_rate"] < 1


# ---------------------------------------------------------------------------
# image_validity
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def some_renders(renders):
    """300 distinct renders, picked at random."""
    flat = renders.reshape(len(renders), -1)
    distinct_rows = sorted({row.tobytes(): i for i, row in enumerate(flat)}.values())
    pick = np.random.default_rng(0).choice(distinct_rows, 300, replace=False)
    return renders[pick]


def dense_rms(a, b):
    """RMS pixel distance between every image of a and of b, (len(a), len(b))."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2))


def test_image_validity_thresholds_are_half_of_each_renders_nearest_neighbour(some_renders):
    d = dense_rms(some_renders, some_renders)
    np.fill_diagonal(d, np.inf)
    per_render = d.min(axis=1) / 2
    got = scores.image_validity(some_renders, some_renders)
    assert got["threshold_min"] == pytest.approx(per_render.min(), rel=1e-12)
    assert got["threshold_median"] == pytest.approx(np.median(per_render), rel=1e-12)
    assert got["threshold_min"] > 0
    assert (got["valid_rate"], got["n_valid_combinations"], got["mean_distance"]) == (1.0, 300, 0.0)
    # a sample just inside / just outside its own render's threshold (and nowhere else)
    r = int(np.argmax(per_render))
    step = np.zeros(1024)
    step[0] = 1.0  # one pixel, as a float image, moved by delta gives RMS delta / 32
    for factor, expected in [(0.99, 1.0), (1.01, 0.0)]:
        x = some_renders[r].reshape(-1).astype(np.float64) + step * per_render[r] * 32 * factor
        if x[0] > 255:  # move the pixel down instead
            x[0] -= 2 * per_render[r] * 32 * factor
        got = scores.image_validity(x.reshape(1, 32, 32), some_renders)
        assert got["valid_rate"] == expected, factor


def test_image_validity_drops_duplicate_renders_and_counts_combinations(some_renders):
    renders = np.concatenate([some_renders, some_renders[:50]])  # 50 duplicated
    samples = np.concatenate([some_renders[:20], some_renders[:20], some_renders[100:110]])
    got = scores.image_validity(samples, renders)
    assert got["valid_rate"] == 1.0 and got["n_valid_combinations"] == 30
    assert got["threshold_min"] == scores.image_validity(samples, some_renders)["threshold_min"]


def test_image_validity_of_noisy_renders_and_of_noise(some_renders):
    rng = np.random.default_rng(4)
    threshold = scores.image_validity(some_renders[:2], some_renders)["threshold_min"]
    # +-1 on 20 of the 1024 pixels: RMS <= sqrt(20 / 1024) = 0.14, within the threshold
    assert threshold > math.sqrt(20 / 1024)
    flat = some_renders.reshape(300, -1).astype(int)
    pixels = np.argsort(rng.random(flat.shape), axis=1)[:, :20]
    np.put_along_axis(flat, pixels, np.take_along_axis(flat, pixels, axis=1)
                      + rng.choice([-1, 1], size=(300, 20)), axis=1)
    noisy = np.clip(flat, 0, 255).reshape(some_renders.shape)
    assert (noisy != some_renders).any(axis=(1, 2)).all()
    got = scores.image_validity(noisy.astype(np.uint8), some_renders)
    assert got["valid_rate"] == 1.0 and got["n_valid_combinations"] == 300
    assert got["mean_distance"] == pytest.approx(dense_rms(noisy, some_renders).min(axis=1).mean(),
                                                 rel=1e-12)
    noise = rng.integers(0, 256, (50, 32, 32), dtype=np.uint8)
    got = scores.image_validity(noise, some_renders)
    assert got["valid_rate"] == 0.0 and got["n_valid_combinations"] == 0
    assert got["mean_distance"] == pytest.approx(dense_rms(noise, some_renders).min(axis=1).mean(),
                                                 rel=1e-12)
    # an explicit threshold of 0 accepts exact renders only
    mixed = np.concatenate([some_renders[:10], noise[:10]])
    got = scores.image_validity(mixed, some_renders, threshold=0.0)
    assert got["valid_rate"] == 0.5 and got["n_valid_combinations"] == 10
    assert got["threshold_min"] == got["threshold_median"] == 0.0


def test_image_validity_on_all_renders(renders):
    n_distinct = len({img.tobytes() for img in renders})
    got = scores.image_validity(renders, renders)
    assert got["threshold_min"] > 0 and got["threshold_median"] > got["threshold_min"]
    assert got["valid_rate"] == 1.0 and got["n_valid_combinations"] == n_distinct


# ---------------------------------------------------------------------------
# standard errors
# ---------------------------------------------------------------------------

def test_heldout_loglik_standard_errors_match_numpy():
    rng = np.random.default_rng(3)
    lp = rng.normal(-5.0, 2.0, size=400)
    s = scores.heldout_loglik(lp, n_dims=8)
    se = math.sqrt(sum((x - lp.mean())**2 for x in lp) / (len(lp) - 1)) / math.sqrt(len(lp))
    assert s.se == pytest.approx(se, rel=1e-12) and s.se_in_support == s.se
    assert s.bits_per_dim_se == pytest.approx(se / (8 * math.log(2)), rel=1e-12)
    # an infinite mean has no standard error; the mean over the support keeps its own
    lp[[5, 9]] = -np.inf
    s = scores.heldout_loglik(lp, n_dims=8)
    finite = lp[np.isfinite(lp)]
    assert s.se is None and s.bits_per_dim_se is None
    assert s.se_in_support == pytest.approx(finite.std(ddof=1) / math.sqrt(len(finite)), rel=1e-12)
    assert scores.heldout_loglik([-1.0]).se is None  # one example: no spread to measure


def test_proportion_and_kl_monte_carlo_standard_errors():
    from pmodel.scores.likelihood import proportion_se
    from pmodel.scores.truth import kl_monte_carlo_se

    assert proportion_se(0.2, 400) == pytest.approx(math.sqrt(0.2 * 0.8 / 400))
    assert proportion_se(0.0, 10) == 0.0 and proportion_se(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        proportion_se(0.5, 0)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50))
    a, b = rng.normal(size=50), rng.normal(size=50)
    want = math.sqrt(sum(p[i]**2 * (a[i] - b[i])**2 / 2 for i in range(50)))
    assert kl_monte_carlo_se(p, a, b) == pytest.approx(want, rel=1e-12)
    a[3] = -np.inf
    assert kl_monte_carlo_se(p, a, b) is None
    p[3], p[4] = 0.0, p[4] + p[3]  # a cell P never draws does not count
    assert kl_monte_carlo_se(p, a, b) is not None


def test_a_standard_error_is_recorded_only_beside_a_finite_estimate():
    from pmodel.families import CategoricalDomain, make_family
    from pmodel.problems import Problem
    from pmodel.scores import run_scores
    from pmodel.truths import TableTruth

    X = fashion.sample_codes(600, rng=np.random.default_rng(0))
    problem = Problem("f", CategoricalDomain(fashion.SCHEMA.shape), X[:100], X[100:],
                      truth=TableTruth(fashion.probability_table().ravel()))
    model = make_family("naive_bayes", problem.domain, alpha=1.0).fit(problem.train)
    samples = model.sample(300, rng=np.random.default_rng(1))
    m, _ = run_scores(model, problem, samples)
    lp = model.log_prob(problem.heldout)
    assert m["heldout_loglik_se"] == pytest.approx(lp.std(ddof=1) / math.sqrt(500), rel=1e-12)
    assert m["heldout_loglik_in_support_se"] == m["heldout_loglik_se"]
    assert m["out_of_support_rate_se"] == 0.0
    nov = m["novelty_rate"]
    assert m["novelty_rate_se"] == pytest.approx(math.sqrt(nov * (1 - nov) / 300))
    assert "kl_to_truth_se" not in m and "entropy_truth_se" not in m  # exact: no se
    # the copying multinomial: heldout_loglik is -inf, so no heldout_loglik_se
    mle = make_family("multinomial", problem.domain, alpha=0.0).fit(problem.train)
    m, _ = run_scores(mle, problem, mle.sample(300, rng=np.random.default_rng(1)))
    assert m["heldout_loglik"] == -math.inf and "heldout_loglik_se" not in m
    assert m["heldout_loglik_in_support_se"] > 0
    assert all(math.isfinite(v) for k, v in m.items() if k.endswith("_se"))
