"""Gradio demo of a PixelCNN: sample, complete a drawn top half, and see where a drawing is likely or not.

    sample_grid(pipe, seed, num_images, temperature)   values drawn one by one in raster order
    complete_drawing(pipe, sketch, num_completions, seed)   the canvas as the top half, the rest drawn n times
    log_prob_map(pipe, sketch)                         the drawing as the data are made (centred, MNIST's box), its
                                                       exact NLL and the per-pixel log p(x_i | x_<i) as a heat map

Every event has an API name ("sample", "complete", "log_prob_map"). gradio is imported inside `build_demo` only.
"""

import math

import numpy as np
import torch
from PIL import Image

from ..demo_utils import (
    MAX_SEED,
    check_int,
    demo_event,
    image_out,
    load_family_pipeline,
    preprocess_sketch,
    seed_box,
    show_grid,
    sketch_to_ink,
    sketchpad,
    upscale,
)
from ..errors import UserInputError
from .family import FAMILY
from .pipeline_pixelcnn import PixelCNNPipeline

MAX_DEMO_IMAGES = 16  # sampling is sequential: one pass per value
MAX_COMPLETIONS = 8


def load_pipeline(pipeline_or_path):
    pipe, name = load_family_pipeline(pipeline_or_path, PixelCNNPipeline)
    pipe.set_progress_bar_config(disable=True)
    return pipe, name


def sample_grid(pipe: PixelCNNPipeline, seed, num_images, temperature=1.0) -> Image.Image:
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_DEMO_IMAGES)
    generator = torch.Generator().manual_seed(seed)
    images = pipe(num_images, generator=generator, temperature=temperature, output_type="pt").images
    return show_grid(images, nrow=math.ceil(math.sqrt(num_images)))


def _canvas_as_image(pipe: PixelCNNPipeline, sketch) -> torch.Tensor:
    """The whole canvas scaled to the model's frame (no recentring: the top of the canvas is the top of the image)."""
    cfg = pipe.model.config
    ink = sketch_to_ink(sketch)
    if not (ink > 0.1).any():
        raise UserInputError("The canvas is empty: draw the top half of a digit first.")
    small = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32)).resize(
        (cfg.sample_size, cfg.sample_size), Image.Resampling.BOX)  # fmt: skip
    x = torch.from_numpy(np.array(small, dtype=np.float32)).clamp(0, 1)
    return x[None, None].expand(1, cfg.in_channels, -1, -1)


