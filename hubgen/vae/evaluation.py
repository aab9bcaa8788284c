"""The VAE's evaluation: the negative ELBO and the IWAE bound on test images, and sample quality.

hubgen eval out/vae --k 1000 --num_images 1000 --num_samples 1000
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserInputError
from ..metrics.units import mean_and_stderr
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["VAEEvalRequest", "evaluate"]


@dataclass
class VAEEvalRequest(EvalRequest):
    k: int = field(default=1000, metadata={"help": "importance samples of the IWAE bound (Burda et al. 2015)",
                                           "max": 100_000})  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise UserInputError(f"`k` must be an integer >= 1, got {self.k!r}.")


def _pixel_protocol(pipe, seed: int) -> tuple[str, str]:
    """(pixel mode, protocol): the data encoding the likelihood is over, as the card and the Hub labels say it."""
    cfg = pipe.vae.config
    if cfg.decoder_distribution == "bernoulli":
        return "binary", f"dynamic binarization: one Bernoulli(intensity) draw per image from seed {seed}"
    if cfg.decoder_distribution == "gaussian":
        levels = pipe.config.pixel_levels
        return "continuous", f"uniform dequantization to {levels} levels, one draw per image, seed {seed}"
    levels, dims = cfg.num_levels, cfg.in_channels * cfg.sample_size**2
    return (
        f"discrete ({levels} levels, discretized logistic)",
        f"discrete {levels}-level pixels scored as they are by a discretized logistic decoder (no dequantization: "
        f"a probability mass over {levels} levels per sub-pixel; bits/dim = NLL / (D ln 2), D = C*H*W = {dims}; "
        f"the IWAE samples from seed {seed})",
    )


@torch.no_grad()
def evaluate(folder, request: VAEEvalRequest, pipeline=None, batch_size: int = 100) -> EvalResult:
    """Negative ELBO and IWAE NLL (nats) on the first `request.num_images` images of the split, and bits/dim.

    Each image is binarized once (dynamic binarization, from a generator seeded with `seed`) for a Bernoulli
    decoder, or dequantized once for a Gaussian one; the same draw serves both bounds. A discretized-logistic
    decoder scores the L-level pixels themselves (a discrete likelihood: no dequantization). Reported: the mean
    over images and its standard error.

    With `num_samples` > 0, also the sample-quality figures of hubgen.metrics (classifier Frechet distance,
    precision/recall/density/coverage, mode coverage, memorization) for `num_samples` decoder means E[x|z],
    z ~ N(0, I) drawn from `seed`, with the nearest-neighbour grid as a picture.
    """
    from .pipeline_vae import VAEPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, request.dataset)
    pipe = pipeline or VAEPipeline.from_pretrained(folder)
    test = dataset.load(request.split)
    n = len(test) if request.num_images is None else min(request.num_images, len(test))
    pixel_mode, protocol = _pixel_protocol(pipe, request.seed)
    result = EvalResult("vae", request, str(dataset), request.split, n, request.seed, pixel_mode)
    result.details = {"k": request.k, "protocol": protocol}
    if n:
        g = torch.Generator().manual_seed(request.seed)
        nll, neg_elbo, bpd = [], [], []
        for i in range(0, n, batch_size):
            x = test.take(range(i, min(i + batch_size, n))).float() / 255  # (B, C, H, W) intensities in [0, 1]
            scores = pipe.log_likelihood(x, k=request.k, generator=g)
            nll.append(scores.nll_nats)
            neg_elbo.append(scores.neg_elbo_nats)
            bpd.append(scores.bits_per_dim)
        result.metrics = {"iwae_nll_nats": mean_and_stderr(nll), "neg_elbo_nats": mean_and_stderr(neg_elbo),
                          "bits_per_dim": mean_and_stderr(bpd)}  # fmt: skip
    num_samples = request.num_samples
    if num_samples != 0:
        num_samples = num_samples or len(test)
        samples = pipe(num_samples, generator=torch.Generator().manual_seed(request.seed), output_type="pt").images
        result.add_sample_quality(samples, dataset, "decoder means E[x|z], z ~ N(0, I)")
    return result
