"""Problems: a dataset ready to fit and score (domain, train, held-out, truth).

A built-in dataset (``pmodel.datasets.registry``) carries its exact P_data; a
user's data carries none, and the scores that need it are skipped (and said
to be skipped).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pmodel import paths
from pmodel.datasets import fashion, user
from pmodel.datasets.registry import get_dataset, truth_of
from pmodel.datasets.schema import MAX_CATEGORIES, CategoricalSchema
from pmodel.families.domains import CategoricalDomain, Domain, ImageDomain, PointsDomain, domain_from_dict


@dataclass(frozen=True, eq=False)
class Problem:
    """A dataset to fit and score.

    Attributes
    ----------
    name : str
    domain : the examples' domain (its ``kind`` picks the families)
    train, heldout : ndarray (n, *event_shape)
    truth : a ``pmodel.truths.Truth``, or None when P_data is unknown (users' data)
    schema : CategoricalSchema for categorical data (names of features and values)
    builtin : the registry name of a built-in dataset, else None
    notes : what loading decided for the user (a seeded split, inferred categories)
    factors : {"train": (n_train, n_factors), "heldout": (n_heldout, n_factors)} float64, the
        latent factors of every example when the dataset knows them (jars: height, width;
        pixels: the five fashion features as codes), else None
    factor_names : the factors' names, in column order
    factor_categorical : per factor, True when its values are category codes
    """

    name: str
    domain: Domain
    train: np.ndarray
    heldout: np.ndarray
    truth: object = None
    schema: CategoricalSchema | None = None
    builtin: str | None = None
    notes: tuple[str, ...] = ()
    factors: dict[str, np.ndarray] | None = None
    factor_names: tuple[str, ...] = ()
    factor_categorical: tuple[bool, ...] = ()

    @property
    def kind(self) -> str:
        return self.domain.kind


def builtin_files(name: str, data_dir: Path | None = None) -> dict[str, Path]:
    """Role -> path of a built-in dataset's files in ``data_dir`` (default data/)."""
    d = Path(data_dir) if data_dir is not None else paths.data_dir()
    return {role: d / f for role, f in get_dataset(name).file_names().items()}


def load_builtin(name: str, data_dir: Path | None = None, *, with_truth: bool = True) -> Problem:
    """Load a built dataset (``pmodel data build``), with its exact truth.

    Parameters
    ----------
    name : a registered built-in dataset ("fashion", "pixels", "land", ...)
    data_dir : folder of the built files (default: the project's data/)
    with_truth : attach P_data (made once per process; for land it loads the 0.9 GB mask)
    """
    loaded = get_dataset(name).call("load", builtin_files(name, data_dir))
    truth = truth_of(name) if with_truth else None
    return Problem(name, loaded.domain, loaded.train, loaded.heldout, truth,
                   schema=loaded.schema, builtin=name, factors=loaded.factors,
                   factor_names=tuple(loaded.factor_names),
                   factor_categorical=tuple(loaded.factor_categorical))


# ---------------------------------------------------------------------------
# Users' data
# ---------------------------------------------------------------------------

def load_user(name: str, kind: str, train: Path, heldout: Path | None = None, *,
              schema: Path | None = None, heldout_fraction: float = 0.2, seed: int = 0,
              missing: str = "error", max_categories: int | None = MAX_CATEGORIES) -> Problem:
    """A user's files as a problem (no truth). Without ``heldout``, a seeded
    ``heldout_fraction`` of ``train`` is held out.

    Categorical data: ``missing`` is what an empty cell means (``error``, or
    ``category``: the category ``<missing>``); ``max_categories`` limits the
    distinct values of a column whose categories are read off the data (no
    schema). A column with one value only is kept, and the notes say so."""
    notes: list[str] = []
    schema_obj = None
    if kind == "categorical":
        if schema is not None:
            schema_obj = CategoricalSchema.from_yaml(schema)
        else:
            # categories from every file given, so held-out values are not "unknown"
            schema_obj = user.infer_schema(*(p for p in (train, heldout) if p is not None),
                                           missing=missing, max_categories=max_categories)
            notes.append(f"{name}: no schema given; categories inferred from the data")
        X = user.load_categorical_csv(train, schema_obj, missing=missing)
        Xh = (user.load_categorical_csv(heldout, schema_obj, missing=missing)
              if heldout is not None else None)
        domain = CategoricalDomain(schema_obj.shape)
        notes += [f"{name}: {note}" for note in user.constant_columns(
            schema_obj, X if Xh is None else np.concatenate([X, Xh]))]
    elif kind == "image":
        _, X = user.load_image_folder(train)
        Xh = user.load_image_folder(heldout)[1] if heldout is not None else None
        if Xh is not None and Xh.shape[1:] != X.shape[1:]:
            raise ValueError(f"{heldout}: images are {Xh.shape[2]}x{Xh.shape[1]}, "
                             f"the training images {X.shape[2]}x{X.shape[1]}")
        domain = ImageDomain(X.shape[1], X.shape[2])
    elif kind == "points":
        X = user.load_points(train)
        Xh = user.load_points(heldout) if heldout is not None else None
        domain = PointsDomain()
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    if Xh is None:
        perm = np.random.default_rng([seed, 99]).permutation(len(X))
        n_held = max(1, int(round(heldout_fraction * len(X))))
        if n_held >= len(X):
            raise ValueError(f"{train}: {len(X)} examples are too few to hold out "
                             f"{heldout_fraction:.0%} and still train")
        X, Xh = X[perm[n_held:]], X[perm[:n_held]]
        notes.append(f"{name}: held out {n_held} of {len(perm)} examples (seeded split)")
    return Problem(name, domain, X, Xh, None, schema=schema_obj, notes=tuple(notes))


# ---------------------------------------------------------------------------
# Problems on disk (so tasks pass paths, not arrays)
# ---------------------------------------------------------------------------

def save_problem(problem: Problem, path: Path) -> Path:
    """Write the arrays and the metadata (name, domain, schema, builtin, notes) as one
    ``.npz``, under a unique temporary name renamed into place (safe with
    concurrent writers of the same path: the last rename wins, whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"name": problem.name, "domain": {"kind": problem.kind, **asdict(problem.domain)},
            "builtin": problem.builtin, "notes": list(problem.notes),
            "schema": problem.schema.to_dict() if problem.schema is not None else None,
            "factor_names": list(problem.factor_names),
            "factor_categorical": list(problem.factor_categorical)}
    factors = {f"factors_{split}": a for split, a in (problem.factors or {}).items()}
    paths.atomic_write(path, lambda f: np.savez(
        f, train=problem.train, heldout=problem.heldout, **factors,
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)))
    return path


class LazyTruth:
    """A built-in dataset's truth, made on first use: a step that reads a saved problem
    without scoring it (a rerun's logging of cached results) never loads the land mask.
    Attribute access goes to ``truth_of(name)`` (made once per process)."""

    def __init__(self, name: str):
        self._lazy_dataset = name

    def __getattr__(self, attr):
        if attr.startswith("__"):  # copy/pickle probes: not the truth's
            raise AttributeError(attr)
        return getattr(truth_of(self.__dict__["_lazy_dataset"]), attr)

    def __repr__(self) -> str:
        return f"LazyTruth({self._lazy_dataset!r})"


def problem_domain(path: Path) -> Domain:
    """The domain of a saved problem, read from its metadata alone (no arrays)."""
    with np.load(Path(path), allow_pickle=False) as arrays:
        meta = json.loads(arrays["meta"].tobytes().decode())
    return domain_from_dict(meta["domain"])


def load_problem(path: Path) -> Problem:
    """Inverse of :func:`save_problem`; built-in problems get their truth back
    (a :class:`LazyTruth`, made when first used).

    Raises ValueError naming the file when it is truncated or corrupt.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            train, heldout = arrays["train"], arrays["heldout"]
            meta = json.loads(arrays["meta"].tobytes().decode())
            factors = {k.removeprefix("factors_"): arrays[k] for k in arrays.files
                       if k.startswith("factors_")} or None
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: unreadable problem file ({type(exc).__name__}: {exc})") from None
    domain = domain_from_dict(meta["domain"])
    schema = CategoricalSchema.from_dict(meta["schema"]) if meta["schema"] else None
    truth = LazyTruth(meta["builtin"]) if meta["builtin"] else None
    return Problem(meta["name"], domain, train, heldout, truth, schema=schema,
                   builtin=meta["builtin"], notes=tuple(meta["notes"]), factors=factors,
                   factor_names=tuple(meta.get("factor_names", ())),
                   factor_categorical=tuple(meta.get("factor_categorical", ())))
