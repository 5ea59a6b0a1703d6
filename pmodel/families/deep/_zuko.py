"""Points flows built with zuko (NSF for the flow family, MAF for the autoregressive one).

A zuko flow maps data ``x`` to base noise ``z = f(x)`` with ``z ~ N(0, I)``; the
change of variables gives the exact density

    log p(x) = log N(f(x); 0, I) + log |det df/dx|

(zuko's ``NormalizingFlow.log_prob``). Samples invert it: ``x = f^-1(z)``,
with ``z`` drawn from the family's own generator (zuko's ``sample`` would draw
from torch's global one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pmodel.families.base import Hyper
from pmodel.families.deep import _torch
from pmodel.families.deep._base import PointsDeep

ZUKO_HYPERPARAMETERS = {
    "transforms": Hyper(int, 4, ge=1, le=32, doc="flow transformations"),
    "hidden": Hyper(int, 64, ge=2, le=4096, doc="width of the two hidden layers of each transformation's net"),
}


@dataclass(frozen=True)
class ZukoConfig:
    kind: str          # "nsf" | "maf"
    features: int
    transforms: int
    hidden: int
    bins: int = 8


def zuko_flow(config: ZukoConfig) -> torch.nn.Module:
    import zuko

    common = dict(transforms=config.transforms, hidden_features=(config.hidden, config.hidden))
    if config.kind == "nsf":
        return zuko.flows.NSF(config.features, bins=config.bins, **common)
    if config.kind == "maf":
        return zuko.flows.MAF(config.features, **common)
    raise ValueError(f"unknown zuko flow {config.kind!r}")


class ZukoPoints(PointsDeep):
    """A zuko flow on standardised lon/lat, renormalised to the rectangle (exact)."""

    flow_kind: str = "nsf"
    hyperparameters = {**PointsDeep.hyperparameters, **ZUKO_HYPERPARAMETERS,
                       "batch_size": Hyper(int, 256, ge=1, le=65_536, doc="examples per gradient step")}

    def _config(self, X):
        return ZukoConfig(self.flow_kind, 2, self.transforms, self.hidden, getattr(self, "bins", 8))

    def _module(self, config):
        return zuko_flow(config)

    def _loss(self, module, batch, g):
        # maximum likelihood on standardised points: mean of -log p_z(z)
        return -module().log_prob(batch).mean()

    def _log_prob_z(self, Z):
        return self.module_().log_prob(Z)

    def _draw_z(self, n, g):
        flow = self.module_()
        eps = torch.randn(n, 2, generator=g, device=g.device, dtype=self.dtype)
        return flow.transform.inv(eps)

    def encode(self, X) -> np.ndarray:
        """The base-space code ``z = f((x - shift) / scale)``, (n, 2)."""
        self._check_fitted()
        X = self.domain.check(X)
        Z = self._tensor((X - self.shift_) / self.scale_)
        return self._in_batches(lambda z: self.module_().transform(z), Z, 8192)


__all__ = ["ZukoPoints", "ZukoConfig", "_torch"]
