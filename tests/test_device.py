"""Devices, budgets and the training loop's guards (issue 16), on the CPU only.

CI has no GPU: where a test needs torch to see one, torch's CUDA checks are
replaced by fakes (monkeypatch), and nothing is ever moved to a CUDA device.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pmodel.families import CategoricalDomain, ImageDomain, load_model, make_family  # noqa: E402
from pmodel.families.deep import _torch, _train  # noqa: E402


def _fake_gpu(monkeypatch, *, cuda: bool, count: int = 1, mps: bool = False, bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(_torch, "_mps_available", lambda: mps)


# ---------------------------------------------------------------------------
# Which device a setting names
# ---------------------------------------------------------------------------

def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch):
    monkeypatch.delenv(_torch.DEVICE_ENV, raising=False)
    _fake_gpu(monkeypatch, cuda=True)
    assert _torch.resolve_device("auto") == torch.device("cuda")
    _fake_gpu(monkeypatch, cuda=False, mps=True)
    assert _torch.resolve_device("auto") == torch.device("mps")
    _fake_gpu(monkeypatch, cuda=False, mps=False)
    assert _torch.resolve_device("auto") == torch.device("cpu")


def test_pmodel_device_is_what_auto_means_and_an_explicit_setting_wins(monkeypatch):
    _fake_gpu(monkeypatch, cuda=True, count=2)
    monkeypatch.setenv(_torch.DEVICE_ENV, "cpu")
    assert _torch.resolve_device("auto") == torch.device("cpu")
    assert _torch.resolve_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setenv(_torch.DEVICE_ENV, "gpu")
    with pytest.raises(ValueError, match=r"\$PMODEL_DEVICE must be one of auto, cpu, cuda, cuda:N, mps; got 'gpu'"):
        _torch.resolve_device("auto")


def test_the_fit_cache_key_holds_the_device_auto_resolves_to(monkeypatch):
    """A fit made on the CPU is not reused under ``device: auto`` where torch sees a GPU."""
    from flows.experiment import training_device

    monkeypatch.delenv(_torch.DEVICE_ENV, raising=False)
    _fake_gpu(monkeypatch, cuda=False)
    assert training_device("autoregressive", "image", {}) == "cpu"
    _fake_gpu(monkeypatch, cuda=True)
    assert training_device("autoregressive", "image", {}) == "cuda"
    assert training_device("autoregressive", "image", {"device": "cpu"}) == "cpu"
    assert training_device("naive_bayes", "image", {}) == "-"      # no device: no torch needed


def test_a_device_the_machine_lacks_is_an_error_that_says_what_it_has(monkeypatch):
    monkeypatch.delenv(_torch.DEVICE_ENV, raising=False)
    _fake_gpu(monkeypatch, cuda=False)
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        _torch.resolve_device("cuda")
    with pytest.raises(ValueError, match="no Apple GPU"):
        _torch.resolve_device("mps")
    _fake_gpu(monkeypatch, cuda=True, count=2)
    with pytest.raises(ValueError, match=r"2 CUDA device\(s\), cuda:0 \.\. cuda:1"):
        _torch.resolve_device("cuda:2")
    # where a saved model is loaded, a missing device falls back to the CPU
    _fake_gpu(monkeypatch, cuda=False)
    assert _torch.load_device("cuda:1") == torch.device("cpu")


def test_bf16_autocast_only_where_asked_for_or_supported(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _torch.autocast_dtype(cpu, "auto") is None
    assert _torch.autocast_dtype(cpu, "fp32") is None
    assert _torch.autocast_dtype(cpu, "bf16") == torch.bfloat16
    _fake_gpu(monkeypatch, cuda=True, bf16=True)
    assert _torch.autocast_dtype(cuda, "auto") == torch.bfloat16
    assert _torch.autocast_dtype(cuda, "fp32") is None
    _fake_gpu(monkeypatch, cuda=True, bf16=False)
    assert _torch.autocast_dtype(cuda, "auto") is None
    with pytest.raises(ValueError, match="does not support bfloat16"):
        _torch.autocast_dtype(cuda, "bf16")


# ---------------------------------------------------------------------------
# The setting in experiments: per experiment, per entry, refused when malformed
# ---------------------------------------------------------------------------

def _experiment(**extra):
    return {"name": "dev", "datasets": {"fashion": {"builtin": "fashion"}},
            "families": [{"family": "naive_bayes"}, {"family": "autoregressive"},
                         {"family": "vae", "categorical": {"device": "cpu"}}], **extra}


def test_the_experiments_device_reaches_every_deep_family_unless_its_entry_says(tmp_path):
    import yaml

    from pmodel.config import load_experiment

    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(_experiment()))
    config = load_experiment(path, ["device=cuda:1"])
    nb, ar, vae = config.families
    assert config.params_for(nb, "categorical") == {}                   # counts train nowhere
    assert config.params_for(ar, "categorical") == {"device": "cuda:1"}
    assert config.params_for(vae, "categorical") == {"device": "cpu"}   # the entry wins
    assert load_experiment(path).params_for(ar, "categorical") == {}    # unset: the family's auto


@pytest.mark.parametrize("where", ["experiment", "entry"])
def test_a_malformed_device_is_refused_when_the_config_loads(tmp_path, where):
    import yaml

    from pmodel.config import ConfigError, load_experiment

    data = _experiment(device="gpu") if where == "experiment" else _experiment()
    if where == "entry":
        data["families"][1]["params"] = {"device": "gpu"}
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="device"):
        load_experiment(path)


def test_hyperparameters_a_gan_would_ignore_are_refused_when_the_config_loads(tmp_path):
    import yaml

    from pmodel.config import ConfigError, load_experiment

    data = {"name": "g", "datasets": {"pixels": {"builtin": "pixels"}},
            "families": [{"family": "gan", "image": {"patience": 3}}]}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['patience'\]"):
        load_experiment(path)


# ---------------------------------------------------------------------------
# A model trained elsewhere loads and samples on this CPU; where it trained is kept
# ---------------------------------------------------------------------------

CHAIN = (CategoricalDomain((2, 3, 4)), dict(epochs=2, hidden=8))


def _rows(n=80):
    return np.random.default_rng(0).integers(0, 2, size=(n, 3))


def test_a_model_saved_with_a_gpu_setting_loads_and_samples_on_a_cpu_only_machine(tmp_path, monkeypatch):
    monkeypatch.delenv(_torch.DEVICE_ENV, raising=False)
    domain, params = CHAIN
    model = make_family("autoregressive", domain, device="cpu", **params).fit(_rows(), rng=np.random.default_rng(0))
    assert model.device_info_["device"] == "cpu" and model.device_info_["torch_version"] == torch.__version__
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["params"]["device"] = "cuda:0"   # as a GPU run writes it
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    _fake_gpu(monkeypatch, cuda=False)
    loaded = load_model(tmp_path / "m")
    assert loaded.device_ == torch.device("cpu") and loaded.device == "cuda:0"
    X = domain.all_cells()
    np.testing.assert_array_equal(loaded.log_prob(X), model.log_prob(X))
    np.testing.assert_array_equal(loaded.sample(30, rng=np.random.default_rng(3)),
                                  model.sample(30, rng=np.random.default_rng(3)))


def test_bf16_training_still_scores_in_float32():
    domain = ImageDomain(2, 3, 3)
    X = np.random.default_rng(0).integers(0, 3, size=(40, 2, 3)).astype(np.uint8)
    model = make_family("vae", domain, epochs=2, hidden=4, latent_dim=2, precision="bf16",
                        device="cpu").fit(X, rng=np.random.default_rng(0))
    lp = model.log_prob(X)
    assert lp.dtype == np.float64 and np.isfinite(lp).all()
    assert next(model.module_.parameters()).dtype == torch.float32


# ---------------------------------------------------------------------------
# The loop's guards: steps, NaN, clipping, pictures
# ---------------------------------------------------------------------------

def _line(**budget):
    w = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(w.weight)
    b = _train.Budget(**{**dict(epochs=20, batch_size=10, lr=0.1, val_fraction=0.0), **budget})
    return w, b


def test_max_steps_ends_the_fit_after_exactly_that_many_optimizer_steps():
    w, b = _line(max_steps=7)
    out = _train.train(w, torch.ones(50, 1), rng=np.random.default_rng(0), budget=b, loss=lambda m, x, g: m(x).mean())
    # 5 steps an epoch: the 7th step is the 2nd of epoch 2; each Adam step on a constant gradient moves lr
    assert out.stopped_by == "steps" and out.steps == 7 and out.epochs == 2
    assert float(w.weight.detach()) == pytest.approx(1.0 - 7 * 0.1, abs=1e-4)


def test_a_nan_loss_stops_the_fit_naming_the_epoch_and_the_step():
    w, b = _line()
    calls = {"n": 0}

    def loss(m, x, g):
        calls["n"] += 1
        value = m(x).mean()
        return value * float("nan") if calls["n"] == 8 else value

    with pytest.raises(_train.TrainingError, match=r"loss is nan at epoch 2, step 8"):
        _train.train(w, torch.ones(50, 1), rng=np.random.default_rng(0), budget=b, loss=loss)


def test_gradients_are_clipped_to_grad_clip():
    norms = []

    def hook(opt, args, kwargs):
        norms.append(float(torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for grp in opt.param_groups for p in grp["params"]]))))

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(hook)
    try:
        for clip in (0.5, 0.0):
            w, b = _line(epochs=1, grad_clip=clip)
            _train.train(w, torch.ones(50, 1), rng=np.random.default_rng(0), budget=b,
                         loss=lambda m, x, g: 100.0 * m(x).mean())   # gradient 100
    finally:
        handle.remove()
    clipped, free = norms[:5], norms[5:]
    assert max(clipped) == pytest.approx(0.5, rel=1e-5) and min(free) == pytest.approx(100.0, rel=1e-5)


def test_the_gan_is_trained_by_the_loop_with_both_players_clipped_and_checked():
    from pmodel.families.gan import ImageGAN

    assert {"patience", "val_fraction"}.isdisjoint(ImageGAN.hyperparameters)
    domain = ImageDomain(8, 8, 256)
    X = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8)).astype(np.uint8)
    gan = make_family("gan", domain, epochs=2, hidden=4, batch_size=20).fit(X, rng=np.random.default_rng(0))
    assert set(gan.history_) == {"loss_d", "loss_g"} and len(gan.history_["loss_d"]) == 2
    assert gan.stopped_by_ == "epochs" and gan.steps_ == 4


def test_the_gans_batch_norm_statistics_are_the_final_generators_and_samples_do_not_depend_on_the_batch():
    domain = ImageDomain(8, 8, 256)
    X = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8)).astype(np.uint8)
    gan = make_family("gan", domain, epochs=2, hidden=4, batch_size=20).fit(X, rng=np.random.default_rng(0))
    G = gan.module_.G
    bn = G.net[2]
    # the running mean is the mean over the re-estimation batches of the final G's features
    g = _torch.generator(123)
    z = _torch.randn(4096, gan.latent_dim, generator=g)
    with torch.no_grad():
        G.train()
        feats = G.net[1](G.net[0](z))
        G.eval()
    np.testing.assert_allclose(bn.running_mean.numpy(), feats.mean(dim=(0, 2, 3)).numpy(), atol=0.05)
    # eval mode: an image does not depend on which others are drawn beside it
    with torch.no_grad():
        one = G(z[:1])
        many = G(z[:64])[:1]
    torch.testing.assert_close(one, many)


def test_pictures_while_training_do_not_change_the_weights():
    domain = ImageDomain(2, 3, 3)
    X = np.random.default_rng(0).integers(0, 3, size=(40, 2, 3)).astype(np.uint8)
    params = dict(epochs=4, hidden=4, latent_dim=2)
    seen = []
    watched = make_family("vae", domain, **params).watch(lambda e, x: seen.append((e, x.shape)), pictures=2,
                                                          n_samples=5)
    watched.fit(X, rng=np.random.default_rng(0))
    plain = make_family("vae", domain, **params).fit(X, rng=np.random.default_rng(0))
    assert seen == [(2, (5, 2, 3)), (4, (5, 2, 3))]
    for (k, a), b in zip(_torch.state_arrays(watched.module_).items(), _torch.state_arrays(plain.module_).values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_a_fit_stopped_by_its_seconds_cap_is_flagged_beside_its_row():
    from pmodel import leaderboard
    from pmodel.records import RunResult

    rows = [RunResult("pixels", "vae", "vae", "vae", {}, log_prob_kind="lower_bound", taxonomy="latent variable",
                      metrics={"kl_to_truth_bound": 3.0, "heldout_loglik_bound": -9.0, "stopped_by_seconds": 1.0}),
            RunResult("pixels", "flow", "flow", "flow", {}, log_prob_kind="lower_bound", taxonomy="flow",
                      metrics={"kl_to_truth_bound": 2.0, "heldout_loglik_bound": -8.0, "stopped_by_seconds": 0.0})]
    text = leaderboard.as_text(rows)
    flagged = [line for line in text.splitlines() if leaderboard.CAPPED in line and "the fit's" not in line]
    assert len(flagged) == 1 and flagged[0].lstrip().startswith("vae")
    assert leaderboard.CAPPED_NOTE in text
    md = leaderboard.as_markdown(rows)
    assert f"vae {leaderboard.CAPPED}" in md and f"flow {leaderboard.CAPPED}" not in md
    assert leaderboard.CAPPED not in leaderboard.as_text(rows[1:])
