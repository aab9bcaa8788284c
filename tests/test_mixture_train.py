"""The mixture through the CLI: exact resume of EM, convergence that survives a resume, both distributions and the
gradient fit, and the demo's functions. (The family contract test trains it too: folder, reload, card, eval/sample
options, gallery, Space.)"""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from hubgen.cli import main
from hubgen.mixture import demo as mixture_demo
from hubgen.mixture.pipeline_mixture import MixturePipeline

SMALL = ["--dataset", "digits", "--num_components", "6", "--eval_num_images", "40", "--eval_num_samples", "0",
         "--report_to", "none", "--checkpointing_steps", "3"]  # fmt: skip


def _train(out, steps, *extra):
    return main(["train", "mixture", "--output_dir", str(out), *SMALL, "--max_train_steps", str(steps), *extra])


def _weights(folder):
    return load_file(next((folder / "model").glob("*.safetensors")))


def _record(folder):
    return json.loads((folder / "hubgen_training.json").read_text())


def _straight_and_resumed(tmp_path, steps, stop, *extra):
    """A run of `steps` straight, and one stopped at `stop` then resumed to `steps`: bit-identical weights."""
    assert _train(tmp_path / "straight", steps, *extra) == 0
    assert _train(tmp_path / "resumed", stop, *extra) == 0
    assert _train(tmp_path / "resumed", steps, "--resume_from_checkpoint", "latest", *extra) == 0
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("extra", [[], ["--distribution", "gaussian", "--init", "random"]])
def test_resume_continues_exactly(tmp_path, extra):
    _straight_and_resumed(tmp_path, 6, 3, *extra)
    straight, resumed = _record(tmp_path / "straight"), _record(tmp_path / "resumed")
    assert resumed["steps"] == 6 and resumed["final_objective"] == straight["final_objective"]
    assert resumed["epochs"] == 6.0  # one EM iteration is one pass over the training set


def test_the_training_objective_never_decreases_and_convergence_survives_a_resume(tmp_path):
    out = tmp_path / "c"
    assert _train(out, 200, "--tolerance", "1e-3", "--logging_steps", "1") == 0
    record = _record(out)
    assert record["converged"] and record["steps"] < 200
    checkpoint = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((checkpoint / "state.json").read_text())["state"]["run"]["history"]
    objectives = np.array([row["objective"] for row in history])
    assert len(objectives) == record["steps"] and (np.diff(objectives) >= -1e-4).all()  # float32 EM on the digits
    assert _train(out, 200, "--tolerance", "1e-3", "--logging_steps", "1", "--resume_from_checkpoint", "latest") == 0
    assert _record(out)["steps"] == record["steps"], "a converged run takes no further step when resumed"


def test_the_card_states_the_encoding_unit_and_bound_of_each_distribution(tmp_path):
    assert _train(tmp_path / "b", 2) == 0
    assert _train(tmp_path / "g", 2, "--distribution", "gaussian") == 0
    rb, rg = (json.loads((tmp_path / n / "eval_results.json").read_text()) for n in ("b", "g"))
    assert rb["bound"] == "exact" and rb["pixel_mode"] == "binary"
    assert rg["bound"] == "dequantization bound, 1 draw" and rg["pixel_mode"].startswith("continuous (17 levels")
    assert -1 <= rb["metrics"]["adjusted_rand_index"]["mean"] <= 1
    card_b, card_g = (tmp_path / "b" / "README.md").read_text(), (tmp_path / "g" / "README.md").read_text()
    assert "NLL (nats per image, exact)" in card_b and "137.64" in card_b and "adjusted Rand index" in card_b
    assert "dequantization bound" in card_g and "data_encoding: 17 levels" in card_g
    assert "data_encoding: binarized" in card_b and (tmp_path / "b" / "components.png").is_file()


def test_gradient_ascent_trains_through_the_cli_and_resumes_exactly(tmp_path):
    _straight_and_resumed(tmp_path, 4, 3, "--fit", "gradient", "--learning_rate", "0.05")
    assert _record(tmp_path / "straight")["fit"] == "gradient"


