"""pmodel data build: files, manifest, reproducibility, and the CLI around it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.cli import main
from pmodel.datasets import fashion, images, land
from pmodel.datasets.digest import path_digest


@pytest.fixture(scope="module")
def built(tmp_path_factory, renders):
    out = tmp_path_factory.mktemp("built")
    assert main(["data", "build", "--out", str(out), "--seed", "3", "--n-train", "20",
                 "--n-heldout", "30"]) == 0
    return out


def test_build_writes_every_dataset_with_the_asked_sizes(built):
    assert len(fashion.read_csv(built / "fashion-train.csv")) == 20
    assert len(fashion.read_csv(built / "fashion-heldout.csv")) == 30
    names, X = images.read_png_folder(built / "pixels-train")
    assert X.shape == (20, 32, 32) and X.dtype == np.uint8
    assert land.read_csv(built / "land-heldout.csv").shape == (30, 2)
    assert land.is_land(*land.read_csv(built / "land-train.csv").T).all()


def test_pixels_are_the_renders_of_the_fashion_rows(built, renders):
    rows = fashion.read_csv(built / "fashion-train.csv")
    labels = fashion.read_csv(built / "pixels-train-labels.csv")
    _, X = images.read_png_folder(built / "pixels-train")
    codes = fashion.SCHEMA.to_codes(rows)
    np.testing.assert_array_equal(fashion.SCHEMA.to_codes(labels), codes)
    np.testing.assert_array_equal(X, renders[fashion.SCHEMA.cell_index(codes)])


def _files(folder):
    """Every output's manifest entry, over all datasets."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return {k: v for entry in manifest["datasets"].values() for k, v in entry["files"].items()}


def test_manifest_records_seed_sizes_and_true_digests(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert set(manifest["datasets"]) == {"fashion", "pixels", "land", "jars"}
    for entry in manifest["datasets"].values():
        b = entry["build"]
        assert (b["seed"], b["n_train"], b["n_heldout"]) == (3, 20, 30)
    assert "avatar_render_key" in manifest["datasets"]["pixels"]["build"]
    assert manifest["datasets"]["land"]["build"]["land_region"]["lat_min"] == -60.0
    manifest = {"files": _files(built)}
    assert set(manifest["files"]) == {
        "fashion-train.csv", "fashion-heldout.csv", "pixels-train", "pixels-heldout",
        "pixels-train-labels.csv", "pixels-heldout-labels.csv", "land-train.csv",
        "land-heldout.csv", "jars-train", "jars-heldout", "jars-train-factors.csv",
        "jars-heldout-factors.csv"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == path_digest(built / name), name
    assert manifest["files"]["pixels-heldout"]["n_files"] == 30


def test_same_seed_rebuilds_byte_for_byte_and_splits_are_independent(built, tmp_path):
    assert main(["data", "build", "--out", str(tmp_path), "--seed", "3", "--n-train", "20",
                 "--n-heldout", "7"]) == 0
    first, again = _files(built), _files(tmp_path)
    for name in ("fashion-train.csv", "pixels-train", "land-train.csv"):
        assert again[name]["sha256"] == first[name]["sha256"], name  # n_heldout changed only
    assert again["fashion-heldout.csv"]["sha256"] != first["fashion-heldout.csv"]["sha256"]


def test_another_seed_gives_other_data(built, tmp_path):
    assert main(["data", "build", "--out", str(tmp_path), "--seed", "4", "--n-train", "20",
                 "--n-heldout", "30"]) == 0
    a, b = _files(built), _files(tmp_path)
    assert all(a[name]["sha256"] != b[name]["sha256"] for name in a)


def test_built_files_pass_validation(built):
    from tasks.validation import validate

    for kind, name in [("fashion", "fashion-train.csv"), ("fashion", "fashion-heldout.csv"),
                       ("pixels", "pixels-train"), ("land", "land-heldout.csv"),
                       ("jars", "jars-train")]:
        report = validate(kind, built / name)
        assert report.success, report.summary()


@pytest.mark.parametrize("argv", [["data", "build", "--n-train", "0"],
                                  ["data", "build", "--seed", "-1"],
                                  ["data"], ["nonsense"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
