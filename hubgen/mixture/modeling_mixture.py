"""Finite mixture models of images as a diffusers model: the shallow latent-variable model.

A component z in {1..K} is drawn with probability pi_k, then the image x (D = C H W values) given z:

    p(x) = sum_k pi_k p(x | z = k)                                    (Bishop, PRML section 9.2, eq. 9.7)

- `distribution="bernoulli"` (binarized pixels): p(x | z = k) = prod_d mu_kd^x_d (1 - mu_kd)^(1 - x_d)
  (PRML section 9.3.3), a pmf on {0, 1}^D: log p(x) is the exact discrete log-likelihood.
- `distribution="gaussian"` (dequantized pixels x = (k + u) / L in [0, 1)^D): p(x | z = k) = N(x; mu_k, diag sigma_k^2),
  a density: its -log p(x) + D log L is an upper bound on the discrete data's -log P(levels) (see `hubgen.data`).

Every sum over components is a log-sum-exp of log pi_k + log p(x | z = k): a product of 784 Bernoulli or Gaussian
factors underflows float32 (e^-100 and below) long before it is small as a probability.

Parameters are stored unconstrained: `weight_logits` (log pi up to a constant, normalized by log-softmax);
`mean_logits` = logit(mu) for the Bernoulli means; `means` and `log_variances` for the Gaussians. EM
(hubgen.mixture.em) writes its closed-form updates into them; gradient ascent moves them directly.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..draws import categorical, rand_tensor, randn_tensor
from ..errors import UserInputError

__all__ = ["MixtureModel"]

LOG_2PI = math.log(2 * math.pi)


class MixtureModel(ModelMixin, ConfigMixin):
    """A mixture of K product distributions over D = C H W values: `forward(x)` -> log p(x) per image (N,).

    `x` is (N, D) or (N, C, H, W): 0/1 values for "bernoulli", dequantized values in [0, 1) for "gaussian".
    `pixel_levels` is L of the data (2 for binarized pixels; the dequantization's L for "gaussian").
    `bernoulli_pseudo_count` (alpha) and `mean_clamp` (eps), `min_variance`: what the EM updates assume
    (hubgen.mixture.em states the prior and the constraints); stored here so that a reloaded model resumes the
    same fit.
    """

    @register_to_config
    def __init__(
        self,
        num_components: int = 10,
        in_channels: int = 1,
        height: int = 28,
        width: int = 28,
        distribution: Literal["bernoulli", "gaussian"] = "bernoulli",
        pixel_levels: int = 2,
        bernoulli_pseudo_count: float = 1.0,
        mean_clamp: float = 1e-6,
        min_variance: float = 1e-3,
    ):
        super().__init__()
        if distribution not in ("bernoulli", "gaussian"):
            raise UserInputError(f"`distribution` must be 'bernoulli' or 'gaussian', got {distribution!r}.")
        if not isinstance(num_components, int) or num_components < 1:
            raise UserInputError(f"`num_components` must be a positive integer, got {num_components!r}.")
        if min(in_channels, height, width) < 1:
            raise UserInputError(f"The image shape must be positive, got {(in_channels, height, width)}.")
        if distribution == "bernoulli" and pixel_levels != 2:
            raise UserInputError(
                f"A Bernoulli mixture models binarized pixels: `pixel_levels` must be 2, got {pixel_levels}."
            )
        if pixel_levels < 2:
            raise UserInputError(f"`pixel_levels` must be >= 2, got {pixel_levels}.")
        if not bernoulli_pseudo_count >= 0:
            raise UserInputError(f"`bernoulli_pseudo_count` must be >= 0, got {bernoulli_pseudo_count!r}.")
        if not 0 < mean_clamp < 0.5:
            raise UserInputError(f"`mean_clamp` must be in (0, 0.5), got {mean_clamp!r}.")
        if not min_variance > 0:
            raise UserInputError(f"`min_variance` must be > 0, got {min_variance!r}.")
        k, d = num_components, in_channels * height * width
        self.weight_logits = nn.Parameter(torch.zeros(k))  # (K,) log pi_k + const
        if distribution == "bernoulli":
            self.mean_logits = nn.Parameter(torch.zeros(k, d))  # (K, D) logit(mu_kd)
        else:
            self.means = nn.Parameter(torch.full((k, d), 0.5))  # (K, D)
            self.log_variances = nn.Parameter(torch.zeros(k, d))  # (K, D) log sigma_kd^2

    # -- shapes --------------------------------------------------------------------------------------------------

    @property
    def num_dims(self) -> int:
        cfg = self.config
        return cfg.in_channels * cfg.height * cfg.width

    @property
    def image_shape(self) -> tuple[int, int, int]:
        cfg = self.config
        return (cfg.in_channels, cfg.height, cfg.width)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) or (N, D) -> (N, D) in the model's dtype."""
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.num_dims:
            raise UserInputError(f"Expected images of {self.num_dims} values ({self.image_shape}), got {x.shape[1]}.")
        return x.to(self.weight_logits.dtype)

    # -- parameters in their natural form ------------------------------------------------------------------------

    @property
    def log_weights(self) -> torch.Tensor:
        """log pi_k (K,), normalized: sum_k pi_k = 1."""
        return F.log_softmax(self.weight_logits, dim=0)

    @property
    def component_means(self) -> torch.Tensor:
        """E[x | z = k] (K, D): mu_k for both distributions."""
        if self.config.distribution == "bernoulli":
            return torch.sigmoid(self.mean_logits)
        return self.means

    # -- the likelihood ------------------------------------------------------------------------------------------

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n | z = k) (N, K) for x (N, D), as matrix products (no (N, K, D) tensor).

        Bernoulli, with l = logit(mu): log mu = -softplus(-l), log(1 - mu) = -softplus(l), so
            sum_d x_d log mu_kd + (1 - x_d) log(1 - mu_kd) = x . l_k - sum_d softplus(l_kd).
        Gaussian, with precision lambda = 1 / sigma^2:
            -1/2 sum_d [lambda_kd (x_d - mu_kd)^2 + log sigma_kd^2 + log 2 pi]
            = -1/2 [x^2 . lambda_k - 2 x . (lambda_k mu_k) + sum_d (lambda_kd mu_kd^2 + log sigma_kd^2) + D log 2 pi].
        """
        if self.config.distribution == "bernoulli":
            l = self.mean_logits  # (K, D)
            return x @ l.T - F.softplus(l).sum(1)  # (N, K)
        precision = torch.exp(-self.log_variances)  # (K, D)
        quadratic = (x * x) @ precision.T - 2 * x @ (precision * self.means).T  # (N, K)
        constant = (precision * self.means**2 + self.log_variances).sum(1) + self.num_dims * LOG_2PI  # (K,)
        return -0.5 * (quadratic + constant)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log p(x_n | z = k) = log p(x_n, z = k) (N, K)."""
        return self.log_weights + self.component_log_probs(self.flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n) = logsumexp_k [log pi_k + log p(x_n | z = k)] (N,), in nats."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def log_responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """log p(z = k | x_n) = log p(x_n, z = k) - log p(x_n) (N, K): the E-step's responsibilities, in logs."""
        joint = self.log_joint(x)
        return joint - torch.logsumexp(joint, dim=1, keepdim=True)

    # -- sampling -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, batch_size: int, generator: torch.Generator | None = None, means_only: bool = False):
        """Ancestral sampling: z ~ Categorical(pi), then x ~ p(x | z) (or its mean E[x | z] with `means_only`).
        Returns (x (B, C, H, W) in [0, 1], z (B,)) on the model's device. Draws through hubgen.draws (a CPU generator
        gives the same images on any device; a list gives image i from generator i): B categorical draws, then B x D
        uniforms (Bernoulli) or normals (Gaussian)."""
        device = self.log_weights.device
        probs = self.log_weights.detach().double().exp()
        z = categorical(probs, batch_size, generator, device)  # (B,)
        mean = self.component_means.detach().double()[z]  # (B, D)
        if means_only:
            x = mean
        elif self.config.distribution == "bernoulli":
            x = (rand_tensor(mean.shape, generator, device, torch.float64) < mean).double()
        else:
            eps = randn_tensor(mean.shape, generator, device, torch.float64)
            x = mean + torch.exp(0.5 * self.log_variances.detach().double()[z]) * eps
        return x.clamp(0, 1).float().reshape(batch_size, *self.image_shape), z
