"""The variational autoencoder's objective, as pure functions.

Kingma & Welling, "Auto-Encoding Variational Bayes" (arXiv:1312.6114); Burda, Grosse & Salakhutdinov,
"Importance Weighted Autoencoders" (arXiv:1509.00519).

For data x, latent z, prior p(z) = N(0, I), decoder p(x|z) and encoder q(z|x) = N(mu(x), diag sigma^2(x)):

    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z))                      = ELBO(x)       (AEVB eq. 3)
    log p(x) >= E_{z_1..z_k ~ q} log (1/k) sum_i p(x, z_i) / q(z_i|x)      = L_k(x)        (IWAE eq. 8)

with ELBO = L_1 <= L_k <= L_k' <= log p(x) for k <= k' (IWAE Theorem 1). The expectation over q is taken
with the reparameterization z = mu + sigma * eps, eps ~ N(0, I) (AEVB section 2.4), so the gradient flows
through mu and sigma.

Hierarchical VAE (hubgen.vae.modeling_vae, `latent_dims`): p(x, z1, z2) = p(x|z1) p(z1|z2) p(z2), p(z2) = N(0, I),
and q(z1, z2|x) = q(z1|x) q(z2|z1), every conditional a diagonal Gaussian given its parent. From the factorization,

    ELBO(x) = E_q[log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1)]
            = E_q(z1|x)[log p(x|z1)]                    (a) Monte Carlo: one z1 ~ q(z1|x)
            + H[q(z1|x)]                                 (b) closed form: 1/2 sum_j (log 2 pi e + log sigma_1j^2)
            + E_q(z1|x) q(z2|z1)[log p(z1|z2)]           (c) Monte Carlo: the z1 above and one z2 ~ q(z2|z1)
            - E_q(z1|x)[KL(q(z2|z1) || p(z2))]           (d) closed form given the drawn z1 (AEVB app. B)

(b) and (d) are exact because each term depends only on one layer and its parent: the expectation over the layer
given the drawn parent is taken analytically (Rao-Blackwellization), the rest by the one joint draw. The sum
(d) - (b) - (c) estimates KL(q(z1, z2|x) || p(z1, z2)), the joint posterior's KL to the joint prior, so
ELBO = E_q[log p(x|z1)] - KL(q(z1, z2|x) || p(z1, z2)) as for one layer; `latent_kl_terms` returns it per layer
(layer 1: -(b) - (c); top layer: (d)). L layers follow the same pattern, layer by layer.

What is NOT computed in closed form: KL(q(z1|x) || p(z1|z2)) at the drawn z2. Its expectation takes z1 and z2
independent, E over q(z1|x) q(z2|x) with q(z2|x) the marginal, while the ELBO's (b) + (c) = E[log p(z1|z2) -
log q(z1|x)] is an expectation over the joint q(z1|x) q(z2|z1), in which z2 was drawn from z1: the two differ
whenever q(z2|z1) depends on z1
(tests/test_vae_hierarchical.py measures it on a linear-Gaussian model where the ELBO is exact: 0.54 nats below
the ELBO, 25 standard errors).

Two decompositions follow from the same factorization. With p(z1|z2) p(z2) = p(z1) p(z2|z1), p(z1) the marginal
prior:
    ELBO = E_q[log p(x|z1)] - KL(q(z1|x) || p(z1)) - E_q(z1|x)[KL(q(z2|z1) || p(z2|z1))],
and with p(x, z1, z2) = p(x) p(z1|x) p(z2|z1) (z2 and x are independent given z1 under p), the gap is
    log p(x) - ELBO = KL(q(z1|x) || p(z1|x)) + E_q(z1|x)[KL(q(z2|z1) || p(z2|z1))] = KL(q(z1, z2|x) || p(z1, z2|x)).
So KL(q(z1|x) || p(z1|x)), to the posterior, is part of the gap and never a term of the ELBO (a derivation that
writes the ELBO with it has put the posterior p(z1|x) where the marginal prior p(z1) belongs); p(z1), p(z1|x) and
p(z2|z1) are intractable, which is why (c) is estimated instead. The IWAE bound takes the weights over the joint
latents, w_i = p(x, z1_i, z2_i) / q(z1_i, z2_i|x) with (z1_i, z2_i) ~ q(z1|x) q(z2|z1), and keeps its ordering
ELBO <= L_k <= log p(x).

These few lines are the math hubgen exists to show, so they are written out here rather than taken from a
library: torch.distributions computes the same numbers and the tests hold them to it.

All log-densities are in nats and summed over every non-batch dimension: one number per example.

Decoders p(x|z), one per pixel encoding (the data encoding every likelihood states):
- Bernoulli over binarized pixels x in {0, 1}: a probability mass, bits/dim = NLL / (D ln 2).
- Gaussian over dequantized pixels x in [0, 1): a density, bits/dim = NLL / (D ln 2) + log2(L).
- Discretized logistic over L-level pixels x = k / (L - 1), k in 0..L-1 (Salimans, Karpathy, Chen & Kingma,
  "PixelCNN++", arXiv:1701.05517, eq. 2, one logistic per sub-pixel): a probability mass over the L levels,
      P(k | mu, s) = F((k + 1/2) / (L - 1)) - F((k - 1/2) / (L - 1)),   F(y) = sigmoid((y - mu) / s),
  with the edge bins extended: P(0) = F(1/2 / (L - 1)) and P(L - 1) = 1 - F((L - 3/2) / (L - 1)), so the L
  masses sum to 1. There is no dequantization term: bits/dim = NLL / (D ln 2) over D = C*H*W sub-pixels,
  an upper bound on -log2 P(x) per sub-pixel when NLL is an IWAE bound, directly comparable with a flow's
  dequantized bits/dim on the same 8-bit data (which is itself an upper bound on the same discrete -log2 P).
"""

