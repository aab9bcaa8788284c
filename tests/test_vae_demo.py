"""The VAE demo: its plain functions, the Blocks it builds, a launched app called through gradio_client
(the Space that runs it for any family: tests/test_family_contract.py)."""

import math
import re

import numpy as np
import pytest
import torch
from conftest import event, handler, tiny_vae
from PIL import Image, ImageDraw

from hubgen import demo_utils
from hubgen.demo_utils import MIN_TILE_PX
from hubgen.vae import VAEPipeline
from hubgen.vae import demo as vae_demo

S = 8  # tiny_vae(): 8x8 images, latent_dim 2
FACTOR = math.ceil(MIN_TILE_PX / S)  # the demo's nearest-neighbour upscaling
API_NAMES = {"sample", "reconstruct", "interpolate", "latent_grid"}


def grid_px(count: int, tile: int = S, pad: int = 2) -> int:
    """Side of `count` tiles of `tile` pixels in make_grid, before upscaling."""
    return count * (tile + pad) + pad


def stroke_rgba(size: int = 280) -> np.ndarray:
    """A sketchpad composite as Gradio 6 sends it with type="numpy", image_mode="RGBA": (H, W, 4) uint8,
    transparent canvas with RGB 0 under alpha 0, and an opaque black stroke (a '7')."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(70, 60), (200, 60), (120, 230)], fill=(0, 0, 0, 255), width=18)
    return np.asarray(image).copy()


def sketch_value(composite: np.ndarray | None) -> dict:
    """{"background", "layers", "composite"}: the EditorValue dict a Sketchpad passes to its function."""
    size = 280 if composite is None else composite.shape[0]
    blank = np.zeros((size, size, 4), dtype=np.uint8)
    layers = [] if composite is None else [composite]
    return {"background": blank, "layers": layers, "composite": composite}


@pytest.fixture(scope="module")
def pipe():
    return VAEPipeline(tiny_vae(), pixel_levels=17)


@pytest.fixture(scope="module")
def demo(pipe):
    return vae_demo.build_demo(pipe)


def demo_pipe(blocks):
    """The pipeline a built demo closes over (the `sample` handler's closure)."""
    sample = handler(blocks, "sample").__wrapped__  # the function under demo_event
    return next(c.cell_contents for c in sample.__closure__ if isinstance(c.cell_contents, VAEPipeline))


# -- plain functions ------------------------------------------------------------------------------------


def test_sample_grid_size_and_determinism(pipe):
    image = vae_demo.sample_grid(pipe, seed=3, num_images=5)  # 3 columns, 2 rows
    assert isinstance(image, Image.Image)
    assert image.size == (grid_px(3) * FACTOR, grid_px(2) * FACTOR)
    again = vae_demo.sample_grid(pipe, seed=3, num_images=5)
    assert np.array_equal(np.asarray(image), np.asarray(again))
    other = vae_demo.sample_grid(pipe, seed=4, num_images=5)
    assert not np.array_equal(np.asarray(image), np.asarray(other))


@pytest.mark.parametrize(
    ("name", "bad"),
    [("seed", -1), ("seed", 1.5), ("seed", "0"), ("seed", True), ("seed", None), ("num_images", 0), ("num_images", 65)],
)
def test_sample_grid_rejects_bad_arguments(pipe, name, bad):
    kwargs = {"seed": 0, "num_images": 4, name: bad}
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        vae_demo.sample_grid(pipe, **kwargs)
    assert repr(bad) in str(info.value)  # the message names the argument and the value received


def test_whole_float_seed_from_a_number_field_is_accepted(pipe):
    a = vae_demo.sample_grid(pipe, seed=2.0, num_images=1)
    b = vae_demo.sample_grid(pipe, seed=2, num_images=1)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_sketch_to_ink_reads_transparent_canvas_as_paper():
    composite = stroke_rgba()
    ink = demo_utils.sketch_to_ink(sketch_value(composite))
    assert ink.shape == (280, 280) and ink.dtype == np.float32
    on_stroke = composite[..., 3] == 255
    # The canvas's RGB is 0 everywhere; only alpha tells ink from paper.
    assert np.all(ink[on_stroke] == 1.0) and np.all(ink[~on_stroke] == 0.0)


def test_fit_to_model_mnist_style_box_and_centre_of_mass():
    ink = np.zeros((280, 280), np.float32)
    ink[40:240, 100:140] = 1.0  # a tall bar off to the left: (200, 40) box
    x = demo_utils.fit_to_model(ink, 28)
    assert x.shape == (28, 28) and x.max() == pytest.approx(1.0) and x.min() >= 0.0
    rows, cols = np.nonzero(x > demo_utils.INK_THRESHOLD)
    assert rows.max() - rows.min() + 1 == 20  # the long side fills the 20x20 box
    ys, xs = np.mgrid[0:28, 0:28]
    com = ((ys * x).sum() / x.sum(), (xs * x).sum() / x.sum())
    assert com == pytest.approx((13.5, 13.5), abs=0.6)


def test_fit_to_model_small_images_fill_the_frame():
    ink = np.zeros((100, 100), np.float32)
    ink[10:90, 30:50] = 1.0
    x = demo_utils.fit_to_model(ink, 8)
    rows, cols = np.nonzero(x > demo_utils.INK_THRESHOLD)
    assert (rows.min(), rows.max()) == (0, 7)
    assert 3.0 <= cols.mean() <= 4.0  # centred


def test_fit_to_model_small_images_keep_the_digits_side_margins():
    """sklearn's digits leave columns 0 and 7 nearly empty: a round drawn 0 must not become a ring touching every
    edge."""
    from sklearn.datasets import load_digits

    assert (load_digits().images[:, :, [0, 7]] > 2).any(axis=(1, 2)).mean() < 0.1  # the data's own margins
    ink = np.zeros((200, 200), np.float32)
    ys, xs = np.mgrid[0:200, 0:200]
    radius = np.hypot(ys - 100, xs - 100)
    ink[(radius > 70) & (radius < 90)] = 1.0  # a round 0, as wide as it is tall
    x = demo_utils.fit_to_model(ink, 8)
    rows, cols = np.nonzero(x > demo_utils.INK_THRESHOLD)
    assert cols.min() >= 1 and cols.max() <= 6, "columns 0 and 7 stay empty"
    assert rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1  # aspect kept: round stays round


def test_reconstruct_drawing_gives_finite_likelihood(pipe):
    model_input, recon, text = vae_demo.reconstruct_drawing(pipe, sketch_value(stroke_rgba()), k=16)
    assert model_input.size == recon.size == (S * FACTOR, S * FACTOR)
    assert np.asarray(model_input).max() == 255  # the stroke reached the model
    assert "k = 16" in text and "nats" in text and "bits/dim" in text and "ELBO" in text
    numbers = [float(s) for s in re.findall(r"= \**(-?\d+\.\d+)", text)]
    assert len(numbers) == 3 and all(math.isfinite(v) and v > 0 for v in numbers)
    # Same drawing, same seed: the same scores.
    assert vae_demo.reconstruct_drawing(pipe, sketch_value(stroke_rgba()), k=16)[2] == text


def test_reconstruct_drawing_through_gradio_sketchpad_preprocess(pipe, tmp_path):
    """The value built by gr.Sketchpad.preprocess from the PNG files a browser uploads."""
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    paths = {}
    for name, array in [
        ("background", np.zeros((280, 280, 4), np.uint8)),
        ("layer", stroke_rgba()),
        ("composite", stroke_rgba()),
    ]:
        paths[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(array).save(paths[name])
    payload = EditorData(
        background=FileData(path=paths["background"]),
        layers=[FileData(path=paths["layer"])],
        composite=FileData(path=paths["composite"]),
    )
    value = gr.Sketchpad(type="numpy", image_mode="RGBA").preprocess(payload)
    assert set(value) == {"background", "layers", "composite"} and value["composite"].shape == (280, 280, 4)
    _, _, text = vae_demo.reconstruct_drawing(pipe, value, k=4)
    assert "k = 4" in text


def test_layers_without_composite_are_stacked(pipe):
    value = {"background": None, "layers": [stroke_rgba()], "composite": None}
    assert demo_utils.sketch_to_ink(value).max() == 1.0


@pytest.mark.parametrize(
    "value",
    [None, {"background": None, "layers": [], "composite": None}, sketch_value(np.zeros((280, 280, 4), np.uint8))],
    ids=["none", "nothing-drawn", "transparent-composite"],
)
def test_empty_canvas_is_a_clear_error(pipe, demo, value):
    with pytest.raises(vae_demo.EmptyCanvasError, match="canvas is empty"):
        vae_demo.reconstruct_drawing(pipe, value)
    # In the app it is a warning and a message, not a crash.
    with pytest.warns(UserWarning, match="canvas is empty"):
        model_input, recon, text = event(demo, "reconstruct")(value)
    assert model_input is None and recon is None and "canvas is empty" in text


def test_interpolation_strip_has_steps_tiles(pipe):
    strip = vae_demo.interpolation_strip(pipe, 0, 1, steps=7)
    assert strip.size == (grid_px(7) * FACTOR, grid_px(1) * FACTOR)
    # The end tiles are the decoded seeds.
    a = pipe(1, generator=torch.Generator().manual_seed(0), output_type="pt").images
    tile = np.asarray(strip)[2 * FACTOR : (2 + S) * FACTOR : FACTOR, 2 * FACTOR : (2 + S) * FACTOR : FACTOR]
    expected = (a[0, 0].numpy() * 255).round()
    np.testing.assert_allclose(tile, expected, atol=1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"steps": 1}, "`steps`"),
        ({"steps": 33}, "`steps`"),
        ({"seed_a": -5}, "`seed_a`"),
        ({"seed_b": 0.5}, "`seed_b`"),
    ],
)
def test_interpolation_rejects_bad_arguments(pipe, kwargs, name):
    args = {"seed_a": 0, "seed_b": 1, "steps": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        vae_demo.interpolation_strip(pipe, **args)


def test_latent_traversal_uses_normal_quantiles():
    z = vae_demo.latent_traversal(latent_dim=2, grid_size=4).reshape(4, 4, 2)  # (rows, cols, D)
    expected = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.125, 0.375, 0.625, 0.875]))
    torch.testing.assert_close(z[0, :, 0], expected, rtol=0, atol=1e-6)  # z1 across columns
    torch.testing.assert_close(z[:, 0, 1], expected.flip(0), rtol=0, atol=1e-6)  # z2 down the rows
    z3 = vae_demo.latent_traversal(latent_dim=3, grid_size=4)
    assert z3.shape == (16, 3) and torch.all(z3[:, 2] == 0)


