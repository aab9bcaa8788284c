"""The VAE: a Gaussian encoder q(z|x) and a Bernoulli or Gaussian decoder p(x|z), as a diffusers model.

Conventions follow diffusers' `AutoencoderKL`: `encode(x).latent_dist` is a diagonal Gaussian with `mean`,
`logvar`, `std` and `sample(generator)`, and `decode(z).sample` holds the decoder's distribution parameters
(the logits of a Bernoulli, or the mean of a Gaussian whose log-variance is `decode(z).logvar`).

Two architectures:
- "mlp": x -> flatten -> hidden_dims -> (mu, log sigma^2), and back (Kingma & Welling 2013, appendix C).
- "conv": two stride-2 convolutions (H -> H/4), a linear map to (mu, log sigma^2); the decoder mirrors it
  with transposed convolutions. Needs `sample_size` divisible by 4 (28 and 8 are).
"""

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from ..errors import UserInputError
from .losses import reparameterize

__all__ = ["VAEModel", "DiagonalGaussian", "EncoderOutput", "DecoderOutput", "VAEOutput"]

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "softplus": nn.Softplus}


class DiagonalGaussian:
    """q(z|x) = N(mean, diag exp(logvar)).

    diffusers' DiagonalGaussianDistribution is built for (B, C, H, W) latents (it sums its KL over dims
    1, 2, 3); this one is for flat (B, D) latents and samples through `reparameterize`.
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return reparameterize(self.mean, self.logvar, generator=generator)

    def mode(self) -> torch.Tensor:
        return self.mean


@dataclass
class EncoderOutput(BaseOutput):
    latent_dist: DiagonalGaussian


@dataclass
class DecoderOutput(BaseOutput):
    """`sample`: Bernoulli logits or Gaussian means, (B, C, H, W); `logvar`: Gaussian log-variance or None."""

    sample: torch.Tensor
    logvar: torch.Tensor | None = None


@dataclass
class VAEOutput(BaseOutput):
    """What one pass x -> z -> p(x|z) produced: the decoder's parameters, the posterior and the z used."""

    sample: torch.Tensor = None
    logvar: torch.Tensor | None = None
    latent_dist: DiagonalGaussian = None
    latents: torch.Tensor = None


