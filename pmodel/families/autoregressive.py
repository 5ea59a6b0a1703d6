"""autoregressive: one feature at a time, each given the ones before it (exact likelihood).

    p(x) = prod_i p(x_i | x_1 .. x_{i-1})

- points: a masked autoregressive flow (zuko's MAF: p(lat | lon) p(lon), each
  an affine Gaussian warp whose shift and scale come from a masked MLP, stacked
  with alternating orders) on standardised lon/lat, renormalised to the
  rectangle like the flow family.
- categorical: a chain of small MLPs, column j's softmax reading the one-hot
  codes of columns 0..j-1; each column's bias starts at its smoothed
  log-marginal and each MLP's output at 0, so the model starts as naive Bayes.
- image: a small gated PixelCNN (van den Oord et al. 2016) in raster order,
  a 256-way softmax per pixel, plus a learned per-pixel bias on the logits
  started at naive Bayes's log-marginals: the convolutions are
  translation-equivariant and know no pixel's position; the bias does.
  Sampling is one pixel at a time; each step runs the net only on the crop
  its receptive field reaches (what the pixel can see), which gives the same
  logits as the whole image.

Failure modes: sampling is sequential (1024 net evaluations for a 32x32
image); the PixelCNN's receptive field is a few rows, so it cannot relate
pixels further apart than that except through the per-pixel bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch
from pmodel.families.deep._base import DeepFamily, column_logits, naive_bayes_logits, one_hot
from pmodel.families.deep._zuko import ZukoPoints

HIDDEN = Hyper(int, 64, ge=1, le=4096, doc="hidden units of each column's MLP")


class PointsMAF(ZukoPoints):
    """Masked autoregressive flow on (lon, lat), renormalised to the rectangle."""

    name, kinds = "autoregressive", ("points",)
    taxonomy = "autoregressive"
    assumes = "p(lon) p(lat | lon), each a Gaussian warped by stacked affine maps (MAF)"
    flow_kind = "maf"


# ---------------------------------------------------------------------------
# categorical rows: a chain of MLPs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainConfig:
    shape: tuple
    hidden: int


class ColumnChain(nn.Module):
    """logits_j = b_j + MLP_j(onehot(x_<j)); column 0 is its bias alone."""

    def __init__(self, c: ChainConfig):
        super().__init__()
        self.shape = tuple(c.shape)
        self.offsets = np.concatenate([[0], np.cumsum(self.shape)]).tolist()
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(k)) for k in self.shape)
        self.nets = nn.ModuleList()
        for j, k in enumerate(self.shape[1:], start=1):
            net = nn.Sequential(nn.Linear(self.offsets[j], c.hidden), nn.ReLU(), nn.Linear(c.hidden, k))
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            self.nets.append(net)

    def logits(self, onehot, j):
        if j == 0:
            return self.bias[0].expand(len(onehot), -1)
        return self.bias[j] + self.nets[j - 1](onehot[:, :self.offsets[j]])

    def log_prob(self, X):
        """log p(x) = sum_j log softmax(logits_j)[x_j], (n,)"""
        oh = one_hot(X, self.shape).to(self.bias[0].dtype)
        total = 0
        for j in range(len(self.shape)):
            total = total + torch.log_softmax(self.logits(oh, j), -1).gather(1, X[:, j:j + 1]).squeeze(1)
        return total

    def loss(self, X, g):
        return -self.log_prob(X).mean()

    def sample(self, n, g):
        X = torch.zeros(n, len(self.shape), dtype=torch.long)
        for j in range(len(self.shape)):
            oh = one_hot(X, self.shape).to(self.bias[0].dtype)
            probs = torch.softmax(self.logits(oh, j), -1)
            X[:, j] = torch.multinomial(probs, 1, generator=g).squeeze(1)
        return X


class CategoricalAutoregressive(DeepFamily):
    """A chain of small MLPs, one softmax per column, started at naive Bayes."""

    name, kinds = "autoregressive", ("categorical",)
    taxonomy = "autoregressive"
    dtype = torch.float64
    assumes = "each column depends on the columns before it, through a small MLP"
    hyperparameters = {**DeepFamily.hyperparameters, "hidden": HIDDEN}

    def _prepare(self, X):
        return torch.as_tensor(X, dtype=torch.long)

    def _config(self, X):
        return ChainConfig(tuple(self.domain.shape), self.hidden)

    def _module(self, config):
        return ColumnChain(config)

    def _init_from_data(self, X):
        with torch.no_grad():
            for b, lt in zip(self.module_.bias, column_logits(X, self.domain.shape)):
                b.copy_(torch.as_tensor(lt))

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        return self._batched_in_support(np.asarray(X), self.module_.log_prob,
                                         lambda x: torch.as_tensor(x, dtype=torch.long), 8192)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        with torch.no_grad():
            return self.module_.sample(n, _torch.generator(_torch.seed_from(rng))).numpy().astype(np.int64)


# ---------------------------------------------------------------------------
# images: a gated PixelCNN with a per-pixel bias
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PixelCNNConfig:
    height: int
    width: int
    levels: int
    channels: int
    layers: int
    first_kernel: int = 5

    @property
    def reach(self) -> int:
        """How many rows up (and columns each side) a pixel's logits can see."""
        return self.first_kernel // 2 + self.layers


