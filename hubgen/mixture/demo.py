"""Gradio demo of a mixture model: its components, the responsibilities p(z | x) of a drawing, and samples.

    components_view(pipe, num_shown)        the component means E[x | z = k] as a grid, heaviest first, and pi_k
    responsibilities_view(pipe, sketch)     the drawing as the data are made, its p(z = k | x) and NLL
    sample_grid(pipe, seed, num_images, show)   z ~ Categorical(pi), then x ~ p(x | z) (or E[x | z])

Every event has an API name ("components", "responsibilities", "sample"). gradio is imported inside `build_demo`.
"""

import math

import torch
from PIL import Image

from ..demo_utils import (
    MAX_IMAGES,
    MAX_SEED,
    check_int,
    demo_event,
    image_out,
    load_family_pipeline,
    preprocess_sketch,
    seed_box,
    show_grid,
    sketchpad,
    upscale,
)
from ..errors import UserInputError
from .family import FAMILY
from .pipeline_mixture import SHOW_CHOICES, MixturePipeline

MAX_SHOWN = 100  # component means in one grid
TOP = 5  # components listed for a drawing


def load_pipeline(pipeline_or_path):
    pipe, name = load_family_pipeline(pipeline_or_path, MixturePipeline)
    pipe.set_progress_bar_config(disable=True)
    return pipe, name


def components_view(pipe: MixturePipeline, num_shown) -> tuple[Image.Image, str]:
    """The `num_shown` heaviest components' means as a grid (row by row, heaviest first) and a table of their pi_k."""
    k = pipe.model.config.num_components
    num_shown = check_int(num_shown, "num_shown", 1, MAX_SHOWN)
    means, weights = pipe.component_means()
    n = min(num_shown, k)
    nrow = min(10, math.ceil(math.sqrt(n)))
    rows = [f"| {i + 1} | {float(w):.4f} |" for i, w in enumerate(weights[:n])]
    text = (f"The {n} heaviest of {k} components, row by row: the mean image E[x | z = k] of each, and its weight "
            f"pi_k (they sum to 1 over all {k}; shown: {float(weights[:n].sum()):.3f}).\n\n"
            "| position | pi_k |\n|---|---|\n" + "\n".join(rows))  # fmt: skip
    return show_grid(means[:n], nrow=nrow), text


def responsibilities_view(pipe: MixturePipeline, sketch) -> tuple[Image.Image, Image.Image, str]:
    """The drawing centred and scaled as the training digits are, the means of its most responsible components, and
    p(z = k | x) with the drawing's NLL. A Bernoulli mixture sees the drawing thresholded at 1/2; a Gaussian one
    its levels dequantized with the middle of each bin (u = 1/2)."""
    cfg = pipe.model.config
    if cfg.in_channels != 1 or cfg.height != cfg.width:
        raise UserInputError("Drawing needs a model of square grey images.")
    ink = torch.from_numpy(preprocess_sketch(sketch, cfg.height))[None, None]  # (1, 1, H, W) in [0, 1]
    if cfg.distribution == "bernoulli":
        scores = pipe.log_likelihood(ink, binarize_inputs=False)
        seen = (ink >= 0.5).float()
    else:
        levels = torch.round(ink * (cfg.pixel_levels - 1))
        ink = levels / (cfg.pixel_levels - 1)
        scores = pipe.log_likelihood(ink, fixed_u=0.5)
        seen = ink
    r = scores.responsibilities[0]  # (K,)
    top = torch.argsort(r, descending=True)[:TOP]
    means = pipe.model.component_means.detach()[top].reshape(-1, *pipe.model.image_shape).float().clamp(0, 1)
    weights = pipe.model.log_weights.detach().exp()
    rows = [f"| {int(k)} | {float(r[k]):.4f} | {float(weights[k]):.4f} |" for k in top]
    text = (f"- **p(z = k | x)**, the E-step's responsibilities of your drawing: the most responsible components "
            f"(their means shown, left to right).\n- NLL -log P(x) = **{scores.nll_nats.item():.2f} nats** "
            f"({scores.bits_per_dim.item():.4f} bits/dim)"
            f"{'' if cfg.distribution == 'bernoulli' else ', a dequantization bound'}.\n\n"
            "| component | p(z = k \\| x) | pi_k |\n|---|---|---|\n" + "\n".join(rows))  # fmt: skip
    model_input = upscale(Image.fromarray((seen[0, 0] * 255).round().byte().numpy()), cfg.height)
    return model_input, show_grid(means, nrow=len(top)), text


