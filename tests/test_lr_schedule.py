"""The learning-rate schedule every family shares (--lr_scheduler, --lr_warmup_steps; hubgen.training): the rate each
step took against the schedules' formulas written out here, an exact resume in the middle of a cosine decay, the
warm-up defaults of the families that had their own, and the bad combinations refused up front."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from hubgen.cli import main

TINY_VAE = ["--dataset", "digits", "--latent_dim", "2", "--hidden_dims", "16", "--train_batch_size", "64",
            "--eval_num_images", "0", "--eval_num_samples", "0", "--report_to", "none", "--logging_steps", "1",
            "--sample_steps", "100"]  # fmt: skip


def _vae(out, *extra):
    return main(["train", "vae", "--output_dir", str(out), *TINY_VAE, *extra])


def _history(out):
    last = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    return json.loads((last / "state.json").read_text())["state"]["run"]["history"]


def _cosine(t, warmup, total):  # written from the definition: linear warm-up, then half a cosine period down to 0
    if t < warmup:
        return t / warmup
    return 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


def _linear(t, warmup, total):
    return t / warmup if t < warmup else (total - t) / (total - warmup)


@pytest.mark.parametrize("name, formula", [("cosine", _cosine), ("linear", _linear)])
def test_every_step_takes_the_scheduled_learning_rate(tmp_path, name, formula):
    lr, warmup, total = 4e-3, 2, 7
    assert _vae(tmp_path, "--learning_rate", str(lr), "--lr_scheduler", name, "--lr_warmup_steps", str(warmup),
                "--max_train_steps", str(total)) == 0  # fmt: skip
    taken = [row["lr"] for row in _history(tmp_path)]
    expected = [lr * formula(t, warmup, total) for t in range(1, total + 1)]
    assert taken == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert taken[0] == pytest.approx(lr / warmup)  # the first step already moves (t = 1 of the warm-up)
    info = json.loads((tmp_path / "hubgen_training.json").read_text())
    assert info["lr_scheduler"] == name and info["lr_warmup_steps"] == warmup
    assert f"{name} schedule (2 warm-up steps)" in (tmp_path / "README.md").read_text()


def test_the_optimizer_really_steps_with_the_scheduled_rate(tmp_path):
    """The logged rate is the one Adam used: one step of a cosine schedule at t = 1 of 4 (no warm-up) moves the weights
    as plain Adam at lr x lambda(1) does, recomputed from the initial weights and the same batch."""
    a, b = tmp_path / "scheduled", tmp_path / "constant"
    lr = 3e-3
    assert _vae(a, "--learning_rate", str(lr), "--lr_scheduler", "cosine", "--max_train_steps", "4",
                "--checkpointing_steps", "1", "--checkpoints_total_limit", "9") == 0  # fmt: skip
    scaled = lr * _cosine(1, 0, 4)
    assert _vae(b, "--learning_rate", repr(scaled), "--max_train_steps", "1") == 0
    first = load_file(a / "checkpoints" / "checkpoint-1" / "model_vae.safetensors")
    plain = load_file(b / "checkpoints" / "checkpoint-1" / "model_vae.safetensors")
    for key in first:
        torch.testing.assert_close(first[key], plain[key], rtol=0, atol=1e-7)


def test_a_run_resumed_in_the_middle_of_the_decay_ends_where_a_straight_run_does(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    schedule = ["--lr_scheduler", "cosine", "--lr_warmup_steps", "1", "--max_train_steps", "6", "--checkpointing_steps",
                "3"]  # fmt: skip
    assert _vae(straight, *schedule) == 0
    assert _vae(resumed, *schedule, "--resume_from_checkpoint", str(straight / "checkpoints" / "checkpoint-3")) == 0
    w1 = load_file(straight / "vae" / "diffusion_pytorch_model.safetensors")
    w2 = load_file(resumed / "vae" / "diffusion_pytorch_model.safetensors")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert [r["lr"] for r in _history(resumed)] == [r["lr"] for r in _history(straight)]


def test_families_that_warmed_up_by_default_still_do(tmp_path):
    """DDPM, flow and text-to-image had their own linear warm-up (100, 500, 200 steps); they keep it as
    constant_with_warmup, and --lr_scheduler constant drops it."""
    from hubgen.ddpm.train_ddpm import parse_args as ddpm_args
    from hubgen.flow.train_flow import parse_args as flow_args
    from hubgen.text2img.train_text2img import parse_args as t2i_args
    from hubgen.vae.train_vae import parse_args as vae_args

    out = ["--output_dir", str(tmp_path / "o")]
    for parse, warmup in ((ddpm_args, 100), (flow_args, 500), (t2i_args, 200), (vae_args, 0)):
        args = parse(out)
        assert args.lr_warmup_steps == warmup
        assert args.lr_scheduler == ("constant_with_warmup" if warmup else "constant")
        assert parse([*out, "--lr_scheduler", "constant"]).lr_warmup_steps == 0
        assert parse([*out, "--lr_scheduler", "cosine", "--max_train_steps", "9"]).lr_warmup_steps == warmup


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr_scheduler", "constant", "--lr_warmup_steps", "5"], "--lr_warmup_steps 5 needs a schedule with a"),
        (["--lr_scheduler", "cosine", "--max_train_time", "60"], "pass --max_train_steps too"),
        (["--lr_scheduler", "linear", "--lr_warmup_steps", "-1"], "--lr_warmup_steps must be >= 0, got -1"),
        (["--lr_scheduler", "step"], "invalid choice: 'step'"),
    ],
)
def test_bad_schedules_exit_2_before_anything_is_written(tmp_path, capsys, extra, message):
    assert _vae(tmp_path / "o", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_em_has_no_learning_rate_to_schedule(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["train", "mixture", "--output_dir", str(out), "--lr_scheduler", "cosine", "--max_train_steps", "3"]
    assert main(argv) == 2
    assert "EM (--fit em) has none" in capsys.readouterr().err and not out.exists()