class MaskedConv2d(nn.Conv2d):
    """A conv that sees only pixels before the centre in raster order
    (type "A": not the centre itself; type "B": the centre's own features too)."""

    def __init__(self, c_in, c_out, k, mask_type):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones(c_out, c_in, k, k)
        mask[:, :, k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[:, :, k // 2 + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class GatedBlock(nn.Module):
    """x + W_1x1 (tanh(a) * sigmoid(b)), (a, b) = masked conv B of x."""

    def __init__(self, channels):
        super().__init__()
        self.conv = MaskedConv2d(channels, 2 * channels, 3, "B")
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        a, b = self.conv(x).chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(b))


class PixelCNN(nn.Module):
    def __init__(self, c: PixelCNNConfig):
        super().__init__()
        self.c = c
        self.inp = MaskedConv2d(1, c.channels, c.first_kernel, "A")
        self.blocks = nn.Sequential(*(GatedBlock(c.channels) for _ in range(c.layers)))
        self.head = nn.Conv2d(c.channels, c.levels, 1)
        # per-pixel logits bias (levels, H, W): what naive Bayes knows of each position
        self.pixel_bias = nn.Parameter(torch.zeros(c.levels, c.height, c.width))

    def features(self, x):
        """(B, H', W') integer images -> (B, channels, H', W') features (any crop)."""
        h = x.unsqueeze(1).to(self.pixel_bias.dtype) * (2.0 / max(self.c.levels - 1, 1)) - 1.0
        return F.relu(self.blocks(self.inp(h)))

    def logits(self, x):
        return self.head(self.features(x)) + self.pixel_bias  # (B, levels, H, W)

    def log_prob(self, x):
        """log p(x) = sum over pixels of log softmax(logits)[x_pixel], (B,)"""
        return -F.cross_entropy(self.logits(x), x.long(), reduction="none").flatten(1).sum(1)

    def loss(self, x, g):
        """Bits per dimension of a batch."""
        return -self.log_prob(x).mean() / (self.c.height * self.c.width * np.log(2))

    def pixel_logits(self, x, r, col):
        """Logits of pixel (r, col) from the crop of ``x`` its receptive field reaches, (B, levels).
        Zero padding at the crop's artificial edges reaches at most ``reach`` pixels inward
        over the layers, so the target pixel's value is the whole image's."""
        R = self.c.reach
        r0, c0, c1 = max(0, r - R), max(0, col - R), min(self.c.width, col + R + 1)
        f = self.features(x[:, r0:r + 1, c0:c1])[:, :, r - r0, col - c0]
        return self.head(f.unsqueeze(-1).unsqueeze(-1)).flatten(1) + self.pixel_bias[:, r, col]

    def sample(self, n, g):
        x = torch.zeros(n, self.c.height, self.c.width, dtype=torch.long)
        for r in range(self.c.height):
            for col in range(self.c.width):
                probs = torch.softmax(self.pixel_logits(x, r, col), -1)
                x[:, r, col] = torch.multinomial(probs, 1, generator=g).squeeze(1)
        return x


class ImageAutoregressive(DeepFamily):
    """Gated PixelCNN, a softmax over the levels per pixel, per-pixel bias from naive Bayes.

    Parameters
    ----------
    channels : int, default 32
    layers : int, default 5
        Gated residual blocks after the first (5x5, type A) masked conv.
    epochs, seconds, batch_size, lr, patience, val_fraction : the training loop.
    """

    name, kinds = "autoregressive", ("image",)
    taxonomy = "autoregressive"
    assumes = "each pixel depends on the pixels above and to its left within a few rows (PixelCNN)"
    hyperparameters = {**DeepFamily.hyperparameters,
                       "channels": Hyper(int, 32, ge=1, le=1024, doc="conv channels"),
                       "layers": Hyper(int, 5, ge=0, le=64, doc="gated residual blocks"),
                       "batch_size": Hyper(int, 32, ge=1, le=65_536, doc="examples per gradient step")}

    def _prepare(self, X):
        return torch.as_tensor(X, dtype=torch.long)

    def _config(self, X):
        d = self.domain
        return PixelCNNConfig(d.height, d.width, d.levels, self.channels, self.layers)

    def _module(self, config):
        return PixelCNN(config)

    def _init_from_data(self, X):
        d = self.domain
        nb = naive_bayes_logits(X, d.levels).T.reshape(d.levels, d.height, d.width)
        with torch.no_grad():
            self.module_.pixel_bias.copy_(torch.as_tensor(nb))
            self.module_.head.weight.mul_(0.1)  # start close to naive Bayes

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        return self._batched_in_support(self.domain.check_shape(X), self.module_.log_prob,
                                         lambda x: torch.as_tensor(x, dtype=torch.long), 128)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Pixel by pixel in raster order, in batches of 500 images."""
        self._check_fitted()
        X = self._draw_in_batches(self._check_n(n_samples), 500, self.module_.sample, rng)
        return X.astype(np.uint8 if self.domain.levels <= 256 else np.int64)
