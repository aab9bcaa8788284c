"""The flow family's Gradio demo: sample with a temperature, score a drawing against the test set, and run the
exact round trip image -> z -> image.

Each tab calls one plain function of this module, which can be tested without a browser:

    sample_grid(pipe, seed, num_images, temperature)   z ~ N(0, T^2 I) -> x = f^-1(z), tiled
    test_set_bits_per_dim(pipe, dataset, num_images)   per-image bits/dim of the first test images (the meter's
                                                       reference), one dequantization draw each from seed 0
    score_drawing(pipe, sketch, reference)             sketchpad -> model input x, its bits/dim beside the test
                                                       set's (histogram and percentile: an out-of-distribution
                                                       meter), and its round trip x -> z -> x'
    round_trip(pipe, images)                           x -> z = f(x) -> f^-1(z): the images, z laid out on the
                                                       pixel grid, the reconstruction and the largest error
    test_image_round_trip(pipe, dataset, index)        the same for one test image

`build_demo(pipeline_or_path, dataset=None)` wires them into a `gr.Blocks`; every event has an `api_name`
("sample", "score", "round_trip"). The test set comes from `dataset` or the `"dataset"` recorded in the model
folder's hubgen_training.json; its reference bits/dim are computed on first use and kept. gradio is imported
inside `build_demo` only. Invalid arguments raise ValueError naming the argument and the value; inside the UI
they become `gr.Error`.

Colour: sampling, the round trip and the meter work for any number of channels (grey or RGB). The sketchpad draws
grey ink; for an RGB model the drawing's grey value is repeated in R, G and B (a grey image, as the tab says).

A likelihood is not a reliable out-of-distribution score on its own (Nalisnick et al., arXiv:1810.09136: flows
can give higher likelihood to other data sets): the meter illustrates, it does not certify.
"""

import math
import os

import numpy as np
import torch
from PIL import Image

from ..demo_utils import (
    MAX_IMAGES,
    MAX_SEED,
    TRAINING_INFO,
    DatasetUnavailableError,
    EmptyCanvasError,
    check_int,
    demo_event,
    image_out,
    load_family_pipeline,
    preprocess_sketch,
    recorded_training_dataset,
    seed_box,
    show_grid,
    sketchpad,
)
from .family import FAMILY
from .pipeline_flow import MAX_TEMPERATURE, FlowPipeline, check_temperature
from .transforms import unsqueeze

__all__ = [
    "DatasetUnavailableError",
    "EmptyCanvasError",
    "build_demo",
    "load_pipeline",
    "training_dataset_of",
    "describe",
    "sample_grid",
    "latents_on_pixel_grid",
    "round_trip",
    "test_image_round_trip",
    "test_set_bits_per_dim",
    "percentile_of",
    "meter_plot",
    "score_drawing",
]

NUM_REFERENCE = 500  # test images behind the out-of-distribution meter


# -- inputs and loading ---------------------------------------------------------------------------------


def load_pipeline(pipeline_or_path) -> tuple[FlowPipeline, str]:
    """A FlowPipeline, or a folder path / Hub repo id to load one from -> (pipeline, name to show)."""
    return load_family_pipeline(pipeline_or_path, FlowPipeline)


def training_dataset_of(pipeline_or_path):
    """The data (a hubgen.data.DataSpec) recorded in a local model folder's hubgen_training.json (or a Hub
    repo's, when it can be fetched), or None."""
    return recorded_training_dataset(pipeline_or_path, FlowPipeline)


def _colour(channels: int) -> str:
    return {1: "grey", 3: "RGB"}.get(channels, f"{channels}-channel")


def describe(pipe: FlowPipeline) -> str:
    """One line: the architecture, the image size and the dequantization."""
    cfg = pipe.flow.config
    pre = "no logit" if cfg.logit_alpha is None else f"logit α = {cfg.logit_alpha}"
    return (
        f"Multi-scale Glow/RealNVP flow (arXiv:1807.03039, arXiv:1605.08803) · {cfg.num_levels} levels × "
        f"{cfg.steps_per_level} steps, width {cfg.hidden_channels} · {cfg.sample_size}×{cfg.sample_size} "
        f"{_colour(cfg.in_channels)} images, {cfg.pixel_levels} levels per channel · {cfg.dequantization} "
        f"dequantization · {pre}"
    )


# -- sampling -------------------------------------------------------------------------------------------