@pytest.mark.parametrize("extra, needle", [(["--num_components", "0"], "--num_components"),
                                           (["--num_components", "5000"], "--num_components"),
                                           (["--bernoulli_pseudo_count", "-1"], "--bernoulli_pseudo_count"),
                                           (["--min_variance", "0"], "--min_variance"),
                                           (["--tolerance", "nan"], "--tolerance")])  # fmt: skip
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, extra, needle):
    assert _train(tmp_path / "bad", 2, *extra) == 2
    assert needle in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _sketch() -> dict:
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(70, 60), (200, 60), (120, 230)], fill=(0, 0, 0, 255), width=18)
    composite = np.asarray(image).copy()
    return {"background": np.zeros_like(composite), "layers": [composite], "composite": composite}


@pytest.mark.parametrize("distribution", ["bernoulli", "gaussian"])
def test_the_demo_shows_components_responsibilities_and_samples(tmp_path, distribution):
    assert _train(tmp_path / "m", 2, "--distribution", distribution, "--eval_num_images", "0") == 0
    pipe, _ = mixture_demo.load_pipeline(str(tmp_path / "m"))
    grid, text = mixture_demo.components_view(pipe, 4)
    assert grid.width >= 64 and "pi_k" in text and text.count("| ") >= 4
    model_input, means, text = mixture_demo.responsibilities_view(pipe, _sketch())
    assert means.width > means.height and "p(z = k | x)" in text and "nats" in text
    assert ("dequantization bound" in text) == (distribution == "gaussian")
    a = mixture_demo.sample_grid(pipe, 0, 4, "samples")
    assert np.array_equal(np.asarray(a), np.asarray(mixture_demo.sample_grid(pipe, 0, 4, "samples")))
    with pytest.raises(ValueError, match="canvas is empty"):
        mixture_demo.responsibilities_view(pipe, {"background": None, "layers": [], "composite": None})
    with pytest.raises(ValueError, match="num_shown"):
        mixture_demo.components_view(pipe, 0)
    with pytest.raises(ValueError, match="show"):
        mixture_demo.sample_grid(pipe, 0, 2, "modes")
    demo = mixture_demo.build_demo(pipe)
    assert isinstance(demo.fns, dict) and {fn.api_name for fn in demo.fns.values()} >= {
        "components",
        "sample",
        "responsibilities",
    }
    assert isinstance(MixturePipeline.from_pretrained(tmp_path / "m"), MixturePipeline)


@pytest.mark.slow
def test_two_processes_shard_the_e_step_and_reach_the_one_process_fit(tmp_path):
    from conftest import run_in_two_cpu_processes

    args = ["--max_train_steps", "4", *SMALL]
    proc = run_in_two_cpu_processes("train", "mixture", "--output_dir", str(tmp_path / "two"), *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert main(["train", "mixture", "--output_dir", str(tmp_path / "one"), *args]) == 0
    assert _record(tmp_path / "two")["num_processes"] == 2
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in a:  # the same EM update: statistics summed over the two shards (float32, another summation order)
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4, msg=key)


def test_colour_images_train_and_a_gaussian_mixture_is_scored_only_on_data_of_its_levels(tmp_path):
    from conftest import rgb_npz

    from hubgen.mixture.evaluation import MixtureEvalRequest, evaluate

    data = rgb_npz(tmp_path / "rgb.npz", size=8)  # 3 x 8 x 8, 256 levels
    out = tmp_path / "rgb"
    assert main(["train", "mixture", "--dataset", str(data), "--output_dir", str(out), "--distribution", "gaussian",
                 "--num_components", "4", "--max_train_steps", "2", "--eval_num_images", "8", "--eval_num_samples",
                 "0", "--report_to", "none"]) == 0  # fmt: skip
    model = MixturePipeline.from_pretrained(out).model
    assert model.image_shape == (3, 8, 8) and model.config.pixel_levels == 256
    assert json.loads((out / "eval_results.json").read_text())["pixel_mode"].startswith("continuous (256 levels")
    with pytest.raises(ValueError, match="256-level"):
        evaluate(out, MixtureEvalRequest(dataset="digits", num_samples=0))
