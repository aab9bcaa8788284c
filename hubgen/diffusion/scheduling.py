"""The algebra of denoising diffusion (Ho, Jain & Abbeel 2020, arXiv:2006.11239), written out and model-agnostic.

The noise schedule and the samplers are diffusers schedulers; this module holds the closed forms they rest on,
each tested against an independent computation, plus the variational bound in bits/dim and the classifier-free
guidance helpers a conditional family reuses. Nothing here knows about UNets, text or images beyond shapes:
a "model" is any callable `model(xt, t) -> eps` (a diffusers UNet's `.sample` output is unwrapped).

Notation (Ho et al. section 2): beta_t the variance schedule, alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s.

    forward step          q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)                      (eq. 2)
    marginal              q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I)                       (eq. 4)
    posterior             q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                  (eqs. 6-7)
    bound                 L = L_T + sum_{t>1} L_{t-1} + L_0 >= -log p(x_0)                             (eq. 5)
    epsilon model         mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)  (eq. 11)
    discretized decoder   p(x_0 | x_1) = prod_i int_{bin of x_0^i} N(x; mu_theta^i(x_1, 1), sigma_1^2) dx  (eq. 13)

Indexing: diffusers stores the schedule 0-based, `alphas_cumprod[i]` = abar_{i+1}. Every `t` argument here is
that 0-based index (an int or a (B,) integer tensor), so paper step t is index t - 1, and index 0 is the step
whose "previous" value is x_0 itself (abar_0 = 1).
"""

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from ..draws import rand_tensor, randn_tensor
from ..errors import UserInputError

__all__ = [
    "q_sample",
    "q_posterior",
    "Posterior",
    "eps_to_x0",
    "eps_to_score",
    "p_mean_variance",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "variational_bound",
    "VariationalBound",
    "min_snr_weight",
    "guided_eps",
    "drop_condition",
]

VarianceType = Literal["fixed_small", "fixed_large"]


def _at(values: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """values[t] as `like`'s dtype and device, shaped (B, 1, ..., 1) (or a scalar for an int t) to broadcast."""
    # at least float32: abar_t near 1 loses its digits in half precision
    values = values.to(device=like.device, dtype=torch.promote_types(like.dtype, torch.float32))
    if isinstance(t, int):
        return values[t]
    out = values[t.to(like.device).long()]  # (B,)
    return out.reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)


def _abar_prev(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """abar_{t-1} for every 0-based t: [1, abar_1, ..., abar_{T-1}] (abar_0 = 1: x_0 is noise-free)."""
    return torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])


