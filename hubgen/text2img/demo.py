"""The text-to-image family's Gradio demo: type a prompt, get images; sweep the guidance scale. The example prompts
are digit prompts, or, for a model trained on a dataset's own captions, the validation prompts of its training
record (`example_prompts`).

Each tab calls one plain function of this module, which can be tested without a browser:

    generate(pipe, prompt, negative_prompt, guidance_scale, steps, sampler, seed, num_images)
        -> (grid of `num_images` samples, Markdown notes: tokens, unknown words, settings)
    guidance_strip(pipe, prompt, negative_prompt, steps, sampler, seed)
        -> one image per guidance scale in SWEEP_SCALES, all from the same initial noise

Classifier-free guidance (Ho & Salimans, arXiv:2207.12598): eps_w = eps(x_t, neg) + w (eps(x_t, prompt) -
eps(x_t, neg)) with neg the negative prompt ("" = the unconditional model); w = 1 is the conditional model
alone. Both functions take an optional `progress(fraction, desc=...)` callable, called after every
sampler step (the UI passes `gr.Progress`).

`build_demo(pipeline_or_path)` wires them into a `gr.Blocks`; every event has an `api_name` ("generate",
"sweep", and "example_prompt" for the examples that fill the prompt box). Invalid arguments raise ValueError
naming the argument and the value; in the UI they become `gr.Error`. gradio is imported inside `build_demo`.
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
    seed_box,
    show_grid,
)
from ..draws import randn_tensor
from ..errors import UserInputError
from .family import FAMILY
from .pipeline_text2img import SAMPLERS, Text2ImagePipeline

__all__ = [
    "build_demo",
    "load_pipeline",
    "describe",
    "check_guidance_scale",
    "check_sampler",
    "generate",
    "guidance_strip",
    "MAX_GUIDANCE",
    "MAX_INFERENCE_STEPS",
    "MAX_DEMO_IMAGES",
    "SWEEP_SCALES",
    "EXAMPLE_PROMPTS",
    "example_prompts",
]

MAX_GUIDANCE = 15.0
MAX_INFERENCE_STEPS = 100
MAX_DEMO_IMAGES = 16
SWEEP_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
DEFAULT_SAMPLER = "dpmsolver++"
EXAMPLE_PROMPTS = ("a handwritten digit seven", "the number 3", "eight", "a sketch of the number two", "4")


def load_pipeline(pipeline_or_path) -> tuple[Text2ImagePipeline, str]:
    """A Text2ImagePipeline, or a folder path / Hub repo id to load one from -> (pipeline, name to show)."""
    pipe, name = load_family_pipeline(pipeline_or_path, Text2ImagePipeline)
    pipe.set_progress_bar_config(disable=True)  # the UI shows its own progress
    return pipe, name


def example_prompts(pipe: Text2ImagePipeline) -> tuple[str, ...]:
    """The demo's example prompts: up to five validation prompts of the training record (found by the pipeline's
    `name_or_path`) for a model trained on a dataset's own captions, else EXAMPLE_PROMPTS (digit prompts)."""
    from ..model_folder import training_record
    from .captions import DIGIT_CAPTIONS

    try:
        record = training_record(pipe.name_or_path) if pipe.name_or_path else {}
    except ValueError:  # an unreadable record: the digit examples
        record = {}
    captioned = (record.get("captions") or {}).get("source", DIGIT_CAPTIONS) != DIGIT_CAPTIONS
    prompts = [p for p in record.get("validation_prompts") or [] if isinstance(p, str) and p.strip()]
    return tuple(prompts[:5]) if captioned and prompts else EXAMPLE_PROMPTS


def describe(pipe: Text2ImagePipeline) -> str:
    """One line: denoiser, image size, text encoder, vocabulary and prompt length."""
    u, te = pipe.unet.config, pipe.text_encoder
    hidden = getattr(te.config, "hidden_size", None) or getattr(te.config, "d_model", "?")
    return (
        f"UNet2DConditionModel · {u.sample_size}×{u.sample_size} images · text encoder {type(te).__name__} "
        f"(hidden size {hidden}) · vocabulary {len(pipe.tokenizer)} tokens · prompts up to "
        f"{pipe.max_prompt_length} tokens"
    )


