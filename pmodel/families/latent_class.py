"""latent_class: a mixture of K naive Bayes components, fitted by EM.

    p(x) = sum_k w_k prod_j theta_kj[x_j]

A hidden class z in 1..K explains the dependencies between the features:
given the class, the features are independent (naive Bayes); over the classes
they are not. The latent code of an example is its posterior over the classes,
``p(z = k | x) = w_k p(x | k) / p(x)`` (``encode``).

Fitting: expectation-maximisation in log space, from ``n_init`` random starts
(k-means++ seeds on the one-hot rows, drawn with the fit's ``rng``, each
example given to its nearest seed), keeping the start with the best final
objective. The M-step smooths each component's
tables additively (Laplace/Lidstone, the responsibility-weighted counts plus
``alpha``), which makes it a MAP-EM step under a symmetric Dirichlet prior, so
what EM never decreases is the penalised log-likelihood::

    objective = sum_i log p(x_i) + alpha * sum_{k,j,v} log theta_kj[v]

``history_`` keeps, per iteration of the chosen start, the mean log-likelihood
per example (``loglik``) and the objective per example (``objective``); the last
entries are those of the fitted parameters, also when ``max_iter`` ended EM.

Parameters: ``(K - 1) + K * sum_j (levels_j - 1)``.

- categorical: the columns of a table (fashion: 4032 cells, 23 parameters per class).
- image: every pixel a column with ``levels`` values (1024 x 255 parameters per class).

Failure modes: EM finds a local optimum (hence the restarts); a class that
loses all its examples keeps weight 0; alpha must be > 0 (with alpha = 0 a
class can give an example probability 0 and the responsibilities break down).
"""

from __future__ import annotations

import numpy as np

from pmodel.families.base import Family, Hyper
from pmodel.families.domains import CategoricalDomain, ImageDomain

# ---------------------------------------------------------------------------
# The maths: columns of codes, one-hot as a sparse matrix
# ---------------------------------------------------------------------------


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def one_hot(codes: np.ndarray, offsets: np.ndarray, n_values: int):
    """(n, d) codes -> sparse (n, n_values) with a 1 at ``offsets[j] + codes[i, j]``."""
    from scipy.sparse import csr_matrix

    n, d = codes.shape
    cols = (codes + offsets[:-1]).ravel()
    return csr_matrix((np.ones(n * d), (np.repeat(np.arange(n), d), cols)), shape=(n, n_values)).tocsc()


