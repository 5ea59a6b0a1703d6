"""Conditional probability tables over categorical columns: the maths of a discrete
Bayesian network, shared by the published networks' truth (``pmodel.datasets.bn``) and
the ``bayes_net`` family.

    p(x) = prod_j p(x_j | x_pa(j))

Column ``j`` has parents ``pa(j)`` (column indices, in a fixed order) and a table of
log-probabilities ``log_cpt[j][c, k] = log p(x_j = k | x_pa(j) = c)``, where ``c`` is the
parents' values read as one mixed-radix number (C order over ``pa(j)`` as listed; 0 for a
column without parents, whose table has one row). Everything is vectorised per column:
a pass over the columns in topological order samples or scores all rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The most entries one column's table may have (parent configurations x states): 10^7
#: float64, 80 MB. A learnt parent set past it is refused rather than allocated.
MAX_TABLE_ENTRIES = 10**7


def parent_config(X: np.ndarray, parents: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Each row's parent configuration for one column, (n,) int64 (0 without parents).

    ``X`` : (n, d) int codes, every code inside ``shape``.
    """
    if len(parents) == 0:
        return np.zeros(len(X), dtype=np.int64)
    return np.ravel_multi_index(tuple(X[:, p] for p in parents), tuple(shape[p] for p in parents))


def n_configs(parents: Sequence[int], shape: Sequence[int]) -> int:
    """Number of parent configurations (rows of the column's table)."""
    out = 1
    for p in parents:
        out *= int(shape[p])
    return out


def log_prob(X: np.ndarray, parents: Sequence[Sequence[int]], log_cpts: Sequence[np.ndarray],
             shape: Sequence[int]) -> np.ndarray:
    """``sum_j log_cpt[j][c_j(x), x_j]`` for each row, (n,) float64, nats.

    ``X`` must be inside the domain (callers map rows outside it to -inf themselves).
    """
    total = np.zeros(len(X))
    for j, table in enumerate(log_cpts):
        total += table[parent_config(X, parents[j], shape), X[:, j]]
    return total


def draw(log_rows: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One inverse-CDF draw from row ``rows[i]`` of a table of log-probabilities, for each i.

    A state of probability 0 is never drawn: its CDF step is empty.
    """
    cdf = np.cumsum(np.exp(log_rows), axis=1)[rows]  # (n, K)
    u = rng.random(len(rows)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), log_rows.shape[1] - 1)


def sample(n_samples: int, parents: Sequence[Sequence[int]], log_cpts: Sequence[np.ndarray],
           order: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Ancestral sampling: each column given its parents, in topological ``order``.

    Returns (n_samples, d) int64 codes; one uniform per row and column, drawn column by
    column in ``order`` (so the same ``rng`` state gives the same rows).
    """
    shape = [t.shape[1] for t in log_cpts]
    out = np.zeros((n_samples, len(log_cpts)), dtype=np.int64)
    for j in order:
        out[:, j] = draw(log_cpts[j], parent_config(out, parents[j], shape), rng)
    return out


def topological_order(parents: Sequence[Sequence[int]]) -> np.ndarray:
    """Columns ordered parents first (Kahn's algorithm, the smallest ready index first, so
    the order is unique); ValueError naming a column on a cycle when there is one."""
    d = len(parents)
    children: list[list[int]] = [[] for _ in range(d)]
    waiting = np.array([len(set(p)) for p in parents])
    for j, ps in enumerate(parents):
        for p in set(ps):
            children[p].append(j)
    ready = sorted(j for j in range(d) if waiting[j] == 0)
    order: list[int] = []
    while ready:
        j = ready.pop(0)
        order.append(j)
        for c in children[j]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
        ready.sort()
    if len(order) < d:
        stuck = next(j for j in range(d) if j not in set(order))
        raise ValueError(f"the parents form a cycle through column {stuck}: not a Bayesian network")
    return np.array(order, dtype=np.int64)


def smoothed_log_cpts(X: np.ndarray, parents: Sequence[Sequence[int]], shape: Sequence[int],
                      alpha: float) -> list[np.ndarray]:
    """Each column's table from counts, with additive (Laplace/Lidstone) smoothing:

        p(x_j = k | c) = (n_j(c, k) + alpha) / (n(c) + alpha K_j)

    A parent configuration never seen with ``alpha = 0`` gets a uniform row (its rows have
    probability 0 under the model anyway, and every table stays normalised).
    """
    out = []
    for j, ps in enumerate(parents):
        K, m = int(shape[j]), n_configs(ps, shape)
        if m * K > MAX_TABLE_ENTRIES:
            raise ValueError(f"column {j}: {len(ps)} parents make a table of {m * K:,} entries, "
                             f"over the limit of {MAX_TABLE_ENTRIES:,}; lower max_indegree")
        counts = np.bincount(parent_config(X, ps, shape) * K + X[:, j], minlength=m * K).reshape(m, K)
        total = counts.sum(axis=1, keepdims=True) + alpha * K
        with np.errstate(divide="ignore", invalid="ignore"):
            table = np.log(counts + alpha) - np.log(total)
        out.append(np.where(total > 0, table, -np.log(K)))
    return out


def n_free_parameters(parents: Sequence[Sequence[int]], shape: Sequence[int]) -> int:
    """``sum_j configs_j (K_j - 1)``: each table row sums to 1."""
    return int(sum(n_configs(ps, shape) * (int(shape[j]) - 1) for j, ps in enumerate(parents)))


def edges(parents: Sequence[Sequence[int]]) -> np.ndarray:
    """The graph's arcs as (parent, child) rows, (n_edges, 2) int64, sorted."""
    arcs = sorted((int(p), j) for j, ps in enumerate(parents) for p in ps)
    return np.array(arcs, dtype=np.int64).reshape(-1, 2)
