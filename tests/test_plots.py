"""Plots: each writes a readable file, and the numbers it prints are the true ones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pmodel import plots
from pmodel.datasets import fashion, land
from pmodel.families import CategoricalDomain, make_family
from pmodel.scores import box_land_shares

MAX_BYTES = 1_000_000
EUROPE_BOX = (-10.0, 40.0, 30.0, 60.0)  # land and the Mediterranean


def open_png(path, *, max_side=4000):
    """The PNG's pixels as an array, after checking it is a modest, readable file."""
    assert path.exists() and path.suffix == ".png"
    assert 0 < path.stat().st_size < MAX_BYTES
    with Image.open(path) as img:
        img.verify()
    img = Image.open(path)
    assert img.format == "PNG"
    assert 100 <= img.width <= max_side and 100 <= img.height <= max_side
    return img


# -- image_grid ----------------------------------------------------------------

def test_image_grid_pixels_are_the_inputs_upscaled_at_their_cells(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(13, 5, 7), dtype=np.uint8)
    n_cols, scale, gap = 4, 3, 2
    path = plots.image_grid(images, tmp_path / "grid.png", n_cols=n_cols, scale=scale)
    assert path == tmp_path / "grid.png"
    got = np.asarray(Image.open(path).convert("L"))
    rows = 4  # ceil(13 / 4)
    assert got.shape == (rows * 5 * scale + (rows - 1) * gap, n_cols * 7 * scale + (n_cols - 1) * gap)
    filled = np.zeros(got.shape, dtype=bool)
    for k, img in enumerate(images):
        r, c = divmod(k, n_cols)
        y, x = r * (5 * scale + gap), c * (7 * scale + gap)
        cell = got[y:y + 5 * scale, x:x + 7 * scale]
        np.testing.assert_array_equal(cell, np.kron(img, np.ones((scale, scale), dtype=np.uint8)))
        filled[y:y + 5 * scale, x:x + 7 * scale] = True
    assert (got[~filled] == 255).all()  # gaps and the empty last cells are white


def test_image_grid_keeps_the_first_100_and_offsets_under_a_title(tmp_path, renders):
    path = plots.image_grid(renders[:120], tmp_path / "grid.png", title="120 renders")
    img = open_png(path)
    got = np.asarray(img.convert("L"))
    top = plots.GRID_TITLE_HEIGHT
    assert got.shape == (top + 10 * 96 + 9 * 2, 10 * 96 + 9 * 2)  # 100 images, 10 x 10
    last = renders[99].repeat(3, axis=0).repeat(3, axis=1)
    np.testing.assert_array_equal(got[top + 9 * 98:top + 9 * 98 + 96, 9 * 98:9 * 98 + 96], last)
    assert (got[:top] < 128).any()  # the title is drawn


def test_image_grid_rounds_and_clips_float_images(tmp_path):
    images = np.array([[[-20.0, 0.4], [254.6, 300.0]]])
    path = plots.image_grid(images, tmp_path / "g.png", scale=1)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("L")), [[0, 0], [255, 255]])


def test_image_grid_rejects_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(n, h, w\)"):
        plots.image_grid(np.zeros((4, 4), np.uint8), tmp_path / "g.png")


