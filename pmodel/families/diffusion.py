"""diffusion: a denoising diffusion probabilistic model (DDPM, Ho et al. 2020).

Forward process: ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``, t = 1..T,
``abar_t = prod_{s <= t} (1 - beta_s)``. The model denoises one step at a time,
``p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I)`` with
``mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(alpha_t)``
and ``sigma_t^2 = betatilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` (t >= 2).

The variational bound (``log_prob``, ``log_prob_kind = "lower_bound"``):

    -log p(x_0) <= L_T + sum_{t=2}^T L_{t-1} + L_0
    L_T     = KL( q(x_T | x_0) || N(0, I) )                                 (closed form)
    L_{t-1} = KL( q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t) )
            = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) * || eps - eps_theta(x_t, t) ||^2
    L_0     = -log p(x_0 | x_1)

The sum over t is estimated with K = ``bound_timesteps`` draws of t per example,
one in each of K strata of whole steps of 2..T, each with one draw of eps, from a
fixed seed (:func:`bound_strata`). The strata are near-geometric (the first ones
one step wide, each next about the same ratio longer), because the terms fall
off like 1/t: on a CPU-trained jars model the step t = 2 alone gave 667 nats, t = 11
gave 19 and t = 100 gave 0.9. A stratum [a, b) contributes (b - a) L_{t-1} at a
uniform t in it, so the estimate is unbiased for the sum whatever the strata;
with K >= T - 1 every step is drawn once (the full sum, only eps drawn). Measured
on that model (576 jars renders, the KL bound over them): re-seeding the bound
moved the KL by an sd of 173 nats with 4 equal strata (161 in the review that
found it), 114 with 8 equal strata, 26 with 4 and 4.2 with 8 near-geometric
strata, 1.9 with 16 and 1.7 with the full sum (eps's noise alone).

Only the mean of such an estimate is a bound. Each example draws its own t's and
eps's, so the per-example estimates are independent: their sd over the held-out
examples / sqrt(n) (``heldout_loglik_bound_se``) holds the draws' noise as well as
the data's. ``log_prob(X, seed=...)`` draws again from another seed (a second,
independent estimate, from which the noise of a sum over fixed examples such as
the KL to the truth is estimated). Training minimises the simple loss
``||eps - eps_theta||^2`` at a uniform t (Ho et al.).

Three parts, apart as in diffusers (``DDPMScheduler``, ``DDIMScheduler``, the UNet):

- :class:`NoiseSchedule`: betas (``schedule``: "linear", Ho et al.'s 1e-4 .. 0.02
  stretched to T steps, or "cosine", Nichol & Dhariwal 2021), alphas, abar,
  the posterior variance, ``add_noise`` (a draw of q(x_t | x_0));
- the samplers, each a ``step`` from the network's eps prediction:
  :class:`AncestralSampler` (DDPM, every one of the T steps, ``sampling_steps = 0``)
  and :class:`DDIMSampler` (Song et al. 2021, eta = 0: deterministic given x_T,
  over ``sampling_steps = k`` evenly spaced steps);
- the network ``eps_theta(x_t, t)`` (an MLP for points, a U-Net for images), which
  knows nothing of the schedule: only the step's number t.

:class:`Diffusion` joins them: the simple loss, the bound, the sampling chain.

- points: an MLP denoiser on standardised lon/lat; ``p(x_0 | x_1)`` Gaussian
  with variance beta_1; renormalised to the rectangle (Z from samples).
- image: a U-Net (GroupNorm, SiLU, two downsamplings) on pixels scaled to
  [-1, 1]; ``p(x_0 | x_1)`` is the Gaussian N(mu_theta(x_1, 1), beta_1) discretised
  to the levels' bins (outer bins to +-infinity), so the bound is on the discrete
  log-likelihood. Ancestral sampling ends with an exact draw from it; DDIM ends
  with its most likely level (its mean rounded: DDIM's last step, x0_hat at t = 1,
  is the decoder's mean).
``denoising_steps`` returns the chain x_T .. x_0 at a few steps (the strip picture).

Failure modes: sampling takes T net evaluations (ancestral) or k (DDIM); with a
short training the bound is loose: L_0 charges every pixel whose level the
decoder's N(mu, beta_1) cannot pin down (beta_1 = 1e-3, a standard deviation of
4 grey levels, for the linear schedule at T = 100; 4e-5 for the cosine one at
T = 1000), and the L_{t-1} terms at small t weigh the net's errors where the
noise is smaller than a level's bin. The cosine schedule's last betas (0.999)
make x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) explode at t near T,
so DDIM with it needs ``clip_sample``. Measured on the 2,000 avatar renders
(U-Net of 32 channels, batch 32, step for step on a GPU): the bound was 3.8
bits/dim after 150 steps, 2.5 after 2,000 and 2.3 after 5,000 (naive Bayes:
1.47), a quarter of the ancestral samples within 8 grey levels RMS of a
render after 2,000 steps; the cosine schedule at T = 1000 was worse at that
length (3.2 bits/dim after 2,000 steps).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch
from pmodel.families.deep._base import DeepFamily, PointsDeep, padded

LOG_PROB_SEED = 20240609
SCHEDULES = ("linear", "cosine")
DIFFUSION_HYPERPARAMETERS = {
    "steps": Hyper(int, 100, ge=2, le=10_000, doc="diffusion steps T"),
    "schedule": Hyper(str, "linear", choices=SCHEDULES,
                      doc="the betas: linear (Ho et al.'s 1e-4 .. 0.02 at T = 1000, stretched to T steps) "
                          "or cosine (Nichol & Dhariwal: abar_t = f(t) / f(0), "
                          "f(t) = cos^2((t / T + 0.008) / 1.008 pi / 2))"),
    "sampling_steps": Hyper(int, 0, ge=0, le=10_000,
                            doc="0: ancestral sampling over all T steps (DDPM); k: DDIM with eta = 0 over k "
                                "evenly spaced steps (deterministic given x_T), k <= steps"),
    "hidden": Hyper(int, 128, ge=1, le=4096, doc="hidden units (MLP) or base channels (U-Net)"),
    "bound_timesteps": Hyper(int, 8, ge=1, le=10_000,
                             doc="draws of t per example when estimating the bound, one per stratum of "
                                 "near-geometric strata of the steps (T - 1 or more: the full sum over t)"),
}


def _wide(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS has not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t, (B,) -> (B, dim), on t's device."""
    half = dim // 2
    wide = _wide(t.device)
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=wide, device=t.device) / max(half, 1))
    args = t.to(wide)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