def sample_grid(pipe: FlowPipeline, seed: int, num_images: int, temperature: float = 0.7) -> Image.Image:
    """Draw `num_images` samples x = f^-1(z), z ~ N(0, T^2 I), from `seed` and tile them."""
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
    temperature = check_temperature(temperature)
    generator = torch.Generator().manual_seed(seed)
    images = pipe(num_images, generator=generator, temperature=temperature, output_type="pt").images
    return show_grid(images, nrow=math.ceil(math.sqrt(num_images)))


# -- the round trip -------------------------------------------------------------------------------------


def latents_on_pixel_grid(pipe: FlowPipeline, z: torch.Tensor) -> torch.Tensor:
    """z (B, D) -> (B, C, H, W): each latent placed back where the multi-scale architecture took it from (the
    factored-out eps of every level and the last level's, unsqueezed like the flow's inverse, without its
    layers), so that the picture shows which region each part of z describes."""
    flow = pipe.flow
    eps = list(z.split([math.prod(s) for s in flow.latent_shapes], dim=1))
    h = eps[-1].reshape(-1, *flow.latent_shapes[-1])
    for level in reversed(range(len(flow.levels))):
        if level < len(flow.splits):
            h = torch.cat([h, eps[level].reshape(-1, *flow.latent_shapes[level])], dim=1)
        h = unsqueeze(h)
    return h


def round_trip(pipe: FlowPipeline, images: torch.Tensor, seed: int = 0) -> tuple[Image.Image, str]:
    """images (B, C, H, W) in [0, 1] -> x = (k + u) / L -> z = f(x) -> x' = f^-1(z).

    Returns one strip per image (x | z on the pixel grid, mapped from [-3, 3] to [0, 1] | x' at its level)
    and a Markdown line with max |x - x'| and whether every level came back.
    """
    seed = check_int(seed, "seed", 0, MAX_SEED)
    flow = pipe.flow
    images = pipe._images(images)
    with torch.no_grad():
        x, _ = flow.dequantize(images, generator=torch.Generator().manual_seed(seed))
        z, log_det = flow(x)
        x_back, log_det_back = flow.inverse(z)
    shown_x = flow.to_intensities(x).float().cpu()
    shown_back = flow.to_intensities(x_back).float().cpu()
    z_image = ((latents_on_pixel_grid(pipe, z.float().cpu()) + 3) / 6).clamp(0, 1)
    tiles = torch.stack([shown_x, z_image, shown_back], dim=1).flatten(0, 1)  # (3B, C, H, W)
    error = (x - x_back).abs().max().item()
    same = bool(torch.equal(shown_x, shown_back))
    text = (
        f"**x → z → x′**: max |x − x′| = **{error:.2e}** (float{torch.finfo(x.dtype).bits}); "
        f"log-determinants {(log_det + log_det_back).abs().max().item():.1e} apart; "
        f"every level came back: **{'yes' if same else 'no'}**. "
        f"z has {flow.num_dims} dimensions, as many as the image: a flow keeps all the information."
    )
    return show_grid(tiles, nrow=3), text


def test_image_round_trip(pipe: FlowPipeline, dataset, index: int, seed: int = 0) -> tuple[Image.Image, str]:
    """The round trip of test image `index` of `dataset`."""
    test = _test_set(pipe, dataset)
    index = check_int(index, "index", 0, len(test) - 1)
    strip, text = round_trip(pipe, test.take([index]).float() / 255.0, seed)
    return strip, f"Test image {index} of `{dataset}`. " + text


# -- the out-of-distribution meter ----------------------------------------------------------------------


def _test_set(pipe: FlowPipeline, dataset):
    from ..data import load_dataset

    if dataset is None:
        raise DatasetUnavailableError(
            "No test set is known for this model (no `dataset` was given and its folder has no "
            f"{TRAINING_INFO}): the comparison with test images is unavailable."
        )
    try:
        test = load_dataset(dataset if hasattr(dataset, "load") else os.fspath(dataset), "test")  # DataSpec or path
    except ValueError as e:
        raise DatasetUnavailableError(f"Cannot load the test images of `{dataset}`: {e}") from e
    cfg = pipe.flow.config
    if test.image_shape != (cfg.in_channels, cfg.sample_size, cfg.sample_size):
        raise DatasetUnavailableError(
            f"The test images of `{dataset}` are {test.image_shape} (C, H, W) but the model takes "
            f"{(cfg.in_channels, cfg.sample_size, cfg.sample_size)}: pass the dataset the model was trained on."
        )
    return test


