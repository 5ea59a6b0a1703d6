"""vae: a variational autoencoder, a latent-variable model with an approximate density.

    p(x) = integral p(x | z) N(z; 0, I) dz,      q(z | x) = N(mu(x), diag sigma(x)^2)

    log p(x) >= ELBO(x) = E_q[ log p(x | z) ] - KL( q(z | x) || N(0, I) )
    KL = 1/2 sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2)                 (closed form)

    log p(x) >= IWAE_k(x) = E[ log 1/k sum_i p(x | z_i) N(z_i) / q(z_i | x) ] >= ELBO(x)

``log_prob`` is an estimate of the ELBO (``elbo_samples`` draws of z from a
fixed seed: the same numbers every call), ``log_prob_kind = "lower_bound"``;
``log_prob_iwae`` is the importance-weighted bound with ``iwae_samples`` draws
(Burda et al. 2016), tighter, still a bound, recorded as its own metric. Both
are Monte-Carlo estimates whose means are the bounds; each example draws its own
z's (one generator per call, consumed batch after batch), so their standard
errors over the held-out examples (``heldout_loglik_bound_se``,
``heldout_loglik_iwae_se``) hold the draws' noise as well as the data's, and
``seed=`` draws a second, independent estimate (the KL bound's se).

- points: MLP encoder and decoder, a Gaussian p(x | z) on standardised lon/lat;
  the density is renormalised to the rectangle with Z estimated from samples.
- categorical: MLP encoder on one-hot rows, a softmax per column in the decoder,
  whose biases start at the columns' log-marginals (naive Bayes).
- image: conv encoder and decoder (images padded to a multiple of 4), and per
  pixel either a softmax over the levels plus a per-pixel bias started at naive
  Bayes's log-marginals (``decoder="softmax"``), or a discretised logistic
  (``decoder="logistic"``, Salimans et al. 2017): a mean and a log-scale per
  pixel, started at each pixel's mean and spread, the levels' bins collecting
  the logistic's mass (probabilities over the levels sum to exactly 1). The
  logistic head has 2 output channels instead of 256, so an epoch costs about
  a tenth of the softmax's (2 s instead of 30 s on the 2,000 avatars here).

``encode`` gives the posterior mean mu(x). ``sample`` draws z ~ N(0, I) and then
x ~ p(x | z) (every pixel drawn from its softmax or its discretised logistic:
the model's own samples, not the decoder's most likely image). On images ``sample_mode="decoder_mode"``
instead returns the decoder's most likely image for each z, the picture VAEs
are usually shown with; its samples are then not draws from the model's
distribution, and the run's label says so.

Failure modes: pixels are independent given z, so a sample is as noisy as the
decoder is unsure; a decoder that explains the data alone lets the posterior
collapse to the prior (the KL term then goes to 0 and z carries nothing).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch
from pmodel.families.deep._base import (DeepFamily, PointsDeep, column_logits, naive_bayes_logits,
                                        one_hot, padded)

LOG_PROB_SEED = 20240608
VAE_HYPERPARAMETERS = {
    "latent_dim": Hyper(int, 8, ge=1, le=1024, doc="dimensions of z"),
    "hidden": Hyper(int, 64, ge=1, le=4096, doc="hidden units (MLPs) or base conv channels (images)"),
    "elbo_samples": Hyper(int, 1, ge=1, le=4096, doc="draws of z per example when log_prob estimates the ELBO"),
    "iwae_samples": Hyper(int, 64, ge=1, le=100_000, doc="draws of z per example of the importance-weighted bound"),
    "kl_warmup": Hyper(int, 10, ge=0, le=100_000, doc="epochs over which the KL weight rises to 1"),
}
LOG_2PI = math.log(2 * math.pi)


class VAE(nn.Module):
    """The maths common to every kind; subclasses give ``posterior`` and ``log_lik``."""

    latent_dim: int

    @abstractmethod
    def posterior(self, x):
        """(mu, log sigma^2) of q(z | x), each (B, latent_dim)."""

    @abstractmethod
    def log_lik(self, x, z):
        """log p(x | z), (B,)."""

    beta = 1.0  # the KL term's weight while training (warm-up); always 1 in the bound

    def elbo(self, x, g, samples: int = 1, beta: float = 1.0):
        """ELBO(x) = E_q[log p(x | z)] - KL(q || N(0, I)), estimated with ``samples``
        reparameterised draws z = mu + sigma * eps, (B,). (``beta`` < 1 only while warming up.)"""
        mu, logvar = self.posterior(x)
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
        rec = 0
        for _ in range(samples):
            eps = torch.randn(mu.shape, generator=g, device=g.device, dtype=mu.dtype)
            rec = rec + self.log_lik(x, mu + (0.5 * logvar).exp() * eps)
        return rec / samples - beta * kl

    def iwae(self, x, g, k: int):
        """log 1/k sum_i w_i, w_i = p(x | z_i) N(z_i; 0, I) / q(z_i | x), z_i ~ q(z | x), (B,)."""
        mu, logvar = self.posterior(x)
        log_w = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=g, device=g.device, dtype=mu.dtype)
            z = mu + (0.5 * logvar).exp() * eps
            log_prior = -0.5 * (z**2).sum(1) - 0.5 * self.latent_dim * LOG_2PI
            log_q = -0.5 * (eps**2 + logvar).sum(1) - 0.5 * self.latent_dim * LOG_2PI
            log_w.append(self.log_lik(x, z) + log_prior - log_q)
        return torch.logsumexp(torch.stack(log_w), 0) - math.log(k)

    def loss(self, x, g):
        """-ELBO with the KL term weighted by ``beta`` (KL warm-up), per example or per dim."""
        return -self.elbo(x, g, beta=self.beta).mean() / self.loss_scale

    def val_loss(self, x, g):
        return -self.elbo(x, g).mean() / self.loss_scale


# ---------------------------------------------------------------------------
# points: Gaussian decoder
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MLPVAEConfig:
    n_in: int
    latent_dim: int
    hidden: int


def _mlp(n_in, hidden, n_out):
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class GaussianVAE(VAE):
    """p(x | z) = N(x; m(z), diag s(z)^2) on standardised points."""

    loss_scale = 1.0

    def __init__(self, c: MLPVAEConfig):
        super().__init__()
        self.latent_dim = c.latent_dim
        self.enc = _mlp(c.n_in, c.hidden, 2 * c.latent_dim)
        self.dec = _mlp(c.latent_dim, c.hidden, 2 * c.n_in)

    def posterior(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def _decode(self, z):
        m, log_s = self.dec(z).chunk(2, dim=1)
        return m, log_s.clamp(-7, 3)

    def log_lik(self, x, z):
        m, log_s = self._decode(z)
        return (-0.5 * ((x - m) / log_s.exp())**2 - log_s - 0.5 * LOG_2PI).sum(1)

    def sample(self, n, g):
        z = torch.randn(n, self.latent_dim, generator=g, device=g.device, dtype=self.dec[0].weight.dtype)
        m, log_s = self._decode(z)
        return m + log_s.exp() * torch.randn(m.shape, generator=g, device=g.device, dtype=m.dtype)


class _VAEFamily:
    """Mixin: KL warm-up, the importance-weighted bound and the encoder, for every kind."""

    has_iwae = True
    #: log_prob (and log_prob_iwae) are Monte-Carlo estimates; ``seed=s`` draws afresh
    log_prob_monte_carlo = True

    def _on_epoch(self, epoch):
        # KL warm-up (Bowman et al. 2016): the KL weight rises linearly to 1 over kl_warmup
        # epochs, so the code learns to carry information before the prior pulls it back
        self.module_.beta = min(1.0, (epoch + 1) / (self.kl_warmup + 1))

    def _val_loss(self, module, batch, g):
        return module.val_loss(batch, g)  # the true (beta = 1) bound

    @abstractmethod
    def _inputs(self, X):
        """The examples as the module's input tensor (each kind its own)."""

    def encode(self, X) -> np.ndarray:
        """The posterior mean mu(x), (n, latent_dim)."""
        self._check_fitted()
        X = self.domain.check(X)
        return self._in_batches(lambda x: self.module_.posterior(x)[0], self._inputs(X), 256)


