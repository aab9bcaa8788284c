"""The GAN family's Gradio demo: sample with the truncation trick, interpolate, and look up the nearest
training images of a sample.

Each tab calls one plain function of this module, which can be tested without a browser:

    sample_grid(pipe, seed, num_images, truncation)    z ~ N(0, I) (or truncated to |z_i| <= t) -> G(z), tiled
    interpolation_strip(pipe, seed_a, seed_b, steps)   G(slerp(z_A, z_B; t)), t in [0, 1] (White, arXiv:1609.04468)
    nearest_training_images(pipe, dataset, seed, index, num_images, truncation)
                                                       one sample beside its k = 5 nearest training images
                                                       (pixel-space Euclidean distance), with the distances

The truncation trick (Brock et al., arXiv:1809.11096) redraws every latent coordinate into [-t, t]; in the UI
t = 0 means "off" (the full prior N(0, I)). The sample of the nearest-neighbour tab is tile `index` (0 = top
left, reading order) of the Sample tab's grid for the same seed, number of images and truncation.

`build_demo(pipeline_or_path, dataset=None)` wires them into a `gr.Blocks`; every event has an `api_name`
("sample", "interpolate", "nearest"), so `gradio_client` can call them. The training set comes from `dataset`
or, for a model folder / Hub repo, from the `"dataset"` entry of its `hubgen_training.json`; without one, the
nearest-neighbour tab says so. Training images are loaded on first use and cached per dataset. gradio is
imported inside `build_demo` only: importing this module does not pay for it.

Invalid arguments raise ValueError naming the argument and the value; inside the UI they become `gr.Error`.
The generic helpers (`check_int`, `show_grid`, the limits MAX_SEED, MAX_IMAGES, MAX_STEPS) are hubgen.demo_utils'.
"""

import functools
import math
import os

import numpy as np
import torch
from PIL import Image

from ..demo_utils import (
    MAX_IMAGES,
    MAX_SEED,
    MAX_STEPS,
    TRAINING_INFO,
    DatasetUnavailableError,
    check_int,
    demo_event,
    image_out,
    load_family_pipeline,
    recorded_training_dataset,
    seed_box,
    show_grid,
)
from ..errors import UserInputError
from .pipeline_gan import GANPipeline

__all__ = [
    "DatasetUnavailableError",
    "build_demo",
    "load_pipeline",
    "training_dataset_of",
    "describe",
    "check_truncation",
    "sample_grid",
    "interpolation_strip",
    "training_images",
    "nearest_training",
    "nearest_training_images",
]

MAX_TRUNCATION = 3.0
NEAREST_K = 5  # training images shown beside a sample


# -- inputs and loading ---------------------------------------------------------------------------------


def check_truncation(value) -> float | None:
    """The UI's truncation value -> None (0: off, the full prior) or t in (0, 3]; else ValueError."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not 0 <= value <= MAX_TRUNCATION:
        raise UserInputError(f"`truncation` must be a number in [0, {MAX_TRUNCATION:g}] (0 = off), got {value!r}.")
    return None if value == 0 else float(value)


def load_pipeline(pipeline_or_path) -> tuple[GANPipeline, str]:
    """A GANPipeline, or a folder path / Hub repo id to load one from -> (pipeline, name to show).

    The generator is put in eval mode: batch norm then uses its running statistics, so an image does not
    depend on the other images drawn in the same batch.
    """
    pipe, name = load_family_pipeline(pipeline_or_path, GANPipeline)
    pipe.generator.eval()
    return pipe, name


def training_dataset_of(pipeline_or_path):
    """The data (a hubgen.data.DataSpec) recorded in the model's hubgen_training.json (a local folder, or a Hub
    repo id if the file can be fetched), or None when there is no such record."""
    return recorded_training_dataset(pipeline_or_path, GANPipeline)


def describe(pipe: GANPipeline) -> str:
    """One line: family, architecture, latent size, image size and colour."""
    cfg = pipe.generator.config
    arch = "the paper's 64x64 architecture" if cfg.get("architecture") == "dcgan" else "small two-stage generator"
    colour = "RGB" if cfg.in_channels == 3 else ("grey" if cfg.in_channels == 1 else f"{cfg.in_channels}-channel")
    return (
        f"DCGAN generator (Radford et al., arXiv:1511.06434), {arch} · latent size {cfg.latent_dim} · "
        f"{cfg.sample_size}×{cfg.sample_size} {colour} images"
    )


# -- sampling -------------------------------------------------------------------------------------------


def _draw(pipe: GANPipeline, seed, num_images, truncation) -> tuple[torch.Tensor, int, float | None]:
    """Validate the Sample tab's inputs and draw its images -> ((B, C, H, W) in [0, 1], seed, truncation)."""
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
    truncation = check_truncation(truncation)
    generator = torch.Generator().manual_seed(seed)
    images = pipe(num_images, generator=generator, truncation=truncation, output_type="pt").images
    return images, seed, truncation


