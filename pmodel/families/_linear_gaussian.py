"""Linear-Gaussian latent models on images (probabilistic PCA, factor analysis), shared maths.

    z ~ N(0, I_k),   v = mu + W^T z + e,   e ~ N(0, Psi)   =>   v ~ N(mu, C),  C = W^T W + Psi

on continuous pixel values v in [0, levels)^D. PPCA has Psi = sigma^2 I, factor
analysis a diagonal Psi. Both are densities; an 8-bit image x is the cube
x + [0, 1)^D, whose probability ``P(x) = int_{[0,1)^D} p(x + u) du`` has no
closed form. What pmodel reports is the uniform-dequantisation lower bound
(Jensen's inequality), which for a Gaussian is exact in closed form::

    log P(x) >= E_{u ~ U[0,1)^D} log p(x + u) = log p(x + 1/2) - tr(C^{-1}) / 24

(``E[(m + u')^T C^{-1} (m + u')] = m^T C^{-1} m + tr(C^{-1}) / 12`` for u' = u - 1/2,
whose covariance is I / 12). So ``log_prob_kind = "lower_bound"``: the score
``heldout_loglik_bound`` (and its bits/dim, an upper bound on the true
bits/dim) holds it, never ``heldout_loglik``. The cubes of the domain's images
cover [0, levels)^D only, and the Gaussian's mass outside is lost, so the
P(x) sum to less than 1 and the bounds to less still.

Fitting dequantises the training images with the fit's ``rng`` (v = x + u,
u ~ U[0,1)^D), so that pixels constant in the data (a white corner) get
variance 1/12 and not 0. ``encode`` is the posterior mean
``E[z | v = x + 1/2] = (I + W Psi^-1 W^T)^-1 W Psi^-1 (v - mu)``; ``sample`` draws
v from the model and returns ``floor(v)`` clipped to 0..levels-1 (the image
whose cube holds v; mass outside the domain lands on its edge).
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from pmodel.families.base import Family, Hyper
from pmodel.families.domains import ImageDomain

N_COMPONENTS = Hyper(int, 8, ge=1, le=100_000, doc="k, dimensions of the latent space")


class LinearGaussianImage(Family):
    """Base class: subclasses fit ``mean_`` (D,), ``W_`` (k, D), ``psi_`` (D,) in :meth:`_fit_gaussian`."""

    kinds = ("image",)
    taxonomy = "latent variable"  # x = W z + noise, z ~ N(0, I) (PCA, factor analysis)
    log_prob_kind = "lower_bound"
    hyperparameters = {"n_components": N_COMPONENTS}

    def __init__(self, domain: ImageDomain, n_components: int = 8):
        super().__init__(domain, n_components=n_components)

    @abstractmethod
    def _fit_gaussian(self, V: np.ndarray, seed: int) -> None:
        """Fit the Gaussian (PCA or factor analysis) to the dequantised images ``V``."""

    def fit(self, X, *, rng: np.random.Generator | None = None):
        X = self._check_train(X)
        D, k = self.domain.n_features, self.n_components
        if k >= min(len(X), D):
            raise ValueError(f"{self.name}: n_components={k} must be below both the number of training "
                             f"images ({len(X)}) and of pixels ({D})")
        rng = rng if rng is not None else np.random.default_rng(0)
        V = X.reshape(len(X), D).astype(np.float64) + rng.random((len(X), D))  # dequantised
        self._fit_gaussian(V, int(rng.integers(2**31 - 1)))
        self._chol = None
        return self

    # -- the Gaussian --------------------------------------------------------
    def _state(self) -> dict:
        return {k: v for k, v in super()._state().items() if k != "_chol"}

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        self._chol = None

    def covariance(self) -> np.ndarray:
        """C = W^T W + diag(Psi), (D, D)."""
        return self.W_.T @ self.W_ + np.diag(self.psi_)

    def _cholesky(self) -> np.ndarray:
        if self._chol is None:
            self._chol = np.linalg.cholesky(self.covariance())
        return self._chol

    def log_density(self, V: np.ndarray) -> np.ndarray:
        """log N(v; mu, C) of continuous images V (n, D), nats."""
        from scipy.linalg import solve_triangular

        L = self._cholesky()
        z = solve_triangular(L, (V - self.mean_).T, lower=True)  # (D, n)
        D = len(self.mean_)
        return -0.5 * (z**2).sum(axis=0) - np.log(np.diag(L)).sum() - 0.5 * D * np.log(2 * np.pi)

    def trace_precision(self) -> float:
        """tr(C^{-1}) = ||L^{-1}||_F^2."""
        from scipy.linalg import solve_triangular

        L = self._cholesky()
        return float((solve_triangular(L, np.eye(len(L)), lower=True) ** 2).sum())

    # -- the contract ----------------------------------------------------------
    def log_prob(self, X) -> np.ndarray:
        """The dequantisation lower bound on log P(x), nats: log p(x + 1/2) - tr(C^-1) / 24."""
        self._check_fitted()
        return self._log_prob_in_support(self.domain.check_shape(X), lambda x: self.log_density(
            x.reshape(len(x), -1).astype(np.float64) + 0.5) - self.trace_precision() / 24.0)

    def encode(self, X) -> np.ndarray:
        """Posterior mean of the latent code, E[z | v = x + 1/2]: (n, k)."""
        self._check_fitted()
        X = self.domain.check_shape(X)
        V = X.reshape(len(X), -1).astype(np.float64) + 0.5
        Wp = self.W_ / self.psi_  # W Psi^-1, (k, D)
        M = np.eye(len(self.W_)) + Wp @ self.W_.T  # (k, k)
        return np.linalg.solve(M, Wp @ (V - self.mean_).T).T

    def decode(self, Z) -> np.ndarray:
        """The mean image of codes Z (n, k): mu + Z W, continuous (n, height, width)."""
        self._check_fitted()
        V = self.mean_ + np.asarray(Z, dtype=np.float64) @ self.W_
        return V.reshape(len(V), *self.domain.event_shape)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        n = self._check_n(n_samples)
        k, D = self.W_.shape
        V = self.mean_ + rng.standard_normal((n, k)) @ self.W_ + rng.standard_normal((n, D)) * np.sqrt(self.psi_)
        X = np.clip(np.floor(V), 0, self.domain.levels - 1)
        return X.reshape(n, *self.domain.event_shape).astype(np.uint8)
