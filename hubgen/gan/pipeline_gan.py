"""GANPipeline: sample, interpolate and truncate with a trained DCGAN generator.

from hubgen.gan import GANPipeline
pipe = GANPipeline.from_pretrained("path/or/user-repo")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0), truncation=0.7).images
"""

import math

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from ..data import to_intensities
from ..draws import rand_tensor
from ..errors import UserInputError
from ..pipeline_utils import (
    SafetensorsLoadingMixin,
    check_output_type,
    check_sampling_inputs,
    convert_images,
    draw_latents,
    seed_or_latent,
)
from .modeling_gan import Generator

__all__ = ["GANPipeline", "slerp", "truncated_normal"]


def truncated_normal(shape, truncation: float, generator=None, device=None) -> torch.Tensor:
    """z ~ N(0, I) restricted to |z_i| <= truncation (the truncation trick, Brock et al. 2019, arXiv:1809.11096).

    Sampled exactly by the inverse CDF: u ~ U(Phi(-t), Phi(t)), z = Phi^{-1}(u), one uniform draw per entry.
    """
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = normal.cdf(torch.tensor(-float(truncation)))
    u = lo + (1 - 2 * lo) * rand_tensor(shape, generator, device)  # drawn on the generator's device (hubgen.draws)
    return normal.icdf(u)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016, arXiv:1609.04468), for Gaussian latents:

        slerp(a, b; t) = sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b,  cos omega = <a, b> / |a||b|

    Linear interpolation when a and b are (nearly) parallel. a, b: (D,) or (1, D); t: (T,) -> (T, D).
    """
    a, b, t = a.reshape(1, -1), b.reshape(1, -1), t.reshape(-1, 1)
    cos = (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


class GANPipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    r"""Pipeline for a DCGAN generator (Goodfellow et al. 2014; Radford et al. 2016).

    Components:
        generator ([`Generator`]): z ~ N(0, I) -> image in [-1, 1]; saved with its EMA weights when trained by hubgen.
    """

    model_cpu_offload_seq = "generator"

    def __init__(self, generator: Generator):
        super().__init__()
        # Inference: batch norm uses its running statistics, so an image does not depend on its batch-mates.
        self.register_modules(generator=generator.eval())

    def _latent(self, value) -> torch.Tensor:
        d = self.generator.config.latent_dim
        z = seed_or_latent(value, d)
        if z is None:
            raise UserInputError(f"Interpolation end points must be int seeds or latents of size {d}, got {value!r}.")
        return z

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        images = self.generator(z.to(self.device, self.generator.dtype))
        return to_intensities(images.float())  # [-1, 1] -> [0, 1]

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        truncation: float | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        r"""Sample images G(z), z ~ N(0, I) (or a normal truncated to |z_i| <= `truncation`).

        Args:
            batch_size: number of images.
            generator: a torch.Generator (or one per image) making the draw deterministic.
            latents: (batch_size, latent_dim) latents to use instead of drawing them.
            truncation: None for the full prior, or t > 0 to resample every coordinate into [-t, t]: smaller t
                trades diversity for fidelity.
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
        """
        # 1. Check inputs
        d = self.generator.config.latent_dim
        check_sampling_inputs(batch_size, generator, latents, d, output_type, self.device)
        if truncation is not None and not (
            isinstance(truncation, (int, float)) and 0 < truncation and math.isfinite(truncation)
        ):
            raise UserInputError(f"`truncation` must be None or a positive number, got {truncation!r}.")

        # 2. Draw z ~ N(0, I), or from the normal truncated to [-truncation, truncation]
        if latents is None:
            sample = None if truncation is None else (lambda shape, g, dev: truncated_normal(shape, truncation, g, dev))
            latents = draw_latents(batch_size, d, generator, sample, self.device)

        # 3. Generate, 4. convert
        images = convert_images(self._decode(latents), output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def interpolate(self, a, b, steps: int = 8, output_type: str = "pil"):
        """Images along the great circle between the latents of `a` and `b` (int seeds or latent vectors)."""
        if not isinstance(steps, int) or steps < 2:
            raise UserInputError(f"`steps` must be an integer >= 2, got {steps!r}.")
        check_output_type(output_type)
        z = slerp(self._latent(a), self._latent(b), torch.linspace(0, 1, steps))  # (steps, D)
        return convert_images(self._decode(z), output_type)
