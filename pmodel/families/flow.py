"""flow: normalizing flows, an invertible map to Gaussian noise with an exact density.

    log p(x) = log N(f(x); 0, I) + log |det df/dx|          (change of variables)

- points: a neural spline flow (zuko's NSF: autoregressive rational-quadratic
  splines) on standardised lon/lat, renormalised to the domain's rectangle
  (``pmodel.families.deep._base``: ``Z`` by quadrature, ``mass_outside_`` kept):
  an exact density per deg^2.
- image: RealNVP (Dinh et al. 2017) on dequantised pixels. ``v = x + u``,
  ``u ~ U[0, 1)^D``, goes through each pixel's own marginal CDF (piecewise
  linear over the levels' unit bins, learned, started at naive Bayes's
  marginals), Gaussianised, ``y = Phi^-1(F(v))``, then through checkerboard
  affine couplings (started at the identity) that model how pixels depend on
  each other. So the flow starts exactly at naive Bayes's likelihood and
  training can only be judged against it.
  On 8-bit images the density of ``v`` gives a lower bound on the discrete
  log-likelihood (Theis et al. 2016):

      log P(x) >= E_u[ log p_v(x + u) ]      (unit-wide bins: no further term)

  so ``log_prob_kind`` is "lower_bound"; ``log_prob`` estimates the expectation
  with one ``u`` per image from a fixed seed (the same numbers every call).

Failure modes: a flow's density is smooth, so a coastline or a pixel that takes
one value costs it density; RealNVP's couplings see only half the pixels at a
time and need depth to relate distant ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pmodel.families.base import Hyper, Search
from pmodel.families.deep import _torch
from pmodel.families.deep._base import DeepFamily, naive_bayes_logits
from pmodel.families.deep._zuko import ZukoPoints

LOG_PROB_SEED = 20240607  # the dequantisation noise of log_prob: fixed, so log_prob is a function


class PointsFlow(ZukoPoints):
    """Neural spline flow on (lon, lat), renormalised to the rectangle.

    Parameters
    ----------
    transforms, hidden, bins : the NSF's depth, net width and spline bins.
    epochs, seconds, batch_size, lr, patience, val_fraction : the training loop.
    """

    name, kinds = "flow", ("points",)
    taxonomy = "flow"
    assumes = "the points are a smooth invertible warp of a Gaussian (spline flow), renormalised to the region"
    flow_kind = "nsf"
    hyperparameters = {**ZukoPoints.hyperparameters,
                       "bins": Hyper(int, 16, ge=2, le=256, doc="spline bins per transformation")}
    # the budget (epochs, max_steps, schedule) stays the experiment entry's: a sweep compares
    # architectures and rates at equal work
    search_space = {"lr": Search(3e-4, 1e-2, log=True), "transforms": Search(2, 8),
                    "hidden": Search(choices=(32, 64, 128, 256)), "bins": Search(8, 64, log=True),
                    "batch_size": Search(choices=(256, 512, 1024))}


# ---------------------------------------------------------------------------
# RealNVP on dequantised pixels
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RealNVPConfig:
    height: int
    width: int
    levels: int
    couplings: int
    channels: int


class MarginalCDF(nn.Module):
    """Each pixel's dequantised value through its own marginal CDF, then Gaussianised:

        y = Phi^-1(F(v)),  F(v) = C_{k-1} + (v - k) p_k  for v in [k, k + 1),
        log |dy/dv| = log p_k - log phi(y)

    with ``p = softmax(logits)`` per pixel (L bins of unit width) and ``C`` its cumulative
    sum. Started at naive Bayes's log-marginals and followed by identity couplings, the flow's
    density of ``v`` is naive Bayes's mass spread uniformly over each bin, so its
    dequantisation bound starts exactly at naive Bayes's log-likelihood. Computed in float64
    (the CDF's tails)."""

    def __init__(self, height: int, width: int, levels: int):
        super().__init__()
        self.shape, self.L = (height, width), levels
        self.logits = nn.Parameter(torch.zeros(height * width, levels))

    def _table(self):
        logp = torch.log_softmax(self.logits.to(torch.float64), -1)    # (D, L)
        p = logp.exp()
        upper = torch.cumsum(p, -1)
        return logp, p, upper - p, upper

    def forward(self, v):
        """v (B, H, W) in [0, L) -> y (B, 1, H, W), log |dy/dv| (B,)."""
        B = len(v)
        logp, p, lower, _ = self._table()
        vf = v.reshape(B, -1).to(torch.float64)
        k = vf.floor().clamp(0, self.L - 1).long()                       # (B, D)
        take = lambda t: torch.gather(t.unsqueeze(0).expand(B, -1, -1), 2, k.unsqueeze(-1)).squeeze(-1)
        F = (take(lower) + (vf - k) * take(p)).clamp(1e-300, 1 - 1e-16)
        y = torch.special.ndtri(F)
        log_phi = -0.5 * y**2 - 0.5 * math.log(2 * math.pi)
        ladj = (take(logp) - log_phi).sum(1)
        return y.reshape(B, 1, *self.shape).to(v.dtype), ladj.to(v.dtype)

    def inverse(self, y):
        """y (B, 1, H, W) -> v (B, H, W): the bin whose CDF interval holds Phi(y), and the
        place within it."""
        B = len(y)
        _, p, lower, upper = self._table()
        F = torch.special.ndtr(y.reshape(B, -1).to(torch.float64))      # (B, D)
        k = torch.searchsorted(upper.contiguous(), F.T.contiguous(), right=True).T.clamp(0, self.L - 1)
        take = lambda t: torch.gather(t.unsqueeze(0).expand(B, -1, -1), 2, k.unsqueeze(-1)).squeeze(-1)
        frac = ((F - take(lower)) / take(p).clamp_min(1e-300)).clamp(0.0, 1.0 - 1e-9)
        return (k + frac).reshape(B, *self.shape).to(y.dtype)


class AffineCoupling(nn.Module):
    """``z = m * x + (1 - m) * (x * exp(s) + t)``, ``(s, t) = net(m * x)``;
    log |det| = sum over the unmasked pixels of s."""

    def __init__(self, mask: torch.Tensor, channels: int):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Conv2d(2, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, 2, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)  # starts as the identity
        self.s_scale = nn.Parameter(torch.ones(1))

    def _st(self, x):
        m = self.mask.expand_as(x)
        h = self.net(torch.cat([x * m, m], dim=1))
        s, t = h.chunk(2, dim=1)
        s = self.s_scale * torch.tanh(s) * (1 - m)
        return s, t * (1 - m)

    def forward(self, x):  # (B, 1, H, W) -> z, log|det| (B,)
        s, t = self._st(x)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, z):
        s, t = self._st(z)  # the masked half is unchanged, so s, t are recomputed exactly
        return (z - t) * torch.exp(-s)


