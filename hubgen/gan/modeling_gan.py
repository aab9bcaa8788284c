"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, arXiv:1511.06434), as diffusers models.

The DCGAN guidelines (section 3), as built here:
- no pooling: the discriminator downsamples with strided convolutions, the generator upsamples with
  fractionally-strided (transposed) convolutions;
- batch norm in both networks (configurable), except on the generator's output and the discriminator's input
  layer;
- ReLU in the generator with a Tanh output (images in [-1, 1]), LeakyReLU(0.2) in the discriminator;
- no fully connected hidden layers: z (B, D) enters as a (B, D, 1, 1) map and a transposed convolution with
  an s x s kernel projects it to the first s x s feature map ("project and reshape"), and the discriminator
  ends in an s x s convolution to one logit.

For an image side H divisible by 4, s = H / 4: 28x28 images use 7x7 first/last kernels, 8x8 images 2x2.

`extra_layers` (the "n_extra_layers" of the DCGAN code in Arjovsky et al.'s WGAN release) adds that many
stride-1 3x3 convolution + batch norm + activation layers at every hidden resolution of both networks: a deeper
generator and discriminator at the same resolutions, still all-convolutional. 0 is the plain DCGAN above.
"""

import torch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..errors import UserInputError

__all__ = ["Generator", "Discriminator"]


def _check_size(sample_size: int, in_channels: int, base_channels: int, extra_layers: int = 0) -> int:
    if sample_size < 4 or sample_size % 4:
        raise UserInputError(f"`sample_size` must be a multiple of 4 (28 and 8 are), got {sample_size}.")
    if in_channels < 1 or base_channels < 1:
        raise UserInputError(f"`in_channels` and `base_channels` must be >= 1, got {in_channels}, {base_channels}.")
    if isinstance(extra_layers, bool) or not isinstance(extra_layers, int) or extra_layers < 0:
        raise UserInputError(f"`extra_layers` must be an integer >= 0, got {extra_layers!r}.")
    return sample_size // 4


def _extra(num_layers: int, channels: int, batch_norm: bool, activation) -> list[nn.Module]:
    """`num_layers` x (3x3 stride-1 conv -> batch norm -> activation), same resolution and width."""
    layers = []
    for _ in range(num_layers):
        layers += [nn.Conv2d(channels, channels, 3, 1, 1, bias=not batch_norm),
                   nn.BatchNorm2d(channels) if batch_norm else nn.Identity(), activation()]  # fmt: skip
    return layers


class Generator(ModelMixin, ConfigMixin):
    r"""G: z ~ N(0, I) of size `latent_dim` -> an image in [-1, 1] of shape (in_channels, sample_size, sample_size)."""

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 64,
        sample_size: int = 28,
        in_channels: int = 1,
        base_channels: int = 64,
        batch_norm: bool = True,
        extra_layers: int = 0,
    ):
        super().__init__()
        if latent_dim < 1:
            raise UserInputError(f"`latent_dim` must be >= 1, got {latent_dim}.")
        s = _check_size(sample_size, in_channels, base_channels, extra_layers)
        c = base_channels

        def norm(ch):
            return nn.BatchNorm2d(ch) if batch_norm else nn.Identity()

        def relu():
            return nn.ReLU(True)

        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * c, s, 1, 0, bias=not batch_norm),  # (B, 2c, s, s)
            norm(2 * c), nn.ReLU(True),
            *_extra(extra_layers, 2 * c, batch_norm, relu),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=not batch_norm), norm(c), nn.ReLU(True),  # (B, c, 2s, 2s)
            *_extra(extra_layers, c, batch_norm, relu),
            nn.ConvTranspose2d(c, in_channels, 4, 2, 1), nn.Tanh(),  # (B, C, 4s, 4s)
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, H, W) in [-1, 1]."""
        return self.net(z[:, :, None, None])  # (B, D) -> (B, D, 1, 1) -> image


class Discriminator(ModelMixin, ConfigMixin):
    r"""D: an image in [-1, 1] -> one logit l(x) per image, D(x) = sigmoid(l(x))."""

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        base_channels: int = 64,
        batch_norm: bool = True,
        extra_layers: int = 0,
    ):
        super().__init__()
        s = _check_size(sample_size, in_channels, base_channels, extra_layers)
        c = base_channels

        def leaky():
            return nn.LeakyReLU(0.2, True)

        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c, 4, 2, 1), nn.LeakyReLU(0.2, True),  # (B, c, 2s, 2s)
            *_extra(extra_layers, c, batch_norm, leaky),
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=not batch_norm),
            nn.BatchNorm2d(2 * c) if batch_norm else nn.Identity(), nn.LeakyReLU(0.2, True),  # (B, 2c, s, s)
            *_extra(extra_layers, 2 * c, batch_norm, leaky),
            nn.Conv2d(2 * c, 1, s, 1, 0),  # (B, 1, 1, 1)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> logits (B,)."""
        return self.net(x).flatten()  # (B, 1, 1, 1) -> (B,)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialization (section 4): conv weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
