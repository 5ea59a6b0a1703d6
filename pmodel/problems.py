"""Problems: a dataset ready to fit and score (domain, train, held-out, truth).

The built-in datasets carry their exact P_data; a user's data carries none,
and the scores that need it are skipped (and said to be skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmodel import paths
from pmodel.datasets import fashion, images, land, pixels
from pmodel.datasets.land import LandData
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


def load_builtin(name: str, data_dir: Path | None = None, *, land_truth: LandData | None = None,
                 renders: np.ndarray | None = None) -> Problem:
    """Load a built dataset (``pmodel data build``) with its exact truth.

    Parameters
    ----------
    name : "fashion", "pixels" or "land"
    data_dir : folder of the built files (default: the project's data/)
    """
    d = Path(data_dir) if data_dir is not None else paths.data_dir()
    if name == "fashion":
        train, heldout = (fashion.SCHEMA.to_codes(fashion.read_csv(d / f"fashion-{s}.csv"))
                          for s in ("train", "heldout"))
        return Problem("fashion", CategoricalDomain(fashion.SCHEMA.shape), train, heldout,
                       Truth(table=fashion.probability_table().ravel()), schema=fashion.SCHEMA)
    if name == "pixels":
        (_, train), (_, heldout) = (images.read_png_folder(d / f"pixels-{s}") for s in ("train", "heldout"))
        renders = renders if renders is not None else pixels.load_renders()
        return Problem("pixels", ImageDomain(pixels.SIZE, pixels.SIZE), train, heldout,
                       pixels_truth(renders))
    if name == "land":
        truth = land_truth or LandData()
        r = truth.region
        train, heldout = (land.read_csv(d / f"land-{s}.csv") for s in ("train", "heldout"))
        return Problem("land", PointsDomain(r.lon_min, r.lon_max, r.lat_min, r.lat_max),
                       train, heldout, Truth(land=truth))
    raise ValueError(f"unknown built-in dataset {name!r}; expected one of {', '.join(BUILTIN)}")
