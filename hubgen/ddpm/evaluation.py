"""The DDPM's evaluation: the variational bound on test images, and per sampler the sample quality and speed.

    hubgen eval out/ddpm --num_images 360 --num_timesteps 50 --num_samples 1000 --samplers ddpm ddim:50 dpmsolver++:20

The bound is Ho et al. 2020 (arXiv:2006.11239) eq. 5, L_T + sum_(t=2..T) L_(t-1) + L_0, with the discretized
Gaussian decoder of eq. 13 (hubgen.diffusion.scheduling.variational_bound). The samplers (DDPM, DDIM, DPM-Solver++)
denoise the same initial noises, so their figures differ by the sampler only.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import data as hdata
from ..diffusion import scheduling
from ..draws import randn_tensor
from ..errors import UserInputError
from ..metrics.units import mean_and_stderr
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult

__all__ = ["DDPMEvalRequest", "evaluate", "parse_sampler", "sampler_label", "image_grid", "DEFAULT_EVAL_SAMPLERS"]

DEFAULT_EVAL_SAMPLERS = ("ddpm", "ddim:50", "dpmsolver++:20")  # "ddpm": every training timestep


def parse_sampler(spec: str, num_train_timesteps: int | None = None) -> tuple[str, int | None]:
    """A sampler spec NAME[:STEPS] -> (name, steps): "ddim:50" -> ("ddim", 50), "ddpm" -> ("ddpm", None: all T).
    NAME is one of the family's samplers (pipeline_ddpm.SAMPLERS, from the table of hubgen.diffusion.samplers)."""
    from .pipeline_ddpm import DEFAULT_STEPS, SAMPLERS

    name, _, steps = str(spec).partition(":")
    if name not in SAMPLERS or (steps and not steps.isdigit()):
        raise UserInputError(
            f"A sampler is NAME or NAME:STEPS with NAME one of {', '.join(SAMPLERS)} (e.g. 'ddim:50'), got {spec!r}."
        )
    value = int(steps) if steps else DEFAULT_STEPS[name]
    if value is not None and (value < 1 or (num_train_timesteps and value > num_train_timesteps)):
        raise UserInputError(f"Sampler {spec!r}: steps must be in [1, {num_train_timesteps or 'T'}].")
    return name, value


def sampler_label(name: str, steps: int) -> str:
    """How the card and `hubgen eval` name a sampler run: "DDIM-50"."""
    from .pipeline_ddpm import SAMPLERS

    return f"{SAMPLERS[name].label}-{steps}"


def image_grid(images: torch.Tensor, nrow: int):
    """card_grid with tiles of at least 64 pixels: 8x8 digits stay legible on a card."""
    from ..demo_utils import MIN_TILE_PX
    from ..pipeline_utils import card_grid

    return card_grid(images.float().cpu(), nrow=nrow, min_tile_px=MIN_TILE_PX)


@dataclass
class DDPMEvalRequest(EvalRequest):
    num_timesteps: int | None = field(
        default=None,
        metadata={"help": "timesteps per image for the variational bound (all: every one of the T; n < T: L_0, L_T "
                  "and n - 1 of the KL terms drawn uniformly, an unbiased estimate)", "max": 100_000},
    )  # fmt: skip
    samplers: tuple[str, ...] = field(
        default=DEFAULT_EVAL_SAMPLERS,
        metadata={"help": "NAME[:STEPS] with NAME ddpm, ddim or dpmsolver++ (ddpm: all T steps); the first is the "
                  "card's headline"},
    )  # fmt: skip

    def __post_init__(self):
        super().__post_init__()
        t = self.num_timesteps
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 2):
            raise UserInputError(f"`num_timesteps` must be an integer >= 2 or None (all T), got {t!r}.")
        self.samplers = (self.samplers,) if isinstance(self.samplers, str) else tuple(self.samplers)
        for spec in self.samplers:  # the syntax here; the steps against T in evaluate(), which knows T
            parse_sampler(spec)


@torch.no_grad()
def _bound(pipe, test, n: int, num_timesteps: int | None, seed: int, batch_size: int) -> tuple[dict, dict]:
    """The variational bound (Ho et al. eq. 5) on the first `n` images: metrics and the protocol's details."""
    T = pipe.scheduler.config.num_train_timesteps
    g = torch.Generator().manual_seed(seed)
    terms = {"prior": [], "diffusion": [], "decoder": [], "total": [], "bits_per_dim": []}
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        x = test.take(range(i, min(i + batch_size, n))).float() / 255  # (B, C, H, W) intensities in [0, 1]
        x0 = hdata.to_signed_range(x, test.levels)  # on the L-level grid
        bound = scheduling.variational_bound(pipe.unet, pipe.scheduler, x0.to(pipe.device), num_timesteps,
                                             generator=g, levels=test.levels)  # fmt: skip
        for name in terms:
            terms[name].append(getattr(bound, name).cpu())
    terms = {name: torch.cat(values) for name, values in terms.items()}
    used = num_timesteps or T
    estimate = "every timestep" if used == T else (
        f"{used} timesteps per image: L_0, L_T and {used - 1} of the {T - 1} KL terms drawn uniformly without "
        f"replacement, weighted {T - 1}/{used - 1} (unbiased)"
    )  # fmt: skip
    details = {
        "num_timesteps": used,
        "vlb_seconds": round(time.perf_counter() - start, 1),
        "vlb_terms_nats": {name: terms[name].mean().item() for name in ("prior", "diffusion", "decoder")},
        "bound_protocol": (
            f"L_T + sum_(t=2..T) L_(t-1) + L_0 (Ho et al. eq. 5), T = {T}, discretized Gaussian decoder over "
            f"{test.levels} levels, one x_t ~ q(x_t | x_0) per term, seed {seed}; {estimate}"
        ),
    }
    return {
        "vlb_nats": mean_and_stderr(terms["total"]),
        "vlb_bits_per_dim": mean_and_stderr(terms["bits_per_dim"]),
    }, details


