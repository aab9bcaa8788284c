"""PixelCNNPipeline: sample, complete and score images with a trained PixelCNNModel.

from hubgen.pixelcnn.pipeline_pixelcnn import PixelCNNPipeline
pipe = PixelCNNPipeline.from_pretrained("path/or/user-repo")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0)).images
scores = pipe.log_likelihood(images)          # exact NLL (nats), bits/dim, per-pixel log-probability map
filled = pipe.complete(images, known_mask)    # the unknown pixels drawn in raster order
"""

from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils import BaseOutput

from ..data import binarize
from ..draws import check_generators
from ..errors import UserInputError
from ..metrics.units import nats_to_bits_per_dim
from ..pipeline_utils import (
    SafetensorsLoadingMixin,
    check_output_type,
    check_sampling_inputs,
    convert_images,
    images_to_tensor,
)
from .modeling_pixelcnn import PixelCNNModel, sample_levels

__all__ = ["PixelCNNPipeline", "PixelCNNLikelihood"]


@dataclass
class PixelCNNLikelihood(BaseOutput):
    """Per image: the exact `nll_nats` = -log p(x) and `bits_per_dim` (D = C H W values, no dequantization term:
    the data are discrete), and `log_prob_map` (B, H, W): log p of each pixel's values given those before, in nats,
    summed over its channels (the map sums to -nll_nats)."""

    nll_nats: torch.Tensor
    bits_per_dim: torch.Tensor
    log_prob_map: torch.Tensor


class PixelCNNPipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    r"""Pipeline for an autoregressive PixelCNN (van den Oord et al., arXiv:1601.06759, 1606.05328).

    Components:
        model ([`PixelCNNModel`]): the per-value conditionals p(x_i | x_<i).
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: PixelCNNModel):
        super().__init__()
        self.register_modules(model=model)

    # -- inputs ---------------------------------------------------------------------------------------------

    def to_levels(self, images, generator=None, binarize_inputs: bool = True, name: str = "images") -> torch.Tensor:
        """Images (PIL, numpy or tensors in [0, 1] / uint8) -> the model's integer levels (B, C, H, W).

        Binarized models: intensities are dynamically binarized, x ~ Bernoulli(intensity) from `generator` (the
        training protocol), unless they are already 0/1 or `binarize_inputs` is False (then thresholded at 1/2).
        K-level models: level round(intensity (K - 1))."""
        cfg = self.model.config
        x = images_to_tensor(images, name, channels=cfg.in_channels)
        expected = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise UserInputError(f"`{name}` must have shape (batch, {', '.join(map(str, expected))}) for this "
                                 f"model, got {tuple(x.shape)}.")  # fmt: skip
        if x.min() < 0 or x.max() > 1:
            raise UserInputError(f"`{name}` must hold intensities in [0, 1] (or uint8 0..255), got range "
                                 f"[{x.min().item():.3g}, {x.max().item():.3g}].")  # fmt: skip
        if cfg.pixel_levels == 2:
            binary = bool(((x == 0) | (x == 1)).all())
            if binarize_inputs and not binary:
                return binarize(x, generator=generator).long().to(self.device)
            return (x >= 0.5).long().to(self.device)
        return torch.round(x * (cfg.pixel_levels - 1)).long().to(self.device)

    def _images(self, levels: torch.Tensor, output_type: str):
        return convert_images(levels.float() / (self.model.config.pixel_levels - 1), output_type)

    @staticmethod
    def _check(temperature) -> None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature <= 10:
            raise UserInputError(f"`temperature` must be a number in (0, 10], got {temperature!r}.")

    # -- sampling -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, generator: torch.Generator | list[torch.Generator] | None = None,
                 temperature: float = 1.0,
                 output_type: str = "pil", return_dict: bool = True, fast: bool = True):  # fmt: skip
        r"""Draw images value by value in raster order (R -> G -> B within a pixel).

        Args:
            batch_size: number of images (drawn together: one network pass per value for the whole batch).
            generator: a torch.Generator (or one per image) making the draw deterministic.
            temperature: divides the logits; 1 samples the model's distribution.
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            fast: run the network on the rows an output can see instead of the whole image (same images).
        """
        check_sampling_inputs(batch_size, generator, None, 0, output_type, self.device)
        self._check(temperature)
        bar = self.progress_bar(total=self.model.config.sample_size)
        levels = sample_levels(self.model, batch_size, generator, temperature, fast,
                               progress=lambda done, total: bar.update(1))  # fmt: skip
        bar.close()
        images = self._images(levels, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def complete(self, images, known_mask, num_completions: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None, temperature: float = 1.0,
                 output_type: str = "pil"):  # fmt: skip
        """Fill in what `known_mask` leaves unknown: each unknown value is drawn given every value before it in
        raster order (known or drawn), the conditional task an autoregressive model answers exactly. Known values
        after an unknown one cannot inform it (the factorization runs one way).

        `images`: one image (or a batch); `known_mask`: (H, W), (C, H, W) or (B, C, H, W), True where a value is
        kept. Returns `num_completions` completions of each image, image by image; `generator` may be a list of
        one generator per completion, in that order."""
        if not isinstance(num_completions, int) or isinstance(num_completions, bool) or not 1 <= num_completions <= 64:
            raise UserInputError(f"`num_completions` must be an integer in [1, 64], got {num_completions!r}.")
        check_output_type(output_type)
        self._check(temperature)
        known = self.to_levels(images, binarize_inputs=False)
        check_generators(generator, known.shape[0] * num_completions, self.device)
        mask = torch.as_tensor(known_mask, dtype=torch.bool)
        try:
            mask = mask.expand_as(known).to(self.device)
        except RuntimeError as e:
            raise UserInputError(f"`known_mask` of shape {tuple(mask.shape)} does not fit images of shape "
                                 f"{tuple(known.shape)}: pass (H, W), (C, H, W) or (B, C, H, W).") from e  # fmt: skip
        known = known.repeat_interleave(num_completions, 0)
        mask = mask.repeat_interleave(num_completions, 0)
        levels = sample_levels(self.model, known.shape[0], generator, temperature, known=known, known_mask=mask)
        return self._images(levels, output_type)

    # -- likelihood -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def log_likelihood(self, images, generator=None, binarize_inputs: bool = True) -> PixelCNNLikelihood:
        """The exact log-likelihood of images: log p(x) = sum_i log p(x_i | x_<i), one network pass."""
        levels = self.to_levels(images, generator, binarize_inputs)
        log_p = self.model.log_prob(levels).double()  # (B, C, H, W)
        nll = -log_p.sum((1, 2, 3))
        return PixelCNNLikelihood(nll_nats=nll, bits_per_dim=nats_to_bits_per_dim(nll, levels[0].numel()),
                                  log_prob_map=log_p.sum(1))  # fmt: skip