class RealNVP(nn.Module):
    """v -> y = Phi^-1(F(v)) per pixel (:class:`MarginalCDF`) -> checkerboard affine couplings -> z."""

    def __init__(self, c: RealNVPConfig):
        super().__init__()
        self.c = c
        self.D = c.height * c.width
        self.marginals = MarginalCDF(c.height, c.width, c.levels)
        ii, jj = torch.meshgrid(torch.arange(c.height), torch.arange(c.width), indexing="ij")
        board = ((ii + jj) % 2).to(torch.float32).view(1, 1, c.height, c.width)
        self.couplings = nn.ModuleList(AffineCoupling(board if k % 2 == 0 else 1 - board, c.channels)
                                       for k in range(c.couplings))

    def forward_z(self, v):
        """(z, log |dz/dv|): z (B, D) the base-space code of dequantised images v (B, H, W)."""
        z, ladj = self.marginals(v)
        for layer in self.couplings:
            z, l = layer(z)
            ladj = ladj + l
        return z.flatten(1), ladj

    def log_prob_v(self, v):
        """log p_v(v) for dequantised images v (B, H, W) in [0, L): the change of variables
        log N(z) + log|dy/dv| + sum of the couplings' log|det|."""
        z, ladj = self.forward_z(v)
        return -0.5 * (z**2).sum(1) - 0.5 * self.D * math.log(2 * math.pi) + ladj

    def loss(self, x, g):
        """Bits/dim of the dequantisation bound on a batch of integer images (B, H, W):
        -E_u[log p_v(x + u)] / (D ln 2), u ~ U[0, 1)^D (unit-wide bins: no further term)."""
        v = x + torch.rand(x.shape, generator=g, device=g.device, dtype=x.dtype)
        return -self.log_prob_v(v).mean() / (self.D * math.log(2))

    def sample_v(self, n, g):
        z = torch.randn(n, 1, self.c.height, self.c.width, generator=g, device=g.device)
        for layer in reversed(self.couplings):
            z = layer.inverse(z)
        return self.marginals.inverse(z)


