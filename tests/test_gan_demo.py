"""The GAN demo: its plain functions, the Blocks it builds, a launched app called through gradio_client
(the Space that runs it for any family: tests/test_family_contract.py)."""

import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import event
from PIL import Image

from hubgen.demo_utils import MIN_TILE_PX
from hubgen.gan import GANPipeline, Generator
from hubgen.gan import demo as gan_demo
from hubgen.metrics import nearest_neighbours

S = 8  # the tiny generator: 8x8 images like `digits`, latent_dim 8
FACTOR = math.ceil(MIN_TILE_PX / S)  # the demo's nearest-neighbour upscaling
API_NAMES = {"sample", "interpolate", "nearest"}


def grid_px(count: int, tile: int = S, pad: int = 2) -> int:
    """Side of `count` tiles of `tile` pixels in make_grid, before upscaling."""
    return count * (tile + pad) + pad


def tile(image: Image.Image, row: int, col: int) -> np.ndarray:
    """Tile (row, col) of an upscaled make_grid image, back at S x S, as uint8."""
    a = np.asarray(image)
    top, left = (2 + row * (S + 2)) * FACTOR, (2 + col * (S + 2)) * FACTOR
    return a[top : top + S * FACTOR : FACTOR, left : left + S * FACTOR : FACTOR]


