"""The contract every registered family keeps, on every data kind it serves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pmodel.datasets import fashion
from pmodel.families import (CategoricalDomain, ImageDomain, PointsDomain, families_for,
                             family_names, kinds_served, make_family)

HYPERPARAMETERS = {"box": [{}], "multinomial": [{"alpha": 0.0}, {"alpha": 1.0}],
                   "naive_bayes": [{"alpha": 0.0}, {"alpha": 1.0}],
                   "chow_liu": [{"alpha": 0.0}, {"alpha": 1.0}],
                   "bayes_net": [{"alpha": 0.5}, {"alpha": 0.0, "max_indegree": 1, "score": "bdeu"}],
                   "latent_class": [{"n_components": 3, "alpha": 0.5}, {"n_components": 1, "alpha": 1.0}],
                   "gmm": [{"n_components": 3}], "kde": [{}, {"bandwidth": 1.5}],
                   "pca": [{"n_components": 2}], "factor_analysis": [{"n_components": 2}]}
# densities that are smooth on the map: the midpoint rule's error on a 0.02-degree grid
SMOOTH_TOLERANCE = 1e-4
# the deep families (torch), tiny: a few epochs of tiny nets, seconds per case. Parameters that
# a kind does not declare are dropped for it (see _params), so one entry serves every kind.
_TINY = {"epochs": 3, "hidden": 8}
HYPERPARAMETERS.update({
    "flow": [{**_TINY, "transforms": 2, "bins": 4, "couplings": 2, "channels": 4}],
    "autoregressive": [{**_TINY, "transforms": 2, "channels": 4, "layers": 1}],
    "vae": [{**_TINY, "latent_dim": 2, "iwae_samples": 8},
            {**_TINY, "latent_dim": 2, "iwae_samples": 8, "decoder": "logistic"}],
    "gan": [{**_TINY, "latent_dim": 2}],
    "diffusion": [{**_TINY, "steps": 6, "bound_timesteps": 5}],  # K = T - 1: every step of the sum
})
DEEP = {"flow", "autoregressive", "vae", "gan", "diffusion"}
DTYPES = {"categorical": np.int64, "image": np.uint8, "points": np.float64}
TINY_IMAGE = ImageDomain(2, 3, levels=3)  # 3^6 = 729 images: small enough to enumerate
SMALL_REGION = PointsDomain(-10.0, 10.0, 35.0, 45.0)


def _datasets(kind, renders=None):
    """(label, domain, train, heldout) cases of a kind."""
    rng = np.random.default_rng(0)
    if kind == "categorical":
        d = CategoricalDomain(fashion.SCHEMA.shape)
        yield "fashion", d, fashion.sample_codes(50, rng=rng), fashion.sample_codes(200, rng=rng)
    elif kind == "image":
        # few levels, pixels correlated: a base pattern plus noise
        base = rng.integers(0, 3, size=(2, 3))
        X = np.clip(base + rng.integers(-1, 2, size=(60, 2, 3)), 0, 2).astype(np.uint8)
        yield "tiny-image", TINY_IMAGE, X[:40], X[40:]
    elif kind == "points":
        X = np.column_stack([rng.uniform(-8, 6, 300), rng.uniform(36, 44, 300)])
        yield "small-region", SMALL_REGION, X[:100], X[100:]


CASES = [
    pytest.param(name, kind, label, params, id=f"{name}-{kind}-{label}-{params}")
    for name in family_names()
    for kind in kinds_served(name)
    for label, *_ in _datasets(kind)
    for params in HYPERPARAMETERS[name]
]


def _has_likelihood(case) -> bool:
    from pmodel.families import family_class

    name, kind = case.values[:2]
    return family_class(name, kind).log_prob_kind != "none"


#: the cases whose family gives a likelihood (exact or a bound); an implicit model
#: (the GAN) has nothing to sum and no support to be outside of, and is not asked
LIKELIHOOD_CASES = [case for case in CASES if _has_likelihood(case)]


def _params(name, kind, params):
    """The entry's parameters that the family declares on this kind."""
    from pmodel.families import family_class

    return {k: v for k, v in params.items() if k in family_class(name, kind).hyperparameters}


def _case(name, kind, label, params):
    params = _params(name, kind, params)
    for lab, domain, train, heldout in _datasets(kind):
        if lab == label:
            return make_family(name, domain, **params), domain, train, heldout
    raise AssertionError(label)


def test_every_chapter_family_serves_every_kind_of_the_design_table():
    for kind in ("categorical", "image", "points"):
        assert set(families_for(kind)) >= {"box", "multinomial", "naive_bayes"}
    assert set(HYPERPARAMETERS) == set(family_names())


@pytest.mark.parametrize("name,kind,label,params", CASES)
def test_fit_returns_self_and_keeps_hyperparameters(name, kind, label, params):
    model, _, train, _ = _case(name, kind, label, params)
    before = model.get_params()
    assert model.fit(train) is model
    assert model.get_params() == before
    params = _params(name, kind, params)
    assert {k: before[k] for k in params} == params
    assert isinstance(model.n_parameters_, int) and model.n_parameters_ > 0