@torch.no_grad()
def evaluate(folder, request: DDPMEvalRequest, pipeline=None, batch_size: int = 250) -> EvalResult:
    """The variational bound and, per sampler, sample quality and speed.

    Bound: the first `request.num_images` images of the split (0: skip; None: all), on their L-level grid in
    [-1, 1]; per image `num_timesteps` timesteps (None: all T; n < T: L_0 and L_T plus n - 1 sampled KL terms,
    unbiased), the noise and timesteps drawn from `seed`. Metrics: vlb_nats and vlb_bits_per_dim (mean and
    standard error over images); details: num_timesteps, vlb_terms_nats, bound_protocol.

    Samplers: each "NAME[:STEPS]" of `samplers` denoises the same `num_samples` initial noises x_T (drawn from
    `seed`; DDPM's step noise from seed + 1). Per sampler, details["samplers"][label] holds the wall time per
    image and the hubgen.metrics report (classifier Frechet distance, precision/recall/density/coverage, classes,
    memorization), a picture holds a grid of the first 64, and a note its line for `hubgen eval`. The first
    sampler is the headline: its report is `sample_quality`, its nearest-neighbour grid a picture.
    """
    from ..metrics import evaluate_samples
    from .pipeline_ddpm import SAMPLERS, DDPMPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, request.dataset)
    pipe = pipeline or DDPMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    T = pipe.scheduler.config.num_train_timesteps
    specs = [parse_sampler(spec, T) for spec in request.samplers]
    if request.num_timesteps is not None and request.num_timesteps > T:
        raise UserInputError(f"`num_timesteps` must be in [2, T = {T}] or None (all), got {request.num_timesteps}.")
    test = dataset.load(request.split)
    n = len(test) if request.num_images is None else min(request.num_images, len(test))
    result = EvalResult("ddpm", request, str(dataset), request.split, n, request.seed, f"{test.levels}-level discrete")
    result.details = {"pixel_levels": test.levels, "num_train_timesteps": T, "samplers": {}}

    # 1. The variational bound (Ho et al. eq. 5) on test images
    if n:
        result.metrics, details = _bound(pipe, test, n, request.num_timesteps, request.seed, batch_size)
        result.details.update(details)
        terms = details["vlb_terms_nats"]
        result.notes.append(
            f"variational bound: N={n}, {details['num_timesteps']} timesteps, seed={request.seed}; "
            f"L_T / sum L_(t-1) / L_0 = {terms['prior']:.3f} / {terms['diffusion']:.2f} / {terms['decoder']:.2f} nats"
        )

    # 2. Samples from the same initial noises with every sampler
    num_samples = len(test) if request.num_samples is None else request.num_samples
    if num_samples and specs:
        c, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
        noise = randn_tensor((num_samples, c, size, size), torch.Generator().manual_seed(request.seed))  # CPU
        for j, (name, steps) in enumerate(specs):
            steps = steps or T
            step_noise = torch.Generator().manual_seed(request.seed + 1)
            start = time.perf_counter()
            images = torch.cat([
                pipe(len(chunk), generator=step_noise, latents=chunk, sampler=name, num_inference_steps=steps,
                     output_type="pt").images.float().cpu()
                for chunk in noise.split(batch_size)
            ])  # fmt: skip
            seconds = time.perf_counter() - start
            label, grid_name = sampler_label(name, steps), f"samples_{name.replace('+', 'p')}_{steps}.png"
            report = evaluate_samples(images, dataset, seed=request.seed, reference_split=request.split,
                                      feature_network=request.feature_network)  # fmt: skip
            nearest_neighbours = report.pop("pictures", {})
            report["samples"] = f"{label} ({SAMPLERS[name].label} sampler, {steps} steps) of the EMA UNet"
            result.pictures[grid_name] = image_grid(images[:64], nrow=8)
            result.details["samplers"][label] = {"order": j, "sampler": name, "steps": steps,
                                                 "num_samples": num_samples, "seconds_per_image": seconds / num_samples,
                                                 "grid": grid_name, "report": report}  # fmt: skip
            fd, prdc = report["frechet_distance"], report["prdc"]
            quality = f"{fd['name']} {fd['value']:.3f}   coverage {prdc['coverage']:.3f}" if fd else "FD not measured"
            result.notes.append(f"{label:22s} {quality}   {seconds / num_samples:.4f} s/image")
            if j == 0:
                result.pictures.update(nearest_neighbours)
                result.sample_quality = report
                result.details["headline_sampler"] = label
    return result
