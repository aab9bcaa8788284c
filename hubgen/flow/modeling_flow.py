"""A multi-scale Glow/RealNVP flow as a diffusers model (Dinh et al. arXiv:1605.08803; Kingma & Dhariwal
arXiv:1807.03039).

The flow f maps an image x in [0, 1)^D (grey levels k plus dequantization noise, divided by L) to a standard
normal z of the same size D, and the density of x is exact by the change of variables (RealNVP eq. (3)):

    log p(x) = log N(f(x); 0, I) + log |det df/dx|,   the log-determinant summed over every layer.

Architecture, for `num_levels` scales of `steps_per_level` steps each (Glow section 3, Figure 2):

    x -> Logit (or Center) -> [ Squeeze -> K x (ActNorm -> InvertibleConv1x1 -> AffineCoupling) -> Split ] x (L - 1)
      -> Squeeze -> K x step -> LearnedPrior

Each scale's K steps live in one FlowLevel, their parameters stacked over the steps (one tensor per kind); flows
saved with one module per step (levels.{i}.{k}.actnorm.log_scale, ...) load through `FlowLevel.stack_per_step_keys`.
Each Split sends half the channels out as eps ~ N(0, I) (their learned prior standardizes them); the last
scale's LearnedPrior does the same for the rest. z concatenates, level by level, every eps flattened:
(B, D). Sampling at temperature T draws z ~ N(0, T^2 I) and runs the flow backwards.

The discrete data (k in {0..L-1}^D) have the bound (Theis et al. arXiv:1511.01844; Ho et al. arXiv:1902.00275)

    -log P(k) <= E_q[-log p(x) + log q(u|k)] + D log L,   x = (k + u) / L,

uniform dequantization having log q = 0. `bits_per_dim` reports it with hubgen.metrics.units' convention.
ActNorm initializes itself from the first training batch (or `initialize(x)`); its flag is saved.
"""

import math
from functools import partial
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
    actnorm_statistics,
    affine_coupling,
    affine_coupling_inverse,
    autocast_dtype,
    coupling_network_forward,
    lu_inverse_weight,
    lu_weight,
    split_channels,
    squeeze,
    unsqueeze,
    without_autocast,
)

__all__ = ["FlowLevel", "FlowModel", "STEP_TENSORS", "levels_for"]


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


# One step's parameters and buffers under the names of its three layers (transforms.py's ActNorm, InvertibleConv1x1,
# AffineCoupling, as the state_dict of a step's nn.ModuleDict names them; also the keys of the per-step layout that
# flows saved before FlowLevel, levels.{i}.{k}.{name}) -> the stacked tensor of FlowLevel that holds them for K steps.
STEP_TENSORS = {
    "actnorm.log_scale": "actnorm_log_scale",  # (K, C)
    "actnorm.bias": "actnorm_bias",  # (K, C)
    "actnorm.initialized": "actnorm_initialized",  # (K,), a buffer
    "invconv.permutation": "invconv_permutation",  # (K, C, C), a buffer
    "invconv.sign_s": "invconv_sign_s",  # (K, C), a buffer
    "invconv.lower": "invconv_lower",  # (K, C, C)
    "invconv.upper": "invconv_upper",  # (K, C, C)
    "invconv.log_s": "invconv_log_s",  # (K, C)
    "coupling.net.0.weight": "coupling_in_weight",  # (K hidden, C_a, 3, 3)
    "coupling.net.0.bias": "coupling_in_bias",  # (K, hidden)
    "coupling.net.2.weight": "coupling_hidden_weight",  # (K hidden, hidden, 1, 1)
    "coupling.net.2.bias": "coupling_hidden_bias",
    "coupling.net.4.weight": "coupling_out_weight",  # (K 2 C_b, hidden, 3, 3), zero-initialized
    "coupling.net.4.bias": "coupling_out_bias",  # (K, 2 C_b)
}
_BUFFERS = ("actnorm.initialized", "invconv.permutation", "invconv.sign_s")
_ACTNORM = ("actnorm.log_scale", "actnorm.bias")  # (1, C, 1, 1) per step, stacked as (K, C)
# The convolution weights are stacked along their output channels, (K out, in, kh, kw): a 4-d tensor, which torch's
# Module.to(memory_format=torch.channels_last) accepts (a 5-d (K, out, in, kh, kw) it rejects)
_CONV_WEIGHTS = ("coupling_in_weight", "coupling_hidden_weight", "coupling_out_weight")
_COUPLING = [name for key, name in STEP_TENSORS.items() if key.startswith("coupling.")]


