"""The flow's objective, as pure functions: the exact negative log-likelihood of dequantized images.

Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP" (arXiv:1605.08803); Kingma & Dhariwal,
"Glow: Generative Flow with Invertible 1x1 Convolutions" (arXiv:1807.03039), section 2; Ho et al., "Flow++"
(arXiv:1902.00275), section 3.1 (variational dequantization); Theis, van den Oord & Bethge (arXiv:1511.01844),
section 3.1 (uniform dequantization).

An invertible f maps x in [0, 1)^D to z = f(x) of the same size D, and the change of variables gives the
density of x exactly (Glow section 2, the log-determinant summed over the layers of f):

    log p(x) = log N(f(x); 0, I) + log |det df/dx|

The images are discrete, grey levels k in {0..L-1}^D. Dequantization makes them continuous: x = (k + u) / L
with u in [0, 1)^D drawn from q(u|k). Since P(k) = int_{[0,1)^D} p((k + u) / L) L^-D du, Jensen's inequality
gives the bound that training maximizes (Flow++ section 3.1):

    log P(k) >= E_{u ~ q(u|k)} [log p(x) - log q(u|k)] - D log L

Uniform dequantization, q = U[0, 1)^D, has log q = 0 (Theis et al. section 3.1; Glow's constant c = -M log a).
Variational dequantization learns q, a small conditional flow, jointly with p: the bound tightens as q
approaches the posterior of u given k. One draw of u gives, per image, the estimate in nats and bits/dim

    NLL      = -log p(x) + log q(u|k) + D ln L
    bits/dim = NLL / (D ln 2) = (-log p(x) + log q(u|k)) / (D ln 2) + log2 L      (hubgen.metrics.units)

and training minimizes the batch mean of bits/dim, with a fresh u at every use of an image. Its gradient
reaches q's parameters through the reparameterized u = g(eps; k).

All log-densities are in nats and summed over every non-batch dimension: one number per image.
"""

import math

import torch

from ..metrics.units import nats_to_bits_per_dim
from .transforms import standard_normal_log_prob

__all__ = ["log_prob", "dequantized_nll", "bits_per_dim"]


def log_prob(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log N(f(x); 0, I) + log |det df/dx|, nats per image (B,)  (Glow section 2).

    `model` returns (z, log |det df/dx|) when called; it may be wrapped (DDP): it is called, not reached into.
    """
    z, log_det = model(x)
    return standard_normal_log_prob(z) + log_det


def dequantized_nll(log_px: torch.Tensor, log_q: torch.Tensor | float, num_dims: int, num_levels: int) -> torch.Tensor:
    """NLL = -log p(x) + log q(u|k) + D ln L, nats per image: one draw of the bound on -log P(k), x = (k + u) / L.

    `log_px` is log p(x) (B,), `log_q` the log-density log q(u|k) of the draw u (0 for uniform dequantization),
    `num_dims` D and `num_levels` L. In expectation over u ~ q(u|k) it is >= -log P(k)  (Flow++ section 3.1).
    """
    return -log_px + log_q + num_dims * math.log(num_levels)


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int) -> torch.Tensor:
    """bits/dim = NLL / (D ln 2) for the NLL of `dequantized_nll`, which already holds the D ln L of the bins.

    The same number as hubgen.metrics.units' (-log p(x) + log q(u|k)) / (D ln 2) + log2 L.
    """
    return nats_to_bits_per_dim(nll_nats, num_dims)
