"""The deep families (torch): what the contract suite cannot check alone.

- determinism: the same seed gives the same weights and samples;
- a bound sits below the exact value where both can be computed: a VAE on a
  tiny categorical domain whose marginal p(x) is computed by quadrature over
  its one-dimensional latent;
- the PixelCNN's crop-wise sampling gives the whole image's logits;
- the flow's renormalisation to the rectangle;
- valid_novel_rate against a hand count;
- the real flow on tiny data records exact, bound and IWAE scores, the training
  curves as step metrics and the pictures, in MLflow;
- torch stays out of ``pmodel run chapter1``'s code path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pmodel.families import CategoricalDomain, ImageDomain, PointsDomain, make_family

REPO = Path(__file__).resolve().parents[1]
SMALL_REGION = PointsDomain(-10.0, 10.0, 35.0, 45.0)


def _points(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(-1, 2.0, n), rng.normal(40, 1.5, n)]).clip([-9.9, 35.1], [9.9, 44.9])


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3, size=(2, 3))
    return np.clip(base + rng.integers(-1, 2, size=(n, 2, 3)), 0, 2).astype(np.uint8)


TINY = {
    ("flow", "points"): (SMALL_REGION, _points(120), dict(epochs=3, transforms=1, hidden=8, bins=4)),
    ("flow", "image"): (ImageDomain(2, 3, 3), _images(40), dict(epochs=3, couplings=2, channels=4)),
    ("autoregressive", "image"): (ImageDomain(2, 3, 3), _images(40), dict(epochs=3, channels=4, layers=1)),
    ("autoregressive", "categorical"): (CategoricalDomain((2, 3, 4)), np.random.default_rng(0).integers(
        0, 2, size=(80, 3)), dict(epochs=3, hidden=8)),
    ("vae", "image"): (ImageDomain(2, 3, 3), _images(40), dict(epochs=3, hidden=4, latent_dim=2)),
    ("vae", "image-logistic"): (ImageDomain(2, 3, 3), _images(40),
                                dict(epochs=3, hidden=4, latent_dim=2, decoder="logistic")),
    ("gan", "points"): (SMALL_REGION, _points(120), dict(epochs=3, hidden=8)),
    ("diffusion", "image"): (ImageDomain(2, 3, 3), _images(40), dict(epochs=3, hidden=4, steps=6)),
}


@pytest.mark.parametrize("name,kind", list(TINY), ids=[f"{n}-{k}" for n, k in TINY])
def test_the_same_seed_gives_the_same_weights_and_samples(name, kind):
    domain, X, params = TINY[(name, kind)]
    a = make_family(name, domain, **params).fit(X, rng=np.random.default_rng(7))
    b = make_family(name, domain, **params).fit(X, rng=np.random.default_rng(7))
    c = make_family(name, domain, **params).fit(X, rng=np.random.default_rng(8))
    wa, wb, wc = (m._state()["module_"] for m in (a, b, c))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)  # another seed, other weights
    assert a.history_ == b.history_ and a.stopped_by_ == "epochs"
    np.testing.assert_array_equal(a.sample(30, rng=np.random.default_rng(1)),
                                  b.sample(30, rng=np.random.default_rng(1)))


# ---------------------------------------------------------------------------
# A bound below the exact value: a VAE whose marginal is computed by quadrature
# ---------------------------------------------------------------------------

def _vae_marginal(model, X) -> np.ndarray:
    """log p(x) = log integral p(x | z) N(z; 0, 1) dz over a 1-D latent, by the midpoint rule
    on [-10, 10] (20,001 nodes): the exact log-likelihood the bounds are bounds of."""
    import torch

    z = np.linspace(-10, 10, 20_001)
    dz = z[1] - z[0]
    log_prior = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
    Zt = torch.as_tensor(z[:, None], dtype=torch.float64)
    out = []
    with torch.no_grad():
        for x in X:
            xt = torch.as_tensor(np.repeat(x[None], len(z), 0), dtype=torch.long)
            ll = model.module_.log_lik(xt, Zt).numpy()
            out.append(np.logaddexp.reduce(ll + log_prior) + np.log(dz))
    return np.array(out)


def test_a_vae_bound_sits_below_its_exact_log_likelihood_computed_by_quadrature():
    domain = CategoricalDomain((2, 3))
    rng = np.random.default_rng(0)
    table = np.array([[0.30, 0.05, 0.15], [0.02, 0.40, 0.08]])
    cells = rng.choice(6, size=400, p=table.ravel())
    X = np.stack(np.unravel_index(cells, (2, 3)), axis=1)
    model = make_family("vae", domain, latent_dim=1, hidden=16, epochs=40, kl_warmup=5, patience=0,
                        elbo_samples=4000, iwae_samples=1000).fit(X, rng=np.random.default_rng(1))
    every = domain.all_cells()
    exact = _vae_marginal(model, every)
    # the model's marginal is a distribution over the six cells
    assert np.exp(exact).sum() == pytest.approx(1.0, abs=1e-6)
    # the ELBO itself by quadrature: E_q[log p(x | z)] - KL(q || N(0, 1)), q = N(mu, sigma^2)
    elbo_quad = _vae_elbo_by_quadrature(model, every)
    assert (elbo_quad < exact).all(), (elbo_quad, exact)  # strictly: q is not the posterior
    # the model's estimates: the ELBO's (4000 draws; standard error about 0.015 nats here)
    # agrees with the quadrature; the importance-weighted bound lies between ELBO and log p
    elbo, iwae = model.log_prob(every), model.log_prob_iwae(every)
    np.testing.assert_allclose(elbo, elbo_quad, atol=0.06)
    assert (iwae >= elbo_quad - 0.02).all() and (iwae <= exact + 0.01).all(), (iwae, elbo_quad, exact)


def _vae_elbo_by_quadrature(model, X) -> np.ndarray:
    import torch

    z = np.linspace(-10, 10, 20_001)
    dz = z[1] - z[0]
    Zt = torch.as_tensor(z[:, None], dtype=torch.float64)
    out = []
    with torch.no_grad():
        mu, logvar = (t.numpy()[:, 0] for t in model.module_.posterior(torch.as_tensor(X)))
        for x, m, lv in zip(X, mu, logvar):
            q = np.exp(-0.5 * (z - m) ** 2 / np.exp(lv)) / np.sqrt(2 * np.pi * np.exp(lv))
            ll = model.module_.log_lik(torch.as_tensor(np.repeat(x[None], len(z), 0)), Zt).numpy()
            kl = 0.5 * (m**2 + np.exp(lv) - 1 - lv)
            out.append((q * ll).sum() * dz - kl)
    return np.array(out)


def test_the_discretised_logistic_puts_probability_one_on_the_levels_and_samples_it():
    import torch

    from pmodel.families.vae import discretised_logistic_log_prob, discretised_logistic_sample

    L = 256
    levels = torch.arange(L, dtype=torch.float64)
    for mean in (-3.0, 0.2, 100.3, 254.9, 300.0):
        for log_s in (-6.0, -1.0, 0.5, 4.0):
            lp = discretised_logistic_log_prob(levels, torch.full((L,), mean, dtype=torch.float64),
                                               torch.full((L,), log_s, dtype=torch.float64), L)
            # an independent computation: differences of the logistic CDF at the bin edges,
            # the two end bins taking the tails
            edges = np.concatenate([[-np.inf], np.arange(L - 1) + 0.5, [np.inf]])
            with np.errstate(over="ignore"):  # exp overflows to inf far below the mean: F = 0 there
                cdf = 1.0 / (1.0 + np.exp(-(edges - mean) / np.exp(log_s)))
            p = np.diff(np.where(np.isinf(edges), (edges > 0).astype(float), cdf))
            assert np.exp(lp.numpy()).sum() == pytest.approx(1.0, abs=1e-9)
            big = p > 1e-6  # where the plain difference of CDFs keeps its precision
            np.testing.assert_allclose(lp.numpy()[big], np.log(p[big]), rtol=1e-6, atol=1e-9)
    # the sampler draws from the same distribution (frequencies of 100,000 draws)
    n = 100_000
    g = torch.Generator().manual_seed(0)
    x = discretised_logistic_sample(torch.full((n,), 2.3, dtype=torch.float64),
                                    torch.full((n,), 0.0, dtype=torch.float64), L, g)
    freq = np.bincount(x.numpy(), minlength=L) / n
    p = np.exp(discretised_logistic_log_prob(levels, torch.full((L,), 2.3, dtype=torch.float64),
                                             torch.zeros(L, dtype=torch.float64), L).numpy())
    assert np.abs(freq - p).max() < 5 * np.sqrt(p.max() / n)


def test_a_logistic_image_vae_decoder_is_a_distribution_and_its_bound_sits_below_log_p():
    import torch

    domain = ImageDomain(2, 3, 3)
    model = make_family("vae", domain, latent_dim=1, hidden=4, epochs=5, decoder="logistic", patience=0,
                        elbo_samples=2000).fit(_images(40), rng=np.random.default_rng(0))
    model.module_.double()
    every = np.array(list(np.ndindex(*(3,) * 6))).reshape(-1, 2, 3)  # all 729 images
    x = torch.as_tensor(every, dtype=torch.long)
    with torch.no_grad():
        for z in (-2.0, 0.0, 1.5):  # p(. | z) sums to 1 over every image
            ll = model.module_.log_lik(x, torch.full((len(x), 1), z, dtype=torch.float64)).numpy()
            assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-9)
    some = every[[0, 100, 364, 728]]
    exact = _vae_marginal(model, some)
    elbo_quad = _vae_elbo_by_quadrature(model, some)
    assert (elbo_quad < exact).all(), (elbo_quad, exact)


def test_the_pixelcnn_crop_gives_the_whole_images_logits():
    import torch

    from pmodel.families.autoregressive import PixelCNN, PixelCNNConfig

    torch.manual_seed(0)
    net = PixelCNN(PixelCNNConfig(9, 10, 4, 8, 2)).double()
    with torch.no_grad():
        net.pixel_bias.normal_()
        x = torch.randint(0, 4, (3, 9, 10))
        full = net.logits(x)
        for r in range(9):
            for c in range(10):
                torch.testing.assert_close(net.pixel_logits(x, r, c), full[:, :, r, c], rtol=0, atol=1e-12)
        # and a pixel's logits do not depend on itself or any later pixel
        y = x.clone()
        y[:, 4, 5:] = (y[:, 4, 5:] + 1) % 4
        y[:, 5:] = (y[:, 5:] + 1) % 4
        torch.testing.assert_close(net.logits(y)[:, :, 4, 5], full[:, :, 4, 5])


def test_a_flow_renormalised_to_the_rectangle_reports_the_mass_it_moved():
    model = make_family("flow", SMALL_REGION, epochs=5, transforms=1, hidden=8, bins=4)
    model.fit(_points(150), rng=np.random.default_rng(0))
    assert 0.0 <= model.mass_outside_ < 1.0
    assert model.log_prob(np.array([[11.0, 40.0]]))[0] == -np.inf
    s = model.sample(2000, rng=np.random.default_rng(0))
    assert SMALL_REGION.in_support(s).all()


def test_a_points_model_with_almost_no_mass_in_the_rectangle_is_refused_not_sampled_for_ever():
    """Rejection sampling draws at most MAX_DRAWS_PER_ROUND points a round and gives up, saying
    why, once that many were drawn with under MIN_ACCEPTANCE of them inside the rectangle."""
    from pmodel.families.deep import _base

    model = make_family("gan", SMALL_REGION, epochs=1, hidden=8).fit(_points(120), rng=np.random.default_rng(0))
    asked = []
    real = model._draw_r2

    def far_away(m, g):  # the model's own draws, all moved out of the rectangle but 1 in 10^4
        asked.append(m)
        x = real(m, g)
        x[np.arange(m) % 10_000 != 0, 0] += 1000.0
        return x

    model._draw_r2 = far_away
    with pytest.raises(RuntimeError, match=r"fell in the domain .* almost no mass there"):
        model.sample(500, rng=np.random.default_rng(0))
    assert max(asked) <= _base.MAX_DRAWS_PER_ROUND and sum(asked) < 3 * _base.MAX_DRAWS_PER_ROUND


def test_valid_novel_rate_counts_valid_samples_of_unseen_combinations():
    from pmodel.scores.images import image_validity, valid_novel_rate

    renders = np.array([np.full((2, 2), v, dtype=np.uint8) for v in (0, 60, 120, 180)])
    train = renders[[0, 0, 1]]                                 # combinations 0 and 60 seen
    samples = np.array([np.full((2, 2), v) for v in (1.4, 62.0, 119.0, 181.2, 230.0)])
    # thresholds 30: valid are 1.4 (-> 0, seen), 62 (-> 60, seen), 119 (-> 120, new), 181.2 (new); 230 is not
    assert image_validity(samples, renders)["valid_rate"] == pytest.approx(4 / 5)
    assert valid_novel_rate(samples, renders, train) == pytest.approx(2 / 5)
    assert valid_novel_rate(samples, renders, renders) == 0.0


# ---------------------------------------------------------------------------
# The real flow: deep families on tiny points data, recorded in MLflow
# ---------------------------------------------------------------------------

DEEP_EXPERIMENT = """
name: deep-toys
seed: 1
n_samples: 300
datasets:
  places: {kind: points, train: places.csv, heldout: places-test.csv}
  tiles: {kind: image, train: tiles}