# ---------------------------------------------------------------------------
# the noise schedule (diffusers' scheduler: betas, add_noise) and the samplers (step)
# ---------------------------------------------------------------------------

class NoiseSchedule:
    """The forward process's numbers for steps t = 1..T, stored 0-based (index t - 1), float64:

    - ``betas``: beta_t; ``alphas`` = 1 - beta_t; ``abar`` = prod_{s <= t} alpha_s;
      ``abar_prev`` = abar_{t-1} (abar_0 = 1);
    - ``post_var``: betatilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of
      q(x_{t-1} | x_t, x_0) and of the model's p(x_{t-1} | x_t) (0 at t = 1);
    - ``bound_weight``: beta_t^2 / (2 betatilde_t alpha_t (1 - abar_t)), the weight of
      ||eps - eps_theta||^2 in the bound's L_{t-1} (t >= 2; nan at t = 1).
    """

    def __init__(self, steps: int, kind: str = "linear"):
        T = int(steps)
        if T < 1:
            raise ValueError(f"a noise schedule needs at least 1 step, got {steps}")
        if kind == "linear":
            # Ho et al.'s 1e-4 .. 0.02 at T = 1000, stretched to T steps (about the same total
            # noise), at most 0.5: on short chains no step may destroy the signal at once
            betas = np.minimum(np.linspace(1e-4, 0.02, T) * (1000.0 / T), 0.5)
        elif kind == "cosine":
            # Nichol & Dhariwal 2021: abar_t = f(t) / f(0), f(t) = cos^2((t / T + s) / (1 + s) pi / 2),
            # s = 0.008; beta_t = 1 - abar_t / abar_{t-1}, at most 0.999
            s = 0.008
            f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
            betas = np.minimum(1.0 - f[1:] / f[:-1], 0.999)
        else:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
        self.T, self.kind = T, kind
        self.betas = betas
        self.alphas = 1.0 - betas
        self.abar = np.cumprod(self.alphas)
        self.abar_prev = np.concatenate([[1.0], self.abar[:-1]])
        self.post_var = betas * (1.0 - self.abar_prev) / (1.0 - self.abar)
        # the mean of q(x_{t-1} | x_t, x_0) = post_coef_x0 x_0 + post_coef_xt x_t
        self.post_coef_x0 = np.sqrt(self.abar_prev) * betas / (1.0 - self.abar)
        self.post_coef_xt = np.sqrt(self.alphas) * (1.0 - self.abar_prev) / (1.0 - self.abar)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = betas**2 / (2.0 * self.post_var * self.alphas * (1.0 - self.abar))
        w[0] = np.nan  # t = 1 is L_0's, not a KL term
        self.bound_weight = w
        self._on: dict = {}  # (name, device) -> the array as a tensor there

    def at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``name``'s values at the 0-based steps ``t`` (B,), in ``like``'s dtype, on its device,
        shaped to broadcast against ``like`` (B, ...)."""
        key = (name, like.device)
        values = self._on.get(key)
        if values is None:
            values = torch.as_tensor(getattr(self, name), dtype=_wide(like.device), device=like.device)
            self._on[key] = values
        return values[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """A draw of q(x_t | x_0): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``."""
        a = self.at("abar", t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    def predict_x0(self, xt: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t): add_noise solved for x_0."""
        a = self.at("abar", t, xt)
        return (xt - (1 - a).sqrt() * eps) / a.sqrt()

    def posterior_mean(self, xt: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t), the mean of
        q(x_{t-1} | x_t, x_0) at x_0 = x0_hat."""
        return (xt - self.at("betas", t, xt) / (1 - self.at("abar", t, xt)).sqrt() * eps) \
            / self.at("alphas", t, xt).sqrt()

    def posterior_mean_x0(self, xt: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The mean of q(x_{t-1} | x_t, x_0) from x_0 itself:
        sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t."""
        return self.at("post_coef_x0", t, xt) * x0 + self.at("post_coef_xt", t, xt) * xt


