"""The one interface every model family implements (contract version 2), and the registry.

::

    fit(X, *, rng=None) -> self     learns; hyperparameters set in __init__ are never changed.
                                    A family that draws random numbers while fitting (restarts,
                                    minibatches, dequantisation noise) takes them from ``rng``, the
                                    run's numpy Generator; a family that needs none ignores it.
    log_prob(X) -> (n,) float64     log-probability (mass or density) in nats; -inf outside the support.
                                    What it is is said by ``log_prob_kind``:
    log_prob_kind                   "exact"        the model's own log p(x);
                                    "lower_bound"  a lower bound on it (an ELBO, a diffusion bound,
                                                   a dequantised density on discrete data);
                                    "none"         no likelihood at all (a GAN): log_prob raises.
                                    Scores read it: a bound is recorded under its own name
                                    (heldout_loglik_bound), never as heldout_loglik.
    sample(n, *, rng) -> X          (n, *event_shape); rng is a numpy Generator, never stored.
    encode(X) -> (n, latent_dim)    optional (``has_encoder``): the latent code of each example.
    cannot_hold(domain) -> str|None a class method: why the family cannot be fitted on that domain
                                    (its table would not fit in memory), or None. Checked before
                                    fitting: the run skips that pair and records the reason.
    n_parameters_                   free parameters after fit (a Python int: it may exceed a float).
    history_                        per-step training figures, {"loss": [...], "val_loss": [...]};
                                    empty for families fitted in closed form.
    save(dir) / load_model(dir)     ``model.json`` (family, kind, domain, hyperparameters, learned
                                    scalars, format version) and ``arrays.npz``; never a pickled object.

Hyperparameters are declared per class (``hyperparameters``: name -> :class:`Hyper`, with type,
bounds and default), so an experiment file is checked when it loads, with the key named, and
``__init__`` stores them and nothing else.

A family is built on a domain (``pmodel.families.domains``), which fixes the shape of ``X``
and the support. One registry name ("box", "multinomial", "naive_bayes", ...) maps to one class
per data kind it serves; one class may serve several kinds (``kinds``) where the maths is the
same. The registry is lazy: it holds "module:Class" strings, and a family's module (and any
heavy library it needs) is imported only when that family is built or loaded.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pmodel import __version__
from pmodel.families.domains import DOMAINS, Domain, domain_from_dict
from pmodel.paths import atomic_write

#: Version of the saved-model format written by :meth:`Family.save`.
FORMAT_VERSION = 2
LOG_PROB_KINDS = ("exact", "lower_bound", "none")


# ---------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Hyper:
    """A declared hyperparameter: its type, bounds and default.

    ``type`` is ``float``, ``int``, ``bool`` or ``str``; ``ge``/``gt``/``le``/``lt``
    bound numbers; ``choices`` lists allowed strings.
    """

    type: type
    default: Any
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    doc: str = ""
    pattern: str | None = None   # strings: a regular expression the whole value must match

    def check(self, key: str, value: Any) -> Any:
        """``value`` converted to the declared type; ValueError naming ``key`` when it breaks a rule."""
        t = self.type
        if t is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{key}: expected true or false, got {value!r}")
            return value
        if t in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{key}: expected a number, got {value!r} ({type(value).__name__})")
            if t is int and float(value) != int(value):
                raise ValueError(f"{key}: expected a whole number, got {value!r}")
            value = t(value)
            if not math.isfinite(value):
                raise ValueError(f"{key}: expected a finite number, got {value!r}")
            for bound, ok, text in ((self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
                                    (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
                if bound is not None and not ok(bound):
                    raise ValueError(f"{key}: must be {text} {bound}, got {value!r}")
            return value
        if not isinstance(value, t):
            raise ValueError(f"{key}: expected {t.__name__}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{key}: must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise ValueError(f"{key}: must match {self.pattern}, got {value!r}")
        return value

    def describe(self) -> str:
        parts = [self.type.__name__]
        for name in ("ge", "gt", "le", "lt"):
            if getattr(self, name) is not None:
                parts.append(f"{ {'ge': '>=', 'gt': '>', 'le': '<=', 'lt': '<'}[name]} {getattr(self, name)}")
        if self.choices:
            parts.append(f"one of {list(self.choices)}")
        if self.pattern:
            parts.append(f"matching {self.pattern}")
        return " ".join(parts) + f", default {self.default!r}"


@dataclass(frozen=True)
class Search:
    """A hyperparameter's search range for a sweep (``pmodel sweep``), as plain data: the
    sweep's Optuna glue (``tasks/sweeps.py``) turns it into a distribution, so pmodel imports
    no optuna.

    Numbers: ``low`` to ``high``, both included, uniform or, with ``log``, log-uniform (rates,
    smoothing strengths, widths); ``step`` makes a grid. Or a few values: ``choices``.
    A range must lie within the hyperparameter's :class:`Hyper` bounds (a test checks every
    declaration).
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def __post_init__(self):
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("Search: give low and high, or choices")
        if self.choices is None and not self.low <= self.high:
            raise ValueError(f"Search: low {self.low} > high {self.high}")
        if self.log and self.choices is None and self.low <= 0:
            raise ValueError(f"Search: a log range needs low > 0, got {self.low}")

    def values(self) -> tuple:
        """The ends of the range (or every choice), to check against the hyperparameter's rules."""
        return self.choices if self.choices is not None else (self.low, self.high)


