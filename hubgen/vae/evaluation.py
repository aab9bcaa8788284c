"""The VAE's evaluation: the negative ELBO and the IWAE bound on test images, and sample quality; and the lecture's
measurement of naive Monte Carlo against importance sampling (`naive_vs_importance`).

hubgen eval out/vae --k 1000 --num_images 1000 --num_samples 1000
python bench/vae_naive_mc.py out/vae --num_images 20 --ks 1 10 100 1000 10000 --repeats 10
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserInputError
from ..metrics.units import mean_and_stderr
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["VAEEvalRequest", "evaluate", "NaiveVsImportance", "naive_vs_importance"]


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
        return "continuous", (
            f"uniform dequantization to {levels} levels, one draw per image, seed {seed}; nats of "
            f"the discrete data: -L_k(x + u) + D ln {levels}, a dequantization bound"
        )
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
    result.add_samples_of(pipe, len(test), dataset, "decoder means E[x|z], z ~ N(0, I)")
    return result


# -- naive Monte Carlo against importance sampling --------------------------------------------------------------


@dataclass
class NaiveVsImportance:
    """Estimates of log p(x) in nats, (len(ks), repeats, B): `naive` = log (1/k) sum_i p(x|z_i), z_i ~ p(z);
    `importance` = L_k(x), z_i ~ q(z|x). `reference` (B,): the importance-sampled estimate pooling every repeat's
    samples, L_{repeats * max(ks)}, the best estimate of log p(x) the run has (itself a stochastic lower bound)."""

    ks: list[int]
    naive: torch.Tensor
    importance: torch.Tensor
    reference: torch.Tensor

    def summary(self, truth: torch.Tensor | None = None) -> list[dict]:
        """One row per k: for each estimator, the mean estimate (nats, mean over images), its bias against
        `truth` (default `reference`): the mean over images of (mean over repeats - truth), its standard
        deviation over repeats (root mean over images of the variance across repeats), and its root mean square
        error against `truth` (over repeats and images)."""
        truth = self.reference if truth is None else truth
        rows = []
        for i, k in enumerate(self.ks):
            row = {"k": k}
            for name, est in (("naive", self.naive[i]), ("importance", self.importance[i])):  # (R, B)
                row[f"{name}_mean"] = est.mean().item()
                row[f"{name}_bias"] = (est.mean(0) - truth).mean().item()
                row[f"{name}_std"] = est.var(0).mean().sqrt().item()
                row[f"{name}_rmse"] = (est - truth).pow(2).mean().sqrt().item()
            rows.append(row)
        return rows


@torch.no_grad()
def naive_vs_importance(pipeline, images, ks=(1, 10, 100, 1000, 10_000), repeats: int = 5, generator=None):
    """Estimate log p(x) of the same images by naive Monte Carlo and by importance sampling, for each k in `ks`.

        naive:       log p(x) ~ log (1/k) sum_i p(x|z_i),                   z_i ~ p(z)     (prior_log_weights)
        importance:  log p(x) ~ log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)   (L_k, IWAE eq. 8)

    Both average an unbiased estimate of p(x), so both logs are stochastic lower bounds that reach log p(x) as k
    grows; the prior rarely proposes a z that explains x, so the naive average is dominated by rare draws: far more
    biased and variable at every k. The images are prepared once (binarized or dequantized from `generator`, as
    `VAEPipeline.likelihood_input`) and both estimators score that same x. Each of `repeats` independent runs draws
    max(ks) samples per image and estimator; the estimate at k uses its first k samples (a running logsumexp), so
    the k's of one run share samples while the repeats are independent. Cost: 2 * repeats * max(ks) decoder
    passes per image. Returns a NaiveVsImportance.
    """
    from .losses import importance_log_weights, prior_log_weights

    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks) or ks != sorted(set(ks)):
        raise UserInputError(f"`ks` must be increasing integers >= 1 (sample sizes), got {ks!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise UserInputError(f"`repeats` must be an integer >= 2 (a spread needs two runs), got {repeats!r}.")
    x, _ = pipeline.likelihood_input(images, generator=generator)
    vae, k_max = pipeline.vae, ks[-1]
    index = torch.tensor([k - 1 for k in ks])
    log_k = torch.tensor([math.log(k) for k in ks], dtype=x.dtype)[:, None]  # (len(ks), 1)
    naive, importance, pooled = [], [], []
    for _ in range(repeats):
        for estimate, store in ((prior_log_weights, naive), (importance_log_weights, importance)):
            running = torch.logcumsumexp(estimate(vae, x, k_max, generator=generator), dim=0)  # (k_max, B)
            store.append(running[index].cpu() - log_k)  # (len(ks), B): log (1/k) sum_{i <= k} w_i
        pooled.append(running[-1].cpu())
    reference = torch.logsumexp(torch.stack(pooled), dim=0) - math.log(repeats * k_max)  # (B,)
    return NaiveVsImportance(ks, torch.stack(naive, dim=1), torch.stack(importance, dim=1), reference)