class PointsVAE(_VAEFamily, PointsDeep):
    """VAE with a Gaussian decoder on (lon, lat); the ELBO renormalised to the rectangle.

    Z (the model's mass in the rectangle) is estimated from 20,000 samples, so the
    recorded figure is the ELBO minus log of that estimate."""

    name, kinds = "vae", ("points",)
    taxonomy = "latent variable"
    log_prob_kind = "lower_bound"
    mass_by = "samples"
    assumes = "the points are a Gaussian blur of a decoded low-dimensional Gaussian code"
    hyperparameters = {**PointsDeep.hyperparameters, **VAE_HYPERPARAMETERS,
                       "latent_dim": Hyper(int, 2, ge=1, le=1024, doc="dimensions of z"),
                       "batch_size": Hyper(int, 256, ge=1, le=65_536, doc="examples per gradient step")}

    def _config(self, X):
        return MLPVAEConfig(2, self.latent_dim, self.hidden)

    def _module(self, config):
        return GaussianVAE(config)

    def _inputs(self, X):
        return self._tensor((X - self.shift_) / self.scale_)

    def _draw_z(self, n, g):
        return self.module_.sample(n, g)

    def log_prob(self, X, *, log_prob_z=None, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """An estimate of the ELBO (``elbo_samples`` draws from ``seed``, by default a fixed
        one) minus log Z, per deg^2."""
        g = _torch.generator(seed, self.device_)
        return super().log_prob(X, log_prob_z=log_prob_z or (
            lambda Z: self.module_.elbo(Z, g, self.elbo_samples)))

    def log_prob_iwae(self, X, *, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """The importance-weighted bound (``iwae_samples`` draws), renormalised like log_prob."""
        g = _torch.generator(seed, self.device_)
        return super().log_prob(X, log_prob_z=lambda Z: self.module_.iwae(Z, g, self.iwae_samples))


# ---------------------------------------------------------------------------
# categorical rows: a softmax per column
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CategoricalVAEConfig:
    shape: tuple
    latent_dim: int
    hidden: int


class CategoricalVAE(VAE):
    """p(x | z) = prod_j softmax(b_j + W_j h(z))[x_j]."""

    loss_scale = 1.0

    def __init__(self, c: CategoricalVAEConfig):
        super().__init__()
        self.shape, self.latent_dim = tuple(c.shape), c.latent_dim
        n_in = int(sum(self.shape))
        self.enc = _mlp(n_in, c.hidden, 2 * c.latent_dim)
        self.dec = _mlp(c.latent_dim, c.hidden, n_in)
        self.bias = nn.Parameter(torch.zeros(n_in))
        self.splits = list(self.shape)

    def posterior(self, x):
        mu, logvar = self.enc(one_hot(x, self.shape).to(self.bias.dtype)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def _logits(self, z):
        return (self.dec(z) + self.bias).split(self.splits, dim=1)

    def log_lik(self, x, z):
        return sum(torch.log_softmax(lg, 1).gather(1, x[:, j:j + 1]).squeeze(1)
                   for j, lg in enumerate(self._logits(z)))

    def sample(self, n, g):
        z = torch.randn(n, self.latent_dim, generator=g, device=g.device, dtype=self.bias.dtype)
        return torch.stack([torch.multinomial(torch.softmax(lg, 1), 1, generator=g).squeeze(1)
                            for lg in self._logits(z)], dim=1)


class _DiscreteVAEFamily(_VAEFamily, DeepFamily):
    """Log-probabilities of discrete examples: the ELBO (or IWAE), -inf outside the support."""

    has_iwae = True
    log_prob_kind = "lower_bound"

    def _bound(self, X, fn, batch_size):
        self._check_fitted()
        X = np.asarray(X)
        if self.kind == "image":
            X = self.domain.check_shape(X)
        return self._batched_in_support(X, fn, self._inputs, batch_size)

    def log_prob(self, X, *, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """An unbiased estimate of the ELBO (``elbo_samples`` draws of z from ``seed``, by
        default a fixed one), nats, per example; the draws are independent from example to
        example."""
        g = _torch.generator(seed, self.device_)
        return self._bound(X, lambda x: self.module_.elbo(x, g, self.elbo_samples), 256)

    def log_prob_iwae(self, X, *, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """The importance-weighted estimate with ``iwae_samples`` draws of z from ``seed``, nats,
        per example. Its mean is IWAE_k, a lower bound on log p(x) (one estimate per example
        is a draw of that estimator: only its mean is a bound); independent draws per example,
        so the sd over the held-out examples / sqrt(n) holds the draws' noise too."""
        g = _torch.generator(seed, self.device_)
        return self._bound(X, lambda x: self.module_.iwae(x, g, self.iwae_samples), 64)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        kw = {"mode": True} if getattr(self, "sample_mode", "draw") == "decoder_mode" else {}
        X = self._draw_in_batches(self._check_n(n_samples), 256,
                                  lambda m, g: self.module_.sample(m, g, **kw), rng)
        if self.kind == "image":
            return X.astype(np.uint8 if self.domain.levels <= 256 else np.int64)
        return X.astype(np.int64)


class CategoricalVAEFamily(_DiscreteVAEFamily):
    """VAE on categorical rows: MLP encoder, a softmax per column, biases from naive Bayes."""

    name, kinds = "vae", ("categorical",)
    taxonomy = "latent variable"
    #: the KL bound sums IWAE, not the single-draw ELBO, over the cells (pmodel/scores/run.py)
    kl_bound_iwae = True
    dtype = torch.float64
    assumes = "the columns are independent given a low-dimensional Gaussian code"
    hyperparameters = {**DeepFamily.hyperparameters, **VAE_HYPERPARAMETERS,
                       "latent_dim": Hyper(int, 2, ge=1, le=1024, doc="dimensions of z"),
                       "kl_warmup": Hyper(int, 20, ge=0, le=100_000, doc="epochs over which the KL weight rises to 1"),
                       "batch_size": Hyper(int, 32, ge=1, le=65_536, doc="examples per gradient step"),
                       "lr": Hyper(float, 2e-3, gt=0.0, le=1.0, doc="Adam's learning rate")}

    def _prepare(self, X):
        return torch.as_tensor(X, dtype=torch.long)

    def _inputs(self, X):
        return torch.as_tensor(np.asarray(X), dtype=torch.long)

    def _config(self, X):
        return CategoricalVAEConfig(tuple(self.domain.shape), self.latent_dim, self.hidden)

    def _module(self, config):
        return CategoricalVAE(config)

    def _init_from_data(self, X):
        with torch.no_grad():
            self.module_.bias.copy_(torch.as_tensor(np.concatenate(column_logits(X, self.domain.shape))))
            self.module_.dec[-1].weight.mul_(0.1)


# ---------------------------------------------------------------------------
# images: conv encoder and decoder, a softmax per pixel
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvVAEConfig:
    height: int
    width: int
    levels: int
    latent_dim: int
    channels: int
    decoder: str = "softmax"   # "softmax" (levels logits per pixel) | "logistic" (mean and scale per pixel)


def discretised_logistic_log_prob(x, mean, log_scale, levels: int):
    """log P(x) of the discretised logistic on the whole levels 0..L-1 (Salimans et al. 2017,
    in level units: bins of width 1 centred on the levels, the two end bins taking the tails):

        P(x) = F(x + 1/2) - F(x - 1/2)  inside,   F(1/2) at 0,   1 - F(L - 3/2) at L - 1,
        F(y) = sigmoid((y - mean) / scale)

    so the L probabilities telescope to exactly 1. Computed in log space on the tail side
    of the bin (``log(sigmoid(a) - sigmoid(b)) = logsigmoid(a) + log1mexp(logsigmoid(b) -
    logsigmoid(a))`` with ``a > b``, by symmetry about the mean), stable for tiny scales."""
    x = x.to(mean.dtype)
    inv_s = torch.exp(-log_scale)
    c = x - mean
    t = -c.abs()                      # the bin mirrored onto the lower tail: same mass
    a, b = (t + 0.5) * inv_s, (t - 0.5) * inv_s
    la, lb = F.logsigmoid(a), F.logsigmoid(b)
    d = (lb - la).clamp(max=-1e-12)   # < 0
    log1mexp = torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))
    inner = la + log1mexp
    low = F.logsigmoid((0.5 - mean) * inv_s)                        # x = 0: F(1/2)
    high = F.logsigmoid(-((levels - 1.5) - mean) * inv_s)           # x = L-1: 1 - F(L - 3/2)
    return torch.where(x <= 0, low, torch.where(x >= levels - 1, high, inner))


def discretised_logistic_sample(mean, log_scale, levels: int, g):
    """x = clip(round(y), 0, L-1), y ~ Logistic(mean, scale): exactly a draw from the
    discretised logistic above (each bin collects the logistic's mass over it)."""
    u = torch.rand(mean.shape, generator=g, device=g.device, dtype=mean.dtype).clamp(1e-7, 1 - 1e-7)
    y = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return torch.clamp(torch.round(y), 0, levels - 1).long()


class ConvVAE(VAE):
    """Encoder: two stride-2 convs; decoder: two stride-2 transposed convs, then per pixel
    either logits over the levels plus a per-pixel bias (levels, H, W) ("softmax"), or the
    mean and log-scale of a discretised logistic plus per-pixel biases (2, H, W)
    ("logistic": 2 output channels instead of L, far cheaper)."""

    def __init__(self, c: ConvVAEConfig):
        super().__init__()
        self.c, self.latent_dim = c, c.latent_dim
        self.hp, self.wp = padded(c.height), padded(c.width)
        C, h4, w4 = c.channels, self.hp // 4, self.wp // 4
        n_out = c.levels if c.decoder == "softmax" else 2
        self.enc = nn.Sequential(nn.Conv2d(1, C, 4, 2, 1), nn.ReLU(), nn.Conv2d(C, 2 * C, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(2 * C * h4 * w4, 2 * c.latent_dim))
        self.dec = nn.Sequential(nn.Linear(c.latent_dim, 2 * C * h4 * w4), nn.ReLU(),
                                 nn.Unflatten(1, (2 * C, h4, w4)),
                                 nn.ConvTranspose2d(2 * C, C, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(C, C, 4, 2, 1), nn.ReLU(),
                                 nn.Conv2d(C, n_out, 1))
        self.pixel_bias = nn.Parameter(torch.zeros(n_out, c.height, c.width))
        self.loss_scale = c.height * c.width * math.log(2)  # the training curve in bits/dim

    def _pad(self, x):
        h = x.unsqueeze(1).to(self.pixel_bias.dtype) * (2.0 / max(self.c.levels - 1, 1)) - 1.0
        return F.pad(h, (0, self.wp - self.c.width, 0, self.hp - self.c.height))

    def posterior(self, x):
        mu, logvar = self.enc(self._pad(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    def logits(self, z):
        """softmax: (B, L, H, W) logits; logistic: (B, 2, H, W), the mean and the log-scale in
        level units (the mean's bias and net output in half-ranges of the levels, -1..1 across
        them, so that Adam's steps move it at the same pace as everything else)."""
        out = self.dec(z)[:, :, :self.c.height, :self.c.width]
        if self.c.decoder == "softmax":
            return out + self.pixel_bias
        half = (self.c.levels - 1) / 2
        return torch.stack([half * (1.0 + self.pixel_bias[0] + out[:, 0]),
                            (self.pixel_bias[1] + out[:, 1]).clamp(-7.0, 7.0)], dim=1)

    def log_lik(self, x, z):
        out = self.logits(z)
        if self.c.decoder == "softmax":
            return -F.cross_entropy(out, x.long(), reduction="none").flatten(1).sum(1)
        return discretised_logistic_log_prob(x, out[:, 0], out[:, 1], self.c.levels).flatten(1).sum(1)

    def sample(self, n, g, mode: bool = False):
        z = torch.randn(n, self.latent_dim, generator=g, device=g.device, dtype=self.pixel_bias.dtype)
        out = self.logits(z)
        if self.c.decoder == "logistic":
            if mode:  # the level nearest the mean: the most likely one (not a draw from p(x | z))
                return torch.clamp(torch.round(out[:, 0]), 0, self.c.levels - 1).long()
            return discretised_logistic_sample(out[:, 0], out[:, 1], self.c.levels, g)
        if mode:  # the decoder's most likely image given z (not a draw from p(x | z))
            return out.argmax(1)
        probs = torch.softmax(out, 1).permute(0, 2, 3, 1).reshape(-1, self.c.levels)
        return torch.multinomial(probs, 1, generator=g).view(n, self.c.height, self.c.width)


class ImageVAE(_DiscreteVAEFamily):
    """Conv VAE with, per pixel, a softmax over the levels (naive Bayes's per-pixel bias) or a
    discretised logistic (a mean and a scale, started at each pixel's mean and spread).

    Parameters
    ----------
    latent_dim : int, default 8
    hidden : int, default 32 (conv channels)
    decoder : "softmax" (default) or "logistic"
    elbo_samples, iwae_samples : draws of z for log_prob and log_prob_iwae.
    epochs, seconds, batch_size, lr, patience, val_fraction : the training loop.
    """

    name, kinds = "vae", ("image",)
    taxonomy = "latent variable"
    assumes = "the pixels are independent given a low-dimensional Gaussian code"
    hyperparameters = {**DeepFamily.hyperparameters, **VAE_HYPERPARAMETERS,
                       "hidden": Hyper(int, 32, ge=1, le=1024, doc="conv channels"),
                       "batch_size": Hyper(int, 64, ge=1, le=65_536, doc="examples per gradient step"),
                       "decoder": Hyper(str, "softmax", choices=("softmax", "logistic"),
                                        doc="p(x | z) per pixel: softmax over the levels, or a discretised "
                                            "logistic (a mean and a scale: 2 outputs instead of levels)"),
                       "sample_mode": Hyper(str, "draw", choices=("draw", "decoder_mode"),
                                            doc="draw: x ~ p(x | z), the model's own samples; decoder_mode: "
                                                "the most likely pixel of each softmax given z (the usual VAE "
                                                "picture; not a sample of the model's distribution)")}

    def _prepare(self, X):
        return torch.as_tensor(X, dtype=torch.long)

    def _inputs(self, X):
        return torch.as_tensor(np.asarray(X), dtype=torch.long)

    def _config(self, X):
        d = self.domain
        return ConvVAEConfig(d.height, d.width, d.levels, self.latent_dim, self.hidden, self.decoder)

    def _module(self, config):
        return ConvVAE(config)

    def _init_from_data(self, X):
        d = self.domain
        if self.decoder == "softmax":
            bias = naive_bayes_logits(X, d.levels).T.reshape(d.levels, d.height, d.width)
        else:  # each pixel's mean, and a logistic scale of its spread (s = sd * sqrt(3) / pi)
            Xf = X.astype(np.float64)
            spread = np.maximum(Xf.std(axis=0) * math.sqrt(3) / math.pi, 0.3)
            half = (d.levels - 1) / 2
            bias = np.stack([Xf.mean(axis=0) / half - 1.0, np.log(spread)])
        with torch.no_grad():
            self.module_.pixel_bias.copy_(torch.as_tensor(bias))
            self.module_.dec[-1].weight.mul_(0.1)
