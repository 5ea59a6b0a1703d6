"""jars: the renders, their exact P_data, the files and their factors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pmodel.datasets import jars

REPO = Path(__file__).resolve().parents[1]


def test_every_height_and_width_gives_a_distinct_image():
    renders = jars.load_renders()
    assert renders.shape == (24 * 24, 32, 32) and renders.dtype == np.uint8
    flat = renders.reshape(len(renders), -1)
    assert len(np.unique(flat, axis=0)) == len(flat)
    # neighbours on the grid (0.75 px apart) differ by more than a rounding error
    grid = renders.reshape(24, 24, -1).astype(np.int64)
    assert (np.abs(np.diff(grid, axis=0)).sum(-1) > 255).all()
    assert (np.abs(np.diff(grid, axis=1)).sum(-1) > 255).all()


def test_a_jar_is_dark_on_white_grows_with_its_factors_and_stands_on_the_base_line():
    small, tall, wide = jars.render(10.25, 12.5), jars.render(20.0, 12.5), jars.render(10.25, 22.25)
    for img in (small, tall, wide):
        assert img[0, 0] == img[-1, -1] == 255 and img.min() < 80
        rows = np.flatnonzero((img < 200).any(axis=1))
        assert rows.max() == int(jars.BASE_LINE) - 1  # every jar ends on the same row
    dark = lambda img: int((img < 200).sum())  # noqa: E731
    assert dark(tall) > dark(small) and dark(wide) > dark(small)
    cols = np.flatnonzero((wide < 200).any(axis=0))
    assert abs((cols.min() + cols.max() + 1) / 2 - 16) <= 0.5  # centred


def test_renders_are_identical_across_processes():
    code = ("import hashlib; from pmodel.datasets import jars; "
            "print(hashlib.sha256(jars.load_renders().tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout.strip()
    import hashlib

    assert out == hashlib.sha256(jars.load_renders().tobytes()).hexdigest()


def test_p_data_is_exact_and_its_factors_are_the_grid():
    p = jars.prior()
    assert p.shape == (24, 24) and p.sum() == pytest.approx(1.0, abs=1e-15) and (p > 0).all()
    np.testing.assert_allclose(p, np.outer(p.sum(1), p.sum(0)))  # independent factors
    truth = jars.truth()
    assert truth.factor_names == ("height", "width")
    np.testing.assert_array_equal(truth.factors, jars.grid_factors())
    assert truth.entropy() == pytest.approx(float(-(p * np.log(p)).sum()))
    np.testing.assert_array_equal(truth.images[5 * 24 + 7], jars.render(jars.HEIGHTS[5], jars.WIDTHS[7]))


def test_build_writes_pngs_and_factors_that_load_back(tmp_path, monkeypatch):
    from pmodel.datasets.build import BuildConfig, build_all
    from pmodel.problems import load_builtin, load_problem, save_problem

    build_all(BuildConfig(seed=3, n_train=40, n_heldout=30), out_dir=tmp_path, names=["jars"],
              progress=False)
    assert len(list((tmp_path / "jars-train").glob("*.png"))) == 40
    header = (tmp_path / "jars-heldout-factors.csv").read_text().splitlines()[0]
    assert header == "file,height,width"
    problem = load_builtin("jars", tmp_path)
    assert problem.train.shape == (40, 32, 32) and problem.heldout.shape == (30, 32, 32)
    assert problem.factor_names == ("height", "width") and problem.factor_categorical == (False, False)
    renders, grid = jars.load_renders(), jars.grid_factors()
    for split, X in (("train", problem.train), ("heldout", problem.heldout)):
        F = problem.factors[split]
        assert F.shape == (len(X), 2)
        # each image is the render of its own factors
        cells = np.array([np.flatnonzero((grid == f).all(axis=1))[0] for f in F])
        np.testing.assert_array_equal(renders[cells], X)
    made = []
    from pmodel.datasets import registry

    real_truth_of = registry.truth_of
    monkeypatch.setattr("pmodel.problems.truth_of", lambda name: made.append(name) or real_truth_of(name))
    again = load_problem(save_problem(problem, tmp_path / "p.npz"))
    np.testing.assert_array_equal(again.factors["heldout"], problem.factors["heldout"])
    assert again.factor_names == problem.factor_names
    assert made == []  # the truth is made when first used, not when the problem loads
    assert again.truth.name == "renders" and made == ["jars"]
    assert again.truth.entropy() == problem.truth.entropy()
    np.testing.assert_array_equal(again.truth.images, problem.truth.images)


def test_pixels_carry_the_five_features_as_factors(tmp_path, renders):
    from pmodel.datasets import fashion
    from pmodel.datasets.build import BuildConfig, build_all
    from pmodel.problems import load_builtin

    build_all(BuildConfig(seed=0, n_train=12, n_heldout=8), out_dir=tmp_path,
              names=["fashion", "pixels"], progress=False)
    problem = load_builtin("pixels", tmp_path, with_truth=False)
    assert problem.factor_names == fashion.COLUMNS and all(problem.factor_categorical)
    rows = fashion.load({s: tmp_path / f"fashion-{s}.csv" for s in ("train", "heldout")})
    np.testing.assert_array_equal(problem.factors["train"], rows.train)  # same rows, same streams
