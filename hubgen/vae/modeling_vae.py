"""The VAE: a Gaussian encoder q(z|x) and a Bernoulli, Gaussian or discretized-logistic decoder p(x|z), as a
diffusers model.

Conventions follow diffusers' `AutoencoderKL`: `encode(x).latent_dist` is a diagonal Gaussian with `mean`,
`logvar`, `std` and `sample(generator)`, and `decode(z).sample` holds the decoder's distribution parameters
(the logits of a Bernoulli; the mean of a Gaussian whose log-variance is `decode(z).logvar`; or the location
of a discretized logistic whose log-scale is `decode(z).log_scale`, over `decode(z).num_levels` levels).

Two architectures:
- "mlp": x -> flatten -> hidden_dims -> (mu, log sigma^2), and back (Kingma & Welling 2013, appendix C).
- "conv": one stride-2 4x4 convolution per width in `hidden_dims` (at least two: H -> H / 2^n), a linear map
  to (mu, log sigma^2); the decoder mirrors it with transposed convolutions. Needs `sample_size` divisible
  by 2^n. `conv_widths(sample_size, hidden_dims)` gives the stack `hubgen train vae` builds: its depth
  follows the resolution (down to about 4x4; two stages at 16 px and below, as hubgen's first conv VAE).

Stochastic layers: one (z, the default) or a hierarchy z_1, ..., z_L (`latent_dims`, bottom first; the two-layer
VAE of Burda et al., arXiv:1509.00519, section 5, and of the lecture):

    p(x, z_1, ..., z_L) = p(x | z_1) p(z_1 | z_2) ... p(z_{L-1} | z_L) p(z_L),   p(z_L) = N(0, I)
    q(z_1, ..., z_L | x) = q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1})

Every conditional is a diagonal Gaussian whose mean and log-variance an MLP (`latent_hidden_dims`) computes from the
parent. The image networks (encoder x -> q(z_1 | x), decoder z_1 -> p(x | z_1)) are the one-layer VAE's, so the
hierarchy is an architecture option of this one family rather than a family of its own: the same pipeline, training
script, evaluation (ELBO and IWAE bound, hubgen.vae.losses, over the joint latents), demo and card serve both, and a
one-layer config (latent_dims None) is exactly the model hubgen always had (same config keys, same weights). The
prior the pipeline samples from is the top layer's N(0, I): `top_latent_dim` is its size, and `ancestral_latents`
takes z_L down to z_1.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from ..draws import bernoulli, randn_tensor
from ..errors import UserInputError
from .losses import reparameterize

__all__ = [
    "VAEModel",
    "DiagonalGaussian",
    "EncoderOutput",
    "DecoderOutput",
    "VAEOutput",
    "UpperLatents",
    "DECODER_DISTRIBUTIONS",
    "conv_stages",
    "conv_widths",
]

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "softplus": nn.Softplus}
DECODER_DISTRIBUTIONS = ("bernoulli", "gaussian", "discretized_logistic")
MIN_LOG_SCALE = -7.0  # the discretized logistic's log-scale floor (PixelCNN++'s clamp)
CONV_SIZES = "a multiple of 4 and at least 8 (8, 12, 16, 20, 24, 28, 32, 48, 64, ...)"


def conv_stages(sample_size: int) -> int:
    """Stride-2 stages of the conv stack for a side: halve while the side is even and above 4, at least twice.

    8 -> 2 (2x2), 16 -> 2 (4x4), 28 -> 2 (7x7), 32 -> 3 (4x4), 64 -> 4 (4x4). UserInputError for a side that
    is not a multiple of 4 of at least 8, naming the sizes allowed.
    """
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 8 or sample_size % 4:
        raise UserInputError(
            f"The 'conv' architecture takes square images whose side is {CONV_SIZES}, got {sample_size!r}; "
            "resize the data (for example with --resolution 32) or use --architecture mlp."
        )
    n, side = 0, sample_size
    while side % 2 == 0 and side > 4:
        n, side = n + 1, side // 2
    return max(n, 2)


def conv_widths(sample_size: int, hidden_dims) -> tuple[int, ...]:
    """One width per stride-2 stage for `sample_size` (`conv_stages`): `hidden_dims` as given when it has one
    width per stage, or two widths (first stage, last stage) with the stages between on the geometric sequence
    from the first to the last (32, 128 over three stages: 32, 64, 128)."""
    n = conv_stages(sample_size)
    dims = tuple(int(h) for h in hidden_dims)
    if len(dims) == n:
        return dims
    if len(dims) != 2:
        raise UserInputError(
            f"The 'conv' architecture at {sample_size}x{sample_size} has {n} stride-2 stages: give two "
            f"`hidden_dims` (first and last stage's widths) or {n} (one per stage), got {list(dims)}."
        )
    first, last = dims
    return tuple(round(first * (last / first) ** (i / (n - 1))) for i in range(n))


def _latent_sizes(latent_dim: int, latent_dims) -> tuple[int, ...]:
    """(D_1, ..., D_L) from the config: `latent_dims` when it is given, else (latent_dim,). UserInputError for
    sizes below 1."""
    sizes = (latent_dim,) if latent_dims is None else tuple(latent_dims)
    if not sizes or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in sizes):
        raise UserInputError(
            f"`latent_dims` must be one or more integers >= 1 (bottom layer first), got {latent_dims!r}."
        )
    return sizes


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
    """`sample`: Bernoulli logits, Gaussian means or discretized-logistic locations, (B, C, H, W); `logvar`:
    the Gaussian log-variance or None; `log_scale` and `num_levels`: the discretized logistic's log-scale
    (B, C, H, W) and its number of levels, or None."""

    sample: torch.Tensor
    logvar: torch.Tensor | None = None
    log_scale: torch.Tensor | None = None
    num_levels: int | None = None


@dataclass(frozen=True)
class UpperLatents:
    """The layers above z_1 for given z_1 (hierarchical models): z_2..z_L drawn from q(z_{l+1} | z_l), those
    conditionals q(z_2 | z_1)..q(z_L | z_{L-1}), and the generative conditionals p(z_1 | z_2)..p(z_{L-1} | z_L)
    at the drawn parents. Each is a tuple of L - 1 entries, (N, D_l) rows in z_1's row order.

    A plain dataclass, not a diffusers BaseOutput: under mixed precision accelerate casts a model's outputs to
    float32 by rebuilding every Mapping from one dict, which a BaseOutput whose other fields are not None takes as
    its first field (the latents became a dict). The losses cast these tensors themselves (at_least_float32)."""

    latents: tuple = ()
    posteriors: tuple = ()
    priors: tuple = ()


@dataclass
class VAEOutput(BaseOutput):
    """What one pass x -> z -> p(x|z) produced: the decoder's parameters, the posterior and the z used.

    `latent_dist` is q(z_1 | x) and `latents` z_1 (the only layer of a one-layer model); `upper` holds the
    hierarchy's layers above z_1 (None for one layer)."""

    sample: torch.Tensor = None
    logvar: torch.Tensor | None = None
    latent_dist: DiagonalGaussian = None
    latents: torch.Tensor = None
    log_scale: torch.Tensor | None = None
    num_levels: int | None = None
    upper: UpperLatents | None = None