@pytest.mark.parametrize("latent_dim", [2, 3])
def test_latent_grid(latent_dim):
    pipe = VAEPipeline(tiny_vae(latent_dim=latent_dim), pixel_levels=17)
    image = vae_demo.latent_grid(pipe, grid_size=5)
    assert image.size == (grid_px(5) * FACTOR, grid_px(5) * FACTOR)
    note = vae_demo.latent_grid_note(latent_dim)
    assert ("first two" in note) == (latent_dim != 2)
    with pytest.raises(ValueError, match="`grid_size`"):
        vae_demo.latent_grid(pipe, grid_size=1)


# -- the Blocks -----------------------------------------------------------------------------------------


def test_every_event_has_an_explicit_api_name(demo):
    import gradio as gr

    assert isinstance(demo, gr.Blocks)
    names = [fn.api_name for fn in demo.fns.values()]
    # Gradio 6 names an event after its function when api_name is left out; these are all set by hand.
    assert sorted(names) == sorted(API_NAMES)


def test_ui_turns_value_errors_into_gr_error(demo):
    import gradio as gr

    with pytest.raises(gr.Error, match="`steps`"):
        event(demo, "interpolate")(0, 1, 100)
    image = event(demo, "latent_grid")(3)
    assert image.size == (grid_px(3) * FACTOR,) * 2


