"""gan: a generative adversarial network, an implicit model (samples, no likelihood).

    x = G(z), z ~ N(0, I);   D(x) = P(x is real)
    min_D  -E_data[log D(x)] - E_z[log(1 - D(G(z)))]
    min_G  -E_z[log D(G(z))]                          (the non-saturating generator loss)

There is no density to evaluate, so ``log_prob_kind = "none"`` and ``log_prob``
raises: a GAN gets the sample scores only (validity, land, novelty, PRDC).
No early stopping either (a discriminator's loss says nothing of sample
quality): it trains for its budget; ``history_`` has ``loss_d`` and ``loss_g``.

- points: MLP generator and discriminator on standardised lon/lat; samples
  outside the rectangle are rejected.
- image: DCGAN-style (Radford et al. 2016): transposed convs up from a 4x
  smaller map, strided convs down in the discriminator (images padded to a
  multiple of 4). The generator's output is ``sigmoid(b + net(z))`` with a
  per-pixel bias ``b`` started at the logit of each pixel's mean intensity, so
  it starts at the mean image (what the simple model knows). Samples are
  continuous and rounded to the nearest level (uint8).

Failure modes: mode collapse (many z, one picture); the two losses oscillate
rather than converge; nothing measures how much of P_data it misses but the
samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch, _train
from pmodel.families.deep._base import DeepFamily, PointsDeep, padded, to_pixels

GAN_HYPERPARAMETERS = {
    "latent_dim": Hyper(int, 16, ge=1, le=1024, doc="dimensions of z"),
    "hidden": Hyper(int, 64, ge=1, le=4096, doc="hidden units (MLPs) or base conv channels (images)"),
    "lr": Hyper(float, 2e-4, gt=0.0, le=1.0, doc="Adam's learning rate (both players)"),
    "lr_schedule": Hyper(str, "constant", choices=("constant", "cosine"),
                         doc="constant, or cosine down to 0 at the epochs budget (both players; no "
                             "plateau: a GAN has no validation loss)"),
}


def _honoured(declared: dict) -> dict:
    """The declaration without the loop's hyperparameters a GAN does not honour: no validation
    loss, so no early stopping (``patience``) and no validation split (``val_fraction``)."""
    return {k: v for k, v in declared.items() if k not in ("patience", "val_fraction")}


BN_BATCHES = 20   # batches of z that re-estimate the generator's batch-norm statistics


class GAN(nn.Module):
    """A generator and a discriminator; subclasses build them."""

    latent_dim: int

    def generate(self, z):
        return self.G(z)

    def d_logits(self, x):
        return self.D(x).flatten()


def adversarial_players(module: GAN) -> list[_train.Player]:
    """The two players, discriminator first (Adam with beta1 = 0.5 each, as in DCGAN); the
    training loop steps them in turn on each batch, with its clipping, schedule and checks."""

    def loss_d(m, real, g, shared):
        z = _torch.randn(len(real), m.latent_dim, generator=g, dtype=real.dtype)
        shared["fake"] = fake = m.generate(z)
        # D: -log D(real) - log(1 - D(fake)) = softplus(-l_real) + softplus(l_fake)
        return F.softplus(-m.d_logits(real)).mean() + F.softplus(m.d_logits(fake.detach())).mean()

    def loss_g(m, real, g, shared):
        # G (non-saturating), on the same fakes, judged by the updated D: -log D(G(z))
        return F.softplus(-m.d_logits(shared["fake"])).mean()

    return [_train.Player("loss_d", list(module.D.parameters()), loss_d, (0.5, 0.999)),
            _train.Player("loss_g", list(module.G.parameters()), loss_g, (0.5, 0.999))]


class _GANFamily:
    log_prob_kind = "none"
    taxonomy = "implicit"

    def _players(self, module):
        return adversarial_players(module)

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        raise NotImplementedError(f"{type(self).__name__} is an implicit model: it has no likelihood "
                                  "(log_prob_kind is 'none'); score its samples")


# ---------------------------------------------------------------------------
# points
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MLPGANConfig:
    n_out: int
    latent_dim: int
    hidden: int


class MLPGAN(GAN):
    def __init__(self, c: MLPGANConfig):
        super().__init__()
        self.latent_dim = c.latent_dim
        h = c.hidden
        self.G = nn.Sequential(nn.Linear(c.latent_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                               nn.Linear(h, c.n_out))
        self.D = nn.Sequential(nn.Linear(c.n_out, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2),
                               nn.Linear(h, 1))


class PointsGAN(_GANFamily, PointsDeep):
    """MLP generator and discriminator on (lon, lat); draws outside the rectangle rejected."""

    name, kinds = "gan", ("points",)
    mass_by = "samples"
    assumes = "the points are a learned function of Gaussian noise (no likelihood)"
    hyperparameters = _honoured({**PointsDeep.hyperparameters, **GAN_HYPERPARAMETERS,
                                 "latent_dim": Hyper(int, 8, ge=1, le=1024, doc="dimensions of z"),
                                 "lr": Hyper(float, 1e-3, gt=0.0, le=1.0,
                                             doc="Adam's learning rate (both players)")})

    def _config(self, X):
        return MLPGANConfig(2, self.latent_dim, self.hidden)

    def _module(self, config):
        return MLPGAN(config)

    def _draw_z(self, n, g):
        return self.module_.generate(_torch.randn(n, self.latent_dim, generator=g, dtype=self.dtype))


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DCGANConfig:
    height: int
    width: int
    levels: int
    latent_dim: int
    channels: int


class DCGenerator(nn.Module):
    """z -> sigmoid(b + net(z)): images in [0, 1], (B, H, W). DCGAN's generator: a linear map
    to a (4C, H/8, W/8) map, then three transposed convs that double the size, each followed
    by batch norm and a ReLU but the last."""

    def __init__(self, c: DCGANConfig, hp: int, wp: int):
        super().__init__()
        self.c = c
        C, h8, w8 = c.channels, hp // 8, wp // 8
        self.net = nn.Sequential(nn.Linear(c.latent_dim, 4 * C * h8 * w8, bias=False),
                                 nn.Unflatten(1, (4 * C, h8, w8)), nn.BatchNorm2d(4 * C), nn.ReLU(),
                                 nn.ConvTranspose2d(4 * C, 2 * C, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * C),
                                 nn.ReLU(),
                                 nn.ConvTranspose2d(2 * C, C, 4, 2, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU(),
                                 nn.ConvTranspose2d(C, 1, 4, 2, 1))
        self.pixel_bias = nn.Parameter(torch.zeros(c.height, c.width))

    def forward(self, z):
        return torch.sigmoid(self.net(z)[:, 0, :self.c.height, :self.c.width] + self.pixel_bias)


class DCGAN(GAN):
    def __init__(self, c: DCGANConfig):
        super().__init__()
        self.c, self.latent_dim = c, c.latent_dim
        self.hp, self.wp = padded(c.height, 8), padded(c.width, 8)
        C, h8, w8 = c.channels, self.hp // 8, self.wp // 8
        self.G = DCGenerator(c, self.hp, self.wp)
        self.D = nn.Sequential(nn.Conv2d(1, C, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Conv2d(C, 2 * C, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Conv2d(2 * C, 4 * C, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Flatten(), nn.Linear(4 * C * h8 * w8, 1))

    def d_logits(self, x):
        """x: (B, H, W) in [0, 1] (real images scaled the same way)."""
        h = F.pad(x.unsqueeze(1) * 2 - 1, (0, self.wp - self.c.width, 0, self.hp - self.c.height))
        return self.D(h).flatten()


def recalibrate_batch_norm(G: nn.Module, latent_dim: int, g: torch.Generator, *, batches: int = BN_BATCHES,
                           batch_size: int = 256) -> None:
    """Re-estimate the batch-norm layers' running statistics of the final generator from
    ``batches`` fixed batches of z (their cumulative average).

    In training a batch is normalised by its own mean and variance; at sampling time each image
    must not depend on the others in its batch, so eval mode uses the running statistics. The
    running averages kept during training mix generators of many steps ago; these are the last
    generator's own, so eval-mode samples match what it drew in training."""
    layers = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    G.train()
    with torch.no_grad():
        for _ in range(batches):
            G(_torch.randn(batch_size, latent_dim, generator=g, dtype=next(G.parameters()).dtype))
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    G.eval()


