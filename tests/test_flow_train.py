"""`hubgen train flow` through the real CLI: outputs, card, eval and sample commands, exact resume, the NaN guard,
the invertibility check stopping a run, bad input."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import hubgen
from hubgen.cli import main
from hubgen.flow import FlowPipeline
from hubgen.pipeline_utils import PICKLE_SUFFIXES

TINY = ["--dataset", "digits", "--steps_per_level", "1", "--hidden_channels", "8", "--report_to", "none",
        "--seed", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_flow_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow-run") / "model"
    argv = ["train", "flow", "--output_dir", str(out), "--max_train_steps", "6", "--train_batch_size", "64",
            "--checkpointing_steps", "3", "--sample_steps", "3", "--eval_num_samples", "30", *TINY]  # fmt: skip
    assert main(argv) == 0
    return out


def test_training_writes_a_complete_flow_folder(trained_flow_dir):
    out = trained_flow_dir
    names = ["model_index.json", "flow/config.json", "flow/diffusion_pytorch_model.safetensors", "README.md",
             "samples.png", "samples_t0.7.png", "loss_curve.png", "eval_results.json", "hubgen_training.json",
             "nearest_neighbours.png", "samples/step-000003.png", "checkpoints/checkpoint-6/state.json"]  # fmt: skip
    for name in names:
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["steps"] == 6 and info["pixel_levels"] == 17 and info["dequantization"] == "uniform"
    assert info["command"].startswith("hubgen train flow --output_dir")
    results = json.loads((out / "eval_results.json").read_text())
    assert (results["split"], results["num_images"], results["dequantization"]) == ("test", 360, "uniform")
    bits = results["metrics"]["exact_bits_per_dim"]["mean"]
    nats = results["metrics"]["exact_nll_nats"]["mean"]
    assert nats == pytest.approx(bits * 64 * math.log(2), rel=1e-9)
    assert 0 < bits < 10 and "lower bound" in results["bound"]
    percents, quantiles = zip(*results["bits_per_dim_quantiles"], strict=True)
    assert percents == (1, 5, 25, 50, 75, 95, 99) and list(quantiles) == sorted(quantiles)
    assert set(results["sample_quality_by_temperature"]) == {"1", "0.7"}
    assert results["sample_quality"]["temperature"] == 1.0 and results["sample_quality"]["num_samples"] == 30
    assert results["sample_quality_by_temperature"]["0.7"]["frechet_distance"]["name"] == "FD-digits"
    # The final model's likelihood, recomputed from the saved folder, is the one the evaluation recorded.
    pipe = hubgen.load_pipeline(out)
    assert isinstance(pipe, FlowPipeline) and pipe.flow.actnorm_initialized()
    from hubgen.data import load_dataset

    digits_test = load_dataset("digits", "test")
    test = digits_test.take(len(digits_test)).float() / 255.0
    again = pipe.log_likelihood(test, generator=torch.Generator().manual_seed(0)).bits_per_dim.double().mean().item()
    assert again == pytest.approx(bits, abs=1e-5)


def test_card_states_the_likelihood_protocol(trained_flow_dir):
    card = (trained_flow_dir / "README.md").read_text()
    for needle in ["FlowPipeline.from_pretrained(", "lower bound on",
                   "bits/dim, dequantization bound (uniform dequantization, N = 360, test split)",
                   "### Sample quality", "#### By temperature", "| 0.7 |", "1605.08803",
                   "1807.03039", "hubgen train flow --output_dir", "--num_images 360 --num_samples 30 --seed 0",
                   "library_name: hubgen", "bits/dim (change of variables on dequantized data)"]:  # fmt: skip
        assert needle in card, needle
    assert "RealNVP (Dinh et al. 2017) | 1.06" not in card  # the published MNIST figures only on an MNIST card


def test_eval_and_sample_commands(trained_flow_dir, tmp_path, capsys):
    argv = ["eval", str(trained_flow_dir), "--num_images", "50", "--num_samples", "20", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "N=50" in printed and "exact_bits_per_dim" in printed and "N=20 samples (seed 3)" in printed
    results = json.loads((trained_flow_dir / "eval_results.json").read_text())
    assert (results["num_images"], results["seed"]) == (50, 3)
    assert "--num_images 50 --num_samples 20 --seed 3" in (trained_flow_dir / "README.md").read_text()
    grid = tmp_path / "grid.png"
    assert main(["sample", str(trained_flow_dir), "--num_images", "4", "--seed", "1", "--out", str(grid)]) == 0
    assert grid.is_file()


def _train(out, steps, *extra):
    loop = f"--max_train_steps {steps} --train_batch_size 256 --checkpointing_steps 4 --sample_steps 100 --no_eval"
    return main(["train", "flow", "--output_dir", str(out), *loop.split(), *TINY, *extra])


def test_resume_continues_exactly_with_ema(tmp_path):
    # 1437 images at batch 256: 5 steps per epoch, so the resumed half crosses an epoch boundary.
    extra = ["--use_ema", "--ema_decay", "0.9", "--lr_warmup_steps", "5"]
    assert _train(tmp_path / "straight", 8, *extra) == 0
    assert _train(tmp_path / "resumed", 4, *extra) == 0
    assert _train(tmp_path / "resumed", 8, *extra, "--resume_from_checkpoint", "latest") == 0
    for name in ("flow", "flow_ema"):
        a = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-8" / f"model_{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-8" / f"model_{name}.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key}")
    saved = load_file(tmp_path / "resumed" / "flow" / "diffusion_pytorch_model.safetensors")
    ema = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-8" / "model_flow_ema.safetensors")
    assert all(torch.equal(saved[k], ema[k]) for k in ema)  # the saved model is the EMA copy
    assert json.loads((tmp_path / "resumed" / "hubgen_training.json").read_text())["steps"] == 8


def test_a_failed_invertibility_check_stops_the_run(tmp_path, monkeypatch, capsys):
    from hubgen.flow.modeling_flow import FlowLevel

    original, calls = FlowLevel.inverse, {"n": 0}

    def drifting_inverse(self, y):  # the inverse stops matching the forward after the first check (2 scales)
        calls["n"] += 1
        x, log_det = original(self, y)
        return (x + 0.1, log_det) if calls["n"] > 2 else (x, log_det)

    monkeypatch.setattr(FlowLevel, "inverse", drifting_inverse)
    assert _train(tmp_path / "r", 12) == 1
    printed = capsys.readouterr().out
    assert "no longer inverts" in printed and "at step 8" in printed and "checkpoint-4" in printed
    assert "--learning_rate" in printed and "--resume_from_checkpoint latest" in printed
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-4"]
    assert not (tmp_path / "r" / "model_index.json").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from hubgen.flow.modeling_flow import FlowModel

    original, calls = FlowModel.dequantize, {"n": 0}

    def poisoned(self, images, generator=None):
        calls["n"] += 1
        x, log_q = original(self, images, generator)
        # call 1 is ActNorm's init, 2-5 the steps 1-4, 6 the check at checkpoint 4, 7 step 5, 8 step 6
        return (x * float("nan"), log_q) if calls["n"] == 8 else (x, log_q)

    monkeypatch.setattr(FlowModel, "dequantize", poisoned)
    assert _train(tmp_path / "r", 10) == 1
    printed = capsys.readouterr().out
    assert "non-finite loss" in printed and "at step 6" in printed and "checkpoint-4" in printed
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-4"]


def test_variational_dequantization_trains_and_scores(tmp_path):
    out = tmp_path / "v"
    assert _train(out, 2, "--dequantization", "variational", "--dequant_hidden_channels", "4") == 0
    pipe = hubgen.load_pipeline(out)
    assert pipe.flow.config.dequantization == "variational"
    scores = pipe.log_likelihood(torch.rand(3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert scores.dequantization == "variational" and torch.isfinite(scores.bits_per_dim).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--steps_per_level", "0"], "--steps_per_level must be >= 1"),
     (["--logit_alpha", "0.6"], "--logit_alpha must be in [0, 0.5)"),
     (["--dequantization", "gaussian"], "invalid choice"),
     (["--learning_rate", "-1"], "--learning_rate must be a positive number"),
     (["--num_levels", "4"], "divisible by 2**num_levels = 16"),
     (["--dataset", "no-such-data"], "Unknown dataset")],
)  # fmt: skip
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert _train(tmp_path / "o", 2, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluate_states_sample_quality_not_measured_without_a_classifier_for_the_size(tmp_path):
    import numpy as np

    from hubgen.flow import FlowModel
    from hubgen.flow.evaluation import FlowEvalRequest, evaluate

    rng = np.random.default_rng(0)
    data = tmp_path / "tiny16.npz"
    np.savez(data, x_train=rng.integers(0, 256, (20, 16, 16), dtype=np.uint8),
             x_test=rng.integers(0, 256, (12, 16, 16), dtype=np.uint8))  # fmt: skip
    torch.manual_seed(0)
    FlowPipeline(FlowModel(sample_size=16, steps_per_level=1, hidden_channels=4)).save_pretrained(tmp_path / "m")
    results = evaluate(tmp_path / "m", FlowEvalRequest(dataset=str(data), num_images=None, num_samples=20)).to_json()
    assert results["num_images"] == 12 and results["sample_quality"]["frechet_distance"] is None
    assert "no feature network for 1x16x16" in results["sample_quality"]["not_measured"]["reason"]
    assert results["sample_quality"]["memorization"]  # still measured, in pixel space
    assert math.isfinite(results["metrics"]["exact_bits_per_dim"]["mean"])
    with pytest.raises(ValueError, match="17"):  # a 256-level model scored on 17-level data
        evaluate(tmp_path / "m", FlowEvalRequest(dataset="digits", num_samples=0))
