"""The scores a run records, registered with what each needs (see ``registry``).

=============================  =========================================================  =================
metric                         meaning                                                    needs
=============================  =========================================================  =================
heldout_loglik                 mean nats per held-out example, over all of them           exact
                               (-inf when any has p = 0); higher is better
heldout_loglik_in_support      the same mean over the examples with p > 0                 exact
out_of_support_rate            share of held-out examples with p = 0                      exact or bound
heldout_bits_per_dim(_in...)   images: -heldout_loglik / (n_pixels ln 2); lower better   exact
heldout_loglik_bound           a lower bound on heldout_loglik (ELBO, dequantised         bound
                               density on 8-bit pixels), never mixed with exact values
heldout_bits_per_dim_bound     images: the bound in bits/dim (an upper bound)             bound
entropy_truth                  H(P_data), exact                                           truth:summed
kl_to_truth                    KL(P_data || P_model), exact; lower is better              truth:summed, exact
kl_to_truth_bound              an upper bound on KL(P_data || P_model) from a bound       truth:summed, bound
entropy_truth_estimate (_se)   H(P_data) by Monte Carlo, with its standard error, where   truth:sampled
                               P_data has too many states to sum over (a network)
kl_to_truth_estimate (_se)     KL(P_data || P_model) by Monte Carlo over draws from       truth:sampled, exact
                               P_data, with its standard error
kl_to_truth_bound_estimate     the same with a lower bound on log q: an estimate of an    truth:sampled, bound
(_se)                          upper bound on the KL
skeleton_recall,               networks: share of the true skeleton's edges the model's   truth:network,
skeleton_precision             graph has; share of its edges that are true                structure
valid_rate                     images: share of samples strictly valid (within half the   truth:renders
                               distance from their nearest render to its nearest other)
n_valid_combinations           images: distinct valid renders the samples reach           truth:renders
near_render_rate (_16)         images: share of samples within 8 (16) grey levels RMS of  truth:renders
                               their nearest render (samples as given, not rounded)
median_render_distance         images: median RMS distance to the nearest render, levels  truth:renders
on_land_rate                   points: share of samples on land in the region             truth:land
land_coverage                  points: land coverage / the truth's expected coverage      truth:land
box_sea_share                  the box's share that is sea (the chapter's point A)        truth:land, box
land_outside_box_share         the region's land outside the box (point B)                truth:land, box
prdc_precision, _recall,       Naeem et al. 2020, k = 5, against held-out points          points
_density, _coverage
novelty_rate, unique_rate      samples that are no training copy; distinct samples        -
latent_r2_<factor>, latent_r2  held-out R^2 of a linear read-out of each known factor      encoder, factors
                               from the code (fitted on the training codes), and the mean
latent_mig (_<factor>)         mutual information gap (Chen et al. 2018; 20 bins per      encoder, factors
                               code dimension, normalised by the factor's entropy)
valid_novel_rate               images: share of samples valid AND showing a combination   truth:renders
                               no training image shows (samples rounded to levels first)
heldout_loglik_iwae            the importance-weighted bound (VAE, k = iwae_samples):     iwae
(heldout_bits_per_dim_iwae)    between the ELBO and log p; still a lower bound
train_epochs, train_steps,     how a trained family's loop ended; stopped_by_seconds = 1  trained
train_seconds,                 when its seconds cap (not its epochs or steps) stopped it
seconds_per_epoch,
stopped_by_seconds,
mass_outside_domain            points: the model's raw mass outside the rectangle
=============================  =========================================================  =================
"""

from __future__ import annotations

import math

from pmodel.scores import land as land_scores
from pmodel.scores import latent as latent_scores
from pmodel.scores.likelihood import heldout_loglik as _heldout
from pmodel.scores.novelty import novelty as _novelty
from pmodel.scores.prdc import prdc as _prdc
from pmodel.scores.registry import ScoreContext, score


def _n_dims(ctx: ScoreContext) -> int | None:
    return ctx.problem.domain.n_features if ctx.problem.kind == "image" else None


@score("heldout_loglik", needs=("exact",),
       metrics=("heldout_loglik", "heldout_loglik_in_support", "out_of_support_rate",
                "heldout_bits_per_dim", "heldout_bits_per_dim_in_support"))
