"""Gradio demo for a hubgen DDPM: sample with a chosen sampler and step count, watch the denoising trajectory.

Two tabs, each a plain function of the pipeline (tested directly) wired into `build_demo`:

- Sample (`run_sampler`): `num_images` images from the seed's x_T ~ N(0, I) with DDPM (ancestral), DDIM or
  DPM-Solver++ in `steps` steps; the gallery shows `num_frames` moments of the trajectory, each the current x_t
  (top row) above the x_0 it implies (bottom row), (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t).
- Compare samplers (`compare_samplers`): the same x_T through all three samplers at their usual step counts
  (DDPM: every training step, DDIM: 50, DPM-Solver++: 20), with the wall time of each.

A progress bar (gr.Progress) follows the denoising steps. Every event has an `api_name` ("sample",
"compare"); invalid arguments raise ValueError naming the argument and the value, shown in the UI as gr.Error.
gradio is imported inside `build_demo` only.
"""

import math
import time

import torch
from PIL import Image

from ..demo_utils import MAX_SEED, check_int, demo_event, image_out, load_family_pipeline, seed_box, show_grid
from ..draws import randn_tensor
from ..errors import UserInputError
from .family import FAMILY
from .pipeline_ddpm import SAMPLERS, DDPMPipeline, frame_indices

__all__ = ["build_demo", "load_pipeline", "describe", "check_sampler", "run_sampler", "compare_samplers"]

MAX_DEMO_IMAGES = 16  # a 1000-step DDPM run costs seconds per image on a CPU
MAX_FRAMES = 16


def load_pipeline(pipeline_or_path) -> tuple[DDPMPipeline, str]:
    """A DDPMPipeline, or a folder path / Hub repo id to load one from -> (pipeline, name to show)."""
    pipe, name = load_family_pipeline(pipeline_or_path, DDPMPipeline)
    pipe.set_progress_bar_config(disable=True)
    return pipe, name


def describe(pipe: DDPMPipeline) -> str:
    """One line: the denoiser, the image size and the schedule."""
    u, s = pipe.unet.config, pipe.scheduler.config
    params = sum(p.numel() for p in pipe.unet.parameters())
    return (
        f"DDPM (Ho et al., arXiv:2006.11239) · UNet2DModel {list(u.block_out_channels)}, {params / 1e6:.2f}M "
        f"parameters · {u.sample_size}×{u.sample_size} images · T = {s.num_train_timesteps}, {s.beta_schedule} betas"
    )


def check_sampler(sampler, steps, pipe: DDPMPipeline) -> tuple[str, int]:
    """Validate a sampler name and its step count (1..T) -> (sampler, steps)."""
    if sampler not in SAMPLERS:
        raise UserInputError(f"`sampler` must be one of {', '.join(repr(s) for s in SAMPLERS)}, got {sampler!r}.")
    return sampler, check_int(steps, "steps", 1, pipe.scheduler.config.num_train_timesteps)


def _frame(xt: torch.Tensor, x0_pred: torch.Tensor) -> Image.Image:
    """One moment of the trajectory: x_t (top row) above the predicted x_0 (bottom row), model range [-1, 1]."""
    tiles = ((torch.cat([xt, x0_pred]).float().cpu() + 1) / 2).clamp(0, 1)  # (2B, C, H, W) in [0, 1]
    return show_grid(tiles, nrow=len(xt))


def run_sampler(pipe: DDPMPipeline, sampler: str, steps: int, seed: int, num_images: int = 4, num_frames: int = 8,
                progress=None) -> tuple[Image.Image, list, str]:  # fmt: skip
    """Sample `num_images` images from `seed` with `sampler` in `steps` steps -> (grid of the results, gallery of
    (frame, caption) along the trajectory, Markdown summary). `progress(fraction, desc=...)` is called after every
    step when given (the UI passes gr.Progress)."""
    sampler, steps = check_sampler(sampler, steps, pipe)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_DEMO_IMAGES)
    num_frames = check_int(num_frames, "num_frames", 1, MAX_FRAMES)
    keep = set(frame_indices(steps, num_frames))
    frames = []

    name = SAMPLERS[sampler].display_name

    def on_step_end(pipe, i, t, tensors):
        if i in keep:
            caption = f"step {i + 1}/{steps} · t = {int(t)}: x_t (top), predicted x_0 (bottom)"
            frames.append((_frame(tensors["xt"], tensors["x0_pred"]), caption))
        if progress is not None:
            progress((i + 1) / steps, desc=f"{name}: step {i + 1} of {steps}")
        return {}

    start = time.perf_counter()
    images = pipe(num_images, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                  sampler=sampler, output_type="pt", callback_on_step_end=on_step_end,
                  callback_on_step_end_tensor_inputs=["xt", "x0_pred"]).images  # fmt: skip
    seconds = time.perf_counter() - start
    grid = show_grid(images, nrow=math.ceil(math.sqrt(num_images)))
    text = (
        f"{num_images} image(s) from seed {seed} with **{name}** in {steps} steps: "
        f"{seconds:.2f} s ({seconds / num_images:.3f} s per image)."
    )
    return grid, frames, text