import math

import torch
import torch.nn.functional as F

from ..draws import rand_tensor, randn_tensor
from ..errors import UserInputError
from ..metrics.units import at_least_float32, nats_to_bits_per_dim

__all__ = [
    "reparameterize",
    "gaussian_kl",
    "gaussian_entropy",
    "latent_kl_terms",
    "latent_log_ratio",
    "log_normal",
    "log_standard_normal",
    "bernoulli_log_likelihood",
    "gaussian_log_likelihood",
    "discretized_logistic_log_likelihood",
    "discretized_logistic_log_probs",
    "discretized_logistic_mean",
    "discretized_logistic_sample",
    "to_levels",
    "decoder_log_likelihood",
    "elbo",
    "iwae_bound",
    "importance_log_weights",
    "prior_log_weights",
    "bits_per_dim",
]

LOG_2PI = math.log(2.0 * math.pi)


def _sum_except_batch(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1)


def reparameterize(
    mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None, generator=None
) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I)  (AEVB section 2.4).

    Passing `eps` makes the map deterministic (used by the tests and by the IWAE bound).
    """
    if eps is None:
        eps = randn_tensor(mean.shape, generator, mean.device, mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)  (AEVB app. B)."""
    return 0.5 * _sum_except_batch(mean.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """H[N(mu, diag sigma^2)] = -E[log N(z; mu, sigma^2)] = 1/2 sum_j (log 2 pi + 1 + log sigma_j^2), for any mu."""
    return 0.5 * _sum_except_batch(LOG_2PI + 1.0 + logvar)


def log_normal(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, diag sigma^2) = -1/2 sum_j (log 2 pi + log sigma_j^2 + (x_j - mu_j)^2 / sigma_j^2)."""
    return -0.5 * _sum_except_batch(LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) = -1/2 sum_j (log 2 pi + z_j^2): the prior log p(z)."""
    return -0.5 * _sum_except_batch(LOG_2PI + z.pow(2))


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_j x_j log s(l_j) + (1 - x_j) log(1 - s(l_j)), s the sigmoid, l the decoder's logits.

    Computed as minus the binary cross-entropy with logits, which uses the stable form
    max(l, 0) - l x + log(1 + exp(-|l|)).
    """
    return -_sum_except_batch(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = log N(x; mu(z), diag sigma^2) for the Gaussian decoder on continuous pixels."""
    return log_normal(x, mean, logvar.expand_as(mean))


def to_levels(intensities: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Intensities in [0, 1] snapped to the L-level grid k / (L - 1), k = round(p (L - 1)): the discretized
    logistic decoder's data (no randomness: the model scores the 8-bit pixels themselves)."""
    return torch.round(intensities.clamp(0.0, 1.0) * (num_levels - 1)) / (num_levels - 1)


def discretized_logistic_log_probs(
    x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, num_levels: int = 256
) -> torch.Tensor:
    """log P(k | mu, s) per sub-pixel (same shape as x), for x = k / (L - 1) (PixelCNN++ eq. 2, edges to +-inf).

    With a = (x + h - mu) / s and b = (x - h - mu) / s, h = 1 / (2 (L - 1)) the half bin width,
        sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-(a - b))),
    so log P = logsigmoid(a) + logsigmoid(-b) + log(-expm1(-2h / s)): stable for any mu and s (no difference
    of two sigmoids near 1, no log of 0). The first bin is logsigmoid(a), the last logsigmoid(-b).
    """
    half = 0.5 / (num_levels - 1)
    k = torch.round(x * (num_levels - 1))  # (B, C, H, W) level indices
    inv_s = torch.exp(-log_scale)
    a = (x + half - loc) * inv_s
    b = (x - half - loc) * inv_s
    inner = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-2.0 * half * inv_s))
    return torch.where(k <= 0, F.logsigmoid(a), torch.where(k >= num_levels - 1, F.logsigmoid(-b), inner))


