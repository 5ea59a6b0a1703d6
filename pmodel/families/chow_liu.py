"""chow_liu: the best tree of pairwise dependencies (Chow and Liu, 1968).

    p(x) = p(x_r) prod_{j != r} p(x_j | x_pa(j))

over the maximum spanning tree of the pairwise mutual informations, which is
the tree-shaped distribution closest in KL to the training data's (Chow and
Liu's theorem). Fitting, from the counts of the training rows:

1. pairwise mutual information from smoothed counts (additive
   (Laplace/Lidstone) smoothing, ``n_ij(a, b) + alpha``; alpha = 0 gives the
   plug-in estimate pgmpy and scikit-learn compute);
2. the maximum spanning tree of those weights (SciPy's minimum spanning tree
   of ``-(I + 1)``, so that every pair is an edge candidate even when its
   information is 0);
3. rooted at the first column, conditional tables
   ``p(b | a) = (n(a, b) + alpha) / (n(a) + alpha * K_b)``; a parent value
   never seen (alpha = 0) gets a uniform row, which changes no probability
   (its rows have p = 0 anyway) and keeps every table normalised.

X

Failure modes: only one parent per column (a column that depends on two
others is approximated); with few rows the tree follows sampling noise, and
alpha = 0 gives -inf to any pair of values unseen together along an edge.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pmodel.families import _cpt
from pmodel.families.base import ALPHA, Family, check_alpha
from pmodel.families.domains import CategoricalDomain

# ---------------------------------------------------------------------------
# The maths
# ---------------------------------------------------------------------------


def pair_counts(X: np.ndarray, i: int, j: int, shape: tuple[int, ...]) -> np.ndarray:
    """Counts of (x_i, x_j) value pairs, (K_i, K_j) int64."""
    return np.bincount(X[:, i] * shape[j] + X[:, j], minlength=shape[i] * shape[j]).reshape(shape[i], shape[j])


def mutual_information(counts: np.ndarray, alpha: float) -> float:
    """I(a; b) in nats of the smoothed joint ``(counts + alpha) / (N + alpha K_a K_b)``."""
    joint = counts + alpha
    joint = joint / joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa * pb)[nz])).sum())


def mutual_information_matrix(X: np.ndarray, shape: tuple[int, ...], alpha: float) -> np.ndarray:
    """Pairwise mutual information of the columns, (d, d), zero diagonal."""
    d = len(shape)
    mi = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1, d):
            mi[i, j] = mi[j, i] = mutual_information(pair_counts(X, i, j, shape), alpha)
    return mi


def maximum_spanning_tree(weights: np.ndarray) -> list[tuple[int, int]]:
    """Edges (i < j) of a maximum spanning tree of a complete graph with ``weights`` (d, d)."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    d = len(weights)
    # -(w + 1) < 0 for every pair: no weight is 0, which SciPy would read as "no edge"
    neg = np.triu(-(weights + 1.0), k=1)
    tree = minimum_spanning_tree(neg).tocoo()
    return sorted((int(min(a, b)), int(max(a, b))) for a, b in zip(tree.row, tree.col)) if d > 1 else []


def orient(edges: list[tuple[int, int]], d: int, root: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Parents (d,) with -1 for the root, and a topological order (d,), by breadth-first search."""
    neighbours: dict[int, list[int]] = {j: [] for j in range(d)}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent = np.full(d, -1, dtype=np.int64)
    order, seen = [root], {root}
    for node in order:
        for nb in sorted(neighbours[node]):
            if nb not in seen:
                seen.add(nb)
                parent[nb] = node
                order.append(nb)
    return parent, np.array(order, dtype=np.int64)


def _log_conditional(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Row-wise log((counts + alpha) / (row total + alpha K)); uniform rows where nothing was counted."""
    K = counts.shape[1]
    total = counts.sum(axis=1, keepdims=True) + alpha * K
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(counts + alpha) - np.log(total)
    return np.where(total > 0, out, -np.log(K))


# ---------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------


class ChowLiuTree(Family):
    """A tree of pairwise dependencies between categorical columns.

    Parameters
    ----------
    alpha : float, default 1.0
        Additive smoothing of the pairwise counts (mutual information) and of
        the conditional tables (0: maximum likelihood, 1: Laplace).

    Attributes
    ----------
    edges_ : ndarray (d - 1, 2)
        The tree's edges, (i, j) with i < j, sorted.
    parent_ : ndarray (d,)
        Each column's parent, -1 for the root (column 0).
    order_ : ndarray (d,)
        A topological order (parents first).
    mutual_information_ : ndarray (d, d)
    log_cpt_ : list of ndarray
        ``log_cpt_[j][a, b] = log p(x_j = b | x_parent = a)``; the root's has one row.

    Examples
    --------
    >>> from pmodel.datasets import fashion
    >>> X = fashion.sample_codes(5000, rng=np.random.default_rng(0))
    >>> model = ChowLiuTree(CategoricalDomain(fashion.SCHEMA.shape)).fit(X)
    >>> model.edges_.tolist()   # hair_type (4) is linked to hair colour (3) and clothing type (2)
    [[0, 3], [1, 2], [2, 4], [3, 4]]
    """

    name, kinds = "chow_liu", ("categorical",)
    # p(x) = prod_i p(x_i | x_parent(i)): conditionals in a tree order, an autoregressive factorisation
    taxonomy = "autoregressive"
    hyperparameters = {"alpha": replace(ALPHA, default=1.0)}
    assumes = "each column depends on at most one other (a tree of pairwise dependencies)"
    #: it learns a graph between the columns (``edges_``), scored against a known network's
    has_structure = True

    def __init__(self, domain: CategoricalDomain, alpha: float = 1.0):
        super().__init__(domain, alpha=alpha)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "ChowLiuTree":
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        shape = self.domain.shape
        d = len(shape)
        self.mutual_information_ = mutual_information_matrix(X, shape, alpha)
        edges = maximum_spanning_tree(self.mutual_information_)
        self.edges_ = np.array(edges, dtype=np.int64).reshape(-1, 2)
        self.parent_, self.order_ = orient(edges, d, root=0)
        self.log_cpt_ = []
        for j in range(d):
            p = int(self.parent_[j])
            counts = (np.bincount(X[:, j], minlength=shape[j])[None, :] if p < 0
                      else pair_counts(X, p, j, shape))
            self.log_cpt_.append(_log_conditional(counts, alpha))
        self.n_parameters_ = int(sum((1 if self.parent_[j] < 0 else shape[self.parent_[j]]) * (shape[j] - 1)
                                     for j in range(d)))
        return self

    @property
    def parents_(self) -> list[list[int]]:
        """Each column's parent set in ``pmodel.families._cpt``'s form: [] for the root."""
        return [[] if p < 0 else [int(p)] for p in self.parent_]

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X)
        inside = self.domain.in_support(X)
        Xs = np.where(inside[:, None], X, 0).astype(np.int64)
        lp = _cpt.log_prob(Xs, self.parents_, self.log_cpt_, self.domain.shape)
        return np.where(inside, lp, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Ancestral sampling: the root, then each column given its parent, in ``order_``."""
        self._check_fitted()
        return _cpt.sample(self._check_n(n_samples), self.parents_, self.log_cpt_, self.order_, rng)

    def tree_edges(self, names=None) -> set[frozenset]:
        """The tree's edges as unordered pairs (of column names when given)."""
        self._check_fitted()
        label = (lambda j: names[j]) if names is not None else int  # noqa: E731
        return {frozenset((label(a), label(b))) for a, b in self.edges_}
