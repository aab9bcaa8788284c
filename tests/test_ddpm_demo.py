"""The DDPM demo: its plain functions, the Blocks it builds, a launched app called through gradio_client (the
Space that runs it for any family: tests/test_family_contract.py)."""

import math

import numpy as np
import pytest
import torch
from conftest import event
from diffusers import DDPMScheduler, UNet2DModel
from PIL import Image

from hubgen.ddpm import DDPMPipeline
from hubgen.ddpm import demo as ddpm_demo
from hubgen.ddpm.train_ddpm import unet_config
from hubgen.demo_utils import MIN_TILE_PX

T, S = 30, 8  # training timesteps and image size of the tiny model
FACTOR = math.ceil(MIN_TILE_PX / S)  # show_grid's upscaling
API_NAMES = {"sample", "compare", "default_steps"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def grid_px(count: int) -> int:
    """Side of `count` tiles in make_grid (padding 2), after the demo's upscaling."""
    return (count * (S + 2) + 2) * FACTOR


def tile(image: Image.Image, row: int, col: int) -> np.ndarray:
    """Tile (row, col) of an upscaled grid, back at S x S, as uint8."""
    a = np.asarray(image)
    top, left = (2 + row * (S + 2)) * FACTOR, (2 + col * (S + 2)) * FACTOR
    return a[top : top + S * FACTOR : FACTOR, left : left + S * FACTOR : FACTOR]


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return (images[:, 0].numpy() * 255).round().clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    unet = UNet2DModel(**unet_config(S, 1, (8, 16), norm_num_groups=4))
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=T, timestep_spacing="trailing"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def demo(pipe):
    return ddpm_demo.build_demo(pipe)


# -- plain functions ------------------------------------------------------------------------------------------------


def test_run_sampler_grid_trajectory_and_progress(pipe):
    fractions = []
    grid, frames, text = ddpm_demo.run_sampler(pipe, "ddim", 7, seed=3, num_images=3, num_frames=4,
                                               progress=lambda f, desc: fractions.append((f, desc)))  # fmt: skip
    assert grid.size == (grid_px(2), grid_px(2))  # 3 images: a 2 x 2 grid
    images = pipe(3, generator=torch.Generator().manual_seed(3), sampler="ddim", num_inference_steps=7,
                  output_type="pt", return_trajectory=True)  # fmt: skip
    for i in range(3):
        assert np.array_equal(tile(grid, *divmod(i, 2)), as_uint8(images.images)[i])
    # 4 frames at steps 1, 3, 5, 7 of 7: x_t of the 3 images on top, their predicted x_0 below
    assert [caption.split(" · ")[0] for _, caption in frames] == ["step 1/7", "step 3/7", "step 5/7", "step 7/7"]
    traj = images.trajectory
    first = frames[0][0]
    assert first.size == (grid_px(3), grid_px(2))
    expected_xt = ((traj.xt[0] + 1) / 2).clamp(0, 1)
    expected_x0 = ((traj.x0_pred[0] + 1) / 2).clamp(0, 1)
    assert np.array_equal(tile(first, 0, 1), as_uint8(expected_xt)[1])
    assert np.array_equal(tile(first, 1, 2), as_uint8(expected_x0)[2])
    assert f"t = {int(traj.timesteps[0])}" in frames[0][1] and "DDIM" in text and "seed 3" in text
    assert len(fractions) == 7 and fractions[-1][0] == 1.0 and "step 7 of 7" in fractions[-1][1]
    again, _, _ = ddpm_demo.run_sampler(pipe, "ddim", 7, seed=3, num_images=3, num_frames=4)
    assert np.array_equal(np.asarray(again), np.asarray(grid))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sampler": "euler"}, "sampler"),
        ({"steps": 0}, "steps"),
        ({"steps": T + 1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"seed": -1}, "seed"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 17}, "num_images"),
        ({"num_frames": 0}, "num_frames"),
    ],
)
def test_run_sampler_rejects_bad_arguments(pipe, kwargs, name):
    args = {"sampler": "dpmsolver++", "steps": 3, "seed": 0, "num_images": 1, "num_frames": 2, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        ddpm_demo.run_sampler(pipe, **args)
    assert repr(kwargs[name]) in str(info.value)


def test_compare_samplers_uses_one_noise_and_every_sampler(pipe):
    fractions = []
    gallery, table = ddpm_demo.compare_samplers(
        pipe, seed=2, num_images=2, progress=lambda f, desc: fractions.append(f)
    )
    assert [caption for _, caption in gallery] == ["DDPM (ancestral), 30 steps", "DDIM (eta = 0), 30 steps",
                                                   "DPM-Solver++ (2M), 20 steps"]  # fmt: skip
    noise = torch.randn((2, 1, S, S), generator=torch.Generator().manual_seed(2))
    dpm = pipe(2, latents=noise, sampler="dpmsolver++", num_inference_steps=20, output_type="pt").images
    assert np.array_equal(tile(gallery[2][0], 0, 1), as_uint8(dpm)[1])
    assert len(fractions) == 30 + 30 + 20 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert table.count("\n| ") == 4 and "| DPM-Solver++ (2M) | 20 |" in table  # header, rule and three rows


# -- the Blocks -------------------------------------------------------------------------------------------------------


def test_every_event_has_an_explicit_api_name(demo):
    import gradio as gr

    assert isinstance(demo, gr.Blocks)
    assert {fn.api_name for fn in demo.fns.values()} == API_NAMES


def test_ui_handlers(demo):
    import gradio as gr

    with pytest.raises(gr.Error, match="`steps`"):
        event(demo, "sample")("ddpm", 0, 0, 1, 2, progress=lambda *a, **k: None)
    assert event(demo, "default_steps")("ddpm") == T and event(demo, "default_steps")("dpmsolver++") == 20
    grid, frames, text = event(demo, "sample")("dpmsolver++", 3, 1, 2, 3, progress=lambda *a, **k: None)
    assert grid.size == (grid_px(2), grid_px(1)) and len(frames) == 3 and "DPM-Solver++" in text


def test_build_demo_from_a_saved_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "ddpm")
    blocks = ddpm_demo.build_demo(tmp_path / "ddpm")
    header = next(b for b in blocks.blocks.values() if type(b).__name__ == "Markdown")
    assert str(tmp_path / "ddpm") in header.value and f"T = {T}" in header.value
    with pytest.raises(TypeError, match="pipeline_or_path"):
        ddpm_demo.build_demo(42)


def test_launched_app_serves_the_sample_endpoint(demo, pipe):
    from gradio_client import Client

    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    try:
        client = Client(local_url, verbose=False)
        image_path, gallery, text = client.predict("ddim", 4, 5, 2, 2, api_name="/sample")
        with Image.open(image_path) as image:
            assert image.format == "PNG"
            served = np.asarray(image.convert("L"))
        expected, _, _ = ddpm_demo.run_sampler(pipe, "ddim", 4, 5, 2, 2)
        assert np.array_equal(served, np.asarray(expected))
        assert len(gallery) == 2 and "step 4/4" in gallery[-1]["caption"] and "DDIM" in text
    finally:
        demo.close()