def q_sample(x0: torch.Tensor, t, eps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """A draw from q(x_t | x_0) (Ho et al. eq. 4), reparameterized as in eq. 9:

        x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I)

    The same as diffusers' `scheduler.add_noise(x0, eps, t)`; computed in at least float32.
    """
    abar = _at(alphas_cumprod, t, x0)
    return (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).to(x0.dtype)


class Posterior(NamedTuple):
    """q(x_{t-1} | x_t, x_0) = N(mean, variance I), unpackable as (mean, variance, log_variance). `log_variance` is
    clipped as in Ho et al.'s code: at t = 1 (index 0) beta~_1 = 0, so the log uses beta~_2 there; everywhere else
    it is log(variance)."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor


def q_posterior(x0: torch.Tensor, xt: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> Posterior:
    """Mean and variance of the forward posterior q(x_{t-1} | x_t, x_0) (Ho et al. eqs. 6-7):

        mu~_t    = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        beta~_t  = (1 - abar_{t-1}) / (1 - abar_t) beta_t

    with beta_t = 1 - abar_t / abar_{t-1} (so the function needs only the cumulative products). The coefficients are
    computed in float64 and only then cast: in float32, 1 - abar_t / abar_{t-1} at small t keeps few digits and the
    mean was off by up to 0.01 posterior standard deviations.
    """
    abar = alphas_cumprod.double()
    abar_prev = _abar_prev(abar)
    beta = 1 - abar / abar_prev
    variance_all = (1 - abar_prev) / (1 - abar) * beta  # beta~, (T,)
    log_variance_all = torch.log(torch.cat([variance_all[1:2], variance_all[1:]]))  # beta~_1 = 0: use beta~_2
    # eq. 7: the two coefficients of x_0 and x_t
    coef_x0 = abar_prev.sqrt() * beta / (1 - abar)
    coef_xt = (abar / abar_prev).sqrt() * (1 - abar_prev) / (1 - abar)
    mean = _at(coef_x0, t, x0) * x0 + _at(coef_xt, t, x0) * xt
    return Posterior(mean, _at(variance_all, t, x0), _at(log_variance_all, t, x0))


def eps_to_x0(xt: torch.Tensor, t, eps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The x_0 that x_t and eps imply, inverting eq. 4 (Ho et al. eq. 15, section 4.3):

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)

    With eps_theta(x_t) = E[eps | x_t] this is E[x_0 | x_t] (Tweedie's formula).
    """
    abar = _at(alphas_cumprod, t, xt)
    return ((xt - (1 - abar).sqrt() * eps) / abar.sqrt()).to(xt.dtype)


def eps_to_score(eps: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The score grad_{x_t} log q(x_t | x_0) that a noise value implies (Ho et al. section 3.2; Song et al. 2021,
    arXiv:2011.13456, section 3):

        score = -(x_t - sqrt(abar_t) x_0) / (1 - abar_t) = -eps / sqrt(1 - abar_t)

    With eps_theta(x_t) = E[eps | x_t] (the minimizer of the epsilon loss) this is the score of the marginal q(x_t).
    """
    return -eps / (1 - _at(alphas_cumprod, t, eps)).sqrt()


def _model_log_variance(t, like: torch.Tensor, alphas_cumprod: torch.Tensor, variance_type: VarianceType):
    """log sigma_t^2 of p(x_{t-1} | x_t): beta~_t ("fixed_small") or beta_t ("fixed_large"), Ho et al. section 3.2.

    At t = 1 (index 0) both use beta~_2, as Ho et al.'s code does (beta~_1 = 0 would make the decoder a point mass).
    """
    abar_prev = _abar_prev(alphas_cumprod)
    if variance_type == "fixed_small":
        variance = (1 - abar_prev) / (1 - alphas_cumprod) * (1 - alphas_cumprod / abar_prev)  # beta~_t
    elif variance_type == "fixed_large":
        variance = 1 - alphas_cumprod / abar_prev  # beta_t
    else:
        raise UserInputError(f"`variance_type` must be 'fixed_small' or 'fixed_large', got {variance_type!r}.")
    beta_tilde_2 = (1 - alphas_cumprod[0]) / (1 - alphas_cumprod[1]) * (1 - alphas_cumprod[1] / alphas_cumprod[0])
    log_variance = torch.log(torch.cat([beta_tilde_2.reshape(1), variance[1:]]))
    return _at(log_variance, t, like)


def p_mean_variance(
    eps: torch.Tensor,
    xt: torch.Tensor,
    t,
    alphas_cumprod: torch.Tensor,
    variance_type: VarianceType = "fixed_small",
    clip_x0: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reverse step p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I) of an epsilon model -> (mean, log variance,
    x0_hat).

    mu_theta is the posterior mean of eq. 7 at x0_hat = eps_to_x0(x_t, eps), which equals eq. 11,
    (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t), when x0_hat is not clipped. `clip_x0` = r clamps x0_hat
    to [-r, r] first (what diffusers' DDPMScheduler does with clip_sample=True).
    """
    x0_hat = eps_to_x0(xt, t, eps, alphas_cumprod)
    if clip_x0 is not None:
        x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
    mean = q_posterior(x0_hat, xt, t, alphas_cumprod).mean
    return mean, _model_log_variance(t, xt, alphas_cumprod, variance_type), x0_hat


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats:

    0.5 (logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2) - 1)
    """
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def discretized_gaussian_log_likelihood(
    x0: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor, levels: int = 256
) -> torch.Tensor:
    """log p(x_0) per element under the discretized Gaussian decoder (Ho et al. eq. 13), for data on `levels`
    equally spaced values in [-1, 1] (256 for 8-bit images, 17 for scikit-learn's digits):

        P(x) = Phi((x + h - mean) / sigma) - Phi((x - h - mean) / sigma),   h = 1 / (levels - 1)

    where the lowest bin reaches down to -inf and the highest up to +inf, so the levels' probabilities sum to 1.
    Computed with log Phi and, for bins above the mean, the reflected tail, so it stays finite far from the mean.
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise UserInputError(f"`levels` must be an integer >= 2, got {levels!r}.")
    half_width = 1.0 / (levels - 1)
    inv_sigma = torch.exp(-0.5 * log_variance)
    lower = torch.where(x0 < -1 + half_width / 2, -math.inf, (x0 - half_width - mean) * inv_sigma)
    upper = torch.where(x0 > 1 - half_width / 2, math.inf, (x0 + half_width - mean) * inv_sigma)
    # Phi(u) - Phi(l) = Phi(-l) - Phi(-u): take the form whose arguments are in the lower tail (more precision).
    flip = lower > 0
    lo, hi = torch.where(flip, -upper, lower), torch.where(flip, -lower, upper)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + _log1mexp((log_lo - log_hi).clamp(max=0))


@dataclass
class VariationalBound:
    """The terms of the bound (Ho et al. eq. 5) per example, in nats (float64 tensors of shape (B,)).

    prior = L_T, diffusion = sum_{t=2}^T L_{t-1} (or its unbiased estimate), decoder = L_0, total = their sum;
    bits_per_dim = total / (D ln 2): the data are discrete, so no dequantization term enters.
    """

    prior: torch.Tensor
    diffusion: torch.Tensor
    decoder: torch.Tensor
    total: torch.Tensor
    bits_per_dim: torch.Tensor
    num_timesteps: int
    num_train_timesteps: int


def _predict_eps(model, xt: torch.Tensor, t: torch.Tensor, dtype) -> torch.Tensor:
    out = model(xt.to(dtype), t)
    return getattr(out, "sample", out).double()


@torch.no_grad()
def variational_bound(
    unet,
    scheduler,
    x0: torch.Tensor,
    num_timesteps: int | None = None,
    generator: torch.Generator | None = None,
    levels: int = 256,
    variance_type: VarianceType | None = None,
    clip_x0: float | None | Literal["scheduler"] = "scheduler",
) -> VariationalBound:
    """The variational bound on -log p(x_0) (Ho et al. eq. 5) per example, in nats and bits/dim:

        L_T       = KL(q(x_T | x_0) || N(0, I))                                      closed form
        L_{t-1}   = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)),  t = 2..T    one x_t ~ q(x_t | x_0) each
        L_0       = -log p_theta(x_0 | x_1)  (discretized Gaussian, eq. 13)           one x_1 ~ q(x_1 | x_0)

    `unet(xt, t)` predicts eps (a diffusers UNet2DModel, or any callable; t is a (B,) tensor of 0-based
    indices). `scheduler` supplies `alphas_cumprod` and, by default, `config.variance_type` ("fixed_small" when
    absent) and the x0 clipping of its sampler (`config.clip_sample`, `clip_sample_range`); pass `variance_type`
    or `clip_x0` (None: no clipping, a number r: clamp to [-r, r]) to override. `x0` (B, ...) lies on the
    `levels`-point grid of [-1, 1].

    `num_timesteps` = n < T evaluates L_0 and L_T always and n - 1 of the T - 1 terms L_{t-1}, drawn per example
    uniformly without replacement from t = 2..T, weighted (T - 1) / (n - 1): each term is included with
    probability (n - 1) / (T - 1), so the estimate of the sum is unbiased. None (or T) evaluates every term.
    Costs n network evaluations per example. Randomness (x_t, the timesteps) comes from `generator` only.
    """
    alphas_cumprod = scheduler.alphas_cumprod.double().to(x0.device)
    T = len(alphas_cumprod)
    if num_timesteps is None:
        num_timesteps = T
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or not 2 <= num_timesteps <= T:
        raise UserInputError(f"`num_timesteps` must be None or an integer in [2, {T}], got {num_timesteps!r}.")
    config = getattr(scheduler, "config", {})
    variance_type = variance_type or config.get("variance_type", None) or "fixed_small"
    if variance_type not in ("fixed_small", "fixed_large"):
        raise UserInputError(
            f"The bound needs a fixed reverse variance: `variance_type` must be 'fixed_small' or 'fixed_large', "
            f"got {variance_type!r}."
        )
    if clip_x0 == "scheduler":
        clip_x0 = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", False) else None
    if config.get("prediction_type", "epsilon") != "epsilon":
        raise UserInputError(f"The bound is written for epsilon prediction, got {config.get('prediction_type')!r}.")
    model_dtype = getattr(unet, "dtype", torch.float32)

    x0 = x0.double()
    b, d = x0.shape[0], x0[0].numel()
    dims = tuple(range(1, x0.ndim))

    def noise():
        return randn_tensor(x0.shape, generator, x0.device, torch.float64)

    # L_T: q(x_T | x_0) against the prior N(0, I)
    abar_T = alphas_cumprod[-1]
    zero = torch.zeros((), dtype=torch.float64, device=x0.device)
    prior = normal_kl(abar_T.sqrt() * x0, torch.log1p(-abar_T), zero, zero).sum(dims)

    # L_0: the discretized decoder at x_1 ~ q(x_1 | x_0)
    t0 = torch.zeros(b, dtype=torch.long, device=x0.device)
    x1 = q_sample(x0, t0, noise(), alphas_cumprod)
    mean, log_var, _ = p_mean_variance(_predict_eps(unet, x1, t0, model_dtype), x1, t0, alphas_cumprod,
                                       variance_type, clip_x0)  # fmt: skip
    decoder = -discretized_gaussian_log_likelihood(x0, mean, log_var, levels).sum(dims)

    # sum_{t=2}^T L_{t-1}: every index 1..T-1, or n - 1 of them per example
    if num_timesteps == T:
        chosen, weight = torch.arange(1, T).expand(b, T - 1), 1.0
    else:
        keys = rand_tensor((b, T - 1), generator, x0.device)  # (B, T - 1): they only pick the timesteps
        chosen, weight = keys.argsort(dim=1)[:, : num_timesteps - 1] + 1, (T - 1) / (num_timesteps - 1)
    diffusion = torch.zeros(b, dtype=torch.float64, device=x0.device)
    for j in range(chosen.shape[1]):
        t = chosen[:, j].to(x0.device)  # (B,)
        xt = q_sample(x0, t, noise(), alphas_cumprod)
        post = q_posterior(x0, xt, t, alphas_cumprod)
        mean, log_var, _ = p_mean_variance(_predict_eps(unet, xt, t, model_dtype), xt, t, alphas_cumprod,
                                           variance_type, clip_x0)  # fmt: skip
        diffusion += normal_kl(post.mean, post.log_variance, mean, log_var).sum(dims)
    diffusion = diffusion * weight

    total = prior + diffusion + decoder
    return VariationalBound(prior, diffusion, decoder, total, total / (d * math.log(2)), num_timesteps, T)


def min_snr_weight(
    snr: torch.Tensor, gamma: float, prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, arXiv:2303.09556, section 3.4), SNR_t = abar_t / (1 - abar_t):

        x_0 loss: min(SNR_t, gamma);  epsilon loss: min(SNR_t, gamma) / SNR_t;  v loss: min(SNR_t, gamma) / (SNR_t + 1)

    (the epsilon and v losses equal SNR_t and SNR_t + 1 times the x_0 loss, so dividing gives the same clamp).
    """
    if not (isinstance(gamma, (int, float)) and gamma > 0 and math.isfinite(gamma)):
        raise UserInputError(f"`gamma` must be a positive number, got {gamma!r}.")
    clamped = torch.clamp(snr, max=gamma)
    if prediction_type == "epsilon":
        return clamped / snr
    if prediction_type == "v_prediction":
        return clamped / (snr + 1)
    if prediction_type == "sample":
        return clamped
    raise UserInputError(f"`prediction_type` must be 'epsilon', 'v_prediction' or 'sample', got {prediction_type!r}.")


def guided_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598, section 3.2):

        eps~ = eps_uncond + w (eps_cond - eps_uncond)

    with w the guidance scale as diffusers counts it (w = 1: the conditional model alone, w = 0: the
    unconditional one); the paper's (1 + w') eps_cond - w' eps_uncond is w = 1 + w'.
    """
    return eps_uncond + w * (eps_cond - eps_uncond)


def drop_condition(
    cond: torch.Tensor, null_cond: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training for classifier-free guidance (Ho & Salimans 2022, Algorithm 1): replace each example's
    conditioning (B, ...) by the null conditioning (broadcastable to one example) with probability `p_uncond`,
    so one network learns both eps(x_t, c) and eps(x_t)."""
    if not 0 <= p_uncond <= 1:
        raise UserInputError(f"`p_uncond` must be a probability in [0, 1], got {p_uncond!r}.")
    drop = rand_tensor((cond.shape[0],), generator, cond.device) < p_uncond  # (B,)
    drop = drop.to(cond.device).reshape(-1, *([1] * (cond.ndim - 1)))
    return torch.where(drop, null_cond.to(cond.dtype).expand_as(cond), cond)
