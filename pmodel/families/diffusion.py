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

The sum over t is estimated with ``bound_timesteps`` draws of t per example
(stratified over 2..T, times (T - 1) / K), each with one draw of eps, from a
fixed seed: an unbiased, deterministic estimate of the bound. Training
minimises the simple loss ``||eps - eps_theta||^2`` at a uniform t (Ho et al.).

- points: an MLP denoiser on standardised lon/lat; ``p(x_0 | x_1)`` Gaussian
  with variance beta_1; renormalised to the rectangle (Z from samples).
- image: a small U-Net on pixels scaled to [-1, 1]; ``p(x_0 | x_1)`` is the
  Gaussian discretised to the levels' bins (outer bins to +-infinity), so the
  bound is on the discrete log-likelihood, and samples are exact draws from it.
``denoising_steps`` returns the chain x_T .. x_0 at a few steps (the strip picture).

Failure modes: sampling takes T net evaluations; with a short training the
bound is loose (its L_{t-1} terms at small t dominate).
"""

from __future__ import annotations

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
DIFFUSION_HYPERPARAMETERS = {
    "steps": Hyper(int, 100, ge=2, le=10_000, doc="diffusion steps T"),
    "hidden": Hyper(int, 128, ge=1, le=4096, doc="hidden units (MLP) or base channels (U-Net)"),
    "bound_timesteps": Hyper(int, 8, ge=1, le=10_000, doc="draws of t per example when estimating the bound"),
}


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float64) / max(half, 1))
    args = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class DDPM(nn.Module):
    """The schedule and the maths; subclasses give ``eps(x_t, t)`` and ``decoder_nll``."""

    def _schedule(self, T: int):
        # linear betas (Ho et al.'s 1e-4 .. 0.02 at T = 1000), stretched to T steps, at most 0.5
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64) * (1000.0 / T)
        betas = betas.clamp(max=0.5)  # short chains (small T): no step may destroy the signal at once
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        for name, v in {"betas": betas, "alphas": alphas, "abar": abar, "abar_prev": abar_prev,
                        "post_var": betas * (1 - abar_prev) / (1 - abar)}.items():
            self.register_buffer(name, v)
        self.T = T

    def _b(self, v, t, x):  # schedule value at step t (0-based), broadcast to x
        return v[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))

    def q_sample(self, x0, t, eps):
        return self._b(self.abar, t, x0).sqrt() * x0 + (1 - self._b(self.abar, t, x0)).sqrt() * eps

    def loss(self, x0, g):
        """The simple loss: || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2."""
        t = torch.randint(0, self.T, (len(x0),), generator=g)
        eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        return ((eps - self.eps(self.q_sample(x0, t, eps), t))**2).flatten(1).sum(1).mean() / self.loss_scale

    def mean(self, xt, t):
        """mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)."""
        e = self.eps(xt, t)
        return (xt - self._b(self.betas, t, xt) / (1 - self._b(self.abar, t, xt)).sqrt() * e) \
            / self._b(self.alphas, t, xt).sqrt()

    def neg_bound(self, x0, g, K: int):
        """An estimate of L_T + sum_{t>=2} L_{t-1} + L_0, nats, (B,)."""
        B = len(x0)
        flat = x0.flatten(1)
        # L_T: KL(N(sqrt(abar_T) x0, (1 - abar_T) I) || N(0, I))
        aT = self.abar[-1].to(x0.dtype)
        L_T = 0.5 * (aT * flat**2 + (1 - aT) - 1 - torch.log(1 - aT)).sum(1)
        # sum_{t=2}^T L_{t-1}, stratified draws of t over steps 2..T (0-based 1..T-1)
        total = torch.zeros(B, dtype=x0.dtype)
        if self.T > 1:
            edges = torch.linspace(1, self.T, K + 1, dtype=torch.float64)
            for k in range(K):
                u = torch.rand(B, generator=g, dtype=torch.float64)
                t = (edges[k] + u * (edges[k + 1] - edges[k])).floor().long().clamp(1, self.T - 1)
                eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
                err = ((eps - self.eps(self.q_sample(x0, t, eps), t))**2).flatten(1).sum(1)
                w = self.betas[t]**2 / (2 * self.post_var[t] * self.alphas[t] * (1 - self.abar[t]))
                total = total + w.to(x0.dtype) * err
            total = total * (self.T - 1) / K
        # L_0 = -log p(x_0 | x_1), x_1 ~ q(x_1 | x_0)
        t1 = torch.zeros(B, dtype=torch.long)
        eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        L_0 = self.decoder_nll(x0, self.mean(self.q_sample(x0, t1, eps), t1), self.betas[0].to(x0.dtype))
        return L_T + total + L_0

    @torch.no_grad()
    def sample(self, n, g, shape, frames: int = 0):
        """Ancestral sampling x_T -> x_0; with ``frames`` > 0 also the chain at that many steps."""
        x = torch.randn(n, *shape, generator=g, dtype=self.param_dtype)
        keep = set(np.linspace(self.T - 1, 0, frames).round().astype(int).tolist()) if frames else set()
        chain = []
        for step in range(self.T - 1, 0, -1):
            t = torch.full((n,), step, dtype=torch.long)
            x = self.mean(x, t) + self._b(self.post_var, t, x).sqrt() \
                * torch.randn(x.shape, generator=g, dtype=x.dtype)
            if step in keep:
                chain.append((step + 1, x.clone()))
        t0 = torch.zeros(n, dtype=torch.long)
        x = self.decode(self.mean(x, t0), self.betas[0].to(x.dtype), g)
        if frames:
            chain.append((0, x.clone()))
        return x, chain


# ---------------------------------------------------------------------------
# points: MLP denoiser, Gaussian decoder
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MLPDDPMConfig:
    n_in: int
    steps: int
    hidden: int
    t_dim: int = 32


class MLPDDPM(DDPM):
    loss_scale = 1.0

    def __init__(self, c: MLPDDPMConfig):
        super().__init__()
        self.c = c
        self._schedule(c.steps)
        h = c.hidden
        self.net = nn.Sequential(nn.Linear(c.n_in + c.t_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                 nn.Linear(h, h), nn.SiLU(), nn.Linear(h, c.n_in))

    @property
    def param_dtype(self):
        return self.net[0].weight.dtype

    def eps(self, xt, t):
        return self.net(torch.cat([xt, time_embedding(t + 1, self.c.t_dim).to(xt.dtype)], dim=1))

    def decoder_nll(self, x0, mean, var):
        """-log N(x_0; mean, var I), nats."""
        return (0.5 * (x0 - mean)**2 / var + 0.5 * torch.log(2 * math.pi * var)).sum(1)

    def decode(self, mean, var, g):
        return mean + var.sqrt() * torch.randn(mean.shape, generator=g, dtype=mean.dtype)


class PointsDiffusion(PointsDeep):
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
        return MLPDDPMConfig(2, self.steps, self.hidden)

    def _module(self, config):
        return MLPDDPM(config)

    def _val_loss(self, module, batch, g):
        return module.neg_bound(batch, g, 4).mean()  # early stopping on the bound itself

    def log_prob(self, X, *, log_prob_z=None) -> np.ndarray:
        """An estimate of the variational bound (fixed seed) minus log Z, per deg^2."""
        g = _torch.generator(LOG_PROB_SEED)
        return super().log_prob(X, log_prob_z=log_prob_z or (
            lambda Z: -self.module_.neg_bound(Z, g, self.bound_timesteps)))

    def _draw_z(self, n, g):
        return self.module_.sample(n, g, (2,))[0]

    def denoising_steps(self, n: int, *, rng: np.random.Generator, frames: int = 8):
        """[(t, (n, 2) points)] from x_T to x_0, in lon/lat."""
        self._check_fitted()
        _, chain = self.module_.sample(n, _torch.generator(_torch.seed_from(rng)), (2,), frames)
        return [(t, x.numpy() * self.scale_ + self.shift_) for t, x in chain]


# ---------------------------------------------------------------------------
# images: a small U-Net, a discretised decoder
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class UNetDDPMConfig:
    height: int
    width: int
    levels: int
    steps: int
    channels: int
    t_dim: int = 64


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, t_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = F.silu(self.conv1(x)) + self.temb(temb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(h))


class UNetDDPM(DDPM):
    """U-Net with two downsamplings (images padded to a multiple of 4), time embedding
    added in every block; discretised Gaussian decoder at t = 1."""

    def __init__(self, c: UNetDDPMConfig):
        super().__init__()
        self.c = c
        self._schedule(c.steps)
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
        self.out = nn.Conv2d(C, 1, 3, padding=1)
        self.loss_scale = c.height * c.width  # the simple loss per pixel

    @property
    def param_dtype(self):
        return self.inp.weight.dtype

    def eps(self, xt, t):
        te = self.tmlp(time_embedding(t + 1, self.c.t_dim).to(xt.dtype))
        h = F.pad(xt.unsqueeze(1), (0, self.wp - self.c.width, 0, self.hp - self.c.height))
        h1 = self.d1(self.inp(h), te)
        h2 = self.d2(self.down1(h1), te)
        m = self.mid(self.down2(h2), te)
        u = self.u2(torch.cat([self.up2(m), h2], 1), te)
        u = self.u1(torch.cat([self.up1(u), h1], 1), te)
        return self.out(F.silu(u))[:, 0, :self.c.height, :self.c.width]

    def _edges(self, x0, dtype):
        """Bin edges around x0 in [-1, 1] scale: +-1/(L-1), outer bins to +-infinity."""
        half = 1.0 / (self.c.levels - 1)
        lo = torch.where(x0 <= -1 + 1e-6, torch.full_like(x0, -torch.inf), x0 - half)
        hi = torch.where(x0 >= 1 - 1e-6, torch.full_like(x0, torch.inf), x0 + half)
        return lo, hi

    def decoder_nll(self, x0, mean, var):
        """-log P(x_0 | x_1): the Gaussian N(mean, var) integrated over x_0's bin, nats."""
        lo, hi = self._edges(x0, x0.dtype)
        sd = var.sqrt()
        normal = torch.distributions.Normal(mean.to(torch.float64), sd.to(torch.float64))
        lo_c, hi_c = normal.cdf(lo.to(torch.float64)), normal.cdf(hi.to(torch.float64))
        # mass of the bin; for far tails use the log-cdf difference safely
        mass = (hi_c - lo_c).clamp_min(1e-300)
        return -torch.log(mass).flatten(1).sum(1).to(x0.dtype)

    def decode(self, mean, var, g):
        """An exact draw from the discretised decoder: a Gaussian draw, rounded to its bin."""
        y = mean + var.sqrt() * torch.randn(mean.shape, generator=g, dtype=mean.dtype)
        return ((y + 1) / 2 * (self.c.levels - 1)).round().clamp(0, self.c.levels - 1)


