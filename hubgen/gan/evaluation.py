"""The GAN's evaluation: the sample-quality figures of its EMA generator. A GAN defines no likelihood.

hubgen eval out/gan --num_samples 1000 --seed 0 [--truncation 0.7]
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserInputError
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["GANEvalRequest", "evaluate"]


@dataclass
class GANEvalRequest(EvalRequest):
    """`num_samples` samples G(z) (seed `seed`) against `split` of the training dataset.

    A GAN has no likelihood, so the inherited `num_images` (test images scored for a likelihood) does not
    apply: the field stays (with its help saying so) but is ignored, and the result records `num_images=None`
    (no test image is scored). `num_samples`
    must be >= 1 (or None: as many samples as the split has images): the samples are all a GAN is judged by.
    """

    num_images: int | None = field(default=1000, metadata={"help": "does not apply: a GAN has no likelihood (ignored)"})
    truncation: float | None = field(
        default=None, metadata={"help": "truncate z to [-t, t] for the samples (None: the full prior N(0, I))"}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.num_samples == 0:
            raise UserInputError("A GAN is evaluated on samples only: `num_samples` must be >= 1, got 0.")
        t = self.truncation
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not (0 < t < math.inf)):
            raise UserInputError(f"`truncation` must be None or a positive number, got {t!r}.")


@torch.no_grad()
def evaluate(folder, request: GANEvalRequest, pipeline=None) -> EvalResult:
    """Sample quality of `request.num_samples` samples of the (EMA) generator, z ~ N(0, I) drawn from
    `request.seed` (truncated to |z_i| <= `request.truncation` when set), against `request.split`: classifier
    Frechet distance, precision/recall/density/coverage, classes covered, memorization, with the
    nearest-neighbour grid as a picture. `num_images` does not apply (no likelihood) and is recorded as None.
    """
    from .pipeline_gan import GANPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, request.dataset)
    pipe = pipeline or GANPipeline.from_pretrained(folder)
    num_samples = request.num_samples or len(dataset.load(request.split))  # None: the split's size
    result = EvalResult("gan", request, str(dataset), request.split, None, request.seed, "continuous")
    result.details = {"likelihood": "none: a GAN defines no likelihood, so `num_images` does not apply"}
    samples = pipe(num_samples, generator=torch.Generator().manual_seed(request.seed), truncation=request.truncation,
                   output_type="pt").images  # fmt: skip
    truncated = f" truncated to |z_i| <= {request.truncation}" if request.truncation else ""
    result.add_sample_quality(samples, dataset, f"G(z) of the EMA generator, z ~ N(0, I){truncated}")
    return result