def m_step(H, r: np.ndarray, sizes: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and smoothed tables from responsibilities r (n, K).

    ``theta_kj[v] = (sum_i r_ik [x_ij = v] + alpha) / (N_k + alpha * levels_j)``;
    ``w_k = N_k / n``. Returns (log_weights (K,), log_theta (K, n_values)).
    """
    Nk = r.sum(axis=0)  # (K,)
    counts = np.asarray(H.T @ r).T  # (K, n_values); H is CSC, so H.T is a fast CSR product
    log_den = np.log(Nk[:, None] + alpha * sizes[None, :].astype(np.float64))  # (K, d): one per column
    log_theta = np.log(counts + alpha) - np.repeat(log_den, sizes, axis=1)
    with np.errstate(divide="ignore"):
        log_w = np.log(Nk / Nk.sum())
    return log_w, log_theta


def joint_log_lik(H, log_w: np.ndarray, log_theta: np.ndarray) -> np.ndarray:
    """log w_k + log p(x_i | k), (n, K)."""
    return np.asarray(H @ log_theta.T) + log_w[None, :]


def seed_responsibilities(H, K: int, rng: np.random.Generator) -> np.ndarray:
    """Hard responsibilities (n, K) from k-means++ seeding on the one-hot rows.

    K distinct-ish examples are drawn, each with probability proportional to its
    squared distance to the nearest one drawn before (the first uniformly), and
    every example is given to its nearest. For one-hot rows the squared
    Euclidean distance is twice the number of features that differ.
    """
    n, d = H.shape[0], int(H[0].sum())
    first = int(rng.integers(n))
    matches = np.asarray((H @ H[first].T).todense()).ravel()[:, None]  # (n, 1) features in common
    for _ in range(1, K):
        dist = 2.0 * (d - matches.max(axis=1))
        p = dist / dist.sum() if dist.sum() > 0 else np.full(n, 1.0 / n)
        c = int(rng.choice(n, p=p))
        matches = np.column_stack([matches, np.asarray((H @ H[c].T).todense()).ravel()])
    r = np.zeros((n, K))
    r[np.arange(n), matches.argmax(axis=1)] = 1.0
    return r


def em(H, sizes: np.ndarray, K: int, alpha: float, max_iter: int, tol: float,
       rng: np.random.Generator) -> dict:
    """One run of EM from k-means++ seeds; its parameters and per-iteration figures.

    The last ``loglik`` and ``objective`` are always those of the parameters returned: when
    ``max_iter`` M-steps end the loop, the final parameters are scored once more (so the
    best start is picked on what it returns, not on its parameters one step before)."""
    n = H.shape[0]
    log_w, log_theta = m_step(H, seed_responsibilities(H, K, rng), sizes, alpha)
    loglik, objective = [], []

    def e_step() -> tuple[np.ndarray, np.ndarray]:
        joint = joint_log_lik(H, log_w, log_theta)
        lp = _logsumexp(joint, axis=1)
        loglik.append(float(lp.mean()))
        objective.append(float((lp.sum() + alpha * log_theta.sum()) / n))
        return joint, lp

    for _ in range(max_iter):
        joint, lp = e_step()
        if len(objective) > 1 and objective[-1] - objective[-2] < tol * max(1.0, abs(objective[-1])):
            break
        r = np.exp(joint - lp[:, None])
        log_w, log_theta = m_step(H, r, sizes, alpha)  # M-step
    else:  # max_iter M-steps ran: score the parameters they ended on
        e_step()
    return {"log_w": log_w, "log_theta": log_theta, "loglik": loglik, "objective": objective}


# ---------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------


class LatentClass(Family):
    """A mixture of naive Bayes components (latent class analysis), by EM.

    Parameters
    ----------
    n_components : int, default 10
        K, the number of classes.
    alpha : float, default 0.1
        Additive smoothing of each class's tables (> 0).
    n_init : int, default 3
        Random starts; the one with the best final objective is kept.
    max_iter : int, default 200
        EM iterations per start at most.
    tol : float, default 1e-6
        Stop when the objective per example rises by less than ``tol`` (relative).

    Attributes
    ----------
    log_weights_ : ndarray (K,)
    log_theta_ : ndarray (K, n_values)
        Every column's table side by side (column j at ``offsets_[j]:offsets_[j + 1]``).
    sizes_ : ndarray (d,), levels of each column

    Examples
    --------
    >>> from pmodel.datasets import fashion
    >>> X = fashion.sample_codes(500, rng=np.random.default_rng(0))
    >>> m = LatentClass(CategoricalDomain(fashion.SCHEMA.shape), n_components=4)
    >>> m.fit(X, rng=np.random.default_rng(0)).encode(X[:2]).shape
    (2, 4)
    """

    name, kinds = "latent_class", ("categorical", "image")
    taxonomy = "latent variable"
    hyperparameters = {
        "n_components": Hyper(int, 10, ge=1, le=10_000, doc="K, the number of latent classes"),
        "alpha": Hyper(float, 0.1, gt=0.0, le=1e6, doc="additive smoothing of each class's tables (> 0)"),
        "n_init": Hyper(int, 3, ge=1, le=1000, doc="random starts of EM"),
        "max_iter": Hyper(int, 200, ge=1, le=1_000_000, doc="EM iterations per start at most"),
        "tol": Hyper(float, 1e-6, gt=0.0, le=1.0, doc="relative rise of the objective that stops EM"),
    }
    assumes = "a hidden class explains the dependencies; given it, the features are independent"

    def __init__(self, domain: CategoricalDomain | ImageDomain, n_components: int = 10,
                 alpha: float = 0.1, n_init: int = 3, max_iter: int = 200, tol: float = 1e-6):
        super().__init__(domain, n_components=n_components, alpha=alpha, n_init=n_init,
                         max_iter=max_iter, tol=tol)

    # columns of codes whatever the kind
    def _sizes(self) -> np.ndarray:
        d = self.domain
        if d.kind == "categorical":
            return np.asarray(d.shape, dtype=np.int64)
        return np.full(d.n_features, d.levels, dtype=np.int64)

    def _codes(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(n, d) int64 codes (0 where outside the support) and the in-support mask."""
        if self.domain.kind == "image":
            X = self.domain.check_shape(X)
        X = np.asarray(X)
        inside = self.domain.in_support(X)
        flat = X.reshape(len(X), -1).astype(np.int64)
        return np.where(inside[:, None], flat, 0), inside

    def _one_hot(self, codes: np.ndarray):
        return one_hot(codes, self.offsets_, int(self.offsets_[-1]))

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "LatentClass":
        X = self._check_train(X)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.sizes_ = self._sizes()
        self.offsets_ = np.concatenate([[0], np.cumsum(self.sizes_)]).astype(np.int64)
        H = self._one_hot(X.reshape(len(X), -1).astype(np.int64))
        runs = [em(H, self.sizes_, self.n_components, self.alpha, self.max_iter, self.tol, rng)
                for _ in range(self.n_init)]
        best = max(runs, key=lambda run: run["objective"][-1])
        self.log_weights_, self.log_theta_ = best["log_w"], best["log_theta"]
        self.history_ = {"loglik": best["loglik"], "objective": best["objective"]}
        self.final_objective_per_start_ = [run["objective"][-1] for run in runs]
        K = self.n_components
        self.n_parameters_ = int((K - 1) + K * int((self.sizes_ - 1).sum()))
        return self

    def _joint(self, X) -> tuple[np.ndarray, np.ndarray]:
        codes, inside = self._codes(X)
        return joint_log_lik(self._one_hot(codes), self.log_weights_, self.log_theta_), inside

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        joint, inside = self._joint(X)
        return np.where(inside, _logsumexp(joint, axis=1), -np.inf)

    def encode(self, X) -> np.ndarray:
        """Posterior over the classes, ``p(z = k | x)``: (n, K), rows sum to 1."""
        self._check_fitted()
        joint, _ = self._joint(X)
        return np.exp(joint - _logsumexp(joint, axis=1)[:, None])

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """A class from the weights, then every column from that class's table."""
        self._check_fitted()
        n = self._check_n(n_samples)
        w = np.exp(self.log_weights_)
        z = rng.choice(len(w), size=n, p=w / w.sum())
        d = len(self.sizes_)
        out = np.empty((n, d), dtype=np.int64)
        u = rng.random((n, d))
        for j in range(d):
            block = np.exp(self.log_theta_[:, self.offsets_[j]:self.offsets_[j + 1]])  # (K, levels_j)
            cdf = np.cumsum(block, axis=1)[z]  # (n, levels_j)
            out[:, j] = np.minimum((cdf <= (u[:, j] * cdf[:, -1])[:, None]).sum(axis=1), self.sizes_[j] - 1)
        if self.domain.kind == "image":
            return out.reshape(n, *self.domain.event_shape).astype(np.uint8)
        return out
