"""The GAN on colour images of other sizes: the DCGAN paper's architecture for 32 and 64 px, the small generator
for small sizes, RGB through the CLI (16x16 and 32x32 .npz made here), and sizes the architectures cannot take.

The runs pass `--eval_num_samples 0`: sample quality on RGB data without a shipped classifier is hubgen.metrics'
(issue 15) and not measured here."""

import json

import numpy as np
import pytest
import torch
from conftest import rgb_npz
from PIL import Image

from hubgen.cli import main
from hubgen.errors import UserInputError
from hubgen.gan import Discriminator, GANPipeline, Generator
from hubgen.gan import demo as gan_demo
from hubgen.gan.modeling_gan import architecture_for
from hubgen.gan.train_gan import sample_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = ["--max_train_steps", "3", "--train_batch_size", "16", "--base_channels", "4", "--checkpointing_steps", "3",
       "--sample_steps", "3", "--eval_num_samples", "0", "--report_to", "none", "--seed", "0"]  # fmt: skip


def test_the_paper_architecture_at_64_px_layer_by_layer():
    """Radford et al.'s Figure 1 with ngf = ndf = 64 (the PyTorch reference widths): z (100) -> 4x4x512 -> 8x8x256
    -> 16x16x128 -> 32x32x64 -> 64x64x3, stride-2 4x4 transposed convolutions, BN + ReLU, Tanh; D the mirror with
    LeakyReLU(0.2), no BN on its input layer, a 4x4 convolution to one logit."""
    torch.manual_seed(0)
    gen = Generator(100, 64, 3, 64, architecture="dcgan")
    disc = Discriminator(64, 3, 64, architecture="dcgan")
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [tuple(m.weight.shape[:2]) for m in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert [m.stride for m in convs] == [(1, 1)] + [(2, 2)] * 4 and all(m.kernel_size == (4, 4) for m in convs)
    kinds = [type(m).__name__ for m in gen.net]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 4 + ["ConvTranspose2d", "Tanh"]
    d_convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(m.weight.shape[:2]) for m in d_convs] == [(64, 3), (128, 64), (256, 128), (512, 256), (1, 512)]
    d_kinds = [type(m).__name__ for m in disc.net]
    assert d_kinds == ["Conv2d", "LeakyReLU"] + ["Conv2d", "BatchNorm2d", "LeakyReLU"] * 3 + ["Conv2d"]
    assert all(m.negative_slope == 0.2 for m in disc.modules() if isinstance(m, torch.nn.LeakyReLU))
    with torch.no_grad():
        x = gen(torch.randn(2, 100))
        assert x.shape == (2, 3, 64, 64) and x.abs().max() <= 1
        assert disc(x).shape == (2,)
    # 32 px: one stage fewer, from 4x4x256
    gen32 = Generator(100, 32, 3, 64, architecture="dcgan")
    assert [m.weight.shape[1] for m in gen32.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [256, 128, 64, 3]
    assert Discriminator(32, 3, 8, extra_layers=1, architecture="dcgan")(torch.zeros(2, 3, 32, 32)).shape == (2,)


def test_architecture_by_size_and_the_sizes_it_cannot_take():
    assert [architecture_for(s) for s in (8, 16, 28, 32, 64, 128, 40)] == ["small"] * 3 + ["dcgan"] * 3 + ["small"]
    for bad in (18, 30, 2):
        with pytest.raises(UserInputError, match="32, 64 or 128"):
            architecture_for(bad)
    with pytest.raises(UserInputError, match="'dcgan' architecture takes images of side 32, 64 or 128"):
        Generator(8, 16, 3, 4, architecture="dcgan")
    with pytest.raises(UserInputError, match="architecture"):
        Discriminator(16, 3, 4, architecture="resnet")
    # the class default stays the small generator: configs saved before the option load as they were
    assert Generator(8, 8, 1, 4).config.architecture == "small"


@pytest.fixture(scope="module")
def rgb16_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan-rgb16")
    data = rgb_npz(root / "rgb16.npz", 16)
    out = root / "model"
    assert main(["train", "gan", "--dataset", str(data), "--output_dir", str(out), "--latent_dim", "8", *RUN]) == 0
    return out, data


def test_rgb_16px_trains_saves_and_reloads_with_identical_samples(rgb16_run):
    out, _ = rgb16_run
    config = json.loads((out / "generator" / "config.json").read_text())
    assert (config["in_channels"], config["sample_size"], config["architecture"]) == (3, 16, "small")
    with Image.open(out / "samples.png") as image:
        assert image.mode == "RGB"
        written = np.asarray(image).copy()
    pipe = GANPipeline.from_pretrained(out)
    assert np.array_equal(np.asarray(sample_grid(pipe)), written)  # the saved model draws samples.png again
    a = pipe(4, generator=torch.Generator().manual_seed(1), output_type="pt").images
    assert a.shape == (4, 3, 16, 16)
    assert pipe(2, generator=torch.Generator().manual_seed(1)).images[0].mode == "RGB"
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["image_shape"] == [3, 16, 16] and info["pixel_levels"] == 256
    card = (out / "README.md").read_text()
    assert "small two-stage generator (16x16), 3 channel(s)" in card and "![64 samples" in card
    assert "digit classifier" not in card  # no sample-quality figure was measured: the card says nothing of one


def test_rgb_demo_builds_and_its_nearest_neighbours_are_in_colour(rgb16_run):
    out, data = rgb16_run
    demo = gan_demo.build_demo(out)  # the dataset comes from the training record
    assert {f.api_name for f in demo.fns.values()} >= {"sample", "interpolate", "nearest"}
    pipe, _ = gan_demo.load_pipeline(out)
    assert "16×16 RGB images" in gan_demo.describe(pipe)
    strip, text = gan_demo.nearest_training_images(pipe, str(data), seed=0)
    assert strip.mode == "RGB" and "768 intensities" in text
    assert gan_demo.sample_grid(pipe, 0, 4).mode == "RGB"


def test_rgb_32px_trains_the_paper_architecture(tmp_path):
    data = rgb_npz(tmp_path / "rgb32.npz", 32, n_train=32, n_test=8)
    out = tmp_path / "model"
    assert main(["train", "gan", "--dataset", str(data), "--output_dir", str(out), *RUN]) == 0
    config = json.loads((out / "generator" / "config.json").read_text())
    assert (config["architecture"], config["latent_dim"], config["sample_size"]) == ("dcgan", 100, 32)
    with Image.open(out / "samples.png") as image:
        assert image.mode == "RGB"
    assert "the DCGAN paper's 64x64 architecture" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "size, extra, message",
    [(18, [], "32, 64 or 128 (the DCGAN paper's architecture) or another multiple of 4"),
     (16, ["--architecture", "dcgan"], "'dcgan' architecture takes images of side 32, 64 or 128")],
)  # fmt: skip
def test_a_size_the_architecture_cannot_take_exits_2_with_one_message(tmp_path, capsys, size, extra, message):
    data = rgb_npz(tmp_path / f"rgb{size}.npz", size, n_train=16, n_test=4)
    argv = ["train", "gan", "--dataset", str(data), "--output_dir", str(tmp_path / "o"), *RUN, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and f"has {size}x{size} images" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