def sample_grid(pipe: MixturePipeline, seed, num_images, show="samples") -> Image.Image:
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
    if show not in SHOW_CHOICES:
        raise UserInputError(f"`show` must be one of {SHOW_CHOICES}, got {show!r}.")
    images = pipe(num_images, generator=torch.Generator().manual_seed(seed), show=show, output_type="pt").images
    return show_grid(images, nrow=math.ceil(math.sqrt(num_images)))


def build_demo(pipeline_or_path):
    """Build the mixture demo: a `gr.Blocks` with Components, Responsibilities and Sample tabs."""
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    cfg = pipe.model.config

    @demo_event
    def components(num_shown):
        return components_view(pipe, num_shown)

    @demo_event
    def responsibilities(sketch):
        return responsibilities_view(pipe, sketch)

    @demo_event
    def sample(seed, num_images, show):
        return sample_grid(pipe, seed, num_images, show)

    kind = ("Bernoulli images (binarized pixels)" if cfg.distribution == "bernoulli"
            else f"diagonal Gaussians (dequantized {cfg.pixel_levels}-level pixels)")  # fmt: skip
    with gr.Blocks(title=f"hubgen mixture · {name}") as demo:
        gr.Markdown(
            f"# hubgen mixture demo\n**Model:** `{name}`  \nA mixture of {cfg.num_components} {kind}, "
            f"{cfg.in_channels}x{cfg.height}x{cfg.width}: p(x) = sum_k pi_k p(x | z = k), fitted by EM."
        )
        with gr.Tab("Components"):
            num_shown = gr.Slider(1, min(MAX_SHOWN, cfg.num_components), value=min(20, cfg.num_components), step=1,
                                  precision=0, label="Components shown (heaviest first)", interactive=True)  # fmt: skip
            button = gr.Button("Show the component means", variant="primary")
            grid = image_out("Component means E[x | z = k]")
            weights_text = gr.Markdown()
            button.click(components, num_shown, [grid, weights_text], api_name="components")

        with gr.Tab("Responsibilities"):
            gr.Markdown("Draw a digit: it is centred and scaled as the training digits are, and the E-step computes "
                        "which components explain it, p(z = k | x).")  # fmt: skip
            with gr.Row():
                sketch = sketchpad("Your digit")
                with gr.Column():
                    model_input = image_out(f"Model input ({cfg.height}x{cfg.width})")
                    top_means = image_out(f"Means of the {TOP} most responsible components")
            button = gr.Button("Compute p(z | x)", variant="primary")
            resp_text = gr.Markdown()
            button.click(responsibilities, sketch, [model_input, top_means, resp_text], api_name="responsibilities")

        with gr.Tab("Sample"):
            with gr.Row():
                seed = seed_box("Seed")
                num_images = gr.Slider(1, MAX_IMAGES, value=16, step=1, precision=0, label="Number of images",
                                       interactive=True)  # fmt: skip
                show = gr.Radio(
                    list(SHOW_CHOICES),
                    value=FAMILY.sample_default("show"),
                    label="Show: x ~ p(x | z), or the drawn component's mean",
                    interactive=True,
                )
            button = gr.Button("Sample", variant="primary")
            samples = image_out("Samples")
            button.click(sample, [seed, num_images, show], samples, api_name="sample")
    return demo
