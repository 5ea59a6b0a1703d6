"""flow: normalizing flows, an invertible map to Gaussian noise with an exact density.

    log p(x) = log N(f(x); 0, I) + log |det df/dx|          (change of variables)

- points: a neural spline flow (zuko's NSF: autoregressive rational-quadratic
  splines) on standardised lon/lat, renormalised to the domain's rectangle
  (``pmodel.families.deep._base``: ``Z`` by quadrature, ``mass_outside_`` kept):
  an exact density per deg^2.
- image: RealNVP (Dinh et al. 2017) on dequantised pixels. ``v = x + u``,
  ``u ~ U[0, 1)^D``, is squashed to ``s = logit(a + (1 - 2a) v / L)`` and
  mapped to noise by a per-pixel affine layer (started at the data's per-pixel
  mean and spread: what naive Bayes knows) and checkerboard affine couplings.
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

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch
from pmodel.families.deep._base import DeepFamily
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
    alpha: float = 0.05


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
    def __init__(self, c: RealNVPConfig):
        super().__init__()
        self.c = c
        D = c.height * c.width
        self.loc = nn.Parameter(torch.zeros(1, 1, c.height, c.width))
        self.log_scale = nn.Parameter(torch.zeros(1, 1, c.height, c.width))
        ii, jj = torch.meshgrid(torch.arange(c.height), torch.arange(c.width), indexing="ij")
        board = ((ii + jj) % 2).to(torch.float32).view(1, 1, c.height, c.width)
        self.couplings = nn.ModuleList(AffineCoupling(board if k % 2 == 0 else 1 - board, c.channels)
                                       for k in range(c.couplings))
        self.D = D

    def squash(self, v):
        """v in [0, L) -> s = logit(a + (1 - 2a) v / L), and log |ds/dv| per image."""
        a, L = self.c.alpha, self.c.levels
        p = a + (1 - 2 * a) * v / L
        s = torch.log(p) - torch.log1p(-p)
        ladj = (math.log(1 - 2 * a) - math.log(L) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return s, ladj

    def log_prob_v(self, v):
        """log p_v(v) for dequantised images v (B, H, W) in [0, L): the change of variables
        log N(z) + log|ds/dv| + log|det d(affine)/ds| + sum of the couplings' log|det|."""
        s, ladj = self.squash(v.unsqueeze(1))
        z = (s - self.loc) * torch.exp(-self.log_scale)
        ladj = ladj - self.log_scale.sum()
        for layer in self.couplings:
            z, l = layer(z)
            ladj = ladj + l
        log_base = -0.5 * (z**2).flatten(1).sum(1) - 0.5 * self.D * math.log(2 * math.pi)
        return log_base + ladj

    def forward_z(self, v):
        s, _ = self.squash(v.unsqueeze(1))
        z = (s - self.loc) * torch.exp(-self.log_scale)
        for layer in self.couplings:
            z, _ = layer(z)
        return z.flatten(1)

    def loss(self, x, g):
        """Bits/dim of the dequantisation bound on a batch of integer images (B, H, W)."""
        v = x + torch.rand(x.shape, generator=g, dtype=x.dtype)
        # bits/dim = -E_u[log p_v(x + u)] / (D ln 2), with log p_v(v) = log p_y(v / L) - D log L:
        # the density of the [0, 1) rescaling, corrected by log L per dimension (8 bits at L = 256),
        # is what squash's log|ds/dv| carries
        return -self.log_prob_v(v).mean() / (self.D * math.log(2))

    def sample_v(self, n, g):
        z = torch.randn(n, 1, self.c.height, self.c.width, generator=g)
        for layer in reversed(self.couplings):
            z = layer.inverse(z)
        s = z * torch.exp(self.log_scale) + self.loc
        p = torch.sigmoid(s)
        a, L = self.c.alpha, self.c.levels
        return ((p - a) / (1 - 2 * a) * L).squeeze(1)


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
        # start the per-pixel affine layer at each pixel's mean and spread in logit space
        g = _torch.generator(0)
        with torch.no_grad():
            v = self._tensor(X) + torch.rand(X.shape, generator=g)
            s, _ = self.module_.squash(v.unsqueeze(1))
            self.module_.loc.copy_(s.mean(0, keepdim=True))
            self.module_.log_scale.copy_(torch.log(s.std(0, keepdim=True).clamp_min(1e-2)))

    def log_prob(self, X) -> np.ndarray:
        """The dequantisation bound on log P(x), nats, one fixed-seed u per image;
        -inf for images outside the domain's levels."""
        self._check_fitted()
        def dequantised(X):
            x = self._tensor(X)
            return x + torch.rand(x.shape, generator=_torch.generator(LOG_PROB_SEED))

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
        return self._in_batches(self.module_.forward_z, self._tensor(X) + 0.5, 256)
