"""pca: probabilistic PCA on images (Tipping and Bishop, 1999).

    v ~ N(mu, W^T W + sigma^2 I),   W = diag(sqrt(lambda_i - sigma^2)) U_k

with U_k the top k principal directions of the (dequantised) training images,
lambda_i their variances and sigma^2 the mean variance of the other
directions: the maximum-likelihood PPCA, read off scikit-learn's ``PCA``.
The held-out score is the dequantisation lower bound on log P(x), stated and
derived in ``pmodel.families._linear_gaussian`` (``log_prob_kind =
"lower_bound"``): ``log P(x) >= log p(x + 1/2) - tr(C^-1) / 24``.

Parameters: ``D + D k - k (k - 1) / 2 + 1`` (mean, W up to rotation, sigma^2).

Failure modes: a linear, Gaussian model of images: samples are blurry blends
with Gaussian pixel noise; a jar's edge moves nonlinearly with its size, so k
linear directions describe the jars only approximately.
"""

from __future__ import annotations

import numpy as np

from pmodel.families._linear_gaussian import LinearGaussianImage


class ImagePCA(LinearGaussianImage):
    """Probabilistic PCA with ``n_components`` latent dimensions.

    Attributes
    ----------
    mean_ (D,), W_ (k, D), psi_ (D,) : the Gaussian (psi_ = sigma^2 everywhere)
    explained_variance_ (k,) : the top k variances, lambda_i
    """

    name = "pca"
    assumes = "images are a linear function of k Gaussian factors plus isotropic noise"

    def _fit_gaussian(self, V: np.ndarray, seed: int) -> None:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=self.n_components, svd_solver="full").fit(V)
        sigma2 = float(pca.noise_variance_)
        self.mean_ = pca.mean_
        self.explained_variance_ = pca.explained_variance_
        self.W_ = np.sqrt(np.maximum(pca.explained_variance_ - sigma2, 0.0))[:, None] * pca.components_
        self.psi_ = np.full(V.shape[1], sigma2)
        D, k = V.shape[1], self.n_components
        self.n_parameters_ = int(D + D * k - k * (k - 1) // 2 + 1)
