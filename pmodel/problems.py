"""Problems: a dataset ready to fit and score (domain, train, held-out, truth).

The built-in datasets carry their exact P_data; a user's data carries none,
and the scores that need it are skipped (and said to be skipped).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pmodel import paths
from pmodel.datasets import fashion, images, land, pixels, user
from pmodel.datasets.land import LandData
from pmodel.datasets.schema import CategoricalSchema
from pmodel.families.domains import CategoricalDomain, Domain, ImageDomain, PointsDomain

BUILTIN = ("fashion", "pixels", "land")


@dataclass(frozen=True, eq=False)
class Truth:
    """What is known exactly of P_data (any field may be None).

    Attributes
    ----------
    table : ndarray, categorical P_data over every cell, in the domain's C order
    images, image_probs : the distinct valid images and their P_data probabilities
    land : LandData, the map's P_data
    """

    table: np.ndarray | None = None
    images: np.ndarray | None = None
    image_probs: np.ndarray | None = None
    land: LandData | None = None


@dataclass(frozen=True, eq=False)
class Problem:
    """A dataset to fit and score.

    Attributes
    ----------
    name : str
    domain : the examples' domain (its ``kind`` picks the families)
    train, heldout : ndarray (n, *event_shape)
    truth : Truth or None when P_data is unknown (users' data)
    schema : CategoricalSchema for categorical data (names of features and values)
    """

    name: str
    domain: Domain
    train: np.ndarray
    heldout: np.ndarray
    truth: Truth | None = None
    schema: object = None
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.domain.kind


def pixels_truth(renders: np.ndarray) -> Truth:
    """P_data of the avatars: each fashion cell's probability on its render.

    Cells with the same render (hair colour under NoHair) pool their mass, so
    the images' distribution has one entry per distinct render.
    """
    canonical = pixels.canonical_cells()
    p = fashion.probability_table().ravel()
    distinct, inverse = np.unique(canonical, return_inverse=True)
    probs = np.bincount(inverse, weights=p, minlength=len(distinct))
    return Truth(images=renders[distinct], image_probs=probs)


def load_builtin(name: str, data_dir: Path | None = None, *, with_truth: bool = True,
                 land_truth: LandData | None = None, renders: np.ndarray | None = None) -> Problem:
    """Load a built dataset (``pmodel data build``), with its exact truth.

    Parameters
    ----------
    name : "fashion", "pixels" or "land"
    data_dir : folder of the built files (default: the project's data/)
    with_truth : attach P_data (for land this loads the 0.9 GB mask once per process)
    land_truth, renders : truth already loaded, to reuse
    """
    d = Path(data_dir) if data_dir is not None else paths.data_dir()
    if name == "fashion":
        train, heldout = (fashion.SCHEMA.to_codes(fashion.read_csv(d / f"fashion-{s}.csv"))
                          for s in ("train", "heldout"))
        truth = builtin_truth("fashion") if with_truth else None
        return Problem("fashion", CategoricalDomain(fashion.SCHEMA.shape), train, heldout,
                       truth, schema=fashion.SCHEMA)
    if name == "pixels":
        (_, train), (_, heldout) = (images.read_png_folder(d / f"pixels-{s}") for s in ("train", "heldout"))
        if renders is not None:
            truth = pixels_truth(renders)
        else:
            truth = builtin_truth("pixels") if with_truth else None
        return Problem("pixels", ImageDomain(pixels.SIZE, pixels.SIZE), train, heldout, truth)
    if name == "land":
        if land_truth is not None:
            truth = Truth(land=land_truth)
        else:
            truth = builtin_truth("land") if with_truth else None
        r = truth.land.region if truth is not None else land.Region().snapped()
        train, heldout = (land.read_csv(d / f"land-{s}.csv") for s in ("train", "heldout"))
        return Problem("land", PointsDomain(r.lon_min, r.lon_max, r.lat_min, r.lat_max),
                       train, heldout, truth)
    raise ValueError(f"unknown built-in dataset {name!r}; expected one of {', '.join(BUILTIN)}")


# ---------------------------------------------------------------------------
# Truth, once per process
# ---------------------------------------------------------------------------

_truth_lock = threading.Lock()
_truths: dict[str, object] = {}


def builtin_truth(name: str) -> Truth:
    """The exact P_data of a built-in dataset, loaded once per process (thread-safe)."""
    with _truth_lock:
        if name not in _truths:
            if name == "fashion":
                _truths[name] = Truth(table=fashion.probability_table().ravel())
            elif name == "pixels":
                _truths[name] = pixels_truth(pixels.load_renders(progress=False))
            elif name == "land":
                _truths[name] = Truth(land=LandData())
            else:
                raise ValueError(f"unknown built-in dataset {name!r}")
        return _truths[name]


# ---------------------------------------------------------------------------
# Users' data
# ---------------------------------------------------------------------------

def load_user(name: str, kind: str, train: Path, heldout: Path | None = None, *,
              schema: Path | None = None, heldout_fraction: float = 0.2, seed: int = 0) -> Problem:
    """A user's files as a problem (no truth). Without ``heldout``, a seeded
    ``heldout_fraction`` of ``train`` is held out."""
    notes: list[str] = []
    schema_obj = None
    if kind == "categorical":
        if schema is not None:
            schema_obj = CategoricalSchema.from_yaml(schema)
        else:
            # categories from every file given, so held-out values are not "unknown"
            schema_obj = user.infer_schema(*(p for p in (train, heldout) if p is not None))
            notes.append(f"{name}: no schema given; categories inferred from the data")
        X = user.load_categorical_csv(train, schema_obj).X
        Xh = user.load_categorical_csv(heldout, schema_obj).X if heldout is not None else None
        domain = CategoricalDomain(schema_obj.shape)
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
    return Problem(name, domain, X, Xh, None, schema=schema_obj, notes=notes)


# ---------------------------------------------------------------------------
# Problems on disk (so tasks pass paths, not arrays)
# ---------------------------------------------------------------------------

def save_problem(problem: Problem, path: Path, *, builtin: str | None = None) -> Path:
    """Write the arrays (.npz) and a JSON sidecar (name, domain, schema, builtin, notes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, train=problem.train, heldout=problem.heldout)
    meta = {"name": problem.name, "kind": problem.kind, "domain": asdict(problem.domain),
            "builtin": builtin, "notes": problem.notes,
            "schema": problem.schema.to_dict() if problem.schema is not None else None}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    tmp.replace(path)
    return path


def load_problem(path: Path) -> Problem:
    """Inverse of :func:`save_problem`; built-in problems get their truth back."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as arrays:
        train, heldout = arrays["train"], arrays["heldout"]
    domain_cls = {"categorical": CategoricalDomain, "image": ImageDomain, "points": PointsDomain}[meta["kind"]]
    d = meta["domain"]
    domain = domain_cls(**({"shape": tuple(d["shape"])} if meta["kind"] == "categorical" else d))
    schema = CategoricalSchema.from_dict(meta["schema"]) if meta["schema"] else None
    truth = builtin_truth(meta["builtin"]) if meta["builtin"] else None
    return Problem(meta["name"], domain, train, heldout, truth, schema=schema, notes=meta["notes"])