def heldout_loglik(ctx: ScoreContext) -> dict[str, float]:
    """The model's exact log-likelihood of the held-out examples."""
    s = _heldout(ctx.heldout_log_prob(), n_dims=_n_dims(ctx))
    out = {"heldout_loglik": s.mean_loglik, "heldout_loglik_in_support": s.mean_loglik_in_support,
           "out_of_support_rate": s.out_of_support_rate}
    if s.bits_per_dim is not None:
        out.update(heldout_bits_per_dim=s.bits_per_dim,
                   heldout_bits_per_dim_in_support=s.bits_per_dim_in_support)
    return out


@score("heldout_loglik_bound", needs=("bound",),
       metrics=("heldout_loglik_bound", "out_of_support_rate", "heldout_bits_per_dim_bound"))
def heldout_loglik_bound(ctx: ScoreContext) -> dict[str, float]:
    """A lower bound on the held-out log-likelihood (its own name: never mixed with exact values)."""
    s = _heldout(ctx.heldout_log_prob(), n_dims=_n_dims(ctx))
    out = {"heldout_loglik_bound": s.mean_loglik, "out_of_support_rate": s.out_of_support_rate}
    if s.bits_per_dim is not None:
        out["heldout_bits_per_dim_bound"] = s.bits_per_dim
    return out


@score("entropy_truth", needs=("truth", "truth:summed"))
def entropy_truth(ctx: ScoreContext) -> dict[str, float]:
    """H(P_data), exact."""
    return {"entropy_truth": ctx.truth.entropy()}


@score("kl_to_truth", needs=("truth", "exact", "truth:summed"))
def kl_to_truth(ctx: ScoreContext) -> dict[str, float]:
    """KL(P_data || P_model), exact."""
    return {"kl_to_truth": ctx.truth.kl(ctx.model)}


@score("kl_to_truth_bound", needs=("truth", "bound", "truth:summed"))
def kl_to_truth_bound(ctx: ScoreContext) -> dict[str, float]:
    """An upper bound on KL(P_data || P_model): the KL sum with a lower bound in place of log q."""
    return {"kl_to_truth_bound": ctx.truth.kl(ctx.model)}


def _estimate(name: str, est) -> dict[str, float]:
    return {name: est.value, f"{name}_se": est.se}


@score("entropy_truth_estimate", needs=("truth:sampled",),
       metrics=("entropy_truth_estimate", "entropy_truth_estimate_se"))
def entropy_truth_estimate(ctx: ScoreContext) -> dict[str, float]:
    """H(P_data) by Monte Carlo (P_data too large to sum over), with its standard error."""
    return _estimate("entropy_truth_estimate", ctx.truth.entropy_estimate())


@score("kl_to_truth_estimate", needs=("truth:sampled", "exact"),
       metrics=("kl_to_truth_estimate", "kl_to_truth_estimate_se"))
def kl_to_truth_estimate(ctx: ScoreContext) -> dict[str, float]:
    """KL(P_data || P_model) by Monte Carlo over draws from P_data, with its standard error."""
    return _estimate("kl_to_truth_estimate", ctx.truth.kl_estimate(ctx.model))


@score("kl_to_truth_bound_estimate", needs=("truth:sampled", "bound"),
       metrics=("kl_to_truth_bound_estimate", "kl_to_truth_bound_estimate_se"))
def kl_to_truth_bound_estimate(ctx: ScoreContext) -> dict[str, float]:
    """An upper bound on the KL, estimated by Monte Carlo (a lower bound in place of log q)."""
    return _estimate("kl_to_truth_bound_estimate", ctx.truth.kl_estimate(ctx.model))


@score("skeleton", needs=("truth:network", "structure"),
       metrics=("skeleton_recall", "skeleton_precision"))
def skeleton(ctx: ScoreContext) -> dict[str, float]:
    """The model's graph against the network's, directions ignored: recall and precision."""
    from pmodel.scores.structure import skeleton_scores

    return skeleton_scores(ctx.truth.skeleton, ctx.model.edges_)


