"""The hierarchical VAE p(x|z1) p(z1|z2) p(z2), q(z1|x) q(z2|z1) against independent computations.

A linear-Gaussian instance (every conditional linear in its parent with a constant diagonal variance) makes x, z1
and z2 jointly Gaussian, so log p(x), the posterior p(z1, z2|x), the joint KL and the ELBO itself are exact
(torch.distributions.MultivariateNormal, float64); the model's own forward pass, hierarchy and bounds are used.
"""

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from hubgen.vae import VAEModel
from hubgen.vae.losses import (
    elbo,
    gaussian_entropy,
    gaussian_kl,
    iwae_bound,
    iwae_objective,
    latent_kl_terms,
    log_normal,
    prior_log_weights,
)
from hubgen.vae.modeling_vae import DecoderOutput, DiagonalGaussian, EncoderOutput

D_X, D1, D2 = 4, 2, 2  # x is a 1x2x2 image
X = torch.tensor([[[[0.4, -0.3], [1.1, 0.2]]]], dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _set_linear(net: nn.Sequential, weight, bias, logvar):
    """Make a one-Linear Gaussian net compute mean = W z + b with the constant log-variance `logvar`."""
    (layer,) = net
    d = len(bias)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:d] = torch.as_tensor(weight, dtype=torch.float64)
        layer.bias[:d] = torch.as_tensor(bias, dtype=torch.float64)
        layer.bias[d:] = torch.as_tensor(logvar, dtype=torch.float64)


