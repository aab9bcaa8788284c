"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, arXiv:1511.06434), as diffusers models.

The DCGAN guidelines (section 3), as built here:
- no pooling: the discriminator downsamples with strided convolutions, the generator upsamples with
  fractionally-strided (transposed) convolutions;
- batch norm in both networks (configurable), except on the generator's output and the discriminator's input
  layer;
- ReLU in the generator with a Tanh output (images in [-1, 1]), LeakyReLU(0.2) in the discriminator;
- no fully connected hidden layers: z (B, D) enters as a (B, D, 1, 1) map and a transposed convolution projects
  it to the first feature map ("project and reshape"), and the discriminator ends in a convolution to one logit.

Two architectures (`architecture`), both channel-agnostic (grey C = 1 or RGB C = 3):

- "dcgan": the paper's 64x64 generator (its Figure 1) for a side S in DCGAN_SIZES = (32, 64, 128): z is
  projected to a 4x4 map of c * 2^(n-1) channels (c = `base_channels`, the "ngf" of the reference code), then
  n = log2(S / 4) stride-2 4x4 transposed convolutions double the side and halve the width, the last one to C
  channels: for 64x64, 4x4x8c -> 8x8x4c -> 16x16x2c -> 32x32xc -> 64x64xC (c = 128 in the paper, 64 in the
  PyTorch reference; 32x32 takes one stage fewer, 128x128 one more). The discriminator mirrors it: stride-2 4x4
  convolutions from SxSxC up to 4x4 with c * 2^(n-1) channels, then a 4x4 convolution to one logit.
- "small": two upsampling stages for small images, any side S divisible by 4: a transposed convolution with an
  s x s kernel (s = S / 4) projects z to s x s x 2c, then two stride-2 stages give 2s x 2s x c and S x S x C;
  28x28 images use 7x7 first/last kernels, 8x8 images 2x2. This is the default of the class (models saved
  before the option load as they were); the training script picks "dcgan" for 32, 64 and 128 px.

