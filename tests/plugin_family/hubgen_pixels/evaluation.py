"""Exact NLL of binarized test images."""

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from hubgen.data import binarize, load_dataset
from hubgen.model_folder import recorded_dataset
from hubgen.registry import EvalRequest, EvalResult


@dataclass
class PixelEvalRequest(EvalRequest):
    pass


@torch.no_grad()
def evaluate(folder, request: PixelEvalRequest, pipeline=None) -> EvalResult:
    from .pipeline import PixelPipeline

    dataset, _ = recorded_dataset(folder, request.dataset)
    pipe = pipeline or PixelPipeline.from_pretrained(Path(folder))
    test = load_dataset(dataset, request.split)
    n = len(test) if request.num_images is None else min(request.num_images, len(test))
    result = EvalResult("pixels", request, dataset, request.split, n, request.seed, "binary")
    if n:
        x = binarize(test.images[:n].float() / 255, torch.Generator().manual_seed(request.seed))
        nll = -pipe.model.log_prob(x).double()
        bpd = nll / (x[0].numel() * math.log(2))
        for key, v in (("nll_nats", nll), ("bits_per_dim", bpd)):
            result.metrics[key] = {
                "mean": v.mean().item(),
                "stderr": (v.std() / math.sqrt(n)).item() if n > 1 else None,
            }
    return result
