"""The diffusion family's schedule and samplers, apart from its networks.

- the schedule's betas, alphas, abar and posterior variance against a plain-loop numpy
  computation of the papers' formulas (linear and cosine);
- add_noise is q(x_t | x_0): its closed form, and the t one-step forward steps composed;
- with the exact eps of a point mass, DDIM (any number of steps) and ancestral sampling
  both end on it: the update formulas are the papers';
- DDIM with eta = 0 and all T steps is deterministic given x_T; DDIM with fewer steps
  gives images of the right shape and dtype through the family, seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pmodel.families import ImageDomain, check_hyperparameters, make_family  # noqa: E402
from pmodel.families.diffusion import (AncestralSampler, DDIMSampler, Diffusion, GaussianDecoder,  # noqa: E402
                                       NoiseSchedule, make_sampler)


def _reference(T, kind):
    """beta_t, alpha_t, abar_t, betatilde_t for t = 1..T, one step at a time."""
    if kind == "linear":
        betas = [min((1e-4 + (0.02 - 1e-4) * i / (T - 1)) * 1000.0 / T, 0.5) for i in range(T)]
    else:
        f = [math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
        betas = [min(1 - f[t] / f[t - 1], 0.999) for t in range(1, T + 1)]
    alphas, abar, post = [], [], []
    prod = 1.0
    for b in betas:
        prev = prod
        prod *= 1 - b
        alphas.append(1 - b)
        abar.append(prod)
        post.append(b * (1 - prev) / (1 - prod))
    return np.array(betas), np.array(alphas), np.array(abar), np.array(post)


@pytest.mark.parametrize("T,kind", [(6, "linear"), (100, "linear"), (1000, "linear"), (10, "cosine"),
                                    (1000, "cosine")])
def test_schedule_quantities_match_the_formulas(T, kind):
    s = NoiseSchedule(T, kind)
    betas, alphas, abar, post = _reference(T, kind)
    np.testing.assert_allclose(s.betas, betas, rtol=1e-12)
    np.testing.assert_allclose(s.alphas, alphas, rtol=1e-12)
    np.testing.assert_allclose(s.abar, abar, rtol=1e-10)
    np.testing.assert_allclose(s.abar_prev, np.concatenate([[1.0], abar[:-1]]), rtol=1e-10)
    np.testing.assert_allclose(s.post_var, post, rtol=1e-9)
    assert s.post_var[0] == 0.0
    w = betas[1:] ** 2 / (2 * post[1:] * alphas[1:] * (1 - abar[1:]))
    np.testing.assert_allclose(s.bound_weight[1:], w, rtol=1e-9)
    assert (s.betas > 0).all() and (s.betas < 1).all() and abar[-1] < 0.05  # x_T nearly pure noise


def test_a_bad_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        NoiseSchedule(10, "quadratic")
    with pytest.raises(ValueError, match="schedule"):
        check_hyperparameters("diffusion", "image", {"schedule": "quadratic"})


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_add_noise_is_q_xt_given_x0(kind):
    T = 50
    s = NoiseSchedule(T, kind)
    x0 = torch.randn(7, 3, dtype=torch.float64)
    eps = torch.randn(7, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 5, 17, 30, 48, 49])
    _, alphas, abar, _ = _reference(T, kind)
    closed = np.sqrt(abar[t.numpy()])[:, None] * x0.numpy() + np.sqrt(1 - abar[t.numpy()])[:, None] * eps.numpy()
    np.testing.assert_allclose(s.add_noise(x0, eps, t).numpy(), closed, rtol=1e-12, atol=1e-12)
    # the forward chain x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z composed t times: a Gaussian
    # whose mean and variance follow m_t = sqrt(alpha_t) m_{t-1}, v_t = alpha_t v_{t-1} + beta_t
    m, v = 1.0, 0.0
    for i in range(T):
        m, v = math.sqrt(alphas[i]) * m, alphas[i] * v + (1 - alphas[i])
        tt = torch.tensor([i])
        one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
        assert float(s.add_noise(one, zero, tt)) == pytest.approx(m, rel=1e-12)        # mean
        assert float(s.add_noise(zero, one, tt)) ** 2 == pytest.approx(v, rel=1e-10)   # variance


class _Oracle(torch.nn.Module):
    """The exact eps of a point mass at ``c``: x_t = sqrt(abar_t) c + sqrt(1 - abar_t) eps."""

    def __init__(self, schedule, c):
        super().__init__()
        self.s, self.c = schedule, c

    def forward(self, xt, t):
        a = self.s.at("abar", t, xt)
        return (xt - a.sqrt() * self.c) / (1 - a).sqrt()


@pytest.mark.parametrize("steps", [1, 3, 10, 100])
def test_ddim_and_ancestral_sampling_end_on_a_point_mass_given_its_exact_eps(steps):
    s = NoiseSchedule(100, "linear")
    c = torch.tensor([0.3, -1.2], dtype=torch.float64)
    diffusion = Diffusion(_Oracle(s, c), s, GaussianDecoder())
    g = torch.Generator().manual_seed(0)
    x, _ = diffusion.sample(5, g, (2,), DDIMSampler(s, steps), torch.float64)
    torch.testing.assert_close(x, c.expand(5, 2), rtol=0, atol=1e-9)
    # the ancestral chain's last mean (before the decoder's draw) is the point itself
    xs = torch.randn(5, 2, generator=g, dtype=torch.float64)
    sampler = AncestralSampler(s)
    for i, t in enumerate(sampler.timesteps):
        xs = sampler.step(diffusion.net(xs, torch.full((5,), t)), i, xs, g)
    torch.testing.assert_close(xs, c.expand(5, 2), rtol=0, atol=1e-9)


def test_ddim_over_all_steps_is_deterministic_given_x_T():
    s = NoiseSchedule(20, "cosine")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    eps = lambda x, t: net(torch.cat([x, (t[:, None] + 1.0) / 20], 1))  # noqa: E731
    sampler = make_sampler(s, 20)
    assert isinstance(sampler, DDIMSampler) and sampler.timesteps == list(range(19, -1, -1))
    assert isinstance(make_sampler(s, 0), AncestralSampler)
    xT = torch.randn(8, 2, dtype=torch.float64)

    def run(seed):
        g, x = torch.Generator().manual_seed(seed), xT.clone()
        for i, t in enumerate(sampler.timesteps):
            x = sampler.step(eps(x, torch.full((8,), t)), i, x, g)
        return x

    a, b = run(1), run(2)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    # and the stochastic ancestral sampler is not
    anc = AncestralSampler(s)
    outs = []
    for seed in (1, 2):
        g, x = torch.Generator().manual_seed(seed), xT.clone()
        for i, t in enumerate(anc.timesteps):
            x = anc.step(eps(x, torch.full((8,), t)), i, x, g)
        outs.append(x)
    assert not torch.equal(*outs)


@pytest.mark.parametrize("T,k", [(1000, 50), (10, 3), (7, 7), (5, 1)])
def test_ddims_steps_are_evenly_spaced_from_T_to_1(T, k):
    ts = DDIMSampler(NoiseSchedule(T), k).timesteps
    assert len(ts) == k == len(set(ts)) and ts[0] == T - 1 and ts == sorted(ts, reverse=True)
    if k > 1:
        assert ts[-1] == 0 and max(np.diff(ts)) - min(np.diff(ts)) <= 1


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3, size=(2, 3))
    return np.clip(base + rng.integers(-1, 2, size=(n, 2, 3)), 0, 2).astype(np.uint8)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_with_fewer_steps_samples_images_of_the_right_shape_and_dtype(schedule):
    domain = ImageDomain(2, 3, levels=3)
    model = make_family("diffusion", domain, epochs=2, hidden=4, steps=12, schedule=schedule,
                        sampling_steps=4, device="cpu").fit(_images(40), rng=np.random.default_rng(0))
    x = model.sample(30, rng=np.random.default_rng(1))
    assert x.shape == (30, 2, 3) and x.dtype == np.uint8 and x.max() <= 2
    np.testing.assert_array_equal(x, model.sample(30, rng=np.random.default_rng(1)))
    chain = model.denoising_steps(4, rng=np.random.default_rng(2), frames=3)
    # x_T, then x_5 (DDIM's steps are t = 12, 8, 5, 1), then x_0
    assert [t for t, _ in chain] == [12, 5, 0] and all(im.shape == (4, 2, 3) for _, im in chain)
    lp = model.log_prob(_images(10, seed=1))
    assert lp.shape == (10,) and np.isfinite(lp).all() and (lp < 0).all()


def test_more_ddim_steps_than_diffusion_steps_are_refused():
    with pytest.raises(ValueError, match="sampling_steps"):
        make_family("diffusion", ImageDomain(2, 3, levels=3), epochs=1, hidden=4, steps=5,
                    sampling_steps=6).fit(_images(20), rng=np.random.default_rng(0))


def test_the_bound_with_every_step_drawn_once_is_the_sum_of_its_terms():
    """K = T - 1: the stratified draws pick each t in 2..T once; the estimate then equals
    L_T + sum_t w_t ||eps_t - eps_theta||^2 + L_0 computed term by term with the same noise."""
    T = 6
    s = NoiseSchedule(T, "linear")
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    eps_fn = lambda x, t: net(torch.cat([x, t[:, None].double()], 1))  # noqa: E731
    diffusion = Diffusion(eps_fn, s, GaussianDecoder())
    x0 = torch.randn(4, 2, dtype=torch.float64)
    got = diffusion.neg_bound(x0, torch.Generator().manual_seed(5), T - 1)
    g = torch.Generator().manual_seed(5)
    aT = s.abar[-1]
    want = 0.5 * (aT * x0**2 + (1 - aT) - 1 - math.log(1 - aT)).sum(1)
    for t in range(1, T):
        torch.rand(4, generator=g, dtype=torch.float64)  # the stratum's draw: t is forced
        eps = torch.randn(4, 2, generator=g, dtype=torch.float64)
        tt = torch.full((4,), t)
        xt = math.sqrt(s.abar[t]) * x0 + math.sqrt(1 - s.abar[t]) * eps
        want = want + s.bound_weight[t] * ((eps - eps_fn(xt, tt))**2).sum(1)
    eps = torch.randn(4, 2, generator=g, dtype=torch.float64)
    x1 = math.sqrt(s.abar[0]) * x0 + math.sqrt(1 - s.abar[0]) * eps
    t1 = torch.zeros(4, dtype=torch.long)
    mean = (x1 - s.betas[0] / math.sqrt(1 - s.abar[0]) * eps_fn(x1, t1)) / math.sqrt(s.alphas[0])
    var = s.betas[0]
    want = want + (0.5 * (x0 - mean)**2 / var + 0.5 * math.log(2 * math.pi * var)).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_the_posterior_mean_from_x0_hat_is_the_eps_form_and_clipping_bounds_x0_hat(kind):
    s = NoiseSchedule(50, kind)
    x, eps = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 25, 40, 49])
    torch.testing.assert_close(s.posterior_mean_x0(x, s.predict_x0(x, eps, t), t), s.posterior_mean(x, eps, t),
                               rtol=1e-9, atol=1e-9)
    # at t = T (cosine: abar_T ~ 1e-10) x0_hat is huge; clipped, DDIM's one step lands in [-1, 1]
    big = DDIMSampler(s, 1, clip=1.0).step(eps, 0, x * 3, torch.Generator())
    assert big.abs().max() <= 1.0
    # and clipping changes nothing where x0_hat is already inside [-1, 1]
    x0 = torch.rand(6, 3, dtype=torch.float64) * 2 - 1
    for i in (0, 30, 49):  # the sampler's i-th step is t = 50 - i (0-based 49 - i)
        xt = s.add_noise(x0, eps, torch.full((6,), 49 - i))
        a = AncestralSampler(s, clip=1.0).step(eps, i, xt, torch.Generator().manual_seed(0))
        b = AncestralSampler(s).step(eps, i, xt, torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_clipped_sampling_through_the_family():
    model = make_family("diffusion", ImageDomain(2, 3, levels=3), epochs=1, hidden=4, steps=10,
                        schedule="cosine", sampling_steps=5, clip_sample=True, device="cpu")
    model.fit(_images(20), rng=np.random.default_rng(0))
    x = model.sample(10, rng=np.random.default_rng(1))
    assert x.shape == (10, 2, 3) and x.dtype == np.uint8 and x.max() <= 2


# ---------------------------------------------------------------------------
# the bound's estimate: strata of t, unbiased, its noise
# ---------------------------------------------------------------------------

def test_the_bound_strata_are_whole_steps_from_2_to_T_finer_where_the_terms_are_large():
    from pmodel.families.diffusion import bound_strata

    for T in (2, 3, 6, 10, 100, 1000):
        for K in (1, 2, 4, 8, 16, 32, 2000):
            e = bound_strata(T, K)
            assert e[0] == 1 and e[-1] == T and len(e) - 1 == min(K, T - 1)
            assert (np.diff(e) >= 1).all() and (np.diff(np.diff(e)) >= -1).all()  # widths grow
    assert bound_strata(100, 8).tolist() == [1, 2, 3, 5, 9, 16, 29, 54, 100]
    assert bound_strata(6, 5).tolist() == bound_strata(6, 99).tolist() == [1, 2, 3, 4, 5, 6]


def _toy(T=100):
    """A diffusion with a fixed, imperfect eps 'network' (0.5 x_t), on 2-D points."""
    return Diffusion(lambda x, t: 0.5 * x, NoiseSchedule(T, "linear"), GaussianDecoder())


def test_the_stratified_bound_is_unbiased_and_less_noisy_than_uniform_draws():
    """20,000 independent estimates of one example's bound (each row draws its own t's and
    eps's): with 4 strata and with 4 uniform draws, their means agree with the full sum's
    (T - 1 strata: every step once, only eps drawn) within 4 standard errors; the strata's
    spread is well below the uniform draws'."""
    d, B = _toy(), 20_000
    x0 = torch.tensor([[0.7, -1.2]], dtype=torch.float64).repeat(B, 1)
    full = d.neg_bound(x0, torch.Generator().manual_seed(1), 99).numpy()
    strat = d.neg_bound(x0, torch.Generator().manual_seed(2), 4).numpy()
    iid = d.neg_bound(x0, torch.Generator().manual_seed(3), 4, stratified=False).numpy()
    se = lambda v: v.std(ddof=1) / math.sqrt(len(v))  # noqa: E731
    for est in (strat, iid):
        assert abs(est.mean() - full.mean()) < 4 * math.hypot(se(est), se(full))
    assert strat.std() < 0.6 * iid.std()
    assert full.std() < strat.std()  # the full sum's noise is eps's alone


def test_the_kl_standard_error_from_two_draws_matches_the_spread_over_many():
    """The KL over fixed examples has only the draws' noise: its se from two independent
    draws (kl_monte_carlo_se) agrees with the sd of the KL over 40 re-seeded draws."""
    from pmodel.scores.truth import kl_monte_carlo_se

    d = _toy(50)
    rng = np.random.default_rng(0)
    x0 = torch.as_tensor(rng.normal(size=(300, 2)))
    p = rng.dirichlet(np.ones(300))

    def log_q(seed):
        return -d.neg_bound(x0, torch.Generator().manual_seed(seed), 3).numpy()

    kls = [float(np.sum(p * (np.log(p) - log_q(s)))) for s in range(40)]
    se = kl_monte_carlo_se(p, log_q(100), log_q(101))
    assert 0.65 < se / np.std(kls, ddof=1) < 1.5
