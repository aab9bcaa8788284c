"""The DDPM on colour images of other sizes: UNet widths and attention chosen by the side (diffusers' example at
64 px), the CLI on a 16x16 RGB .npz made here with the bound over 256 levels, the demo, and sizes it cannot take.

The run passes `--eval_num_samples 0`: sample quality on RGB data without a shipped classifier is hubgen.metrics'
(issue 15); the variational bound is measured."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import rgb_npz
from diffusers import UNet2DModel
from PIL import Image

from hubgen.cli import main
from hubgen.ddpm import DDPMPipeline
from hubgen.ddpm import demo as ddpm_demo
from hubgen.ddpm.train_ddpm import sample_grid, unet_config, unet_preset
from hubgen.errors import UserInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T = 10
RUN = ["--max_train_steps", "2", "--train_batch_size", "16", "--block_out_channels", "8", "16", "--norm_num_groups",
       "4", "--num_train_timesteps", str(T), "--checkpointing_steps", "2", "--sample_steps", "2",
       "--eval_num_samples", "0", "--report_to", "none", "--seed", "0"]  # fmt: skip


def test_the_64px_default_is_diffusers_unconditional_example():
    """examples/unconditional_image_generation/train_unconditional.py: widths 128 128 256 256 512 512, two ResNet
    layers per block, AttnDownBlock2D fifth and AttnUpBlock2D second (4x4 for 64 px), mid-block attention."""
    cfg = unet_config(64, 3)
    assert cfg["block_out_channels"] == (128, 128, 256, 256, 512, 512) and cfg["layers_per_block"] == 2
    assert cfg["down_block_types"] == ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
    assert cfg["up_block_types"] == ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
    assert cfg["add_attention"] and cfg["norm_num_groups"] == 32 and (cfg["in_channels"], cfg["out_channels"]) == (3, 3)
    assert "train_unconditional.py" in unet_preset(64).source
    assert unet_config(128, 3)["down_block_types"][4] == "AttnDownBlock2D"  # the same blocks: 8x8 at 128 px


def _attention_resolutions(cfg) -> list[int]:
    """The feature-map sides every self-attention layer of the UNet runs at, from one forward pass."""
    unet, seen = UNet2DModel(**cfg).eval(), []
    for module in unet.modules():
        if type(module).__name__ == "Attention":
            module.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        size = cfg["sample_size"]
        unet(torch.zeros(1, cfg["in_channels"], size, size), 5)
    return sorted(set(seen))


def test_smaller_defaults_for_32_and_16_px_put_attention_where_they_say():
    c32, c16 = unet_config(32, 3), unet_config(16, 3)
    assert c32["block_out_channels"] == (64, 128, 128, 128) and c16["block_out_channels"] == (32, 64, 128)
    assert _attention_resolutions(c32) == [4, 16]  # the blocks at 16x16 (Ho et al.'s CIFAR-10 choice), the mid block
    assert _attention_resolutions(c16) == [4, 8]
    for cfg in (c32, c16):
        assert sum(p.numel() for p in UNet2DModel(**cfg).parameters()) < 7e6  # sized for a CPU budget
    # 8 and 28 px keep their presets; given widths keep the side's attention where their blocks reach it
    assert unet_config(28)["block_out_channels"] == (32, 64, 128) and _attention_resolutions(unet_config(8)) == [2]
    assert unet_config(16, 3, (8, 16), norm_num_groups=4)["down_block_types"] == ("DownBlock2D", "AttnDownBlock2D")
    assert unet_config(32, 3, (8, 16), norm_num_groups=4)["down_block_types"] == ("DownBlock2D", "AttnDownBlock2D")
    assert unet_config(64, 3, (8, 16), norm_num_groups=4)["down_block_types"] == ("DownBlock2D", "DownBlock2D")
    cfg = unet_config(32, 3, (8, 16, 16), attention=(16, 8), norm_num_groups=4)
    assert _attention_resolutions(cfg) == [8, 16]
    with pytest.raises(UserInputError, match=r"blocks run at \[32, 16, 8\]"):
        unet_config(32, 3, (8, 16, 16), attention=(4,), norm_num_groups=4)


@pytest.fixture(scope="module")
def rgb16_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddpm-rgb16")
    data = rgb_npz(root / "rgb16.npz", 16)
    out = root / "model"
    argv = ["train", "ddpm", "--dataset", str(data), "--output_dir", str(out), "--eval_num_images", "4",
            "--eval_num_timesteps", "4", *RUN]  # fmt: skip
    assert main(argv) == 0
    return out, data


def test_rgb_16px_trains_saves_reloads_and_bounds_over_256_levels(rgb16_run):
    out, _ = rgb16_run
    config = json.loads((out / "unet" / "config.json").read_text())
    assert (config["in_channels"], config["out_channels"], config["sample_size"]) == (3, 3, 16)
    assert config["down_block_types"] == ["DownBlock2D", "AttnDownBlock2D"]  # 16 px: attention at 8x8 by default
    for name in ("samples.png", "denoising.png"):
        with Image.open(out / name) as image:
            assert image.mode == "RGB", name
    with Image.open(out / "samples.png") as image:
        written = np.asarray(image).copy()
    pipe = DDPMPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert np.array_equal(np.asarray(sample_grid(pipe)), written)  # the saved model draws samples.png again
    assert pipe(2, generator=torch.Generator().manual_seed(0), num_inference_steps=2).images[0].mode == "RGB"
    results = json.loads((out / "eval_results.json").read_text())
    assert results["pixel_levels"] == 256 and "over 256 levels" in results["bound_protocol"]
    bits, nats = (results["metrics"][k]["mean"] for k in ("vlb_bits_per_dim", "vlb_nats"))
    assert nats == pytest.approx(bits * 768 * math.log(2), rel=1e-6)
    info = json.loads((out / "hubgen_training.json").read_text())
    assert "256 levels per channel (3 channel(s))" in info["pixel_mode"] and "768 dimensions" in info["pixel_mode"]
    assert "set by the options: --block_out_channels, --norm_num_groups" in info["unet_choice"]
    card = (out / "README.md").read_text()
    assert "256\nlevels per channel" in card and "8x8 digits" not in card and "digit classifier" not in card


def test_rgb_demo_builds_and_samples_in_colour(rgb16_run):
    out, _ = rgb16_run
    blocks = ddpm_demo.build_demo(out)
    assert {f.api_name for f in blocks.fns.values()} >= {"sample", "compare"}
    pipe, _ = ddpm_demo.load_pipeline(out)
    grid, frames, _ = ddpm_demo.run_sampler(pipe, "ddim", 3, seed=0, num_images=2, num_frames=2)
    assert grid.mode == "RGB" and frames[0][0].mode == "RGB"


@pytest.mark.parametrize(
    "size, extra, message",
    [(18, ["--block_out_channels", "8", "16", "16"], "the image size 18 must be divisible by 4"),
     (16, ["--attention", "4"], "`attention` at [4]: the UNet's blocks run at [16, 8]"),
     (16, ["--attention", "mid", "8"], "--attention takes none, mid, low, or image resolutions")],
)  # fmt: skip
def test_a_size_or_attention_the_unet_cannot_take_exits_2_with_one_message(tmp_path, capsys, size, extra, message):
    data = rgb_npz(tmp_path / f"rgb{size}.npz", size, n_train=16, n_test=4)
    assert main(["train", "ddpm", "--dataset", str(data), "--output_dir", str(tmp_path / "o"), *RUN, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