class ImageFlow(DeepFamily):
    """RealNVP on dequantised pixels; log_prob is the dequantisation lower bound.

    Parameters
    ----------
    couplings : int, default 8
        Checkerboard affine coupling layers (alternating masks).
    channels : int, default 32
        Width of each coupling's 3-layer conv net.
    epochs, seconds, batch_size, lr, patience, val_fraction : the training loop.
    """

    name, kinds = "flow", ("image",)
    taxonomy = "flow"
    log_prob_kind = "lower_bound"
    #: log_prob is a one-draw estimate of the dequantisation bound; ``seed=s`` draws afresh
    log_prob_monte_carlo = True
    assumes = "the dequantised images are an invertible warp of Gaussian noise (RealNVP)"
    hyperparameters = {**DeepFamily.hyperparameters,
                       "couplings": Hyper(int, 8, ge=1, le=64, doc="affine coupling layers"),
                       "channels": Hyper(int, 32, ge=1, le=1024, doc="conv channels in each coupling net"),
                       "batch_size": Hyper(int, 64, ge=1, le=65_536, doc="examples per gradient step")}

    def _prepare(self, X):
        return self._tensor(X)

    def _config(self, X):
        d = self.domain
        return RealNVPConfig(d.height, d.width, d.levels, self.couplings, self.channels)

    def _module(self, config):
        return RealNVP(config)

    def _init_from_data(self, X):
        # each pixel's CDF starts at naive Bayes's marginals (alpha 0.01, as the chapter's best)
        with torch.no_grad():
            self.module_.marginals.logits.copy_(torch.as_tensor(naive_bayes_logits(X, self.domain.levels, 0.01)))

    def log_prob(self, X, *, seed: int = LOG_PROB_SEED) -> np.ndarray:
        """An unbiased estimate of the dequantisation bound on log P(x), nats: one u per
        image, all drawn at once from ``seed`` (by default a fixed one), so the images'
        estimates are independent and their sd over the held-out images / sqrt(n) holds
        the u's noise too; -inf for images outside the domain's levels."""
        self._check_fitted()
        g = _torch.generator(seed)

        def dequantised(X):
            x = self._tensor(X)
            return x + torch.rand(x.shape, generator=g)

        return self._batched_in_support(self.domain.check_shape(X), self.module_.log_prob_v,
                                         dequantised, 256)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Images x = floor(v) of flow samples v, clipped to the levels (uint8)."""
        self._check_fitted()
        v = self._draw_in_batches(self._check_n(n_samples), 256, self.module_.sample_v, rng)
        levels = self.domain.levels
        return np.clip(np.floor(v), 0, levels - 1).astype(np.uint8 if levels <= 256 else np.int64)

    def encode(self, X) -> np.ndarray:
        """The base-space code of each image (u = 1/2, the bins' centres), (n, height * width)."""
        self._check_fitted()
        X = self.domain.check(X)
        return self._in_batches(lambda v: self.module_.forward_z(v)[0], self._tensor(X) + 0.5, 256)