def _flow_step(num_channels: int, hidden_channels: int) -> nn.ModuleDict:
    """One step of Glow (section 3, Figure 2a) as its three layers: ActNorm -> invertible 1x1 convolution -> affine
    coupling, each initialized as transforms.py does it."""
    return nn.ModuleDict({"actnorm": ActNorm(num_channels), "invconv": InvertibleConv1x1(num_channels),
                          "coupling": AffineCoupling(num_channels, hidden_channels)})  # fmt: skip


class FlowLevel(nn.Module):
    """The K steps of one scale of Glow (section 3, Figure 2a; ActNorm -> invertible 1x1 convolution -> affine
    coupling, K times), each kind of parameter stacked over the steps in one tensor with a first dimension K
    (`STEP_TENSORS`; a convolution's weights along its output channels): 14 tensors per scale, where K separate
    steps have 14 K.

    The same function as the K steps run one after another through transforms.py's layers (`step_layers(k)` gives
    step k as those layers, and the tests compare the two); the parameters start as K such steps built in turn
    would start. Stacked because at a flow's sizes (about 115,000 parameters on MNIST) a training step's time goes
    to operators, not arithmetic, and every parameter tensor costs its own: cast to bf16 under autocast and back in
    the backward pass, gradient accumulation, clipping's norm, Adam's update, zero_grad. A scale's coupling weights
    are cast once, not K times, the optimizer sees 26 tensors instead of 136 (L = 2, K = 6), and no module is
    called per step: a bf16 training step on MNIST (batch 32, hidden 64) about 7-11% faster on one CPU thread
    (in-process interleaved A/B against per-step modules, 2026-12-03), with the same log-likelihood and gradients
    bit for bit.

    Once ActNorm is initialized, ActNorm and the 1x1 convolution of every step run as one convolution
    (`norm_and_conv`): same function, one pass over the data. In training mode an uninitialized level initializes
    each step's ActNorm from the data that reaches it (Glow section 3.1), step after step; the flags are saved.
    """

    def __init__(self, num_channels: int, hidden_channels: int, num_steps: int):
        super().__init__()
        steps = [_flow_step(num_channels, hidden_channels).state_dict() for _ in range(num_steps)]
        for key, name in STEP_TENSORS.items():
            stacked = torch.stack([step[key].reshape(self._step_shape(key, step[key])) for step in steps])
            stacked = stacked.flatten(0, 1) if name in _CONV_WEIGHTS else stacked
            if key in _BUFFERS:
                self.register_buffer(name, stacked)
            else:
                self.register_parameter(name, nn.Parameter(stacked))
        self.num_channels, self.hidden_channels, self.num_steps = num_channels, hidden_channels, num_steps
        self.num_pass = steps[0]["coupling.net.0.weight"].shape[1]  # C_a, the coupling's unchanged half
        self._seen_initialized = False  # a cache of the flags, so training does not read them at every step

    @staticmethod
    def _step_shape(key: str, tensor: torch.Tensor) -> tuple[int, ...]:
        # ActNorm's (1, C, 1, 1) per step is stacked as (K, C); every other tensor keeps its shape
        return (tensor.numel(),) if key in _ACTNORM else tuple(tensor.shape)

    def by_step(self, name: str) -> torch.Tensor:
        """The stacked tensor `name` as (K, per-step shape): a view (the convolution weights unflattened)."""
        tensor = getattr(self, name)
        return tensor.unflatten(0, (self.num_steps, -1)) if name in _CONV_WEIGHTS else tensor

    # -- the per-step layout: K separate steps' layers, as flows saved before FlowLevel stored them ------------

    def per_step_state_dict(self) -> dict[str, torch.Tensor]:
        """This level's tensors under the keys and shapes of K separate steps ({k}.actnorm.log_scale (1, C, 1, 1),
        {k}.invconv.lower, {k}.coupling.net.0.weight, ...: the state_dicts of transforms.py's layers, and the layout
        of hubgen's flows saved before FlowLevel), in that layout's order. Views of this level's tensors."""
        return {f"{k}.{key}": self.by_step(name)[k].reshape(1, -1, 1, 1) if key in _ACTNORM else self.by_step(name)[k]
                for k in range(self.num_steps) for key, name in STEP_TENSORS.items()}  # fmt: skip

    def stack_per_step_keys(self, state_dict: dict, prefix: str) -> None:
        """Rewrites, in place, this level's entries of a state_dict in the per-step layout ({prefix}{k}.{key}, see
        `per_step_state_dict`) into the stacked one ({prefix}actnorm_log_scale, ...), so that flows saved before
        FlowLevel load unchanged. Entries already stacked are left as they are."""
        for key, name in STEP_TENSORS.items():
            old = [f"{prefix}{k}.{key}" for k in range(self.num_steps)]
            if all(o in state_dict for o in old):
                shape = self.by_step(name).shape[1:]
                stacked = torch.stack([state_dict.pop(o).reshape(shape) for o in old])
                state_dict[prefix + name] = stacked.flatten(0, 1) if name in _CONV_WEIGHTS else stacked

    def step_layers(self, k: int) -> nn.ModuleDict:
        """Step k as three separate layers ({"actnorm", "invconv", "coupling"}: transforms.py's ActNorm,
        InvertibleConv1x1, AffineCoupling) holding copies of its tensors: the reference that the stacked computation
        is tested against. The global RNG is left as it was."""
        with torch.random.fork_rng(devices=[]):
            step = _flow_step(self.num_channels, self.hidden_channels).to(self.actnorm_log_scale.dtype)
        prefix = f"{k}."
        step.load_state_dict({key[len(prefix) :]: t.detach().clone() for key, t in self.per_step_state_dict().items()
                              if key.startswith(prefix)})  # fmt: skip
        return step

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.stack_per_step_keys(state_dict, prefix)
        self._seen_initialized = False  # the flags may change: read them again
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- ActNorm's initialization -----------------------------------------------------------------------------

    def is_initialized(self) -> bool:
        if not self._seen_initialized:
            self._seen_initialized = bool(self.actnorm_initialized.all())
        return self._seen_initialized

    def needs_init(self) -> bool:
        """ActNorm initializes itself from this level's next training batch."""
        return self.training and not self.is_initialized()

    def _initialize_step(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initializes step k's ActNorm from x, the data that reaches it, and runs it and the 1x1 convolution as
        two layers, as ActNorm and InvertibleConv1x1 do: (y, their log |det| (B,))."""
        with torch.no_grad():
            log_scale, bias = actnorm_statistics(x)
            self.actnorm_log_scale[k] = log_scale
            self.actnorm_bias[k] = bias
            self.actnorm_initialized[k] = True
        log_a, pixels = self.actnorm_log_scale[k], x.shape[2] * x.shape[3]
        y = x * torch.exp(log_a)[:, None, None] + self.actnorm_bias[k][:, None, None]
        with without_autocast(y):
            w = lu_weight(*(t[k] for t in self._invconv_tensors()))
            y = F.conv2d(y.to(w.dtype), w[:, :, None, None])
        return y, (pixels * log_a.sum()).expand(x.shape[0]) + (pixels * self.invconv_log_s[k].sum()).expand(x.shape[0])

    def _invconv_tensors(self) -> list[torch.Tensor]:
        return [self.invconv_permutation, self.invconv_lower, self.invconv_upper, self.invconv_sign_s,
                self.invconv_log_s]  # fmt: skip

    # -- the bijection ----------------------------------------------------------------------------------------

    def norm_and_conv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ActNorm and the 1x1 convolution of the K steps as K convolutions, built together:

            W (a * x + b) = (W diag(a)) x + W b,   W = P L (U + diag(s)),   per pixel: sum log a + sum log |s|

        Returns the weights (K, C, C), biases (K, C) and log-determinants per pixel (K,). One batched product for
        the K steps instead of K small ones: at batch 32 on 28 x 28 images the ~20 operations that assemble one W
        cost as much as the convolution it feeds (the step's operator count, not its arithmetic, sets the time)."""
        with without_autocast(self.invconv_log_s):  # the bijection's data path in the weights' precision
            w = lu_weight(*self._invconv_tensors())  # (K, C, C)
            log_a, b, log_s = self.actnorm_log_scale, self.actnorm_bias, self.invconv_log_s
            return w * torch.exp(log_a)[:, None, :], (w @ b[:, :, None])[:, :, 0], log_a.sum(1) + log_s.sum(1)

    def _coupling_weights(self, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Each step's six coupling-network tensors. Under autocast, the float32 stacks are cast once to its dtype
        (as autocast would cast each step's tensors: the same values), not once per step."""
        stacks, dtype = [self.by_step(name) for name in _COUPLING], autocast_dtype(x)
        if dtype is not None and stacks[0].dtype == torch.float32:
            stacks = [t.to(dtype) for t in stacks]
        return list(zip(*(t.unbind(0) for t in stacks), strict=True))

    def forward(self, x: torch.Tensor, log_det: torch.Tensor | None = None):
        """x (B, C, H, W) -> (y, log |det dy/dx| (B,)). With `log_det`, the steps' terms are added to it one by
        one (the flow's running sum; the result is that sum)."""
        init, fused = self.needs_init(), None
        nets = self._coupling_weights(x)
        for k in range(self.num_steps):
            if init and not self.actnorm_initialized[k]:
                x, log_det_step = self._initialize_step(k, x)
            else:
                # built after any initialization of this pass: ActNorm's parameters change in place there
                fused = fused or [t.unbind(0) for t in self.norm_and_conv()]
                w, b, per_pixel = (t[k] for t in fused)
                with without_autocast(x):
                    x = F.conv2d(x.to(w.dtype), w[:, :, None, None], b)  # W diag(a) x + W b
                log_det_step = (x.shape[2] * x.shape[3] * per_pixel).expand(x.shape[0])
            x, log_det_coupling = affine_coupling(x, self.num_pass, partial(coupling_network_forward, weights=nets[k]))
            log_det_step = log_det_step + log_det_coupling
            log_det = log_det_step if log_det is None else log_det + log_det_step
        if init:
            self._seen_initialized = True
        return x, log_det

    def inverse(self, y: torch.Tensor):
        """y -> (x, log |det dx/dy| (B,)): the steps backwards, each coupling, 1x1 convolution (by triangular
        solves) and ActNorm inverted."""
        params = self._invconv_tensors()
        nets = self._coupling_weights(y)
        pixels, log_det = y.shape[2] * y.shape[3], None
        for k in reversed(range(self.num_steps)):
            y, ld = affine_coupling_inverse(y, self.num_pass, partial(coupling_network_forward, weights=nets[k]))
            log_a, b = self.actnorm_log_scale[k], self.actnorm_bias[k]
            with without_autocast(y):
                w_inv = lu_inverse_weight(*(p[k] for p in params))
                y = F.conv2d(y.to(w_inv.dtype), w_inv[:, :, None, None])
                y = (y - b[:, None, None]) * torch.exp(-log_a)[:, None, None]
            step = ld - pixels * (log_a.sum() + self.invconv_log_s[k].sum())
            log_det = step if log_det is None else log_det + step
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
            self.levels.append(FlowLevel(c, hidden_channels, steps_per_level))
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
        for level, steps in enumerate(self.levels):  # each a FlowLevel: the scale's K steps
            # (B, 4C, H/2, W/2), stored channels-last: the convolutions run about 1.3x faster that way on CPU
            h = squeeze(h).contiguous(memory_format=torch.channels_last)
            h, log_det = steps(h, log_det)
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
            h, ld = self.levels[level].inverse(h.contiguous(memory_format=torch.channels_last))
            h = unsqueeze(h)
            log_det = log_det + ld
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
        return all(bool(level.actnorm_initialized.all()) for level in self.levels)

    def _fix_state_dict_keys_on_load(self, state_dict) -> None:
        """diffusers' hook on the state_dict read by from_pretrained: checkpoints in the per-step layout (saved
        before FlowLevel) are stacked (`FlowLevel.stack_per_step_keys`); load_state_dict does it in FlowLevel."""
        for i, level in enumerate(self.levels):
            level.stack_per_step_keys(state_dict, f"levels.{i}.")
        super()._fix_state_dict_keys_on_load(state_dict)