def check_guidance_scale(value) -> float:
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not 0 <= value <= MAX_GUIDANCE:
        raise UserInputError(
            f"`guidance_scale` must be a number in [0, {MAX_GUIDANCE:g}] (1 = no guidance), got {value!r}."
        )
    return float(value)


def check_sampler(value) -> str:
    if value not in SAMPLERS:
        raise UserInputError(f"`sampler` must be one of {sorted(SAMPLERS)}, got {value!r}.")
    return value


def _step_callback(progress, total_steps: int, runs: int = 1, run: int = 0, desc: str = "denoising"):
    """callback_on_step_end that reports (run * steps + step + 1) / (runs * steps) to `progress`."""
    if progress is None:
        return None

    def callback(pipe, i, t, tensors):
        progress((run * total_steps + i + 1) / (runs * total_steps), desc=desc)
        return tensors

    return callback


def _negative(negative_prompt) -> str | None:
    if negative_prompt is None:
        return None
    if not isinstance(negative_prompt, str):
        raise UserInputError(f"`negative_prompt` must be a string, got {type(negative_prompt).__name__}.")
    return negative_prompt if negative_prompt.strip() else None


def _notes(pipe: Text2ImagePipeline, prompt: str, negative: str | None) -> str:
    lines = []
    for label, text in (("prompt", prompt), ("negative prompt", negative)):
        if text is None:
            continue
        unknown = pipe.unknown_words(text)
        if unknown:
            words = ", ".join(f"`{w}`" for w in unknown)
            lines.append(f"The {label} has words the model never saw in training, read as [UNK]: {words}.")
    return "\n\n".join(lines)


def generate(
    pipe: Text2ImagePipeline,
    prompt: str,
    negative_prompt: str | None = "",
    guidance_scale: float = 3.0,
    steps: int = 20,
    sampler: str = DEFAULT_SAMPLER,
    seed: int = 0,
    num_images: int = 8,
    progress=None,
) -> tuple[Image.Image, str]:
    """`num_images` samples for `prompt` (tiled in rows of up to 8) and a Markdown line with the settings."""
    guidance_scale = check_guidance_scale(guidance_scale)
    steps = check_int(steps, "steps", 1, MAX_INFERENCE_STEPS)
    sampler = check_sampler(sampler)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_DEMO_IMAGES)
    negative = _negative(negative_prompt)
    images = pipe(
        prompt,
        negative_prompt=negative,
        guidance_scale=guidance_scale,
        num_inference_steps=steps,
        sampler=sampler,
        num_images_per_prompt=num_images,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        callback_on_step_end=_step_callback(progress, steps),
    ).images
    settings = (
        f"**{prompt}**" + (f" · negative prompt **{negative}**" if negative else "") + f" · guidance w = "
        f"{guidance_scale:g} · {sampler}, {steps} steps · seed {seed}"
    )
    notes = _notes(pipe, prompt, negative)
    return show_grid(images, nrow=min(num_images, 8)), settings + ("\n\n" + notes if notes else "")


def guidance_strip(
    pipe: Text2ImagePipeline,
    prompt: str,
    negative_prompt: str | None = "",
    steps: int = 20,
    sampler: str = DEFAULT_SAMPLER,
    seed: int = 0,
    progress=None,
) -> Image.Image:
    """One sample per guidance scale in SWEEP_SCALES, left to right, from the same initial noise (seed)."""
    steps = check_int(steps, "steps", 1, MAX_INFERENCE_STEPS)
    sampler = check_sampler(sampler)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    negative = _negative(negative_prompt)
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    noise = randn_tensor((1, c, s, s), torch.Generator().manual_seed(seed))
    columns = []
    for run, w in enumerate(SWEEP_SCALES):
        columns.append(
            pipe(prompt, negative_prompt=negative, guidance_scale=w, num_inference_steps=steps, sampler=sampler,
                 latents=noise, output_type="pt",
                 callback_on_step_end=_step_callback(progress, steps, len(SWEEP_SCALES), run, f"w = {w:g}")).images
        )  # fmt: skip
    return show_grid(torch.cat(columns), nrow=len(SWEEP_SCALES))


