"""The flow's evaluation: test bits/dim (exact density of dequantized images, a bound for the discrete ones)
and sample quality at each temperature.

hubgen eval out/flow --num_images all --num_samples 1000 --temperatures 1 0.7
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserInputError
from ..metrics.units import mean_and_stderr
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["FlowEvalRequest", "evaluate", "QUANTILES"]

QUANTILES = (1, 5, 25, 50, 75, 95, 99)  # percent: the per-image bits/dim quantiles the evaluation records


@dataclass
class FlowEvalRequest(EvalRequest):
    # A flow's likelihood is one pass per image: by default every image of the split.
    num_images: int | None = field(default=None, metadata={"help": "first N images of the split (0: skip, all: all)"})
    temperatures: tuple[float, ...] = field(
        default=(1.0, 0.7),
        metadata={"help": "sample quality of x = f^-1(z), z ~ N(0, T^2 I), at each T (T = 1 samples the density; "
                  "0.7 is Glow's choice for cleaner samples)"},
    )  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        from .pipeline_flow import check_temperature

        if not isinstance(self.temperatures, (tuple, list)) or not self.temperatures:
            raise UserInputError(f"`temperatures` must be a non-empty tuple of numbers, got {self.temperatures!r}.")
        self.temperatures = tuple(check_temperature(t) for t in self.temperatures)


@torch.no_grad()
def evaluate(folder, request: FlowEvalRequest, pipeline=None, batch_size: int = 500) -> EvalResult:
    """Exact test bits/dim and, for `num_samples` > 0, sample quality at each temperature.

    Likelihood: the first `request.num_images` images (None: all, 0: skip) of the split, each quantized to the
    model's L grey levels and dequantized once (u drawn from a generator seeded with `seed`: uniform, or from
    q(u|k) for a variationally dequantized model). Per image, by the change of variables (hubgen.flow.losses):

        exact_nll_nats     = -log p(x) + log q(u|k) + D ln L,      x = (k + u) / L
        exact_bits_per_dim = exact_nll_nats / (D ln 2)

    The density p(x) is exact; as a figure for the discrete images it is, in expectation over u, an upper
    bound on -log P(k) (a lower bound on the discrete log-likelihood), the convention of every published
    bits/dim of a dequantized flow. Reported: the mean over images and its standard error, and the per-image
    quantiles. One dequantization draw per image: there are no importance samples.

    Sample quality (hubgen.metrics.evaluate_samples) of `num_samples` samples x = f^-1(z), z ~ N(0, T^2 I),
    drawn from `seed`, for each T in `temperatures`: `sample_quality` at T = 1 (or the first T), all of them in
    details["sample_quality_by_temperature"] keyed by T; the nearest-neighbour grid of that T as a picture.
    """
    from ..metrics import evaluate_samples
    from .pipeline_flow import FlowPipeline

    dataset, _ = recorded_dataset(Path(folder), request.dataset)
    pipe = pipeline or FlowPipeline.from_pretrained(folder)
    flow, seed = pipe.flow, request.seed
    test = dataset.load(request.split)
    if test.levels != flow.config.pixel_levels:
        raise UserInputError(
            f"The model was trained on {flow.config.pixel_levels} grey levels but `{dataset}` has {test.levels}: "
            "pass the dataset it was trained on."
        )
    n = len(test) if request.num_images is None else min(request.num_images, len(test))
    dequant, levels = flow.config.dequantization, flow.config.pixel_levels
    result = EvalResult("flow", request, str(dataset), request.split, n, seed, "continuous")
    result.details = {
        "pixel_levels": levels,
        "num_dims": flow.num_dims,
        "dequantization": dequant,
        "protocol": (
            f"each image quantized to {levels} grey levels and dequantized once "
            + ("with u ~ U[0, 1)" if dequant == "uniform" else "with u ~ q(u|k), the learned dequantization flow")
            + f" from seed {seed}; exact log-density of x = (k + u) / L by the change of variables"
        ),
        "bound": "in expectation over u, an upper bound on -log2 P(k) / D (a lower bound on the discrete likelihood)",
    }

    # 1. The likelihood: one dequantization draw per image, from one generator over the whole split
    if n:
        g = torch.Generator().manual_seed(seed)
        bits = [pipe.log_likelihood(test.take(range(i, min(i + batch_size, n))).float() / 255.0, generator=g)
                .bits_per_dim.double() for i in range(0, n, batch_size)]  # fmt: skip
        per_image = torch.cat(bits)  # (n,)
        result.metrics = {"exact_nll_nats": mean_and_stderr(per_image * (flow.num_dims * math.log(2))),
                          "exact_bits_per_dim": mean_and_stderr(per_image)}  # fmt: skip
        quantiles = torch.quantile(per_image, torch.tensor(QUANTILES, dtype=torch.float64) / 100).tolist()
        # [percent, bits/dim] pairs in order (a JSON object's keys would be sorted "1", "25", "5", ...)
        result.details["bits_per_dim_quantiles"] = [list(p) for p in zip(QUANTILES, quantiles, strict=True)]
        pairs = result.details["bits_per_dim_quantiles"]
        result.notes.append("exact_bits_per_dim per image: " + ", ".join(f"{p}%: {q:.3f}" for p, q in pairs))

    # 2. Sample quality at each temperature, every T from the same seed
    by_temperature = {}
    if request.num_samples != 0:
        num_samples = request.num_samples or len(test)
        for t in request.temperatures:
            samples = pipe(num_samples, generator=torch.Generator().manual_seed(seed), temperature=t,
                           output_type="pt").images  # fmt: skip
            report = evaluate_samples(samples, dataset, seed=seed, reference_split=request.split,
                                      feature_network=request.feature_network)  # fmt: skip
            pictures = report.pop("pictures", {})
            if not by_temperature:  # the first temperature's nearest neighbours are the card's picture
                result.pictures.update(pictures)
            report["temperature"] = t
            report["samples"] = f"x = f^-1(z), z ~ N(0, T^2 I) with T = {t:g}, shown at their grey level"
            by_temperature[f"{t:g}"] = report
            fd, prdc = report["frechet_distance"], report["prdc"]
            quality = f"{fd['name']} {fd['value']:.3f}   coverage {prdc['coverage']:.3f}" if fd else "FD not measured"
            result.notes.append(f"T={t:g}: {quality}")
        result.sample_quality = by_temperature.get("1", next(iter(by_temperature.values())))
    result.details.update(sample_quality_by_temperature=by_temperature or None)
    return result
