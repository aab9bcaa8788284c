"""VAEPipeline: sample, reconstruct, interpolate and score images with a trained VAEModel.

from hubgen.vae import VAEPipeline
pipe = VAEPipeline.from_pretrained("path/or/user-repo")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0)).images
"""

import math
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils import BaseOutput

from ..data import binarize, dequantize
from ..errors import UserInputError
from ..pipeline_utils import (
    SafetensorsLoadingMixin,
    check_output_type,
    check_sampling_inputs,
    convert_images,
    draw_latents,
    images_to_tensor,
    seed_or_latent,
)
from .losses import bits_per_dim, elbo, iwae_bound, to_levels
from .modeling_vae import VAEModel

__all__ = ["VAEPipeline", "LikelihoodOutput"]


@dataclass
class LikelihoodOutput(BaseOutput):
    """Per-image scores: `nll_nats` = -L_k(x) (IWAE bound, nats), `neg_elbo_nats`, and `bits_per_dim`."""

    nll_nats: torch.Tensor
    neg_elbo_nats: torch.Tensor
    bits_per_dim: torch.Tensor
    k: int


class VAEPipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    r"""Pipeline for a variational autoencoder (Kingma & Welling, arXiv:1312.6114).

    Components:
        vae ([`VAEModel`]): encoder q(z|x), decoder p(x|z) and prior N(0, I); for a hierarchical VAE also
            q(z_{l+1}|z_l) and p(z_l|z_{l+1}), the prior N(0, I) being over the top layer z_L.

    Latents given to `__call__` and `interpolate` are the top layer's (size `vae.top_latent_dim`, which is
    `latent_dim` for one layer); a hierarchical model takes them down to z_1 through p(z_l|z_{l+1}).
    """

    model_cpu_offload_seq = "vae"

    def __init__(self, vae: VAEModel, pixel_levels: int = 256):
        super().__init__()
        self.register_modules(vae=vae)
        # Grey levels of the training data (256 for 8-bit images, 17 for sklearn digits): the bin width
        # 1/L of uniform dequantization, needed for bits/dim of a Gaussian decoder.
        self.register_to_config(pixel_levels=int(pixel_levels))

    # -- inputs ---------------------------------------------------------------------------------------------

    def _images(self, images, name: str = "images", on_device: bool = True) -> torch.Tensor:
        x = images_to_tensor(images, name, channels=self.vae.config.in_channels)
        self.vae.check_images(x, name)
        if x.min() < 0 or x.max() > 1:
            raise UserInputError(
                f"`{name}` must hold intensities in [0, 1] (or uint8 0..255), got range "
                f"[{x.min().item():.3g}, {x.max().item():.3g}]."
            )
        return x.to(self.device, self.vae.dtype) if on_device else x

    def _latent(self, value) -> torch.Tensor:
        """An int seed -> z ~ N(0, I) from torch.Generator(seed); a tensor (D,) or (1, D) -> itself; an image
        -> the posterior mean of its encoding (up the hierarchy's means to the top layer). D = top_latent_dim."""
        d = self.vae.top_latent_dim
        z = seed_or_latent(value, d)
        if z is not None:
            return z.to(self.device, self.vae.dtype)
        try:
            x = self._images(value, "a/b")
        except ValueError as e:
            raise UserInputError(
                f"Interpolation end points must be int seeds, latents of size {d}, or images: {e}"
            ) from e
        z1 = self.vae.encode(x).latent_dist.mean[:1]
        upper = self.vae.encode_upper(z1, sample_posterior=False)
        return z1 if upper is None else upper.latents[-1]

    # -- sampling -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        sample_pixels: bool = False,
    ):
        r"""Sample images: z ~ N(0, I), then the decoder's mean image E[x|z] (pixel probabilities for a Bernoulli
        decoder), or with `sample_pixels` pixels drawn from p(x|z). A hierarchical model draws z_L ~ N(0, I), then
        z_{L-1} ~ p(z_{L-1}|z_L) down to z_1 (from `generator`, after z_L) and decodes z_1.

        Args:
            batch_size: number of images.
            generator: a torch.Generator (or one per image) making the draw deterministic.
            latents: (batch_size, top_latent_dim) top-layer latents to use instead of drawing them.
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            sample_pixels: draw x ~ p(x|z) (Bernoulli draws; Gaussian draws clamped to [0, 1]; discretized
                logistic draws on the data's levels) from `generator` after z, instead of the mean E[x|z].
        """
        # 1. Check inputs
        d = self.vae.top_latent_dim
        check_sampling_inputs(batch_size, generator, latents, d, output_type, self.device)

        # 2. Draw z ~ p(z) = N(0, I) (the top layer z_L of a hierarchy)
        if latents is None:
            latents = draw_latents(batch_size, d, generator, device=self.device)
        latents = latents.to(self.device, self.vae.dtype)

        # 3. Down the hierarchy z_{l} ~ p(z_l|z_{l+1}) to z_1 (nothing to do for one layer), then decode to the
        # mean image E[x|z_1], or draw x ~ p(x|z_1); with a list, image i's draws come from generator i, after its z
        def draw(z_top, g):
            z1 = self.vae.ancestral_latents(z_top, generator=g)
            return self.vae.decode_to_images(z1, sample=sample_pixels, generator=g)

        draws_per_image = sample_pixels or len(self.vae.latent_sizes) > 1
        if isinstance(generator, list) and draws_per_image:
            images = torch.cat([draw(z[None], g) for z, g in zip(latents, generator, strict=True)])
        else:
            images = draw(latents, generator)

        # 4. Convert
        images = convert_images(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def reconstruct(self, images, sample_posterior: bool = False, generator=None, output_type: str = "pil"):
        """x -> q(z|x) -> E[x|z], with z the posterior mean (or a posterior sample)."""
        check_output_type(output_type)
        x = self._images(images)
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mean
        return convert_images(self.vae.decode_to_images(z), output_type)

    @torch.no_grad()
    def interpolate(self, a, b, steps: int = 8, output_type: str = "pil"):
        """Decode z_t = (1 - t) z_a + t z_b for `steps` values of t from 0 to 1.

        `a` and `b` are int seeds (z drawn from N(0, I) with that seed), latent vectors, or images (their
        posterior means). In a hierarchical model z is the top layer, taken down to z_1 by the conditional means
        E[z_l|z_{l+1}] (no draws, so the strip is smooth).
        """
        if not isinstance(steps, int) or steps < 2:
            raise UserInputError(f"`steps` must be an integer >= 2, got {steps!r}.")
        check_output_type(output_type)
        za, zb = self._latent(a), self._latent(b)
        t = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype)[:, None]  # (steps, 1)
        z = (1 - t) * za + t * zb  # (steps, D_L)
        z1 = self.vae.ancestral_latents(z, sample=False)  # (steps, D_1)
        return convert_images(self.vae.decode_to_images(z1), output_type)

    def likelihood_input(self, images, generator=None, binarize_inputs: bool = True) -> tuple[torch.Tensor, int | None]:
        """Images -> (x as the decoder scores it, L for bits/dim's dequantization term or None): binarized once
        from `generator` for a Bernoulli decoder (unless already binary or `binarize_inputs` is False), dequantized
        once to `pixel_levels` levels for a Gaussian one, snapped to the L levels for a discretized logistic one."""
        x = self._images(images, on_device=False)
        is_binary = bool(((x == 0) | (x == 1)).all())  # asked of the input on the CPU: no device sync
        x = x.to(self.device, self.vae.dtype)
        kind = self.vae.config.decoder_distribution
        if kind == "discretized_logistic":
            return to_levels(x, self.vae.config.num_levels), None
        if kind == "bernoulli":
            return (binarize(x, generator=generator) if binarize_inputs and not is_binary else x), None
        levels = self.config.pixel_levels
        return dequantize(x, levels, generator=generator), levels

    @torch.no_grad()
    def log_likelihood(self, images, k: int = 1000, generator=None, binarize_inputs: bool = True) -> LikelihoodOutput:
        """Score images under the model: IWAE NLL -L_k(x) and -ELBO(x) in nats, and bits/dim.

        For a Bernoulli decoder the images are dynamically binarized first (x ~ Bernoulli(intensity), drawn
        from `generator`) unless they are already binary or `binarize_inputs` is False; for a Gaussian
        decoder they are uniformly dequantized to `pixel_levels` levels L, and both nats include + D ln L (nats of the
        discrete data, as every family reports them; bits/dim = NLL / (D ln 2));
        for a discretized-logistic decoder they are snapped to its L levels k / (L - 1) and scored as they
        are (a discrete likelihood over the L levels: no dequantization, bits/dim = NLL / (D ln 2)).
        D = C*H*W, every sub-pixel.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UserInputError(f"`k` must be an integer >= 1 (importance samples), got {k!r}.")
        x, levels = self.likelihood_input(images, generator=generator, binarize_inputs=binarize_inputs)
        num_dims = x[0].numel()
        nll = -iwae_bound(self.vae, x, k, generator=generator)
        neg_elbo = -elbo(self.vae, x, generator=generator)["elbo"]
        if levels is not None:
            # Dequantized L-level data: -log p(x + u) is a density of the continuous x + u; + D ln L makes it nats of
            # the discrete data (an upper bound on -log P(x) in expectation over u, Theis et al. 2016 section 3.1), the
            # unit every other family's nats are in (the flow's, the Gaussian mixture's)
            nll, neg_elbo = nll + num_dims * math.log(levels), neg_elbo + num_dims * math.log(levels)
        return LikelihoodOutput(nll_nats=nll, neg_elbo_nats=neg_elbo, bits_per_dim=bits_per_dim(nll, num_dims), k=k)
