"""The variational autoencoder's objective, as pure functions.

Kingma & Welling, "Auto-Encoding Variational Bayes" (arXiv:1312.6114); Burda, Grosse & Salakhutdinov,
"Importance Weighted Autoencoders" (arXiv:1509.00519).

For data x, latent z, prior p(z) = N(0, I), decoder p(x|z) and encoder q(z|x) = N(mu(x), diag sigma^2(x)):

    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z))                      = ELBO(x)       (AEVB eq. 3)
    log p(x) >= E_{z_1..z_k ~ q} log (1/k) sum_i p(x, z_i) / q(z_i|x)      = L_k(x)        (IWAE eq. 8)

with ELBO = L_1 <= L_k <= L_k' <= log p(x) for k <= k' (IWAE Theorem 1). The expectation over q is taken
with the reparameterization z = mu + sigma * eps, eps ~ N(0, I) (AEVB section 2.4), so the gradient flows
through mu and sigma.

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
from ..metrics.units import nats_to_bits_per_dim

__all__ = [
    "reparameterize",
    "gaussian_kl",
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
    """log p(x|z) from a DecoderOutput or VAEOutput."""
    return decoder_log_likelihood(x, out.sample, out.logvar, out.log_scale, out.num_levels)


def elbo(model, x: torch.Tensor, beta: float = 1.0, generator=None) -> dict[str, torch.Tensor]:
    """ELBO(x) = E_q[log p(x|z)] - beta * KL(q(z|x) || N(0, I)), one reparameterized sample of z (AEVB eq. 7).

    beta = 1 is the bound on log p(x); beta < 1 is used only during KL warm-up (Sonderby et al. 2016,
    arXiv:1602.02282) and is then not a bound. Returns per-example tensors `elbo`, `log_px_z` and `kl`;
    the loss to minimize is `-elbo.mean()`. `model` may be wrapped (DDP): it is called, not reached into.
    """
    out = model(x, generator=generator)
    log_px_z = _decoded_log_likelihood(x, out)
    kl = gaussian_kl(out.latent_dist.mean, out.latent_dist.logvar)
    return {"elbo": log_px_z - beta * kl, "log_px_z": log_px_z, "kl": kl}


def iwae_objective(model, x: torch.Tensor, k: int, generator=None) -> dict[str, torch.Tensor]:
    """The importance-weighted bound as a training objective (Burda et al. 2015, arXiv:1509.00519, eq. 8):

        L_k(x) = log (1/k) sum_{i=1}^k w_i,   w_i = p(x|z_i) p(z_i) / q(z_i|x),   z_i = mu + sigma eps_i

    with reparameterized z_i, so autograd of this log-mean-exp is the paper's gradient estimator (eq. 14):
    sum_i w~_i grad log w_i, with w~_i = w_i / sum_j w_j the normalized weights. k = 1 is the ELBO with its KL
    estimated by the one sample (in expectation the closed-form ELBO); L_k rises toward log p(x) as k grows.
    Returns per-image `iwae` (B,) and the log-weights `log_w` (k, B). `model` is called (DDP sees the pass).
    """
    if not isinstance(k, int) or k < 1:
        raise UserInputError(f"`k` must be an integer >= 1 (the number of importance samples), got {k!r}.")
    out = model(x, generator=generator, num_samples=k)
    batch = x.shape[0]
    mean, logvar = out.latent_dist.mean.repeat(k, 1), out.latent_dist.logvar.repeat(k, 1)  # (k * B, D), sample-major
    x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * batch, *x.shape[1:])
    z = out.latents
    log_w = _decoded_log_likelihood(x_rep, out) + log_standard_normal(z) - log_normal(z, mean, logvar)  # (k * B,)
    log_w = log_w.reshape(k, batch)
    return {"iwae": torch.logsumexp(log_w, dim=0) - math.log(k), "log_w": log_w}


MAX_DECODED_VALUES = 16384 * 784  # one IWAE chunk's decoder output: 16384 MNIST images (about 50 MB in float32)


@torch.no_grad()
def iwae_bound(model, x: torch.Tensor, k: int, generator=None, max_rows: int = 16384) -> torch.Tensor:
    """L_k(x) = log (1/k) sum_{i=1}^k p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)   (IWAE eq. 8).

    The k samples are decoded in chunks of at most `max_rows` decoder rows (fewer for images larger than
    MNIST's 784 values, so that a chunk decodes at most MAX_DECODED_VALUES values), so k = 5000 fits in memory;
    the log-weights of all chunks are kept (k floats per image) and combined with one logsumexp.
    -L_k(x) is the importance-sampled estimate of -log p(x) in nats, reported as "IWAE NLL (k=...)".
    """
    if not isinstance(k, int) or k < 1:
        raise UserInputError(f"`k` must be an integer >= 1 (the number of importance samples), got {k!r}.")
    posterior = model.encode(x).latent_dist
    mean, logvar = posterior.mean, posterior.logvar  # (B, D)
    batch = x.shape[0]
    max_rows = min(max_rows, max(1, MAX_DECODED_VALUES // x[0].numel()))
    chunk = max(1, min(k, max_rows // max(batch, 1)))
    log_weights = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        eps = randn_tensor((n, *mean.shape), generator, mean.device, mean.dtype)  # (n, B, D)
        z = reparameterize(mean, logvar, eps)  # (n, B, D)
        z_flat = z.reshape(n * batch, -1)  # (n*B, D)
        x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * batch, *x.shape[1:])  # (n*B, C, H, W)
        decoded = model.decode(z_flat)
        log_px_z = _decoded_log_likelihood(x_rep, decoded)
        log_pz = log_standard_normal(z_flat)
        log_qz = log_normal(z_flat, mean.repeat(n, 1), logvar.repeat(n, 1))  # log q(z_i|x), same row order as z_flat
        log_weights.append((log_px_z + log_pz - log_qz).reshape(n, batch))
    log_w = torch.cat(log_weights, dim=0)  # (k, B)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int, num_levels: int | None = None) -> torch.Tensor:
    """NLL in nats per image -> bits per dimension, with hubgen's one convention (hubgen.metrics.units).

    Binary pixels, or L-level pixels under a discrete decoder (discretized logistic): NLL / (D ln 2).
    Continuous pixels dequantized from L levels: NLL / (D ln 2) + log2(L).
    """
    return nats_to_bits_per_dim(nll_nats, num_dims, num_levels=num_levels)
