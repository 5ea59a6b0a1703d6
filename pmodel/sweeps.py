"""Sweeps (``pmodel sweep``): what a family searches, and what a sweep optimises.

A family declares its search ranges beside its hyperparameters
(``Family.search_space``: name -> :class:`~pmodel.families.base.Search`, plain
data); a sweep varies those and keeps the experiment entry's other values (the
budget among them), so trials compare at equal work. A family without ranges
cannot be swept, and :func:`search_space` says so, naming the ones that can.

The objective is one score, chosen once per (family, dataset) by what the
scores registry says applies (:func:`choose_objective`), in this order:

1. ``kl_to_truth``: the exact KL(P_data || P_model), minimised, where P_data is
   known and summed over and the family's likelihood is exact;
2. ``heldout_loglik``: the exact held-out log-likelihood, maximised (users' data,
   or a truth too large to sum over);
3. ``kl_to_truth_bound``: the family's bound, an upper bound on the KL, minimised;
4. ``heldout_loglik_bound``: the family's bound on the held-out log-likelihood,
   maximised.

A family with no likelihood (a GAN) has no objective: the sweep refuses it. The
name is recorded with the sweep, so an exact value and a bound are never
compared under one name.

Pruning reads a fit's validation loss (a negative log-likelihood, or a bound's
negation, per example): :func:`intermediate_value` gives it in the study's
direction (negated when the objective is maximised), so the pruner compares
like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmodel.families import families_for, family_class
from pmodel.families.base import Search


class NoSearchSpace(ValueError):
    """A sweep was asked for a family that declares no search ranges."""


def search_space(family: str, kind: str) -> dict[str, Search]:
    """The ranges family ``family`` declares on ``kind`` data; :class:`NoSearchSpace`, naming
    the families that have ranges, when it declares none."""
    ranges = dict(family_class(family, kind).search_space)
    if not ranges:
        can = [f for f in families_for(kind) if family_class(f, kind).search_space]
        raise NoSearchSpace(
            f"family {family!r} declares no search ranges on {kind} data (its class's "
            f"search_space is empty), so it cannot be swept; families with ranges on {kind} "
            f"data: {', '.join(can) or 'none'}. Declare them beside its hyperparameters "
            "(pmodel.families.base.Search)")
    return ranges


def trial_params(base: dict, suggested: dict) -> dict:
    """A trial's hyperparameters: the experiment entry's, with the searched ones replaced."""
    return {**base, **suggested}


# ---------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------

#: (metric, direction, what it is), in the order of preference
OBJECTIVES = (
    ("kl_to_truth", "minimize", "the exact KL(P_data || P_model)"),
    ("heldout_loglik", "maximize", "the exact held-out log-likelihood, nats per example"),
    ("kl_to_truth_bound", "minimize", "the family's bound: an upper bound on KL(P_data || P_model)"),
    ("heldout_loglik_bound", "maximize",
     "the family's bound: a lower bound on the held-out log-likelihood, nats per example"),
)


@dataclass(frozen=True)
class Objective:
    """What a sweep optimises: a registered score's metric, its direction and what it is."""

    metric: str
    direction: str   # "minimize" | "maximize"
    what: str

    @property
    def kind(self) -> str:
        """``exact`` or ``bound``: whether the objective is an exact value or a bound."""
        return "bound" if self.metric.endswith("_bound") else "exact"


def _context(model, problem):
    from pmodel.scores.registry import ScoreContext

    return ScoreContext(model, problem, np.zeros((0, *problem.domain.event_shape)))


def choose_objective(model, problem) -> Objective:
    """The first of :data:`OBJECTIVES` whose score applies to ``model`` (fitted or not: only its
    class's ``log_prob_kind`` is read) on ``problem`` (its truth); ValueError with each
    score's reason when none does (a family without a likelihood)."""
    from pmodel.scores.registry import SCORES, missing

    ctx = _context(model, problem)
    reasons = {}
    for metric, direction, what in OBJECTIVES:
        reason = missing(SCORES[metric], ctx)
        if reason is None:
            return Objective(metric, direction, what)
        reasons[metric] = reason
    raise ValueError(f"{model.name} on {problem.name} has no objective a sweep can optimise: "
                     + "; ".join(f"{m}: {why}" for m, why in reasons.items()))


def objective_value(objective: Objective, metrics: dict[str, float]) -> float:
    """The objective's value among a trial's scores (KeyError naming it when it is missing)."""
    if objective.metric not in metrics:
        raise KeyError(f"the trial's scores have no {objective.metric!r} (the sweep's objective)")
    return float(metrics[objective.metric])


def intermediate_value(objective: Objective, history: dict[str, list[float]]) -> float | None:
    """What a pruner compares after an epoch: the validation loss (else the training loss) in
    the objective's direction, negated when it is maximised; None before any epoch."""
    curve = history.get("val_loss") or history.get("loss")
    if not curve:
        return None
    return -float(curve[-1]) if objective.direction == "maximize" else float(curve[-1])
