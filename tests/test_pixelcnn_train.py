"""The PixelCNN through the CLI: exact resume, both pixel modes and architectures, RGB, the demo's functions.
(The family contract test trains it too: folder, reload, card, eval/sample options, gallery, Space.)"""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from hubgen.cli import main
from hubgen.pixelcnn import demo as pixelcnn_demo
from hubgen.pixelcnn.pipeline_pixelcnn import PixelCNNPipeline

SMALL = ["--dataset", "digits", "--hidden_channels", "8", "--num_layers", "2", "--train_batch_size", "256",
         "--eval_num_images", "8", "--eval_num_samples", "0", "--report_to", "none",
         "--checkpointing_steps", "4"]  # fmt: skip


def _train(out, steps, *extra):
    return main(["train", "pixelcnn", "--output_dir", str(out), *SMALL, "--max_train_steps", str(steps), *extra])


def _weights(folder):
    return load_file(next((folder / "model").glob("*.safetensors")))


def test_resume_continues_exactly(tmp_path):
    # 1437 training digits at batch 256 make 6 steps per epoch: the resumed run crosses an epoch boundary
    assert _train(tmp_path / "straight", 8) == 0
    assert _train(tmp_path / "resumed", 4) == 0
    assert _train(tmp_path / "resumed", 8, "--resume_from_checkpoint", "latest") == 0
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert json.loads((tmp_path / "resumed" / "hubgen_training.json").read_text())["steps"] == 8


def test_the_defaults_are_the_best_measured_recipe_and_each_architecture_has_its_own_sizes():
    from hubgen.pixelcnn.train_pixelcnn import parse_args

    args = parse_args(["--output_dir", "x"])
    assert (args.architecture, args.hidden_channels, args.num_layers, args.learning_rate) == ("multiscale", 32, 1, 3e-3)
    args = parse_args(["--output_dir", "x", "--architecture", "gated"])
    assert (args.hidden_channels, args.num_layers) == (64, 7)
    args = parse_args(["--output_dir", "x", "--architecture", "pixelcnn", "--num_layers", "3"])
    assert (args.hidden_channels, args.num_layers) == (64, 3)