class LinearGaussianHVAE(VAEModel):
    """VAEModel with 2 stochastic layers whose image networks are linear maps (Gaussian decoder without the
    sigmoid), and whose layer nets are single Linear maps with a constant log-variance:

        p(z2) = N(0, I), p(z1|z2) = N(A z2 + a, diag s1), p(x|z1) = N(B z1 + b, diag sx),
        q(z1|x) = N(E x + e, diag v1), q(z2|z1) = N(C z1 + c, diag v2).
    """

    def __init__(self):
        super().__init__(sample_size=2, latent_dims=(D1, D2), latent_hidden_dims=(), hidden_dims=(4,),
                         decoder_distribution="gaussian")  # fmt: skip
        g = _gen(11)
        r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
        self.A, self.a, self.log_s1 = r(D1, D2) * 1.5, r(D1) * 0.3, torch.tensor([-1.0, -0.5], dtype=torch.float64)
        self.B, self.b, self.log_sx = r(D_X, D1), r(D_X) * 0.3, torch.full((D_X,), -1.0, dtype=torch.float64)
        # q near the posterior at X (so that IWAE converges at small k), but not equal to it (diagonal covariances,
        # 1.5 times too wide, a shifted mean; an encoder of weights E, e): q(z2|z1) from the exact p(z2|z1).
        s1_inv = torch.diag((-self.log_s1).exp())
        cov2 = torch.linalg.inv(torch.eye(D2, dtype=torch.float64) + self.A.T @ s1_inv @ self.A)
        self.C = cov2 @ self.A.T @ s1_inv
        self.c, self.log_v2 = -self.C @ self.a, (1.5 * cov2.diagonal()).log()
        post = self.posterior_joint(X)
        self.E = r(D1, D_X) * 0.1
        self.e = post.mean[:D1] + 0.2 - self.E @ X.flatten()
        self.log_v1 = (1.5 * post.covariance_matrix.diagonal()[:D1]).log()
        self.double()
        _set_linear(self.posterior_nets[0], self.C, self.c, self.log_v2)
        _set_linear(self.prior_nets[0], self.A, self.a, self.log_s1)

    def encode(self, x, return_dict=True):
        flat = x.flatten(1)  # (N, 4)
        mean = flat @ self.E.T + self.e
        return EncoderOutput(latent_dist=DiagonalGaussian(mean, self.log_v1.expand_as(mean)))

    def decode(self, z, return_dict=True):
        mean = (z @ self.B.T + self.b).view(-1, 1, 2, 2)
        return DecoderOutput(sample=mean, logvar=self.log_sx.view(1, 1, 2, 2).expand_as(mean))

    # -- exact quantities -------------------------------------------------------------------------------------

    def prior_joint(self) -> MultivariateNormal:
        """p(z1, z2) over (z1, z2) stacked."""
        cov11 = self.A @ self.A.T + torch.diag(self.log_s1.exp())
        cov = torch.cat([torch.cat([cov11, self.A], 1), torch.cat([self.A.T, torch.eye(D2, dtype=torch.float64)], 1)])
        return MultivariateNormal(torch.cat([self.a, torch.zeros(D2, dtype=torch.float64)]), cov)

    def log_px(self, x) -> torch.Tensor:
        prior = self.prior_joint()
        h = torch.cat([self.B, torch.zeros(D_X, D2, dtype=torch.float64)], 1)  # x = H (z1, z2) + b + noise
        cov = h @ prior.covariance_matrix @ h.T + torch.diag(self.log_sx.exp())
        return MultivariateNormal(h @ prior.mean + self.b, cov).log_prob(x.flatten(1))

    def posterior_joint(self, x) -> MultivariateNormal:
        """p(z1, z2|x) for one image x (1, 1, 2, 2)."""
        prior = self.prior_joint()
        h = torch.cat([self.B, torch.zeros(D_X, D2, dtype=torch.float64)], 1)
        noise_prec = torch.diag((-self.log_sx).exp())
        prec = torch.linalg.inv(prior.covariance_matrix) + h.T @ noise_prec @ h
        cov = torch.linalg.inv(prec)
        mean = cov @ (
            torch.linalg.solve(prior.covariance_matrix, prior.mean) + h.T @ noise_prec @ (x.flatten() - self.b)
        )
        return MultivariateNormal(mean, (cov + cov.T) / 2)

    def q_joint(self, x) -> MultivariateNormal:
        """q(z1, z2|x) = q(z1|x) q(z2|z1) for one image: z2 = C z1 + c + noise, so the pair is Gaussian."""
        m1 = self.encode(x).latent_dist.mean[0]
        v1, v2 = torch.diag(self.log_v1.exp()), torch.diag(self.log_v2.exp())
        cov = torch.cat([torch.cat([v1, v1 @ self.C.T], 1), torch.cat([self.C @ v1, self.C @ v1 @ self.C.T + v2], 1)])
        return MultivariateNormal(torch.cat([m1, self.C @ m1 + self.c]), cov)

    def exact_elbo(self, x) -> torch.Tensor:
        """ELBO = log p(x) - KL(q(z1, z2|x) || p(z1, z2|x)), the gap identity of the losses' docstring."""
        return self.log_px(x)[0] - kl_divergence(self.q_joint(x), self.posterior_joint(x))


@pytest.fixture(scope="module")
def lg():
    return LinearGaussianHVAE().eval()


def _mean_se(t: torch.Tensor) -> tuple[float, float]:
    return t.mean().item(), (t.var() / t.numel()).sqrt().item()


def test_the_exact_quantities_agree_with_each_other(lg):
    # log p(x) = log p(x, z) - log p(z|x) at any z: ties the marginal and the posterior together independently.
    z = torch.tensor([0.3, -0.2, 0.5, 1.0], dtype=torch.float64)
    x_mean = lg.B @ z[:D1] + lg.b
    log_joint = lg.prior_joint().log_prob(z) + Normal(x_mean, (0.5 * lg.log_sx).exp()).log_prob(X.flatten()).sum()
    torch.testing.assert_close(lg.log_px(X)[0], log_joint - lg.posterior_joint(X).log_prob(z))
    assert lg.exact_elbo(X) < lg.log_px(X)[0]