ALPHA = Hyper(float, 0.0, ge=0.0, le=1e6,
              doc="additive (Laplace/Lidstone) smoothing: 0 maximum likelihood, 1 Laplace")
#: where a sweep looks for alpha: log-uniform from almost none to ten pseudo-counts a cell
ALPHA_SEARCH = Search(1e-3, 10.0, log=True)


def check_alpha(alpha: float) -> float:
    """Additive smoothing must be a finite number >= 0."""
    return ALPHA.check("alpha", alpha)


# ---------------------------------------------------------------------------
# The base class
# ---------------------------------------------------------------------------

class Family(ABC):
    """Base class: stores the domain and hyperparameters; subclasses do the maths.

    Subclasses set ``name`` (registry key), ``kinds`` (data kinds served),
    ``hyperparameters`` (declared :class:`Hyper` per constructor argument) and,
    when it is not "exact", ``log_prob_kind``.
    """

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    hyperparameters: ClassVar[dict[str, Hyper]] = {}
    log_prob_kind: ClassVar[str] = "exact"
    #: what the family assumes, in one line (shown beside its runs)
    assumes: ClassVar[str] = ""
    #: where the chapter's taxonomy puts it: "counting" (the chapter's own models),
    #: "autoregressive", "flow" (explicit, tractable), "latent variable", "diffusion"
    #: (explicit, approximate), "implicit" (no density); leaderboards group by it
    taxonomy: ClassVar[str] = ""
    #: the ranges a sweep (``pmodel sweep``) searches: hyperparameter -> :class:`Search`; the
    #: other hyperparameters keep the experiment entry's values. Empty: the family cannot be swept
    search_space: ClassVar[dict[str, Search]] = {}
    #: whether ``fit`` takes ``after_epoch`` (a training loop that reports each epoch: the deep
    #: families); a closed-form fit has no epochs to report
    reports_epochs: ClassVar[bool] = False

    def __init__(self, domain: Domain, **hyperparameters):
        if domain.kind not in self.kinds:
            raise ValueError(f"{type(self).__name__} serves {', '.join(self.kinds)} data, "
                             f"got a {domain.kind!r} domain")
        unknown = set(hyperparameters) - set(self.hyperparameters)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameters {sorted(unknown)}; "
                            f"allowed: {sorted(self.hyperparameters)}")
        self.domain = domain
        for key, spec in self.hyperparameters.items():
            setattr(self, key, hyperparameters.get(key, spec.default))

    @property
    def kind(self) -> str:
        return self.domain.kind

    @abstractmethod
    def fit(self, X, *, rng: np.random.Generator | None = None) -> "Family":
        """Learn from training examples X of shape (n_samples, *event_shape)."""

    @abstractmethod
    def log_prob(self, X) -> np.ndarray:
        """Per-example log-probability, (n_samples,) float64, nats; -inf outside the support."""

    @abstractmethod
    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Draw n_samples new examples, shape (n_samples, *event_shape)."""

    @classmethod
    def cannot_hold(cls, domain: Domain) -> str | None:
        """Why this family cannot be fitted on ``domain``, or None when it can: a declared
        capability, checked before fitting (a run skips the pair, with this reason; ``fit``
        refuses it). Families whose memory grows with the joint table override it."""
        return None

    def encode(self, X) -> np.ndarray:
        """The latent code of each example, (n_samples, latent_dim); families with a latent space."""
        raise NotImplementedError(f"{type(self).__name__} has no latent space (has_encoder is False)")

    @property
    def has_encoder(self) -> bool:
        return type(self).encode is not Family.encode

    # -- helpers for subclasses ------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_parameters_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(X) first")

    def _check_train(self, X) -> np.ndarray:
        X = self.domain.check(X)
        if len(X) == 0:
            raise ValueError(f"{type(self).__name__}.fit needs at least one example, got 0")
        for key, spec in self.hyperparameters.items():
            spec.check(key, getattr(self, key))
        self.history_: dict[str, list[float]] = {}
        return X

    def _log_prob_in_support(self, X: np.ndarray, log_prob) -> np.ndarray:
        """``log_prob(X[inside])`` for the examples inside the domain's support, -inf for the
        others (a density, or a bound, that is 0 off the support)."""
        inside = self.domain.in_support(X)
        out = np.full(len(X), -np.inf)
        if inside.any():
            out[inside] = log_prob(X[inside])
        return out

    def _check_n(self, n_samples: int) -> int:
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 0:
            raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}")
        return int(n_samples)

    def get_params(self) -> dict:
        """Hyperparameters (constructor arguments other than the domain)."""
        return {k: getattr(self, k) for k in self.hyperparameters}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- saving and loading ----------------------------------------------
    def _state(self) -> dict[str, Any]:
        """What fit learned: every attribute but the domain and the hyperparameters.

        Families whose state does not fit :func:`_encode_state` (a torch module, a
        dict index) override this with :meth:`_set_state`.
        """
        skip = {"domain", *self.hyperparameters}
        return {k: v for k, v in vars(self).items() if k not in skip}

    def _set_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def save(self, directory: str | Path) -> Path:
        """Write the fitted model to ``directory`` (``model.json`` + ``arrays.npz``).

        Written under temporary names and renamed, so a reader never sees half a model.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        state = {k: _encode_state(v, k, arrays) for k, v in self._state().items()}
        meta = {"format": "pmodel-model", "format_version": FORMAT_VERSION, "family": self.name,
                "kind": self.kind, "class": f"{type(self).__module__}:{type(self).__qualname__}",
                "domain": {"kind": self.kind, **asdict(self.domain)},
                "params": self.get_params(), "log_prob_kind": self.log_prob_kind, "state": state,
                "pmodel_version": __version__}
        atomic_write(directory / "arrays.npz", lambda f: np.savez(f, **arrays))
        atomic_write(directory / "model.json",
                      lambda f: f.write(json.dumps(meta, indent=1, allow_nan=True).encode()))
        return directory


