"""Latent pictures: the 2-D coordinates, the thumbnails chosen, the files written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pmodel.plots_latent import latent_2d, latent_space_plot, pick_thumbnails, traversal_grid


def test_two_dimensional_codes_are_drawn_as_they_are_and_wider_ones_by_their_principal_components():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(500, 2))
    P, how = latent_2d(Z)
    np.testing.assert_array_equal(P, Z) and how == "z"
    # a 5-D code that varies along two directions only: PCA gives those two back (up to rotation)
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0].T  # (2, 5) orthonormal rows
    W = rng.normal(size=(500, 2)) * [3.0, 1.0]
    P, how = latent_2d(W @ basis + 7.0)
    assert how == "PC of z"
    np.testing.assert_allclose(np.abs(P), np.abs(W - W.mean(axis=0)), atol=0.3)
    assert P[:, 0].var() > P[:, 1].var()


def test_one_thumbnail_per_occupied_cell_nearest_its_centre():
    pts = np.array([[0.0, 0.0], [0.04, 0.04], [1.0, 1.0], [0.55, 0.55]])
    idx = pick_thumbnails(pts, n_cells=2)
    assert idx.tolist() == [1, 3]  # cell (0,0): the point nearer its centre (0.25, 0.25); (1,1): 3 over 2


def test_the_pictures_are_written(tmp_path):
    rng = np.random.default_rng(1)
    codes, factors = rng.normal(size=(200, 3)), rng.integers(0, 5, size=(200, 2))
    images = rng.integers(0, 256, size=(200, 8, 8)).astype(np.uint8)
    p = latent_space_plot(codes, factors, ("a", "b"), tmp_path / "l.png", images=images,
                          categorical=(True, False), title="t")
    q = traversal_grid(lambda Z: np.tile(Z[:, :1, None] * 40 + 128, (1, 8, 8)), 3, tmp_path / "t.png")
    for f in (p, q):
        with Image.open(f) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    with pytest.raises(ValueError, match="expected codes"):
        latent_2d(np.zeros(3))