class VAEModel(ModelMixin, ConfigMixin):
    r"""Variational autoencoder with a diagonal-Gaussian encoder and a factorized decoder.

    Parameters:
        sample_size: image height and width (square images).
        in_channels: image channels (1 for digits).
        latent_dim: dimension of z.
        architecture: "mlp" or "conv".
        hidden_dims: hidden widths of the MLP (encoder order; the decoder reverses them), or the two
            convolution widths for "conv".
        activation: nonlinearity between layers.
        decoder_distribution: "bernoulli" (binarized pixels, logits out) or "gaussian" (continuous pixels in
            [0, 1), a mean out and a learned per-pixel log-variance).
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        latent_dim: int = 20,
        architecture: Literal["mlp", "conv"] = "mlp",
        hidden_dims: tuple[int, ...] = (400,),
        activation: Literal["relu", "elu", "tanh", "softplus"] = "relu",
        decoder_distribution: Literal["bernoulli", "gaussian"] = "bernoulli",
    ):
        super().__init__()
        if architecture not in ("mlp", "conv"):
            raise UserInputError(f"`architecture` must be 'mlp' or 'conv', got {architecture!r}.")
        if activation not in _ACTIVATIONS:
            raise UserInputError(f"`activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
        if decoder_distribution not in ("bernoulli", "gaussian"):
            raise UserInputError(
                f"`decoder_distribution` must be 'bernoulli' or 'gaussian', got {decoder_distribution!r}."
            )
        if latent_dim < 1 or sample_size < 1 or in_channels < 1:
            raise UserInputError(
                f"`latent_dim`, `sample_size` and `in_channels` must be >= 1, got {latent_dim}, "
                f"{sample_size}, {in_channels}."
            )
        hidden_dims = tuple(int(h) for h in hidden_dims)
        act = _ACTIVATIONS[activation]
        num_pixels = in_channels * sample_size * sample_size

        if architecture == "mlp":
            if len(hidden_dims) < 1:
                raise UserInputError("`hidden_dims` needs at least one width for the 'mlp' architecture.")
            enc, width = [nn.Flatten()], num_pixels
            for h in hidden_dims:
                enc += [nn.Linear(width, h), act()]
                width = h
            self.encoder = nn.Sequential(*enc)
            self.to_moments = nn.Linear(width, 2 * latent_dim)
            dec, width = [], latent_dim
            for h in reversed(hidden_dims):
                dec += [nn.Linear(width, h), act()]
                width = h
            dec += [nn.Linear(width, num_pixels), nn.Unflatten(1, (in_channels, sample_size, sample_size))]
            self.decoder = nn.Sequential(*dec)
        else:
            if sample_size % 4 != 0:
                raise UserInputError(f"The 'conv' architecture needs `sample_size` divisible by 4, got {sample_size}.")
            if len(hidden_dims) != 2:
                raise UserInputError(f"The 'conv' architecture takes two `hidden_dims`, got {list(hidden_dims)}.")
            c1, c2 = hidden_dims
            s = sample_size // 4
            self.encoder = nn.Sequential(
                nn.Conv2d(in_channels, c1, 4, stride=2, padding=1),
                act(),  # (B, c1, H/2, W/2)
                nn.Conv2d(c1, c2, 4, stride=2, padding=1),
                act(),  # (B, c2, H/4, W/4)
                nn.Flatten(),  # (B, c2 * H/4 * W/4)
            )
            self.to_moments = nn.Linear(c2 * s * s, 2 * latent_dim)
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, c2 * s * s),
                act(),
                nn.Unflatten(1, (c2, s, s)),  # (B, c2, H/4, W/4)
                nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
                act(),  # (B, c1, H/2, W/2)
                nn.ConvTranspose2d(c1, in_channels, 4, stride=2, padding=1),  # (B, C, H, W)
            )
        if decoder_distribution == "gaussian":
            # One learned log sigma^2 per pixel, shared across z (a common, stable choice for image VAEs).
            self.decoder_logvar = nn.Parameter(torch.full((in_channels, sample_size, sample_size), -2.0))
        else:
            self.decoder_logvar = None

    def check_images(self, x: torch.Tensor, name: str = "images") -> None:
        cfg = self.config
        expected = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise UserInputError(
                f"`{name}` must have shape (batch, {', '.join(map(str, expected))}) for this model, "
                f"got {tuple(x.shape)}."
            )

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """q(z|x): (B, C, H, W) -> N(mean, diag exp(logvar)) with mean, logvar of shape (B, latent_dim)."""
        mean, logvar = self.to_moments(self.encoder(x)).chunk(2, dim=1)  # (B, D), (B, D)
        dist = DiagonalGaussian(mean, logvar)
        return EncoderOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """p(x|z): (B, latent_dim) -> logits (Bernoulli) or means (Gaussian), (B, C, H, W)."""
        out = self.decoder(z)
        logvar = None if self.decoder_logvar is None else self.decoder_logvar.expand_as(out)
        if self.config.decoder_distribution == "gaussian":
            out = torch.sigmoid(out)  # means of pixels in [0, 1)
        return DecoderOutput(sample=out, logvar=logvar) if return_dict else (out, logvar)

    def forward(self, x: torch.Tensor, sample_posterior: bool = True, generator=None, return_dict: bool = True):
        """Encode, take z (a reparameterized posterior sample, or the posterior mean), decode.

        Training calls the model through `forward` (not encode/decode) so that a DistributedDataParallel
        wrapper sees the pass and all-reduces the gradients.
        """
        posterior = self.encode(x).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        decoded = self.decode(z)
        out = VAEOutput(sample=decoded.sample, logvar=decoded.logvar, latent_dist=posterior, latents=z)
        return out if return_dict else out.to_tuple()

    def decode_to_images(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image in [0, 1]: sigmoid(logits) for Bernoulli, the Gaussian mean otherwise."""
        out = self.decode(z).sample
        if self.config.decoder_distribution == "bernoulli":
            return torch.sigmoid(out)
        return out.clamp(0.0, 1.0)