def test_build_demo_from_a_saved_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "vae")
    blocks = vae_demo.build_demo(tmp_path / "vae")
    header = next(b for b in blocks.blocks.values() if type(b).__name__ == "Markdown")
    assert str(tmp_path / "vae") in header.value and "latent size 2" in header.value
    from_folder = event(blocks, "sample")(0, 4)
    from_memory = vae_demo.sample_grid(pipe, 0, 4)
    assert np.array_equal(np.asarray(from_folder), np.asarray(from_memory))


def test_build_demo_rejects_other_types():
    with pytest.raises(TypeError, match="pipeline_or_path"):
        vae_demo.build_demo(42)


def test_launched_app_serves_sample_endpoint(demo):
    from gradio_client import Client

    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    try:
        client = Client(local_url, verbose=False)
        path = client.predict(seed=1, num_images=4, api_name="/sample")
        with Image.open(path) as image:
            assert image.format == "PNG"
            served = np.asarray(image.convert("L"))
        expected = np.asarray(vae_demo.sample_grid(demo_pipe(demo), 1, 4))
        assert np.array_equal(served, expected)
    finally:
        demo.close()


def test_a_huge_sketch_is_refused_with_a_message():
    from hubgen.demo_utils import MAX_SKETCH_PX, preprocess_sketch

    huge = np.zeros((MAX_SKETCH_PX + 1, 8, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="at most 4096 on a side"):
        preprocess_sketch({"background": None, "layers": [], "composite": huge}, 28)
    with pytest.raises(ValueError, match="at most 4096 on a side"):
        preprocess_sketch(huge, 28)


# -- a colour model: samples in colour, the grey-only Draw tab off with a message -----------------------------


@pytest.fixture(scope="module")
def rgb_pipe():
    model = tiny_vae(sample_size=16, in_channels=3, latent_dim=2, architecture="conv", hidden_dims=(4, 8),
                     decoder_distribution="discretized_logistic")  # fmt: skip
    return VAEPipeline(model, pixel_levels=256)


def test_rgb_demo_builds_samples_in_colour_and_switches_the_sketchpad_off(rgb_pipe):
    from hubgen.errors import UserInputError

    blocks = vae_demo.build_demo(rgb_pipe)
    markdown = [b.value for b in blocks.blocks.values() if type(b).__name__ == "Markdown"]
    assert "Discretized logistic (256 levels) decoder" in markdown[0] and "16×16 RGB images" in markdown[0]
    assert any("Drawing is off for this model" in text and "3-channel" in text for text in markdown)
    sketchpads = [b for b in blocks.blocks.values() if type(b).__name__ == "Sketchpad"]
    rows = [b for b in blocks.blocks.values() if type(b).__name__ == "Row" and pad_in(b, sketchpads)]
    assert sketchpads and rows and not any(row.visible for row in rows)  # the canvas is hidden, not broken
    buttons = [b for b in blocks.blocks.values() if type(b).__name__ == "Button" and "score" in b.value]
    assert buttons and not any(button.visible for button in buttons)
    image = event(blocks, "sample")(0, 4)
    assert image.mode == "RGB" and image.size == (grid_px(2, 16) * math.ceil(MIN_TILE_PX / 16),) * 2
    assert event(blocks, "interpolate")(0, 1, 3).mode == "RGB" and event(blocks, "latent_grid")(2).mode == "RGB"
    with pytest.raises(UserInputError, match="Drawing is off"):
        vae_demo.reconstruct_drawing(rgb_pipe, sketch_value(stroke_rgba()), k=4)
    grey = VAEPipeline(tiny_vae(), pixel_levels=17)
    assert vae_demo.drawing_unavailable(grey) is None and "Bernoulli decoder" in vae_demo.describe(grey)


def pad_in(row, pads) -> bool:
    """Whether one of the sketchpads sits inside this layout block."""
    children = list(getattr(row, "children", []))
    while children:
        child = children.pop()
        if any(child is pad for pad in pads):
            return True
        children.extend(getattr(child, "children", []))
    return False


# -- a hierarchical VAE: the layers tab -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hierarchical_pipe():
    return VAEPipeline(tiny_vae(latent_dims=(4, 3), latent_hidden_dims=(8,)), pixel_levels=17)


def test_layer_grid_puts_one_z2_per_row_and_z1_across(hierarchical_pipe):
    pipe = hierarchical_pipe
    image = vae_demo.layer_grid(pipe, seed=2, rows=3, cols=4)
    assert image.size == (grid_px(4) * FACTOR, grid_px(3) * FACTOR)
    assert np.array_equal(np.asarray(image), np.asarray(vae_demo.layer_grid(pipe, seed=2, rows=3, cols=4)))
    # the same picture computed independently: z2 per row, column 0 at E[z1|z2], then mu + sigma eps_j
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        z2 = torch.randn(3, 3, generator=g)
        p1 = pipe.vae.decode_latent(z2, 1)
        eps = torch.randn(3, 4, generator=g)
        z1 = torch.stack([p1.mean, *(p1.mean + p1.std * e for e in eps)], dim=1).reshape(12, 4)
        expected = demo_utils.show_grid(pipe.vae.decode_to_images(z1), nrow=4)
    assert np.array_equal(np.asarray(image), np.asarray(expected))
    with pytest.raises(ValueError, match="`cols`"):
        vae_demo.layer_grid(pipe, seed=0, rows=2, cols=1)
    with pytest.raises(ValueError, match="hierarchical"):
        vae_demo.layer_grid(VAEPipeline(tiny_vae(), pixel_levels=17), seed=0, rows=2, cols=2)


def test_hierarchical_demo_describes_the_layers_and_adds_the_layers_tab(hierarchical_pipe):
    assert "z1: 4 → z2: 3" in vae_demo.describe(hierarchical_pipe)
    assert "top layer z2" in vae_demo.latent_grid_note(3, 2)
    blocks = vae_demo.build_demo(hierarchical_pipe)
    assert sorted(fn.api_name for fn in blocks.fns.values()) == sorted(API_NAMES | {"layers"})
    assert event(blocks, "layers")(0, 2, 3).size == (grid_px(3) * FACTOR, grid_px(2) * FACTOR)
    assert event(blocks, "latent_grid")(3).size == (grid_px(3) * FACTOR,) * 2
    assert event(blocks, "sample")(0, 4).size == (grid_px(2) * FACTOR,) * 2
