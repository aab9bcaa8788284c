"""Each VAE equation against an independent computation: torch.distributions, autograd, quadrature."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from hubgen.vae import VAEModel
from hubgen.vae.losses import (
    bernoulli_log_likelihood,
    bits_per_dim,
    elbo,
    gaussian_kl,
    gaussian_log_likelihood,
    iwae_bound,
    iwae_objective,
    log_normal,
    log_standard_normal,
    reparameterize,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_reparameterize_is_mean_plus_std_eps_and_has_the_right_law():
    g = _gen()
    mean = torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    logvar = torch.tensor([[math.log(0.25), math.log(4.0)]], dtype=torch.float64)
    eps = torch.randn(1, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(reparameterize(mean, logvar, eps), mean + torch.exp(0.5 * logvar) * eps)
    z = reparameterize(mean.expand(200_000, 2), logvar.expand(200_000, 2), generator=g)
    torch.testing.assert_close(z.mean(0), mean[0], atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([0.25, 4.0], dtype=torch.float64), atol=0.05, rtol=0)


def test_reparameterized_gradient_matches_the_analytic_gradient():
    # E_{z ~ N(mu, s^2)}[z^2] = mu^2 + s^2: d/dmu = 2 mu, d/dlogvar = s^2 (since s^2 = exp(logvar)).
    mean = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([math.log(0.5)], dtype=torch.float64, requires_grad=True)
    eps = torch.randn(400_000, 1, generator=_gen(1), dtype=torch.float64)
    z = reparameterize(mean.expand(400_000, 1), logvar.expand(400_000, 1), eps)
    z.pow(2).mean().backward()
    torch.testing.assert_close(mean.grad, torch.tensor([1.4], dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(logvar.grad, torch.tensor([0.5], dtype=torch.float64), atol=0.01, rtol=0)


def test_gaussian_kl_matches_torch_distributions():
    g = _gen(2)
    mean = torch.randn(5, 7, generator=g, dtype=torch.float64)
    logvar = torch.randn(5, 7, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mean, logvar), expected)
    assert torch.all(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)) == 0)


def test_gaussian_log_densities_match_torch_distributions():
    g = _gen(3)
    x, mean, logvar = (torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    expected = Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(log_normal(x, mean, logvar), expected)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, logvar), expected)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(1))


def test_bernoulli_log_likelihood_matches_torch_and_is_stable_at_extreme_logits():
    g = _gen(4)
    logits = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) * 5
    x = torch.bernoulli(torch.full_like(logits, 0.5), generator=g)
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)))
    # log sigmoid(-100) = -100 exactly to double precision; a naive log(sigmoid) would give -inf.
    extreme = bernoulli_log_likelihood(torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), -100.0))
    torch.testing.assert_close(extreme, torch.tensor([-100.0]))


def _tiny_model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = VAEModel(sample_size=2, latent_dim=1, hidden_dims=(8,), activation="tanh").to(dtype)
    return model.eval()


def _exact_log_px(model, x):
    """log p(x) = log of the integral of p(x|z) N(z; 0, 1) dz, by the trapezoid rule on [-12, 12] (1-d z)."""
    z = torch.linspace(-12, 12, 24_001, dtype=torch.float64)[:, None]  # (Z, 1)
    logits = model.decode(z).sample  # (Z, 1, 2, 2)
    out = []
    for xi in x:
        log_joint = bernoulli_log_likelihood(xi.expand_as(logits), logits) + log_standard_normal(z)  # (Z,)
        dz = z[1, 0] - z[0, 0]
        m = log_joint.max()
        out.append(m + torch.log(torch.trapezoid(torch.exp(log_joint - m), dx=dz)))
    return torch.stack(out)


@torch.no_grad()
def test_bounds_are_ordered_and_iwae_converges_to_the_exact_likelihood():
    model = _tiny_model()
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    log_px = _exact_log_px(model, x)
    g = _gen(5)
    reps = 4000
    xr = x.repeat(reps, 1, 1, 1)  # average each bound over `reps` independent estimates
    mean_elbo = elbo(model, xr, generator=g)["elbo"].view(reps, 2).mean(0)
    means = {k: iwae_bound(model, xr, k, generator=g).view(reps, 2).mean(0) for k in (1, 5, 50)}
    # E[L_1] = ELBO (same bound, MC KL instead of closed form), and ELBO <= L_5 <= L_50 <= log p(x).
    torch.testing.assert_close(means[1], mean_elbo, atol=0.08, rtol=0)
    assert torch.all(mean_elbo < means[5]) and torch.all(means[5] < means[50])
    assert torch.all(means[50] <= log_px + 0.01)
    # With many samples the importance-sampled estimate reaches log p(x).
    torch.testing.assert_close(iwae_bound(model, x, 20_000, generator=g), log_px, atol=0.01, rtol=0)


@torch.no_grad()
def test_iwae_chunking_does_not_change_the_estimate():
    model = _tiny_model(1)
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]], dtype=torch.float64).repeat(3, 1, 1, 1)
    whole = iwae_bound(model, x, 4000, generator=_gen(6))
    chunked = iwae_bound(model, x, 4000, generator=_gen(7), max_rows=7)  # chunks of 2 samples
    torch.testing.assert_close(whole, chunked, atol=0.02, rtol=0)


def test_iwae_rejects_k_below_one():
    with pytest.raises(ValueError, match="`k`"):
        iwae_bound(_tiny_model(), torch.zeros(1, 1, 2, 2, dtype=torch.float64), 0)


def test_iwae_objective_equals_the_bound_for_the_same_draws_and_k1_is_the_one_sample_elbo():
    model = _tiny_model(3)
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 1.0], [0.0, 1.0]]]], dtype=torch.float64)
    with torch.no_grad():
        for k in (1, 7):
            # the same generator seed draws the same eps (k, B, D) in both: the same weights, the same bound
            torch.testing.assert_close(iwae_objective(model, x, k, generator=_gen(30))["iwae"],
                                       iwae_bound(model, x, k, generator=_gen(30)))  # fmt: skip
        # k = 1: log p(x|z) + log p(z) - log q(z|x) for one z; in expectation the closed-form-KL ELBO
        reps = 4000
        xr = x.repeat(reps, 1, 1, 1)
        one = iwae_objective(model, xr, 1, generator=_gen(31))["iwae"].view(reps, 2)
        closed = elbo(model, xr, generator=_gen(32))["elbo"].view(reps, 2)
        se = (one.var(0) / reps + closed.var(0) / reps).sqrt()
        assert torch.all((one.mean(0) - closed.mean(0)).abs() < 4 * se), (one.mean(0), closed.mean(0), se)


def test_iwae_objective_gradient_is_the_normalized_weights_estimator():
    """autograd of log (1/k) sum_i w_i equals sum_i w~_i grad log w_i (IWAE eq. 14), computed term by term."""
    model = _tiny_model(4)
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]], dtype=torch.float64)
    k = 6
    params = [p for p in model.parameters() if p.requires_grad]
    out = iwae_objective(model, x, k, generator=_gen(40))
    grads = torch.autograd.grad(out["iwae"].sum(), params)
    log_w = iwae_objective(model, x, k, generator=_gen(40))["log_w"][:, 0]  # the same draws, a new graph
    w_tilde = torch.softmax(log_w.detach(), dim=0)
    expected = [torch.zeros_like(p) for p in params]
    for i in range(k):
        for acc, g in zip(expected, torch.autograd.grad(log_w[i], params, retain_graph=True, allow_unused=True),
                          strict=True):  # fmt: skip
            if g is not None:
                acc += w_tilde[i] * g
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_iwae_objective_rejects_k_below_one():
    with pytest.raises(ValueError, match="`k`"):
        iwae_objective(_tiny_model(), torch.zeros(1, 1, 2, 2, dtype=torch.float64), 0)


def test_elbo_terms_are_consistent_with_the_model():
    model = _tiny_model(2)
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    terms = elbo(model, x, generator=_gen(8))
    posterior = model.encode(x).latent_dist
    z = posterior.sample(generator=_gen(8))
    torch.testing.assert_close(terms["log_px_z"], bernoulli_log_likelihood(x, model.decode(z).sample))
    torch.testing.assert_close(terms["kl"], gaussian_kl(posterior.mean, posterior.logvar))
    torch.testing.assert_close(terms["elbo"], terms["log_px_z"] - terms["kl"])
    half = elbo(model, x, beta=0.5, generator=_gen(8))
    torch.testing.assert_close(half["elbo"], terms["log_px_z"] - 0.5 * terms["kl"])


def test_bits_per_dim_closed_forms():
    # A uniform distribution over 256 levels in each of D = 784 dims: NLL = 784 ln 256 nats = 8 bits/dim.
    nll = torch.tensor([784 * math.log(256.0)])
    torch.testing.assert_close(bits_per_dim(nll, 784), torch.tensor([8.0]))
    # The uniform density on [0, 1)^D has NLL 0; with 256-level dequantization it is the same 8 bits/dim.
    torch.testing.assert_close(bits_per_dim(torch.tensor([0.0]), 784, num_levels=256), torch.tensor([8.0]))
    # Binary pixels: a fair coin per pixel is 1 bit/dim.
    torch.testing.assert_close(bits_per_dim(torch.tensor([64 * math.log(2.0)]), 64), torch.tensor([1.0]))


# -- the discretized logistic decoder (PixelCNN++ eq. 2) over 8-bit levels --------------------------------------


def _direct_discretized_logistic(k: torch.Tensor, loc, log_scale, levels: int) -> torch.Tensor:
    """P(k) straight from the logistic CDF F(y) = sigmoid((y - mu) / s) in float64: F(upper edge) - F(lower edge)
    with the edges of bins 0 and L-1 at -inf and +inf. Above mu the same difference is taken of the upper tails,
    (1 - F(lower)) - (1 - F(upper)), which float64 holds without cancelling to 0."""
    s = torch.exp(log_scale)
    upper_in = torch.where(k == levels - 1, math.inf, ((k + 0.5) / (levels - 1) - loc) / s)
    lower_in = torch.where(k == 0, -math.inf, ((k - 0.5) / (levels - 1) - loc) / s)
    below = torch.sigmoid(upper_in) - torch.sigmoid(lower_in)
    above = torch.sigmoid(-lower_in) - torch.sigmoid(-upper_in)
    return torch.where(k / (levels - 1) > loc, above, below)


def test_discretized_logistic_matches_the_logistic_cdf_and_its_bins_sum_to_one():
    from hubgen.vae.losses import discretized_logistic_log_likelihood, discretized_logistic_log_probs

    g = _gen(20)
    loc = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 1.4 - 0.2  # some locations beyond [0, 1]
    log_scale = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 4 - 5  # s in [e^-5, e^-1]
    k = torch.randint(0, 256, (2, 3, 4, 4), generator=g).double()
    k[0, 0, 0, :2] = torch.tensor([0.0, 255.0])  # both edge bins
    x = k / 255
    direct = _direct_discretized_logistic(k, loc, log_scale, 256)
    torch.testing.assert_close(discretized_logistic_log_probs(x, loc, log_scale, 256), direct.log())
    # log p(x|z) sums the C*H*W sub-pixels of each image
    torch.testing.assert_close(discretized_logistic_log_likelihood(x, loc, log_scale, 256), direct.log().sum((1, 2, 3)))
    # The 256 bins of every sub-pixel sum to one (in probability), whatever mu and s, in float32 too.
    levels = torch.arange(256, dtype=torch.float32)[:, None] / 255  # (256, 1)
    mu = torch.tensor([[-3.0, 0.0, 0.3, 0.5, 1.0, 4.0]])  # (1, 6)
    log_s = torch.tensor([[-7.0, -7.0, -2.0, 0.0, 3.0, -1.0]])
    log_p = discretized_logistic_log_probs(levels.expand(256, 6), mu.expand(256, 6), log_s.expand(256, 6), 256)
    torch.testing.assert_close(torch.logsumexp(log_p, dim=0), torch.zeros(6), atol=1e-5, rtol=0)


def test_discretized_logistic_is_finite_where_the_cdf_difference_underflows():
    from hubgen.vae.losses import discretized_logistic_log_probs

    # mu far from the bin with the smallest scale: sigmoid differences are 0 in float32; the log is still finite
    # and equal to the float64 value.
    x, loc, log_s = torch.tensor([0.2]), torch.tensor([0.9]), torch.tensor([-7.0])
    got = discretized_logistic_log_probs(x, loc, log_s, 256)
    want = discretized_logistic_log_probs(x.double(), loc.double(), log_s.double(), 256)
    assert torch.isfinite(got).all() and got.item() < -500
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)
    loc.requires_grad_(True)
    discretized_logistic_log_probs(torch.tensor([0.0, 0.5, 1.0]), loc.expand(3), log_s.expand(3), 256).sum().backward()
    assert torch.isfinite(loc.grad).all()


def test_discretized_logistic_mean_and_samples_are_in_range_and_follow_the_bins():
    from hubgen.vae.losses import discretized_logistic_mean, discretized_logistic_sample

    levels = 4  # few levels, so that every bin's frequency can be checked
    loc = torch.tensor([-0.5, 0.2, 0.5, 0.9, 1.7], dtype=torch.float64)
    log_s = torch.tensor([-1.0, -2.0, 0.5, -3.0, 0.0], dtype=torch.float64)
    k = torch.arange(levels, dtype=torch.float64)[:, None]  # (L, 1)
    p = _direct_discretized_logistic(k, loc, log_s, levels)  # (L, 5)
    torch.testing.assert_close(p.sum(0), torch.ones(5, dtype=torch.float64))
    mean = discretized_logistic_mean(loc, log_s, levels)
    torch.testing.assert_close(mean, (p * k / (levels - 1)).sum(0))
    assert mean.min() >= 0 and mean.max() <= 1
    n = 200_000
    draws = discretized_logistic_sample(loc.expand(n, 5), log_s.expand(n, 5), levels, generator=_gen(21))
    assert draws.min() >= 0 and draws.max() <= 1
    on_grid = draws * (levels - 1)
    torch.testing.assert_close(on_grid, on_grid.round())
    freq = torch.stack([(on_grid == j).double().mean(0) for j in range(levels)])  # (L, 5)
    torch.testing.assert_close(freq, p, atol=0.005, rtol=0)  # 4 standard errors at n = 200k
    # 256 levels, float32, a model-sized batch: the mean image and the samples stay in [0, 1]
    loc32, log_s32 = torch.randn(2, 3, 8, 8, generator=_gen(22)) * 2, torch.randn(2, 3, 8, 8, generator=_gen(23))
    for images in (discretized_logistic_mean(loc32, log_s32), discretized_logistic_sample(loc32, log_s32)):
        assert images.shape == (2, 3, 8, 8) and images.min() >= 0 and images.max() <= 1


def _discrete_rgb_model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = VAEModel(sample_size=8, in_channels=3, latent_dim=2, architecture="conv", hidden_dims=(4, 8),
                     activation="elu", decoder_distribution="discretized_logistic", num_levels=256)  # fmt: skip
    return model.to(dtype).eval()


@torch.no_grad()
def test_iwae_with_one_sample_is_the_elbo_for_the_discretized_logistic_decoder():
    from hubgen.vae.losses import discretized_logistic_log_likelihood, to_levels

    model = _discrete_rgb_model()
    x = to_levels(torch.rand(3, 3, 8, 8, generator=_gen(24), dtype=torch.float64), 256)
    # The same eps: L_1 = log p(x|z) + log p(z) - log q(z|x) = the ELBO's one-sample estimate with an MC KL.
    terms = elbo(model, x, generator=_gen(25))
    posterior = model.encode(x).latent_dist
    z = posterior.sample(generator=_gen(25))
    decoded = model.decode(z)
    log_px_z = discretized_logistic_log_likelihood(x, decoded.sample, decoded.log_scale, 256)
    torch.testing.assert_close(terms["log_px_z"], log_px_z)
    one_sample = terms["log_px_z"] + log_standard_normal(z) - log_normal(z, posterior.mean, posterior.logvar)
    torch.testing.assert_close(iwae_bound(model, x, 1, generator=_gen(25)), one_sample)
    # In expectation over eps, L_1 is the ELBO with its closed-form KL (same eps: only the KL estimate differs).
    reps = 400
    xr = x.repeat(reps, 1, 1, 1)
    mean_l1 = iwae_bound(model, xr, 1, generator=_gen(26)).view(reps, 3).mean(0)
    mean_elbo = elbo(model, xr, generator=_gen(26))["elbo"].view(reps, 3).mean(0)
    torch.testing.assert_close(mean_l1, mean_elbo, atol=0.05, rtol=0)
    assert torch.all(iwae_bound(model, xr[:300], 10, generator=_gen(28)).view(100, 3).mean(0) > mean_elbo)


def test_discrete_bits_per_dim_have_no_dequantization_term():
    # A uniform discrete distribution over 256 levels per sub-pixel: NLL = D ln 256, exactly 8 bits/dim (3x16x16).
    d = 3 * 16 * 16
    torch.testing.assert_close(bits_per_dim(torch.tensor([d * math.log(256.0)]), d), torch.tensor([8.0]))


# -- naive Monte Carlo against importance sampling (hubgen.vae.evaluation.naive_vs_importance) --------------------


def _thermometer_pipeline():
    """A VAE with a 1-d latent whose decoder writes z as a thermometer code over 16 pixels (pixel j is on where
    z > c_j, c_j evenly spaced on [-2, 2], logit 8 tanh(4 (z - c_j))): an image pins z to one gap between
    thresholds, a posterior about 15 times narrower than the prior. The encoder is then fitted to the test images
    by 300 Adam steps on the ELBO, so q(z|x) is close to (not equal to) the posterior."""
    from hubgen.vae import VAEPipeline

    torch.manual_seed(0)
    model = VAEModel(sample_size=4, latent_dim=1, hidden_dims=(16,), activation="tanh").double()
    thresholds = torch.linspace(-2, 2, 16, dtype=torch.float64)
    with torch.no_grad():
        model.decoder[0].weight.fill_(4.0)
        model.decoder[0].bias.copy_(-4.0 * thresholds)
        model.decoder[2].weight.copy_(8.0 * torch.eye(16, dtype=torch.float64))
        model.decoder[2].bias.zero_()
    x = (torch.arange(16, dtype=torch.float64) < torch.tensor([[3], [8], [13]])).double().view(3, 1, 4, 4)
    encoder = [*model.encoder.parameters(), *model.to_moments.parameters()]
    optimizer = torch.optim.Adam(encoder, lr=1e-2)
    g = _gen(50)
    for _ in range(300):
        optimizer.zero_grad()
        (-elbo(model, x.repeat(32, 1, 1, 1), generator=g)["elbo"].mean()).backward()
        optimizer.step()
    return VAEPipeline(model.eval(), pixel_levels=2), x


def test_naive_monte_carlo_and_importance_sampling_both_reach_log_px_the_naive_one_far_more_slowly():
    from hubgen.vae.evaluation import naive_vs_importance

    pipe, x = _thermometer_pipeline()
    exact = _exact_log_px(pipe.vae, x)  # quadrature over the 1-d latent
    ks = [1, 10, 100, 1000, 10_000]
    result = naive_vs_importance(pipe, x, ks=ks, repeats=8, generator=_gen(51))
    assert result.naive.shape == result.importance.shape == (5, 8, 3)
    rows = {row["k"]: row for row in result.summary(truth=exact)}
    # both converge: at k = 10,000 within 0.01 (importance) and 0.05 nats (naive) of the exact value on average, and
    # the reference (the importance-sampled estimate pooling every repeat) within 0.01 of it for every image
    assert abs(rows[10_000]["importance_bias"]) < 0.01 and abs(rows[10_000]["naive_bias"]) < 0.05, rows[10_000]
    assert rows[10_000]["naive_rmse"] < 0.1, rows[10_000]
    torch.testing.assert_close(result.reference, exact, atol=0.01, rtol=0)
    # the naive estimate is a lower bound in expectation (Jensen) and far off at small k (measured: -26 and -1.4
    # nats at k = 1 and 10, against +-0.06 for importance sampling)
    assert rows[1]["naive_bias"] < -10 and rows[10]["naive_bias"] < -0.5 and abs(rows[10]["importance_bias"]) < 0.2
    # at every k its error is several times importance sampling's (measured: 7 to 100 times), and it needs ten
    # times the samples to be as close as importance sampling (measured: 2 to 10 times worse even so)
    for k in ks:
        assert rows[k]["naive_rmse"] > 5 * rows[k]["importance_rmse"], rows[k]
    for k in ks[:-1]:
        assert rows[10 * k]["naive_rmse"] > 1.5 * rows[k]["importance_rmse"], (rows[10 * k], rows[k])


def test_naive_vs_importance_rejects_bad_arguments():
    from hubgen.vae import VAEPipeline
    from hubgen.vae.evaluation import naive_vs_importance

    pipe, x = VAEPipeline(_tiny_model(), pixel_levels=2), torch.ones(1, 1, 2, 2)
    for kwargs, name in ((dict(ks=[10, 1]), "`ks`"), (dict(ks=[0]), "`ks`"), (dict(repeats=1), "`repeats`")):
        with pytest.raises(ValueError, match=name):
            naive_vs_importance(pipe, x, **kwargs)
