"""The text-to-image demo: its plain functions, the Blocks, a launched app called through gradio_client (the
Space that runs it for any family: tests/test_family_contract.py)."""

import math

import numpy as np
import pytest
import torch
from conftest import event
from PIL import Image
from test_text2img import tiny_pipeline

from hubgen.demo_utils import MIN_TILE_PX
from hubgen.text2img import demo as t2i_demo

S = 8
FACTOR = math.ceil(MIN_TILE_PX / S)
API_NAMES = {"generate", "sweep", "example_prompt"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def grid_px(count: int) -> int:
    return count * (S + 2) + 2


def tile(image: Image.Image, row: int, col: int) -> np.ndarray:
    a = np.asarray(image)
    top, left = (2 + row * (S + 2)) * FACTOR, (2 + col * (S + 2)) * FACTOR
    return a[top : top + S * FACTOR : FACTOR, left : left + S * FACTOR : FACTOR]


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return (images[:, 0].numpy() * 255).round().clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def demo(pipe):
    return t2i_demo.build_demo(pipe)


def test_generate_grid_settings_and_determinism(pipe):
    image, text = t2i_demo.generate(pipe, "the number 3", "", 2.0, 3, "dpmsolver++", 5, 10)
    assert image.mode == "L" and image.size == (grid_px(8) * FACTOR, grid_px(2) * FACTOR)  # rows of up to 8
    again, _ = t2i_demo.generate(pipe, "the number 3", "", 2.0, 3, "dpmsolver++", 5, 10)
    assert np.array_equal(np.asarray(image), np.asarray(again))
    expected = pipe("the number 3", guidance_scale=2.0, num_inference_steps=3, num_images_per_prompt=10,
                    generator=torch.Generator().manual_seed(5), output_type="pt").images  # fmt: skip
    for i in range(10):
        assert np.array_equal(tile(image, *divmod(i, 8)), as_uint8(expected)[i])
    assert "**the number 3**" in text and "w = 2" in text and "dpmsolver++, 3 steps" in text and "seed 5" in text
    assert "negative prompt" not in text


def test_negative_prompt_and_unknown_words_are_reported(pipe):
    _, text = t2i_demo.generate(pipe, "a sketch of a seven", "a scribbled eight", 3.0, 2, "ddim", 0, 1)
    assert "negative prompt **a scribbled eight**" in text
    assert "The prompt has words the model never saw in training, read as [UNK]: `sketch`" in text
    assert "The negative prompt has words the model never saw in training, read as [UNK]: `scribbled`" in text


def test_progress_follows_every_sampler_step(pipe):
    calls = []
    t2i_demo.generate(pipe, "seven", "", 3.0, 4, "dpmsolver++", 0, 2, progress=lambda f, desc=None: calls.append(f))
    assert calls == [0.25, 0.5, 0.75, 1.0]
    calls.clear()
    t2i_demo.guidance_strip(
        pipe, "seven", "", 2, "dpmsolver++", 0, progress=lambda f, desc=None: calls.append((f, desc))
    )
    n = len(t2i_demo.SWEEP_SCALES)
    assert [f for f, _ in calls] == pytest.approx([(i + 1) / (2 * n) for i in range(2 * n)])
    assert calls[-1][1] == f"w = {t2i_demo.SWEEP_SCALES[-1]:g}"


def test_guidance_strip_shares_the_noise_across_scales(pipe):
    strip = t2i_demo.guidance_strip(pipe, "the number 7", "", 3, "dpmsolver++", 11)
    n = len(t2i_demo.SWEEP_SCALES)
    assert strip.size == (grid_px(n) * FACTOR, grid_px(1) * FACTOR)
    w1 = t2i_demo.SWEEP_SCALES.index(1.0)  # the w = 1 tile is `generate` with w = 1 and the same seed
    one, _ = t2i_demo.generate(pipe, "the number 7", "", 1.0, 3, "dpmsolver++", 11, 1)
    assert np.array_equal(tile(strip, 0, w1), tile(one, 0, 0))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"guidance_scale": 16.0}, "`guidance_scale`"),
        ({"guidance_scale": -1}, "`guidance_scale`"),
        ({"guidance_scale": None}, "`guidance_scale`"),
        ({"steps": 0}, "`steps`"),
        ({"steps": 101}, "`steps`"),
        ({"sampler": "heun"}, "`sampler`"),
        ({"seed": -1}, "`seed`"),
        ({"seed": 1.5}, "`seed`"),
        ({"num_images": 17}, "`num_images`"),
        ({"prompt": ""}, "`prompt` must not be empty"),
        ({"prompt": "seven " * 20}, "more than the 16"),
        ({"negative_prompt": 3}, "`negative_prompt`"),
    ],
)
def test_generate_rejects_bad_arguments(pipe, kwargs, name):
    args = {"prompt": "seven", "negative_prompt": "", "guidance_scale": 3.0, "steps": 2, "sampler": "dpmsolver++",
            "seed": 0, "num_images": 1, **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=name):
        t2i_demo.generate(pipe, **args)