def discretized_logistic_log_likelihood(
    x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, num_levels: int = 256
) -> torch.Tensor:
    """log p(x|z) = sum over the C*H*W sub-pixels of log P(k | mu(z), s(z)), in nats: one number per image."""
    return _sum_except_batch(discretized_logistic_log_probs(x, loc, log_scale, num_levels))


def discretized_logistic_mean(loc: torch.Tensor, log_scale: torch.Tensor, num_levels: int = 256) -> torch.Tensor:
    """E[x] = sum_k k / (L - 1) P(k) in [0, 1], by summation by parts:
    E[x] = 1 - 1 / (L - 1) sum_{k=1}^{L-1} F((k - 1/2) / (L - 1)), F the logistic CDF (one pass per edge)."""
    inv_s = torch.exp(-log_scale)
    total = torch.zeros_like(loc)
    for k in range(1, num_levels):
        total += torch.sigmoid(((k - 0.5) / (num_levels - 1) - loc) * inv_s)
    return (1.0 - total / (num_levels - 1)).clamp(0.0, 1.0)


def discretized_logistic_sample(
    loc: torch.Tensor, log_scale: torch.Tensor, num_levels: int = 256, generator=None
) -> torch.Tensor:
    """x ~ P(k | mu, s) as k / (L - 1): a logistic draw y = mu + s (log u - log(1 - u)), u ~ U(0, 1), put in
    the bin that holds it (round(y (L - 1)), the edge bins taking everything beyond them)."""
    u = rand_tensor(loc.shape, generator, loc.device, loc.dtype)
    u = u.clamp(1e-6, 1.0 - 1e-6)
    y = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return torch.round(y * (num_levels - 1)).clamp(0, num_levels - 1) / (num_levels - 1)


