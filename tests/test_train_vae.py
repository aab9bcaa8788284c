"""`hubgen train vae` through the real CLI: outputs, exact resume, NaN guard, bad input, distributed run."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hubgen.cli import main
from hubgen.pipeline_utils import PICKLE_SUFFIXES
from hubgen.vae import VAEPipeline

SMALL = [
    "--dataset",
    "digits",
    "--latent_dim",
    "2",
    "--hidden_dims",
    "16",
    "--eval_k",
    "4",
    "--eval_num_images",
    "8",
    "--eval_num_samples",
    "0",
    "--report_to",
    "none",
]


def _weights(folder):
    return load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")


def test_training_writes_a_complete_model_folder(trained_vae_dir):
    out = trained_vae_dir
    for name in [
        "model_index.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "README.md",
        "samples.png",
        "loss_curve.png",
        "eval_results.json",
        "hubgen_training.json",
        "samples/step-000003.png",
        "checkpoints/checkpoint-6/state.json",
    ]:
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]  # checkpoints included
    assert list((out / "logs").rglob("events.out.tfevents.*"))  # the tensorboard tracker wrote its log
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["steps"] == 6 and info["num_processes"] == 1 and info["pixel_mode"] == "binary"
    assert info["command"].startswith("hubgen train vae --dataset digits")
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_images"] == 16 and results["k"] == 8 and results["split"] == "test"
    quality = results["sample_quality"]
    assert quality["num_samples"] == 50 and quality["frechet_distance"]["name"] == "FD-digits"
    assert quality["feature_network"]["sha256"] and (out / "nearest_neighbours.png").is_file()
    assert results["metrics"]["iwae_nll_nats"]["mean"] <= results["metrics"]["neg_elbo_nats"]["mean"] + 1.0
    pipe = VAEPipeline.from_pretrained(out)
    assert pipe.vae.config.latent_dim == 2 and pipe.config.pixel_levels == 17


def test_sample_eval_and_card_commands(trained_vae_dir, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["sample", str(trained_vae_dir), "--num_images", "4", "--seed", "1", "--out", str(grid)]) == 0
    assert grid.is_file()
    argv = ["eval", str(trained_vae_dir), "--k", "5", "--num_images", "10", "--num_samples", "20", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "N=10" in printed and "k=5" in printed and "iwae_nll_nats" in printed
    assert "N=20 samples (seed 3)" in printed and "FD-digits" in printed and "sha256" in printed
    results = json.loads((trained_vae_dir / "eval_results.json").read_text())
    assert (results["k"], results["num_images"], results["seed"]) == (5, 10, 3)
    assert "--k 5 --num_images 10 --num_samples 20 --seed 3" in (trained_vae_dir / "README.md").read_text()
    (trained_vae_dir / "README.md").unlink()
    assert main(["card", str(trained_vae_dir)]) == 0
    assert (trained_vae_dir / "README.md").is_file()


def test_demo_command_builds_the_family_demo_and_launches_it(trained_vae_dir, monkeypatch):
    import gradio as gr

    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, *a, **k: launched.append(self))
    assert main(["demo", str(trained_vae_dir)]) == 0
    assert len(launched) == 1 and isinstance(launched[0], gr.Blocks)


def _train(out, steps, *extra):
    return main(
        [
            "train",
            "vae",
            "--output_dir",
            str(out),
            "--max_train_steps",
            str(steps),
            "--seed",
            "0",
            "--train_batch_size",
            "256",
            "--checkpointing_steps",
            "4",
            "--sample_steps",
            "100",
            *SMALL,
            *extra,
        ]
    )


def test_resume_continues_exactly(tmp_path):
    # 1437 train images at batch 256 make 5 steps per epoch: the resumed run crosses an epoch boundary.
    assert _train(tmp_path / "straight", 8) == 0
    assert _train(tmp_path / "resumed", 4) == 0
    assert _train(tmp_path / "resumed", 8, "--resume_from_checkpoint", "latest") == 0
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    info = json.loads((tmp_path / "resumed" / "hubgen_training.json").read_text())
    assert info["steps"] == 8


def test_checkpoints_total_limit_keeps_the_newest(tmp_path):
    assert _train(tmp_path / "r", 12, "--checkpoints_total_limit", "2") == 0
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-12", "checkpoint-8"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    import hubgen.vae.losses as losses

    real, calls = losses.elbo, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] > 5:
            terms["elbo"] = terms["elbo"] * float("nan")
        return terms

    monkeypatch.setattr(losses, "elbo", poisoned)
    out = tmp_path / "run"
    assert _train(out, 10) == 1
    err = capsys.readouterr().out
    assert "non-finite loss" in err and "checkpoint-4" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-4"]
    assert not (out / "model_index.json").exists()
    state = load_file(out / "checkpoints" / "checkpoint-4" / "model_vae.safetensors")
    assert all(torch.isfinite(v).all() for v in state.values())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "gan_that_does_not_exist"], "Unknown family"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--dataset", "cifar10"], "Unknown dataset 'cifar10'"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--latent_dim", "0"], "--latent_dim must be >= 1"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--mixed_precision", "fp8"], "invalid choice"),
        (
            ["train", "vae", "--output_dir", "{tmp}/o", "--architecture", "conv", "--hidden_dims", "8"],
            "two --hidden_dims",
        ),
        (["train", "vae", "--output_dir", "{tmp}/o", "--k", "5"], "--k 5 is the number of importance samples"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--latent_dims", "4", "2", "--latent_dim", "4"], "both give"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--latent_hidden_dims", "8"], "give two or more --latent_dims"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--latent_dims", "4", "0"], "--latent_dims must be positive"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--objective", "iwae", "--k", "0"], "--k must be >= 1"),
        (["train", "vae", "--output_dir", "{tmp}/o", "--objective", "iwae", "--kl_warmup_steps", "9"], "no separate"),
        (["eval", "{tmp}", "--k", "0"], "is not a hubgen model folder"),
        (["sample", "{tmp}/nothing-here"], "does not exist"),
        (["sample", "someone/uncached-model"], "Cannot fetch model_index.json"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_output_folder_with_user_files_is_refused_and_left_intact(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _train(tmp_path, 2) == 2
    assert "is not empty and does not hold a hubgen run" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_output_folder_with_a_model_needs_resume_or_overwrite(trained_vae_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained_vae_dir, copy)
    before = (copy / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert _train(copy, 2) == 2
    assert "already holds a VAEPipeline run" in capsys.readouterr().err
    index = json.loads((copy / "model_index.json").read_text())
    index["_class_name"] = "GANPipeline"
    (copy / "model_index.json").write_text(json.dumps(index))
    assert _train(copy, 2, "--overwrite_output_dir") == 2
    assert "holds a different model (GANPipeline" in capsys.readouterr().err
    assert (copy / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_the_iwae_objective_trains_through_the_cli_and_the_card_says_so(tmp_path):
    out = tmp_path / "iwae"
    assert main(["train", "vae", "--output_dir", str(out), *SMALL, "--max_train_steps", "3", "--objective", "iwae",
                 "--k", "3"]) == 0  # fmt: skip
    record = json.loads((out / "hubgen_training.json").read_text())
    assert record["objective"] == "iwae" and record["train_k"] == 3 and math.isfinite(record["final_train_neg_iwae"])
    assert "importance-weighted bound L_k with k = 3 samples" in (out / "README.md").read_text()
    assert VAEPipeline.from_pretrained(out).vae.config.latent_dim == 2


def test_a_hierarchical_vae_trains_resumes_exactly_and_its_card_names_the_layers_and_bounds(tmp_path):
    hierarchy = ["--latent_dims", "4", "2", "--latent_hidden_dims", "8"]
    small = [a for a in SMALL if a not in ("--latent_dim", "2")]  # the layers replace --latent_dim

    def train(out, steps, *extra):
        return main(["train", "vae", "--output_dir", str(out), "--max_train_steps", str(steps), "--train_batch_size",
                     "256", "--checkpointing_steps", "2", *small, *hierarchy, *extra])  # fmt: skip

    assert train(tmp_path / "straight", 4) == 0
    assert train(tmp_path / "resumed", 2) == 0
    assert train(tmp_path / "resumed", 4, "--resume_from_checkpoint", "latest") == 0
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert any(key.startswith("prior_nets") for key in a) and any(key.startswith("posterior_nets") for key in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    pipe = VAEPipeline.from_pretrained(tmp_path / "straight")
    assert pipe.vae.latent_sizes == (4, 2) and pipe.vae.config.latent_hidden_dims == [8]
    card = (tmp_path / "straight" / "README.md").read_text()
    assert "stochastic layers | z1: 4, z2: 2 (prior N(0, I) on z2)" in card
    assert "IWAE-4 over the joint latents (z1, z2)" in card and "KL(q(z1, z2|x) || p(z1, z2))" in card
    metrics = json.loads((tmp_path / "straight" / "eval_results.json").read_text())["metrics"]
    assert math.isfinite(metrics["iwae_nll_nats"]["mean"]) and math.isfinite(metrics["neg_elbo_nats"]["mean"])
    # the IWAE objective over the joint latents trains too
    assert train(tmp_path / "iwae", 2, "--objective", "iwae", "--k", "3") == 0
    record = json.loads((tmp_path / "iwae" / "hubgen_training.json").read_text())
    assert math.isfinite(record["final_train_neg_iwae"])


def test_gradient_accumulation_bf16_and_continuous_pixels_run(tmp_path):
    out = tmp_path / "c"
    extra = "--max_train_steps 2 --train_batch_size 32 --gradient_accumulation_steps 2 --mixed_precision bf16"
    extra += " --pixel_mode continuous --architecture conv --hidden_dims 4 8 --kl_warmup_steps 10"
    # A fresh process: accelerate's state is a per-process singleton, fixed by the first run's precision.
    cmd = [sys.executable, "-m", "hubgen", "train", "vae", "--output_dir", str(out), *SMALL, *extra.split()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pipe = VAEPipeline.from_pretrained(out)
    assert pipe.vae.config.decoder_distribution == "gaussian" and pipe.vae.dtype == torch.float32
    results = json.loads((out / "eval_results.json").read_text())
    assert results["pixel_mode"] == "continuous" and "dequantization to 17 levels" in results["protocol"]


def test_a_launcher_world_that_accelerate_does_not_see_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun / accelerate launch --multi_gpu set, without a backend
    assert _train(tmp_path / "o", 2) == 2
    assert "ACCELERATE_USE_CPU=1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resuming_a_finished_run_trains_no_further(tmp_path):
    assert _train(tmp_path / "r", 4) == 0
    before = _weights(tmp_path / "r")
    assert _train(tmp_path / "r", 4, "--resume_from_checkpoint", "latest") == 0
    after = _weights(tmp_path / "r")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((tmp_path / "r" / "hubgen_training.json").read_text())["steps"] == 4


def test_a_time_budget_shows_elapsed_of_budget_says_it_ended_and_where_the_model_went(tmp_path, capsys):
    out = tmp_path / "timed"
    argv = ["train", "vae", "--output_dir", str(out), *SMALL, "--max_train_time", "1", "--num_epochs", "100000"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "s of the time budget" in shown  # elapsed / budget, not an ETA over num_epochs x batches steps
    assert "The time budget (--max_train_time 1 s) ended training at step" in captured.out
    assert "evaluation:" in captured.err  # the evaluation's clock
    last = captured.out.strip().splitlines()[-1]
    assert last == f"wrote {out} (README.md, samples.png, hubgen_training.json, eval_results.json)"


# -- colour images: a tiny RGB 16x16 .npz, the conv stack and the discretized logistic decoder -----------------


def rgb_npz(path, size: int = 16, n_train: int = 48, n_test: int = 16):
    """uint8 (N, 3, size, size) x_train / x_test with y_*: a coloured square on a coloured background per image."""
    g = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.empty((n, 3, size, size), dtype=np.uint8)
        x[:] = g.integers(0, 256, (n, 3, 1, 1), dtype=np.uint8)  # background colour
        for i in range(n):
            top, left = g.integers(0, size // 2, 2)
            x[i, :, top : top + size // 2, left : left + size // 2] = g.integers(0, 256, (3, 1, 1), dtype=np.uint8)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, g.integers(0, 3, n)
    np.savez(path, **arrays)
    return path


RGB = "--pixel_mode discrete --architecture conv --hidden_dims 4 8 --latent_dim 4 --train_batch_size 16"
RGB += " --checkpointing_steps 2 --sample_steps 2 --eval_k 4 --eval_num_images 8 --eval_num_samples 0 --report_to none"


def test_rgb_discrete_training_saves_reloads_and_cards_in_colour(tmp_path, capsys):
    from PIL import Image

    from hubgen.vae.train_vae import sample_grid

    data, out = rgb_npz(tmp_path / "rgb16.npz"), tmp_path / "rgb"
    argv = ["train", "vae", "--dataset", str(data), "--output_dir", str(out), "--max_train_steps", "3", *RGB.split()]
    assert main(argv) == 0
    pipe = VAEPipeline.from_pretrained(out)
    cfg = pipe.vae.config
    assert (cfg.in_channels, cfg.sample_size, cfg.decoder_distribution, cfg.num_levels) == (
        3, 16, "discretized_logistic", 256)  # fmt: skip
    assert tuple(cfg.hidden_dims) == (4, 8) and pipe.config.pixel_levels == 256
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["pixel_mode"] == "discrete" and info["decoder"] == "discretized_logistic"
    assert info["image_shape"] == [3, 16, 16]
    # samples.png is a colour grid, and the reloaded model draws it again bit for bit
    with Image.open(out / "samples.png") as saved:
        assert saved.mode == "RGB"
        assert np.array_equal(np.asarray(saved), np.asarray(sample_grid(pipe.vae)))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["pixel_mode"] == "discrete (256 levels, discretized logistic)"
    assert "no dequantization" in results["protocol"] and "D = C*H*W = 768" in results["protocol"]
    bpd, nll = results["metrics"]["bits_per_dim"]["mean"], results["metrics"]["iwae_nll_nats"]["mean"]
    assert abs(bpd - nll / (768 * math.log(2))) < 1e-4 and 0 < bpd < 16
    card = (out / "README.md").read_text()
    assert "discretized logistic decoder p(x|z) over the 256 levels" in card and "![Samples" in card
    assert "with no dequantization term" in card and "directly comparable with a flow's" in card
    assert "discrete (256 levels, discretized logistic) pixels" in card  # the Hub label of each likelihood
    # a fresh copy of the saved pipeline samples the same colour images
    pipe.save_pretrained(tmp_path / "again")
    again = VAEPipeline.from_pretrained(tmp_path / "again")
    a, b = (p(4, generator=torch.Generator().manual_seed(1), output_type="pt").images for p in (pipe, again))
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)


def test_a_size_the_conv_stack_cannot_take_exits_2_naming_the_allowed_sizes(tmp_path, capsys):
    data = rgb_npz(tmp_path / "rgb18.npz", size=18, n_train=16, n_test=4)
    argv = ["train", "vae", "--dataset", str(data), "--output_dir", str(tmp_path / "o"), "--max_train_steps", "1"]
    assert main([*argv, *RGB.split()]) == 2
    err = capsys.readouterr().err
    assert "multiple of 4 and at least 8" in err and "got 18" in err and "--resolution" in err
    assert not (tmp_path / "o").exists()
