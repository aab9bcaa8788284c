"""The flow demo: its plain functions, the Blocks it builds, a launched app called through gradio_client (the
Space that runs it for any family: tests/test_family_contract.py)."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import event
from PIL import Image, ImageDraw

from hubgen.demo_utils import MIN_TILE_PX, preprocess_sketch
from hubgen.flow import FlowModel, FlowPipeline
from hubgen.flow import demo as flow_demo

S = 8  # 8x8 images like `digits`
FACTOR = math.ceil(MIN_TILE_PX / S)
API_NAMES = {"sample", "score", "round_trip"}


def grid_px(count: int, tile: int = S, pad: int = 2) -> int:
    return count * (tile + pad) + pad


def tile(image: Image.Image, row: int, col: int, pad: int = 2) -> np.ndarray:
    """Tile (row, col) of an upscaled make_grid image, back at S x S, as uint8."""
    a = np.asarray(image)
    top, left = (pad + row * (S + pad)) * FACTOR, (pad + col * (S + pad)) * FACTOR
    return a[top : top + S * FACTOR : FACTOR, left : left + S * FACTOR : FACTOR]


def stroke_value(size: int = 280) -> dict:
    """The EditorValue a Gradio 6 Sketchpad sends (type="numpy", image_mode="RGBA") with a black '7' stroke."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(70, 60), (200, 60), (120, 230)], fill=(0, 0, 0, 255), width=18)
    composite = np.asarray(image).copy()
    return {"background": np.zeros_like(composite), "layers": [composite], "composite": composite}


def small_pipe() -> FlowPipeline:
    torch.manual_seed(0)
    model = FlowModel(sample_size=S, pixel_levels=17, num_levels=2, steps_per_level=1, hidden_channels=8)
    model.initialize(torch.rand(64, 1, S, S, generator=torch.Generator().manual_seed(0)))
    return FlowPipeline(model)


@pytest.fixture(scope="module")
def pipe():
    return small_pipe()


@pytest.fixture(scope="module")
def demo(pipe):
    return flow_demo.build_demo(pipe, dataset="digits", num_reference=100)


# -- plain functions ------------------------------------------------------------------------------------


def test_sample_grid_size_determinism_and_temperature(pipe):
    image = flow_demo.sample_grid(pipe, seed=3, num_images=5, temperature=0.7)  # 3 columns, 2 rows
    assert image.size == (grid_px(3) * FACTOR, grid_px(2) * FACTOR)
    assert np.array_equal(np.asarray(image), np.asarray(flow_demo.sample_grid(pipe, 3, 5, 0.7)))
    expected = pipe(5, generator=torch.Generator().manual_seed(3), temperature=0.7, output_type="pt").images
    assert np.array_equal(tile(image, 1, 1), (expected[4, 0].numpy() * 255).round().astype(np.uint8))
    assert not np.array_equal(np.asarray(image), np.asarray(flow_demo.sample_grid(pipe, 3, 5, 1.0)))


@pytest.mark.parametrize(
    ("name", "bad"),
    [("seed", -1), ("seed", 1.5), ("num_images", 0), ("num_images", 65), ("temperature", -0.1),
     ("temperature", 2.5), ("temperature", float("nan")), ("temperature", "1")],
)  # fmt: skip
def test_sample_grid_rejects_bad_arguments(pipe, name, bad):
    kwargs = {"seed": 0, "num_images": 4, "temperature": 0.7, name: bad}
    with pytest.raises(ValueError, match=f"`{name}`"):
        flow_demo.sample_grid(pipe, **kwargs)


def test_round_trip_is_exact_and_lays_z_on_the_pixel_grid(pipe):
    from hubgen.data import load_dataset

    images = load_dataset("digits", "test").take(2).float() / 255.0
    strip, text = flow_demo.round_trip(pipe, images, seed=1)
    assert strip.size == (grid_px(3) * FACTOR, grid_px(2) * FACTOR)  # x | z | x' for each image
    for row in range(2):
        assert np.array_equal(tile(strip, row, 0), tile(strip, row, 2))  # x' has x's grey levels
    error = float(re.search(r"max \|x − x′\| = \*\*([0-9.e+-]+)\*\*", text).group(1))
    assert error < 1e-4 and "came back: **yes**" in text and "64 dimensions" in text
    # z on the pixel grid is a permutation of z: the same values, rearranged
    z = pipe.encode(images, generator=torch.Generator().manual_seed(1))
    laid = flow_demo.latents_on_pixel_grid(pipe, z)
    assert laid.shape == (2, 1, S, S)
    assert torch.equal(laid.flatten(1).sort(1).values, z.sort(1).values)


def test_test_image_round_trip_and_its_errors(pipe):
    strip, text = flow_demo.test_image_round_trip(pipe, "digits", index=7)
    assert strip.size == (grid_px(3) * FACTOR, grid_px(1) * FACTOR) and "Test image 7 of `digits`" in text
    with pytest.raises(ValueError, match="`index`"):
        flow_demo.test_image_round_trip(pipe, "digits", index=360)
    with pytest.raises(flow_demo.DatasetUnavailableError, match="No test set"):
        flow_demo.test_image_round_trip(pipe, None, index=0)


