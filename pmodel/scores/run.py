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
<metric>_se                    the standard error of an estimated metric: held-out means  as the metric
                               (sd / sqrt(n) over the rows; with a Monte-Carlo bound
                               drawn per row it holds the draws' noise too), shares of
                               samples or rows (sqrt(p (1 - p) / n)), a Monte-Carlo KL
                               bound over tables or renders (two independent draws);
                               absent beside an exact or infinite value
=============================  =========================================================  =================
"""

from __future__ import annotations

import math

from pmodel.scores import land as land_scores
from pmodel.scores import latent as latent_scores
from pmodel.scores.likelihood import heldout_loglik as _heldout
from pmodel.scores.likelihood import proportion_se as _proportion_se
from pmodel.scores.novelty import novelty as _novelty
from pmodel.scores.prdc import prdc as _prdc
from pmodel.scores.registry import ScoreContext, score
from pmodel.scores.truth import kl_categorical as _kl_categorical
from pmodel.scores.truth import kl_monte_carlo_se as _kl_mc_se


def _n_dims(ctx: ScoreContext) -> int | None:
    return ctx.problem.domain.n_features if ctx.problem.kind == "image" else None


#: Suffix of a metric's standard error: ``heldout_loglik_se`` beside ``heldout_loglik``.
SE_SUFFIX = "_se"

#: Shares of independent yes/no outcomes (samples, or held-out examples): each gets the
#: binomial standard error ``sqrt(p (1 - p) / n)`` as ``<name>_se``. Not ``unique_rate``
#: (duplicates are pairs, not outcomes of one draw), nor ``land_coverage``, ``prdc_*`` or
#: ``median_render_distance`` (no closed form; repeats over seeds give their spread).
PROPORTIONS = ("valid_rate", "valid_novel_rate", "near_render_rate", "near_render_rate_16",
               "on_land_rate", "novelty_rate")


def _with_se(out: dict[str, float], name: str, se: float | None) -> None:
    """``out[name + "_se"] = se`` unless there is none (an infinite mean, under two examples)."""
    if se is not None:
        out[name + SE_SUFFIX] = se


def _proportion_ses(rates: dict[str, float], n: int) -> dict[str, float]:
    return {k + SE_SUFFIX: _proportion_se(v, n) for k, v in rates.items() if k in PROPORTIONS}


def _loglik_metrics(s, names: dict[str, str], in_support: bool) -> dict[str, float]:
    """The held-out means of ``s`` and their standard errors under ``names``
    (``mean``, ``bpd``, and with ``in_support`` ``in_support`` and ``bpd_in_support``)."""
    out = {names["mean"]: s.mean_loglik}
    _with_se(out, names["mean"], s.se)
    if in_support:
        out[names["in_support"]] = s.mean_loglik_in_support
        _with_se(out, names["in_support"], s.se_in_support)
    if s.bits_per_dim is not None:
        out[names["bpd"]] = s.bits_per_dim
        _with_se(out, names["bpd"], s.bits_per_dim_se)
        if in_support:
            out[names["bpd_in_support"]] = s.bits_per_dim_in_support
            _with_se(out, names["bpd_in_support"], s.bits_per_dim_in_support_se)
    return out


def _oos(s) -> dict[str, float]:
    return {"out_of_support_rate": s.out_of_support_rate,
            "out_of_support_rate_se": _proportion_se(s.out_of_support_rate, s.n)}


@score("heldout_loglik", needs=("exact",),
       metrics=("heldout_loglik", "heldout_loglik_in_support", "out_of_support_rate",
                "heldout_bits_per_dim", "heldout_bits_per_dim_in_support",
                "heldout_loglik_se", "heldout_loglik_in_support_se", "out_of_support_rate_se",
                "heldout_bits_per_dim_se", "heldout_bits_per_dim_in_support_se"))
def heldout_loglik(ctx: ScoreContext) -> dict[str, float]:
    """The model's exact log-likelihood of the held-out examples, with standard errors
    over the held-out rows (sd / sqrt(n); none for an infinite mean)."""
    s = _heldout(ctx.heldout_log_prob(), n_dims=_n_dims(ctx))
    out = _loglik_metrics(s, {"mean": "heldout_loglik", "in_support": "heldout_loglik_in_support",
                              "bpd": "heldout_bits_per_dim",
                              "bpd_in_support": "heldout_bits_per_dim_in_support"}, True)
    return {**out, **_oos(s)}


@score("heldout_loglik_bound", needs=("bound",),
       metrics=("heldout_loglik_bound", "out_of_support_rate", "heldout_bits_per_dim_bound",
                "heldout_loglik_bound_se", "out_of_support_rate_se", "heldout_bits_per_dim_bound_se"))
def heldout_loglik_bound(ctx: ScoreContext) -> dict[str, float]:
    """A lower bound on the held-out log-likelihood (its own name: never mixed with exact values).
    Where the bound is a Monte-Carlo estimate drawn independently per row (ELBO, diffusion
    bound), its se over the rows holds the draws' noise as well as the data's."""
    s = _heldout(ctx.heldout_log_prob(), n_dims=_n_dims(ctx))
    out = _loglik_metrics(s, {"mean": "heldout_loglik_bound", "bpd": "heldout_bits_per_dim_bound"}, False)
    return {**out, **_oos(s)}


@score("entropy_truth", needs=("truth", "truth:summed"))
def entropy_truth(ctx: ScoreContext) -> dict[str, float]:
    """H(P_data), exact."""
    return {"entropy_truth": ctx.truth.entropy()}


@score("kl_to_truth", needs=("truth", "exact", "truth:summed"))
def kl_to_truth(ctx: ScoreContext) -> dict[str, float]:
    """KL(P_data || P_model), exact."""
    return {"kl_to_truth": ctx.truth.kl(ctx.model)}


#: The seed of the second, independent draws of a Monte-Carlo log_prob (its KL's standard
#: error); distinct from every family's own fixed LOG_PROB_SEED.
AGAIN_SEED = 1_000_003


@score("kl_to_truth_bound", needs=("truth", "bound", "truth:summed"), metrics=("kl_to_truth_bound", "kl_to_truth_bound_se"))
def kl_to_truth_bound(ctx: ScoreContext) -> dict[str, float]:
    """An upper bound on KL(P_data || P_model): the KL sum with a lower bound in place of log q
    (the importance-weighted bound of a VAE on tables, see :func:`_tightest_bound`). Where the family's bound is a Monte-Carlo estimate (``log_prob_monte_carlo``: a VAE's
    ELBO, the diffusion bound, a flow's dequantisation) and the KL is a sum over examples
    (tables, renders), the sum is drawn a second time from another seed for its standard
    error (:func:`~pmodel.scores.truth.kl_monte_carlo_se`); the value is the first draw's,
    the same as ``truth.kl(model)``. Not on the land map (a quadrature over 1.6 million
    cells)."""
    model, truth = ctx.model, ctx.truth
    terms = truth.kl_terms(model) if getattr(type(model), "log_prob_monte_carlo", False) else None
    if terms is None:
        return {"kl_to_truth_bound": truth.kl(model)}
    p, X = terms
    bound = _tightest_bound(model)
    log_q = bound(X)
    out = {"kl_to_truth_bound": _kl_categorical(p, log_q)}
    _with_se(out, "kl_to_truth_bound", _kl_mc_se(p, log_q, bound(X, seed=AGAIN_SEED)))
    return out


def _tightest_bound(model):
    """The lower bound on log q the KL sum uses: the importance-weighted one where the family
    says it is worth its cost (``kl_bound_iwae``: the VAE on tables), else ``log_prob``. On a
    table the sum is over few cells, most of the mass on a handful, and a single-draw ELBO per
    cell makes it too noisy to rank by: on asia (256 cells) its draws spread from -0.2 to 1.0
    nats around a KL of 0.08, negative values included; IWAE's stay within 0.01 of it. On
    images the sum runs over 3,552 renders, so the ELBO's noise averages out (its se says how
    much), while IWAE would cost ``iwae_samples`` decoder passes per render."""
    return model.log_prob_iwae if getattr(type(model), "kl_bound_iwae", False) else model.log_prob


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
                "near_render_rate_16", "median_render_distance", "on_land_rate", "land_coverage",
                *(k + SE_SUFFIX for k in PROPORTIONS if k != "novelty_rate")))
def truth_sample_scores(ctx: ScoreContext) -> dict[str, float]:
    """The sample scores only the dataset's truth can give (validity, valid and novel, land vs
    ocean); each share of samples with its binomial standard error."""
    out = ctx.truth.sample_scores(ctx.samples, train=ctx.problem.train)
    return {**out, **_proportion_ses(out, len(ctx.samples))}


@score("heldout_loglik_iwae", needs=("iwae",),
       metrics=("heldout_loglik_iwae", "heldout_bits_per_dim_iwae", "heldout_loglik_iwae_se",
                "heldout_bits_per_dim_iwae_se"))
def heldout_loglik_iwae(ctx: ScoreContext) -> dict[str, float]:
    """The importance-weighted bound (a VAE's IWAE_k): tighter than the ELBO, still a lower
    bound; its se over the rows holds the k draws' noise too (drawn independently per row)."""
    s = _heldout(ctx.model.log_prob_iwae(ctx.problem.heldout), n_dims=_n_dims(ctx))
    return _loglik_metrics(s, {"mean": "heldout_loglik_iwae", "bpd": "heldout_bits_per_dim_iwae"}, False)


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


@score("novelty", metrics=("novelty_rate", "unique_rate", "novelty_rate_se"))
def novelty(ctx: ScoreContext) -> dict[str, float]:
    """Share of samples that are no training copy (with its binomial se), and share of
    distinct samples."""
    out = _novelty(ctx.samples, ctx.problem.train)
    return {**out, **_proportion_ses(out, len(ctx.samples))}


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
