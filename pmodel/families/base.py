"""The one interface every model family implements, and the registry.

::

    fit(X) -> self              learns; hyperparameters set in __init__ are never changed
    log_prob(X) -> (n,)         log-probability (mass or density) in nats; -inf outside the support
    sample(n, *, rng) -> X      (n, *event_shape); rng is a numpy Generator, never stored
    n_parameters_               free parameters after fit

A family is built on a domain (``pmodel.families.domains``), which fixes the
shape of ``X`` and the support. One registry name ("box", "multinomial",
"naive_bayes", ...) maps to one class per data kind it serves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from pmodel.families.domains import Domain


class Family(ABC):
    """Base class: stores the domain and hyperparameters; subclasses do the maths.

    Subclasses set ``name`` (registry key) and ``kind`` (data kind served).
    """

    name: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self, domain: Domain):
        if domain.kind != self.kind:
            raise ValueError(f"{type(self).__name__} serves {self.kind!r} data, "
                             f"got a {domain.kind!r} domain")
        self.domain = domain

    @abstractmethod
    def fit(self, X) -> "Family":
        """Learn from training examples X of shape (n_samples, *event_shape)."""

    @abstractmethod
    def log_prob(self, X) -> np.ndarray:
        """Per-example log-probability, (n_samples,) float64, nats; -inf outside the support."""

    @abstractmethod
    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Draw n_samples new examples, shape (n_samples, *event_shape)."""

    # -- helpers for subclasses ------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_parameters_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(X) first")

    def _check_train(self, X) -> np.ndarray:
        X = self.domain.check(X)
        if len(X) == 0:
            raise ValueError(f"{type(self).__name__}.fit needs at least one example, got 0")
        return X

    def _check_n(self, n_samples: int) -> int:
        if int(n_samples) != n_samples or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}")
        return int(n_samples)

    def get_params(self) -> dict:
        """Hyperparameters (constructor arguments other than the domain)."""
        return {k: v for k, v in vars(self).items()
                if k != "domain" and not k.endswith("_") and not k.startswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def check_alpha(alpha: float) -> float:
    """Additive smoothing must be a finite number >= 0."""
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be >= 0 (0: maximum likelihood, 1: Laplace), got {alpha}")
    return alpha


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, dict[str, type[Family]]] = {}


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make ``cls`` the family ``cls.name`` for data of ``cls.kind``."""
    _REGISTRY.setdefault(cls.name, {})[cls.kind] = cls
    return cls


def family_names() -> list[str]:
    """Registered family names."""
    return sorted(_REGISTRY)


def kinds_served(name: str) -> list[str]:
    """The data kinds a family serves."""
    return sorted(_lookup(name))


def families_for(kind: str) -> list[str]:
    """Names of the families that serve a data kind."""
    return sorted(name for name, by_kind in _REGISTRY.items() if kind in by_kind)


def _lookup(name: str) -> dict[str, type[Family]]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; registered: {', '.join(family_names())}") from None


def family_class(name: str, kind: str) -> type[Family]:
    by_kind = _lookup(name)
    if kind not in by_kind:
        raise ValueError(f"family {name!r} does not serve {kind!r} data; it serves "
                         f"{', '.join(sorted(by_kind))}")
    return by_kind[kind]


def make_family(name: str, domain: Domain, **hyperparameters) -> Family:
    """Build the family ``name`` for ``domain``'s kind with the given hyperparameters.

    Examples
    --------
    >>> from pmodel.families import make_family
    >>> from pmodel.families.domains import CategoricalDomain
    >>> make_family("multinomial", CategoricalDomain((3, 8, 4, 6, 7)), alpha=1.0)
    CategoricalMultinomial(alpha=1.0)
    """
    return family_class(name, domain.kind)(domain, **hyperparameters)
