"""What every recorded number means: the glossary the MLflow descriptions show.

One entry per score name that ``pmodel`` records (the names of
``pmodel.evaluate``'s table, the parent run's timings and counts, and the
``<name>_is_infinite`` flags of the tracking layer), with its meaning, its
unit and which direction is better. Also what each family assumes, and the
short names run names use. Pure data and string formatting: no MLflow here.

Examples
--------
>>> SCORES["kl_to_truth"].better
'lower'
>>> short_run_name("naive_bayes", {"alpha": 1.0}, "pixels", shared=("alpha",))
'NB a=1 | pixels'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """A recorded number: ``meaning``, ``unit`` and ``better`` ("higher", "lower",
    "closer to 1", or "" when it is a fact, not a score to optimise)."""

    meaning: str
    unit: str
    better: str = ""


_NATS = "nats per example (points: log density per square degree)"

#: Every score and count pmodel records, by metric name.
SCORES: dict[str, Score] = {
    "heldout_loglik": Score(
        "mean log-probability of ALL held-out examples under the model (exact likelihood only); "
        "minus infinity as soon as one held-out example gets probability 0", _NATS, "higher"),
    "heldout_loglik_in_support": Score(
        "mean log-probability of the held-out examples the model gives p > 0; read it with "
        "out_of_support_rate: it ignores the examples the model cannot produce", _NATS,
        "higher, at equal out_of_support_rate"),
    "heldout_loglik_bound": Score(
        "a lower bound on the mean held-out log-likelihood (ELBO, diffusion bound, dequantised "
        "density), for families whose exact likelihood is intractable", _NATS, "higher"),
    "heldout_bits_per_dim": Score(
        "images: -heldout_loglik / (pixels x ln 2), the code length per pixel; infinite when "
        "heldout_loglik is minus infinity", "bits per pixel", "lower"),
    "heldout_bits_per_dim_in_support": Score(
        "images: bits per pixel over the held-out images with p > 0 only", "bits per pixel",
        "lower, at equal out_of_support_rate"),
    "heldout_bits_per_dim_bound": Score(
        "images: an upper bound on bits per pixel, from heldout_loglik_bound", "bits per pixel",
        "lower"),
    "out_of_support_rate": Score(
        "share of held-out examples the model gives probability 0 (never hidden)", "fraction 0..1",
        "lower"),
    "entropy_truth": Score(
        "H(P_data), the exact entropy of the rule that made the data: the best possible "
        "heldout_loglik is about minus this (built-in data only)", "nats per example"),
    "kl_to_truth": Score(
        "KL(P_data || P_model), computed exactly over every possible example (not from a sample): "
        "0 is a perfect model, infinity when the model gives p = 0 to something P_data can "
        "produce; the ranking score", "nats per example", "lower"),
    "entropy_truth_estimate": Score(
        "H(P_data) estimated by Monte Carlo, -mean log p(z) over 100,000 draws z from P_data, where "
        "P_data has too many states to sum over (a Bayesian network past 10^7 joint states); "
        "entropy_truth is the exact value where it can be summed", "nats per example"),
    "entropy_truth_estimate_se": Score(
        "the standard error of entropy_truth_estimate (sd / sqrt(draws))", "nats per example"),
    "kl_to_truth_estimate": Score(
        "KL(P_data || P_model) estimated by Monte Carlo, mean of log p(z) - log q(z) over 100,000 "
        "draws z from P_data (the same draws for every model of a dataset), where P_data has too "
        "many states to sum over; read with kl_to_truth_estimate_se. Infinite when the model gives "
        "p = 0 to a draw (which proves the KL infinite)", "nats per example", "lower"),
    "kl_to_truth_estimate_se": Score(
        "the standard error of kl_to_truth_estimate (sd of the terms / sqrt(draws)); two models' "
        "estimates closer than about twice it are not told apart", "nats per example"),
    "kl_to_truth_bound_estimate": Score(
        "an UPPER bound on KL(P_data || P_model), estimated by Monte Carlo over draws from P_data, "
        "for families that give only a lower bound on log p (the true KL is at most its mean)",
        "nats per example", "lower"),
    "kl_to_truth_bound_estimate_se": Score(
        "the standard error of kl_to_truth_bound_estimate", "nats per example"),
    "skeleton_recall": Score(
        "networks: share of the true network's edges (directions ignored) that the model's learnt "
        "graph has (Chow-Liu's tree, bayes_net's arcs)", "fraction 0..1", "higher"),
    "skeleton_precision": Score(
        "networks: share of the model's learnt edges (directions ignored) that are edges of the "
        "true network", "fraction 0..1", "higher"),
    "latent_r2": Score(
        "mean over the dataset's known factors of latent_r2_<factor>: how much of each factor a "
        "linear read-out of the model's latent code recovers", "R^2, up to 1", "higher"),
    "latent_r2_<factor>": Score(
        "R^2 of a linear regression from the latent code to one known factor (jars: height, "
        "width; pixels: the five features, one-hot), fitted on the training codes and judged on "
        "the held-out ones", "R^2, up to 1", "higher"),
    "latent_mig": Score(
        "mutual information gap (Chen et al. 2018), mean over factors: the gap between the two "
        "code dimensions most informative about a factor, divided by the factor's entropy "
        "(20 equal-width bins per dimension, as disentanglement_lib); 1 is one dimension per factor",
        "fraction 0..1", "higher"),
    "latent_mig_<factor>": Score(
        "the mutual information gap of one known factor", "fraction 0..1", "higher"),
    "kl_to_truth_bound": Score(
        "an UPPER bound on KL(P_data || P_model) for families that give only a lower bound on "
        "log p: the same exact sum with the bound in place of log p (the importance-weighted one for a "
        "VAE on tables; the true KL is at most this in expectation)",
        "nats per example", "lower"),
    "on_land_rate": Score("points: share of samples on land (the chapter's 'never at sea')",
                          "fraction 0..1", "higher"),
    "land_coverage": Score(
        "points: share of land cells the samples reach, divided by what as many samples from "
        "P_data itself reach; 1 is as good as the truth", "ratio", "closer to 1"),
    "prdc_precision": Score("points: share of samples inside the held-out data's k-NN balls "
                            "(Naeem et al. 2020, k = 5)", "fraction 0..1", "higher"),
    "prdc_recall": Score("points: share of held-out points inside the samples' k-NN balls",
                         "fraction 0..1", "higher"),
    "prdc_density": Score("points: mean count of held-out k-NN balls holding a sample, / k",
                          "ratio", "closer to 1"),
    "prdc_coverage": Score("points: share of held-out points whose k-NN ball holds a sample",
                           "fraction 0..1", "higher"),
    "novelty_rate": Score("share of samples that are not copies of a training example "
                          "(a model that only repeats its training set is no generator)",
                          "fraction 0..1", "higher"),
    "unique_rate": Score("share of distinct samples", "fraction 0..1", "higher"),
    "valid_rate": Score(
        "images: share of samples strictly valid, i.e. within half the distance from their "
        "nearest render to its nearest other render (about 1 grey level RMS for most avatars): "
        "the sample shows one combination; see near_render_rate for what the eye accepts",
        "fraction 0..1", "higher"),
    "n_valid_combinations": Score("images: how many distinct real avatars the samples reach",
                                  "count", "higher"),
    "near_render_rate": Score(
        "images: share of samples within 8 grey levels RMS (0..255 scale) of their nearest "
        "valid render, where the eye takes a sample for that render (a render plus sigma-8 "
        "noise is plainly the same avatar); samples as given, not rounded",
        "fraction 0..1", "higher"),
    "near_render_rate_16": Score(
        "images: share of samples within 16 grey levels RMS of their nearest valid render "
        "(where small models first register)", "fraction 0..1", "higher"),
    "median_render_distance": Score(
        "images: median RMS distance from a sample to its nearest valid render; 0 is a copy "
        "of a render, sigma-8 noise on one is about 8", "grey levels RMS (0..255)", "lower"),
    "box_sea_share": Score("the orange box on land: share of the box that is sea (point A)",
                           "fraction 0..1"),
    "land_outside_box_share": Score("the orange box on land: share of land outside the box "
                                    "(point B)", "fraction 0..1"),
    "fit_seconds": Score("wall time of the fit", "seconds", "lower"),
    "sample_seconds": Score("wall time of drawing the samples", "seconds", "lower"),
    "n_parameters": Score("free parameters of the fitted model (absent, with n_parameters_is_"
                          "infinite = 1, when beyond a float: see log10_n_parameters)", "count"),
    "log10_n_parameters": Score("log10 of the number of free parameters", "log10(count)"),
    "valid_novel_rate": Score(
        "images: share of samples that are valid renders AND show a combination no training "
        "image shows (the chapter's second challenge: finding the valid part of pixel space "
        "beyond copying); samples rounded to whole grey levels first", "fraction 0..1", "higher"),
    "heldout_loglik_iwae": Score(
        "a VAE's importance-weighted bound on the mean held-out log-likelihood (k = iwae_samples "
        "draws of z): tighter than the ELBO (heldout_loglik_bound), still a lower bound", _NATS,
        "higher"),
    "heldout_bits_per_dim_iwae": Score("images: bits per pixel from heldout_loglik_iwae (an upper "
                                       "bound)", "bits per pixel", "lower"),
    "train_epochs": Score("deep families: epochs the training loop ran", "count"),
    "train_steps": Score("deep families: optimizer steps (minibatches) the training loop ran", "count"),
    "train_seconds": Score("deep families: wall time of the training loop itself (fit_seconds also "
                           "counts the wait for a torch slot)", "seconds", "lower"),
    "seconds_per_epoch": Score("deep families: train_seconds / train_epochs", "seconds", "lower"),
    "stopped_by_seconds": Score("deep families: 1 when the seconds cap ended training (then the "
                                "weights depend on the machine's speed and load; the leaderboard flags "
                                "the row), 0 when its epochs or steps budget or early stopping did",
                                "0 or 1"),
    "mass_outside_domain": Score("deep families on points: the share of the model's density outside "
                                 "the region's rectangle, renormalised away (log_prob is per deg^2 "
                                 "inside the rectangle)", "fraction 0..1"),
    "loss": Score("deep families, per epoch (step): the training loss, mean over the epoch's "
                  "batches (nats per example, or bits per pixel on images)", "per example", "lower"),
    "val_loss": Score("deep families, per epoch (step): the loss on the validation split carved "
                      "from the training data (early stopping keeps the best epoch)", "per example",
                      "lower"),
    "loss_d": Score("GAN, per epoch (step): the discriminator's loss", "nats per example"),
    "loss_g": Score("GAN, per epoch (step): the generator's (non-saturating) loss", "nats per example"),
    "<metric>_se": Score(
        "the standard error of an estimated <metric> (held-out log-likelihoods and bounds: the "
        "sample sd of the per-example values / sqrt(n), which for a Monte-Carlo bound holds the "
        "draws' noise too; shares of samples or examples: sqrt(p (1 - p) / n); a Monte-Carlo "
        "KL bound: the noise of its draws, from a second, independent set of draws); absent when "
        "<metric> is exact or infinite. Two values closer than 2 sqrt(se1^2 + se2^2) are not "
        "told apart", "the unit of <metric>", "lower"),
    "<metric>_sd": Score(
        "a run over several seeds (seeds: [..]): the sample standard deviation (ddof 1) of "
        "<metric> across the seeds, each seed redrawing the data, the fit and the samples; beside "
        "it <metric> is the mean over the seeds", "the unit of <metric>"),
    "n_seeds": Score("a run over several seeds: how many seeds this mean and sd are over", "count"),
    "n_runs": Score("child runs of this run", "count"),
    "n_failed": Score("child runs that failed", "count", "lower"),
    "n_skipped": Score("(dataset, family) pairs not fitted because the family cannot hold the "
                       "data (its joint table would not fit in memory); no child run, the reasons "
                       "in skipped-fits.txt", "count"),
}

#: The wall time of each phase of a flow run, logged on the parent run.
TIME_PREFIX, TIME_SUFFIX = "time_", "_seconds"

#: Suffix of the 0/1 flag logged beside a score that can be infinite.
INFINITE_SUFFIX = "_is_infinite"

#: Suffixes of a metric's standard error, and of its spread across seeds.
SE_SUFFIX, SD_SUFFIX = "_se", "_sd"


def describe(name: str) -> Score | None:
    """The glossary entry of a metric name, including the derived names
    (``<score>_is_infinite``, ``time_<phase>_seconds``, a score's standard error
    ``<score>_se`` and its spread across seeds ``<score>_sd``); None when unknown."""
    if name in SCORES:
        return SCORES[name]
    for suffix in (SE_SUFFIX, SD_SUFFIX):  # heldout_loglik_se, kl_to_truth_sd, ...
        base = name[: -len(suffix)]
        if name.endswith(suffix) and "<" not in name and base and describe(base) is not None:
            generic = SCORES["<metric>" + suffix]
            unit = describe(base).unit
            return Score(f"{generic.meaning.replace('<metric>', base)}", unit,
                         "lower" if suffix == SE_SUFFIX else "")
    for pattern in ("latent_r2_", "latent_mig_"):  # per-factor scores: latent_r2_height, ...
        if name.startswith(pattern) and name != pattern + "<factor>":
            return SCORES[pattern + "<factor>"]
    if name.endswith(INFINITE_SUFFIX) and name[: -len(INFINITE_SUFFIX)] in SCORES:
        base = name[: -len(INFINITE_SUFFIX)]
        return Score(f"1 when {base} is infinite (then {base} itself is not logged as a number: "
                     f"MLflow sorts the run last; the tag metric.{base} holds the exact value), "
                     "0 when finite", "0 or 1")
    if name.startswith(TIME_PREFIX) and name.endswith(TIME_SUFFIX):
        phase = name[len(TIME_PREFIX): -len(TIME_SUFFIX)].replace("_", " ")
        return Score(f"wall time of the flow's phase '{phase}'", "seconds", "lower")
    return None


def glossary_markdown(names=None) -> str:
    """A Markdown table of ``names`` (default: every score), in glossary order."""
    names = list(SCORES) if names is None else list(names)
    lines = ["| score | what it means | unit | better |", "|---|---|---|---|"]
    for name in names:
        entry = describe(name)
        if entry is None:
            continue
        lines.append(f"| `{name}` | {md_cell(entry.meaning)} | {md_cell(entry.unit)} | "
                     f"{md_cell(entry.better) or '(a fact, not a score)'} |")
    return "\n".join(lines)


def md_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: a ``|`` (run names hold one:
    ``NB a=1 | pixels``; ``KL(P_data || P_model)``) would end the cell and shift the row's
    cells one column right, and ``<factor>`` would be read as an HTML tag and vanish
    (``<= x`` stays as it is)."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text).replace("|", "\\|"))




# ---------------------------------------------------------------------------
# Families: what they assume, what their pictures show
# ---------------------------------------------------------------------------

#: What each family assumes, in one sentence.
FAMILY_ASSUMES: dict[str, str] = {
    "box": "every example inside the training data's bounding box is equally likely, and "
           "nothing outside it is possible (the chapter's orange box)",
    "multinomial": "every possible example is its own cell with its own probability, learnt by "
                   "counting: with alpha = 0 (maximum likelihood) only the training examples "
                   "are possible, so samples are copies of them; alpha > 0 adds alpha to every "
                   "cell's count (additive smoothing)",
    "naive_bayes": "the features (columns, pixels, or longitude and latitude) are independent: "
                   "p(x) is the product of one learnt histogram per feature, each smoothed by "
                   "adding alpha to every count",
    "autoregressive": "each feature depends on the ones before it, p(x) = prod_i p(x_i | x_<i): "
                      "a masked autoregressive flow on points, a chain of small MLPs on rows, a "
                      "gated PixelCNN on images (exact likelihood)",
    "flow": "the data are an invertible, smooth warp of Gaussian noise (change of variables): a "
            "neural spline flow on points, RealNVP on dequantised pixels (a lower bound there)",
    "vae": "the data are decoded from a low-dimensional Gaussian code, the features independent "
           "given the code; the likelihood is bounded from below (ELBO, and the tighter IWAE)",
    "gan": "the data are a learnt function of Gaussian noise, trained against a discriminator: "
           "samples but no likelihood",
    "diffusion": "the data are what step-by-step denoising of Gaussian noise produces (DDPM); the "
                 "likelihood is bounded from below by the variational bound",
}

#: What the main picture (``samples.png``) shows, per data kind (the run's other pictures
#: are named from what was logged).
PICTURE_SHOWS: dict[str, str] = {
    "categorical": "`samples.png`: ten sampled rows; the last column says whether the row is a "
                   "copy of a training row",
    "image": "`samples.png`: 50 sampled images, on built-in data each above its nearest valid "
             "render with their RMS distance d in grey levels (8 or less: the eye takes it for "
             "that render)",
    "points": "`samples.png`: the samples on the map, green on land and red at sea, over the "
              "training points (small grey dots under them)",
}

_SHORT_FAMILY = {"naive_bayes": "NB"}
_SHORT_PARAM = {"alpha": "a", "cell_deg": "cell", "bin_deg": "bin"}


def _short_value(value) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def short_run_name(family: str, params: dict, dataset: str, *, shared=None,
                   label: str | None = None) -> str:
    """A child run's name, the part that differs first: ``"NB a=1 | pixels"``.

    ``shared`` names the hyperparameters the experiment entry sets on every
    kind (shown); the others (a grid's cell size on points only) are left to
    the run's params. A user's own ``label`` replaces the family part.
    """
    if label:
        head = label
    else:
        keys = [k for k in params if shared is None or k in shared]
        head = " ".join([_SHORT_FAMILY.get(family, family)]
                        + [f"{_SHORT_PARAM.get(k, k)}={_short_value(params[k])}" for k in keys])
    return f"{head} | {dataset}"