families:
  - {family: flow, params: {epochs: 4}, points: {transforms: 1, hidden: 8, bins: 4},
     image: {couplings: 2, channels: 4}}
  - {family: vae, params: {epochs: 4, hidden: 8, latent_dim: 2, iwae_samples: 16}}
  - {family: gan, params: {epochs: 3, hidden: 8}}
  - {family: diffusion, params: {epochs: 3, hidden: 8, steps: 6, bound_timesteps: 5}}
  - {family: naive_bayes, params: {alpha: 1.0}, points: {bin_deg: 10.0}}
"""


@pytest.fixture(scope="module")
def deep_run(prefect_harness, tmp_path_factory):
    from flows.experiment import run_experiment
    from pmodel.datasets import land
    from pmodel.datasets.images import write_png_folder

    folder = tmp_path_factory.mktemp("deep")
    land.write_csv(_points(300, seed=1) + [10.0, 5.0], folder / "places.csv")
    land.write_csv(_points(200, seed=2) + [10.0, 5.0], folder / "places-test.csv")
    tiles = np.random.default_rng(3).integers(0, 2, size=(50, 4, 4)).astype(np.uint8) * 200
    write_png_folder(tiles, folder / "tiles")
    (folder / "deep.yaml").write_text(DEEP_EXPERIMENT)
    store = "sqlite:///" + str(folder / "mlflow.db")
    state = run_experiment(str(folder / "deep.yaml"), tracking_uri=store, return_state=True)
    return state, state.result(raise_on_failure=False), store


def test_deep_families_run_through_the_flow_and_mlflow_records_their_scores_and_curves(deep_run):
    from mlflow.tracking import MlflowClient

    state, outcome, store = deep_run
    assert state.is_completed(), state.message
    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(outcome.parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert all(r.info.status == "FINISHED" for r in runs)
    tiles = {r.data.tags["family"]: r for r in runs if r.data.tags["dataset"] == "tiles"}
    children = {r.data.tags["family"]: r for r in runs if r.data.tags["dataset"] == "places"}
    assert set(children) == set(tiles) == {"flow", "vae", "gan", "diffusion", "naive_bayes"}

    flow, vae, gan, diff = (children[k].data for k in ("flow", "vae", "gan", "diffusion"))
    assert flow.tags["log_prob_kind"] == "exact" and np.isfinite(flow.metrics["heldout_loglik"])
    assert "heldout_loglik_bound" not in flow.metrics
    assert 0.0 <= flow.metrics["mass_outside_domain"] < 1.0
    assert flow.metrics["train_epochs"] >= 1 and flow.metrics["stopped_by_seconds"] == 0.0
    for bound in (vae, diff):
        assert bound.tags["log_prob_kind"] == "lower_bound"
        assert "heldout_loglik" not in bound.metrics and np.isfinite(bound.metrics["heldout_loglik_bound"])
    # the importance-weighted bound: its own metric, no looser than the ELBO (up to noise)
    assert vae.metrics["heldout_loglik_iwae"] >= vae.metrics["heldout_loglik_bound"] - 0.05
    assert "heldout_loglik_iwae" not in flow.metrics and "importance-weighted" in flow.tags["skipped.heldout_loglik_iwae"]
    assert gan.tags["log_prob_kind"] == "none"
    assert not {"heldout_loglik", "heldout_loglik_bound"} & set(gan.metrics)
    assert {"novelty_rate", "prdc_precision", "train_epochs"} <= set(gan.metrics)
    assert "naive_bayes" in children and "train_epochs" not in children["naive_bayes"].data.metrics
    # where each deep family trained (here the CPU) and how many steps: 300 points, 10% for
    # validation, batch 256: 2 steps an epoch
    import torch

    assert (flow.tags["device"], flow.tags["torch_version"]) == ("cpu", torch.__version__)
    assert flow.metrics["train_steps"] == 2 * flow.metrics["train_epochs"]
    assert "device" not in children["naive_bayes"].data.tags

    from tasks.tracking import download_model_folder

    # on images, each deep child logged its samples while training as one MLflow image
    # sequence, one picture per epoch here (4 epochs, up to 6 pictures)
    for family, epochs in (("vae", 4), ("gan", 3), ("flow", 4), ("diffusion", 3)):
        rid = tiles[family].info.run_id
        pictures = [a.path for a in client.list_artifacts(rid, "images") if a.path.endswith(".png")]
        steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in pictures
                       if "samples-while-training" in p)
        assert steps == list(range(1, epochs + 1)), (family, pictures)
        assert not [p for p in download_model_folder(rid, store).iterdir() if p.name.endswith("progress")]

    # training curves as step metrics, one step per epoch
    run_id = children["flow"].info.run_id
    model_epochs = int(flow.metrics["train_epochs"])
    loss = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in loss) == list(range(model_epochs))
    assert len(client.get_metric_history(children["gan"].info.run_id, "loss_d")) == 3
    # pictures: samples map or not (users' points have no land truth), curves, the diffusion strip
    names = {a.path for a in client.list_artifacts(run_id, "pictures")}
    assert "pictures/training-curves.png" in names
    names = {a.path for a in client.list_artifacts(children["diffusion"].info.run_id, "pictures")}
    assert {"pictures/training-curves.png", "pictures/denoising-steps.png"} <= names
    # the saved model holds the state_dict as arrays and the config as JSON
    meta = json.loads((download_model_folder(run_id, store) / "model.json").read_text())
    assert meta["state"]["config_"]["dataclass"].endswith("ZukoConfig")


# ---------------------------------------------------------------------------
# torch stays out of the chapter's code path
# ---------------------------------------------------------------------------

def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_chapter1_loads_configures_fits_and_scores_without_torch(tmp_path):
    mods = _modules_after(f"""
        import numpy as np
        from pmodel.config import load_experiment
        from pmodel.evaluate import run_family
        from pmodel.problems import Problem
        from pmodel.families import CategoricalDomain, ImageDomain
        import flows.experiment, tasks.steps, tasks.record
        config = load_experiment({str(REPO / "experiments" / "chapter1.yaml")!r})
        X = np.random.default_rng(0).integers(0, 3, size=(40, 3))
        p = Problem("toy", CategoricalDomain((3, 3, 3)), X, X)
        for spec in config.families:
            run_family(spec.family, spec.params_for("categorical"), p, n_samples=50, seed=0)
    """)
    assert "torch" not in mods and "zuko" not in mods
    assert not {m for m in mods if m.startswith("pmodel.families.deep")}


def test_loading_a_deep_family_imports_torch_only_then(tmp_path):
    mods = _modules_after("""
        from pmodel.families import family_class
        family_class("flow", "points")
    """)
    assert "torch" in mods  # (zuko: when a zuko flow is built)


# ---------------------------------------------------------------------------
# The training loop itself
# ---------------------------------------------------------------------------

def _toy_loop(**budget):
    import torch

    from pmodel.families.deep import _train

    w = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(w.weight)
    X = torch.ones(50, 1)
    b = _train.Budget(**{**dict(epochs=20, seconds=1e9, batch_size=10, lr=0.1, patience=2,
                                val_fraction=0.2), **budget})
    # training pushes the weight down; the validation loss grows as it does, so epoch 0 is the best
    out = _train.train(w, X, rng=np.random.default_rng(0), budget=b,
                       loss=lambda m, x, g: m(x).mean(), val_loss=lambda m, x, g: -m(x).mean())
    return w, out


def test_early_stopping_restores_the_best_weights_and_says_which_budget_stopped():
    w, out = _toy_loop()
    assert out.stopped_by == "early_stopping" and out.best_epoch == 0 and out.epochs == 3
    assert len(out.history["loss"]) == len(out.history["val_loss"]) == 3
    # the weights are those after epoch 0 (4 steps of lr 0.1 from 1.0), not the last ones
    assert float(w.weight) == pytest.approx(1.0 - 4 * 0.1, abs=1e-6)
    assert -out.history["val_loss"][0] == pytest.approx(float(w.weight), abs=1e-6)


def test_the_seconds_budget_stops_the_loop_after_the_batch_that_passes_it():
    _, out = _toy_loop(seconds=1e-9, patience=0)
    assert out.stopped_by == "seconds" and out.epochs == 1


def test_the_cosine_schedule_steps_at_the_rate_of_its_epoch():
    # a constant gradient: each Adam step moves the weight by its learning rate (to 1e-6 here),
    # so after 20 epochs of 5 steps the weight is 1 - 5 * sum_e lr_e, lr_e = lr (1 + cos(pi e / 20)) / 2
    w, out = _toy_loop(lr_schedule="cosine", patience=0, val_fraction=0.0)
    lrs = 0.1 * 0.5 * (1 + np.cos(np.pi * np.arange(20) / 20))
    assert out.stopped_by == "epochs" and out.epochs == 20
    assert float(w.weight.detach()) == pytest.approx(1.0 - 5 * lrs.sum(), abs=1e-4)
    w2, _ = _toy_loop(patience=0, val_fraction=0.0)  # the plateau rule never fires without validation
    assert float(w2.weight.detach()) == pytest.approx(1.0 - 100 * 0.1, abs=1e-4)


def test_torch_settings_come_from_the_environment(monkeypatch):
    from pmodel.families.deep import _torch

    monkeypatch.setenv("PMODEL_TORCH_THREADS", "1")
    monkeypatch.setenv("PMODEL_TORCH_JOBS", "3")
    assert _torch.n_threads() == 1 and _torch.n_jobs() == 3
    monkeypatch.setenv("PMODEL_TORCH_THREADS", "zero")
    with pytest.raises(ValueError, match="PMODEL_TORCH_THREADS"):
        _torch.n_threads()


def test_the_taxonomy_experiment_runs_every_family_on_every_dataset_it_serves():
    from pmodel.config import load_experiment
    from pmodel.families import family_class, family_names, kinds_served

    config = load_experiment(REPO / "experiments" / "taxonomy.yaml")
    kinds = {"pixels": "image", "jars": "image", "land": "points", "fashion": "categorical"}
    runs = {(dataset, spec.family) for dataset, spec in config.runs()}
    left_out = {("kde", "land"), ("latent_class", "pixels"), ("latent_class", "jars")}  # for time
    for name in family_names():
        for dataset, kind in kinds.items():
            if kind in kinds_served(name) and (name, dataset) not in left_out:
                assert (dataset, name) in runs, (dataset, name)
                assert family_class(name, kind).taxonomy


def test_render_truth_sample_scores_equal_the_functions_they_share_a_search_for():
    from pmodel.scores.images import image_validity, valid_novel_rate
    from pmodel.truths import RenderTruth

    renders = np.array([np.full((2, 2), v, dtype=np.uint8) for v in (0, 60, 120, 200)])
    truth = RenderTruth(images=renders, probs=np.full(4, 0.25))  # thresholds 30, 30, 30, 40
    train = renders[[0, 0, 1]]
    floats = np.array([np.full((2, 2), v) for v in (1.4, 62.0, 119.0, 181.2, 240.4, 29.6)])
    for samples in (floats, np.clip(np.rint(floats), 0, 255).astype(np.uint8)):
        got = truth.sample_scores(samples, train=train)
        v = image_validity(samples, renders)
        assert got["valid_rate"] == v["valid_rate"]
        assert got["n_valid_combinations"] == v["n_valid_combinations"]
        assert got["valid_novel_rate"] == valid_novel_rate(samples, renders, train)
    # 240.4 is 40.4 from render 200 (invalid); rounded to 240 it is valid, and new. The
    # distances to the nearest render are 1.4, 2, 1, 18.8, 40.4 and 29.6: three within 8 and
    # within 16, median (2 + 18.8) / 2
    assert truth.sample_scores(floats, train=train) == pytest.approx({
        "valid_rate": 5 / 6, "n_valid_combinations": 4.0, "valid_novel_rate": 3 / 6,
        "near_render_rate": 3 / 6, "near_render_rate_16": 3 / 6, "median_render_distance": 10.4})


def test_the_gpu_profile_fits_the_same_pairs_with_bigger_budgets_and_1000_samples():
    from pmodel.config import load_experiment

    cpu = load_experiment(REPO / "experiments" / "taxonomy.yaml")
    gpu = load_experiment(REPO / "experiments" / "taxonomy-gpu.yaml")
    pairs = lambda c: {(d, s.family) for d, s in c.runs()}
    assert pairs(cpu) == pairs(gpu) and gpu.n_samples == 1000 and cpu.device == "cpu"
    deep = ("autoregressive", "flow", "vae", "diffusion", "gan")
    for (dataset, spec_c), (_, spec_g) in zip(cpu.runs(), gpu.runs()):
        if spec_c.family not in deep:
            continue
        kind = cpu.datasets[dataset].kind
        pc, pg = cpu.params_for(spec_c, kind), gpu.params_for(spec_g, kind)
        n_c = cpu.datasets[dataset].n_train or cpu.build.n_train
        n_g = gpu.datasets[dataset].n_train or gpu.build.n_train
        # examples the budget lets it see: epochs x n, or max_steps x batch when smaller
        seen = lambda p, n: min(p.get("epochs", 50) * n, (p.get("max_steps") or 10**12) * p.get("batch_size", 64))
        assert seen(pg, n_g) > seen(pc, n_c), (dataset, spec_c.family)


def test_a_vaes_monte_carlo_scores_carry_standard_errors_that_match_their_spread():
    """The IWAE estimate's se is the sd of its per-row estimates / sqrt(n); the KL bound's se
    (two draws of the IWAE bound over every cell) agrees with the KL's sd over 40 re-seeded draws."""
    from pmodel.problems import Problem
    from pmodel.scores import run_scores
    from pmodel.scores.run import AGAIN_SEED
    from pmodel.scores.truth import kl_categorical, kl_monte_carlo_se
    from pmodel.truths import TableTruth

    domain = CategoricalDomain((3, 4, 5))
    rng = np.random.default_rng(0)
    table = rng.dirichlet(np.ones(60))
    cells = rng.choice(60, size=700, p=table)
    X = np.stack(np.unravel_index(cells, (3, 4, 5)), axis=1)
    problem = Problem("t", domain, X[:300], X[300:], truth=TableTruth(table))
    model = make_family("vae", domain, latent_dim=2, hidden=8, epochs=5, patience=0,
                        iwae_samples=8).fit(problem.train, rng=np.random.default_rng(1))
    m, _ = run_scores(model, problem, model.sample(200, rng=np.random.default_rng(2)))
    iwae = model.log_prob_iwae(problem.heldout)
    assert m["heldout_loglik_iwae_se"] == pytest.approx(iwae.std(ddof=1) / np.sqrt(400), rel=1e-9)
    elbo = model.log_prob(problem.heldout)
    assert m["heldout_loglik_bound_se"] == pytest.approx(elbo.std(ddof=1) / np.sqrt(400), rel=1e-9)
    every = domain.all_cells()
    # the KL bound sums the tightest bound the VAE gives, IWAE, over every cell
    assert m["kl_to_truth_bound"] == kl_categorical(table, model.log_prob_iwae(every))
    assert m["kl_to_truth_bound_se"] == pytest.approx(
        kl_monte_carlo_se(table, model.log_prob_iwae(every), model.log_prob_iwae(every, seed=AGAIN_SEED)),
        rel=1e-12)
    kls = [kl_categorical(table, model.log_prob_iwae(every, seed=s)) for s in range(40)]
    assert 0.5 < m["kl_to_truth_bound_se"] / np.std(kls, ddof=1) < 1.6
    # tighter than the single-draw ELBO's sum (in the means over draws), and less noisy
    elbo_kls = [kl_categorical(table, model.log_prob(every, seed=s)) for s in range(40)]
    assert np.mean(kls) < np.mean(elbo_kls) and np.std(kls) < np.std(elbo_kls)
    assert np.mean(kls) > -3 * np.std(kls, ddof=1) / np.sqrt(40)  # an upper bound on a KL >= 0