def compare_samplers(pipe: DDPMPipeline, seed: int, num_images: int = 4, progress=None) -> tuple[list, str]:
    """The same x_T (from `seed`) through DDPM (T steps), DDIM (50) and DPM-Solver++ (20) -> (gallery of the three
    grids, Markdown table of steps and wall time)."""
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_DEMO_IMAGES)
    T = pipe.scheduler.config.num_train_timesteps
    c, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    noise = randn_tensor((num_images, c, size, size), torch.Generator().manual_seed(seed))
    plan = [(s, s.steps(T)) for s in SAMPLERS.values()]
    total, done, gallery = sum(steps for _, steps in plan), 0, []
    rows = ["| sampler | steps | seconds | seconds per image |", "|---|---|---|---|"]
    for s, steps in plan:

        def on_step_end(pipe, i, t, tensors, name=s.display_name, steps=steps, offset=done):
            if progress is not None:
                progress((offset + i + 1) / total, desc=f"{name}: step {i + 1} of {steps}")
            return {}

        start = time.perf_counter()
        images = pipe(num_images, generator=torch.Generator().manual_seed(seed + 1), latents=noise, sampler=s.name,
                      num_inference_steps=steps, output_type="pt", callback_on_step_end=on_step_end,
                      callback_on_step_end_tensor_inputs=[]).images  # fmt: skip
        seconds = time.perf_counter() - start
        done += steps
        gallery.append((show_grid(images, nrow=math.ceil(math.sqrt(num_images))), f"{s.display_name}, {steps} steps"))
        rows.append(f"| {s.display_name} | {steps} | {seconds:.2f} | {seconds / num_images:.3f} |")
    return gallery, f"The same {num_images} initial noise(s) x_T (seed {seed}):\n\n" + "\n".join(rows)


def build_demo(pipeline_or_path):
    """Build the DDPM demo: a `gr.Blocks` with Sample and Compare samplers tabs. `pipeline_or_path` is a
    DDPMPipeline, a local folder or a Hub repo id. Launch it with `.launch()`."""
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    T = pipe.scheduler.config.num_train_timesteps

    @demo_event
    def sample(sampler, steps, seed, num_images, num_frames, progress=gr.Progress()):  # noqa: B008 (gradio's API)
        return run_sampler(pipe, sampler, steps, seed, num_images, num_frames, progress=progress)

    @demo_event
    def default_steps(sampler):
        """The sampler's usual step count (DDPM: every training step), when the sampler changes."""
        return SAMPLERS[check_sampler(sampler, 1, pipe)[0]].steps(T)

    @demo_event
    def compare(seed, num_images, progress=gr.Progress()):  # noqa: B008 (gradio's API)
        return compare_samplers(pipe, seed, num_images, progress=progress)

    with gr.Blocks(title=f"hubgen DDPM · {name}") as demo:
        gr.Markdown(f"# hubgen DDPM demo\n**Model:** `{name}`  \n{describe(pipe)}")

        with gr.Tab("Sample"):
            gr.Markdown(
                "Start from x_T ~ N(0, I) and denoise. **DDPM** takes ancestral steps (Ho et al. Algorithm 2, one "
                f"per training step: {T}); **DDIM** (eta = 0, Song et al. arXiv:2010.02502) and **DPM-Solver++** "
                "(Lu et al. arXiv:2211.01095) solve the same reverse process deterministically in far fewer steps. "
                "The gallery shows the trajectory: the sample x_t above the x_0 it implies."
            )
            with gr.Row():
                sampler = gr.Dropdown(
                    list(SAMPLERS), value=FAMILY.sample_default("sampler"), label="Sampler", interactive=True
                )
                steps = gr.Slider(1, T, value=min(20, T), step=1, precision=0, label="Steps", interactive=True)
                seed = seed_box("Seed")
            with gr.Row():
                num_images = gr.Slider(
                    1, MAX_DEMO_IMAGES, value=4, step=1, precision=0, label="Number of images", interactive=True
                )
                num_frames = gr.Slider(
                    1, MAX_FRAMES, value=8, step=1, precision=0, label="Trajectory frames", interactive=True
                )
            button = gr.Button("Sample", variant="primary")
            images = image_out("Samples")
            trajectory = gr.Gallery(label="Denoising trajectory: x_t (top), predicted x_0 (bottom)", columns=4,
                                    format="png")  # fmt: skip
            summary = gr.Markdown()
            sampler.change(default_steps, sampler, steps, api_name="default_steps")
            button.click(sample, [sampler, steps, seed, num_images, num_frames], [images, trajectory, summary],
                         api_name="sample")  # fmt: skip

        with gr.Tab("Compare samplers"):
            gr.Markdown(f"The same initial noise through DDPM ({T} steps), DDIM (50) and DPM-Solver++ (20).")
            with gr.Row():
                c_seed = seed_box("Seed")
                c_num_images = gr.Slider(
                    1, MAX_DEMO_IMAGES, value=4, step=1, precision=0, label="Number of images", interactive=True
                )
            c_button = gr.Button("Compare", variant="primary")
            c_gallery = gr.Gallery(label="DDPM, DDIM, DPM-Solver++", columns=3, format="png")
            c_table = gr.Markdown()
            c_button.click(compare, [c_seed, c_num_images], [c_gallery, c_table], api_name="compare")

    return demo
