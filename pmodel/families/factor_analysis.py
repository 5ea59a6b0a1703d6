"""factor_analysis: factor analysis on images.

    v ~ N(mu, W^T W + Psi),   Psi diagonal

fitted by scikit-learn's ``FactorAnalysis`` (SVD-based maximum likelihood,
seeded from the fit's ``rng``); each pixel has its own noise variance, unlike
PPCA's one sigma^2. ``history_["loglik"]`` is scikit-learn's log-likelihood per
iteration (of the dequantised training images). The held-out score is the
dequantisation lower bound on log P(x), stated and derived in
``pmodel.families._linear_gaussian`` (``log_prob_kind = "lower_bound"``):
``log P(x) >= log p(x + 1/2) - tr(C^-1) / 24``.

Parameters: ``D + D k - k (k - 1) / 2 + D`` (mean, W up to rotation, Psi).

Failure modes: as PCA's (linear and Gaussian); a pixel that barely varies gets
a tiny noise variance and dominates the likelihood.
"""

from __future__ import annotations

import numpy as np

from pmodel.families._linear_gaussian import LinearGaussianImage


class ImageFactorAnalysis(LinearGaussianImage):
    """Factor analysis with ``n_components`` latent factors.

    Attributes
    ----------
    mean_ (D,), W_ (k, D), psi_ (D,) : the Gaussian
    """

    name = "factor_analysis"
    assumes = "images are a linear function of k Gaussian factors plus independent pixel noise"

    def _fit_gaussian(self, V: np.ndarray, seed: int) -> None:
        from sklearn.decomposition import FactorAnalysis

        fa = FactorAnalysis(n_components=self.n_components, random_state=seed).fit(V)
        self.mean_, self.W_, self.psi_ = fa.mean_, fa.components_, fa.noise_variance_
        self.history_ = {"loglik": [float(v) for v in fa.loglike_]}
        D, k = V.shape[1], self.n_components
        self.n_parameters_ = int(D + D * k - k * (k - 1) // 2 + D)