@functools.lru_cache(maxsize=32)
def noise_schedule(steps: int, kind: str = "linear") -> NoiseSchedule:
    """The schedule of T = ``steps`` (one per process for each (T, kind))."""
    return NoiseSchedule(steps, kind)


def bound_strata(T: int, K: int) -> np.ndarray:
    """Edges of the strata of the bound's steps t = 2..T (0-based 1..T-1): whole steps,
    ``edges[0] = 1 < edges[1] < ... = T``, stratum k being the 0-based steps
    ``edges[k] .. edges[k + 1] - 1``; min(K, T - 1) strata.

    Near-geometric: each edge is the geometric step from the last towards T over the
    strata left, ``b = round(a (T / a)^(1 / r))``, at least one step past it. The
    terms L_{t-1} fall off like 1/t, so each stratum then holds about the same share of
    the sum, and the first, largest terms are each a stratum of their own.

    Examples
    --------
    >>> bound_strata(100, 8).tolist()
    [1, 2, 3, 5, 9, 16, 29, 54, 100]
    >>> bound_strata(6, 5).tolist()                # K >= T - 1: every step alone (the full sum)
    [1, 2, 3, 4, 5, 6]
    """
    if T < 2:
        return np.array([1], dtype=np.int64)
    K = min(int(K), T - 1)
    edges = [1]
    for k in range(K):
        a, r = edges[-1], K - k
        b = T if r == 1 else min(T - (r - 1), max(a + 1, round(a * (T / a) ** (1.0 / r))))
        edges.append(b)
    return np.asarray(edges, dtype=np.int64)