def decoder_log_likelihood(
    x: torch.Tensor,
    params: torch.Tensor,
    logvar: torch.Tensor | None,
    log_scale: torch.Tensor | None = None,
    num_levels: int | None = None,
) -> torch.Tensor:
    """log p(x|z) from the decoder's output: discretized logistic (location `params`, `log_scale`, over
    `num_levels` levels) when `log_scale` is given, else Bernoulli logits when `logvar` is None, else Gaussian
    (mean, logvar)."""
    if log_scale is not None:
        return discretized_logistic_log_likelihood(x, params, log_scale, num_levels or 256)
    if logvar is None:
        return bernoulli_log_likelihood(x, params)
    return gaussian_log_likelihood(x, params, logvar)


def _decoded_log_likelihood(x: torch.Tensor, out) -> torch.Tensor:
    """log p(x|z) from a DecoderOutput or VAEOutput, in float32 at least (a bf16/fp16 decoder's outputs are
    upcast: see hubgen.metrics.units.at_least_float32)."""
    x, params, logvar, log_scale = at_least_float32(x, out.sample, out.logvar, out.log_scale)
    return decoder_log_likelihood(x, params, logvar, log_scale, out.num_levels)


def _posterior(out) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x)'s mean and log-variance in float32 at least: the KL and log q(z|x) sums of a mixed-precision
    forward (accelerate casts the model's tensor outputs to float32, not the distribution object's)."""
    return at_least_float32(out.latent_dist.mean, out.latent_dist.logvar)


def latent_kl_terms(out) -> torch.Tensor:
    """The per-layer terms of KL(q(z_1..z_L|x) || p(z_1..z_L)) for one joint draw (module docstring), (L, B):

        layer l < L:  -H[q(z_l|z_{l-1})] - log p(z_l|z_{l+1})   (entropy closed form given the drawn z_{l-1},
                                                                  z_0 = x; log p at the drawn z_l, z_{l+1})
        layer L:      KL(q(z_L|z_{L-1}) || N(0, I))              (closed form given the drawn z_{L-1})

    One layer: the single row KL(q(z|x) || N(0, I)), closed form. A term l < L can be negative for one draw; the sum
    over layers estimates the joint KL without bias. `out` is the model's forward output (VAEOutput).
    """
    # in float32 under mixed precision (at_least_float32): the forward's distributions may be bf16/fp16
    q1 = out.latent_dist
    if out.upper is None:
        return gaussian_kl(*_posterior(out))[None]  # (1, B)
    posteriors = (q1, *out.upper.posteriors)  # q(z_1|x), q(z_2|z_1), ..., q(z_L|z_{L-1})
    lower = (out.latents, *out.upper.latents[:-1])  # z_1, ..., z_{L-1}
    terms = [-gaussian_entropy(at_least_float32(q.logvar)) - log_normal(*at_least_float32(z, p.mean, p.logvar))
             for q, z, p in zip(posteriors[:-1], lower, out.upper.priors, strict=True)]  # fmt: skip
    top = posteriors[-1]
    terms.append(gaussian_kl(*at_least_float32(top.mean, top.logvar)))
    return torch.stack(terms)  # (L, B)


def latent_log_ratio(z1: torch.Tensor, upper) -> torch.Tensor:
    """log p(z_1, ..., z_L) - log q(z_2, ..., z_L | z_1) at one draw (`upper` from `encode_upper(z1)`):

        log N(z_L; 0, I) + sum_{l<L} [log p(z_l|z_{l+1}) - log q(z_{l+1}|z_l)],

    the latent part of an importance weight w = p(x|z_1) [this] / q(z_1|x); log N(z_1; 0, I) for one layer."""
    if upper is None:
        return log_standard_normal(z1)
    value = log_standard_normal(upper.latents[-1])
    lower = (z1, *upper.latents[:-1])
    for z, z_up, q, p in zip(lower, upper.latents, upper.posteriors, upper.priors, strict=True):
        value = value + log_normal(z, p.mean, p.logvar) - log_normal(z_up, q.mean, q.logvar)
    return value


def elbo(model, x: torch.Tensor, beta: float = 1.0, generator=None) -> dict[str, torch.Tensor]:
    """ELBO(x) = E_q[log p(x|z)] - beta * KL(q(z|x) || N(0, I)), one reparameterized sample of z (AEVB eq. 7).

    For a hierarchical model the KL is the joint one, KL(q(z_1..z_L|x) || p(z_1..z_L)), estimated per layer by
    `latent_kl_terms` from one joint draw (closed form for the entropies and the top layer's KL, Monte Carlo for
    log p(z_l|z_{l+1}); module docstring), so E[elbo] is the ELBO exactly.

    beta = 1 is the bound on log p(x); beta < 1 is used only during KL warm-up (Sonderby et al. 2016,
    arXiv:1602.02282) and is then not a bound. Returns per-example tensors `elbo`, `log_px_z` and `kl`, and
    `kl_layers` (L, B); the loss to minimize is `-elbo.mean()`. `model` may be wrapped (DDP): it is called, not
    reached into.
    """
    out = model(x, generator=generator)
    log_px_z = _decoded_log_likelihood(x, out)
    kl_layers = latent_kl_terms(out)
    kl = kl_layers.sum(0)
    return {"elbo": log_px_z - beta * kl, "log_px_z": log_px_z, "kl": kl, "kl_layers": kl_layers}


def iwae_objective(model, x: torch.Tensor, k: int, generator=None) -> dict[str, torch.Tensor]:
    """The importance-weighted bound as a training objective (Burda et al. 2015, arXiv:1509.00519, eq. 8):

        L_k(x) = log (1/k) sum_{i=1}^k w_i,   w_i = p(x|z_i) p(z_i) / q(z_i|x),   z_i = mu + sigma eps_i

    with reparameterized z_i, so autograd of this log-mean-exp is the paper's gradient estimator (eq. 14):
    sum_i w~_i grad log w_i, with w~_i = w_i / sum_j w_j the normalized weights. k = 1 is the ELBO with its KL
    estimated by the one sample (in expectation the closed-form ELBO); L_k rises toward log p(x) as k grows.
    Hierarchical model: z_i is the joint draw (z_1, ..., z_L)_i and w_i = p(x, z_1..z_L) / q(z_1..z_L|x).
    Returns per-image `iwae` (B,) and the log-weights `log_w` (k, B). `model` is called (DDP sees the pass).
    """
    _check_k(k)
    out = model(x, generator=generator, num_samples=k)
    batch = x.shape[0]
    mean, logvar = (v.repeat(k, 1) for v in _posterior(out))  # (k * B, D), sample-major
    x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * batch, *x.shape[1:])
    z = at_least_float32(out.latents)  # log w and its log-sum-exp in float32 under mixed precision
    log_w = _decoded_log_likelihood(x_rep, out) + latent_log_ratio(z, out.upper) - log_normal(z, mean, logvar)
    log_w = log_w.reshape(k, batch)  # (k, B)
    return {"iwae": torch.logsumexp(log_w, dim=0) - math.log(k), "log_w": log_w}


MAX_DECODED_VALUES = 16384 * 784  # one IWAE chunk's decoder output: 16384 MNIST images (about 50 MB in float32)


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserInputError(f"`k` must be an integer >= 1 (the number of importance samples), got {k!r}.")


def _sample_chunks(x: torch.Tensor, k: int, max_rows: int):
    """Split k samples per image into chunks of n samples whose n * B decoder rows fit `max_rows` (fewer for images
    larger than MNIST's 784 values, so that a chunk decodes at most MAX_DECODED_VALUES values). Yields (n, x
    repeated n times, sample-major (n * B, C, H, W))."""
    batch = x.shape[0]
    max_rows = min(max_rows, max(1, MAX_DECODED_VALUES // x[0].numel()))
    chunk = max(1, min(k, max_rows // max(batch, 1)))
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        yield n, x.unsqueeze(0).expand(n, *x.shape).reshape(n * batch, *x.shape[1:])


@torch.no_grad()
def importance_log_weights(model, x: torch.Tensor, k: int, generator=None, max_rows: int = 16384) -> torch.Tensor:
    """log w_i = log p(x, z_i) - log q(z_i|x) for k draws z_i ~ q(z|x) per image, (k, B) (IWAE eq. 8's weights).

    Hierarchical model: z_i = (z_1, ..., z_L)_i from q(z_1|x) q(z_2|z_1) ... and the weight is over the joint.
    The k samples are decoded in chunks (`_sample_chunks`), so k = 5000 fits in memory.
    """
    _check_k(k)
    posterior = model.encode(x).latent_dist
    mean, logvar = posterior.mean, posterior.logvar  # (B, D_1)
    batch = x.shape[0]
    log_weights = []
    for n, x_rep in _sample_chunks(x, k, max_rows):
        eps = randn_tensor((n, *mean.shape), generator, mean.device, mean.dtype)
        z = reparameterize(mean, logvar, eps)  # (n, B, D_1)
        z_flat = z.reshape(n * batch, -1)  # (n*B, D_1)
        upper = model.encode_upper(z_flat, generator=generator)  # z_2..z_L ~ q(z_{l+1}|z_l), or None
        log_px_z = _decoded_log_likelihood(x_rep, model.decode(z_flat))
        log_qz = log_normal(z_flat, mean.repeat(n, 1), logvar.repeat(n, 1))  # log q(z_1|x), z_flat's row order
        log_weights.append((log_px_z + latent_log_ratio(z_flat, upper) - log_qz).reshape(n, batch))
    return torch.cat(log_weights, dim=0)  # (k, B)


@torch.no_grad()
def iwae_bound(model, x: torch.Tensor, k: int, generator=None, max_rows: int = 16384) -> torch.Tensor:
    """L_k(x) = log (1/k) sum_{i=1}^k p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)   (IWAE eq. 8).

    The log-weights of `importance_log_weights` (k floats per image, decoded in chunks) combined with one
    logsumexp. -L_k(x) is the importance-sampled estimate of -log p(x) in nats, reported as "IWAE NLL (k=...)".
    """
    log_w = importance_log_weights(model, x, k, generator=generator, max_rows=max_rows)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


@torch.no_grad()
def prior_log_weights(model, x: torch.Tensor, k: int, generator=None, max_rows: int = 16384) -> torch.Tensor:
    """log p(x|z_i) for k draws z_i ~ p(z) per image, (k, B): the terms of naive Monte Carlo,

        p(x) = E_{p(z)}[p(x|z)] ~ (1/k) sum_i p(x|z_i),   log p(x) ~ logsumexp_i log p(x|z_i) - log k.

    Unbiased for p(x) (its log is a stochastic lower bound, by Jensen), but almost every z from the prior explains
    x badly, so the average is dominated by rare draws and converges slowly: the failure importance sampling with
    q(z|x) fixes. Hierarchical model: z_L ~ N(0, I), then z_l ~ p(z_l|z_{l+1}) down to z_1 (ancestral sampling).
    """
    _check_k(k)
    batch, top = x.shape[0], model.top_latent_dim
    log_px_z = []
    for n, x_rep in _sample_chunks(x, k, max_rows):
        z_top = randn_tensor((n * batch, top), generator, x.device, x.dtype)  # (n*B, D_L)
        z1 = model.ancestral_latents(z_top, generator=generator)  # (n*B, D_1)
        log_px_z.append(_decoded_log_likelihood(x_rep, model.decode(z1)).reshape(n, batch))
    return torch.cat(log_px_z, dim=0)  # (k, B)


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int, num_levels: int | None = None) -> torch.Tensor:
    """NLL in nats per image -> bits per dimension, with hubgen's one convention (hubgen.metrics.units).

    Binary pixels, or L-level pixels under a discrete decoder (discretized logistic): NLL / (D ln 2).
    Continuous pixels dequantized from L levels: NLL / (D ln 2) + log2(L).
    """
    return nats_to_bits_per_dim(nll_nats, num_dims, num_levels=num_levels)