def sample_grid(pipe: GANPipeline, seed: int, num_images: int, truncation: float = 0) -> Image.Image:
    """Draw `num_images` images G(z) from `seed` and tile them; `truncation` t > 0 draws z with |z_i| <= t."""
    images, _, _ = _draw(pipe, seed, num_images, truncation)
    return show_grid(images, nrow=math.ceil(math.sqrt(len(images))))


def interpolation_strip(pipe: GANPipeline, seed_a: int, seed_b: int, steps: int) -> Image.Image:
    """Decode `steps` points along the great circle from z_A to z_B (z ~ N(0, I) from the two seeds)."""
    seed_a = check_int(seed_a, "seed_a", 0, MAX_SEED)
    seed_b = check_int(seed_b, "seed_b", 0, MAX_SEED)
    steps = check_int(steps, "steps", 2, MAX_STEPS)
    images = pipe.interpolate(seed_a, seed_b, steps=steps, output_type="pt")  # (steps, C, H, W)
    return show_grid(images, nrow=steps)


# -- nearest training images ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _cached_training_images(dataset: str) -> torch.Tensor:
    from ..data import load_dataset

    try:
        train = load_dataset(dataset, "train")
        images = train.take(len(train))  # (N, C, H, W) uint8, no augmentation
    except ValueError as e:
        raise DatasetUnavailableError(f"Cannot load the training images of `{dataset}`: {e}") from e
    return images.float().div_(255.0)  # (N, C, H, W) float32 in [0, 1]; MNIST's 60000 take 188 MB


def training_images(dataset) -> torch.Tensor:
    """The train split of `dataset` (a name or a path) as float32 (N, C, H, W) in [0, 1], cached per dataset
    (the last 4), so only the first lookup pays for loading. Raises DatasetUnavailableError."""
    if dataset is None:
        raise DatasetUnavailableError(
            "No training dataset is known for this model (no `dataset` was given and its folder has no "
            f"{TRAINING_INFO}): nearest training images are unavailable."
        )
    return _cached_training_images(dataset if hasattr(dataset, "load") else os.fspath(dataset))  # a DataSpec or a path


def nearest_training(sample: torch.Tensor, references: torch.Tensor, k: int = NEAREST_K):
    """The `k` references closest to one `sample` in pixel space, nearest first -> (distances (k,) float64,
    indices (k,) int64); distances are ||sample - r||_2 over the flattened intensities in [0, 1].

    The metric of `hubgen.metrics.nearest_neighbours` (whose first neighbour this is), for k > 1: candidates
    are ranked in float32 by ||r||^2 - 2 <r, q> (no (N, D) temporary), then k + 16 of them are rescored
    exactly in float64, so near-ties are ordered by their true distance.
    """
    k = check_int(k, "k", 1, len(references))
    q = sample.reshape(-1).float()  # (D,)
    r = references.reshape(len(references), -1)  # (N, D)
    if r.shape[1] != q.numel():
        raise UserInputError(f"The sample has {q.numel()} values but each reference has {r.shape[1]}.")
    score = torch.linalg.vector_norm(r, dim=1).square() - 2 * (r @ q)  # (N,) = ||r - q||^2 - ||q||^2
    candidates = score.topk(min(len(r), k + 16), largest=False).indices  # (m,)
    exact = torch.linalg.vector_norm(r[candidates].double() - q.double(), dim=1)  # (m,)
    order = torch.argsort(exact, stable=True)[:k]
    return exact[order].numpy(), candidates[order].numpy()


def nearest_training_images(
    pipe: GANPipeline,
    dataset,
    seed: int,
    index: int = 0,
    num_images: int = 1,
    truncation: float = 0,
    k: int = NEAREST_K,
) -> tuple[Image.Image, str]:
    """Sample `index` (0 = top left) of the grid `sample_grid(pipe, seed, num_images, truncation)`, beside its
    `k` nearest training images of `dataset` -> (one strip, Markdown line with the indices and distances).

    With the defaults (index 0 of 1 image) a seed alone picks the sample. Raises ValueError for bad arguments
    and DatasetUnavailableError (a ValueError) when the training set is unknown, unreadable or of another size.
    """
    num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
    index = check_int(index, "index", 0, num_images - 1)
    images, seed, truncation = _draw(pipe, seed, num_images, truncation)
    references = training_images(dataset)
    sample = images[index]  # (C, H, W)
    if references.shape[1:] != sample.shape:
        raise DatasetUnavailableError(
            f"The training images of `{dataset}` are {tuple(references.shape[1:])} (C, H, W) but the model "
            f"makes {tuple(sample.shape)}: pass the dataset the model was trained on."
        )
    distances, indices = nearest_training(sample, references, k)
    strip = show_grid(torch.cat([sample[None], references[torch.from_numpy(indices)]]), nrow=len(indices) + 1)
    trunc = "off" if truncation is None else f"|z_i| ≤ {truncation:g}"
    found = " · ".join(f"#{i}: **{d:.3f}**" for i, d in zip(indices.tolist(), distances.tolist(), strict=True))
    text = (
        f"Sample {index} of {num_images} (seed {seed}, truncation {trunc}), then its {len(indices)} nearest of "
        f"the {len(references)} training images of `{dataset}`, by pixel-space Euclidean distance on "
        f"{sample.numel()} intensities in [0, 1]: {found}"
    )
    return strip, text


