"""A multi-scale Glow/RealNVP flow as a diffusers model (Dinh et al. arXiv:1605.08803; Kingma & Dhariwal
arXiv:1807.03039).

The flow f maps an image x in [0, 1)^D (grey levels k plus dequantization noise, divided by L) to a standard
normal z of the same size D, and the density of x is exact by the change of variables (RealNVP eq. (3)):

    log p(x) = log N(f(x); 0, I) + log |det df/dx|,   the log-determinant summed over every layer.

Architecture, for `num_levels` scales of `steps_per_level` steps each (Glow section 3, Figure 2):

    x -> Logit (or Center) -> [ Squeeze -> K x (ActNorm -> InvertibleConv1x1 -> AffineCoupling) -> Split ] x (L - 1)
      -> Squeeze -> K x step -> LearnedPrior

Each Split sends half the channels out as eps ~ N(0, I) (their learned prior standardizes them); the last
scale's LearnedPrior does the same for the rest. z concatenates, level by level, every eps flattened:
(B, D). Sampling at temperature T draws z ~ N(0, T^2 I) and runs the flow backwards.

The discrete data (k in {0..L-1}^D) have the bound (Theis et al. arXiv:1511.01844; Ho et al. arXiv:1902.00275)

    -log P(k) <= E_q[-log p(x) + log q(u|k)] + D log L,   x = (k + u) / L,

uniform dequantization having log q = 0. `bits_per_dim` reports it with hubgen.metrics.units' convention.
ActNorm initializes itself from the first training batch (or `initialize(x)`); its flag is saved.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..draws import randn_tensor
from ..errors import UserInputError
from ..metrics.units import nats_to_bits_per_dim
from . import losses
from .transforms import (
    ActNorm,
    AffineCoupling,
    Center,
    InvertibleConv1x1,
    LearnedPrior,
    Logit,
    Scale,
    Split,
    UniformDequantization,
    VariationalDequantization,
    lu_factors,
    split_channels,
    squeeze,
    unsqueeze,
    without_autocast,
)

__all__ = ["FlowModel", "FlowStep", "fuse_norm_and_conv", "levels_for"]


def levels_for(sample_size: int) -> int:
    """The number of scales L for images of side S when none is given: the most squeezes that keep the side an
    integer and the last scale at least 4x4 (Glow's choice: 3 for 32x32, 4 for 64x64, 6 for 256x256), and at
    least 2: 2 for 8 to 28 px (8 -> 2x2, 16 -> 4x4, 28 -> 7x7), 3 for 32 and 48, 4 for 64. Sides divisible by 4
    only; UserInputError otherwise."""
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 4 or sample_size % 4:
        raise UserInputError(
            f"The flow takes square images whose side is divisible by 4 (two squeezes at least; e.g. 8, 16, 28, 32, "
            f"64), got {sample_size}."
        )
    levels = 2
    while sample_size % 2 ** (levels + 1) == 0 and sample_size // 2 ** (levels + 1) >= 4:
        levels += 1
    return levels


def fuse_norm_and_conv(steps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ActNorm and the 1x1 convolution of K initialized steps of one scale as K convolutions, built together:

        W (a * x + b) = (W diag(a)) x + W b,   W = P L (U + diag(s)),   per pixel: sum log a + sum log |s|

    Returns the weights (K, C, C), biases (K, C) and log-determinants per pixel (K,). One batched product for the
    K steps instead of K small ones: at batch 32 on 28 x 28 images the ~20 operations per step that assemble W
    cost as much as the convolution they feed (the step's operator count, not its arithmetic, sets the time)."""
    conv, norm = [s.invconv for s in steps], [s.actnorm for s in steps]
    with without_autocast(conv[0].log_s):  # the bijection's data path in the weights' precision (transforms.py)
        log_s = torch.stack([c.log_s for c in conv])  # (K, C)
        lower, upper = lu_factors(torch.stack([c.lower for c in conv]), torch.stack([c.upper for c in conv]),
                                  torch.stack([c.sign_s for c in conv]), log_s)  # fmt: skip
        w = torch.stack([c.permutation for c in conv]) @ (lower @ upper)  # (K, C, C)
        log_a = torch.stack([n.log_scale.flatten() for n in norm])  # (K, C)
        b = torch.stack([n.bias.flatten() for n in norm])
        return w * torch.exp(log_a)[:, None, :], (w @ b[:, :, None])[:, :, 0], log_a.sum(1) + log_s.sum(1)


class FlowStep(nn.Module):
    """One step of Glow (section 3, Figure 2a): ActNorm -> invertible 1x1 convolution -> affine coupling.

    Once ActNorm is initialized, ActNorm and the 1x1 convolution run as one convolution (`fuse_norm_and_conv`):
    same function, one pass over the data. FlowModel builds the fused weights of a whole scale at once and passes
    each step its own (`fused`); a step called alone builds its own.
    """

    def __init__(self, num_channels: int, hidden_channels: int):
        super().__init__()
        self.actnorm = ActNorm(num_channels)
        self.invconv = InvertibleConv1x1(num_channels)
        self.coupling = AffineCoupling(num_channels, hidden_channels)

    def needs_init(self) -> bool:
        """ActNorm initializes itself from this step's next training batch."""
        return self.actnorm.training and not self.actnorm.is_initialized()

    def forward(self, x, fused: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        if self.needs_init():
            x, log_det_norm = self.actnorm(x)  # initializes it from this batch
            y, log_det_conv = self.invconv(x)
            log_det = log_det_norm + log_det_conv
        else:
            w, b, per_pixel = fused if fused is not None else (t[0] for t in fuse_norm_and_conv([self]))
            with without_autocast(x):
                y = F.conv2d(x.to(w.dtype), w[:, :, None, None], b)  # W diag(a) x + W b
            log_det = (x.shape[2] * x.shape[3] * per_pixel).expand(x.shape[0])
        y, log_det_coupling = self.coupling(y)
        return y, log_det + log_det_coupling

    def inverse(self, y):
        y, log_det = self.coupling.inverse(y)
        for layer in (self.invconv, self.actnorm):
            y, ld = layer.inverse(y)
            log_det = log_det + ld
        return y, log_det


class FlowModel(ModelMixin, ConfigMixin):
    r"""Multi-scale Glow/RealNVP flow on (in_channels, sample_size, sample_size) images with `pixel_levels` grey
    levels. See the module docstring.

    Args:
        sample_size: image side; it must be divisible by 2**num_levels (28 with 2 levels, 8 with up to 3).
        in_channels: image channels C (1 grey, 3 RGB); D = C * sample_size**2 dimensions, every channel counted.
        pixel_levels: levels L per channel of the data (256 for 8-bit images, 17 for sklearn's digits).
        num_levels: scales L of the multi-scale architecture (each starts with a squeeze).
        steps_per_level: flow steps K per scale.
        hidden_channels: width of every coupling network.
        logit_alpha: the logit transform's alpha (RealNVP: 0.05), or None for Glow's x - 1/2.
        dequantization: "uniform" (u ~ U[0, 1)) or "variational" (u ~ q(u|k), a small flow; Flow++).
        dequant_hidden_channels, dequant_steps: width and couplings of the variational dequantization flow.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        pixel_levels: int = 256,
        num_levels: int = 2,
        steps_per_level: int = 6,
        hidden_channels: int = 64,
        logit_alpha: float | None = 0.05,
        dequantization: Literal["uniform", "variational"] = "uniform",
        dequant_hidden_channels: int = 32,
        dequant_steps: int = 2,
    ):
        super().__init__()
        for name, value, low in [("in_channels", in_channels, 1), ("pixel_levels", pixel_levels, 2),
                                 ("num_levels", num_levels, 1), ("steps_per_level", steps_per_level, 1),
                                 ("hidden_channels", hidden_channels, 1), ("sample_size", sample_size, 2),
                                 ("dequant_hidden_channels", dequant_hidden_channels, 1),
                                 ("dequant_steps", dequant_steps, 0)]:  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserInputError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        if sample_size % 2**num_levels:
            raise UserInputError(
                f"`sample_size` {sample_size} must be divisible by 2**num_levels = {2**num_levels} (one squeeze per "
                f"level); for example 28 with num_levels <= 2, 8 with num_levels <= 3."
            )
        if logit_alpha is not None and not 0 <= logit_alpha < 0.5:
            raise UserInputError(f"`logit_alpha` must be None or in [0, 0.5), got {logit_alpha!r}.")
        if dequantization not in ("uniform", "variational"):
            raise UserInputError(f"`dequantization` must be 'uniform' or 'variational', got {dequantization!r}.")

        self.preprocess = Logit(logit_alpha) if logit_alpha is not None else Center()
        self.scale_to_unit = Scale(pixel_levels)
        if dequantization == "uniform":
            self.dequantizer = UniformDequantization()
        else:
            self.dequantizer = VariationalDequantization(
                in_channels, pixel_levels, dequant_hidden_channels, dequant_steps
            )
        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        c, s = in_channels, sample_size
        self.latent_shapes: list[tuple[int, int, int]] = []  # shape of each level's eps, in z's order
        for level in range(num_levels):
            c, s = 4 * c, s // 2  # squeeze
            self.levels.append(nn.ModuleList([FlowStep(c, hidden_channels) for _ in range(steps_per_level)]))
            if level < num_levels - 1:
                split = Split(c)
                self.splits.append(split)
                self.latent_shapes.append((c - split.num_keep, s, s))
                c = split.num_keep
        self.top_prior = LearnedPrior((c, s, s))
        self.latent_shapes.append((c, s, s))
        self.num_dims = in_channels * sample_size * sample_size

    # -- the bijection x <-> z ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor):
        """x in [0, 1)^D, (B, C, H, W) -> (z (B, D), log |det dz/dx| (B,))."""
        self.check_images(x, "x")
        h, log_det = self.preprocess(x)
        eps = []
        for level, steps in enumerate(self.levels):
            # (B, 4C, H/2, W/2), stored channels-last: the convolutions run about 1.3x faster that way on CPU
            h = squeeze(h).contiguous(memory_format=torch.channels_last)
            fused = [None] * len(steps)
            if not any(step.needs_init() for step in steps):
                fused = list(zip(*(t.unbind(0) for t in fuse_norm_and_conv(steps)), strict=True))
            for step, weights in zip(steps, fused, strict=True):
                h, ld = step(h, weights)
                log_det = log_det + ld
            if level < len(self.splits):
                h, ld = self.splits[level](h)
                h, factored = split_channels(h, self.splits[level].num_keep)
                eps.append(factored.flatten(1))  # the factored-out half, standardized
            else:
                h, ld = self.top_prior(h)
                eps.append(h.flatten(1))
            log_det = log_det + ld
        return torch.cat(eps, dim=1), log_det

    def inverse(self, z: torch.Tensor):
        """z (B, D) -> (x (B, C, H, W), log |det dx/dz| (B,)); x lies in [0, 1) for z from the model."""
        if z.ndim != 2 or z.shape[1] != self.num_dims:
            raise UserInputError(f"`z` must have shape (B, {self.num_dims}), got {tuple(z.shape)}.")
        eps = list(z.split([math.prod(s) for s in self.latent_shapes], dim=1))
        shapes = self.latent_shapes
        h, log_det = self.top_prior.inverse(eps[-1].reshape(-1, *shapes[-1]))
        for level in reversed(range(len(self.levels))):
            if level < len(self.splits):
                h = torch.cat([h, eps[level].reshape(-1, *shapes[level])], dim=1)
                h, ld = self.splits[level].inverse(h)
                log_det = log_det + ld
            h = h.contiguous(memory_format=torch.channels_last)
            for step in reversed(self.levels[level]):
                h, ld = step.inverse(h)
                log_det = log_det + ld
            h = unsqueeze(h)
        x, ld = self.preprocess.inverse(h)
        return x, log_det + ld

    # -- densities --------------------------------------------------------------------------------------

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(f(x); 0, I) + log |det df/dx|, nats per image (B,), for x in [0, 1)^D."""
        return losses.log_prob(self, x)

    def bits_per_dim(self, x: torch.Tensor, log_q: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Bits/dim of the L-level data behind dequantized x (hubgen.metrics.units' convention):

            bits/dim = (-log p(x) + log q(u|k)) / (D ln 2) + log2 L

        `log_q` is log q(u|k) of the dequantization that produced x (0 for uniform dequantization). In
        expectation over u this upper-bounds -log2 P(k) / D: a flow's likelihood of dequantized data is a lower
        bound on the discrete log-likelihood.
        """
        return nats_to_bits_per_dim(-self.log_prob(x) + log_q, self.num_dims, self.config.pixel_levels)

    # -- data <-> model space ------------------------------------------------------------------------------

    def check_images(self, x: torch.Tensor, name: str = "images") -> None:
        cfg = self.config
        expected = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise UserInputError(
                f"`{name}` must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}."
            )

    def quantize(self, intensities: torch.Tensor) -> torch.Tensor:
        """Intensities in [0, 1] -> grey levels k = round(p (L - 1)) in {0..L-1} (as floats)."""
        return torch.round(intensities.clamp(0, 1) * (self.config.pixel_levels - 1))

    def dequantize(self, intensities: torch.Tensor, generator=None):
        """Intensities in [0, 1] -> (x = (k + u) / L in [0, 1)^D, log q(u|k) (B,)); u uniform or variational."""
        self.check_images(intensities, "images")
        y, neg_log_q = self.dequantizer(self.quantize(intensities), generator=generator)
        x, _ = self.scale_to_unit(y)  # its log-det -D log L is the + log2 L of `bits_per_dim`
        return x, -neg_log_q

    def to_intensities(self, x: torch.Tensor) -> torch.Tensor:
        """Model space x -> the intensity of its grey level: k = floor(x L) clipped to {0..L-1}, p = k / (L - 1)."""
        levels = self.config.pixel_levels
        k = self.dequantizer.inverse(self.scale_to_unit.inverse(x)[0])[0]
        return k.clamp(0, levels - 1) / (levels - 1)

    def nll(self, intensities: torch.Tensor, generator=None) -> torch.Tensor:
        """-log p(x) + log q(u|k) + D log L, nats per image (B,): one-draw estimate of the bound on -log P(k)."""
        x, log_q = self.dequantize(intensities, generator)
        return losses.dequantized_nll(self.log_prob(x), log_q, self.num_dims, self.config.pixel_levels)

    # -- sampling -----------------------------------------------------------------------------------------

    def sample(self, n: int, temperature: float = 1.0, generator=None) -> torch.Tensor:
        """x = f^-1(z), z ~ N(0, T^2 I): n samples (n, C, H, W) in model space [0, 1) (continuous)."""
        z = temperature * randn_tensor((n, self.num_dims), generator, self.device, self.dtype)
        return self.inverse(z)[0]

    @torch.no_grad()
    def initialize(self, intensities: torch.Tensor, generator=None) -> None:
        """Data-dependent initialization of every ActNorm from one batch of images (intensities in [0, 1]).

        Call it once, with the same batch on every process, before training; the flags are then saved.
        """
        was_training = self.training
        self.train()
        x, _ = self.dequantize(intensities, generator)
        self(x)
        self.train(was_training)

    def actnorm_initialized(self) -> bool:
        return all(bool(m.initialized) for m in self.modules() if isinstance(m, ActNorm))
