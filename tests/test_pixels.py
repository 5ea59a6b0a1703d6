"""pixels: avatar renders, their cache, and PNG folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pmodel.datasets import fashion, images, pixels

BASE = {"accessories_type": "Blank", "clothing_color": "Black", "clothing_type": "Hoodie",
        "hair_color": "Black", "hair_type": "LongHairBun"}


def _vary(column: str):
    for value in fashion.SCHEMA.columns[fashion.COLUMNS.index(column)][1]:
        if value != BASE[column]:
            yield value


def test_render_is_32px_grayscale_and_deterministic():
    a, b = pixels.render(BASE), pixels.render(BASE)
    assert a.shape == (32, 32) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert 0 < a.min() < a.max() <= 255  # a face on white, not a blank square


@pytest.mark.parametrize("column", fashion.COLUMNS)
def test_changing_any_one_feature_changes_the_32px_image(column):
    base = pixels.render(BASE)
    for value in _vary(column):
        changed = pixels.render({**BASE, column: value})
        assert not np.array_equal(changed, base), f"{column}={value} draws the same 32x32 image"


def test_hair_colour_under_no_hair_changes_nothing():
    bald = {**BASE, "hair_type": "NoHair"}
    base = pixels.render_native(bald)
    for value in _vary("hair_color"):
        np.testing.assert_array_equal(pixels.render_native({**bald, "hair_color": value}), base)


def test_every_one_feature_change_changes_the_image_over_all_cells(renders):
    """Exhaustive: any two cells one feature apart have different renders,
    except hair colour under NoHair, which draws nothing."""
    assert renders.shape == (4032, 32, 32) and renders.dtype == np.uint8
    grid = renders.reshape(*fashion.SCHEMA.shape, 32 * 32)
    hair_color_axis = fashion.COLUMNS.index("hair_color")
    no_hair = fashion.HAIR_TYPE.index("NoHair")
    for axis, k in enumerate(fashion.SCHEMA.shape):
        for u in range(k):
            for v in range(u + 1, k):
                a = np.take(grid, u, axis=axis)
                b = np.take(grid, v, axis=axis)
                same = (a == b).all(axis=-1)  # over the other four features' cells
                if axis == hair_color_axis:
                    assert same[..., no_hair].all()
                    same = np.delete(same, no_hair, axis=-1)
                assert not same.any(), (fashion.COLUMNS[axis], u, v)


def test_distinct_cells_have_distinct_renders(renders):
    canonical = np.unique(pixels.canonical_cells())
    flat = renders[canonical].reshape(len(canonical), -1)
    assert len(np.unique(flat, axis=0)) == len(canonical) == 4032 - 5 * 3 * 8 * 4


def test_cache_holds_the_renders_of_their_cells(renders):
    cells = np.random.default_rng(0).choice(4032, size=4, replace=False)
    rows = fashion.SCHEMA.from_codes(fashion.SCHEMA.cell_codes(cells)).to_dict("records")
    for cell, row in zip(cells, rows):
        np.testing.assert_array_equal(renders[cell], pixels.render(row))


def test_png_folder_round_trip(tmp_path):
    X = np.random.default_rng(1).integers(0, 256, size=(7, 32, 32), dtype=np.uint8)
    names = images.write_png_folder(X, tmp_path / "imgs")
    assert names[0] == "00000.png" and len(names) == 7
    back_names, back = images.read_png_folder(tmp_path / "imgs")
    assert back_names == names
    np.testing.assert_array_equal(back, X)


def test_png_folder_of_any_size(tmp_path):
    X = np.random.default_rng(2).integers(0, 256, size=(3, 20, 24), dtype=np.uint8)
    images.write_png_folder(X, tmp_path / "imgs")
    _, back = images.read_png_folder(tmp_path / "imgs")
    assert back.shape == (3, 20, 24)


def test_png_folder_reader_names_the_odd_image(tmp_path):
    images.write_png_folder(np.zeros((2, 32, 32), np.uint8), tmp_path)
    Image.new("L", (16, 16)).save(tmp_path / "00002.png")
    with pytest.raises(ValueError, match=r"00002\.png: size \(16, 16\)"):
        images.read_png_folder(tmp_path)
    Image.new("RGB", (32, 32)).save(tmp_path / "00002.png")
    with pytest.raises(ValueError, match=r"00002\.png: mode 'RGB'"):
        images.read_png_folder(tmp_path)


# ---------------------------------------------------------------------------
# The shipped renders (a fresh machine starts from them, not from 3552 renders)
# ---------------------------------------------------------------------------

def test_shipped_renders_equal_fresh_renders_byte_for_byte():
    shipped = pixels.shipped_renders()
    assert shipped is not None, f"{pixels.SHIPPED_PATH} is missing"
    assert shipped.shape == (4032, 32, 32) and shipped.dtype == np.uint8
    assert pixels.SHIPPED_PATH.stat().st_size < 4 * 2**20
    rng = np.random.default_rng(2026)
    cells = np.concatenate([pixels.probe_cells(), rng.choice(4032, 40, replace=False)])
    rows = fashion.SCHEMA.from_codes(fashion.SCHEMA.cell_codes(cells)).to_dict("records")
    for cell, row in zip(cells, rows):
        assert pixels.render(row).tobytes() == shipped[cell].tobytes(), row


def test_probe_cells_show_every_category_of_every_column():
    codes = fashion.SCHEMA.cell_codes(pixels.probe_cells())
    for j, n in enumerate(fashion.SCHEMA.shape):
        assert set(codes[:, j]) == set(range(n)), fashion.COLUMNS[j]


def test_a_fresh_machine_uses_the_shipped_renders(tmp_path, monkeypatch):
    monkeypatch.setenv("PMODEL_CACHE_DIR", str(tmp_path / "cache"))

    def no_rendering(**kwargs):
        raise AssertionError("rendered every avatar although the shipped renders are faithful")

    monkeypatch.setattr(pixels, "render_all", no_rendering)
    images = pixels.load_renders(progress=False)
    np.testing.assert_array_equal(images, pixels.shipped_renders())
    np.testing.assert_array_equal(np.load(pixels.cache_path()), images)  # cached for next time


def test_shipped_renders_that_differ_from_fresh_ones_are_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PMODEL_CACHE_DIR", str(tmp_path / "cache"))
    shipped = pixels.shipped_renders()
    drawn_here = 255 - shipped
    monkeypatch.setattr(pixels, "_render_cells", lambda cells: drawn_here[cells])
    monkeypatch.setattr(pixels, "render_all", lambda **kwargs: drawn_here)
    np.testing.assert_array_equal(pixels.load_renders(progress=False), drawn_here)
