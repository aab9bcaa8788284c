"""Likelihood units, in one place for every family: nats, bits, bits per dimension, and the corrections for
dequantization and preprocessing.

Conventions (Theis, van den Oord & Bethge, "A note on the evaluation of generative models",
arXiv:1511.01844, section 3.1; Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP",
arXiv:1605.08803, section 4.1):

- A negative log-likelihood NLL is in nats per example, summed over its D dimensions (pixels x channels).
- Discrete data modelled by a discrete distribution (binarized pixels under a Bernoulli decoder; the DDPM
  bound with its discretized decoder): bits/dim = NLL / (D ln 2).
- L-level pixels k in {0..L-1} modelled by a density after uniform dequantization x = (k + u) / L,
  u ~ U[0, 1)^D, so x in [0, 1)^D: every bin has volume L^-D, and
      -log2 P(k) <= E_u[-log2 p(x)] + D log2 L,     bits/dim = NLL_x / (D ln 2) + log2 L.
- A model of y = f(x) (a logit transform, a rescaling to [-1, 1]) gives p_x(x) = p_y(f(x)) |det df/dx|, so
      NLL_x = NLL_y - log |det df/dx|,
      bits/dim = (NLL_y - log_det) / (D ln 2) + log2 L        (what `nats_to_bits_per_dim` computes).
  The logit transform y = logit(alpha + (1 - 2 alpha) x) (the symmetric form used since MAF,
  Papamakarios et al. arXiv:1705.07057; RealNVP section 4.1 writes alpha + (1 - alpha) x) has
      log |det dy/dx| = sum_j [log(1 - 2 alpha) - log s_j - log(1 - s_j)],   s_j = alpha + (1 - 2 alpha) x_j,
  which is positive for alpha < 3/8 (dy/dx >= 4 (1 - 2 alpha) > 1): the transform stretches [0, 1] onto the
  real line, so NLL_y overstates NLL_x. Going back (x = (sigmoid(y) - alpha) / (1 - 2 alpha)) the
  log-determinant is minus the same number.

Which convention each family reports (arguments of `nats_to_bits_per_dim`):

| family   | data the model sees                  | reported                 | num_levels | log_det_preprocess |
|----------|--------------------------------------|--------------------------|------------|--------------------|
| vae      | binarized pixels, Bernoulli decoder  | nats/image (ELBO, IWAE)  | None       | 0                  |
| vae      | dequantized [0, 1), Gaussian decoder | bits/dim                 | L          | 0                  |
| vae      | L levels, discretized logistic       | bits/dim (discrete)      | None       | 0                  |
| gan      | -                                    | no likelihood            | -          | -                  |
| flow     | dequantized [0, 1), logit(alpha)     | bits/dim                 | L          | logit log-det      |
| ddpm     | [-1, 1], discretized decoder (L_0)   | bits/dim of the bound    | None       | 0                  |
| text2img | -                                    | no likelihood            | -          | -                  |

L = 256 for 8-bit data, 17 for scikit-learn's digits (`hubgen.data`); D counts every channel (C * H * W). A
discrete likelihood (the VAE's discretized logistic, the DDPM's L_0) needs no dequantization term: its bits/dim
already count 8-bit (L-level) pixels and compare directly with a dequantized flow's. A density on [-1, 1]^D
rather than a discretized decoder would need log_det = D ln 2 for the map y = 2x - 1 and num_levels = L.
"""

import math

import torch

from ..errors import UserInputError

__all__ = [
    "nats_to_bits",
    "bits_to_nats",
    "nats_to_bits_per_dim",
    "bits_per_dim_to_nats",
    "logit_transform",
    "inverse_logit_transform",
    "logit_transform_log_det",
    "at_least_float32",
]

LN2 = math.log(2.0)


def at_least_float32(*tensors):
    """The tensors in float32 when they are bf16/fp16 (a mixed-precision forward's outputs), else unchanged
    (float64 stays float64). A likelihood sums D terms of size ~1 to a number of hundreds of nats: bf16 keeps 3
    significant digits (an error of about 1 nat per image at 500), fp16 overflows beyond 65504 and both lose the
    small differences a log-sum-exp or a softmax resolves, so every log-likelihood is computed in float32."""
    out = tuple(t.float() if t is not None and t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)
    return out if len(out) > 1 else out[0]


