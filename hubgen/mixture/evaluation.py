"""The mixture's evaluation: the test images' negative log-likelihood (nats of the discrete data, and bits/dim), the
posterior p(z | x) as a clustering scored against the labels (adjusted Rand index), and sample quality.

hubgen eval out/mixture --num_images all --num_samples 1000
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserInputError
from ..metrics.units import mean_and_stderr
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["MixtureEvalRequest", "evaluate"]


@dataclass
class MixtureEvalRequest(EvalRequest):
    pass


def adjusted_rand_index(labels: torch.Tensor, clusters: torch.Tensor) -> float:
    """scikit-learn's adjusted Rand index of two partitions (Hubert & Arabie 1985): 1 for the same partition, about
    0 for a random one, whatever the number of clusters."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels.numpy(), clusters.numpy()))


@torch.no_grad()
def evaluate(folder, request: MixtureEvalRequest, pipeline=None, batch_size: int = 500) -> EvalResult:
    """On the first `num_images` images of the split: -log P(x) in nats and bits/dim (D = C H W), mean and standard
    error over images, and the adjusted Rand index of argmax_k p(z = k | x) against the labels (when the data have
    labels). Bernoulli mixtures score one binarization per image drawn from a generator seeded with `seed` (dynamic
    binarization, the VAE's and PixelCNN's protocol): an exact discrete likelihood. Gaussian mixtures score one
    dequantization x = (k + u) / L per image from the same generator: -log p(x) + D ln L, whose expectation over u
    bounds -log P(k) from above (a one-draw estimate of the dequantization bound). With `num_samples`, the
    sample-quality figures of hubgen.metrics for samples x ~ p(x) drawn from `seed`."""
    from .pipeline_mixture import MixturePipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, request.dataset)
    pipe = pipeline or MixturePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    cfg = pipe.model.config
    test = dataset.load(request.split)
    if cfg.distribution == "gaussian" and test.levels != cfg.pixel_levels:
        raise UserInputError(f"This model dequantizes {cfg.pixel_levels}-level pixels; `dataset` {dataset} has "
                             f"{test.levels} levels: its nats would not be of these data.")  # fmt: skip
    n = len(test) if request.num_images is None else min(request.num_images, len(test))
    if cfg.distribution == "bernoulli":
        pixel_mode = "binary"
        protocol = (f"dynamic binarization: one Bernoulli(intensity) draw per image from seed {request.seed}; the "
                    "mixture's pmf of the binary image")  # fmt: skip
        bound = "exact"
    else:
        pixel_mode = f"continuous ({cfg.pixel_levels} levels, dequantized)"
        protocol = (
            f"uniform dequantization x = (k + u) / {cfg.pixel_levels}, one u per image from seed "
            f"{request.seed}; NLL = -log p(x) + D ln {cfg.pixel_levels}, in nats of the discrete levels"
        )
        bound = "dequantization bound, 1 draw"
    result = EvalResult("mixture", request, str(dataset), request.split, n, request.seed, pixel_mode)
    result.details = {"protocol": protocol, "bound": bound, "pixel_levels": cfg.pixel_levels,
                      "distribution": cfg.distribution, "num_components": cfg.num_components}  # fmt: skip
    if n:
        g = torch.Generator().manual_seed(request.seed)
        nll, bpd, clusters = [], [], []
        for i in range(0, n, batch_size):
            x = test.take(range(i, min(i + batch_size, n))).float() / 255
            scores = pipe.log_likelihood(x, generator=g)
            nll.append(scores.nll_nats)
            bpd.append(scores.bits_per_dim)
            clusters.append(scores.responsibilities.argmax(1).cpu())
        result.metrics = {"nll_nats": mean_and_stderr(nll), "bits_per_dim": mean_and_stderr(bpd)}
        clusters = torch.cat(clusters)
        result.details["components_used"] = int(clusters.unique().numel())
        if test.labels is not None and n > 1:
            ari = adjusted_rand_index(test.labels[:n], clusters)
            result.metrics["adjusted_rand_index"] = {"mean": ari, "stderr": None}
    result.add_samples_of(pipe, len(test), dataset, "ancestral samples: z ~ Categorical(pi), then x ~ p(x | z)")
    return result