def test_blocks_events_and_errors(demo, pipe):
    import gradio as gr

    assert isinstance(demo, gr.Blocks)
    assert sorted(fn.api_name for fn in demo.fns.values()) == sorted(API_NAMES)
    with pytest.raises(gr.Error, match="`guidance_scale`"):
        event(demo, "generate")("seven", "", 99.0, 2, "dpmsolver++", 0, 1)
    with pytest.raises(gr.Error, match="`prompt` must not be empty"):
        event(demo, "sweep")("  ", "", 2, "dpmsolver++", 0)
    image, _ = event(demo, "generate")("seven", "", 3.0, 2, "dpmsolver++", 0, 1, None)
    assert image.size == (grid_px(1) * FACTOR,) * 2


def test_launched_app_serves_generate(demo, pipe):
    from gradio_client import Client

    _, local_url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    try:
        client = Client(local_url, verbose=False)
        path, text = client.predict("the number 2", "", 3.0, 2, "dpmsolver++", 4, 3, api_name="/generate")
        with Image.open(path) as image:
            assert image.format == "PNG"
            served = np.asarray(image.convert("L"))
        expected, _ = t2i_demo.generate(pipe, "the number 2", "", 3.0, 2, "dpmsolver++", 4, 3)
        assert np.array_equal(served, np.asarray(expected)) and "seed 4" in text
    finally:
        demo.close()


def test_example_prompts_come_from_the_training_record_of_a_captioned_model(pipe, tmp_path):
    import json

    import gradio as gr

    assert t2i_demo.example_prompts(pipe) == t2i_demo.EXAMPLE_PROMPTS  # in memory, no record: digit prompts
    pipe.save_pretrained(tmp_path / "m")
    prompts = ["a seven in red", "the number 3 on white", "eight", "nine", "two", "one"]
    record = {"family": "text2img", "captions": {"source": "caption column"}, "validation_prompts": prompts}
    (tmp_path / "m" / "hubgen_training.json").write_text(json.dumps(record))
    demo = t2i_demo.build_demo(str(tmp_path / "m"))
    loaded = t2i_demo.load_pipeline(str(tmp_path / "m"))[0]
    assert t2i_demo.example_prompts(loaded) == tuple(prompts[:5])
    boxes = [b for b in demo.blocks.values() if isinstance(b, gr.Textbox) and b.label == "Prompt"]
    assert boxes and all(b.value == prompts[0] for b in boxes)
    record["captions"]["source"] = "digit templates"  # a digit model keeps the digit examples
    (tmp_path / "m" / "hubgen_training.json").write_text(json.dumps(record))
    assert t2i_demo.example_prompts(loaded) == t2i_demo.EXAMPLE_PROMPTS