def build_demo(pipeline_or_path):
    """Build the text-to-image demo: a `gr.Blocks` with Generate and Guidance sweep tabs.

    `pipeline_or_path` is a Text2ImagePipeline, a local folder or a Hub repo id. Launch it with `.launch()`.
    """
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    samplers = sorted(SAMPLERS)
    examples = example_prompts(pipe)

    # gradio finds the progress tracker by its default value, a gr.Progress instance
    @demo_event
    def run_generate(prompt, negative, guidance_scale, steps, sampler, seed, num_images, progress=gr.Progress()):  # noqa: B008
        return generate(pipe, prompt, negative, guidance_scale, steps, sampler, seed, num_images, progress)

    @demo_event
    def run_sweep(prompt, negative_prompt, steps, sampler, seed, progress=gr.Progress()):  # noqa: B008
        return guidance_strip(pipe, prompt, negative_prompt, steps, sampler, seed, progress)

    def prompt_inputs():
        prompt = gr.Textbox(value=examples[0], label="Prompt", max_lines=1, interactive=True)
        negative = gr.Textbox(
            value="", label="Negative prompt (replaces the empty prompt in the guidance)", max_lines=1, interactive=True
        )
        return prompt, negative

    def sampler_inputs():
        steps = gr.Slider(
            1,
            MAX_INFERENCE_STEPS,
            value=FAMILY.sample_default("num_inference_steps"),
            step=1,
            precision=0,
            label="Sampler steps",
            interactive=True,
        )
        sampler = gr.Dropdown(samplers, value=DEFAULT_SAMPLER, label="Sampler", interactive=True)
        return steps, sampler, seed_box("Seed")

    with gr.Blocks(title=f"hubgen text-to-image · {name}") as demo:
        gr.Markdown(
            f"# hubgen text-to-image demo\n**Model:** `{name}`  \n{describe(pipe)}\n\n"
            "Classifier-free guidance: eps = eps(x_t, negative) + w (eps(x_t, prompt) - eps(x_t, negative)); "
            "w = 1 is the conditional model alone, larger w follows the prompt more closely and varies less."
        )
        with gr.Tab("Generate"):
            with gr.Row():
                prompt, negative = prompt_inputs()
            gr.Examples([[p] for p in examples], inputs=[prompt], api_name="example_prompt")
            with gr.Row():
                guidance = gr.Slider(
                    0,
                    MAX_GUIDANCE,
                    value=FAMILY.sample_default("guidance_scale"),
                    step=0.5,
                    label="Guidance scale w",
                    interactive=True,
                )
                steps, sampler, seed = sampler_inputs()
                num_images = gr.Slider(
                    1, MAX_DEMO_IMAGES, value=8, step=1, precision=0, label="Number of images", interactive=True
                )
            button = gr.Button("Generate", variant="primary")
            samples = image_out("Samples")
            notes = gr.Markdown()
            button.click(run_generate, [prompt, negative, guidance, steps, sampler, seed, num_images], [samples, notes],
                         api_name="generate")  # fmt: skip

        with gr.Tab("Guidance sweep"):
            gr.Markdown(
                "One sample per guidance scale, w = " + ", ".join(f"{w:g}" for w in SWEEP_SCALES) + " from left to "
                "right, all from the same initial noise: w = 0 is the unconditional (or negative-prompt) model."
            )
            with gr.Row():
                sweep_prompt, sweep_negative = prompt_inputs()
            with gr.Row():
                sweep_steps, sweep_sampler, sweep_seed = sampler_inputs()
            button = gr.Button("Sweep the guidance scale", variant="primary")
            strip = image_out("Guidance sweep")
            button.click(run_sweep, [sweep_prompt, sweep_negative, sweep_steps, sweep_sampler, sweep_seed], strip,
                         api_name="sweep")  # fmt: skip
    return demo
