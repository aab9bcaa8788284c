"""The PixelCNN's evaluation: the exact negative log-likelihood of test images, and sample quality.

hubgen eval out/pixelcnn --num_images all --num_samples 1000
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..metrics.units import mean_and_stderr
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["PixelCNNEvalRequest", "evaluate"]


@dataclass
class PixelCNNEvalRequest(EvalRequest):
    pass


@torch.no_grad()
def evaluate(folder, request: PixelCNNEvalRequest, pipeline=None, batch_size: int = 100) -> EvalResult:
    """Exact -log p(x) (nats) and bits/dim (D = C H W, no dequantization term) on the first `num_images` images of
    the split: binarized models score one dynamic binarization per image (a generator seeded with `seed`, the VAE's
    protocol), L-level models the levels themselves. Mean over images and its standard error. With `num_samples`,
    the sample-quality figures of hubgen.metrics for samples drawn from `seed` at temperature 1."""
    from .pipeline_pixelcnn import PixelCNNPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, request.dataset)
    pipe = pipeline or PixelCNNPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    levels = pipe.model.config.pixel_levels
    test = dataset.load(request.split)
    n = len(test) if request.num_images is None else min(request.num_images, len(test))
    if levels == 2:
        pixel_mode = "binary"
        protocol = f"dynamic binarization: one Bernoulli(intensity) draw per image from seed {request.seed}"
    else:
        pixel_mode = f"{levels}-level discrete"
        protocol = f"the {levels} levels of each value scored as they are (a discrete likelihood, no dequantization)"
    result = EvalResult("pixelcnn", request, str(dataset), request.split, n, request.seed, pixel_mode)
    result.details = {"protocol": protocol, "pixel_levels": levels, "bound": "exact (no bound: the product of the "
                      "conditionals is the likelihood)"}  # fmt: skip
    if n:
        g = torch.Generator().manual_seed(request.seed)
        nll, bpd = [], []
        for i in range(0, n, batch_size):
            x = test.take(range(i, min(i + batch_size, n))).float() / 255
            scores = pipe.log_likelihood(x, generator=g)
            nll.append(scores.nll_nats)
            bpd.append(scores.bits_per_dim)
        result.metrics = {"nll_nats": mean_and_stderr(nll), "bits_per_dim": mean_and_stderr(bpd)}
    result.add_samples_of(pipe, len(test), dataset, "ancestral samples in raster order, temperature 1")
    return result