def test_set_bits_per_dim(pipe: FlowPipeline, dataset, num_images: int = NUM_REFERENCE) -> np.ndarray:
    """Per-image bits/dim of the first `num_images` test images of `dataset` (one dequantization draw each,
    seed 0), float64 (N,). Raises DatasetUnavailableError."""
    test = _test_set(pipe, dataset)
    n = min(check_int(num_images, "num_images", 1, 100_000), len(test))
    g = torch.Generator().manual_seed(0)
    bits = [pipe.log_likelihood(test.take(list(range(i, min(i + 500, n)))).float() / 255.0, generator=g).bits_per_dim
            for i in range(0, n, 500)]  # fmt: skip
    return torch.cat(bits).double().cpu().numpy()


def percentile_of(value: float, reference: np.ndarray) -> float:
    """The share of reference images (in %) whose bits/dim are at most `value`: 99 means only 1% of test
    images are less likely than this one under the model."""
    return float(100.0 * np.mean(np.asarray(reference) <= value))


def meter_plot(value: float, reference: np.ndarray) -> Image.Image:
    """A histogram of the reference bits/dim with a line at `value`, as a PIL image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=100)
    ax.hist(reference, bins=30, color="tab:blue", alpha=0.75, label=f"{len(reference)} test images")
    ax.axvline(value, color="tab:red", lw=2, label=f"your drawing: {value:.3f}")
    ax.set_xlabel("bits/dim (lower = more likely)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return image


def score_drawing(pipe: FlowPipeline, sketch, reference: np.ndarray | None = None, seed: int = 0):
    """Sketchpad value -> (model input x, round-trip strip, meter plot or None, Markdown).

    The drawing is cropped and scaled like the VAE demo's (hubgen.demo_utils.preprocess_sketch), quantized to
    the model's levels and dequantized with `seed`. Raises EmptyCanvasError without ink. The ink is grey: for a
    model of C > 1 channels its value is repeated in every channel (a grey image in RGB).
    """
    seed = check_int(seed, "seed", 0, MAX_SEED)
    size, channels = pipe.flow.config.sample_size, pipe.flow.config.in_channels
    x = torch.from_numpy(preprocess_sketch(sketch, size))[None, None]  # (1, 1, S, S) in [0, 1]
    x = x.expand(1, channels, size, size).contiguous()  # grey ink in every channel (1, C, S, S)
    bits = pipe.log_likelihood(x, generator=torch.Generator().manual_seed(seed)).bits_per_dim.item()
    strip, trip_text = round_trip(pipe, x, seed)
    lines = [f"- **{bits:.3f} bits/dim** for your drawing (one dequantization draw, seed {seed})."]
    plot = None
    if reference is not None and len(reference):
        pct = percentile_of(bits, reference)
        median = float(np.median(reference))
        verdict = (
            "typical of the test set"
            if pct <= 95
            else "less likely than 95% of test images: possibly out of distribution"
        )
        lines.append(
            f"- Test set ({len(reference)} images): median {median:.3f} bits/dim; your drawing scores higher "
            f"(worse) than **{pct:.1f}%** of them: {verdict}."
        )
        plot = meter_plot(bits, reference)
    lines.append(f"- {trip_text}")
    shown = pipe.flow.quantize(x) / (pipe.flow.config.pixel_levels - 1)  # the levels the model scores
    return show_grid(shown, nrow=1, padding=0), strip, plot, "\n".join(lines)


# -- the app --------------------------------------------------------------------------------------------


def build_demo(pipeline_or_path, dataset=None, num_reference: int = NUM_REFERENCE):
    """Build the flow demo: a `gr.Blocks` with Sample, Draw and score, and Round trip tabs.

    `pipeline_or_path` is a FlowPipeline, a local folder or a Hub repo id; `dataset` (a name or path for
    `hubgen.data.load_dataset`) provides the test images of the meter and the round trip, by default the one
    recorded in the model's hubgen_training.json. Launch it with `.launch()`.
    """
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    dataset = os.fspath(dataset) if dataset is not None else training_dataset_of(pipeline_or_path)
    cfg = pipe.flow.config
    cache: dict = {}
    # the sketchpad draws grey ink: an RGB model scores it as a grey image (the value repeated in R, G and B)
    grey_note = "" if cfg.in_channels == 1 else f" (grey ink: the same value in all {cfg.in_channels} channels)"

    def reference():
        """The test set's bits/dim, computed on first use (None when there is no test set)."""
        if "bits" not in cache:
            try:
                cache["bits"] = test_set_bits_per_dim(pipe, dataset, num_reference)
            except DatasetUnavailableError as e:
                gr.Warning(str(e))
                return None
        return cache["bits"]

    @demo_event
    def sample(seed, num_images, temperature):
        return sample_grid(pipe, seed, num_images, temperature)

    @demo_event
    def score(sketch, progress=gr.Progress()):  # noqa: B008  (gradio's progress idiom)
        progress(0, desc="Scoring the test set (first use only)")
        ref = reference()
        try:
            return score_drawing(pipe, sketch, ref)
        except EmptyCanvasError as e:
            gr.Warning(str(e))
            return None, None, None, f"*{e}*"

    @demo_event
    def trip(index, seed):
        try:
            return test_image_round_trip(pipe, dataset, index, seed)
        except DatasetUnavailableError as e:
            gr.Warning(str(e))
            return None, f"*{e}*"

    with gr.Blocks(title=f"hubgen flow · {name}") as demo:
        gr.Markdown(f"# hubgen flow demo\n**Model:** `{name}`  \n{describe(pipe)}")

        with gr.Tab("Sample"):
            gr.Markdown(
                "Samples x = f⁻¹(z), z ~ N(0, T² I), shown at their level. T = 1 samples the model's density; "
                "lower temperatures (Glow uses 0.7) give cleaner but less varied images."
            )
            with gr.Row():
                seed = seed_box("Seed")
                num_images = gr.Slider(
                    1, MAX_IMAGES, value=16, step=1, precision=0, label="Number of images", interactive=True
                )
                temperature = gr.Slider(
                    0,
                    MAX_TEMPERATURE,
                    value=FAMILY.sample_default("temperature"),
                    step=0.05,
                    label="Temperature T (1: the model's distribution)",
                    interactive=True,
                )
            button = gr.Button("Sample", variant="primary")
            samples = image_out("Samples")
            button.click(sample, [seed, num_images, temperature], samples, api_name="sample")

        with gr.Tab("Draw and score"):
            gr.Markdown(
                f"Draw a digit: it is cropped, scaled to {cfg.sample_size}×{cfg.sample_size} and quantized to "
                f"{cfg.pixel_levels} levels{grey_note}. Its bits/dim (one dequantization draw) is shown beside "
                f"those of the first {num_reference} test images of `{dataset}` (all of them if the split is smaller; "
                "the result names the count): an out-of-distribution meter (an illustration: a "
                "likelihood alone is not a reliable detector, Nalisnick et al. 2019)."
                if dataset
                else "Draw a digit and see its bits/dim (one dequantization draw). *No test set is known for this "
                "model: pass `dataset` to `build_demo` (or set HUBGEN_DATASET in the Space) to compare with test "
                "images.*"
            )
            with gr.Row():
                sketch = sketchpad("Your digit")
                with gr.Column():
                    model_input = image_out(f"Model input ({cfg.sample_size}×{cfg.sample_size})")
                    strip = image_out("Round trip: x | z | f⁻¹(z)")
            button = gr.Button("Score", variant="primary")
            meter = image_out("Bits/dim: your drawing against the test set")
            scores = gr.Markdown()
            button.click(score, sketch, [model_input, strip, meter, scores], api_name="score")

        with gr.Tab("Round trip"):
            gr.Markdown(
                "A test image x goes to z = f(x) and back. The flow is a bijection: x′ = f⁻¹(f(x)) equals x up "
                "to floating-point error, and z (shown on the pixel grid, −3 black … 3 white) has as many "
                "dimensions as the image."
            )
            with gr.Row():
                index = gr.Number(value=0, label="Test image index", precision=0, minimum=0, interactive=True)
                trip_seed = seed_box("Dequantization seed")
            button = gr.Button("Encode and decode", variant="primary")
            trip_strip = image_out("x | z | f⁻¹(z)")
            trip_text = gr.Markdown()
            button.click(trip, [index, trip_seed], [trip_strip, trip_text], api_name="round_trip")

    return demo