@torch.no_grad()
def test_kl_terms_match_torch_distributions_and_sum_to_the_joint_kl(lg):
    out = lg(X.repeat(5, 1, 1, 1), generator=_gen(1))
    terms = latent_kl_terms(out)  # (2, 5)
    q1, q2, p1 = out.latent_dist, out.upper.posteriors[0], out.upper.priors[0]
    normal = lambda d: Normal(d.mean, d.std)  # noqa: E731
    # top layer: KL(q(z2|z1) || N(0, I)) in closed form given the drawn z1
    torch.testing.assert_close(terms[1], kl_divergence(normal(q2), Normal(0.0, 1.0)).sum(1))
    torch.testing.assert_close(gaussian_kl(q2.mean, q2.logvar), kl_divergence(normal(q2), Normal(0.0, 1.0)).sum(1))
    # inner layer: -H[q(z1|x)] (closed form) - log p(z1|z2) at the drawn pair
    torch.testing.assert_close(gaussian_entropy(q1.logvar), normal(q1).entropy().sum(1))
    torch.testing.assert_close(terms[0], -normal(q1).entropy().sum(1) - normal(p1).log_prob(out.latents).sum(1))
    # In expectation the layers sum to KL(q(z1, z2|x) || p(z1, z2)) between the joint Gaussians.
    n = 200_000
    total = latent_kl_terms(lg(X.repeat(n, 1, 1, 1), generator=_gen(2))).sum(0)
    mean, se = _mean_se(total)
    exact = kl_divergence(lg.q_joint(X), lg.prior_joint()).item()
    assert abs(mean - exact) < 4 * se, (mean, exact, se)


@torch.no_grad()
def test_the_elbo_estimate_is_the_single_sample_log_ratio_in_expectation_and_the_exact_elbo(lg):
    n = 200_000
    xr = X.repeat(n, 1, 1, 1)
    exact = lg.exact_elbo(X).item()
    estimate, se = _mean_se(elbo(lg, xr, generator=_gen(3))["elbo"])
    # k = 1: log p(x, z1, z2) - log q(z1, z2|x) at one joint draw, nothing in closed form
    ratio, se_ratio = _mean_se(iwae_objective(lg, xr, 1, generator=_gen(4))["iwae"])
    assert abs(estimate - exact) < 4 * se, (estimate, exact, se)
    assert abs(ratio - exact) < 4 * se_ratio, (ratio, exact, se_ratio)
    # The tempting shortcut, KL(q(z1|x) || p(z1|z2)) in closed form at the z2 drawn from q(z2|z1), is not the ELBO:
    # its expectation takes z1 and z2 independent (losses' docstring). Measured here, it is many errors off.
    out = lg(xr, generator=_gen(5))
    q1, q2, p1 = out.latent_dist, out.upper.posteriors[0], out.upper.priors[0]
    log_px_z = log_normal(xr, out.sample, out.logvar)
    shortcut = (
        log_px_z
        - kl_divergence(Normal(q1.mean, q1.std), Normal(p1.mean, p1.std)).sum(1)
        - gaussian_kl(q2.mean, q2.logvar)
    )
    wrong, se_wrong = _mean_se(shortcut)
    assert abs(wrong - exact) > 20 * se_wrong, (wrong, exact, se_wrong)


@torch.no_grad()
def test_elbo_iwae_and_the_exact_likelihood_are_ordered_and_iwae_converges(lg):
    log_px, exact_elbo = lg.log_px(X)[0].item(), lg.exact_elbo(X).item()
    reps = 200
    bounds = {k: iwae_bound(lg, X.repeat(reps, 1, 1, 1), k, generator=_gen(6 + k)) for k in (1, 10, 100, 1000)}
    means = {k: b.mean().item() for k, b in bounds.items()}
    mean_1, se_1 = _mean_se(bounds[1])
    assert abs(mean_1 - exact_elbo) < 4 * se_1  # E[L_1] = ELBO
    assert exact_elbo < means[10] < means[100] < means[1000] <= log_px + 1e-3, (exact_elbo, means, log_px)
    # the gap closes: L_1000 recovers 99% of log p(x) - ELBO
    assert log_px - means[1000] < 0.01 * (log_px - exact_elbo), (log_px, means[1000], exact_elbo)