def test_reference_bits_per_dim_and_percentile(pipe):
    bits = flow_demo.test_set_bits_per_dim(pipe, "digits", num_images=50)
    from hubgen.data import load_dataset

    images = load_dataset("digits", "test").take(50).float() / 255.0
    expected = pipe.log_likelihood(images, generator=torch.Generator().manual_seed(0)).bits_per_dim
    np.testing.assert_allclose(bits, expected.double().numpy(), rtol=0, atol=1e-6)
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    assert flow_demo.percentile_of(2.5, reference) == 50.0 and flow_demo.percentile_of(0.5, reference) == 0.0
    plot = flow_demo.meter_plot(2.5, reference)
    assert isinstance(plot, Image.Image) and plot.size == (500, 260)


def test_score_drawing(pipe):
    reference = flow_demo.test_set_bits_per_dim(pipe, "digits", num_images=40)
    model_input, strip, plot, text = flow_demo.score_drawing(pipe, stroke_value(), reference)
    assert model_input.size == (S * FACTOR, S * FACTOR) and strip.size == (grid_px(3) * FACTOR, grid_px(1) * FACTOR)
    bits = float(re.search(r"\*\*([0-9.]+) bits/dim\*\*", text).group(1))
    x = torch.from_numpy(preprocess_sketch(stroke_value(), S))[None, None]
    expected = pipe.log_likelihood(x, generator=torch.Generator().manual_seed(0)).bits_per_dim.item()
    assert bits == pytest.approx(expected, abs=5e-4)
    pct = flow_demo.percentile_of(expected, reference)
    assert f"than **{pct:.1f}%** of them" in text and "Test set (40 images)" in text
    assert isinstance(plot, Image.Image)
    _, _, no_plot, alone = flow_demo.score_drawing(pipe, stroke_value(), None)
    assert no_plot is None and "Test set" not in alone
    with pytest.raises(flow_demo.EmptyCanvasError):
        flow_demo.score_drawing(pipe, stroke_value() | {"composite": np.zeros((280, 280, 4), np.uint8)}, None)


# -- the Blocks -----------------------------------------------------------------------------------------


def test_every_event_has_an_explicit_api_name(demo):
    import gradio as gr

    assert isinstance(demo, gr.Blocks)
    assert sorted(fn.api_name for fn in demo.fns.values()) == sorted(API_NAMES)


def test_ui_handlers(demo, pipe):
    import gradio as gr

    with pytest.raises(gr.Error, match="`temperature`"):
        event(demo, "sample")(0, 4, 5.0)
    model_input, strip, plot, text = event(demo, "score")(stroke_value())
    assert plot is not None and "Test set (100 images)" in text
    with pytest.warns(UserWarning, match="canvas is empty"):
        assert event(demo, "score")(None)[0] is None
    strip, text = event(demo, "round_trip")(3, 0)
    assert "Test image 3" in text and "came back: **yes**" in text


def test_build_demo_from_a_saved_folder_reads_its_dataset(pipe, tmp_path):
    folder = tmp_path / "flow"
    pipe.save_pretrained(folder)
    assert flow_demo.training_dataset_of(folder) is None
    (folder / "hubgen_training.json").write_text(json.dumps({"dataset": "digits"}))
    assert str(flow_demo.training_dataset_of(folder)) == "digits"  # a DataSpec named digits
    blocks = flow_demo.build_demo(folder, num_reference=20)
    header = next(b for b in blocks.blocks.values() if type(b).__name__ == "Markdown")
    assert str(folder) in header.value and "2 levels × 1 steps" in header.value
    assert np.array_equal(np.asarray(event(blocks, "sample")(0, 4, 0.7)), np.asarray(flow_demo.sample_grid(pipe, 0, 4)))
    assert "Test image 0 of `digits`" in event(blocks, "round_trip")(0, 0)[1]


def test_no_dataset_is_a_message_not_a_crash(pipe):
    blocks = flow_demo.build_demo(pipe)  # in memory: no hubgen_training.json to read
    with pytest.warns(UserWarning, match="No test set"):
        image, text = event(blocks, "round_trip")(0, 0)
    assert image is None and "No test set" in text
    with pytest.warns(UserWarning, match="No test set"):
        _, _, plot, text = event(blocks, "score")(stroke_value())
    assert plot is None and "bits/dim" in text


def test_build_demo_rejects_other_types():
    with pytest.raises(TypeError, match="pipeline_or_path"):
        flow_demo.build_demo(42)


def test_launched_app_serves_sample_and_round_trip(demo, pipe):
    from gradio_client import Client

    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    try:
        client = Client(local_url, verbose=False)
        path = client.predict(1, 4, 1.0, api_name="/sample")
        with Image.open(path) as image:
            assert image.format == "PNG"
            served = np.asarray(image.convert("L"))
        assert np.array_equal(served, np.asarray(flow_demo.sample_grid(pipe, 1, 4, 1.0)))
        path, text = client.predict(5, 0, api_name="/round_trip")
        assert Path(path).is_file() and "came back: **yes**" in text
    finally:
        demo.close()


def test_demo_command_builds_the_flow_demo(pipe, tmp_path, monkeypatch):
    import gradio as gr

    from hubgen.cli import main

    pipe.save_pretrained(tmp_path / "flow")
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, *a, **k: launched.append(self))
    assert main(["demo", str(tmp_path / "flow")]) == 0
    assert len(launched) == 1 and {fn.api_name for fn in launched[0].fns.values()} == API_NAMES
