"""One evaluation for every family: fit, sample, score.

:func:`run_family` fits a registered family to a problem's training data,
draws samples and computes every score that applies (``pmodel.scores``),
under the metric names the tracking layer logs:

=====================  ===========================================================
heldout_loglik         mean nats per held-out example, over those with p > 0
heldout_bits_per_dim   images: -heldout_loglik / (n_pixels ln 2)
out_of_support_rate    share of held-out examples with p = 0 (never hidden)
entropy_truth          H(P_data), exact (built-in data only)
kl_to_truth            KL(P_data || P_model), exact (built-in data only)
on_land_rate           points: share of samples on land in the region
land_coverage          points: land coverage / the truth's expected coverage
prdc_*                 points: precision, recall, density, coverage (k = 5)
novelty_rate           share of samples that are not training examples
unique_rate            share of distinct samples
valid_rate             images: share of samples near a valid render
n_valid_combinations   images: distinct valid renders the samples reach
box_sea_share          box on land: share of the box that is sea (point A)
land_outside_box_share box on land: share of land outside the box (point B)
fit_seconds, sample_seconds, n_parameters (inf past a float: see log10_n_parameters)
=====================  ===========================================================
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from pmodel import scores
from pmodel.families import Family, make_family
from pmodel.problems import Problem


@dataclass
class FamilyResult:
    """A fitted model, its samples, its scores and what was skipped."""

    family: str
    params: dict
    model: Family
    samples: np.ndarray
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)


def parameter_counts(model: Family) -> dict[str, float]:
    """``n_parameters`` and ``log10_n_parameters`` as floats (256^1024 - 1 is beyond a float)."""
    n = model.n_parameters_
    return {"n_parameters": float(n) if n < 2**1000 else math.inf,
            "log10_n_parameters": math.log10(n)}


def score(model: Family, problem: Problem, samples: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Every score that applies to this problem, and notes on those skipped."""
    metrics: dict[str, float] = {}
    notes: list[str] = []
    kind = problem.kind
    n_dims = problem.domain.n_features if kind == "image" else None
    ll = scores.heldout_loglik(model.log_prob(problem.heldout), n_dims=n_dims)
    metrics["heldout_loglik"] = ll.mean_loglik
    metrics["out_of_support_rate"] = ll.out_of_support_rate
    if ll.bits_per_dim is not None:
        metrics["heldout_bits_per_dim"] = ll.bits_per_dim

    truth = problem.truth
    if truth is None:
        notes.append(f"{problem.name}: P_data unknown (user data): entropy_truth, kl_to_truth "
                     "and the land and validity scores are skipped")
    elif truth.table is not None:
        metrics["entropy_truth"] = scores.entropy_categorical(truth.table)
        metrics["kl_to_truth"] = scores.kl_categorical(truth.table,
                                                       model.log_prob(problem.domain.all_cells()))
    elif truth.images is not None:
        metrics["entropy_truth"] = scores.entropy_categorical(truth.image_probs)
        metrics["kl_to_truth"] = scores.kl_categorical(truth.image_probs, model.log_prob(truth.images))
        validity = scores.image_validity(samples, truth.images)
        metrics["valid_rate"] = validity["valid_rate"]
        metrics["n_valid_combinations"] = float(validity["n_valid_combinations"])
    elif truth.land is not None:
        metrics["entropy_truth"] = truth.land.entropy()
        metrics["kl_to_truth"] = scores.kl_land(truth.land, model.log_prob)
        metrics["on_land_rate"] = scores.on_land_rate(samples, truth.land)
        metrics["land_coverage"] = scores.land_coverage(samples, truth.land)["land_coverage"]
        if hasattr(model, "box_"):
            metrics.update(scores.box_land_shares(truth.land, model.box_))
    if kind == "points":
        for key, value in scores.prdc(problem.heldout, samples, k=5).items():
            metrics[f"prdc_{key}"] = value
    nov = scores.novelty(samples, problem.train)
    metrics["novelty_rate"] = nov["novelty_rate"]
    metrics["unique_rate"] = nov["unique_rate"]
    return metrics, notes


def run_family(name: str, params: dict, problem: Problem, *, n_samples: int,
               seed: int) -> FamilyResult:
    """Fit family ``name`` with ``params`` to the problem, sample, and score."""
    model = make_family(name, problem.domain, **params)
    t0 = time.perf_counter()
    model.fit(problem.train)
    t1 = time.perf_counter()
    samples = model.sample(n_samples, rng=np.random.default_rng(seed))
    t2 = time.perf_counter()
    metrics, notes = score(model, problem, samples)
    metrics.update(fit_seconds=t1 - t0, sample_seconds=t2 - t1, **parameter_counts(model))
    return FamilyResult(name, dict(params), model, samples, metrics, notes + list(problem.notes))