def _encode_state(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON description of one learned value; arrays go into ``arrays``."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": key}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return {"int": str(int(value))}  # exact, however large (256**1024 - 1)
    if isinstance(value, (float, np.floating)):
        return {"float": repr(float(value))}  # inf and nan survive
    if isinstance(value, (list, tuple)):
        items = [_encode_state(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
        return {"list" if isinstance(value, list) else "tuple": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode_state(v, f"{key}.{k}", arrays) for k, v in value.items()}}
    if is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {k: _encode_state(v, f"{key}.{k}", arrays) for k, v in vars(value).items()}}
    raise TypeError(f"cannot save learned attribute {key!r} of type {type(value).__name__}: "
                    "override _state/_set_state for it")


def _decode_state(value: Any, arrays) -> Any:
    if not isinstance(value, dict):
        return value
    if "array" in value:
        return arrays[value["array"]]
    if "int" in value:
        return int(value["int"])
    if "float" in value:
        return float(value["float"])
    if "list" in value:
        return [_decode_state(v, arrays) for v in value["list"]]
    if "tuple" in value:
        return tuple(_decode_state(v, arrays) for v in value["tuple"])
    if "dict" in value:
        return {k: _decode_state(v, arrays) for k, v in value["dict"].items()}
    if "dataclass" in value:
        cls = _import(value["dataclass"])
        return cls(**{k: _decode_state(v, arrays) for k, v in value["fields"].items()})
    raise ValueError(f"unknown saved value {value!r}")


