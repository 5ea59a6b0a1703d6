"""land: the real mask, exact areas, exact sampling."""

from __future__ import annotations

import numpy as np
import pytest
from global_land_mask import globe
from scipy import stats

from pmodel.datasets import land


def test_every_sample_is_on_land_by_the_packages_own_lookup(land_truth):
    X = land_truth.sample(200_000, rng=np.random.default_rng(0))
    assert X.shape == (200_000, 2) and X.dtype == np.float64
    assert globe.is_land(X[:, 1].copy(), X[:, 0].copy()).all()
    assert land.is_land(X[:, 0], X[:, 1]).all()
    assert (X[:, 1] >= -60).all() and (X[:, 1] <= 90).all()
    assert (np.abs(X[:, 0]) <= 180).all()


def test_whole_globe_land_area_matches_the_masks_own_count():
    truth = land.LandData(land.Region.globe())
    n_land = int(np.count_nonzero(~globe._mask))
    assert truth.n_land_cells == n_land
    assert truth.land_area_deg2 == pytest.approx(n_land / 120**2, rel=1e-15)
    # sanity: about 29% of the equirectangular plane, Antarctica included
    assert 0.25 < truth.land_area_deg2 / (360 * 180) < 0.40


def test_default_region_leaves_out_antarctica(land_truth):
    assert land_truth.region == land.Region(-180, 180, -60, 90)
    rows = 150 * 120  # lat 90 .. -60
    assert land_truth.n_land_cells == int(np.count_nonzero(~globe._mask[:rows]))
    assert land_truth.entropy() == pytest.approx(np.log(land_truth.land_area_deg2))


def test_unaligned_region_snaps_inward_and_counts_exactly():
    region = land.Region(lon_min=5.004, lon_max=15.5, lat_min=44.001, lat_max=50.0)
    truth = land.LandData(region)
    snapped = truth.region
    assert snapped.lon_min == pytest.approx(5 + 1 / 120) and snapped.lat_min == pytest.approx(44 + 1 / 120)
    assert snapped.lon_max == 15.5 and snapped.lat_max == 50.0
    rows = slice(int(round((90 - 50.0) * 120)), int(round((90 - snapped.lat_min) * 120)))
    cols = slice(int(round((snapped.lon_min + 180) * 120)), int(round((15.5 + 180) * 120)))
    assert truth.n_land_cells == int(np.count_nonzero(~globe._mask[rows, cols]))


def test_is_land_agrees_with_the_package_everywhere_including_edges():
    rng = np.random.default_rng(1)
    lon = np.concatenate([rng.uniform(-180, 180, 100_000), [-180, 180, 0, 179.999999]])
    lat = np.concatenate([rng.uniform(-90, 90, 100_000), [-90, 90, -90, 90]])
    np.testing.assert_array_equal(land.is_land(lon, lat), globe.is_land(lat.copy(), lon.copy()))
    assert not land.is_land(np.array([200.0, np.nan]), np.array([0.0, 0.0])).any()


def test_samples_are_uniform_on_land():
    # a small region: counts per 1-degree block follow the blocks' land areas
    truth = land.LandData(land.Region(lon_min=-10, lon_max=10, lat_min=35, lat_max=45))
    n = 300_000
    X = truth.sample(n, rng=np.random.default_rng(2))
    i, j = land.cell_index(X[:, 0], X[:, 1])
    block = (i - 45 * 120) // 120 * 20 + (j - 170 * 120) // 120
    observed = np.bincount(block, minlength=200)
    ocean = globe._mask[45 * 120:55 * 120, 170 * 120:190 * 120]
    area = (~ocean).reshape(10, 120, 20, 120).sum(axis=(1, 3)).ravel()
    expected = area / area.sum() * n
    keep = expected > 0
    assert observed[~keep].sum() == 0  # nothing in all-sea blocks
    assert stats.chisquare(observed[keep], expected[keep]).pvalue > 1e-3


def test_same_seed_same_points(land_truth):
    a = land_truth.sample(1000, rng=np.random.default_rng(7))
    b = land_truth.sample(1000, rng=np.random.default_rng(7))
    c = land_truth.sample(1000, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_log_prob_is_uniform_on_land_and_minus_inf_elsewhere(land_truth):
    X = np.array([
        [2.35, 48.85],     # Paris: land
        [-30.0, 0.0],      # mid-Atlantic: sea
        [0.0, -80.0],      # Antarctica: land, but outside the default region
    ])
    lp = land_truth.log_prob(X)
    assert lp[0] == pytest.approx(-np.log(land_truth.land_area_deg2))
    assert lp[1] == -np.inf and lp[2] == -np.inf


def test_csv_round_trip_is_exact(tmp_path, land_truth):
    X = land_truth.sample(500, rng=np.random.default_rng(3))
    path = tmp_path / "points.csv"
    land.write_csv(X, path)
    assert path.read_text().splitlines()[0] == "lon,lat"
    np.testing.assert_array_equal(land.read_csv(path), X)


def test_region_rejects_impossible_bounds():
    with pytest.raises(ValueError, match="lon_min < lon_max"):
        land.Region(lon_min=10, lon_max=5)
    with pytest.raises(ValueError, match="smaller than one mask cell"):
        land.Region(lon_min=0.001, lon_max=0.002, lat_min=0, lat_max=1)


def test_land_area_grid_is_exact_per_cell(land_truth):
    lon_edges, lat_edges, area = land_truth.land_area_grid(0.5)
    assert area.shape == (300, 720) and lon_edges[0] == -180 and lat_edges[0] == 90
    assert area.sum() == pytest.approx(land_truth.land_area_deg2, rel=1e-12)
    # the 0.5-degree cell whose top-left corner is (lon 2.0, lat 49.0), around Paris
    i, j = int((90 - 49.0) / 0.5), int((2.0 + 180) / 0.5)
    cells = ~globe._mask[i * 60:(i + 1) * 60, j * 60:(j + 1) * 60]
    assert area[i, j] == pytest.approx(cells.sum() / 120**2, rel=1e-12)
    with pytest.raises(ValueError, match="multiple of 1/120"):
        land_truth.land_area_grid(0.013)


def test_whole_degree_grids_summed_from_the_one_degree_blocks_equal_a_direct_count():
    # a region 23 x 17 degrees: 5- and 10-degree grids end in partial cells
    data = land.LandData(land.Region(lon_min=-3, lon_max=20, lat_min=40, lat_max=57))
    for cell_deg in (1.0, 5.0, 10.0):
        lon_edges, lat_edges, area = data.land_area_grid(cell_deg)
        counts, row_starts, col_starts = data._land_cells_per_block(int(cell_deg * 120))
        assert np.array_equal(area, counts / 120**2)  # the same integer counts
        assert np.array_equal(lat_edges[:-1], 57 - row_starts / 120)
        assert np.array_equal(lon_edges[:-1], -3 + col_starts / 120)
        assert lon_edges[-1] == 20 and lat_edges[-1] == 40
    assert area.shape == (2, 3) and counts.sum() == data.n_land_cells
