"""The DDPM algebra of hubgen.diffusion.scheduling, each formula against an independent computation: diffusers'
scheduler, the forward chain iterated step by step, the product of two Gaussians, autograd on Gaussian
log-densities, torch.distributions, scipy, and the closed-form optimal predictor for Gaussian data."""

import math

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import compute_snr
from scipy import stats

from hubgen.diffusion.scheduling import (
    discretized_gaussian_log_likelihood,
    drop_condition,
    eps_to_score,
    eps_to_x0,
    guided_eps,
    min_snr_weight,
    normal_kl,
    p_mean_variance,
    q_posterior,
    q_sample,
    variational_bound,
)

F64 = dict(dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _abar(scheduler) -> torch.Tensor:
    return scheduler.alphas_cumprod.double()


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_q_sample_equals_the_schedulers_add_noise(schedule):
    scheduler = DDPMScheduler(beta_schedule=schedule)
    x0, eps = torch.randn(16, 1, 8, 8, generator=_g(0)), torch.randn(16, 1, 8, 8, generator=_g(1))
    t = torch.randint(0, 1000, (16,), generator=_g(2))
    expected = scheduler.add_noise(x0, eps, t)
    torch.testing.assert_close(q_sample(x0, t, eps, scheduler.alphas_cumprod), expected, rtol=1e-6, atol=1e-6)
    # an int t broadcasts over the batch
    torch.testing.assert_close(
        q_sample(x0, 500, eps, scheduler.alphas_cumprod), scheduler.add_noise(x0, eps, torch.full((16,), 500))
    )


def test_q_sample_equals_the_forward_chain_in_distribution():
    """x_t from eq. 4 in one draw vs t + 1 steps of q(x_s | x_{s-1}) = N(sqrt(1 - beta_s) x_{s-1}, beta_s): same law,
    checked at t = 1, 10, 251 and 1000 (0-based 0, 9, 250, 999) along one run of the chain.

    Tolerances, with n = 8000 chains per pixel: the standardized mean within 4 / sqrt(n), the variance within
    4 sqrt(2 / n) of 1, and a two-sample Kolmogorov-Smirnov test against one-shot draws with p > 1e-3.
    """
    scheduler, n, checkpoints = DDPMScheduler(), 8000, (0, 9, 250, 999)
    betas, abar = scheduler.betas.double(), _abar(scheduler)
    x0 = torch.tensor([-1.0, 0.2, 1.0], **F64)  # three pixels
    x, g = x0.expand(n, 3).clone(), _g(0)
    for chunk in range(0, 1000, 100):
        noise = torch.randn(100, n, 3, generator=g, **F64)  # drawn in bulk: much faster than per step
        for s in range(chunk, chunk + 100):
            x = (1 - betas[s]).sqrt() * x + betas[s].sqrt() * noise[s - chunk]  # the chain, eq. 2
            if s not in checkpoints:
                continue
            z = (x - abar[s].sqrt() * x0) / (1 - abar[s]).sqrt()  # ~ N(0, 1) if the closed form is right
            assert z.mean(0).abs().max() < 4 / math.sqrt(n), s
            assert (z.var(0) - 1).abs().max() < 4 * math.sqrt(2 / n), s
            one_shot = q_sample(x0.expand(n, 3), s, torch.randn(n, 3, generator=_g(100 + s), **F64), abar)
            for j in range(3):
                assert stats.ks_2samp(x[:, j].numpy(), one_shot[:, j].numpy()).pvalue > 1e-3, (s, j)


def test_q_posterior_is_the_product_of_the_two_gaussians():
    """q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): precisions add, means are precision-weighted."""
    abar = _abar(DDPMScheduler())
    t = torch.tensor([1, 2, 10, 100, 500, 998, 999])
    x0, xt = torch.randn(7, 3, generator=_g(0), **F64), torch.randn(7, 3, generator=_g(1), **F64)
    a_t, a_prev = abar[t][:, None], abar[t - 1][:, None]
    alpha, beta = a_t / a_prev, 1 - a_t / a_prev
    # as functions of x_{t-1}: N(x_t / sqrt(alpha), beta / alpha) and N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1})
    precision = alpha / beta + 1 / (1 - a_prev)
    mean = (xt / alpha.sqrt() * (alpha / beta) + a_prev.sqrt() * x0 / (1 - a_prev)) / precision
    post = q_posterior(x0, xt, t, abar)
    torch.testing.assert_close(post.mean, mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(post.variance.expand_as(mean), (1 / precision).expand_as(mean), rtol=1e-10, atol=0)
    torch.testing.assert_close(post.log_variance, post.variance.log())
    mean_, variance_, log_variance_ = post  # also unpacks as (mean, variance, log variance)
    assert mean_ is post.mean and variance_ is post.variance and log_variance_ is post.log_variance
    # t = 1 (index 0): x_{t-1} is x_0 itself; the log variance is clipped to beta~_2
    first = q_posterior(x0, xt, 0, abar)
    torch.testing.assert_close(first.mean, x0, rtol=0, atol=1e-12)
    assert first.variance == 0 and first.log_variance == q_posterior(x0, xt, 1, abar).variance.log()


def test_q_posterior_in_float32_keeps_the_float64_mean():
    """At small t, 1 - abar_t / abar_{t-1} in float32 keeps few digits; the coefficients are computed in float64, so
    the float32 mean is within 1e-4 posterior standard deviations of the float64 one at every t."""
    abar = _abar(DDPMScheduler())  # float64
    t = torch.arange(1, 1000)
    x0 = torch.randn(999, 16, generator=_g(0)).clamp(-1, 1)
    xt = torch.randn(999, 16, generator=_g(1))
    exact = q_posterior(x0.double(), xt.double(), t, abar)
    single = q_posterior(x0, xt, t, abar.float())
    assert single.mean.dtype == torch.float32
    error = (single.mean.double() - exact.mean).abs() / exact.variance.sqrt()
    assert error.max() < 1e-4, (error.max(), t[error.max(1).values.argmax()])


def test_the_prior_term_depends_on_x0():
    """L_T = KL(q(x_T | x_0) || N(0, I)) is a function of x_0 (through sqrt(abar_T) x_0): x_0 = 1 costs more than
    x_0 = 0, by exactly the closed form's difference, 1/2 abar_T x_0^2 per dimension."""
    scheduler = _fast_scheduler("fixed_small")
    model = _optimal_eps(_abar(scheduler), MU, S)
    near, far = torch.zeros(2, 16, dtype=torch.float64), torch.ones(2, 16, dtype=torch.float64)
    a = variational_bound(model, scheduler, near, generator=_g(0)).prior
    b = variational_bound(model, scheduler, far, generator=_g(0)).prior
    abar_T = _abar(scheduler)[-1]
    torch.testing.assert_close(b - a, torch.full((2,), 16 * 0.5 * abar_T * 1.0**2, dtype=torch.float64))
    assert (b - a > 0).all()


@pytest.mark.parametrize("t", [0, 1, 37, 600, 999])
def test_q_posterior_matches_the_diffusers_scheduler(t):
    """Against DDPMScheduler's posterior variance (_get_variance) and its step() mean (x_0 implied by the noise)."""
    scheduler = DDPMScheduler(clip_sample=False)
    x0, eps = torch.randn(4, 1, 8, 8, generator=_g(0)), torch.randn(4, 1, 8, 8, generator=_g(1))
    xt = scheduler.add_noise(x0, eps, torch.full((4,), t))
    post = q_posterior(x0, xt, t, scheduler.alphas_cumprod)
    if t > 0:
        # diffusers computes the variance in float32, hubgen's coefficients in float64: 1e-4 relative apart at t = 1
        torch.testing.assert_close(post.variance, scheduler._get_variance(t), rtol=2e-4, atol=0)
    # step() draws its noise from the generator: the same seed recovers it, and with it the mean
    prev = scheduler.step(eps, t, xt, generator=_g(7)).prev_sample
    noise = torch.randn(xt.shape, generator=_g(7)) if t > 0 else torch.zeros_like(xt)
    mean = prev - scheduler._get_variance(t).sqrt() * noise if t > 0 else prev
    torch.testing.assert_close(post.mean, mean, rtol=1e-4, atol=1e-5)


def test_eps_to_x0_and_eps_to_score_against_autograd_of_q_xt_given_x0():
    abar = _abar(DDPMScheduler())
    t = torch.tensor([0, 5, 200, 999])
    x0, eps = torch.randn(4, 6, generator=_g(0), **F64), torch.randn(4, 6, generator=_g(1), **F64)
    xt = q_sample(x0, t, eps, abar).requires_grad_(True)
    torch.testing.assert_close(eps_to_x0(xt.detach(), t, eps, abar), x0, rtol=0, atol=1e-9)
    a = abar[t][:, None]
    log_q = torch.distributions.Normal(a.sqrt() * x0, (1 - a).sqrt()).log_prob(xt).sum()
    (score,) = torch.autograd.grad(log_q, xt)
    torch.testing.assert_close(eps_to_score(eps, t, abar), score, rtol=1e-10, atol=1e-10)


def _optimal_eps(abar, mu: float, s: float):
    """E[eps | x_t] for x_0 ~ N(mu, s^2) per pixel: x_t ~ N(a mu, a^2 s^2 + b^2), Cov(eps, x_t) = b (a, b = sqrt(abar),
    sqrt(1 - abar)), so the regression of eps on x_t is linear: b (x_t - a mu) / (a^2 s^2 + b^2)."""

    def model(xt, t):
        a, b = abar[t].sqrt().reshape(-1, *[1] * (xt.ndim - 1)), (1 - abar[t]).sqrt().reshape(-1, *[1] * (xt.ndim - 1))
        return b * (xt.double() - a * mu) / (a * a * s * s + b * b)

    return model


def test_the_optimal_predictor_gives_the_marginal_score_and_tweedies_x0():
    """For Gaussian data the score of the marginal q(x_t) is known: eps_to_score(E[eps | x_t]) must be its gradient,
    and eps_to_x0 must give E[x_0 | x_t]. The closed-form E[eps | x_t] is itself checked by least squares."""
    abar, mu, s = _abar(DDPMScheduler()), 0.3, 0.5
    eps_star = _optimal_eps(abar, mu, s)
    t = torch.tensor([0, 40, 300, 900])
    xt = torch.randn(4, 5, generator=_g(0), **F64).requires_grad_(True)
    a, b = abar[t][:, None].sqrt(), (1 - abar[t][:, None]).sqrt()
    var = a * a * s * s + b * b
    log_q = torch.distributions.Normal(a * mu, var.sqrt()).log_prob(xt).sum()
    (score,) = torch.autograd.grad(log_q, xt)
    xt = xt.detach()
    torch.testing.assert_close(eps_to_score(eps_star(xt, t), t, abar), score, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(eps_to_x0(xt, t, eps_star(xt, t), abar), mu + a * s * s * (xt - a * mu) / var)
    # least squares of eps on (1, x_t) from samples recovers the closed-form slope and intercept
    n, tt = 200_000, 300
    x0 = mu + s * torch.randn(n, generator=_g(1), **F64)
    eps = torch.randn(n, generator=_g(2), **F64)
    x = q_sample(x0, tt, eps, abar)
    coef = torch.linalg.lstsq(torch.stack([torch.ones(n, **F64), x], 1), eps[:, None]).solution[:, 0]
    a, b = abar[tt].sqrt(), (1 - abar[tt]).sqrt()
    torch.testing.assert_close(coef, torch.stack([-b * a * mu, b]) / (a * a * s * s + b * b), rtol=0, atol=0.01)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_p_mean_variance_is_eq_11_with_the_fixed_variance(variance_type):
    scheduler = DDPMScheduler(variance_type=variance_type)
    abar = _abar(scheduler)
    betas = 1 - abar / torch.cat([torch.ones(1, **F64), abar[:-1]])  # abar_t = prod (1 - beta_s), in float64
    t = torch.tensor([0, 1, 50, 999])
    xt, eps = torch.randn(4, 3, generator=_g(0), **F64), torch.randn(4, 3, generator=_g(1), **F64)
    mean, log_var, _ = p_mean_variance(eps, xt, t, abar, variance_type)
    alpha, beta, a = 1 - betas[t][:, None], betas[t][:, None], abar[t][:, None]
    torch.testing.assert_close(mean, (xt - beta / (1 - a).sqrt() * eps) / alpha.sqrt())  # eq. 11
    expected = [scheduler._get_variance(int(i), variance_type="fixed_small" if i == 0 else None) for i in t]
    expected[0] = scheduler._get_variance(1, variance_type="fixed_small")  # t = 1: beta~_2 (Ho et al.'s code)
    # diffusers works in float32: beta_2 = 1 - abar_2 / abar_1 = 1.2e-4 loses digits to cancellation (float32 eps 6e-8)
    torch.testing.assert_close(log_var.flatten().exp(), torch.stack(expected).double(), rtol=2e-3, atol=0)


def test_p_mean_with_clipping_is_the_schedulers_step():
    scheduler = DDPMScheduler()  # clip_sample=True
    xt, eps = 2 * torch.randn(4, 1, 4, 4, generator=_g(0)), torch.randn(4, 1, 4, 4, generator=_g(1))
    out = scheduler.step(eps, 0, xt)  # t = 0 adds no noise: prev_sample is the mean
    mean, _, x0_hat = p_mean_variance(eps, xt, 0, scheduler.alphas_cumprod, clip_x0=1.0)
    torch.testing.assert_close(x0_hat, out.pred_original_sample)
    torch.testing.assert_close(mean, out.prev_sample)


def test_normal_kl_matches_torch_distributions():
    m1, m2 = torch.randn(50, generator=_g(0), **F64), torch.randn(50, generator=_g(1), **F64)
    v1, v2 = torch.randn(50, generator=_g(2), **F64), torch.randn(50, generator=_g(3), **F64)
    N = torch.distributions.Normal
    expected = torch.distributions.kl_divergence(N(m1, (0.5 * v1).exp()), N(m2, (0.5 * v2).exp()))
    torch.testing.assert_close(normal_kl(m1, v1, m2, v2), expected)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_gaussian_is_a_distribution_over_the_levels(levels):
    grid = torch.linspace(-1, 1, levels, **F64)[:, None]  # (L, 1): every level against several (mean, sigma)
    mean = torch.tensor([-1.3, -0.5, 0.0, 0.2, 0.99, 3.0], **F64)
    log_var = torch.tensor([0.0, -4.0, -9.0, -12.0, -2.0, -1.0], **F64)
    logp = discretized_gaussian_log_likelihood(grid, mean, log_var, levels)  # (L, 6)
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(6, **F64), rtol=0, atol=1e-9)
    # against Phi(upper) - Phi(lower) from torch.distributions, with open end bins
    h, sigma = 1 / (levels - 1), (0.5 * log_var).exp()
    cdf = torch.distributions.Normal(mean, sigma).cdf
    upper = torch.where(grid > 1 - h / 2, torch.ones(()), cdf(grid + h))
    lower = torch.where(grid < -1 + h / 2, torch.zeros(()), cdf(grid - h))
    torch.testing.assert_close(logp.exp(), upper - lower, rtol=1e-6, atol=1e-12)


def test_discretized_gaussian_stays_finite_and_exact_in_the_tails():
    # the top bin [1 - h, inf) 30 standard deviations above the mean: log(1 - Phi(z)), from scipy
    x, mean, sigma = torch.tensor([1.0], **F64), torch.tensor([0.0], **F64), 0.03
    logp = discretized_gaussian_log_likelihood(x, mean, torch.tensor([2 * math.log(sigma)], **F64), 256)
    expected = stats.norm.logsf((1 - 1 / 255) / sigma)
    assert math.isfinite(logp.item()) and logp.item() == pytest.approx(expected, rel=1e-9)
    # an inner bin far above the mean: log(Phi(u) - Phi(l)) computed in the lower tail
    x = torch.tensor([0.8], **F64)
    logp = discretized_gaussian_log_likelihood(x, mean, torch.tensor([2 * math.log(sigma)], **F64), 256)
    lo, hi = (0.8 - 1 / 255) / sigma, (0.8 + 1 / 255) / sigma
    expected = stats.norm.logsf(lo) + math.log1p(-math.exp(stats.norm.logsf(hi) - stats.norm.logsf(lo)))
    assert logp.item() == pytest.approx(expected, rel=1e-9)


# -- the variational bound ----------------------------------------------------------------------------------------

MU, S = 0.1, 0.25  # Gaussian data; P(|x_0| > 1) < 2e-4, so the open end bins hardly matter


def _gaussian_data(levels: int, n: int, d: int, seed: int = 0) -> torch.Tensor:
    """x_0 ~ N(MU, S^2) per pixel, discretized to the nearest of `levels` values in [-1, 1] (clamped at the ends)."""
    x = MU + S * torch.randn(n, d, generator=_g(seed), **F64)
    k = torch.round((x.clamp(-1, 1) + 1) / 2 * (levels - 1))
    return 2 * k / (levels - 1) - 1


def _fast_scheduler(variance_type="fixed_large", clip_sample=False):
    """T = 200 with betas 1e-3..0.05: quick, and sigma_1 (0.02) spans several 8-bit bins (width 2/255)."""
    return DDPMScheduler(num_train_timesteps=200, beta_start=1e-3, beta_end=0.05, variance_type=variance_type,
                         clip_sample=clip_sample)  # fmt: skip


def _predicted_gap(scheduler, variance_type) -> float:
    """The bound's excess over -log p(x_0) for continuous N(MU, S^2) data and the optimal mean, in nats per pixel:
    the true reverse kernels are Gaussian with variance v_{t-1} beta_t / v_t (v_t = abar_t S^2 + 1 - abar_t), so each
    step costs KL(N(m, r_t) || N(m, sigma_t^2)); L_T adds KL(q(x_T) || N(0, 1))."""
    abar = _abar(scheduler)
    prev = torch.cat([torch.ones(1, **F64), abar[:-1]])
    beta = 1 - abar / prev
    v, v_prev = abar * S**2 + 1 - abar, prev * S**2 + 1 - prev
    r = v_prev * beta / v  # true Var(x_{t-1} | x_t)
    beta_tilde = (1 - prev) / (1 - abar) * beta
    sigma2 = (beta_tilde if variance_type == "fixed_small" else beta).clone()
    sigma2[0] = beta_tilde[1]  # the decoder's variance at t = 1
    steps = 0.5 * (r / sigma2 - 1 - torch.log(r / sigma2)).sum()
    prior = 0.5 * (abar[-1] * MU**2 + v[-1] - 1 - torch.log(v[-1]))
    return (steps + prior).item()


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_bound_with_the_optimal_predictor_is_above_the_exact_nll_and_close_to_it(variance_type):
    """On 8-bit discretized Gaussian data with the closed-form E[eps | x_t], the bound (eq. 5) is at least the exact
    NLL of the data, and exceeds it by the known price of fixed reverse variances (the continuous-data gap computed
    in closed form), to within 4 standard errors (n = 400 images of 64 pixels)."""
    scheduler, levels = _fast_scheduler(variance_type), 256
    x0 = _gaussian_data(levels, 400, 64)
    bound = variational_bound(_optimal_eps(_abar(scheduler), MU, S), scheduler, x0, generator=_g(1), levels=levels)
    exact = -discretized_gaussian_log_likelihood(x0, torch.tensor(MU, **F64), torch.tensor(2 * math.log(S), **F64),
                                                 levels).sum(1)  # fmt: skip
    gap = (bound.total - exact) / 64  # nats per pixel, per image
    mean, se = gap.mean().item(), (gap.std() / math.sqrt(len(gap))).item()
    assert mean > 4 * se  # above the exact NLL
    predicted = _predicted_gap(scheduler, variance_type)
    assert abs(mean - predicted) < 4 * se, (mean, se, predicted)
    if variance_type == "fixed_large":  # the tighter choice: within 3% of the NLL
        assert mean < 0.03 * exact.mean().item() / 64
    torch.testing.assert_close(bound.bits_per_dim, bound.total / (64 * math.log(2)))
    assert bound.num_timesteps == bound.num_train_timesteps == 200


def test_the_sampled_timestep_estimate_is_unbiased():
    """The mean of many n-timestep estimates (weight (T - 1) / (n - 1) on n - 1 sampled KL terms) matches the mean
    of full sums, within 4 combined standard errors. The predictor is deliberately poor (half the optimal eps), so
    the KL terms are large and uneven across t; the same draws reweighted by T / n instead are off by about 18
    standard errors, so the test can fail."""
    scheduler, n = _fast_scheduler("fixed_small"), 3  # L_0, L_T and 2 of the 199 KL terms
    model = _optimal_eps(_abar(scheduler), MU, S)

    def poor(xt, t):
        return 0.5 * model(xt, t)

    x0 = _gaussian_data(256, 8, 16).repeat(25, 1)  # 8 images, each 25 times
    g = _g(3)
    full = torch.cat([variational_bound(poor, scheduler, x0, generator=g).total for _ in range(2)])
    draws = [variational_bound(poor, scheduler, x0, n, generator=g) for _ in range(100)]
    sampled = torch.cat([d.total for d in draws])
    se = math.sqrt(full.var() / len(full) + sampled.var() / len(sampled))
    assert abs(full.mean() - sampled.mean()) < 4 * se, (full.mean(), sampled.mean(), se)
    assert sampled.std() > full.std()  # the estimate is noisier, as it should be
    factor = (200 / n) / (199 / (n - 1))  # a biased weight T / n instead of (T - 1) / (n - 1)
    wrong = torch.cat([d.total + (factor - 1) * d.diffusion for d in draws])
    assert abs(full.mean() - wrong.mean()) > 4 * se


def test_bound_with_a_unet_and_bad_arguments():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=20)
    x0 = _gaussian_data(17, 3, 64).reshape(3, 1, 8, 8)
    bound = variational_bound(unet, scheduler, x0, num_timesteps=4, generator=_g(0), levels=17)
    assert bound.total.shape == (3,) and torch.isfinite(bound.total).all() and (bound.total > 0).all()
    torch.testing.assert_close(bound.total, bound.prior + bound.diffusion + bound.decoder)
    again = variational_bound(unet, scheduler, x0, num_timesteps=4, generator=_g(0), levels=17)
    torch.testing.assert_close(again.total, bound.total, rtol=0, atol=0)  # all randomness from the generator
    for kwargs, match in [(dict(num_timesteps=1), "num_timesteps"), (dict(num_timesteps=21), "num_timesteps"),
                          (dict(levels=1), "levels"), (dict(variance_type="learned"), "variance_type")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            variational_bound(unet, scheduler, x0, **{"levels": 17, **kwargs})


# -- loss weights and classifier-free guidance ---------------------------------------------------------------------


def test_min_snr_weights_with_diffusers_compute_snr():
    scheduler = DDPMScheduler()
    t = torch.tensor([0, 10, 100, 400, 999])
    snr = compute_snr(scheduler, t)
    abar = scheduler.alphas_cumprod[t]
    torch.testing.assert_close(snr, abar / (1 - abar))  # SNR_t = abar_t / (1 - abar_t)
    w = min_snr_weight(snr, 5.0)
    torch.testing.assert_close(w, torch.where(snr > 5, 5 / snr, torch.ones_like(snr)))
    assert w[0] < 1e-3 and w[-1] == 1  # low-noise steps are down-weighted; high-noise steps keep weight 1
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "v_prediction"), torch.clamp(snr, max=5) / (snr + 1))
    torch.testing.assert_close(min_snr_weight(snr, 5.0, "sample"), torch.clamp(snr, max=5))
    with pytest.raises(ValueError, match="gamma"):
        min_snr_weight(snr, 0.0)


def test_guided_eps_interpolates_and_extrapolates():
    u, c = torch.randn(3, 4, generator=_g(0)), torch.randn(3, 4, generator=_g(1))
    torch.testing.assert_close(guided_eps(u, c, 0.0), u)
    torch.testing.assert_close(guided_eps(u, c, 1.0), c)
    torch.testing.assert_close(guided_eps(u, c, 3.0), 3 * c - 2 * u)  # the paper's (1 + w) c - w u with w = 2


def test_drop_condition_replaces_rows_with_the_null_condition():
    cond, null = torch.randn(10_000, 2, 3, generator=_g(0)) + 5, torch.zeros(2, 3)
    out = drop_condition(cond, null, 0.1, generator=_g(1))
    dropped = (out == 0).all(dim=(1, 2))
    kept = (out == cond).all(dim=(1, 2))
    assert (dropped | kept).all()  # every row is either its condition or the null one
    assert abs(dropped.float().mean().item() - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 10_000)
    assert (drop_condition(cond, null, 0.0) == cond).all() and (drop_condition(cond, null, 1.0) == 0).all()
    with pytest.raises(ValueError, match="p_uncond"):
        drop_condition(cond, null, 1.5)
