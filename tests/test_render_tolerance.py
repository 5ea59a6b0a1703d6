"""A tolerance in grey levels beside strict validity: near_render_rate, near_render_rate_16,
median_render_distance, checked against a brute-force nearest render; where they are
registered, declared and shown (leaderboard, the child's main picture)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pmodel.records import RunResult
from pmodel.scores import images as image_scores
from pmodel.truths import RenderTruth

NEAR_METRICS = ("near_render_rate", "near_render_rate_16", "median_render_distance")


def brute_nearest_rms(samples, renders) -> np.ndarray:
    """Per sample: RMS pixel distance (0..255) to its nearest render, every pair computed."""
    a = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    b = np.asarray(renders, dtype=np.float64).reshape(len(renders), -1)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)).min(axis=1)


def brute_thresholds(renders) -> np.ndarray:
    """Per distinct render: half the RMS distance to its nearest other render."""
    flat = np.asarray(renders, dtype=np.float64).reshape(len(renders), -1)
    d = np.sqrt(((flat[:, None, :] - flat[None, :, :]) ** 2).mean(axis=2))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1) / 2


@pytest.fixture(scope="module")
def small_renders() -> np.ndarray:
    """12 distinct 6 x 6 renders, far apart (strict thresholds of tens of levels)."""
    return np.random.default_rng(0).integers(0, 256, size=(12, 6, 6)).astype(np.uint8)


def noisy_copies(renders, sigmas, rng) -> np.ndarray:
    """Each render plus Gaussian noise of each sigma, as floats (not rounded nor clipped)."""
    return np.concatenate([renders + s * rng.normal(size=renders.shape) for s in sigmas])


def test_near_render_scores_equal_a_brute_force_nearest_render(small_renders):
    rng = np.random.default_rng(1)
    samples = np.concatenate([noisy_copies(small_renders, [0, 3, 6, 9, 12, 15, 18, 25], rng),
                              rng.uniform(0, 255, size=(20, 6, 6))])
    d = brute_nearest_rms(samples, small_renders)
    assert 0 < (d <= 8).mean() < (d <= 16).mean() < 1  # the case can tell 8 from 16
    truth = RenderTruth(images=small_renders, probs=np.full(12, 1 / 12))
    for got in (truth.sample_scores(samples), image_scores.image_validity(samples, small_renders)):
        assert got["near_render_rate"] == np.mean(d <= 8)
        assert got["near_render_rate_16"] == np.mean(d <= 16)
        assert got["median_render_distance"] == pytest.approx(np.median(d), rel=1e-9)
    # the tolerance is a parameter: at 0 only exact copies are near
    got = image_scores.image_validity(samples, small_renders, tolerance=0.0)
    assert got["near_render_rate"] == pytest.approx(12 / len(samples))


def test_valid_rate_is_unchanged_by_the_near_scores(small_renders):
    rng = np.random.default_rng(2)
    samples = noisy_copies(small_renders, [0, 10, 20, 30, 40], rng)
    truth = RenderTruth(images=small_renders, probs=np.full(12, 1 / 12))
    got = truth.sample_scores(samples)
    d = brute_nearest_rms(samples, small_renders)
    nearest = np.argmin(((samples.reshape(len(samples), 1, -1) - small_renders.reshape(1, 12, -1)
                          .astype(float)) ** 2).sum(axis=2), axis=1)
    valid = d <= brute_thresholds(small_renders)[nearest]
    assert 0 < valid.mean() < 1
    assert got["valid_rate"] == valid.mean()
    assert got["n_valid_combinations"] == len(np.unique(nearest[valid]))


def test_the_near_scores_come_from_the_one_nearest_render_search(small_renders, monkeypatch):
    truth = RenderTruth(images=small_renders, probs=np.full(12, 1 / 12))
    index = truth.index
    calls = []
    search = image_scores.RenderIndex.nearest

    def counted(self, samples):
        calls.append(len(samples))
        return search(self, samples)

    monkeypatch.setattr(image_scores.RenderIndex, "nearest", counted)
    samples = np.clip(small_renders.astype(int) + 3, 0, 255).astype(np.uint8)  # whole levels
    got = truth.sample_scores(samples, train=small_renders[:4])
    assert calls == [12] and index is truth.index
    assert set(NEAR_METRICS) <= set(got)


def test_near_render_rate_is_at_least_valid_rate_when_every_threshold_is_within_8():
    rng = np.random.default_rng(3)
    base = rng.integers(60, 190, size=(8, 8)).astype(np.float64)
    step = np.zeros((8, 8))
    step[:4] = 12.0  # consecutive renders 12 * sqrt(32 / 64) = 8.5 levels apart: thresholds 4.2
    renders = np.stack([base + k * step for k in range(5)]).astype(np.uint8)
    index = image_scores.RenderIndex(renders)
    assert index.thresholds.max() <= 8
    for sigma in (1, 3, 5, 8, 12):
        samples = noisy_copies(renders, [sigma] * 20, rng)
        got = image_scores.image_validity(samples, renders, index=index)
        assert got["near_render_rate"] >= got["valid_rate"], sigma
    # not so when a threshold exceeds the tolerance: strictly valid, yet not within 8
    far = np.stack([np.zeros((8, 8)), np.full((8, 8), 100.0)]).astype(np.uint8)  # thresholds 50
    got = image_scores.image_validity(np.full((1, 8, 8), 12.0), far)
    assert (got["valid_rate"], got["near_render_rate"], got["near_render_rate_16"]) == (1.0, 0.0, 1.0)


def test_a_render_under_sigma_2_noise_is_near_and_noise_is_not():
    from pmodel.datasets import jars

    renders = jars.load_renders()
    rng = np.random.default_rng(4)
    pick = renders[rng.choice(len(renders), 40, replace=False)]
    noisy = np.clip(np.rint(pick + 2.0 * rng.normal(size=pick.shape)), 0, 255).astype(np.uint8)
    assert (noisy != pick).any(axis=(1, 2)).all()
    truth = jars.truth()
    got = truth.sample_scores(noisy)
    assert got["near_render_rate"] == got["near_render_rate_16"] == 1.0
    assert got["median_render_distance"] == pytest.approx(
        np.median(brute_nearest_rms(noisy, truth.images)), rel=1e-9)
    assert 1.0 < got["median_render_distance"] <= 2.0  # clipping at 255 takes some noise off
    noise = rng.integers(0, 256, size=(20, 32, 32), dtype=np.uint8)
    got = truth.sample_scores(noise)
    assert got["near_render_rate"] == got["near_render_rate_16"] == 0.0
    assert got["median_render_distance"] > 16


def test_near_render_scores_example_and_errors():
    assert image_scores.near_render_scores([0.0, 3.0, 12.0, 40.0]) == {
        "near_render_rate": 0.5, "near_render_rate_16": 0.75, "median_render_distance": 7.5}
    assert image_scores.near_render_scores([8.0, 16.0])["near_render_rate"] == 0.5  # 8 counts
    with pytest.raises(ValueError, match=r"\(n,\)"):
        image_scores.near_render_scores([])


# -- declared and shown ---------------------------------------------------------------

def test_the_new_metrics_are_registered_and_in_the_glossary():
    from pmodel.glossary import SCORES as GLOSSARY
    from pmodel.scores import SCORES
    from tasks.record import MAY_BE_INFINITE, VIEW_METRICS

    metrics = SCORES["truth_sample_scores"].metrics
    assert set(NEAR_METRICS) <= set(metrics)
    assert [GLOSSARY[m].better for m in NEAR_METRICS] == ["higher", "higher", "lower"]
    assert GLOSSARY["median_render_distance"].unit.startswith("grey levels")
    assert "near_render_rate" in VIEW_METRICS
    assert not set(NEAR_METRICS) & set(MAY_BE_INFINITE)


def _row(label, kind, metrics, dataset="pixels"):
    return RunResult(dataset, "f", label, label, {}, metrics=metrics, log_prob_kind=kind)


def test_the_leaderboard_shows_the_near_scores_on_image_datasets():
    from pmodel.leaderboard import as_markdown, as_text, ranked

    near = {"near_render_rate": 0.25, "near_render_rate_16": 0.5, "median_render_distance": 15.25}
    rows = [_row("nb", "exact", {"kl_to_truth": 1032.0, "heldout_loglik": -1500.0,
                                 "valid_rate": 0.0, **near}),
            _row("gan-a", "none", {"valid_rate": 0.0, "near_render_rate": 0.1}),
            _row("gan-b", "none", {"valid_rate": 0.0, "near_render_rate": 0.6}),
            _row("copy", "exact", {"kl_to_truth": math.inf, "valid_rate": 1.0}),
            _row("nb", "exact", {"kl_to_truth": 0.4, "novelty_rate": 0.9}, dataset="fashion")]
    # a GAN tied on strict validity ranks by what the eye accepts
    assert [r.label for r in ranked(rows)["pixels"]] == ["nb", "copy", "gan-b", "gan-a"]
    text = as_text(rows)
    lines = text.splitlines()
    header = next(line for line in lines if "valid_rate" in line)
    assert header.split()[-4:] == ["valid_rate", "near8", "near16", "d_median"]
    nb = next(line for line in lines if line.strip().startswith("nb") and "1032" in line)
    assert nb.split()[-4:] == ["0", "0.25", "0.5", "15.25"]
    table = [line for line in lines[lines.index(header):]
             if line.startswith("  ") and "--" not in line][:5]
    assert len({len(line) for line in table}) == 1  # aligned, absent values as "-"
    fashion_header = next(line for line in lines if line.rstrip().endswith("novelty_rate"))
    assert "near8" not in fashion_header
    assert "near8 / near16" in text
    md = as_markdown(rows).splitlines()
    head = next(line for line in md if "| valid_rate |" in line)
    assert head.endswith("| valid_rate | near8 | near16 | d_median |")
    pixel_rows = md[md.index(head):md.index(head) + 6]
    assert len({line.count("|") for line in pixel_rows}) == 1
    # without near scores (older results) the table is as it was
    assert "near8" not in as_text([_row("gan", "none", {"valid_rate": 0.3})])


def test_the_main_picture_of_built_in_images_pairs_samples_with_their_renders(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from pmodel.datasets import jars
    from pmodel.families import ImageDomain, make_family
    from pmodel.plots.grids import PAIR_GAP, PAIR_LABEL_HEIGHT
    from tasks.record import MAIN_PICTURE, _pictures

    truth = jars.truth()
    rng = np.random.default_rng(5)
    train = truth.images[rng.choice(len(truth.images), 200)]
    model = make_family("naive_bayes", ImageDomain(32, 32), alpha=1.0).fit(train)
    samples = model.sample(60, rng=rng)
    metrics = truth.sample_scores(samples)
    result = RunResult("jars", "naive_bayes", "nb", "naive_bayes alpha=1.0", {"alpha": 1.0},
                       metrics=metrics)
    problem = SimpleNamespace(kind="image", truth=truth, train=train, domain=model.domain,
                              schema=None)
    files, note = _pictures(result, problem, model, samples, tmp_path, "NB a=1 | jars")
    assert files[0] == (tmp_path / MAIN_PICTURE, None)
    assert "0% are within 8 grey levels" in note and "median d =" in note
    got = np.asarray(Image.open(tmp_path / MAIN_PICTURE).convert("L"))
    top, pair = 24, 2 * 96 + 2 + PAIR_LABEL_HEIGHT + PAIR_GAP
    assert got.shape[0] > top + 5 * pair - PAIR_GAP and got.shape[1] == 10 * 96 + 9 * 2
    _, idx, _ = truth.index.nearest(samples[:50])
    for k in (0, 13, 49):  # each sample's nearest render sits under it
        r, c = divmod(k, 10)
        y, x = top + r * pair + 96 + 2, c * 98
        want = truth.index.valid[idx[k]].reshape(32, 32).astype(np.uint8)
        np.testing.assert_array_equal(got[y:y + 96, x:x + 96], np.kron(want, np.ones((3, 3), np.uint8)))
    # users' images (no truth): the plain grid, as before
    plain = SimpleNamespace(kind="image", truth=None, train=train, domain=model.domain, schema=None)
    _pictures(result, plain, model, samples, tmp_path / "user", "NB a=1 | mine")
    grid = np.asarray(Image.open(tmp_path / "user" / MAIN_PICTURE).convert("L"))
    y, x = top + 98, 3 * 98  # sample 13: second row, fourth column, no render below it
    np.testing.assert_array_equal(grid[y:y + 96, x:x + 96],
                                  np.kron(samples[13].astype(np.uint8), np.ones((3, 3), np.uint8)))


def test_the_tolerance_picture_is_logged_once_per_dataset_on_the_parent_run(tmp_path):
    from types import SimpleNamespace

    from pmodel.datasets import jars
    from pmodel.families import ImageDomain
    from tasks import tracking
    from tasks.record import _log_render_tolerance_once

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    tracking.prepare_store(uri)
    parent = tracking.start_run(uri, tracking.get_or_create_experiment(uri, "t"), "parent")
    truth = jars.truth()
    problem = SimpleNamespace(kind="image", truth=truth, train=truth.images[:100],
                              domain=ImageDomain(32, 32))
    for k in range(2):  # a second child of the dataset draws nothing and logs nothing
        _log_render_tolerance_once(uri, parent, "jars", problem, tmp_path / f"child{k}")
    assert [a.path for a in tracking.list_artifacts(uri, parent, "pictures")] == [
        "pictures/render-tolerance-jars.png"]
    assert (tmp_path / "child0" / "render-tolerance-jars.png").exists()
    assert not (tmp_path / "child1").exists()