# -- the app --------------------------------------------------------------------------------------------


def build_demo(pipeline_or_path, dataset=None):
    """Build the GAN demo: a `gr.Blocks` with Sample, Interpolate and Nearest training images tabs.

    `pipeline_or_path` is a GANPipeline, a local folder or a Hub repo id; `dataset` (a name or path for
    `hubgen.data.load_dataset`) is the training set for the nearest-neighbour tab, by default the one recorded
    in the model's hubgen_training.json. Launch it with `.launch()`.
    """
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    dataset = os.fspath(dataset) if dataset is not None else training_dataset_of(pipeline_or_path)
    cfg = pipe.generator.config

    @demo_event
    def sample(seed, num_images, truncation):
        return sample_grid(pipe, seed, num_images, truncation)

    @demo_event
    def interpolate(seed_a, seed_b, steps):
        return interpolation_strip(pipe, seed_a, seed_b, steps)

    @demo_event
    def nearest(seed, num_images, index, truncation):
        try:
            return nearest_training_images(pipe, dataset, seed, index, num_images, truncation)
        except DatasetUnavailableError as e:
            gr.Warning(str(e))
            return None, f"*{e}*"

    def sample_inputs():
        """Seed, number of images and truncation, with the Sample tab's defaults."""
        seed = seed_box("Seed")
        num_images = gr.Slider(1, MAX_IMAGES, value=16, step=1, precision=0, label="Number of images", interactive=True)
        truncation = gr.Slider(
            0, MAX_TRUNCATION, value=0, step=0.05, label="Truncation t (0 = off; else |z_i| ≤ t)", interactive=True
        )
        return seed, num_images, truncation

    with gr.Blocks(title=f"hubgen GAN · {name}") as demo:
        gr.Markdown(f"# hubgen GAN demo\n**Model:** `{name}`  \n{describe(pipe)}")

        with gr.Tab("Sample"):
            gr.Markdown(
                "Images G(z), z ~ N(0, I). The truncation trick (Brock et al., arXiv:1809.11096) redraws "
                "each coordinate of z into [-t, t]: smaller t trades diversity for fidelity."
            )
            with gr.Row():
                seed, num_images, truncation = sample_inputs()
            button = gr.Button("Sample", variant="primary")
            samples = image_out("Samples G(z)")
            button.click(sample, [seed, num_images, truncation], samples, api_name="sample")

        with gr.Tab("Interpolate"):
            with gr.Row():
                seed_a, seed_b = seed_box("Seed A", 0), seed_box("Seed B", 1)
                steps = gr.Slider(2, MAX_STEPS, value=10, step=1, precision=0, label="Steps", interactive=True)
            button = gr.Button("Interpolate along the great circle from z_A to z_B", variant="primary")
            strip = image_out("Interpolation (spherical)")
            button.click(interpolate, [seed_a, seed_b, steps], strip, api_name="interpolate")

        with gr.Tab("Nearest training images"):
            if dataset is None:
                gr.Markdown(
                    "*No training dataset is known for this model: pass `dataset` to `build_demo` (or set "
                    "HUBGEN_DATASET in the Space) to compare samples with the training images.*"
                )
            else:
                gr.Markdown(
                    f"Does the generator copy its training set? The chosen sample (tile `index`, 0 = top left, "
                    f"of the Sample tab's grid for the same seed, number and truncation) is shown first, then "
                    f"its {NEAREST_K} nearest training images of `{dataset}` in pixel space "
                    f"({cfg.in_channels}×{cfg.sample_size}×{cfg.sample_size} intensities in [0, 1], every channel "
                    "counted). Pixel distance flags exact "
                    "or near copies only: a shifted copy is far away."
                )
            with gr.Row():
                nn_seed, nn_num_images, nn_truncation = sample_inputs()
                nn_index = gr.Number(
                    value=0, label="Sample index (0 = top left)", precision=0, minimum=0, interactive=True
                )
            button = gr.Button("Find the nearest training images", variant="primary")
            neighbours = image_out("Sample, then its nearest training images")
            distances = gr.Markdown()
            button.click(
                nearest,
                [nn_seed, nn_num_images, nn_index, nn_truncation],
                [neighbours, distances],
                api_name="nearest",
            )

    return demo
