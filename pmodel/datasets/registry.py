"""The built-in datasets, declared in one place.

Each entry says what a dataset is and where everything about it lives: its
data kind, its files, how it is built from a seed, how its files load into
arrays, its exact truth, and how its files are validated. Config, build,
ingest, validation, warm-up, scoring and pictures all read this registry.

Adding a dataset is one module (with ``build``, ``load`` and ``truth``
functions) plus one :func:`register_dataset` call, here or, for a toy, in a
test file. Functions are named as "module:function" strings and imported only
when used, so loading an experiment file imports no dataset code.

A family of datasets named by a parameter (the published Bayesian networks: ``bn-alarm``,
``bn-asia``) is one :func:`register_dataset_factory` call: :func:`get_dataset` makes the entry of
``<prefix>-<anything>`` on first use, in whichever process asks, from its name alone.

The three functions an entry names::

    build(out: Path, *, rng: {split: Generator}, sizes: {split: int},
          progress: bool, log: Callable) -> None      writes the dataset's files into out
    load(files: {role: Path}) -> Loaded                   the arrays, domain and schema
    truth() -> Truth                                      exact P_data (called once per process)
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Validation:
    """How a dataset's files are validated (rules applied by ``tasks.validation``).

    format : "categorical-csv" | "points-csv" | "png-folder"
    schema : a CategoricalSchema, or its "module:attribute" (categorical-csv)
    image_size : (height, width) every image must have (png-folder)
    """

    format: str
    schema: Any = None
    image_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Loaded:
    """A dataset's files as arrays: what ``load`` returns."""

    domain: Any
    train: np.ndarray
    heldout: np.ndarray
    schema: Any = None
    #: latent factors of every example, when the data knows them: split -> (n, n_factors)
    #: float64 (a jar's height and width; an avatar's five features as codes)
    factors: dict[str, np.ndarray] | None = None
    factor_names: tuple[str, ...] = ()
    #: per factor, whether its values are category codes (read out one-hot) or numbers
    factor_categorical: tuple[bool, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A built-in dataset.

    Attributes
    ----------
    name, kind : registry name and data kind ("categorical", "image", "points")
    description : one line, shown in the UI and the README
    files : role -> file or folder name in the data folder, with ``{split}``
        standing for train/heldout roles (e.g. ``"fashion-{split}.csv"``)
    extra_files : other outputs of ``build`` (e.g. labels), with ``{split}``
    streams : split -> random stream id (numpy entropy ``[seed, id]``); datasets
        drawn from the same rows (fashion and pixels) share streams
    build, load, truth : "module:function" (see the module docstring)
    validation : how its files are checked
    build_key : "module:function" returning a JSON-able dict of whatever else a
        build depends on (renderer versions, region); a change rebuilds
    values_per_example : numbers in one example (5 columns, 1024 pixels, 2
        coordinates): bounds the memory of ``n_samples`` when a config loads
    """

    name: str
    kind: str
    description: str
    files: dict[str, str]
    streams: dict[str, int]
    build: str
    load: str
    truth: str
    validation: Validation
    extra_files: tuple[str, ...] = ()
    build_key: str | None = None
    values_per_example: int = 1

    def file_names(self) -> dict[str, str]:
        return dict(self.files)

    def outputs(self) -> list[str]:
        """Every file or folder name ``build`` writes."""
        names = list(self.files.values())
        names += [e.format(split=s) for e in self.extra_files for s in SPLITS]
        return names

    def call(self, which: str, *args, **kwargs):
        return resolve(getattr(self, which))(*args, **kwargs)

    def key(self) -> dict:
        return resolve(self.build_key)() if self.build_key else {}


_DATASETS: dict[str, DatasetSpec] = {}
_FACTORIES: dict[str, str | Callable] = {}
_TRUTH_LOCK = threading.Lock()
_TRUTHS: dict[str, Any] = {}


def resolve(target: str | Callable) -> Callable:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a built-in dataset."""
    from pmodel.families.domains import DOMAINS

    if spec.kind not in DOMAINS:
        raise ValueError(f"dataset {spec.name!r}: unknown kind {spec.kind!r}; "
                         f"expected one of {', '.join(DOMAINS)}")
    if set(spec.files) != set(SPLITS):
        raise ValueError(f"dataset {spec.name!r}: files must name {SPLITS}, got {sorted(spec.files)}")
    _DATASETS[spec.name] = spec
    with _TRUTH_LOCK:
        _TRUTHS.pop(spec.name, None)
    return spec


def unregister_dataset(name: str) -> None:
    _DATASETS.pop(name, None)
    with _TRUTH_LOCK:
        _TRUTHS.pop(name, None)


def dataset_names() -> list[str]:
    return list(_DATASETS)


def register_dataset_factory(prefix: str, target: str | Callable) -> None:
    """Datasets made on demand: ``get_dataset("<prefix>-<rest>")`` calls ``target(name)``
    ("module:function", imported then) for the entry, registers and returns it; ``target``
    raises ValueError, saying what exists, for a name it does not know."""
    _FACTORIES[prefix] = target


def dataset_factories() -> list[str]:
    """The prefixes of the datasets made on demand (``bn``)."""
    return list(_FACTORIES)


def get_dataset(name: str) -> DatasetSpec:
    if name in _DATASETS:
        return _DATASETS[name]
    prefix = name.split("-", 1)[0]
    if prefix in _FACTORIES and name != prefix:
        spec = resolve(_FACTORIES[prefix])(name)
        return _DATASETS.setdefault(name, spec)
    made = f" (and {', '.join(f'{p}-...' for p in _FACTORIES)})" if _FACTORIES else ""
    raise ValueError(f"unknown built-in dataset {name!r}; expected one of "
                     f"{', '.join(_DATASETS)}{made}")


def is_dataset(name: str) -> bool:
    """Whether ``name`` names a built-in dataset: a registered one, or one a factory makes
    (whose :func:`get_dataset` may still refuse it, saying why: an unknown network)."""
    prefix = name.split("-", 1)[0]
    return name in _DATASETS or (prefix in _FACTORIES and name != prefix
                                 and re.fullmatch(r"[A-Za-z0-9_-]+", name) is not None)


def truth_of(name: str):
    """The exact truth of a built-in dataset, made once per process (thread-safe)."""
    with _TRUTH_LOCK:
        if name not in _TRUTHS:
            _TRUTHS[name] = get_dataset(name).call("truth")
        return _TRUTHS[name]


# ---------------------------------------------------------------------------
# The built-in datasets
# ---------------------------------------------------------------------------

register_dataset(DatasetSpec(
    name="fashion", kind="categorical",
    description="the chapter's table: five avatar features drawn from a known Bayesian network",
    files={"train": "fashion-train.csv", "heldout": "fashion-heldout.csv"},
    streams={"train": 1, "heldout": 2},
    build="pmodel.datasets.fashion:build", load="pmodel.datasets.fashion:load",
    truth="pmodel.datasets.fashion:truth",
    validation=Validation("categorical-csv", schema="pmodel.datasets.fashion:SCHEMA"),
    values_per_example=5))

register_dataset(DatasetSpec(
    name="pixels", kind="image",
    description="the same avatars as 32x32 grayscale images (the fashion rows, rendered)",
    files={"train": "pixels-train", "heldout": "pixels-heldout"},
    extra_files=("pixels-{split}-labels.csv",),
    streams={"train": 1, "heldout": 2},  # fashion's streams: the same rows as images
    build="pmodel.datasets.pixels:build", load="pmodel.datasets.pixels:load",
    truth="pmodel.datasets.pixels:truth", build_key="pmodel.datasets.pixels:build_key",
    validation=Validation("png-folder", image_size=(32, 32)), values_per_example=32 * 32))

register_dataset(DatasetSpec(
    name="land", kind="points",
    description="points uniform on land (per square degree of the flat map), never at sea",
    files={"train": "land-train.csv", "heldout": "land-heldout.csv"},
    streams={"train": 3, "heldout": 4},
    build="pmodel.datasets.land:build", load="pmodel.datasets.land:load",
    truth="pmodel.datasets.land:truth", build_key="pmodel.datasets.land:build_key",
    validation=Validation("points-csv"), values_per_example=2))

register_dataset(DatasetSpec(
    name="jars", kind="image",
    description="32x32 grayscale jars drawn from two factors, height and width (a 2-D latent space)",
    files={"train": "jars-train", "heldout": "jars-heldout"},
    extra_files=("jars-{split}-factors.csv",),
    streams={"train": 11, "heldout": 12},
    build="pmodel.datasets.jars:build", load="pmodel.datasets.jars:load",
    truth="pmodel.datasets.jars:truth", build_key="pmodel.datasets.jars:build_key",
    validation=Validation("png-folder", image_size=(32, 32)), values_per_example=32 * 32))

# published Bayesian networks, one dataset per network: bn-asia, bn-alarm, ... (pmodel/datasets/bn.py)
register_dataset_factory("bn", "pmodel.datasets.bn:dataset_spec")