class ImageDiffusion(DeepFamily):
    """DDPM with a small U-Net; the variational bound with a discretised decoder.

    Parameters
    ----------
    steps : int, default 100 (T)
    hidden : int, default 32 (U-Net base channels)
    bound_timesteps : int, default 8 (draws of t per example in the bound's estimate)
    epochs, seconds, batch_size, lr, patience, val_fraction : the training loop.
    """

    name, kinds = "diffusion", ("image",)
    taxonomy = "diffusion"
    log_prob_kind = "lower_bound"
    assumes = "the images are what step-by-step denoising of Gaussian noise produces (U-Net)"
    hyperparameters = {**DeepFamily.hyperparameters, **DIFFUSION_HYPERPARAMETERS,
                       "hidden": Hyper(int, 32, ge=1, le=1024, doc="U-Net base channels"),
                       "batch_size": Hyper(int, 64, ge=1, le=65_536, doc="examples per gradient step"),
                       "lr": Hyper(float, 2e-3, gt=0.0, le=1.0, doc="Adam's learning rate")}

    def _scale(self, X):
        return self._tensor(X) * (2.0 / (self.domain.levels - 1)) - 1.0

    def _prepare(self, X):
        return self._scale(X)

    def _config(self, X):
        d = self.domain
        return UNetDDPMConfig(d.height, d.width, d.levels, self.steps, self.hidden)

    def _module(self, config):
        return UNetDDPM(config)

    def log_prob(self, X) -> np.ndarray:
        """An estimate of the variational bound on log P(x), nats (fixed seed)."""
        self._check_fitted()
        g = _torch.generator(LOG_PROB_SEED)
        return self._batched_in_support(self.domain.check_shape(X),
                                         lambda x: -self.module_.neg_bound(x, g, self.bound_timesteps),
                                         self._scale, 128)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        x = self._draw_in_batches(self._check_n(n_samples), 250,
                                  lambda m, g: self.module_.sample(m, g, self.domain.event_shape)[0], rng)
        return x.astype(np.uint8 if self.domain.levels <= 256 else np.int64)

    def denoising_steps(self, n: int, *, rng: np.random.Generator, frames: int = 8):
        """[(t, (n, H, W) images in level units)] from x_T to x_0."""
        self._check_fitted()
        _, chain = self.module_.sample(n, _torch.generator(_torch.seed_from(rng)),
                                       self.domain.event_shape, frames)
        L = self.domain.levels - 1
        return [(t, (x.numpy() if t == 0 else (x.numpy() + 1) / 2 * L)) for t, x in chain]