@pytest.mark.parametrize("name,kind,label,params", CASES)
def test_samples_have_the_right_shape_dtype_and_seed_behaviour(name, kind, label, params):
    model, domain, train, _ = _case(name, kind, label, params)
    model.fit(train)
    a = model.sample(64, rng=np.random.default_rng(1))
    b = model.sample(64, rng=np.random.default_rng(1))
    c = model.sample(64, rng=np.random.default_rng(2))
    assert a.shape == (64, *domain.event_shape)
    assert a.dtype == DTYPES[kind]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert model.sample(0, rng=np.random.default_rng(0)).shape == (0, *domain.event_shape)
    assert domain.in_support(a).all()


@pytest.mark.parametrize("name,kind,label,params", CASES)
def test_log_prob_of_own_samples_is_finite(name, kind, label, params):
    model, _, train, heldout = _case(name, kind, label, params)
    model.fit(train)
    if model.log_prob_kind == "none":
        with pytest.raises(NotImplementedError, match="no likelihood"):
            model.log_prob(train)
        return
    lp = model.log_prob(model.sample(500, rng=np.random.default_rng(3)))
    assert lp.shape == (500,) and lp.dtype == np.float64
    assert np.isfinite(lp).all()
    lp_train = model.log_prob(train)
    assert np.isfinite(lp_train).all()  # every family puts mass on its training data
    lp_held = model.log_prob(heldout)
    assert lp_held.shape == (len(heldout),) and not np.isnan(lp_held).any()


@pytest.mark.parametrize("name,kind,label,params", LIKELIHOOD_CASES)
def test_probabilities_sum_to_one_over_the_whole_support(name, kind, label, params):
    """Exact families: 1 (float32 nets: to 1e-5); a lower bound: at most 1 (up to its
    estimate's noise, 2%); an implicit model has nothing to sum."""
    model, domain, train, _ = _case(name, kind, label, params)
    model.fit(train)
    if kind == "categorical":
        total = np.exp(model.log_prob(domain.all_cells())).sum()  # all 4032 cells
        if model.log_prob_kind == "lower_bound":  # the VAE's ELBO, one fixed draw of z per row
            assert 0.0 < total <= 1.02
        else:
            assert total == pytest.approx(1.0, abs=1e-7 if name in DEEP else 1e-10)
    elif kind == "image":
        every = np.array(list(itertools.product(range(domain.levels), repeat=domain.n_features)),
                         dtype=np.uint8).reshape(-1, *domain.event_shape)
        total = np.exp(model.log_prob(every)).sum()
        if model.log_prob_kind == "lower_bound":
            # a bound on each image's mass: the bounds sum to at most 1 (a continuous
            # density's cubes lose the mass outside the domain; tests/test_linear_gaussian.py
            # checks each bound against the exact mass of its cube); the deep families'
            # bounds are Monte Carlo estimates (one draw of the noise): up to 2% over
            assert 0.0 < total <= (1.02 if name in DEEP else 1.0 + 1e-10)
        else:
            assert total == pytest.approx(1.0, abs=1e-5 if name in DEEP else 1e-10)  # float32 nets
    else:
        # midpoint rule on a 0.02-degree grid: exact for densities constant on
        # 1-degree cells; the box's edges cost at most perimeter * 0.02 / area; a smooth
        # flow renormalised by its own (400 x 400) quadrature of the rectangle: to 1%
        step = 0.02
        lon = np.arange(domain.lon_min + step / 2, domain.lon_max, step)
        lat = np.arange(domain.lat_min + step / 2, domain.lat_max, step)
        grid = np.stack(np.meshgrid(lon, lat), axis=-1).reshape(-1, 2)
        integral = np.exp(model.log_prob(grid)).sum() * step**2
        # a deep family's density is renormalised by its own 400 x 400 quadrature: to 1%; a
        # bound's is an estimate divided by a sampled mass (up to 2% over)
        if model.log_prob_kind == "lower_bound":
            assert 0.0 < integral <= 1.02
        else:
            tolerance = {"box": 0.01, "gmm": SMOOTH_TOLERANCE, "kde": SMOOTH_TOLERANCE}.get(
                name, 0.01 if name in DEEP else 1e-9)
            assert integral == pytest.approx(1.0, abs=tolerance)


@pytest.mark.parametrize("name,kind,label,params", CASES)
def test_save_and_load_keep_log_prob_and_sample_without_pickle(name, kind, label, params, tmp_path):
    from pmodel.families import load_model

    model, _, train, heldout = _case(name, kind, label, params)
    model.fit(train, rng=np.random.default_rng(0))
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as npz:  # plain arrays only
        assert all(npz[k].dtype != object for k in npz.files)
    clone = load_model(tmp_path / "m")
    assert type(clone) is type(model) and clone.get_params() == model.get_params()
    assert clone.n_parameters_ == model.n_parameters_
    assert clone.history_ == model.history_
    if model.log_prob_kind != "none":
        np.testing.assert_array_equal(clone.log_prob(heldout), model.log_prob(heldout))
    np.testing.assert_array_equal(clone.sample(20, rng=np.random.default_rng(5)),
                                  model.sample(20, rng=np.random.default_rng(5)))


