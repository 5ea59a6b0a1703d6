"""chow_liu: the tree against pgmpy's Chow-Liu search, the true tree of fashion, tables by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from pmodel.datasets import fashion
from pmodel.families import CategoricalDomain, make_family

DOMAIN = CategoricalDomain(fashion.SCHEMA.shape)
TRUE_TREE = {frozenset(e) for e in [("hair_type", "hair_color"), ("hair_color", "accessories_type"),
                                    ("hair_type", "clothing_type"), ("clothing_type", "clothing_color")]}


def _pgmpy_edges(X: np.ndarray, names) -> set[frozenset]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.estimators import TreeSearch

        frame = pd.DataFrame(X, columns=list(names))
        dag = TreeSearch(frame, root_node=names[0], n_jobs=1).estimate(
            estimator_type="chow-liu", show_progress=False)
    return {frozenset(e) for e in dag.edges()}


@pytest.mark.parametrize("n,seed", [(60, 0), (500, 1), (5000, 2)])
def test_the_tree_equals_pgmpys_chow_liu_tree_search(n, seed):
    X = fashion.sample_codes(n, rng=np.random.default_rng(seed))
    model = make_family("chow_liu", DOMAIN, alpha=0.0).fit(X)  # plug-in MI, as pgmpy's
    assert model.tree_edges(fashion.COLUMNS) == _pgmpy_edges(X, fashion.COLUMNS)


def test_the_tree_equals_pgmpys_on_data_with_another_structure():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 3, 3000)
    b = (a + (rng.random(3000) < 0.3)) % 3
    c = rng.integers(0, 4, 3000)
    d = (c + b + (rng.random(3000) < 0.2)) % 4
    e = (d + rng.integers(0, 2, 3000)) % 5
    X = np.column_stack([a, b, c, d, e])
    model = make_family("chow_liu", CategoricalDomain((3, 3, 4, 4, 5)), alpha=0.0).fit(X)
    assert model.tree_edges("abcde") == _pgmpy_edges(X, list("abcde"))


def test_fashions_true_tree_comes_back_with_enough_data():
    X = fashion.sample_codes(5000, rng=np.random.default_rng(0))
    for alpha in (0.0, 1.0):
        model = make_family("chow_liu", DOMAIN, alpha=alpha).fit(X)
        assert model.tree_edges(fashion.COLUMNS) == TRUE_TREE
        assert model.n_parameters_ == 102  # the true network's free parameters


def test_conditional_tables_are_the_smoothed_counts():
    X = fashion.sample_codes(300, rng=np.random.default_rng(3))
    model = make_family("chow_liu", DOMAIN, alpha=0.5).fit(X)
    child = next(j for j in range(5) if model.parent_[j] >= 0)
    parent = model.parent_[child]
    Kc = DOMAIN.shape[child]
    for a in range(DOMAIN.shape[parent]):
        rows = X[X[:, parent] == a, child]
        expected = (np.bincount(rows, minlength=Kc) + 0.5) / (len(rows) + 0.5 * Kc)
        np.testing.assert_allclose(np.exp(model.log_cpt_[child][a]), expected)
    # log_prob is the sum of the root's and each edge's log table entries
    x = X[0]
    by_hand = sum(model.log_cpt_[j][0 if model.parent_[j] < 0 else x[model.parent_[j]], x[j]] for j in range(5))
    assert model.log_prob(X[:1])[0] == pytest.approx(by_hand)


def test_kl_to_the_truth_beats_naive_bayes_and_the_total_correlation():
    from pmodel.scores.truth import kl_categorical

    p = fashion.probability_table()
    marg = [p.sum(axis=tuple(k for k in range(5) if k != j)) for j in range(5)]
    total_correlation = sum(-(m * np.log(m)).sum() for m in marg) - fashion.entropy()
    X = fashion.sample_codes(5000, rng=np.random.default_rng(0))
    cells = DOMAIN.all_cells()
    kl = {name: kl_categorical(p.ravel(), make_family(name, DOMAIN, alpha=1.0).fit(X).log_prob(cells))
          for name in ("chow_liu", "naive_bayes")}
    assert kl["naive_bayes"] >= total_correlation - 1e-3  # what independence cannot see
    assert kl["chow_liu"] < 0.02 < total_correlation  # k / 2N = 102 / 10000 is the floor