def as_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 1, H, W) in [0, 1] -> (B, H, W) uint8 as make_grid rounds it."""
    return (images[:, 0].numpy() * 255).round().clip(0, 255).astype(np.uint8)


def untrained_pipe() -> GANPipeline:
    torch.manual_seed(0)
    pipe = GANPipeline(Generator(latent_dim=8, sample_size=8, base_channels=4))
    pipe.generator.eval()
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return untrained_pipe()


@pytest.fixture(scope="module")
def demo(pipe):
    return gan_demo.build_demo(pipe, dataset="digits")


def draw(pipe, seed: int, n: int, truncation=None) -> torch.Tensor:
    return pipe(n, generator=torch.Generator().manual_seed(seed), truncation=truncation, output_type="pt").images


# -- plain functions ------------------------------------------------------------------------------------


def test_sample_grid_size_and_determinism(pipe):
    image = gan_demo.sample_grid(pipe, seed=3, num_images=5)  # 3 columns, 2 rows
    assert isinstance(image, Image.Image) and image.mode == "L"
    assert image.size == (grid_px(3) * FACTOR, grid_px(2) * FACTOR)
    assert np.array_equal(np.asarray(image), np.asarray(gan_demo.sample_grid(pipe, seed=3, num_images=5)))
    assert not np.array_equal(np.asarray(image), np.asarray(gan_demo.sample_grid(pipe, seed=4, num_images=5)))


def test_truncation_zero_is_the_full_prior(pipe):
    off = gan_demo.sample_grid(pipe, seed=7, num_images=4, truncation=0)
    expected = as_uint8(draw(pipe, 7, 4, truncation=None))
    for i in range(4):
        assert np.array_equal(tile(off, *divmod(i, 2)), expected[i])
    assert gan_demo.check_truncation(0) is None and gan_demo.check_truncation(0.0) is None
    on = gan_demo.sample_grid(pipe, seed=7, num_images=4, truncation=0.5)
    truncated = as_uint8(draw(pipe, 7, 4, truncation=0.5))
    assert all(np.array_equal(tile(on, *divmod(i, 2)), truncated[i]) for i in range(4))
    assert not np.array_equal(np.asarray(on), np.asarray(off))


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("seed", -1),
        ("seed", 2**32),
        ("seed", 1.5),
        ("seed", "0"),
        ("seed", True),
        ("seed", None),
        ("num_images", 0),
        ("num_images", 65),
        ("truncation", -0.1),
        ("truncation", 3.5),
        ("truncation", float("nan")),
        ("truncation", "1"),
        ("truncation", None),
    ],
)
def test_sample_grid_rejects_bad_arguments(pipe, name, bad):
    kwargs = {"seed": 0, "num_images": 4, "truncation": 0, name: bad}
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        gan_demo.sample_grid(pipe, **kwargs)
    assert repr(bad) in str(info.value)  # the message names the argument and the value received


def test_interpolation_strip_has_steps_tiles_and_ends_at_the_seeds(pipe):
    strip = gan_demo.interpolation_strip(pipe, 0, 1, steps=7)
    assert strip.size == (grid_px(7) * FACTOR, grid_px(1) * FACTOR)
    assert np.array_equal(tile(strip, 0, 0), as_uint8(draw(pipe, 0, 1))[0])
    assert np.array_equal(tile(strip, 0, 6), as_uint8(draw(pipe, 1, 1))[0])


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
    with pytest.raises(ValueError, match=name):
        gan_demo.interpolation_strip(pipe, **{"seed_a": 0, "seed_b": 1, "steps": 4, **kwargs})


def test_nearest_training_images_on_digits(pipe):
    strip, text = gan_demo.nearest_training_images(pipe, "digits", seed=5, index=2, num_images=4)
    assert strip.size == (grid_px(6) * FACTOR, grid_px(1) * FACTOR)  # the sample, then 5 neighbours
    # The sample is tile 2 of the Sample tab's grid for the same seed and number of images.
    grid = gan_demo.sample_grid(pipe, seed=5, num_images=4)
    assert np.array_equal(tile(strip, 0, 0), tile(grid, 1, 0))

    sample = draw(pipe, 5, 4)[2:3]  # (1, 1, 8, 8)
    train = gan_demo.training_images("digits")  # (1437, 1, 8, 8) in [0, 1]
    distances, indices = gan_demo.nearest_training(sample[0], train)
    assert len(distances) == len(indices) == 5 and len(set(indices.tolist())) == 5
    assert np.all(np.diff(distances) >= 0)
    nn_distance, nn_index = nearest_neighbours(sample, train)
    assert indices[0] == nn_index[0] and distances[0] == pytest.approx(nn_distance[0], abs=1e-9)
    brute = torch.linalg.vector_norm(train.reshape(len(train), -1).double() - sample.reshape(1, -1).double(), dim=1)
    np.testing.assert_allclose(distances, np.sort(brute.numpy())[:5], rtol=0, atol=1e-9)
    for j, i in enumerate(indices, start=1):  # the neighbours are drawn in order beside the sample
        assert np.array_equal(tile(strip, 0, j), (train[i, 0].numpy() * 255).round().astype(np.uint8))

    numbers = [float(s) for s in re.findall(r"\*\*(\d+\.\d+)\*\*", text)]
    np.testing.assert_allclose(numbers, distances, atol=5e-4)
    assert "seed 5" in text and "truncation off" in text and "`digits`" in text and "1437" in text


def test_training_images_are_cached_per_dataset():
    first = gan_demo.training_images("digits")
    assert gan_demo.training_images("digits") is first
    assert first.dtype == torch.float32 and first.shape == (1437, 1, 8, 8) and float(first.max()) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"index": 4}, "`index`"),
        ({"index": -1}, "`index`"),
        ({"num_images": 0}, "`num_images`"),
        ({"seed": -1}, "`seed`"),
    ],
)
def test_nearest_rejects_bad_arguments(pipe, kwargs, name):
    with pytest.raises(ValueError, match=name):
        gan_demo.nearest_training_images(pipe, "digits", **{"seed": 0, "index": 0, "num_images": 4, **kwargs})


def test_nearest_without_or_with_a_mismatched_dataset(pipe, tmp_path):
    with pytest.raises(gan_demo.DatasetUnavailableError, match="No training dataset"):
        gan_demo.nearest_training_images(pipe, None, seed=0)
    np.savez(tmp_path / "big.npz", x_train=np.zeros((3, 12, 12), np.uint8))
    with pytest.raises(gan_demo.DatasetUnavailableError, match="pass the dataset the model was trained on"):
        gan_demo.nearest_training_images(pipe, tmp_path / "big.npz", seed=0)
    with pytest.raises(gan_demo.DatasetUnavailableError, match="Cannot load"):
        gan_demo.training_images(tmp_path / "missing.npz")


# -- the Blocks -----------------------------------------------------------------------------------------


def test_every_event_has_an_explicit_api_name(demo):
    import gradio as gr

    assert isinstance(demo, gr.Blocks)
    assert sorted(fn.api_name for fn in demo.fns.values()) == sorted(API_NAMES)


def test_ui_handlers(demo, pipe):
    import gradio as gr

    with pytest.raises(gr.Error, match="`truncation`"):
        event(demo, "sample")(0, 4, 5.0)
    with pytest.raises(gr.Error, match="`steps`"):
        event(demo, "interpolate")(0, 1, 100)
    assert event(demo, "interpolate")(0, 1, 3).size == (grid_px(3) * FACTOR, grid_px(1) * FACTOR)
    strip, text = event(demo, "nearest")(0, 16, 0, 0.0)
    assert strip.size == (grid_px(6) * FACTOR, grid_px(1) * FACTOR) and "`digits`" in text


def test_no_dataset_is_a_message_not_a_crash(pipe):
    blocks = gan_demo.build_demo(pipe)  # in memory: no hubgen_training.json to read
    with pytest.warns(UserWarning, match="No training dataset"):
        image, text = event(blocks, "nearest")(0, 1, 0, 0)
    assert image is None and "No training dataset" in text


def test_build_demo_from_a_saved_folder(pipe, tmp_path):
    folder = tmp_path / "gan"
    pipe.save_pretrained(folder)
    assert gan_demo.training_dataset_of(folder) is None
    (folder / "hubgen_training.json").write_text(json.dumps({"dataset": "digits"}))
    assert str(gan_demo.training_dataset_of(folder)) == "digits"  # a DataSpec named digits

    blocks = gan_demo.build_demo(folder)
    header = next(b for b in blocks.blocks.values() if type(b).__name__ == "Markdown")
    assert str(folder) in header.value and "latent size 8" in header.value
    from_folder = event(blocks, "sample")(0, 4, 0.7)
    assert np.array_equal(np.asarray(from_folder), np.asarray(gan_demo.sample_grid(pipe, 0, 4, 0.7)))
    _, text = event(blocks, "nearest")(0, 4, 3, 0)
    assert "`digits`" in text


def test_build_demo_rejects_other_types():
    with pytest.raises(TypeError, match="pipeline_or_path"):
        gan_demo.build_demo(42)


def test_launched_app_serves_sample_endpoint(demo, pipe):
    from gradio_client import Client

    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    try:
        client = Client(local_url, verbose=False)
        path = client.predict(1, 4, 0.0, api_name="/sample")
        with Image.open(path) as image:
            assert image.format == "PNG"
            served = np.asarray(image.convert("L"))
        assert np.array_equal(served, np.asarray(gan_demo.sample_grid(pipe, 1, 4)))
    finally:
        demo.close()
