"""bayes_net: a discrete Bayesian network whose graph is learnt by score (hill climbing, BIC).

    p(x) = prod_j p(x_j | x_pa(j))

Fitting, from the training rows:

1. the graph: pgmpy's hill climbing (``pgmpy.causal_discovery.HillClimbSearch``), from the
   empty graph, adding, removing or reversing one arc at a time while the score rises (BIC by
   default: the log-likelihood of the counts minus (log N / 2) per free parameter), each column
   with at most ``max_indegree`` parents;
2. the tables, from the counts with additive (Laplace/Lidstone) smoothing,
   ``p(x_j = k | c) = (n_j(c, k) + alpha) / (n(c) + alpha K_j)``, so that with alpha > 0 no
   held-out row gets probability 0.

log_prob is exact (a sum of table entries), sampling ancestral (each column given its
parents, in topological order, from the run's rng), and the model saves as arrays (the
parents and the tables), never a pickle. The columns are named 0..d-1 in the search, so the
search visits candidates in the same order in every process (Python's string hashing is
salted per process; integer hashing is not).

Failure modes: hill climbing stops at a local maximum of the score (a wrong arc can stay);
a column with more parents than ``max_indegree`` in the truth is approximated; at small N,
BIC keeps few arcs (its penalty grows with each table's size); the search costs about
d^2 candidate arcs a step (4-5 s for alarm's 37 columns at 2000 rows on one core).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from pmodel.families import _cpt
from pmodel.families.base import ALPHA, Family, Hyper, check_alpha
from pmodel.families.domains import CategoricalDomain

#: our names of pgmpy's scores for discrete data
SCORES = {"bic": "bic-d", "aic": "aic-d", "bdeu": "bdeu", "k2": "k2"}


def learn_parents(X: np.ndarray, shape: tuple[int, ...], *, score: str = "bic",
                  max_indegree: int = 3) -> list[tuple[int, ...]]:
    """Each column's parents (sorted column indices), by pgmpy's hill climbing on ``score``.

    Parameters
    ----------
    X : (n, d) int codes; shape : categories per column (states never seen still count).
    """
    import pandas as pd

    d = len(shape)
    if d == 1:
        return [()]
    frame = pd.DataFrame({j: pd.Categorical(X[:, j], categories=range(shape[j])) for j in range(d)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.causal_discovery import HillClimbSearch

        search = HillClimbSearch(scoring_method=SCORES[score], max_indegree=max_indegree,
                                 return_type="dag", show_progress=False).fit(frame)
    graph = search.causal_graph_
    return [tuple(sorted(int(p) for p in graph.predecessors(j))) for j in range(d)]


class BayesianNetwork(Family):
    """A discrete Bayesian network: graph by hill climbing on a score, tables by smoothed counts.

    Parameters
    ----------
    alpha : float, default 0.5
        Additive smoothing of the tables (0: maximum likelihood; 0.5: Jeffreys' prior).
    max_indegree : int, default 3
        The most parents a column may have (bounds the search and each table's size).
    score : {"bic", "aic", "bdeu", "k2"}, default "bic"
        The score hill climbing maximises.

    Attributes
    ----------
    parents_ : list of ndarray
        ``parents_[j]``: column j's parents, sorted.
    edges_ : ndarray (n_arcs, 2)
        The learnt arcs, rows (parent, child), sorted.
    order_ : ndarray (d,)
        A topological order (parents first).
    log_cpt_ : list of ndarray
        ``log_cpt_[j][c, k] = log p(x_j = k | parents in configuration c)`` (C order over
        ``parents_[j]``; see ``pmodel.families._cpt``).

    Examples
    --------
    >>> from pmodel.datasets import fashion
    >>> X = fashion.sample_codes(5000, rng=np.random.default_rng(0))
    >>> model = BayesianNetwork(CategoricalDomain(fashion.SCHEMA.shape)).fit(X)
    >>> sorted(tuple(sorted(e)) for e in model.edges_.tolist())  # fashion's true tree
    [(0, 3), (1, 2), (2, 4), (3, 4)]
    """

    name, kinds = "bayes_net", ("categorical",)
    # p(x) = prod_j p(x_j | x_pa(j)): conditionals in a topological order, an autoregressive
    # factorisation with a learnt, sparse set of conditioning columns
    taxonomy = "autoregressive"
    hyperparameters = {
        "alpha": replace(ALPHA, default=0.5),
        "max_indegree": Hyper(int, 3, ge=1, le=8, doc="the most parents a column may have"),
        "score": Hyper(str, "bic", choices=tuple(SCORES), doc="the score hill climbing maximises"),
    }
    assumes = ("each column depends only on a few others (its parents in a learnt directed "
               "acyclic graph), found by hill climbing on the BIC score")
    #: it learns a graph between the columns (``edges_``), scored against a known network's
    has_structure = True

    def __init__(self, domain: CategoricalDomain, alpha: float = 0.5, max_indegree: int = 3,
                 score: str = "bic"):
        super().__init__(domain, alpha=alpha, max_indegree=max_indegree, score=score)

    def fit(self, X, *, rng: np.random.Generator | None = None) -> "BayesianNetwork":
        X = self._check_train(X)
        alpha = check_alpha(self.alpha)
        shape = self.domain.shape
        parents = learn_parents(X, shape, score=self.score, max_indegree=self.max_indegree)
        self.parents_ = [np.array(ps, dtype=np.int64) for ps in parents]
        self.edges_ = _cpt.edges(parents)
        self.order_ = _cpt.topological_order(parents)
        self.log_cpt_ = _cpt.smoothed_log_cpts(X, parents, shape, alpha)
        self.n_parameters_ = _cpt.n_free_parameters(parents, shape)
        return self

    def log_prob(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X)
        inside = self.domain.in_support(X)
        Xs = np.where(inside[:, None], X, 0).astype(np.int64)
        lp = _cpt.log_prob(Xs, self.parents_, self.log_cpt_, self.domain.shape)
        return np.where(inside, lp, -np.inf)

    def sample(self, n_samples: int, *, rng: np.random.Generator) -> np.ndarray:
        """Ancestral sampling: each column given its parents, in ``order_``."""
        self._check_fitted()
        return _cpt.sample(self._check_n(n_samples), self.parents_, self.log_cpt_, self.order_, rng)
