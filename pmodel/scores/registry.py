"""Every score a run reports, with what it needs; :func:`run_scores` runs those whose needs hold.

A score declares its needs from a fixed vocabulary (:data:`NEEDS`): what kind of
likelihood the model gives (``exact``, ``bound``), what is known of P_data
(``truth``, ``truth:land``, ...), what the model offers (``encoder``, ``box``, ``structure``), whether P_data is summed over
exactly or estimated by Monte Carlo (``truth:summed``, ``truth:sampled``),
what the data is (``points``). A score whose needs do not hold is skipped, and
the reason is returned beside the metrics, never silently dropped.

Adding a score: one function ``(ctx) -> {metric: float}`` decorated with
:func:`score`, here or in any module imported by ``pmodel.scores``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class ScoreContext:
    """What a score may look at: the fitted model, the problem, the samples.

    ``log_prob`` caches the model's log-probabilities of the held-out examples
    (several scores use them; computed once).
    """

    model: Any
    problem: Any
    samples: np.ndarray
    _heldout_lp: np.ndarray | None = field(default=None, repr=False)
    _codes: dict = field(default_factory=dict, repr=False)

    @property
    def truth(self):
        return self.problem.truth

    def heldout_log_prob(self) -> np.ndarray:
        if self._heldout_lp is None:
            self._heldout_lp = self.model.log_prob(self.problem.heldout)
        return self._heldout_lp

    def codes(self, split: str) -> np.ndarray:
        """``model.encode`` of the problem's ``split`` ("train" or "heldout"), computed once."""
        if split not in self._codes:
            self._codes[split] = self.model.encode(getattr(self.problem, split))
        return self._codes[split]


def _kind(ctx: ScoreContext) -> str:
    return ctx.model.log_prob_kind


def _truth_is(name: str) -> Callable[[ScoreContext], str | None]:
    def check(ctx):
        if ctx.truth is None:
            return "P_data is unknown (users' data)"
        if ctx.truth.name != name:
            return f"needs a truth of type {name!r}; this dataset's is {ctx.truth.name!r}"
        return None
    return check


def _truth_summed(ctx) -> str | None:
    if ctx.truth is None:
        return "P_data is unknown (users' data)"
    if getattr(ctx.truth, "enumerable", True):
        return None
    return (f"P_data has 10^{ctx.truth.network.log10_n_states:.1f} joint states, too many to sum over "
            "(the limit is 10^7): estimated by Monte Carlo instead, under the _estimate names")


def _truth_sampled(ctx) -> str | None:
    if ctx.truth is None:
        return "P_data is unknown (users' data)"
    if getattr(ctx.truth, "enumerable", True):
        return "P_data is summed over exactly: the exact value is recorded, no estimate is needed"
    return None


#: need -> check(ctx) returning None when it holds, else the reason it does not
NEEDS: dict[str, Callable[[ScoreContext], str | None]] = {
    "exact": lambda c: None if _kind(c) == "exact" else
    f"needs an exact log-likelihood; {c.model.name} gives {'a lower bound' if _kind(c) == 'lower_bound' else 'none'}",
    "bound": lambda c: None if _kind(c) == "lower_bound" else
    f"needs a lower-bound family; {c.model.name} gives {'an exact log-likelihood' if _kind(c) == 'exact' else 'none'}",
    "truth": lambda c: None if c.truth is not None else "P_data is unknown (users' data)",
    "truth:table": _truth_is("table"),
    "truth:renders": _truth_is("renders"),
    "truth:land": _truth_is("land"),
    "truth:network": _truth_is("network"),
    # exact sums over every possible example, or Monte Carlo where there are too many
    "truth:summed": _truth_summed,
    "truth:sampled": _truth_sampled,
    "structure": lambda c: None if getattr(type(c.model), "has_structure", False) else
    f"{c.model.name} learns no graph of dependencies between the columns (edges_)",
    "factors": lambda c: None if getattr(c.problem, "factors", None) and c.problem.factor_names else
    "the dataset's latent factors are unknown (only jars and pixels know theirs)",
    "encoder": lambda c: None if c.model.has_encoder else f"{c.model.name} has no latent space (encode)",
    "box": lambda c: None if getattr(type(c.model), "has_box", False) else
    f"only for a fitted box; {c.model.name} has none",
    "points": lambda c: None if c.problem.kind == "points" else f"only for points data, not {c.problem.kind}",
    "iwae": lambda c: None if getattr(type(c.model), "has_iwae", False) else
    f"needs an importance-weighted bound (a VAE); {c.model.name} has none",
    "trained": lambda c: None if getattr(c.model, "epochs_", None) is not None else
    f"only for families trained by a loop; {c.model.name} is fitted in closed form",
}


@dataclass(frozen=True)
class ScoreSpec:
    """A registered score: its name, what it needs, the metrics it yields and how."""

    name: str
    needs: tuple[str, ...]
    metrics: tuple[str, ...]
    compute: Callable[[ScoreContext], dict[str, float]]
    doc: str = ""


SCORES: dict[str, ScoreSpec] = {}


def score(name: str, *, needs: tuple[str, ...] = (), metrics: tuple[str, ...] = ()):
    """Decorator: register ``fn(ctx) -> {metric: value}`` as score ``name``."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"score {name!r}: unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}")

    def wrap(fn):
        SCORES[name] = ScoreSpec(name, tuple(needs), tuple(metrics) or (name,), fn,
                                 (fn.__doc__ or "").strip())
        return fn
    return wrap


def missing(spec: ScoreSpec, ctx: ScoreContext) -> str | None:
    """Why ``spec`` cannot apply to ``ctx`` (the first need that fails), or None."""
    for need in spec.needs:
        reason = NEEDS[need](ctx)
        if reason is not None:
            return reason
    return None


def run_scores(model, problem, samples: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """Every registered score that applies: ``(metrics, skipped)``, skipped = name -> reason."""
    ctx = ScoreContext(model, problem, samples)
    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for spec in SCORES.values():
        reason = missing(spec, ctx)
        if reason is not None:
            skipped[spec.name] = reason
            continue
        metrics.update({k: float(v) for k, v in spec.compute(ctx).items()})
    return metrics, skipped
