"""The gated PixelCNN (image autoregressive family): its receptive field and its sampler.

- the sampler's cached logits (row by row for the vertical stack, column by column for
  the horizontal one) and the crop-wise logits equal the whole image's;
- no blind spot: pixel (r, c)'s logits depend on every pixel above within reach and to
  the left in its row within reach, and on nothing else (not itself, nothing later);
- p sums to 1 over every image of a tiny domain; sampling draws from that p;
- the dilations are declared: bad values are refused.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pmodel.families import ImageDomain, check_hyperparameters, make_family  # noqa: E402
from pmodel.families.autoregressive import PixelCNN, PixelCNNConfig, parse_dilations  # noqa: E402


def _net(height, width, levels, channels, layers, dilations, seed=0):
    torch.manual_seed(seed)
    net = PixelCNN(PixelCNNConfig(height, width, levels, channels, layers, dilations)).double()
    with torch.no_grad():
        net.pixel_bias.normal_()
    return net.eval()


def test_the_reach_counts_the_input_window_the_dilations_and_the_shift():
    c = PixelCNNConfig(32, 32, 256, 32, 6, (1, 2, 4))
    assert c.layer_dilations == (1, 2, 4, 1, 2, 4)
    assert c.reach == 5 // 2 + 14 and c.reach_up == c.reach + 1
    assert PixelCNNConfig(8, 8, 4, 4, 0).reach == 2


@pytest.mark.parametrize("dilations", [(1,), (1, 2), (2, 1, 3)])
def test_the_samplers_cached_logits_and_the_crops_equal_the_whole_images(dilations):
    net = _net(11, 12, 5, 6, 3, dilations)
    x = torch.randint(0, 5, (3, 11, 12))
    with torch.no_grad():
        full = net.logits(x)
        torch.testing.assert_close(net.raster_logits(x), full, rtol=0, atol=1e-12)
        for r, c in itertools.product(range(11), range(12)):
            torch.testing.assert_close(net.pixel_logits(x, r, c), full[:, :, r, c], rtol=0, atol=1e-12)


def _cone(r, c, height, width, reach):
    """The pixels (r, c)'s logits should see: rows r - reach - 1 .. r - 1 within reach either
    side, and the ``reach`` pixels left of it in its own row."""
    seen = np.zeros((height, width), dtype=bool)
    seen[max(0, r - reach - 1):r, max(0, c - reach):c + reach + 1] = True
    seen[r, max(0, c - reach):c] = True
    return seen


@pytest.mark.parametrize("dilations,layers", [((1, 2), 3), ((1,), 2), ((2,), 2), ((1, 2, 4), 3)])
def test_no_blind_spot_and_no_peeking(dilations, layers):
    """d logits(r, c) / d x is nonzero exactly on the pixels before (r, c) within reach."""
    H, W = 18, 21
    net = _net(H, W, 4, 16, layers, dilations, seed=1)  # 16 channels: no pixel's relu(h) all 0
    reach = net.c.reach
    assert reach + 2 < H and 2 * reach + 1 < W  # the cone ends inside the image
    h = (torch.rand(1, 1, H, W, dtype=torch.float64) * 2 - 1).requires_grad_()
    logits = net.logits_scaled(h)
    direction = torch.randn(4, dtype=torch.float64)
    for r, c in [(0, 0), (0, 5), (3, 0), (8, 8), (H - 1, W - 1), (reach + 3, reach + 1), (10, 2)]:
        (grad,) = torch.autograd.grad(logits[0, :, r, c] @ direction, h, retain_graph=True)
        nonzero = (grad[0, 0] != 0).numpy()
        np.testing.assert_array_equal(nonzero, _cone(r, c, H, W, reach), err_msg=f"pixel {(r, c)}")


def _tiny_model(X, **params):
    params = {"epochs": 3, "channels": 4, "layers": 2, "dilations": "1,2", "device": "cpu", **params}
    return make_family("autoregressive", ImageDomain(2, 2, levels=3), **params).fit(
        X, rng=np.random.default_rng(0))


def _tiny_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 3, size=(1, 2, 2)) + rng.integers(-1, 2, size=(n, 2, 2)), 0, 2).astype(np.uint8)


def test_probabilities_sum_to_one_over_all_81_images_and_samples_follow_them():
    model = _tiny_model(_tiny_data())
    every = np.array(list(itertools.product(range(3), repeat=4)), dtype=np.uint8).reshape(-1, 2, 2)
    lp = model.log_prob(every)
    assert np.logaddexp.reduce(lp) == pytest.approx(0.0, abs=1e-5)
    # the sampler draws from that p: frequencies of 20,000 draws against exp(log_prob)
    n = 20_000
    s = model.sample(n, rng=np.random.default_rng(3))
    assert s.dtype == np.uint8 and s.shape == (n, 2, 2)
    codes = (s.reshape(n, 4).astype(np.int64) * 3 ** np.arange(3, -1, -1)).sum(1)
    freq = np.bincount(codes, minlength=81) / n
    p = np.exp(lp)
    assert np.abs(freq - p).max() < 5 * np.sqrt(p.max() / n)
    chi2 = (n * (freq - p) ** 2 / p).sum()
    assert chi2 < 80 + 5 * np.sqrt(2 * 80)  # 80 degrees of freedom, five standard deviations


def test_sampling_is_seeded_and_saved_models_sample_the_same(tmp_path):
    from pmodel.families.base import load_model

    model = _tiny_model(_tiny_data())
    a = model.sample(50, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, model.sample(50, rng=np.random.default_rng(1)))
    assert not np.array_equal(a, model.sample(50, rng=np.random.default_rng(2)))
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.module_.c.dilations == (1, 2)
    np.testing.assert_array_equal(loaded.sample(50, rng=np.random.default_rng(1)), a)


def test_the_per_pixel_bias_starts_at_naive_bayes():
    from pmodel.families.deep._base import naive_bayes_logits

    X = _tiny_data()
    model = make_family("autoregressive", ImageDomain(2, 2, levels=3), epochs=1, max_steps=1, lr=1e-12,
                        channels=4, layers=1, device="cpu").fit(X, rng=np.random.default_rng(0))
    nb = naive_bayes_logits(X, 3).T.reshape(3, 2, 2)
    np.testing.assert_allclose(model.module_.pixel_bias.detach().numpy(), nb, atol=1e-6)


@pytest.mark.parametrize("dilations,layers", [("3", 1), ("4,1,2", 1), ("1,8", 2), ("1,2,16", 3)])
def test_dilations_that_leave_holes_in_the_receptive_field_are_refused(dilations, layers):
    with pytest.raises(ValueError, match="blind spot"):
        _tiny_model(_tiny_data(), dilations=dilations, layers=layers)


@pytest.mark.parametrize("bad", ["0", "1,,2", "a", "1, 2", "", "1,2,", "100", -1])
def test_bad_dilations_are_refused(bad):
    with pytest.raises(ValueError, match="dilations"):
        check_hyperparameters("autoregressive", "image", {"dilations": bad})


def test_dilations_parse():
    assert check_hyperparameters("autoregressive", "image", {"dilations": "1,2,4"}) == {"dilations": "1,2,4"}
    assert parse_dilations("1,2,4") == (1, 2, 4) and parse_dilations("7") == (7,)