def complete_drawing(pipe: PixelCNNPipeline, sketch, num_completions, seed) -> tuple[Image.Image, str]:
    """Keep the top half of the canvas, draw the bottom half `num_completions` times from `seed`."""
    n = check_int(num_completions, "num_completions", 1, MAX_COMPLETIONS)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    x = _canvas_as_image(pipe, sketch)
    size = pipe.model.config.sample_size
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[: size // 2] = True
    out = pipe.complete(x, mask, num_completions=n, generator=torch.Generator().manual_seed(seed), output_type="pt")
    shown = torch.cat([pipe.to_levels(x, binarize_inputs=False).float() / (pipe.model.config.pixel_levels - 1), out])
    text = (f"Left: your drawing as the model sees it (its top {size // 2} rows are kept). Then {n} completions: "
            "every value of the bottom half drawn in raster order given all values before it.")  # fmt: skip
    return show_grid(shown, nrow=n + 1), text


def log_prob_map(pipe: PixelCNNPipeline, sketch) -> tuple[Image.Image, Image.Image, str]:
    """The drawing as the model's input, a heat map of -log p(x_i | x_<i) per pixel (nats), and the totals."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps

    cfg = pipe.model.config
    ink = torch.from_numpy(preprocess_sketch(sketch, cfg.sample_size))
    x = ink[None, None].expand(1, cfg.in_channels, -1, -1)
    scores = pipe.log_likelihood(x, binarize_inputs=False)
    cost = (-scores.log_prob_map[0]).numpy()  # (H, W) nats
    rgb = (colormaps["magma"](cost / max(float(cost.max()), 1e-6))[..., :3] * 255).astype(np.uint8)
    heat = upscale(Image.fromarray(rgb), cfg.sample_size)
    seen = (pipe.to_levels(x, binarize_inputs=False)[0].float() / (cfg.pixel_levels - 1)).permute(1, 2, 0)  # (H, W, C)
    seen = (seen.squeeze(-1) if cfg.in_channels == 1 else seen).mul(255).round().byte().numpy()
    model_input = upscale(Image.fromarray(seen), cfg.sample_size)  # the same size as the heat map
    worst = np.unravel_index(cost.argmax(), cost.shape)
    text = (f"- **Exact NLL** -log p(x) = **{scores.nll_nats.item():.2f} nats** "
            f"({scores.bits_per_dim.item():.4f} bits/dim over {x[0].numel()} values): no bound.\n"
            f"- Brighter pixels cost more: -log p(x_i | x_<i) ranges from {cost.min():.2f} to {cost.max():.2f} nats; "
            f"the most surprising pixel is row {worst[0]}, column {worst[1]}.")  # fmt: skip
    return model_input, heat, text


def build_demo(pipeline_or_path):
    """Build the PixelCNN demo: a `gr.Blocks` with Sample, Complete and Log-probability map tabs."""
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    cfg = pipe.model.config

    @demo_event
    def sample(seed, num_images, temperature, progress=gr.Progress()):  # noqa: B008 (gradio's progress idiom)
        progress(0, desc="drawing values one by one")
        return sample_grid(pipe, seed, num_images, temperature)

    @demo_event
    def complete(sketch, num_completions, seed):
        return complete_drawing(pipe, sketch, num_completions, seed)

    @demo_event
    def score(sketch):
        return log_prob_map(pipe, sketch)

    kind = "binarized pixels" if cfg.pixel_levels == 2 else f"{cfg.pixel_levels} levels per value"
    with gr.Blocks(title=f"hubgen PixelCNN · {name}") as demo:
        gr.Markdown(f"# hubgen PixelCNN demo\n**Model:** `{name}`  \n{cfg.architecture} PixelCNN, "
                    f"{cfg.in_channels}x{cfg.sample_size}x{cfg.sample_size}, {kind}: p(x) = prod_i p(x_i | x_<i), "
                    "an exact likelihood; sampling draws one value per network pass.")  # fmt: skip
        with gr.Tab("Sample"):
            with gr.Row():
                seed = seed_box("Seed")
                num_images = gr.Slider(1, MAX_DEMO_IMAGES, value=4, step=1, precision=0, label="Number of images",
                                       interactive=True)  # fmt: skip
                temperature = gr.Slider(0.05, 2, value=FAMILY.sample_default("temperature"), step=0.05,
                                        label="Temperature T (1: the model's distribution)",
                                        interactive=True)  # fmt: skip
            button = gr.Button("Sample in raster order", variant="primary")
            samples = image_out("Samples")
            button.click(sample, [seed, num_images, temperature], samples, api_name="sample")

        with gr.Tab("Complete"):
            gr.Markdown("Draw the **top half** of a digit in the upper half of the canvas: the canvas is scaled to "
                        f"{cfg.sample_size}x{cfg.sample_size}, its top half kept, and the bottom half drawn by the "
                        "model several times.")  # fmt: skip
            with gr.Row():
                sketch_c = sketchpad("The top half of a digit")
                with gr.Column():
                    n_completions = gr.Slider(1, MAX_COMPLETIONS, value=4, step=1, precision=0,
                                              label="Completions", interactive=True)  # fmt: skip
                    seed_c = seed_box("Seed")
            button = gr.Button("Complete the bottom half", variant="primary")
            completions = image_out("Your drawing, then the completions")
            completion_text = gr.Markdown()
            button.click(complete, [sketch_c, n_completions, seed_c], [completions, completion_text],
                         api_name="complete")  # fmt: skip

        with gr.Tab("Log-probability map"):
            gr.Markdown("Draw a whole digit: it is centred and scaled as the training digits are, and scored exactly.")
            with gr.Row():
                sketch_s = sketchpad("Your digit")
                with gr.Column():
                    model_input = image_out(f"Model input ({cfg.sample_size}x{cfg.sample_size})")
                    heat = image_out("-log p(x_i | x_<i) per pixel")
            button = gr.Button("Score the drawing", variant="primary")
            score_text = gr.Markdown()
            button.click(score, sketch_s, [model_input, heat, score_text], api_name="log_prob_map")
    return demo
