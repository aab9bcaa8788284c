"""FlowPipeline: sample with a temperature, score images in bits/dim, and run the image -> z -> image round trip.

from hubgen.flow import FlowPipeline
pipe = FlowPipeline.from_pretrained("path/or/user-repo")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0), temperature=0.7).images
bits = pipe.log_likelihood(images).bits_per_dim
"""

import copy
import math
import warnings
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils import BaseOutput

from ..errors import UserInputError
from ..pipeline_utils import (
    SafetensorsLoadingMixin,
    check_output_type,
    check_sampling_inputs,
    convert_images,
    draw_latents,
    images_to_tensor,
)
from .modeling_flow import FlowModel

__all__ = ["FlowPipeline", "FlowLikelihoodOutput", "check_temperature"]

MAX_TEMPERATURE = 2.0


@dataclass
class FlowLikelihoodOutput(BaseOutput):
    """Per-image scores of the discrete images: `bits_per_dim` and `nll_nats` = -log p(x) + log q(u|k) + D ln L,
    for one dequantization draw u per image (`dequantization` says which kind). In expectation over u both
    upper-bound -log P(k): the exact density of dequantized data bounds the discrete likelihood."""

    bits_per_dim: torch.Tensor
    nll_nats: torch.Tensor
    dequantization: str


def check_temperature(temperature) -> float:
    """A temperature T in [0, 2] (z ~ N(0, T^2 I)); else ValueError."""
    ok = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not ok or not math.isfinite(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise UserInputError(f"`temperature` must be a number in [0, {MAX_TEMPERATURE:g}], got {temperature!r}.")
    return float(temperature)


class FlowPipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    r"""Pipeline for a multi-scale flow (Dinh et al. arXiv:1605.08803; Kingma & Dhariwal arXiv:1807.03039).

    Components:
        flow ([`FlowModel`]): the bijection x <-> z with exact log-determinant, its dequantization and priors.
    """

    model_cpu_offload_seq = "flow"

    def __init__(self, flow: FlowModel):
        super().__init__()
        # Inference: an ActNorm that was never initialized must not initialize itself from user images.
        self.register_modules(flow=flow.eval())

    def _images(self, images, name: str = "images") -> torch.Tensor:
        x = images_to_tensor(images, name, channels=self.flow.config.in_channels)
        self.flow.check_images(x, name)
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise UserInputError(
                f"`{name}` must hold intensities in [0, 1] (or uint8 0..255), got range "
                f"[{x.min().item():.3g}, {x.max().item():.3g}]."
            )
        return x.to(self.device, self.flow.dtype)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        temperature: float = 1.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        r"""Sample images x = f^-1(T eps), eps ~ N(0, I), shown at the intensity of their grey level.

        Args:
            batch_size: number of images.
            generator: a torch.Generator (or one per image) making the draw deterministic.
            temperature: T in [0, 2]; z ~ N(0, T^2 I). T < 1 (Glow uses 0.7) trades diversity for cleaner
                samples; T = 1 samples the model's density.
            latents: (batch_size, D) standard normal draws eps to use instead of drawing them (scaled by T).
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
        """
        # 1. Check inputs
        d = self.flow.num_dims
        check_sampling_inputs(batch_size, generator, latents, d, output_type, self.device)
        temperature = check_temperature(temperature)

        # 2. Draw eps ~ N(0, I); z = T eps
        if latents is None:
            latents = draw_latents(batch_size, d, generator, device=self.device)
        z = temperature * latents.to(self.device, self.flow.dtype)

        # 3. Invert the flow, 4. quantize to the data's grey levels and convert
        images = self.decode(z, output_type="pt")
        images = convert_images(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def encode(self, images, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (intensities in [0, 1]) -> z = f(x) (B, D), x = (k + u) / L dequantized with `generator`."""
        x, _ = self.flow.dequantize(self._images(images), generator)
        return self.flow(x)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor, output_type: str = "pt"):
        """z (B, D) -> images: x = f^-1(z), shown at the intensity of its grey level floor(x L) / (L - 1)."""
        check_output_type(output_type)
        d = self.flow.num_dims
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != d:
            raise UserInputError(f"`z` must be a tensor of shape (B, {d}), got {getattr(z, 'shape', type(z))}.")
        x, _ = self.flow.inverse(z.to(self.device, self.flow.dtype))
        bad = ~torch.isfinite(x.flatten(1)).all(1)
        if bad.any():
            # A z far in the tail can overflow the inverse couplings (x_b = (y_b - t) / s with s near 0) in
            # float32: invert those rows again in float64, on a copy so concurrent callers are not affected.
            flow64 = copy.deepcopy(self.flow).double()
            x = x.double()
            x[bad] = flow64.inverse(z[bad].to(self.device, torch.float64))[0]
            still = ~torch.isfinite(x.flatten(1)).all(1)
            if still.any():
                warnings.warn(
                    f"{int(still.sum())} of {len(z)} samples overflow even in float64; shown as 0.", stacklevel=2
                )
                x = torch.nan_to_num(x, nan=0.0)
        return convert_images(self.flow.to_intensities(x).float(), output_type)

    @torch.no_grad()
    def log_likelihood(self, images, generator: torch.Generator | None = None) -> FlowLikelihoodOutput:
        """Bits/dim of images (intensities in [0, 1], or uint8) under the model, one dequantization draw each.

        bits/dim = (-log p(x) + log q(u|k)) / (D ln 2) + log2 L (hubgen.metrics.units), with the images
        quantized to the model's L grey levels first.
        """
        flow = self.flow
        x, log_q = flow.dequantize(self._images(images), generator)
        bits = flow.bits_per_dim(x, log_q)
        nll = bits * (flow.num_dims * math.log(2))
        return FlowLikelihoodOutput(bits_per_dim=bits.float(), nll_nats=nll.float(),
                                    dequantization=flow.config.dequantization)  # fmt: skip
