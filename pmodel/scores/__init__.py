"""Scores: one definition of each number a run reports, grouped by topic.

=============  ============================================================================
module         what
=============  ============================================================================
likelihood     held-out log-likelihood over all examples (-inf when any has p = 0), the
               mean over the model's support beside the out-of-support rate, bits/dim
truth          entropy and exact KL(P_data || P_model): tables, and the land map by quadrature
land           on-land rate, normalised land coverage, the chapter's points A and B
prdc           precision, recall, density, coverage (Naeem et al. 2020)
novelty        share of samples that are not training copies; share of distinct samples
images         validity: distance to the nearest valid render, renders reached
registry       what each score needs; run_scores runs those that apply, says why others don't
run            the registered scores themselves (the metric names a run logs)
=============  ============================================================================

Conventions: logs are natural (nats); densities on the map are per deg^2;
functions return a frozen dataclass or a plain dict of floats.
"""

from pmodel.scores import run as _run  # noqa: F401  (registers the scores)
from pmodel.scores.images import image_validity
from pmodel.scores.land import box_land_shares, land_coverage, on_land_rate
from pmodel.scores.likelihood import LogLikScore, heldout_loglik
from pmodel.scores.novelty import novelty
from pmodel.scores.prdc import prdc
from pmodel.scores.registry import SCORES, run_scores
from pmodel.scores.truth import entropy_categorical, kl_categorical, kl_land

__all__ = [
    "LogLikScore", "heldout_loglik",
    "entropy_categorical", "kl_categorical", "kl_land",
    "box_land_shares", "on_land_rate", "land_coverage", "prdc",
    "novelty", "image_validity", "SCORES", "run_scores",
]
