"""MixturePipeline: sample, score and cluster images with a trained MixtureModel.

from hubgen.mixture.pipeline_mixture import MixturePipeline
pipe = MixturePipeline.from_pretrained("path/or/user-repo")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0)).images
scores = pipe.log_likelihood(images)      # NLL of the discrete data (nats), bits/dim, p(z | x)
"""

import math
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils import BaseOutput

from ..data import binarize, dequantize
from ..errors import UserInputError
from ..metrics.units import nats_to_bits_per_dim
from ..pipeline_utils import SafetensorsLoadingMixin, check_sampling_inputs, convert_images, images_to_tensor
from .modeling_mixture import MixtureModel

__all__ = ["MixturePipeline", "MixtureLikelihood", "SHOW_CHOICES"]

SHOW_CHOICES = ("samples", "means")


@dataclass
class MixtureLikelihood(BaseOutput):
    """Per image: `nll_nats` = -log P of the discrete data in nats and `bits_per_dim` = nll_nats / (D ln 2).
    Bernoulli mixtures: the exact -log p(x) of the binarized image. Gaussian mixtures: -log p(x) + D log L for one
    dequantized draw x = (k + u) / L, an upper bound on -log P(k) in expectation over u (a one-draw estimate of the
    dequantization bound). `responsibilities` (B, K): the posterior p(z = k | x)."""

    nll_nats: torch.Tensor
    bits_per_dim: torch.Tensor
    responsibilities: torch.Tensor


class MixturePipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    r"""Pipeline for a finite mixture of Bernoulli or diagonal-Gaussian images, fitted by EM.

    Components:
        model ([`MixtureModel`]): mixture weights and per-component pixel distributions.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: MixtureModel):
        super().__init__()
        self.register_modules(model=model)

    def to_model_input(self, images, generator=None, binarize_inputs: bool = True, fixed_u: float | None = None,
                       name: str = "images"):  # fmt: skip
        """Images (PIL, numpy or tensors in [0, 1] / uint8) -> the model's values (B, C, H, W).

        Bernoulli: intensities are binarized, x ~ Bernoulli(intensity) from `generator` (the training protocol),
        unless they are already 0/1 or `binarize_inputs` is False (then thresholded at 1/2). Gaussian: level
        k = round(intensity (L - 1)), dequantized x = (k + u) / L with u ~ U[0, 1) from `generator`, or u = `fixed_u`
        for every value (the demo scores a drawing at its bins' middle, 1/2)."""
        cfg = self.model.config
        x = images_to_tensor(images, name, channels=cfg.in_channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.model.image_shape:
            raise UserInputError(f"`{name}` must have shape (batch, {', '.join(map(str, self.model.image_shape))}) "
                                 f"for this model, got {tuple(x.shape)}.")  # fmt: skip
        if x.min() < 0 or x.max() > 1:
            raise UserInputError(f"`{name}` must hold intensities in [0, 1] (or uint8 0..255), got range "
                                 f"[{x.min().item():.3g}, {x.max().item():.3g}].")  # fmt: skip
        if cfg.distribution == "bernoulli":
            binary = bool(((x == 0) | (x == 1)).all())
            x = binarize(x, generator) if binarize_inputs and not binary else (x >= 0.5).float()
        elif fixed_u is None:
            x = dequantize(x, cfg.pixel_levels, generator)
        else:
            if not 0 <= fixed_u < 1:
                raise UserInputError(f"`fixed_u` must be in [0, 1), got {fixed_u!r}.")
            x = (torch.round(x * (cfg.pixel_levels - 1)) + fixed_u) / cfg.pixel_levels
        return x.to(self.device)

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, generator: torch.Generator | None = None, show: str = "samples",
                 output_type: str = "pil", return_dict: bool = True):  # fmt: skip
        r"""Ancestral sampling: z ~ Categorical(pi), then x ~ p(x | z).

        Args:
            batch_size: number of images.
            generator: a torch.Generator making the draw deterministic, or a list of them, one per image.
            show: "samples" (x ~ p(x | z)) or "means" (E[x | z], the drawn component's mean image).
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
        """
        check_sampling_inputs(batch_size, generator, None, 0, output_type, self.device)
        if show not in SHOW_CHOICES:
            raise UserInputError(f"`show` must be one of {SHOW_CHOICES}, got {show!r}.")
        images, _ = self.model.sample(batch_size, generator, means_only=show == "means")
        images = convert_images(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def log_likelihood(self, images, generator=None, binarize_inputs: bool = True,
                       fixed_u: float | None = None) -> MixtureLikelihood:  # fmt: skip
        """-log P(x) of images in nats and bits/dim (see MixtureLikelihood), and their responsibilities p(z | x)."""
        cfg = self.model.config
        x = self.to_model_input(images, generator, binarize_inputs, fixed_u)
        joint = self.model.log_joint(x).double()  # (B, K)
        log_px = torch.logsumexp(joint, dim=1)  # (B,)
        d = self.model.num_dims
        # the discrete data's nats: -log p(x) for a pmf; -log p(x) + D log L for a density on [0, 1)^D, whose bins
        # have volume L^-D (hubgen.metrics.units); bits/dim of the discrete data then need no further term
        nll = -log_px if cfg.distribution == "bernoulli" else -log_px + d * math.log(cfg.pixel_levels)
        bpd = nats_to_bits_per_dim(nll, d)
        return MixtureLikelihood(nll_nats=nll, bits_per_dim=bpd,
                                 responsibilities=torch.exp(joint - log_px[:, None]))  # fmt: skip

    @torch.no_grad()
    def component_means(self, output_type: str = "pt"):
        """(K) mean images E[x | z = k] and the weights pi_k (K,), heaviest component first."""
        order = torch.argsort(self.model.log_weights.detach(), descending=True)
        means = self.model.component_means.detach()[order].reshape(-1, *self.model.image_shape).clamp(0, 1)
        return convert_images(means.float().cpu(), output_type), self.model.log_weights.detach().exp()[order].cpu()