def bound_timesteps(B: int, K: int, T: int, g: torch.Generator, device, *, stratified: bool = True):
    """The bound's K draws of t for each of B examples, with their weights: K pairs
    ``(t (B,) long, 0-based in 1..T-1, weight)``, yielded one by one (the caller draws its
    eps between them, so the random stream is u_1, eps_1, u_2, eps_2, ...), such that ``sum_k weight_k
    L_{t_k}`` is an unbiased estimate of ``sum_{t=1}^{T-1} L_t`` (0-based).

    ``stratified`` (the default, what ``log_prob`` uses): one uniform t in each stratum of
    :func:`bound_strata`, weighted by the stratum's width. Otherwise K independent uniform
    draws over all T - 1 steps, each weighted (T - 1) / K (kept to measure what the strata
    gain). One uniform draw of B numbers per stratum (or draw) from ``g``."""
    wide = _wide(device)
    if stratified:
        edges = bound_strata(T, K)
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
            u = torch.rand(B, generator=g, dtype=wide, device=device)
            yield (a + (u * (b - a)).floor()).long().clamp(a, b - 1), float(b - a)
    else:
        for _ in range(K):
            u = torch.rand(B, generator=g, dtype=wide, device=device)
            yield (1 + (u * (T - 1)).floor()).long().clamp(1, T - 1), (T - 1) / K


class AncestralSampler:
    """DDPM's ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2):

        x_{t-1} = mu_theta(x_t, t) + sigma_t z,  z ~ N(0, I),  sigma_t^2 = betatilde_t,  t = T .. 2

    and at t = 1 the mean mu_theta(x_1, 1) of the decoder p(x_0 | x_1), which then draws x_0."""

    draws_x0 = True  # the chain ends with a draw from the decoder

    def __init__(self, schedule: NoiseSchedule, clip: float | None = None):
        self.schedule, self.clip = schedule, clip
        self.timesteps = list(range(schedule.T - 1, -1, -1))  # 0-based: T - 1 .. 0

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """x_{t-1} from x_t = x at the i-th of ``timesteps`` and the net's eps (the decoder's
        mean after the last)."""
        t = torch.full((len(x),), self.timesteps[i], dtype=torch.long, device=x.device)
        if self.clip is None:
            mean = self.schedule.posterior_mean(x, eps, t)
        else:  # x0_hat clipped to the data's range, then q(x_{t-1} | x_t, x0_hat)'s mean
            x0 = self.schedule.predict_x0(x, eps, t).clamp(-self.clip, self.clip)
            mean = self.schedule.posterior_mean_x0(x, x0, t)
        if self.timesteps[i] == 0:
            return mean
        return mean + self.schedule.at("post_var", t, x).sqrt() * _torch.randn(*x.shape, generator=g,
                                                                                 dtype=x.dtype)


class DDIMSampler:
    """DDIM (Song et al. 2021) over k of the T steps, tau_k > .. > tau_1 evenly spaced from
    T down to 1 (both included; k = T: every step):

        x0_hat  = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        x_s     = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z,  s the next tau
        sigma^2 = eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s)

    and after tau_1, x0_hat (abar_0 = 1). With eta = 0 the chain is deterministic given x_T; at
    tau_1 = 1, x0_hat is mu_theta(x_1, 1), the decoder's mean."""

    draws_x0 = False  # the chain ends at x0_hat: the decoder's mode, not a draw

    def __init__(self, schedule: NoiseSchedule, steps: int, eta: float = 0.0, clip: float | None = None):
        if not 1 <= steps <= schedule.T:
            raise ValueError(f"DDIM takes 1 to T = {schedule.T} steps, got {steps}")
        self.schedule, self.eta, self.clip = schedule, float(eta), clip
        # floor(x + 0.5): distinct when the spacing (T - 1) / (k - 1) is at least 1
        self.timesteps = np.floor(np.linspace(schedule.T - 1, 0, steps) + 0.5).astype(int).tolist()

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        sch, n = self.schedule, len(x)
        t = torch.full((n,), self.timesteps[i], dtype=torch.long, device=x.device)
        x0 = sch.predict_x0(x, eps, t)
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
        if i + 1 == len(self.timesteps):
            return x0
        s = torch.full((n,), self.timesteps[i + 1], dtype=torch.long, device=x.device)
        a_t, a_s = sch.at("abar", t, x), sch.at("abar", s, x)
        var = self.eta**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
        out = a_s.sqrt() * x0 + (1 - a_s - var).clamp_min(0).sqrt() * eps
        if self.eta > 0:
            out = out + var.sqrt() * _torch.randn(*x.shape, generator=g, dtype=x.dtype)
        return out