@pytest.mark.parametrize("name,kind,label,params", CASES)
def test_contract_v2_declarations(name, kind, label, params):
    from pmodel.families import check_hyperparameters, family_class

    cls = family_class(name, kind)
    params = _params(name, kind, params)
    assert cls.log_prob_kind in ("exact", "lower_bound", "none")
    assert set(cls.hyperparameters) == set(params) | set(cls.hyperparameters)
    assert check_hyperparameters(name, kind, params) == params
    model, _, train, _ = _case(name, kind, label, params)
    assert model.fit(train, rng=np.random.default_rng(0)) is model
    # a training curve per key (empty for families fitted in closed form; one value per epoch
    # for the deep families)
    assert isinstance(model.history_, dict)
    for key, values in model.history_.items():
        assert isinstance(values, list) and all(np.isfinite(v) for v in values), key
    if name in DEEP:
        assert model.history_ and all(len(v) == model.epochs_ for v in model.history_.values())
    assert cls.taxonomy in ("counting", "autoregressive", "flow", "latent variable", "implicit", "diffusion")
    if model.has_encoder:
        codes = model.encode(train)
        assert codes.ndim == 2 and len(codes) == len(train) and np.isfinite(codes).all()
    else:
        with pytest.raises(NotImplementedError):
            model.encode(train)
    if "alpha" in cls.hyperparameters:
        for bad in (-1.0, "one", float("nan")):
            with pytest.raises(ValueError, match="alpha"):
                check_hyperparameters(name, kind, {"alpha": bad})


@pytest.mark.parametrize("name,kind,label,params", LIKELIHOOD_CASES)
def test_outside_the_support_is_minus_inf_not_an_error(name, kind, label, params):
    model, domain, train, _ = _case(name, kind, label, params)
    model.fit(train)
    if kind == "categorical":
        X = train[:3].copy()
        X[0, 1] = domain.shape[1]  # a code past the last category
        X[1, 0] = -1
    elif kind == "image":
        X = train[:2].copy()
        X[0, 0, 0] = domain.levels  # an intensity the domain does not have
        X[1, 1, 2] = 255
    else:
        X = np.array([[domain.lon_max + 1, 40.0], [0.0, domain.lat_min - 5], [0.0, 40.0]])
    lp = model.log_prob(X)
    assert (lp[:2] == -np.inf).all()


@pytest.mark.parametrize("name,kind,label,params", CASES)
def test_unfitted_model_says_so(name, kind, label, params):
    model, _, _, heldout = _case(name, kind, label, params)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.log_prob(heldout)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.sample(1, rng=np.random.default_rng(0))


# ---------------------------------------------------------------------------
# Wide tables: a family holds a 40-column table, or says why it cannot
# ---------------------------------------------------------------------------

WIDE = CategoricalDomain((2, 3, 4, 5) * 10)   # 40 columns, 120^10 (about 6e20) cells


@pytest.mark.parametrize("name", families_for("categorical"))
def test_every_categorical_family_holds_a_wide_table_or_declares_it_cannot(name):
    from pmodel.families import cannot_hold

    reason = cannot_hold(name, WIDE)
    params = _params(name, "categorical", HYPERPARAMETERS[name][-1])
    model = make_family(name, WIDE, **params)
    rng = np.random.default_rng(0)
    X = rng.integers(0, np.array(WIDE.shape), size=(80, WIDE.n_features))
    if reason is not None:
        assert "cells" in reason
        with pytest.raises(ValueError, match="cannot be fitted"):  # refused, not a memory blow-up
            model.fit(X, rng=rng)
        return
    model.fit(X, rng=rng)
    samples = model.sample(20, rng=np.random.default_rng(1))
    assert samples.shape == (20, 40)
    lp = model.log_prob(X[:10])
    assert lp.shape == (10,) and np.isfinite(lp).all()


def test_the_multinomial_holds_the_chapter_s_table_and_refuses_a_wide_one():
    from pmodel.families import cannot_hold

    assert cannot_hold("multinomial", CategoricalDomain(fashion.SCHEMA.shape)) is None
    assert cannot_hold("multinomial", CategoricalDomain((10,) * 7)) is None          # 10^7: the limit
    assert "1e+07 cells" in cannot_hold("multinomial", CategoricalDomain((10,) * 6 + (11,)))
    assert "about 10^602 cells" in cannot_hold("multinomial", CategoricalDomain((2,) * 2000))
    # other kinds never enumerate: an image multinomial stores only the images it saw
    assert cannot_hold("multinomial", ImageDomain(32, 32)) is None
