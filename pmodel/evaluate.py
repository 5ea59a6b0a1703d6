"""One path from fit to score, for the flow and for scripts alike.

:func:`fit_model`, :func:`draw_samples` and :func:`score` are the three steps;
the flow's tasks call them one by one (and cache each), :func:`run_family`
calls them in a row. Both seed the same way, so the same data, config and
seed give the same numbers by either path:

- fitting draws from ``np.random.default_rng([seed, 5])`` (families that need randomness),
- sampling from ``np.random.default_rng([seed, 7])``.

The scores and their metric names are ``pmodel.scores`` (see ``pmodel.scores.run``):
every registered score whose needs hold is computed; the others are returned
as ``skipped`` with the reason. Besides the scores a run records
``fit_seconds``, ``sample_seconds``, ``n_parameters`` (inf past a float) and
``log10_n_parameters``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from pmodel.families import Family, make_family
from pmodel.problems import Problem
from pmodel.scores import run_scores

FIT_STREAM, SAMPLE_STREAM = 5, 7


def fit_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, FIT_STREAM])


def sample_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, SAMPLE_STREAM])


@dataclass
class FamilyResult:
    """A fitted model, its samples, its scores, what was skipped and why."""

    family: str
    params: dict
    model: Family
    samples: np.ndarray
    metrics: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parameter_counts(model: Family) -> dict[str, float]:
    """``n_parameters`` and ``log10_n_parameters`` as floats (256^1024 - 1 is beyond a float)."""
    n = model.n_parameters_
    return {"n_parameters": float(n) if n < 2**1000 else math.inf,
            "log10_n_parameters": math.log10(n) if n > 0 else -math.inf}


def fit_model(name: str, params: dict, problem: Problem, *, seed: int,
              before_fit=None, after_epoch=None) -> tuple[Family, float]:
    """Family ``name`` fitted to the problem's training data; and the seconds it took.
    ``before_fit(model)``, when given, is called on the unfitted model (e.g. to watch its training);
    ``after_epoch(epoch, history)`` after each epoch of a family that reports them
    (``reports_epochs``; ignored by a closed-form fit): it may end the fit by raising
    ``pmodel.errors.StopTraining``."""
    model = make_family(name, problem.domain, **params)
    if before_fit is not None:
        before_fit(model)
    t = time.perf_counter()
    if after_epoch is not None and model.reports_epochs:
        model.fit(problem.train, rng=fit_rng(seed), after_epoch=after_epoch)
    else:
        model.fit(problem.train, rng=fit_rng(seed))
    return model, time.perf_counter() - t


def draw_samples(model: Family, n_samples: int, *, seed: int) -> tuple[np.ndarray, float]:
    """``n_samples`` new examples from a fitted model; and the seconds it took."""
    t = time.perf_counter()
    samples = model.sample(n_samples, rng=sample_rng(seed))
    return samples, time.perf_counter() - t


def score(model: Family, problem: Problem, samples: np.ndarray, *, fit_seconds: float = math.nan,
          sample_seconds: float = math.nan) -> tuple[dict[str, float], dict[str, str]]:
    """Every score that applies, with timings and parameter counts; and the skipped ones' reasons."""
    metrics, skipped = run_scores(model, problem, samples)
    metrics.update(fit_seconds=fit_seconds, sample_seconds=sample_seconds, **parameter_counts(model))
    return metrics, skipped


def run_family(name: str, params: dict, problem: Problem, *, n_samples: int,
               seed: int) -> FamilyResult:
    """Fit family ``name`` with ``params`` to the problem, sample, and score."""
    model, fit_seconds = fit_model(name, params, problem, seed=seed)
    samples, sample_seconds = draw_samples(model, n_samples, seed=seed)
    metrics, skipped = score(model, problem, samples, fit_seconds=fit_seconds,
                             sample_seconds=sample_seconds)
    return FamilyResult(name, dict(params), model, samples, metrics, skipped, list(problem.notes))