def test_iwae_objective_and_bound_take_the_same_joint_draws(lg):
    with torch.no_grad():
        x = X.repeat(3, 1, 1, 1)
        for k in (1, 5):
            torch.testing.assert_close(iwae_objective(lg, x, k, generator=_gen(30))["iwae"],
                                       iwae_bound(lg, x, k, generator=_gen(30)))  # fmt: skip
        # chunked decoding (max_rows below k * B) draws z2 per chunk, after that chunk's z1: the same law, both
        # within 4 standard deviations (0.05 nats at k = 1000, measured) of log p(x)
        log_px = lg.log_px(x)
        for max_rows in (16384, 30):  # one chunk; chunks of 10 samples
            bound = iwae_bound(lg, x, 1000, generator=_gen(31), max_rows=max_rows)
            torch.testing.assert_close(bound, log_px, atol=0.2, rtol=0)


@torch.no_grad()
def test_naive_monte_carlo_through_the_hierarchy_reaches_log_px(lg):
    # z2 ~ N(0, I), z1 ~ p(z1|z2) (ancestral_latents), then log (1/k) sum_i p(x|z1_i): correct only if the chain
    # samples the marginal prior p(z1), which the exact log p(x) checks.
    log_w = prior_log_weights(lg, X, 400_000, generator=_gen(40))  # (k, 1)
    torch.testing.assert_close(torch.logsumexp(log_w, 0) - math.log(400_000), lg.log_px(X), atol=0.03, rtol=0)


# -- the model as users build it ----------------------------------------------------------------------------------


def _hvae(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(sample_size=8, latent_dims=(6, 3), latent_hidden_dims=(16,), hidden_dims=(32,), activation="tanh")
    cfg.update(overrides)
    return VAEModel(**cfg).double().eval()


def test_hierarchy_shapes_config_and_that_one_layer_is_the_old_model():
    model = _hvae()
    assert model.config.latent_dim == 6 and model.latent_sizes == (6, 3) and model.top_latent_dim == 3
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64).round()
    out = model(x, generator=_gen(0), num_samples=5)
    assert out.latents.shape == (20, 6) and out.upper.latents[0].shape == (20, 3)
    assert out.upper.posteriors[0].mean.shape == (20, 3) and out.upper.priors[0].mean.shape == (20, 6)
    z1 = model.ancestral_latents(torch.zeros(2, 3, dtype=torch.float64), sample=False)
    torch.testing.assert_close(z1, model.decode_latent(torch.zeros(2, 3, dtype=torch.float64), 1).mean)
    three = _hvae(latent_dims=(6, 4, 2))
    out3 = three(x, generator=_gen(1))
    assert [z.shape[1] for z in out3.upper.latents] == [4, 2] and latent_kl_terms(out3).shape == (3, 4)
    assert three.ancestral_latents(torch.zeros(1, 2, dtype=torch.float64), generator=_gen(2)).shape == (1, 6)
    # one layer: no extra modules, no extra draws, the same state dict keys as before the option existed
    single = VAEModel(sample_size=8, latent_dim=6, hidden_dims=(32,))
    assert single.encode_upper(torch.zeros(1, 6)) is None and single.top_latent_dim == 6
    assert not any(k.startswith(("posterior_nets", "prior_nets")) for k in single.state_dict())
    assert VAEModel(sample_size=8, latent_dims=(6,), hidden_dims=(32,)).latent_sizes == (6,)


@pytest.mark.parametrize("bad", [dict(latent_dims=(6, 0)), dict(latent_dims=()), dict(latent_hidden_dims=(0,)),
                                 dict(latent_dims=(6, 2.5))])  # fmt: skip
def test_bad_hierarchies_are_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match="latent_dims|latent_hidden_dims"):
        _hvae(**bad)


def test_the_gradient_reaches_every_layer_through_both_objectives():
    model = _hvae(2).train()
    x = torch.rand(3, 1, 8, 8, generator=_gen(5), dtype=torch.float64).round()
    for loss in (lambda: -elbo(model, x, generator=_gen(3))["elbo"].mean(),
                 lambda: -iwae_objective(model, x, 4, generator=_gen(4))["iwae"].mean()):  # fmt: skip
        model.zero_grad()
        loss().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert math.isfinite(iwae_bound(model, x, 50, generator=_gen(4)).sum().item())