class ImageGAN(_GANFamily, DeepFamily):
    """DCGAN (batch norm in the generator, statistics re-estimated for sampling); samples
    rounded to the nearest level.

    Parameters
    ----------
    latent_dim : int, default 16
    hidden : int, default 32 (conv channels)
    epochs, max_steps, seconds, batch_size, lr, lr_schedule, grad_clip : the training loop
    (no early stopping).
    """

    name, kinds = "gan", ("image",)
    assumes = "the images are a learned function of Gaussian noise (no likelihood)"
    hyperparameters = _honoured({**DeepFamily.hyperparameters, **GAN_HYPERPARAMETERS,
                                 "hidden": Hyper(int, 32, ge=1, le=1024, doc="conv channels"),
                                 "batch_size": Hyper(int, 64, ge=1, le=65_536, doc="examples per gradient step")})

    def _prepare(self, X):
        return self._tensor(X) / (self.domain.levels - 1)

    def _config(self, X):
        d = self.domain
        return DCGANConfig(d.height, d.width, d.levels, self.latent_dim, self.hidden)

    def _module(self, config):
        return DCGAN(config)

    def _init_from_data(self, X):
        mean = np.clip(X.mean(axis=0) / (self.domain.levels - 1), 0.01, 0.99)
        with torch.no_grad():
            self.module_.G.pixel_bias.copy_(torch.as_tensor(np.log(mean) - np.log1p(-mean)))

    def _after_fit(self, X, rng):
        recalibrate_batch_norm(self.module_.G, self.latent_dim,
                               _torch.generator(_torch.seed_from(rng), self.device_))

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """G(z) in [0, 1] scaled to the levels and rounded to the nearest one (uint8)."""
        self._check_fitted()
        x = self._draw_in_batches(
            self._check_n(n_samples), 512,
            lambda m, g: self.module_.generate(_torch.randn(m, self.latent_dim, generator=g)), rng)
        return to_pixels(x * (self.domain.levels - 1), self.domain.levels)
