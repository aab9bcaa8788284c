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
