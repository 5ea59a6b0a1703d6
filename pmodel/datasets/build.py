"""Build the built-in datasets as files: the inputs the flows ingest.

For a seed, every dataset of the registry (``pmodel.datasets.registry``) writes
its files, all reproducible byte for byte; for the three of the chapter::

    fashion-train.csv, fashion-heldout.csv          rows drawn from fashion's P_data
    pixels-train/, pixels-heldout/                  the same rows' avatars, 32x32 PNGs
    pixels-train-labels.csv, pixels-heldout-labels.csv   file name -> fashion row
    land-train.csv, land-heldout.csv                points uniform on land (lat >= -60)
    manifest.json                                   per dataset: seed, sizes, build key, digests

Train and held-out sets are independent draws from P_data, each from its own
random stream derived from the seed (numpy entropy ``[seed, stream]``, the
streams declared by the registry).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from pmodel import __version__, paths
from pmodel.datasets.digest import path_digest
from pmodel.datasets.registry import SPLITS, dataset_names, get_dataset


@dataclass(frozen=True)
class BuildConfig:
    """What to build. Defaults follow the chapter: 50 training rows."""

    seed: int = 0
    n_train: int = 50
    n_heldout: int = 5000

    def sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "heldout": self.n_heldout}


def stream(seed: int, stream_id: int) -> np.random.Generator:
    """The random stream ``stream_id`` of a seed, independent of the others."""
    return np.random.default_rng([seed, stream_id])


def _build_entry(name: str, config: BuildConfig) -> dict:
    """What a dataset's files depend on (compared with the manifest to reuse them)."""
    return {"seed": config.seed, "n_train": config.n_train, "n_heldout": config.n_heldout,
            **get_dataset(name).key()}


def _read_manifest(path: Path) -> dict:
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return m if isinstance(m.get("datasets"), dict) else {}


def _is_built(folder: Path, name: str, config: BuildConfig) -> bool:
    entry = _read_manifest(folder / "manifest.json").get("datasets", {}).get(name)
    return (entry is not None and entry.get("build") == _build_entry(name, config)
            and all((folder / f).exists() for f in get_dataset(name).outputs()))


def build_all(config: BuildConfig = BuildConfig(), *, out_dir: Path | None = None,
              names: Iterable[str] | None = None, progress: bool = True,
              log: Callable[[str], None] = lambda msg: None) -> Path:
    """Write the datasets ``names`` (default: every registered one) and update the
    manifest; return the manifest's path."""
    out = Path(out_dir) if out_dir is not None else paths.data_dir()
    out.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else dataset_names()
    manifest_path = out / "manifest.json"
    manifest = _read_manifest(manifest_path) or {"datasets": {}}
    for name in names:
        spec = get_dataset(name)
        rng = {split: stream(config.seed, spec.streams[split]) for split in SPLITS}
        spec.call("build", out, rng=rng, sizes=config.sizes(), progress=progress, log=log)
        files = {}
        for output in sorted(spec.outputs()):
            path = out / output
            files[output] = {"sha256": path_digest(path)}
            if path.is_dir():
                files[output]["n_files"] = sum(1 for _ in path.iterdir())
            else:
                files[output]["bytes"] = path.stat().st_size
        manifest["datasets"][name] = {"build": _build_entry(name, config), "files": files}
    manifest["pmodel_version"] = __version__
    tmp = manifest_path.with_name(f".manifest.{os.getpid()}.partial")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, manifest_path)
    log(f"wrote {', '.join(names)} to {out}")
    return manifest_path


def _build_folder(root: Path, config: BuildConfig) -> Path:
    return root / "builds" / f"seed{config.seed}-train{config.n_train}-heldout{config.n_heldout}"


def built_dir(config: BuildConfig, names: Iterable[str], data_dir: Path | None = None) -> Path | None:
    """The folder already holding the datasets ``names`` for ``config`` (data/ itself, or
    its build for these sizes), or None when they must be built. Only reads."""
    names = list(names)
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    for folder in (root, _build_folder(root, config)):
        if all(_is_built(folder, n, config) for n in names):
            return folder
    return None


def ensure_built(config: BuildConfig, names: Iterable[str], data_dir: Path | None = None, *,
                 progress: bool = True, log: Callable[[str], None] = lambda msg: None) -> Path:
    """The folder holding the built-in datasets ``names`` for ``config``, built when missing.

    ``data/`` itself when its manifest has them for this config (what ``pmodel
    data build`` wrote); otherwise ``data/builds/seed{S}-train{N}-heldout{M}/``,
    where only the missing datasets are built. Data that is already built is
    only read, so a read-only ``data/`` works; a build that cannot be written
    raises PermissionError naming the folder.
    """
    names = list(names)
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    built = built_dir(config, names, root)
    if built is not None:  # nothing to write: a read-only data/ will do
        return built
    out = _build_folder(root, config)
    blocked = paths.unwritable(out)
    if blocked is not None:
        raise PermissionError(f"the built-in datasets {', '.join(names)} (seed {config.seed}, "
                              f"{config.n_train} training, {config.n_heldout} held out) are not "
                              f"built in {root}, and {blocked} is not writable to build them")
    out.mkdir(parents=True, exist_ok=True)
    # one builder at a time: concurrent runs wait, then find the data built
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [n for n in names if not _is_built(out, n, config)]
        if missing:
            log(f"building {', '.join(missing)} into {out} (seed {config.seed})")
            build_all(config, out_dir=out, names=missing, progress=progress, log=log)
    return out