def test_image_pairs_put_each_upper_image_above_its_lower_one_with_its_label(tmp_path):
    from pmodel.plots.grids import PAIR_GAP, PAIR_LABEL_HEIGHT, PAIR_RULE

    rng = np.random.default_rng(1)
    upper = rng.integers(0, 256, size=(7, 5, 6), dtype=np.uint8)
    lower = rng.integers(0, 256, size=(7, 5, 6)).astype(np.float64) + 0.3  # drawn rounded
    n_cols, scale, gap = 3, 4, 2
    path = plots.image_pairs(upper, lower, [f"d={k}" for k in range(7)], tmp_path / "p.png",
                             n_cols=n_cols, scale=scale)
    got = np.asarray(Image.open(path).convert("L"))
    cell_h, cell_w = 5 * scale, 6 * scale
    pair = 2 * cell_h + gap + PAIR_LABEL_HEIGHT
    assert got.shape == (3 * pair + 2 * PAIR_GAP, n_cols * cell_w + (n_cols - 1) * gap)
    up = lambda img: np.kron(np.rint(img).astype(np.uint8), np.ones((scale, scale), np.uint8))  # noqa: E731
    for k in range(7):
        r, c = divmod(k, n_cols)
        y, x = r * (pair + PAIR_GAP), c * (cell_w + gap)
        np.testing.assert_array_equal(got[y:y + cell_h, x:x + cell_w], up(upper[k]))
        y += cell_h + gap
        np.testing.assert_array_equal(got[y:y + cell_h, x:x + cell_w], up(lower[k]))
        label = got[y + cell_h:y + cell_h + PAIR_LABEL_HEIGHT, x:x + cell_w]
        assert (label < 128).any(), k  # the label is drawn under its pair
    assert (got[pair + PAIR_GAP // 2] == PAIR_RULE).all()  # a rule between pairs of rows
    empty = got[2 * (pair + PAIR_GAP):, 1 * (cell_w + gap):]  # after the last pair
    assert (empty == 255).all()
    with pytest.raises(ValueError, match="as many"):
        plots.image_pairs(upper, lower[:3], ["a"] * 7, tmp_path / "q.png")


def test_samples_beside_renders_and_render_tolerance_are_readable(tmp_path):
    from pmodel.datasets import jars

    truth = jars.truth()
    rng = np.random.default_rng(2)
    samples = np.clip(truth.images[:12] + rng.normal(0, 5, (12, 32, 32)), 0, 255)
    img = open_png(plots.samples_beside_renders(samples, truth.index, tmp_path / "s.png",
                                                title="12 samples"))
    pair = 2 * 96 + 2 + 18 + 10
    assert img.size == (10 * 96 + 9 * 2, plots.GRID_TITLE_HEIGHT + 2 * pair - 10)
    img = open_png(plots.render_tolerance(truth.images[0], samples[0], truth.index,
                                          tmp_path / "t.png", rng=rng))
    assert img.size == (5 * 2 * plots.DPI, int(2.9 * plots.DPI))  # five panels
    pixels = np.asarray(img.convert("L"))
    assert (pixels < 64).mean() > 0.01 and (pixels == 255).mean() > 0.3  # images and text on white


# -- land_map ------------------------------------------------------------------

@pytest.fixture(scope="module")
def map_points(land_truth):
    """Samples from the truth, uniform points (many at sea), and off-map / NaN points."""
    rng = np.random.default_rng(5)
    on = land_truth.sample(400, rng=rng)
    anywhere = np.column_stack([rng.uniform(-179.9, 179.9, 600), rng.uniform(-59.9, 89.9, 600)])
    off = np.array([[0.0, -75.0], [10.0, np.nan], [200.0, 10.0]])  # Antarctica, NaN, off the globe
    return np.vstack([on, anywhere, off])


def test_split_land_sea_is_the_truths_support(land_truth, map_points):
    on = plots.split_land_sea(land_truth, map_points)
    np.testing.assert_array_equal(on, land_truth.log_prob(map_points) > -np.inf)
    # and, independently, the raw mask with the region's latitude bound
    lon, lat = map_points[:, 0], map_points[:, 1]
    expected = land.is_land(lon, lat) & (lat >= -60.0)
    np.testing.assert_array_equal(on, expected)
    assert on[:400].all() and not on[-3:].any() and 0 < on.sum() < len(on)


def test_land_map_prints_the_true_counts(land_truth, map_points, tmp_path):
    train = map_points[:20]
    path = plots.land_map(land_truth, map_points, tmp_path / "map.png", train=train,
                          box=EUROPE_BOX, title="test map")
    img = open_png(path)
    printed = json.loads(img.text["pmodel-counts"])
    lon, lat = map_points[:, 0], map_points[:, 1]
    k = int((land.is_land(lon, lat) & (lat >= -60.0)).sum())
    n = len(map_points)
    assert (printed["n"], printed["on_land"], printed["at_sea"]) == (n, k, n - k)
    assert printed["outside_region"] == 3
    assert printed["on_land_share"] == pytest.approx(k / n)
    assert set(printed["points"]) == {"A", "B", "C"}
    _check_chapter_points(land_truth, EUROPE_BOX, {p: tuple(v) for p, v in printed["points"].items()})


def _green_pixels(img) -> int:
    """Pixels of the map drawn in the on-land samples' colour (within a few levels)."""
    from matplotlib.colors import to_rgb

    px = np.asarray(img.convert("RGB")).astype(int)
    green = np.array([round(255 * c) for c in to_rgb(plots.LAND_COLOR)])
    return int((np.abs(px - green).max(axis=-1) <= 8).sum())


def test_land_map_draws_the_samples_over_the_training_points(land_truth, tmp_path):
    """10,000 training points, as on the taxonomy's land: drawn on top, they hid a good model's
    samples (188 green pixels were left). Under the samples, the samples keep most of their
    pixels, and the samples' colour covers a fair share of the map."""
    rng = np.random.default_rng(3)
    samples, train = land_truth.sample(2000, rng=rng), land_truth.sample(10_000, rng=rng)
    alone = _green_pixels(open_png(plots.land_map(land_truth, samples, tmp_path / "a.png")))
    img = open_png(plots.land_map(land_truth, samples, tmp_path / "b.png", train=train))
    over = _green_pixels(img)
    assert over >= 0.9 * alone, (over, alone)
    assert over >= 0.01 * img.width * img.height, (over, img.size)


def test_land_map_without_box_or_train_and_with_no_samples(land_truth, tmp_path):
    img = open_png(plots.land_map(land_truth, np.empty((0, 2)), tmp_path / "empty.png"))
    assert json.loads(img.text["pmodel-counts"])["n"] == 0
    # the map is not blank: land is shaded grey, sea left white
    px = np.asarray(img.convert("RGB"))
    assert ((px == 200).all(axis=-1)).sum() > 10_000


def test_land_map_of_a_small_region(tmp_path):
    truth = land.LandData(land.Region(-10.0, 5.0, 35.0, 45.0))  # Iberia; mask already loaded
    X = truth.sample(200, rng=np.random.default_rng(1))
    img = open_png(plots.land_map(truth, X, tmp_path / "iberia.png", box=(-9.0, -3.0, 36.0, 42.0)))
    printed = json.loads(img.text["pmodel-counts"])
    assert printed["on_land"] == 200
    _check_chapter_points(truth, (-9.0, -3.0, 36.0, 42.0), printed["points"])


# -- chapter_points --------------------------------------------------------------

def _inside(p, box):
    return box[0] < p[0] < box[1] and box[2] < p[1] < box[3]


def _check_chapter_points(truth, box, points):
    """A: in the box at sea; B: land outside the box; C: land in the box (all in the region)."""
    for name, p in points.items():
        if p is None:
            continue
        lon, lat = p
        assert truth.region.contains(np.array([lon]), np.array([lat]))[0], name
        on_land = bool(land.is_land(np.array([lon]), np.array([lat]))[0])
        assert on_land == (name in "BC"), name
        assert _inside(p, box) == (name in "AC"), name


@pytest.mark.parametrize("box", [
    EUROPE_BOX,
    (-5.7, -5.5, 35.9, 36.1),             # Strait of Gibraltar: smaller than a map cell
    (-5.6004, -5.5996, 35.9, 36.1),       # thinner than a mask cell, edges off the grid
])
def test_chapter_points_satisfy_their_definitions(land_truth, box):
    points = plots.chapter_points(land_truth, box, np.random.default_rng(2))
    assert all(points[name] is not None for name in "ABC")
    _check_chapter_points(land_truth, box, points)


def test_chapter_points_are_none_exactly_when_they_do_not_exist(land_truth):
    rng = np.random.default_rng(3)
    desert = (20.0, 22.0, 22.0, 24.0)  # Libyan desert
    assert box_land_shares(land_truth, desert)["box_sea_share"] == 0.0
    points = plots.chapter_points(land_truth, desert, rng)
    assert points["A"] is None and points["B"] is not None and points["C"] is not None
    _check_chapter_points(land_truth, desert, points)

    pacific = (-135.0, -130.0, -45.0, -40.0)
    assert box_land_shares(land_truth, pacific)["box_sea_share"] == 1.0
    points = plots.chapter_points(land_truth, pacific, rng)
    assert points["C"] is None and points["A"] is not None
    _check_chapter_points(land_truth, pacific, points)

    everything = (-181.0, 181.0, -61.0, 91.0)
    assert box_land_shares(land_truth, everything)["land_outside_box_share"] == 0.0
    points = plots.chapter_points(land_truth, everything, rng)
    assert points["B"] is None and points["A"] is not None and points["C"] is not None
    _check_chapter_points(land_truth, everything, points)


def test_chapter_points_draw_from_rng(land_truth):
    a = plots.chapter_points(land_truth, EUROPE_BOX, np.random.default_rng(7))
    b = plots.chapter_points(land_truth, EUROPE_BOX, np.random.default_rng(7))
    c = plots.chapter_points(land_truth, EUROPE_BOX, np.random.default_rng(8))
    assert a == b and a != c


# -- parameter_table_plot ----------------------------------------------------------

@pytest.fixture(scope="module")
def nb_table():
    rows = fashion.sample_codes(50, rng=np.random.default_rng(11))
    model = make_family("naive_bayes", CategoricalDomain(fashion.SCHEMA.shape), alpha=0.0).fit(rows)
    return model.parameter_table(fashion.SCHEMA)


def test_parameter_table_plot_draws_every_feature(nb_table, tmp_path):
    assert len(nb_table) == 28
    img = open_png(plots.parameter_table_plot(nb_table, tmp_path / "params.png", title="NB"))
    one = nb_table[nb_table["feature"] == "hair_type"]
    small = open_png(plots.parameter_table_plot(one, tmp_path / "one.png"), max_side=4000)
    assert img.height > 3 * small.height  # 28 bars in 5 panels vs 7 bars in one


def test_parameter_table_plot_survives_nan_and_codes(nb_table, tmp_path):
    odd = nb_table.copy()
    odd.loc[0, "probability"] = np.nan
    odd["feature"] = odd["feature"].map({f: i for i, f in enumerate(fashion.COLUMNS)})
    open_png(plots.parameter_table_plot(odd, tmp_path / "odd.png"))
    with pytest.raises(ValueError, match="probability"):
        plots.parameter_table_plot(nb_table.drop(columns="probability"), tmp_path / "bad.png")


# -- rows_table ---------------------------------------------------------------------

@pytest.fixture
def rows():
    df = fashion.sample(10, rng=np.random.default_rng(4))
    df["log_prob"] = np.log(np.random.default_rng(4).random(10)) / 3.0  # floats with many digits
    df["count"] = np.arange(10)
    df.loc[3, "hair_type"] = "has | pipe"
    return df


def test_rows_table_csv_round_trips(rows, tmp_path):
    path = plots.rows_table(rows, tmp_path / "rows.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), rows.reset_index(drop=True))


def test_rows_table_markdown_has_a_header_row(rows, tmp_path):
    lines = plots.rows_table(rows, tmp_path / "rows.md").read_text().splitlines()
    assert len(lines) == 2 + len(rows)
    assert [c.strip() for c in lines[0].strip("|").split(" | ")] == list(rows.columns)
    assert set(lines[1].replace("|", "").split()) == {"---"}
    assert lines[1].count("|") == len(rows.columns) + 1
    assert "has \\| pipe" in lines[2 + 3]
    assert lines[2].startswith("| " + str(rows.iloc[0, 0]) + " |")


def test_rows_table_png_and_bad_suffix(rows, tmp_path):
    open_png(plots.rows_table(rows, tmp_path / "rows.png"))
    open_png(plots.rows_table(pd.concat([rows] * 10), tmp_path / "long.png"))  # cut at 40 rows
    with pytest.raises(ValueError, match=".md, .csv or .png"):
        plots.rows_table(rows, tmp_path / "rows.txt")


# -- comparison_plot ----------------------------------------------------------------

@pytest.fixture
def runs():
    return pd.DataFrame({
        "dataset": ["fashion", "fashion", "fashion", "land", "land", "pixels"],
        "entry": ["box", "multinomial alpha=0", "naive_bayes alpha=1",
                   "box", "naive_bayes alpha=1", "box"],
        "heldout_loglik": [-8.3, -np.inf, -7.1, -9.9, np.nan, -700.5],
        "kl_to_truth": [1.2, np.inf, 0.4, 2.3, 0.5, np.nan],
    })


def test_comparison_panels_keep_inf_nan_and_missing(runs):
    panels = plots.comparison_panels(runs, ["heldout_loglik", "kl_to_truth", "novelty_rate"])
    assert len(panels) == 3 * 3
    assert panels[("fashion", "heldout_loglik")] == [
        ("box", -8.3), ("multinomial alpha=0", -np.inf), ("naive_bayes alpha=1", -7.1)]
    assert panels[("fashion", "kl_to_truth")][1] == ("multinomial alpha=0", np.inf)
    land_ll = dict(panels[("land", "heldout_loglik")])
    assert np.isnan(land_ll["naive_bayes alpha=1"])      # NaN value
    assert np.isnan(land_ll["multinomial alpha=0"])      # no such run on land
    assert all(np.isnan(v) for _, v in panels[("pixels", "novelty_rate")])  # no such column


def test_comparison_panels_number_repeated_runs(runs):
    twice = pd.concat([runs, runs.iloc[[0]]], ignore_index=True)
    labels = [label for label, _ in plots.comparison_panels(twice, ["kl_to_truth"])[("fashion", "kl_to_truth")]]
    assert labels == ["box #1", "box #2", "multinomial alpha=0", "naive_bayes alpha=1"]


def test_comparison_panels_show_a_bound_only_family_by_its_bound_marked_as_one(runs, tmp_path):
    """A VAE has only bounds: it showed "n/a" on the KL and log-likelihood panels, like a family
    that was not fitted."""
    vae = pd.DataFrame({"dataset": ["fashion"], "entry": ["vae"], "kl_to_truth_bound": [0.9],
                        "heldout_loglik_bound": [-7.5]})
    panels = plots.comparison_panels(pd.concat([runs, vae], ignore_index=True),
                                     ["kl_to_truth", "heldout_loglik", "novelty_rate"])
    kl, ll = (dict(panels[("fashion", m)])["vae"] for m in ("kl_to_truth", "heldout_loglik"))
    assert (kl, kl.side) == (0.9, "upper") and (ll, ll.side) == (-7.5, "lower")
    assert not hasattr(dict(panels[("fashion", "kl_to_truth")])["box"], "side")  # exact: no mark
    assert np.isnan(dict(panels[("fashion", "novelty_rate")])["vae"])
    assert np.isnan(dict(panels[("land", "kl_to_truth")])["vae"])  # not fitted there: still n/a
    open_png(plots.comparison_plot(pd.concat([runs, vae], ignore_index=True), tmp_path / "b.png"))


def _inf_red_pixels(img) -> int:
    px = np.asarray(img.convert("RGB")).astype(int)
    return int((np.abs(px - np.array([0xb2, 0x18, 0x2b])).sum(axis=-1) < 40).sum())


def test_comparison_plot_draws_infinite_values_as_hatched_bars(runs, tmp_path):
    img = open_png(plots.comparison_plot(runs, tmp_path / "cmp.png", title="chapter 1"))
    finite = runs.replace([np.inf, -np.inf], 1.0)
    plain = open_png(plots.comparison_plot(finite, tmp_path / "finite.png"))
    assert _inf_red_pixels(img) > 200 and _inf_red_pixels(plain) == 0
    with pytest.raises(ValueError, match="'entry'"):
        plots.comparison_plot(runs.drop(columns="entry"), tmp_path / "bad.png")


def test_comparison_plot_all_missing_metric(runs, tmp_path):
    open_png(plots.comparison_plot(runs, tmp_path / "m.png", metrics=("valid_rate",)))


# -- training curves -------------------------------------------------------------

@pytest.mark.parametrize("family, kind, unit", [
    ("autoregressive", "image", "bits/dim"), ("vae", "image", "bits/dim"), ("flow", "image", "bits/dim"),
    ("gan", "image", "nats"), ("gan", "points", "nats"), ("diffusion", "image", "noise-prediction"),
    ("diffusion", "points", "noise-prediction"), ("vae", "categorical", "nats per row"),
    ("flow", "points", "nats per point")])
def test_training_curves_say_what_each_family_minimises(family, kind, unit):
    """"bits/dim" was on every curve: a GAN's losses are nats, a diffusion model's loss is
    its noise-prediction error."""
    from pmodel.plots.deep import curves_figure

    history = {"loss_d": [1.2, 1.1], "loss_g": [0.7, 0.8]} if family == "gan" else {"loss": [3.0, 2.0]}
    ylabel = curves_figure(history, family=family, kind=kind).axes[0].get_ylabel()
    assert unit in ylabel, ylabel
    assert ("bits/dim" in ylabel) == (kind == "image" and family in ("autoregressive", "vae", "flow"))


def test_a_one_epoch_training_curve_is_a_visible_point_that_says_so(tmp_path):
    from matplotlib.colors import to_rgb

    from pmodel.plots.deep import curves_figure, training_curves

    fig = curves_figure({"loss": [2.5]}, family="vae", kind="image")
    (line,) = fig.axes[0].get_lines()
    assert line.get_marker() == "o" and line.get_markersize() >= 6
    assert any("1 epoch" in t.get_text() for t in fig.axes[0].texts)
    assert "1 epoch" in fig.axes[0].get_legend().get_texts()[0].get_text()
    # and in the picture: the point covers more than a speck
    img = open_png(training_curves({"loss": [2.5]}, tmp_path / "c.png", family="vae", kind="image"))
    px = np.asarray(img.convert("RGB")).astype(int)
    blue = np.array([round(255 * c) for c in to_rgb(line.get_color())])
    assert (np.abs(px - blue).max(axis=-1) <= 10).sum() >= 30
