"""Structure: how much of a known network's graph a model's learnt graph recovers."""

from __future__ import annotations

import math

import numpy as np


def skeleton(edges) -> set[frozenset[int]]:
    """Undirected edges from (n_edges, 2) pairs (directed arcs or unordered pairs alike)."""
    pairs = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if (pairs[:, 0] == pairs[:, 1]).any():
        raise ValueError("an edge joins a column to itself")
    return {frozenset(map(int, e)) for e in pairs}


def skeleton_scores(true_edges, found_edges) -> dict[str, float]:
    """Recall and precision of a learnt skeleton against the true one, directions ignored.

    ``skeleton_recall`` = |found & true| / |true| (share of true edges found);
    ``skeleton_precision`` = |found & true| / |found| (share of found edges true).
    A ratio whose denominator is 0 is NaN (no true edge to find, or none found).

    Parameters
    ----------
    true_edges, found_edges : iterables of pairs of column indices (a set of frozensets, or an
        (n, 2) array of arcs; direction is ignored)

    Examples
    --------
    >>> skeleton_scores([(0, 1), (1, 2)], [(1, 0), (0, 2)])
    {'skeleton_recall': 0.5, 'skeleton_precision': 0.5}
    """
    true = true_edges if isinstance(true_edges, set) else skeleton(list(true_edges))
    found = found_edges if isinstance(found_edges, set) else skeleton(list(found_edges))
    hit = len(true & found)
    return {"skeleton_recall": hit / len(true) if true else math.nan,
            "skeleton_precision": hit / len(found) if found else math.nan}