`extra_layers` (the "n_extra_layers" of the DCGAN code in Arjovsky et al.'s WGAN release) adds that many
stride-1 3x3 convolution + batch norm + activation layers at every hidden resolution of both networks: a deeper
generator and discriminator at the same resolutions, still all-convolutional. 0 is the plain DCGAN above.
"""

import torch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..errors import UserInputError

__all__ = [
    "Generator",
    "Discriminator",
    "ARCHITECTURES",
    "DCGAN_SIZES",
    "architecture_for",
    "check_size",
    "allowed_sizes",
]

ARCHITECTURES = ("small", "dcgan")
DCGAN_SIZES = (32, 64, 128)  # the paper's 64x64 architecture, one stride-2 stage fewer or more


def allowed_sizes(architecture: str | None = None) -> str:
    """The image sides an architecture (None: either) takes, in words for an error message."""
    dcgan = "32, 64 or 128 (the DCGAN paper's architecture)"
    small = "multiple of 4 (the small two-stage generator: 8, 12, ..., 28, ...)"
    return {"dcgan": dcgan, "small": f"a {small}"}.get(architecture, f"{dcgan} or another {small}")


def architecture_for(sample_size: int) -> str:
    """The architecture the training script builds for a side: "dcgan" for DCGAN_SIZES, else "small"
    (UserInputError, naming the allowed sides, for a side neither takes)."""
    if sample_size in DCGAN_SIZES:
        return "dcgan"
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 4 or sample_size % 4:
        raise UserInputError(f"The DCGAN takes square images of side {allowed_sizes()}; got {sample_size}.")
    return "small"


def check_size(sample_size: int, architecture: str) -> int:
    """The number of stride-2 stages of `architecture` for a side of `sample_size` (UserInputError if none)."""
    if architecture not in ARCHITECTURES:
        raise UserInputError(f"`architecture` must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}.")
    if architecture == "dcgan":
        if sample_size not in DCGAN_SIZES:
            raise UserInputError(f"The 'dcgan' architecture takes images of side {allowed_sizes('dcgan')}, "
                                 f"got {sample_size}.")  # fmt: skip
        return (sample_size // 4).bit_length() - 1  # log2(S / 4)
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 4 or sample_size % 4:
        raise UserInputError(f"The 'small' architecture takes images of side {allowed_sizes('small')}, "
                             f"got {sample_size}.")  # fmt: skip
    return 2


def _check_widths(in_channels: int, base_channels: int, extra_layers: int) -> None:
    if in_channels < 1 or base_channels < 1:
        raise UserInputError(f"`in_channels` and `base_channels` must be >= 1, got {in_channels}, {base_channels}.")
    if isinstance(extra_layers, bool) or not isinstance(extra_layers, int) or extra_layers < 0:
        raise UserInputError(f"`extra_layers` must be an integer >= 0, got {extra_layers!r}.")


def _extra(num_layers: int, channels: int, batch_norm: bool, activation) -> list[nn.Module]:
    """`num_layers` x (3x3 stride-1 conv -> batch norm -> activation), same resolution and width."""
    layers = []
    for _ in range(num_layers):
        layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm),
                   nn.BatchNorm2d(channels) if batch_norm else nn.Identity(), activation()]  # fmt: skip
    return layers


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class Generator(ModelMixin, ConfigMixin):
    r"""G: z ~ N(0, I) of size `latent_dim` -> an image in [-1, 1] of shape (in_channels, sample_size, sample_size).

    `architecture`: "small" (two stages, any side divisible by 4) or "dcgan" (the paper's 64x64 generator, for
    sides 32, 64 and 128); see the module docstring.
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 64,
        sample_size: int = 28,
        in_channels: int = 1,
        base_channels: int = 64,
        batch_norm: bool = True,
        extra_layers: int = 0,
        architecture: str = "small",
    ):
        super().__init__()
        if latent_dim < 1:
            raise UserInputError(f"`latent_dim` must be >= 1, got {latent_dim}.")
        stages = check_size(sample_size, architecture)
        _check_widths(in_channels, base_channels, extra_layers)
        c = base_channels

        def relu():
            return nn.ReLU(True)

        if architecture == "small":
            s = sample_size // 4
            self.net = nn.Sequential(
                nn.ConvTranspose2d(latent_dim, 2 * c, s, 1, 0, bias=not batch_norm),  # (B, 2c, s, s)
                _norm(2 * c, batch_norm), nn.ReLU(True),
                *_extra(extra_layers, 2 * c, batch_norm, relu),
                nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=not batch_norm), _norm(c, batch_norm), nn.ReLU(True),
                *_extra(extra_layers, c, batch_norm, relu),  # (B, c, 2s, 2s)
                nn.ConvTranspose2d(c, in_channels, 4, 2, 1), nn.Tanh(),  # (B, C, 4s, 4s)
            )  # fmt: skip
            return
        # "dcgan": project z to 4x4 x c 2^(n-1), then n stride-2 stages (the paper's Figure 1 for n = 4)
        width = c * 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=not batch_norm),  # (B, c 2^(n-1), 4, 4)
                  _norm(width, batch_norm), nn.ReLU(True), *_extra(extra_layers, width, batch_norm, relu)]  # fmt: skip
        for _ in range(stages - 1):  # 4 -> 8 -> ... -> S/2: double the side, halve the width
            width //= 2
            layers += [nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=not batch_norm), _norm(width, batch_norm),
                       nn.ReLU(True), *_extra(extra_layers, width, batch_norm, relu)]  # fmt: skip
        layers += [nn.ConvTranspose2d(width, in_channels, 4, 2, 1), nn.Tanh()]  # (B, C, S, S)
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, H, W) in [-1, 1]."""
        return self.net(z[:, :, None, None])  # (B, D) -> (B, D, 1, 1) -> image


class Discriminator(ModelMixin, ConfigMixin):
    r"""D: an image in [-1, 1] -> one logit l(x) per image, D(x) = sigmoid(l(x)). It mirrors the generator of
    the same `architecture`; `spectral_norm` normalizes every convolution's weight by its spectral norm."""

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        base_channels: int = 64,
        batch_norm: bool = True,
        extra_layers: int = 0,
        architecture: str = "small",
        spectral_norm: bool = False,
    ):
        super().__init__()
        stages = check_size(sample_size, architecture)
        _check_widths(in_channels, base_channels, extra_layers)
        c = base_channels
        self._build(sample_size, in_channels, c, batch_norm, extra_layers, architecture, stages)
        if spectral_norm:
            # Spectral normalization (Miyato et al. 2018, arXiv:1802.05957): every convolution's weight, reshaped to
            # (out, in * k * k), is divided by its largest singular value, estimated by one power iteration per
            # training forward pass (torch's parametrization, eq. 12 of the paper); D's layers are then 1-Lipschitz
            # in that reshaped sense, whatever the learning rate does to the raw weights.
            for module in self.net:
                if isinstance(module, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(module)

    def _build(self, sample_size, in_channels, c, batch_norm, extra_layers, architecture, stages):
        def leaky():
            return nn.LeakyReLU(0.2, True)

        if architecture == "small":
            s = sample_size // 4
            self.net = nn.Sequential(
                nn.Conv2d(in_channels, c, 4, 2, 1), nn.LeakyReLU(0.2, True),  # (B, c, 2s, 2s)
                *_extra(extra_layers, c, batch_norm, leaky),
                nn.Conv2d(c, 2 * c, 4, 2, 1, bias=not batch_norm),
                _norm(2 * c, batch_norm), nn.LeakyReLU(0.2, True),  # (B, 2c, s, s)
                *_extra(extra_layers, 2 * c, batch_norm, leaky),
                nn.Conv2d(2 * c, 1, s, 1, 0),  # (B, 1, 1, 1)
            )  # fmt: skip
            return
        # "dcgan": S -> S/2 (no batch norm on the input layer) -> ... -> 4x4 x c 2^(n-1) -> one logit
        width = c
        layers = [
            nn.Conv2d(in_channels, c, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            *_extra(extra_layers, c, batch_norm, leaky),
        ]
        for _ in range(stages - 1):
            layers += [nn.Conv2d(width, 2 * width, 4, 2, 1, bias=not batch_norm), _norm(2 * width, batch_norm),
                       nn.LeakyReLU(0.2, True), *_extra(extra_layers, 2 * width, batch_norm, leaky)]  # fmt: skip
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0)]  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> logits (B,)."""
        return self.net(x).flatten()  # (B, 1, 1, 1) -> (B,)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialization (section 4): conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0. A
    spectrally normalized weight is initialized through its raw tensor (`module.weight` is then computed from it)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        parametrized = nn.utils.parametrize.is_parametrized(module, "weight")
        nn.init.normal_(module.parametrizations.weight.original if parametrized else module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