def _check_dims(num_dims, num_levels) -> None:
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise UserInputError(f"`num_dims` must be a positive integer (values per example), got {num_dims!r}.")
    if num_levels is not None and (isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2):
        raise UserInputError(f"`num_levels` must be None (discrete data) or an integer >= 2, got {num_levels!r}.")


def mean_and_stderr(values) -> dict:
    """{"mean", "stderr"} of per-image figures (a tensor, or a list of tensors to concatenate): the mean over images
    and its standard error std / sqrt(n) (None for a single image), in float64."""
    v = (torch.cat(list(values)) if isinstance(values, (list, tuple)) else values).double()
    return {"mean": v.mean().item(), "stderr": (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else None}


def nats_to_bits(nats):
    """bits = nats / ln 2."""
    return nats / LN2


def bits_to_nats(bits):
    """nats = bits * ln 2."""
    return bits * LN2


def nats_to_bits_per_dim(nll_nats, num_dims: int, num_levels: int | None = None, log_det_preprocess=0.0):
    """bits/dim = (NLL - log_det) / (D ln 2) + log2(L)   (Theis et al. arXiv:1511.01844 section 3.1).

    `nll_nats`: NLL per example in nats (float, numpy array or tensor) of the data the model sees.
    `num_dims`: D. `num_levels`: L for dequantized L-level data scaled to [0, 1), None for discrete data
    (then no log2 L term). `log_det_preprocess`: log |det dy/dx| of the preprocessing y = f(x) applied
    after dequantization (per example, or a float), e.g. `logit_transform_log_det`; 0 for none.
    With `log_det_preprocess=0` this returns the same numbers as `hubgen.vae.losses.bits_per_dim`.
    """
    _check_dims(num_dims, num_levels)
    bpd = (nll_nats - log_det_preprocess) / (num_dims * LN2)
    if num_levels is not None:
        bpd = bpd + math.log2(num_levels)
    return bpd


def bits_per_dim_to_nats(bits_per_dim, num_dims: int, num_levels: int | None = None, log_det_preprocess=0.0):
    """NLL = (bits/dim - log2(L)) D ln 2 + log_det: the inverse of `nats_to_bits_per_dim`, same arguments."""
    _check_dims(num_dims, num_levels)
    if num_levels is not None:
        bits_per_dim = bits_per_dim - math.log2(num_levels)
    return bits_per_dim * (num_dims * LN2) + log_det_preprocess


def _check_alpha(alpha) -> None:
    if not 0.0 <= alpha < 0.5:
        raise UserInputError(
            f"`alpha` must lie in [0, 0.5) so that alpha + (1 - 2 alpha) x stays in (0, 1), got {alpha}."
        )


def logit_transform(x: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """y = logit(s) = log s - log(1 - s),  s = alpha + (1 - 2 alpha) x, for x in [0, 1]  (RealNVP section 4.1)."""
    _check_alpha(alpha)
    s = alpha + (1.0 - 2.0 * alpha) * x
    return torch.log(s) - torch.log1p(-s)


def inverse_logit_transform(y: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """x = (sigmoid(y) - alpha) / (1 - 2 alpha): the inverse of `logit_transform`."""
    _check_alpha(alpha)
    return (torch.sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)


def logit_transform_log_det(x: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """log |det dy/dx| = sum_j [log(1 - 2 alpha) - log s_j - log(1 - s_j)],  s_j = alpha + (1 - 2 alpha) x_j.

    The Jacobian of the elementwise `logit_transform` is diagonal with entries (1 - 2 alpha) / (s_j (1 - s_j)).
    `x` is (B, ...) in [0, 1]; the result is one number per example (B,), summed over all other dimensions.
    Pass it as `log_det_preprocess`; the inverse transform's log-determinant is its negative.
    """
    _check_alpha(alpha)
    s = alpha + (1.0 - 2.0 * alpha) * x
    log_diag = math.log(1.0 - 2.0 * alpha) - torch.log(s) - torch.log1p(-s)
    return log_diag.flatten(1).sum(dim=1)  # (B,)