def _import(target: str):
    module, _, name = target.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def load_model(directory: str | Path) -> Family:
    """A fitted model back from :meth:`Family.save`'s folder.

    The class comes from the registry (by family name and kind), so a model
    saved by another process or version loads as long as its family exists.

    Raises
    ------
    ValueError
        When the folder holds no pmodel model, or one that cannot be read (the
        path is named).
    """
    directory = Path(directory)
    try:
        meta = json.loads((directory / "model.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{directory}: no saved model here (model.json is missing)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{directory / 'model.json'}: unreadable saved model ({exc})") from None
    if meta.get("format") != "pmodel-model" or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: not a pmodel model of format version {FORMAT_VERSION}")
    saved_by = meta.get("pmodel_version")
    if saved_by != __version__:  # the format is the same; a family's maths may not be
        who = f"pmodel {saved_by}" if saved_by else "an earlier pmodel (no version recorded)"
        warnings.warn(f"{directory}: saved by {who}, loaded by pmodel {__version__}: its samples and scores may differ from "
                      "those it was recorded with", UserWarning, stacklevel=2)
    cls = family_class(meta["family"], meta["kind"])
    domain = domain_from_dict(meta["domain"])
    model = cls(domain, **meta["params"])
    try:
        with np.load(directory / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # a truncated or corrupt file: say which
        raise ValueError(f"{directory / 'arrays.npz'}: unreadable saved arrays ({exc})") from None
    model._set_state({k: _decode_state(v, arrays) for k, v in meta["state"].items()})
    return model


# ---------------------------------------------------------------------------
# Registry (lazy: "module:Class" strings until a family is used)
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, dict[str, str | type[Family]]] = {}


def register_family(name: str, kinds: str | tuple[str, ...], target: str | type[Family]) -> None:
    """Register ``target`` ("package.module:Class", or the class itself) as family
    ``name`` on each of ``kinds``. A string is imported only when the family is used."""
    for kind in (kinds,) if isinstance(kinds, str) else kinds:
        if kind not in DOMAINS:
            raise ValueError(f"unknown data kind {kind!r}; expected one of {', '.join(DOMAINS)}")
        _REGISTRY.setdefault(name, {})[kind] = target


def unregister_family(name: str) -> None:
    """Remove a family (tests register toy families and remove them again)."""
    _REGISTRY.pop(name, None)


def family_names() -> list[str]:
    """Registered family names."""
    return sorted(_REGISTRY)


def kinds_served(name: str) -> list[str]:
    """The data kinds a family serves."""
    return sorted(_lookup(name))


def families_for(kind: str) -> list[str]:
    """Names of the families that serve a data kind."""
    return sorted(name for name, by_kind in _REGISTRY.items() if kind in by_kind)


def _lookup(name: str) -> dict[str, str | type[Family]]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; registered: {', '.join(family_names())}") from None


def family_class(name: str, kind: str) -> type[Family]:
    """The class of family ``name`` on ``kind`` data (its module imported now)."""
    by_kind = _lookup(name)
    if kind not in by_kind:
        raise ValueError(f"family {name!r} does not serve {kind!r} data; it serves "
                         f"{', '.join(sorted(by_kind))}")
    target = by_kind[kind]
    if isinstance(target, str):
        target = by_kind[kind] = _import(target)
    return target


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


def cannot_hold(name: str, domain: Domain) -> str | None:
    """Why family ``name`` cannot be fitted on ``domain`` (its declared capability), or None."""
    return family_class(name, domain.kind).cannot_hold(domain)


def check_hyperparameters(name: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against family ``name``'s declarations on ``kind``.

    Raises ValueError naming the first key that is unknown or breaks its rule,
    and what is allowed.
    """
    cls = family_class(name, kind)
    declared = cls.hyperparameters
    unknown = sorted(set(params) - set(declared))
    if unknown:
        allowed = ", ".join(f"{k} ({h.describe()})" for k, h in declared.items()) or "none"
        raise ValueError(f"unknown hyperparameter(s) {unknown}; allowed: {allowed}")
    checked = {k: declared[k].check(k, v) for k, v in params.items()}
    check = getattr(cls, "check_resources", None)
    if check is not None:
        check({**{k: h.default for k, h in declared.items()}, **checked})
    return checked
