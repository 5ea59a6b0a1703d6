"""Build the built-in datasets as files: the inputs the flows ingest.

For a seed, writes (all reproducible, byte for byte)::

    fashion-train.csv, fashion-heldout.csv          rows drawn from fashion's P_data
    pixels-train/, pixels-heldout/                  the same rows' avatars, 32x32 PNGs
    pixels-train-labels.csv, pixels-heldout-labels.csv   file name -> fashion row
    land-train.csv, land-heldout.csv                points uniform on land (lat >= -60)
    manifest.json                                   seed, sizes, region, digest of each file

Train and held-out sets are independent draws from P_data, each from its own
random stream derived from the seed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pmodel import __version__, paths
from pmodel.datasets import fashion, images, land, pixels
from pmodel.datasets.digest import path_digest

# independent random streams per output (numpy SeedSequence entropy = [seed, stream])
STREAMS = {"fashion-train": 1, "fashion-heldout": 2, "land-train": 3, "land-heldout": 4}


@dataclass(frozen=True)
class BuildConfig:
    """What to build. Defaults follow the chapter: 50 training rows."""

    seed: int = 0
    n_train: int = 50
    n_heldout: int = 5000
    region: land.Region = field(default_factory=land.Region)


def stream(seed: int, name: str) -> np.random.Generator:
    """The random stream of one output, independent of the others."""
    return np.random.default_rng([seed, STREAMS[name]])


def _write_pixels(codes: np.ndarray, renders: np.ndarray, out: Path, split: str) -> None:
    folder = out / f"pixels-{split}"
    tmp = out / f".pixels-{split}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    names = images.write_png_folder(pixels.images_of(codes, renders), tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # no stale PNGs from a bigger earlier build survive
    labels = fashion.SCHEMA.from_codes(codes)
    labels.insert(0, "file", names)
    fashion.write_csv(labels, out / f"pixels-{split}-labels.csv")


def build_all(config: BuildConfig = BuildConfig(), *, out_dir: Path | None = None,
              progress: bool = True, log: Callable[[str], None] = lambda msg: None) -> Path:
    """Write every built-in dataset and the manifest; return the manifest's path."""
    out = Path(out_dir) if out_dir is not None else paths.data_dir()
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": config.n_train, "heldout": config.n_heldout}

    log(f"fashion: sampling {config.n_train} + {config.n_heldout} rows from P_data")
    codes = {}
    for split, n in sizes.items():
        codes[split] = fashion.sample_codes(n, rng=stream(config.seed, f"fashion-{split}"))
        fashion.write_csv(fashion.SCHEMA.from_codes(codes[split]), out / f"fashion-{split}.csv")

    log("pixels: loading avatar renders (rendered once, then cached)")
    renders = pixels.load_renders(progress=progress)
    for split in sizes:
        _write_pixels(codes[split], renders, out, split)

    log("land: loading the GLOBE land mask and sampling points on land")
    truth = land.LandData(config.region)
    for split, n in sizes.items():
        land.write_csv(truth.sample(n, rng=stream(config.seed, f"land-{split}")),
                       out / f"land-{split}.csv")

    outputs = [f"{kind}-{split}{ext}" for kind, ext in
               (("fashion", ".csv"), ("pixels", ""), ("pixels", "-labels.csv"), ("land", ".csv"))
               for split in sizes]
    files = {}
    for name in sorted(outputs):
        path = out / name
        files[name] = {"sha256": path_digest(path)}
        if path.is_dir():
            files[name]["n_files"] = sum(1 for _ in path.iterdir())
        else:
            files[name]["bytes"] = path.stat().st_size
    manifest = {
        "pmodel_version": __version__,
        "seed": config.seed,
        "n_train": config.n_train,
        "n_heldout": config.n_heldout,
        "land_region": asdict(truth.region),
        "land_area_deg2": truth.land_area_deg2,
        "avatar_render_key": pixels.render_key(),
        "files": files,
    }
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {len(files)} datasets to {out}")
    return manifest_path


def _manifest_matches(manifest_path: Path, config: BuildConfig) -> bool:
    try:
        m = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    return (m.get("seed"), m.get("n_train"), m.get("n_heldout"), m.get("land_region"),
            m.get("avatar_render_key")) == (config.seed, config.n_train, config.n_heldout,
                                            asdict(config.region.snapped()), pixels.render_key())


def _build_folder(root: Path, config: BuildConfig) -> Path:
    return root / "builds" / f"seed{config.seed}-train{config.n_train}-heldout{config.n_heldout}"


def built_dir(config: BuildConfig, data_dir: Path | None = None) -> Path | None:
    """The folder already holding the built-in datasets for ``config`` (data/
    itself, or its build for these sizes), or None when they must be built.
    Reads only (a manifest is written last, so a build under way is not taken)."""
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    for folder in (root, _build_folder(root, config)):
        if _manifest_matches(folder / "manifest.json", config):
            return folder
    return None


def ensure_built(config: BuildConfig, data_dir: Path | None = None, *, progress: bool = True,
                 log: Callable[[str], None] = lambda msg: None) -> Path:
    """The folder holding the built-in datasets for ``config``, built when missing.

    ``data/`` itself when its manifest matches (what ``pmodel data build``
    wrote); otherwise ``data/builds/seed{S}-train{N}-heldout{M}/``, built once.
    """
    import fcntl

    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    built = built_dir(config, root)
    if built is not None:  # nothing to write: a read-only data/ will do
        return built
    blocked = paths.unwritable(root / "builds")
    if blocked is not None:
        raise PermissionError(f"the built-in datasets (seed {config.seed}, {config.n_train} "
                              f"training rows, {config.n_heldout} held out) are not built in "
                              f"{root}, and {blocked} is not writable to build them")
    root.mkdir(parents=True, exist_ok=True)
    # one builder at a time: concurrent runs wait, then find the data built
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _manifest_matches(root / "manifest.json", config):
            return root
        out = _build_folder(root, config)
        if not _manifest_matches(out / "manifest.json", config):
            log(f"building the built-in datasets into {out} (seed {config.seed})")
            build_all(config, out_dir=out, progress=progress, log=log)
        return out