def _gaussian_mlp(d_in: int, hidden_dims: tuple[int, ...], d_out: int, act) -> nn.Sequential:
    """z_parent (N, d_in) -> hidden_dims -> (mean, logvar) of a diagonal Gaussian over d_out, as (N, 2 d_out)."""
    layers, width = [], d_in
    for h in hidden_dims:
        layers += [nn.Linear(width, h), act()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 2 * d_out))


class VAEModel(ModelMixin, ConfigMixin):
    r"""Variational autoencoder with a diagonal-Gaussian encoder and a factorized decoder.

    Parameters:
        sample_size: image height and width (square images).
        in_channels: image channels (1 for digits).
        latent_dim: dimension of z.
        architecture: "mlp" or "conv".
        hidden_dims: hidden widths of the MLP (encoder order; the decoder reverses them), or for "conv" one
            width per stride-2 stage (at least two; `conv_widths` chooses them by resolution).
        activation: nonlinearity between layers.
        decoder_distribution: "bernoulli" (binarized pixels, logits out), "gaussian" (continuous pixels in
            [0, 1), a mean out and a learned per-pixel log-variance) or "discretized_logistic" (pixels on
            `num_levels` levels k / (L - 1): a location and a log-scale out per sub-pixel, Salimans et al. 2017
            eq. 2 with one logistic per sub-pixel and the edge bins extended to +-inf).
        num_levels: L, the levels of the discretized logistic (256 for 8-bit data); unused by the others.
        latent_dims: sizes (D_1, ..., D_L) of a hierarchy of stochastic layers, bottom first (D_1 is what the
            decoder reads); None (or one size) is the one-layer VAE of size `latent_dim`. With L >= 2 sizes,
            `latent_dim` is set to D_1.
        latent_hidden_dims: widths of the MLPs between stochastic layers, q(z_{l+1} | z_l) and p(z_l | z_{l+1})
            (the IWAE paper's two-layer model uses two layers of 100 tanh units); unused with one layer.
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
        decoder_distribution: Literal["bernoulli", "gaussian", "discretized_logistic"] = "bernoulli",
        num_levels: int = 256,
        latent_dims: tuple[int, ...] | None = None,
        latent_hidden_dims: tuple[int, ...] = (100, 100),
    ):
        super().__init__()
        if architecture not in ("mlp", "conv"):
            raise UserInputError(f"`architecture` must be 'mlp' or 'conv', got {architecture!r}.")
        if activation not in _ACTIVATIONS:
            raise UserInputError(f"`activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
        if decoder_distribution not in DECODER_DISTRIBUTIONS:
            raise UserInputError(
                f"`decoder_distribution` must be one of {DECODER_DISTRIBUTIONS}, got {decoder_distribution!r}."
            )
        if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
            raise UserInputError(f"`num_levels` must be an integer >= 2, got {num_levels!r}.")
        if latent_dim < 1 or sample_size < 1 or in_channels < 1:
            raise UserInputError(
                f"`latent_dim`, `sample_size` and `in_channels` must be >= 1, got {latent_dim}, "
                f"{sample_size}, {in_channels}."
            )
        sizes = _latent_sizes(latent_dim, latent_dims)
        latent_dim = sizes[0]
        if len(sizes) > 1:
            self.register_to_config(latent_dim=latent_dim)  # D_1: what the encoder outputs and the decoder reads
        hidden_dims = tuple(int(h) for h in hidden_dims)
        act = _ACTIVATIONS[activation]
        num_pixels = in_channels * sample_size * sample_size
        # The discretized logistic has two parameters per sub-pixel: location and log-scale.
        out_channels = 2 * in_channels if decoder_distribution == "discretized_logistic" else in_channels

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
            dec += [nn.Linear(width, out_channels * sample_size * sample_size),
                    nn.Unflatten(1, (out_channels, sample_size, sample_size))]  # fmt: skip
            self.decoder = nn.Sequential(*dec)
        else:
            n = len(hidden_dims)
            if n < 2:
                raise UserInputError(
                    f"The 'conv' architecture takes one width per stride-2 stage, at least two `hidden_dims`, "
                    f"got {list(hidden_dims)}."
                )
            if sample_size % 2**n != 0:
                raise UserInputError(
                    f"The 'conv' architecture with {n} stride-2 stages needs `sample_size` divisible by {2**n}, "
                    f"got {sample_size}."
                )
            s = sample_size // 2**n
            widths = (in_channels, *hidden_dims)
            enc = []
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
                enc += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), act()]  # (B, c_out, side / 2, side / 2)
            self.encoder = nn.Sequential(*enc, nn.Flatten())  # (B, c_n * s * s), s = H / 2^n
            self.to_moments = nn.Linear(hidden_dims[-1] * s * s, 2 * latent_dim)
            dec = [nn.Linear(latent_dim, hidden_dims[-1] * s * s), act(), nn.Unflatten(1, (hidden_dims[-1], s, s))]
            widths = (out_channels, *hidden_dims)
            for i in range(n, 0, -1):
                dec.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 4, stride=2, padding=1))  # side x 2
                if i > 1:
                    dec.append(act())
            self.decoder = nn.Sequential(*dec)  # (B, C or 2C, H, W)
        if len(sizes) > 1:
            between = tuple(int(h) for h in latent_hidden_dims)
            if any(h < 1 for h in between):
                raise UserInputError(f"`latent_hidden_dims` must be positive widths, got {list(between)}.")
            # q(z_{l+1} | z_l) and p(z_l | z_{l+1}) for l = 1..L-1 (index l - 1)
            self.posterior_nets = nn.ModuleList(
                _gaussian_mlp(d, between, d_up, act) for d, d_up in zip(sizes[:-1], sizes[1:], strict=True)
            )
            self.prior_nets = nn.ModuleList(
                _gaussian_mlp(d_up, between, d, act) for d, d_up in zip(sizes[:-1], sizes[1:], strict=True)
            )
        if decoder_distribution == "gaussian":
            # One learned log sigma^2 per pixel, shared across z (a common, stable choice for image VAEs).
            self.decoder_logvar = nn.Parameter(torch.full((in_channels, sample_size, sample_size), -2.0))
        else:
            self.decoder_logvar = None

    # -- the stochastic layers ---------------------------------------------------------------------------------

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        """(D_1, ..., D_L): one size for the one-layer VAE."""
        return _latent_sizes(self.config.latent_dim, self.config.latent_dims)

    @property
    def top_latent_dim(self) -> int:
        """D_L, the size of the layer drawn from the prior N(0, I) (the pipeline's `latents`)."""
        return self.latent_sizes[-1]

    def encode_latent(self, z: torch.Tensor, layer: int) -> DiagonalGaussian:
        """q(z_{l+1} | z_l) for z = z_l (N, D_l), l = `layer` in 1..L-1."""
        mean, logvar = self.posterior_nets[layer - 1](z).chunk(2, dim=1)  # (N, D_{l+1}) each
        return DiagonalGaussian(mean, logvar)

    def decode_latent(self, z: torch.Tensor, layer: int) -> DiagonalGaussian:
        """p(z_l | z_{l+1}) for z = z_{l+1} (N, D_{l+1}), l = `layer` in 1..L-1."""
        mean, logvar = self.prior_nets[layer - 1](z).chunk(2, dim=1)  # (N, D_l) each
        return DiagonalGaussian(mean, logvar)

    def encode_upper(self, z1: torch.Tensor, generator=None, sample_posterior: bool = True) -> UpperLatents | None:
        """Up the inference chain from z_1 (N, D_1): z_{l+1} ~ q(z_{l+1} | z_l) (reparameterized, or its mean), and
        p(z_l | z_{l+1}) at each drawn parent. None for a one-layer model (nothing above z_1, no draw)."""
        num_layers = len(self.latent_sizes)
        if num_layers == 1:
            return None
        latents, posteriors, priors, z = [], [], [], z1
        for layer in range(1, num_layers):
            q = self.encode_latent(z, layer)
            z_up = q.sample(generator=generator) if sample_posterior else q.mode()
            latents.append(z_up)
            posteriors.append(q)
            priors.append(self.decode_latent(z_up, layer))
            z = z_up
        return UpperLatents(latents=tuple(latents), posteriors=tuple(posteriors), priors=tuple(priors))

    def ancestral_latents(self, z_top: torch.Tensor, generator=None, sample: bool = True) -> torch.Tensor:
        """Down the generative chain: z_L (N, D_L) -> z_{L-1} ~ p(z_{L-1} | z_L) -> ... -> z_1 (N, D_1), each a
        draw (from `generator`, top layer first) or, with `sample=False`, the conditional mean. A one-layer model
        returns z_top itself and draws nothing."""
        z = z_top
        for layer in range(len(self.latent_sizes) - 1, 0, -1):
            p = self.decode_latent(z, layer)
            z = p.sample(generator=generator) if sample else p.mode()
        return z

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
        """p(x|z): (B, latent_dim) -> logits (Bernoulli), means (Gaussian) or locations (discretized logistic,
        with its log-scale), each (B, C, H, W)."""
        out = self.decoder(z)
        logvar = None if self.decoder_logvar is None else self.decoder_logvar.expand_as(out)
        log_scale = levels = None
        if self.config.decoder_distribution == "gaussian":
            out = torch.sigmoid(out)  # means of pixels in [0, 1)
        elif self.config.decoder_distribution == "discretized_logistic":
            out, log_scale = out.chunk(2, dim=1)  # locations (unconstrained, as PixelCNN++), log-scales
            log_scale, levels = log_scale.clamp(min=MIN_LOG_SCALE), self.config.num_levels
        if not return_dict:
            return (out, logvar) if log_scale is None else (out, log_scale)
        return DecoderOutput(sample=out, logvar=logvar, log_scale=log_scale, num_levels=levels)

    def forward(self, x: torch.Tensor, sample_posterior: bool = True, generator=None, return_dict: bool = True,
                num_samples: int = 1):  # fmt: skip
        """Encode, take z (a reparameterized posterior sample, or the posterior mean), decode.

        `num_samples` k > 1 draws k reparameterized z per image (the IWAE objective's samples): `latents` is then
        (k * B, D), sample-major (row i * B + b is sample i of image b), and the decoder's outputs follow that
        order. A hierarchical model then draws z_2..z_L from q(z_{l+1} | z_l) for every row (`upper`), after z_1.
        Training calls the model through `forward` (not encode/decode) so that a DistributedDataParallel
        wrapper sees the pass and all-reduces the gradients.
        """
        posterior = self.encode(x).latent_dist
        if num_samples > 1:
            mean, logvar = posterior.mean, posterior.logvar
            eps = randn_tensor((num_samples, *mean.shape), generator, mean.device, mean.dtype)  # (k, B, D)
            z = reparameterize(mean, logvar, eps).reshape(num_samples * mean.shape[0], -1)  # (k * B, D)
        else:
            z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        upper = self.encode_upper(z, generator=generator, sample_posterior=sample_posterior or num_samples > 1)
        decoded = self.decode(z)
        out = VAEOutput(sample=decoded.sample, logvar=decoded.logvar, latent_dist=posterior, latents=z,
                        log_scale=decoded.log_scale, num_levels=decoded.num_levels, upper=upper)  # fmt: skip
        return out if return_dict else out.to_tuple()

    def decode_to_images(self, z: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Images in [0, 1] from latents (B, latent_dim).

        `sample=False`: the decoder's mean image E[x|z]: sigmoid(logits) for Bernoulli, the Gaussian mean
        (clamped to [0, 1]), or the exact mean of the discretized logistic over its L levels.
        `sample=True`: pixels drawn from p(x|z) with `generator`: Bernoulli draws (0 or 1), Gaussian draws
        clamped to [0, 1], or discretized-logistic draws on the levels k / (L - 1).
        """
        from .losses import discretized_logistic_mean, discretized_logistic_sample

        out = self.decode(z)
        kind = self.config.decoder_distribution
        if kind == "discretized_logistic":
            fn = discretized_logistic_sample if sample else discretized_logistic_mean
            extra = {"generator": generator} if sample else {}
            return fn(out.sample, out.log_scale, out.num_levels, **extra)
        if kind == "bernoulli":
            p = torch.sigmoid(out.sample)
            return bernoulli(p, generator) if sample else p
        if sample:
            eps = randn_tensor(out.sample.shape, generator, out.sample.device, out.sample.dtype)
            return (out.sample + torch.exp(0.5 * out.logvar) * eps).clamp(0.0, 1.0)
        return out.sample.clamp(0.0, 1.0)