@score("truth_sample_scores", needs=("truth",),
       metrics=("valid_rate", "n_valid_combinations", "valid_novel_rate", "near_render_rate",
                "near_render_rate_16", "median_render_distance", "on_land_rate", "land_coverage"))
def truth_sample_scores(ctx: ScoreContext) -> dict[str, float]:
    """The sample scores only the dataset's truth can give (validity, valid and novel, land vs ocean)."""
    return ctx.truth.sample_scores(ctx.samples, train=ctx.problem.train)


@score("heldout_loglik_iwae", needs=("iwae",), metrics=("heldout_loglik_iwae", "heldout_bits_per_dim_iwae"))
def heldout_loglik_iwae(ctx: ScoreContext) -> dict[str, float]:
    """The importance-weighted bound (a VAE's IWAE_k): tighter than the ELBO, still a lower bound."""
    s = _heldout(ctx.model.log_prob_iwae(ctx.problem.heldout), n_dims=_n_dims(ctx))
    out = {"heldout_loglik_iwae": s.mean_loglik}
    if s.bits_per_dim is not None:
        out["heldout_bits_per_dim_iwae"] = s.bits_per_dim
    return out


@score("training", needs=("trained",),
       metrics=("train_epochs", "train_steps", "train_seconds", "seconds_per_epoch", "stopped_by_seconds",
                "mass_outside_domain"))
def training(ctx: ScoreContext) -> dict[str, float]:
    """How a trained family's loop ended: epochs, seconds, whether the seconds budget
    stopped it (then the fit is not reproducible to the bit), and for points the
    share of the model's raw mass outside the rectangle (renormalised away)."""
    m = ctx.model
    out = {"train_epochs": float(m.epochs_), "train_steps": float(getattr(m, "steps_", math.nan)),
           "train_seconds": float(m.train_seconds_),
           "seconds_per_epoch": float(m.train_seconds_) / max(int(m.epochs_), 1),
           "stopped_by_seconds": float(m.stopped_by_ == "seconds")}
    if getattr(m, "mass_outside_", None) is not None:
        out["mass_outside_domain"] = float(m.mass_outside_)
    return out


@score("box_land_shares", needs=("truth:land", "box"),
       metrics=("box_sea_share", "land_outside_box_share"))
def box_land_shares(ctx: ScoreContext) -> dict[str, float]:
    """The chapter's points A and B for the fitted box."""
    return land_scores.box_land_shares(ctx.truth.land, ctx.model.box_)


@score("prdc", needs=("points",),
       metrics=("prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"))
def prdc(ctx: ScoreContext) -> dict[str, float]:
    """Precision, recall, density, coverage (k = 5) of the samples against held-out points."""
    return {f"prdc_{k}": v for k, v in _prdc(ctx.problem.heldout, ctx.samples, k=5).items()}


@score("novelty", metrics=("novelty_rate", "unique_rate"))
def novelty(ctx: ScoreContext) -> dict[str, float]:
    """Share of samples that are no training copy, and share of distinct samples."""
    return _novelty(ctx.samples, ctx.problem.train)



@score("latent_r2", needs=("encoder", "factors"), metrics=("latent_r2", "latent_r2_<factor>"))
def latent_r2(ctx: ScoreContext) -> dict[str, float]:
    """Held-out R^2 of a linear read-out of each known factor from the code (fitted on the
    training split's codes), and their mean."""
    p = ctx.problem
    return latent_scores.readout_scores(ctx.codes("train"), ctx.codes("heldout"), p.factors["train"],
                                        p.factors["heldout"], p.factor_names, p.factor_categorical)


@score("latent_mig", needs=("encoder", "factors"), metrics=("latent_mig", "latent_mig_<factor>"))
def latent_mig(ctx: ScoreContext) -> dict[str, float]:
    """Mutual information gap of the held-out codes (20 bins a dimension), per factor and mean."""
    p = ctx.problem
    mig, per_factor = latent_scores.mutual_information_gap(ctx.codes("heldout"), p.factors["heldout"])
    return {"latent_mig": mig, **{f"latent_mig_{n}": float(m) for n, m in zip(p.factor_names, per_factor)}}