def make_sampler(schedule: NoiseSchedule, sampling_steps: int, clip: float | None = None):
    """0: :class:`AncestralSampler`; k: :class:`DDIMSampler` with k steps, eta = 0; ``clip``:
    x0_hat clipped to [-clip, clip] at every step (None: not)."""
    if sampling_steps == 0:
        return AncestralSampler(schedule, clip)
    return DDIMSampler(schedule, sampling_steps, clip=clip)


# ---------------------------------------------------------------------------
# the decoders p(x_0 | x_1)
# ---------------------------------------------------------------------------

class GaussianDecoder:
    """p(x_0 | x_1) = N(x_0; mean, var I) on continuous data."""

    def nll(self, x0, mean, var):
        """-log N(x_0; mean, var I), nats, (B,)."""
        return (0.5 * (x0 - mean)**2 / var + 0.5 * torch.log(2 * math.pi * var)).flatten(1).sum(1)

    def draw(self, mean, var, g):
        return mean + var.sqrt() * _torch.randn(*mean.shape, generator=g, dtype=mean.dtype)

    def mode(self, mean):
        return mean


class DiscretisedDecoder:
    """p(x_0 | x_1): N(mean, var) integrated over x_0's bin on [-1, 1] (bins 2 / (L - 1) wide
    around each level, the outer ones to +-infinity), so probabilities over the levels sum
    to 1. Draws and modes come back in level units (0 .. L - 1)."""

    def __init__(self, levels: int):
        self.levels = levels

    def nll(self, x0, mean, var):
        """-log P(x_0 | x_1) = -log (Phi((hi - mean) / sd) - Phi((lo - mean) / sd)), nats, (B,)."""
        half = 1.0 / (self.levels - 1)
        wide = _wide(x0.device)
        x, m = x0.to(wide), mean.to(wide)
        lo = torch.where(x <= -1 + 1e-6, torch.full_like(x, -torch.inf), x - half)
        hi = torch.where(x >= 1 - 1e-6, torch.full_like(x, torch.inf), x + half)
        normal = torch.distributions.Normal(m, var.to(wide).sqrt())
        mass = (normal.cdf(hi) - normal.cdf(lo)).clamp_min(1e-300)
        return -torch.log(mass).flatten(1).sum(1).to(x0.dtype)

    def _levels(self, y):
        return ((y + 1) / 2 * (self.levels - 1)).round().clamp(0, self.levels - 1)

    def draw(self, mean, var, g):
        """An exact draw: a Gaussian draw, rounded to its bin's level."""
        return self._levels(mean + var.sqrt() * _torch.randn(*mean.shape, generator=g, dtype=mean.dtype))

    def mode(self, mean):
        """The most likely level: the bin holding the mean."""
        return self._levels(mean)


# ---------------------------------------------------------------------------
# the model: a network, a schedule, a decoder
# ---------------------------------------------------------------------------

