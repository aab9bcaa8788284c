"""The flow on colour images of other sizes: levels chosen by the side, dequantization of 256 levels per channel,
bits/dim over D = 3 * H * W, the CLI on a 16x16 RGB .npz made here, the demo, and sizes the flow cannot take.

The run passes `--eval_num_samples 0`: sample quality on RGB data without a shipped classifier is hubgen.metrics'
(issue 15); the likelihood is measured."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import rgb_npz
from PIL import Image
from test_flow_demo import stroke_value

from hubgen.cli import main
from hubgen.errors import UserInputError
from hubgen.flow import FlowModel, FlowPipeline
from hubgen.flow import demo as flow_demo
from hubgen.flow.modeling_flow import levels_for
from hubgen.flow.train_flow import sample_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = ["--max_train_steps", "3", "--train_batch_size", "16", "--steps_per_level", "1", "--hidden_channels", "8",
       "--init_batch_size", "32", "--checkpointing_steps", "3", "--sample_steps", "3", "--eval_num_samples", "0",
       "--report_to", "none", "--seed", "0"]  # fmt: skip


def test_levels_by_side():
    """The most squeezes that keep the last scale at least 4x4 (Glow: 3 at 32 px, 4 at 64 px), at least 2."""
    sides = (8, 12, 16, 24, 28, 32, 48, 64, 128, 256)
    assert {s: levels_for(s) for s in sides} == {8: 2, 12: 2, 16: 2, 24: 2, 28: 2, 32: 3, 48: 3, 64: 4, 128: 5, 256: 6}
    for bad in (18, 30, 2):
        with pytest.raises(UserInputError, match="divisible by 4"):
            levels_for(bad)


def _rgb_flow(size: int, **overrides) -> FlowModel:
    torch.manual_seed(0)
    cfg = dict(sample_size=size, in_channels=3, pixel_levels=256, num_levels=levels_for(size), steps_per_level=1,
               hidden_channels=4) | overrides  # fmt: skip
    model = FlowModel(**cfg)
    model.initialize(torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(0)))
    return model.eval()


def test_rgb_32px_flow_has_three_scales_down_to_4x4_and_inverts():
    model = _rgb_flow(32)
    assert model.config.num_levels == 3 and model.latent_shapes[-1] == (48, 4, 4)  # 3 -> 12 -> 24 -> 48 channels
    assert model.num_dims == 3 * 32 * 32 == sum(math.prod(s) for s in model.latent_shapes)
    x, _ = model.dequantize(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        z, _ = model(x)
        torch.testing.assert_close(model.inverse(z)[0], x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_bits_per_dim_counts_every_channel_and_256_levels(dequantization):
    """bits/dim = (-log p(x) + log q(u|k)) / (D ln 2) + log2 256 with D = 3 * 16 * 16 = 768."""
    model = _rgb_flow(16, dequantization=dequantization, dequant_hidden_channels=4, dequant_steps=1)
    pipe = FlowPipeline(model)
    images = torch.randint(0, 256, (3, 3, 16, 16), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    intensities = images.float() / 255
    out = pipe.log_likelihood(images, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x, log_q = model.dequantize(intensities, generator=torch.Generator().manual_seed(3))
        expected = (-model.log_prob(x) + log_q) / (768 * math.log(2)) + 8.0
        k = torch.floor(x * 256)  # x = (k + u) / L on the 256-level grid of every channel
    torch.testing.assert_close(out.bits_per_dim.double(), expected.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.nll_nats.double(), out.bits_per_dim.double() * 768 * math.log(2), atol=1e-2, rtol=0)
    assert torch.equal(k, images.float())


@pytest.fixture(scope="module")
def rgb16_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-rgb16")
    data = rgb_npz(root / "rgb16.npz", 16)
    out = root / "model"
    argv = ["train", "flow", "--dataset", str(data), "--output_dir", str(out), "--eval_num_images", "8", *RUN]
    assert main(argv) == 0
    return out, data


def test_rgb_16px_trains_saves_reloads_and_scores_over_768_dimensions(rgb16_run):
    out, _ = rgb16_run
    config = json.loads((out / "flow" / "config.json").read_text())
    assert (config["in_channels"], config["sample_size"], config["pixel_levels"], config["num_levels"]) == (
        3,
        16,
        256,
        2,
    )
    with Image.open(out / "samples.png") as image:
        assert image.mode == "RGB"
        written = np.asarray(image).copy()
    pipe = FlowPipeline.from_pretrained(out)
    assert np.array_equal(np.asarray(sample_grid(pipe.flow)), written)  # the saved model draws samples.png again
    assert pipe(2, generator=torch.Generator().manual_seed(0)).images[0].mode == "RGB"
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_dims"] == 768 and results["pixel_levels"] == 256 and results["num_images"] == 8
    bits, nats = (results["metrics"][k]["mean"] for k in ("exact_bits_per_dim", "exact_nll_nats"))
    assert nats == pytest.approx(bits * 768 * math.log(2), rel=1e-9) and 0 < bits < 12
    card = (out / "README.md").read_text()
    assert "(RGB), L = 256 levels per channel, D = 768 dimensions" in card and "bits/dim, dequantization bound" in card
    assert "digit classifier" not in card


def test_rgb_demo_builds_round_trips_and_scores_a_grey_drawing(rgb16_run):
    out, data = rgb16_run
    blocks = flow_demo.build_demo(out, num_reference=8)
    assert {f.api_name for f in blocks.fns.values()} >= {"sample", "score", "round_trip"}
    pipe, _ = flow_demo.load_pipeline(out)
    assert "16×16 RGB images, 256 levels per channel" in flow_demo.describe(pipe)
    strip, text = flow_demo.test_image_round_trip(pipe, str(data), 2)
    assert strip.mode == "RGB" and "came back: **yes**" in text and "768 dimensions" in text
    reference = flow_demo.test_set_bits_per_dim(pipe, str(data), num_images=8)
    assert reference.shape == (8,)
    model_input, _, _, text = flow_demo.score_drawing(pipe, stroke_value(), reference)
    rgb = np.asarray(model_input.convert("RGB"))
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])  # grey ink
    assert "Test set (8 images)" in text


@pytest.mark.parametrize(
    "size, extra, message",
    [(18, [], "divisible by 4 (two squeezes at least; e.g. 8, 16, 28, 32, 64), got 18"),
     (24, ["--num_levels", "4"], "divisible by 2**num_levels = 16 (--num_levels 4)")],
)  # fmt: skip
def test_a_size_the_flow_cannot_take_exits_2_with_one_message(tmp_path, capsys, size, extra, message):
    data = rgb_npz(tmp_path / f"rgb{size}.npz", size, n_train=16, n_test=4)
    assert main(["train", "flow", "--dataset", str(data), "--output_dir", str(tmp_path / "o"), *RUN, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{size}x{size} images" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