def test_expected_targets_have_the_sampled_objectives_expectation():
    # 2x2 binary images from intensities p: E_b[-log p(b)] (the objective of dynamic binarization) against the
    # expectation over the input's binarization of sum_i BCE(logit_i(b), p_i), both by enumerating the 16 images
    import itertools

    from hubgen.pixelcnn.modeling_pixelcnn import PixelCNNModel, to_input, value_log_probs

    torch.manual_seed(0)
    model = PixelCNNModel(sample_size=2, in_channels=1, pixel_levels=2, hidden_channels=8, num_layers=2,
                          architecture="pixelcnn").double().eval()  # fmt: skip
    with torch.no_grad():  # away from the zero-initialized output, so that the logits depend on the context
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    p = torch.tensor([0.9, 0.3, 0.5, 0.05], dtype=torch.float64).view(1, 1, 2, 2)
    images = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float64).view(16, 1, 2, 2)
    weight = (p**images * (1 - p) ** (1 - images)).flatten(1).prod(1)  # P(b) of each binarization
    with torch.no_grad():
        logits = model(to_input(images, 2).double())
        sampled = -value_log_probs(logits, images).sum((1, 2, 3))  # -log p(b)
        expected = -value_log_probs(logits, p.expand_as(images)).sum((1, 2, 3))  # sum_i BCE(logit_i(b), p_i)
    assert torch.isclose(weight.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close((weight * expected).sum(), (weight * sampled).sum(), rtol=1e-12, atol=0)
    assert not torch.allclose(expected, sampled)  # a different estimator, the same expectation


def test_expected_targets_train_through_the_cli_and_need_binary_pixels(tmp_path, capsys):
    assert _train(tmp_path / "m", 2, "--expected_targets") == 0
    assert json.loads((tmp_path / "m" / "hubgen_training.json").read_text())["expected_targets"] is True
    assert _train(tmp_path / "d", 2, "--expected_targets", "--pixel_mode", "discrete") == 2
    assert "--expected_targets needs --pixel_mode binary, got discrete" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("extra, levels", [(["--pixel_mode", "discrete", "--architecture", "pixelcnn"], 17),
                                           (["--pixel_mode", "binary", "--architecture", "gated"], 2),
                                           (["--pixel_mode", "binary"], 2)])  # fmt: skip  # the default: multiscale
def test_both_pixel_modes_give_exact_figures_in_the_card(tmp_path, extra, levels):
    out = tmp_path / "m"
    assert _train(out, 2, *extra) == 0
    pipe = PixelCNNPipeline.from_pretrained(out)
    assert pipe.model.config.pixel_levels == levels
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_images"] == 8 and results["metrics"]["bits_per_dim"]["mean"] > 0
    card = (out / "README.md").read_text()
    assert "exact NLL (nats per image)" in card and "1601.06759" in card and "no bound" in card.lower()
    assert ("dynamic binarization" in card) == (levels == 2)
    assert ("1701.05517" in card and "multiscale streams" in card) == ("--architecture" not in extra)


@pytest.mark.parametrize("architecture", ["gated", "multiscale"])
def test_rgb_images_train_with_colour_ordering(tmp_path, architecture):
    from conftest import rgb_npz

    data = rgb_npz(tmp_path / "rgb.npz", size=8)
    out = tmp_path / "rgb"
    assert main(["train", "pixelcnn", "--dataset", str(data), "--output_dir", str(out), "--pixel_mode", "discrete",
                 "--architecture", architecture,
                 "--hidden_channels", "12", "--num_layers", "2", "--max_train_steps", "2", "--eval_num_images", "4",
                 "--train_batch_size", "16",
                 "--eval_num_samples", "0", "--report_to", "none"]) == 0  # fmt: skip
    pipe = PixelCNNPipeline.from_pretrained(out)
    assert pipe.model.config.in_channels == 3 and pipe.model.config.pixel_levels == 256
    assert json.loads((out / "eval_results.json").read_text())["pixel_mode"] == "256-level discrete"


def _sketch(top_half_only: bool = False) -> dict:
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(70, 60), (200, 60), (150, 130)] if top_half_only else [(70, 60), (200, 60), (120, 230)],
              fill=(0, 0, 0, 255), width=18)  # fmt: skip
    composite = np.asarray(image).copy()
    return {"background": np.zeros_like(composite), "layers": [composite], "composite": composite}


def test_the_demo_samples_completes_and_maps(tmp_path, tiny_models):
    pipe, _ = pixelcnn_demo.load_pipeline(str(tiny_models["pixelcnn"]))
    grid = pixelcnn_demo.sample_grid(pipe, 0, 4, 1.0)
    assert grid.width >= 64 and np.array_equal(np.asarray(grid), np.asarray(pixelcnn_demo.sample_grid(pipe, 0, 4)))
    strip, text = pixelcnn_demo.complete_drawing(pipe, _sketch(top_half_only=True), 3, 1)
    assert strip.width > strip.height and "3 completions" in text
    model_input, heat, text = pixelcnn_demo.log_prob_map(pipe, _sketch())
    assert heat.size == model_input.size and "Exact NLL" in text and "nats" in text
    with pytest.raises(ValueError, match="canvas is empty"):
        pixelcnn_demo.complete_drawing(pipe, {"background": None, "layers": [], "composite": None}, 2, 0)
    with pytest.raises(ValueError, match="num_completions"):
        pixelcnn_demo.complete_drawing(pipe, _sketch(), 99, 0)
    with pytest.raises(ValueError, match="temperature"):
        pixelcnn_demo.sample_grid(pipe, 0, 2, 0)