class Diffusion:
    """The maths of a DDPM around an eps network ``net(x_t, t) -> eps`` (t 0-based, (B,)).

    ``loss_scale`` divides the simple loss (the number of pixels: a per-pixel loss)."""

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, decoder, loss_scale: float = 1.0):
        self.net, self.schedule, self.decoder, self.loss_scale = net, schedule, decoder, loss_scale

    def loss(self, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The simple loss: || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2,
        t uniform on 1..T."""
        t = torch.randint(0, self.schedule.T, (len(x0),), generator=g, device=g.device)
        eps = _torch.randn(*x0.shape, generator=g, dtype=x0.dtype)
        err = (eps - self.net(self.schedule.add_noise(x0, eps, t), t))**2
        return err.flatten(1).sum(1).mean() / self.loss_scale

    def neg_bound(self, x0: torch.Tensor, g: torch.Generator, K: int, *,
                  stratified: bool = True) -> torch.Tensor:
        """An unbiased estimate of L_T + sum_{t>=2} L_{t-1} + L_0, nats, (B,): the sum over t
        from K draws of t per example (:func:`bound_timesteps`), one eps per draw."""
        sch, B, dev = self.schedule, len(x0), x0.device
        flat = x0.flatten(1)
        # L_T: KL(N(sqrt(abar_T) x0, (1 - abar_T) I) || N(0, I))
        aT = sch.at("abar", torch.full((B,), sch.T - 1, dtype=torch.long, device=dev), flat)
        L_T = 0.5 * (aT * flat**2 + (1 - aT) - 1 - torch.log(1 - aT)).sum(1)
        # sum_{t=2}^T L_{t-1} ~ sum_k weight_k L_{t_k - 1}, t_k drawn per example
        total = torch.zeros(B, dtype=x0.dtype, device=dev)
        if sch.T > 1:
            for t, weight in bound_timesteps(B, K, sch.T, g, dev, stratified=stratified):
                eps = _torch.randn(*x0.shape, generator=g, dtype=x0.dtype)
                err = ((eps - self.net(sch.add_noise(x0, eps, t), t))**2).flatten(1).sum(1)
                total = total + weight * sch.at("bound_weight", t, err) * err
        # L_0 = -log p(x_0 | x_1), x_1 ~ q(x_1 | x_0), p(x_0 | x_1) with mean mu_theta(x_1, 1), var beta_1
        t1 = torch.zeros(B, dtype=torch.long, device=dev)
        eps = _torch.randn(*x0.shape, generator=g, dtype=x0.dtype)
        x1 = sch.add_noise(x0, eps, t1)
        mean = sch.posterior_mean(x1, self.net(x1, t1), t1)
        L_0 = self.decoder.nll(x0, mean, sch.at("betas", t1, x0))
        return L_T + total + L_0

    @torch.no_grad()
    def sample(self, n: int, g: torch.Generator, shape: tuple, sampler, dtype: torch.dtype,
               frames: int = 0):
        """x_T ~ N(0, I) denoised by ``sampler``, then decoded (a draw for ancestral sampling,
        the mode for DDIM). With ``frames`` > 0 also the chain: about that many (t, x_t),
        from x_T (t = T) to the decoded x_0 (t = 0)."""
        x = _torch.randn(n, *shape, generator=g, dtype=dtype)
        ts = sampler.timesteps
        keep = set(np.linspace(0, len(ts), frames).round().astype(int).tolist()) if frames else set()
        chain = [(self.schedule.T, x.clone())] if 0 in keep else []
        for i, t in enumerate(ts):
            x = sampler.step(self.net(x, torch.full((n,), t, dtype=torch.long, device=x.device)), i, x, g)
            if i + 1 in keep and i + 1 < len(ts):
                chain.append((ts[i + 1] + 1, x.clone()))  # x is now x_s, s the next step (1-based)
        beta1 = self.schedule.at("betas", torch.zeros(n, dtype=torch.long, device=x.device), x)
        x = self.decoder.draw(x, beta1, g) if sampler.draws_x0 else self.decoder.mode(x)
        if frames:
            chain.append((0, x.clone()))
        return x, chain


class _DiffusionFamily:
    """What both diffusion families share: the schedule and sampler of the hyperparameters."""

    #: log_prob is a Monte-Carlo estimate (of a bound); ``log_prob(X, seed=s)`` draws afresh
    log_prob_monte_carlo = True
    clip_sample = False  # images declare it; points are standardised, with no range to clip to

    def _check_sampling_steps(self) -> None:
        if self.sampling_steps > self.steps:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) must be at most steps "
                             f"({self.steps}): DDIM takes k of the T steps")

    def _schedule(self) -> NoiseSchedule:
        return noise_schedule(self.steps, self.schedule)

    def _sampler(self):
        self._check_sampling_steps()
        return make_sampler(self._schedule(), self.sampling_steps, 1.0 if self.clip_sample else None)

    def _loss(self, module, batch, g):
        return self._diffusion(module).loss(batch, g)


# ---------------------------------------------------------------------------
# points: MLP denoiser, Gaussian decoder
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MLPEpsConfig:
    n_in: int
    hidden: int
    t_dim: int = 32


class MLPEps(nn.Module):
    """eps_theta(x_t, t): an MLP on x_t and a sinusoidal embedding of t."""

    def __init__(self, c: MLPEpsConfig):
        super().__init__()
        self.c = c
        h = c.hidden
        self.net = nn.Sequential(nn.Linear(c.n_in + c.t_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                 nn.Linear(h, h), nn.SiLU(), nn.Linear(h, c.n_in))

    def forward(self, xt, t):
        return self.net(torch.cat([xt, time_embedding(t + 1, self.c.t_dim).to(xt.dtype)], dim=1))


class PointsDiffusion(_DiffusionFamily, PointsDeep):
    """DDPM with an MLP denoiser on (lon, lat); the bound renormalised to the rectangle
    (Z estimated from samples)."""

    name, kinds = "diffusion", ("points",)
    taxonomy = "diffusion"
    log_prob_kind = "lower_bound"
    mass_by = "samples"
    assumes = "the points are what step-by-step denoising of Gaussian noise produces"
    hyperparameters = {**PointsDeep.hyperparameters, **DIFFUSION_HYPERPARAMETERS,
                       "batch_size": Hyper(int, 256, ge=1, le=65_536, doc="examples per gradient step")}

    def _config(self, X):
        self._check_sampling_steps()
        return MLPEpsConfig(2, self.hidden)

    def _module(self, config):
        return MLPEps(config)

    def _diffusion(self, module=None) -> Diffusion:
        return Diffusion(module if module is not None else self.module_, self._schedule(), GaussianDecoder())

    def _val_loss(self, module, batch, g):
        return self._diffusion(module).neg_bound(batch, g, 4).mean()  # early stopping on the bound itself

    def log_prob(self, X, *, log_prob_z=None, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """An estimate of the variational bound (draws from ``seed``, by default a fixed one)
        minus log Z, per deg^2."""
        self._check_fitted()
        g = _torch.generator(seed, self.device_)
        return super().log_prob(X, log_prob_z=log_prob_z or (
            lambda Z: -self._diffusion().neg_bound(Z, g, self.bound_timesteps)))

    def _draw_z(self, n, g):
        return self._diffusion().sample(n, g, (2,), self._sampler(), self.dtype)[0]

    def denoising_steps(self, n: int, *, rng: np.random.Generator, frames: int = 8):
        """[(t, (n, 2) points)] from x_T to x_0, in lon/lat."""
        self._check_fitted()
        g = _torch.generator(_torch.seed_from(rng), self.device_)
        _, chain = self._diffusion().sample(n, g, (2,), self._sampler(), self.dtype, frames)
        return [(t, _torch.numpy(x).astype(np.float64) * self.scale_ + self.shift_) for t, x in chain]


# ---------------------------------------------------------------------------
# images: a U-Net, a discretised decoder
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class UNetConfig:
    height: int
    width: int
    channels: int
    t_dim: int = 64


def _norm(c: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (as many as divide c)."""
    return nn.GroupNorm(math.gcd(8, c), c)


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x))) + W t_emb))) (Ho et al.'s block, no dropout)."""

    def __init__(self, c_in, c_out, t_dim):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.temb(temb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """eps_theta(x_t, t) on (B, H, W) images: a U-Net with two downsamplings (images padded to
    a multiple of 4), GroupNorm and SiLU, the time embedding added in every block."""

    def __init__(self, c: UNetConfig):
        super().__init__()
        self.c = c
        self.hp, self.wp = padded(c.height), padded(c.width)
        C, td = c.channels, c.t_dim
        self.tmlp = nn.Sequential(nn.Linear(td, td), nn.SiLU(), nn.Linear(td, td))
        self.inp = nn.Conv2d(1, C, 3, padding=1)
        self.d1 = ResBlock(C, C, td)
        self.down1 = nn.Conv2d(C, C, 4, 2, 1)
        self.d2 = ResBlock(C, 2 * C, td)
        self.down2 = nn.Conv2d(2 * C, 2 * C, 4, 2, 1)
        self.mid = ResBlock(2 * C, 2 * C, td)
        self.up2 = nn.ConvTranspose2d(2 * C, 2 * C, 4, 2, 1)
        self.u2 = ResBlock(4 * C, C, td)
        self.up1 = nn.ConvTranspose2d(C, C, 4, 2, 1)
        self.u1 = ResBlock(2 * C, C, td)
        self.norm_out = _norm(C)
        self.out = nn.Conv2d(C, 1, 3, padding=1)

    def forward(self, xt, t):
        te = self.tmlp(time_embedding(t + 1, self.c.t_dim).to(xt.dtype))
        h = F.pad(xt.unsqueeze(1), (0, self.wp - self.c.width, 0, self.hp - self.c.height))
        h1 = self.d1(self.inp(h), te)
        h2 = self.d2(self.down1(h1), te)
        m = self.mid(self.down2(h2), te)
        u = self.u2(torch.cat([self.up2(m), h2], 1), te)
        u = self.u1(torch.cat([self.up1(u), h1], 1), te)
        return self.out(F.silu(self.norm_out(u)))[:, 0, :self.c.height, :self.c.width]


class ImageDiffusion(_DiffusionFamily, DeepFamily):
    """DDPM with a U-Net; the variational bound with a discretised decoder.

    Parameters
    ----------
    steps : int, default 100 (T)
    schedule : "linear" (default) or "cosine"
    sampling_steps : int, default 0 (ancestral over all T); k for DDIM over k steps
    clip_sample : bool, default False (x0_hat clipped to [-1, 1] while sampling)
    hidden : int, default 32 (U-Net base channels)
    bound_timesteps : int, default 8 (draws of t per example in the bound's estimate)
    epochs, max_steps, batch_size, lr, patience, val_fraction, ... : the training loop.
    """

    name, kinds = "diffusion", ("image",)
    taxonomy = "diffusion"
    log_prob_kind = "lower_bound"
    assumes = "the images are what step-by-step denoising of Gaussian noise produces (U-Net)"
    hyperparameters = {**DeepFamily.hyperparameters, **DIFFUSION_HYPERPARAMETERS,
                       "hidden": Hyper(int, 32, ge=1, le=1024, doc="U-Net base channels"),
                       "clip_sample": Hyper(bool, False, doc=(
                           "sampling clips x0_hat to the pixels' range [-1, 1] at every step (diffusers' "
                           "clip_sample, Ho et al.'s sampler): needed for DDIM with the cosine schedule, whose "
                           "last betas (0.999) make x0_hat explode; the samples then come from a chain a "
                           "little unlike the bound's")),
                       "batch_size": Hyper(int, 64, ge=1, le=65_536, doc="examples per gradient step"),
                       "lr": Hyper(float, 2e-3, gt=0.0, le=1.0, doc="Adam's learning rate")}

    def _scale(self, X):
        return self._tensor(X) * (2.0 / (self.domain.levels - 1)) - 1.0

    def _prepare(self, X):
        return self._scale(X)

    def _config(self, X):
        self._check_sampling_steps()
        d = self.domain
        return UNetConfig(d.height, d.width, self.hidden)

    def _module(self, config):
        return UNet(config)

    def _diffusion(self, module=None) -> Diffusion:
        d = self.domain
        return Diffusion(module if module is not None else self.module_, self._schedule(),
                         DiscretisedDecoder(d.levels), loss_scale=d.height * d.width)

    def log_prob(self, X, *, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """An unbiased estimate of the variational bound on log P(x), nats, per image (draws
        from ``seed``, by default a fixed one: the same numbers every call)."""
        self._check_fitted()
        g = _torch.generator(seed, self.device_)
        diffusion = self._diffusion()
        return self._batched_in_support(self.domain.check_shape(X),
                                         lambda x: -diffusion.neg_bound(x, g, self.bound_timesteps),
                                         self._scale, 128)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Ancestral (``sampling_steps = 0``) or DDIM sampling, in batches of 250 images."""
        self._check_fitted()
        diffusion, sampler = self._diffusion(), self._sampler()
        x = self._draw_in_batches(self._check_n(n_samples), 250, lambda m, g: diffusion.sample(
            m, g, self.domain.event_shape, sampler, self.dtype)[0], rng)
        return x.astype(np.uint8 if self.domain.levels <= 256 else np.int64)

    def denoising_steps(self, n: int, *, rng: np.random.Generator, frames: int = 8):
        """[(t, (n, H, W) images in level units)] from x_T to x_0."""
        self._check_fitted()
        g = _torch.generator(_torch.seed_from(rng), self.device_)
        with _torch.threads():
            _, chain = self._diffusion().sample(n, g, self.domain.event_shape, self._sampler(), self.dtype,
                                                frames)
        L = self.domain.levels - 1
        return [(t, _torch.numpy(x) if t == 0 else (_torch.numpy(x) + 1) / 2 * L) for t, x in chain]
