"""The GAN family: each loss against its BCE or closed form, the DCGAN shapes, the pipeline, the CLI loop."""

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import hubgen
from hubgen.cli import main
from hubgen.errors import UserInputError
from hubgen.gan import Discriminator, GANPipeline, Generator
from hubgen.gan.evaluation import GANEvalRequest, evaluate
from hubgen.gan.losses import (
    LOG_4,
    discriminator_loss,
    gan_value,
    generator_loss_non_saturating,
    generator_loss_saturating,
    hinge_discriminator_loss,
    hinge_generator_loss,
    losses_for,
    r1_penalty,
)
from hubgen.gan.pipeline_gan import slerp, truncated_normal
from hubgen.pipeline_utils import PICKLE_SUFFIXES

TINY = ["--dataset", "digits", "--latent_dim", "8", "--base_channels", "4", "--eval_num_samples", "0",
        "--report_to", "none", "--seed", "0"]  # fmt: skip


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# -- losses -------------------------------------------------------------------------------------------------


def _logits(seed=0, n=64):
    return torch.randn(n, generator=_g(seed), dtype=torch.float64) * 4


def test_losses_equal_their_bce_and_closed_forms():
    real, fake = _logits(0), _logits(1)
    ones, zeros = torch.ones_like(real), torch.zeros_like(real)
    bce = F.binary_cross_entropy_with_logits
    torch.testing.assert_close(discriminator_loss(real, fake), bce(real, ones) + bce(fake, zeros))
    torch.testing.assert_close(generator_loss_non_saturating(fake), bce(fake, ones))
    torch.testing.assert_close(generator_loss_saturating(fake), torch.log(1 - torch.sigmoid(fake)).mean())
    torch.testing.assert_close(
        hinge_discriminator_loss(real, fake), (1 - real).clamp_min(0).mean() + (1 + fake).clamp_min(0).mean()
    )
    torch.testing.assert_close(hinge_generator_loss(fake), -fake.mean())
    torch.testing.assert_close(
        gan_value(real, fake), torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean()
    )
    # stable at extreme logits, where log(sigmoid(l)) would give -inf
    assert torch.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_non_saturating_gradient_survives_where_the_saturating_one_vanishes():
    # A fake the discriminator rejects with confidence: D(G(z)) = sigmoid(-10), about 4.5e-5.
    l_ns = torch.tensor([-10.0], dtype=torch.float64, requires_grad=True)
    l_sat = torch.tensor([-10.0], dtype=torch.float64, requires_grad=True)
    generator_loss_non_saturating(l_ns).backward()
    generator_loss_saturating(l_sat).backward()
    assert abs(l_ns.grad.item()) > 0.99  # d/dl softplus(-l) = -sigmoid(-l), about -1
    assert abs(l_sat.grad.item()) < 1e-4  # d/dl -softplus(l) = -sigmoid(l), about -4.5e-5


def test_optimal_discriminator_and_the_value_at_equilibrium():
    # Goodfellow et al. prop. 1: for fixed G, D*(x) = p_data / (p_data + p_g); found here by gradient ascent.
    p_data = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    p_g = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    logit = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logit], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = (p_data * F.logsigmoid(logit) + p_g * F.logsigmoid(-logit)).sum()  # V for discrete distributions
        (-v).backward()
        return -v

    opt.step(closure)
    torch.testing.assert_close(torch.sigmoid(logit), p_data / (p_data + p_g), atol=1e-4, rtol=0)
    # Theorem 1: with p_g = p_data, D* = 1/2 everywhere (logit 0) and V(D*, G) = -log 4.
    torch.testing.assert_close(gan_value(torch.zeros(10), torch.zeros(10)), torch.tensor(-LOG_4))
    assert math.isclose(LOG_4, 2 * math.log(2))


def test_losses_for_names_the_choices():
    assert losses_for("hinge") == (hinge_discriminator_loss, hinge_generator_loss)
    with pytest.raises(ValueError, match="'non_saturating', 'saturating' or 'hinge'"):
        losses_for("wasserstein")


# -- models and pipeline ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 8])
def test_dcgan_shapes_and_guidelines(size):
    gen, disc = Generator(16, size, 1, 8), Discriminator(size, 1, 8)
    x = gen(torch.randn(5, 16))
    assert x.shape == (5, 1, size, size) and x.min() >= -1 and x.max() <= 1
    assert disc(x).shape == (5,)
    modules = list(gen.modules()) + list(disc.modules())
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in modules)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in modules)
    plain = list(Generator(16, size, 1, 8, batch_norm=False).modules()) + list(
        Discriminator(size, 1, 8, False).modules()
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain)


@pytest.mark.parametrize("size", [28, 8])
def test_extra_layers_deepen_both_networks_at_the_same_resolutions(size):
    gen, disc = Generator(16, size, 1, 8, extra_layers=2), Discriminator(size, 1, 8, extra_layers=2)
    plain_g, plain_d = Generator(16, size, 1, 8), Discriminator(size, 1, 8)

    def stride1_3x3(model):
        return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]

    # 2 layers at each of the 2 hidden resolutions of each network, each with its batch norm
    assert len(stride1_3x3(gen)) == len(stride1_3x3(disc)) == 4 and not stride1_3x3(plain_g)
    bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in gen.modules())
    assert bn == 4 + sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain_g.modules())
    x = gen(torch.randn(5, 16))
    assert x.shape == (5, 1, size, size) and disc(x).shape == (5,)
    # extra_layers=0 is the plain DCGAN, parameter for parameter (configs saved before the option load alike)
    assert Generator(16, size, 1, 8, extra_layers=0).state_dict().keys() == plain_g.state_dict().keys()
    assert sum(p.numel() for p in plain_d.parameters()) < sum(p.numel() for p in disc.parameters())


@pytest.mark.parametrize(
    "bad", [dict(sample_size=10), dict(latent_dim=0), dict(base_channels=0), dict(extra_layers=-1)]
)
def test_generator_rejects_bad_config(bad):
    with pytest.raises(ValueError):
        Generator(**{"latent_dim": 8, "sample_size": 8, "base_channels": 4, **bad})


@pytest.fixture
def gan_pipeline():
    torch.manual_seed(0)
    return GANPipeline(Generator(latent_dim=8, sample_size=8, base_channels=4))


def test_save_and_load_restore_identical_samples(tmp_path, gan_pipeline):
    gan_pipeline.save_pretrained(tmp_path / "g")
    files = sorted(p.relative_to(tmp_path / "g").as_posix() for p in (tmp_path / "g").rglob("*") if p.is_file())
    assert files == ["generator/config.json", "generator/diffusion_pytorch_model.safetensors", "model_index.json"]
    loaded = GANPipeline.from_pretrained(tmp_path / "g")
    for kwargs in (dict(), dict(truncation=0.5)):
        a = gan_pipeline(6, generator=_g(3), output_type="pt", **kwargs).images
        b = loaded(6, generator=_g(3), output_type="pt", **kwargs).images
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert isinstance(hubgen.load_pipeline(tmp_path / "g"), GANPipeline)


def test_truncated_normal_is_bounded_and_has_the_truncated_variance():
    t = 1.0
    z = truncated_normal((200_000,), t, _g(1)).double()
    assert z.abs().max() <= t
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(t / math.sqrt(2)))
    var = 1 - 2 * t * phi / (2 * big_phi - 1)  # variance of N(0, 1) truncated to [-t, t]
    assert abs(z.mean()) < 0.01 and abs(z.var() - var) < 0.005


def test_slerp_endpoints_norm_and_orthogonal_midpoint():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(5))  # stays on the sphere
    torch.testing.assert_close(path[2], (a + b) / math.sqrt(2))
    torch.testing.assert_close(slerp(a, a, torch.tensor([0.3]))[0], a)  # parallel: no division by zero


def test_interpolate_ends_at_the_seeds_samples(gan_pipeline):
    strip = gan_pipeline.interpolate(1, 2, steps=4, output_type="pt")
    assert strip.shape == (4, 1, 8, 8)
    torch.testing.assert_close(strip[:1], gan_pipeline(1, generator=_g(1), output_type="pt").images)
    torch.testing.assert_close(strip[-1:], gan_pipeline(1, generator=_g(2), output_type="pt").images)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2, truncation=-1.0), "truncation"),
        (dict(batch_size=2, output_type="gif"), "output_type"),
        (dict(batch_size=2, latents=torch.zeros(2, 3)), "latents"),
    ],
)
def test_call_validates_inputs(gan_pipeline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gan_pipeline(**kwargs)


# -- training through the CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_gan_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan-run") / "model"
    argv = ["train", "gan", "--output_dir", str(out), "--max_train_steps", "6", "--train_batch_size", "32",
            "--checkpointing_steps", "3", "--sample_steps", "3", *TINY, "--eval_num_samples", "40"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_training_writes_a_complete_gan_folder(trained_gan_dir):
    out = trained_gan_dir
    for name in ["model_index.json", "generator/diffusion_pytorch_model.safetensors", "README.md", "samples.png",
                 "loss_curve.png", "nearest_neighbours.png", "eval_results.json", "hubgen_training.json",
                 "samples/step-000003.png", "checkpoints/checkpoint-6/model_generator_ema.safetensors",
                 "checkpoints/checkpoint-6/optimizer_discriminator.safetensors"]:  # fmt: skip
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    assert not (out / "discriminator").exists()  # only the (EMA) generator is the model
    quality = json.loads((out / "eval_results.json").read_text())["sample_quality"]
    assert quality["num_samples"] == 40 and quality["frechet_distance"]["name"] == "FD-digits"
    card = (out / "README.md").read_text()
    needles = ["GANPipeline.from_pretrained(", "non-saturating", "FD-digits", "### Sample quality", "hubgen's defaults"]
    needles += ["hubgen train gan --output_dir", "--num_samples 40 --seed 0", "1406.2661", "1511.06434"]
    needles += ["batch-norm statistics recomputed for those averaged weights from 200 batches of z"]
    for needle in needles:
        assert needle in card, needle
    # the saved generator is the EMA copy of the last checkpoint
    ema = load_file(out / "checkpoints" / "checkpoint-6" / "model_generator_ema.safetensors")
    saved = load_file(out / "generator" / "diffusion_pytorch_model.safetensors")
    for key, value in ema.items():
        if "running" not in key and "num_batches" not in key:
            torch.testing.assert_close(saved[key], value, rtol=0, atol=0)


def test_both_networks_train_and_the_ema_generator_has_its_own_batch_norm_statistics(trained_gan_dir, tmp_path):
    ckpt = trained_gan_dir / "checkpoints"
    for name in ("generator", "discriminator"):  # D runs frozen in G's step: it must still learn in its own
        a = load_file(ckpt / "checkpoint-3" / f"model_{name}.safetensors")
        b = load_file(ckpt / "checkpoint-6" / f"model_{name}.safetensors")
        assert any(not torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k), name
    # the saved EMA generator's first batch norm holds the mean of the per-batch means and unbiased variances of
    # its input over the default 200 batches of z (batch 32, latent 8) drawn from the training seed 0
    saved = Generator.from_pretrained(trained_gan_dir / "generator")
    rng, means, variances = torch.Generator().manual_seed(0), [], []
    with torch.no_grad():
        for _ in range(200):
            h = saved.net[0](torch.randn((32, 8), generator=rng)[:, :, None, None])  # the conv before BN 1
            means.append(h.mean(dim=(0, 2, 3)))
            variances.append(h.transpose(0, 1).flatten(1).var(dim=1))  # unbiased, as BatchNorm's running_var
    bn = saved.net[1]
    assert int(bn.num_batches_tracked) == 200
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, torch.stack(variances).mean(0), rtol=1e-5, atol=1e-6)
    # a checkpoint's (and a progress grid's) EMA generator samples with the live generator's statistics, not with
    # those of its initialization (mean 0, variance 1)
    live, ema = (load_file(ckpt / "checkpoint-3" / f"model_{n}.safetensors") for n in ("generator", "generator_ema"))
    for key in (k for k in live if "running" in k or "num_batches" in k):
        torch.testing.assert_close(ema[key], live[key], rtol=0, atol=0, msg=key)
    # --ema_bn_batches 0: the saved model keeps the live generator's running statistics
    assert _train(tmp_path / "live", 3, "--ema_bn_batches", "0") == 0
    live = load_file(tmp_path / "live" / "checkpoints" / "checkpoint-3" / "model_generator.safetensors")
    kept = load_file(tmp_path / "live" / "generator" / "diffusion_pytorch_model.safetensors")
    for key in (k for k in live if "running" in k or "num_batches" in k):
        torch.testing.assert_close(kept[key], live[key], rtol=0, atol=0, msg=key)


def test_gan_eval_command(trained_gan_dir, capsys):
    assert main(["eval", str(trained_gan_dir), "--num_samples", "30", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "N=30 samples (seed 2)" in printed and "FD-digits" in printed and "k=None" not in printed


def test_evaluate_returns_its_figures_and_pictures_and_writes_nothing(trained_gan_dir):
    before = (trained_gan_dir / "eval_results.json").read_text()
    result = evaluate(trained_gan_dir, GANEvalRequest(num_samples=20, seed=1, truncation=0.5))
    assert result.num_images is None and result.metrics == {}  # no likelihood: no test image is scored
    assert set(result.pictures) == {"nearest_neighbours.png"}
    quality = result.sample_quality
    assert quality["num_samples"] == 20 and "truncated to |z_i| <= 0.5" in quality["samples"]
    assert (trained_gan_dir / "eval_results.json").read_text() == before
    for bad in (dict(num_samples=0), dict(truncation=0.0), dict(truncation=-1.0)):
        with pytest.raises(UserInputError):
            GANEvalRequest(**bad)


def _train(out, steps, *extra):
    loop = f"--max_train_steps {steps} --train_batch_size 256 --d_steps 2 --checkpointing_steps 3 --sample_steps 100"
    return main(["train", "gan", "--output_dir", str(out), *loop.split(), *TINY, *extra])


def test_r1_penalty_matches_finite_differences_and_trains_d():
    # E_i ||d/dx_i sum_j l(x_j)||^2 for a D in training mode (batch norm couples the images), against central
    # differences of the summed logits in float64, one coordinate at a time
    torch.manual_seed(0)
    disc = Discriminator(8, 1, 4, batch_norm=True, extra_layers=1).double().train()
    x = torch.rand(3, 1, 8, 8, generator=_g(1), dtype=torch.float64) * 2 - 1
    real = x.clone().requires_grad_(True)
    penalty = r1_penalty(disc(real), real)
    h, grad = 1e-6, torch.zeros_like(x).flatten()
    with torch.no_grad():
        for i in range(x.numel()):
            e = torch.zeros_like(x).flatten()
            e[i] = h
            grad[i] = (disc(x + e.view_as(x)).sum() - disc(x - e.view_as(x)).sum()) / (2 * h)
    expected = grad.view(3, -1).square().sum(1).mean()
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-5, atol=0)
    # the penalty is a function of D's weights: a double backward gives them a gradient
    params = [p for p in disc.parameters() if p.requires_grad]
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_spectral_norm_bounds_every_convolution_of_d():
    from hubgen.gan.modeling_gan import init_dcgan_weights

    disc = Discriminator(28, 1, 8, batch_norm=False, extra_layers=1, spectral_norm=True)
    disc.apply(init_dcgan_weights)  # initializes the raw weights (std 0.02), not the normalized ones
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())
    raw = torch.cat([m.parametrizations.weight.original.flatten() for m in convs])
    assert abs(raw.std().item() - 0.02) < 0.004
    raw_sigmas = [torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), ord=2)
                  for m in convs]  # fmt: skip
    assert max(raw_sigmas) < 0.7  # so the test can tell normalized from raw weights
    for _ in range(60):  # one power iteration per training forward pass
        disc(torch.randn(4, 1, 28, 28))
    disc.eval()
    for m in convs:  # sigma_max of the weight reshaped to (out, in * k * k), by an SVD: 1 (power iteration
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)  # underestimates: slightly above)
        assert 0.999 < sigma.item() < 1.01, sigma


def test_resume_continues_exactly_with_r1_and_spectral_norm(tmp_path):
    # 2 D steps per G step and a penalty every 4th: the straight run penalizes D steps 0, 4, 8; a resumed run that
    # counted its D steps from zero would penalize 6 and 10 instead
    options = ["--r1_gamma", "1", "--r1_interval", "4", "--spectral_norm"]
    assert _train(tmp_path / "straight", 6, *options) == 0
    assert _train(tmp_path / "resumed", 3, *options) == 0
    assert _train(tmp_path / "resumed", 6, *options, "--resume_from_checkpoint", "latest") == 0
    record = json.loads((tmp_path / "straight" / "hubgen_training.json").read_text())
    assert (record["r1_gamma"], record["r1_interval"], record["spectral_norm"]) == (1.0, 4, True)
    for name in ("generator", "discriminator", "generator_ema"):
        a = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-6" / f"model_{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-6" / f"model_{name}.safetensors")
        if name == "discriminator":
            assert any("parametrizations.weight.original" in key for key in a)
            assert not any("running_mean" in key for key in a)  # D without batch norm
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key}")


def test_resume_continues_exactly(tmp_path):
    # 1437 images at batch 256: 5 real batches per epoch; 2 D steps per G step cross epochs during the resume.
    deeper = ["--extra_layers", "1", "--d_learning_rate", "4e-4"]  # and the options of the deeper TTUR recipe
    assert _train(tmp_path / "straight", 6, *deeper) == 0
    assert _train(tmp_path / "resumed", 3, *deeper) == 0
    assert _train(tmp_path / "resumed", 6, *deeper, "--resume_from_checkpoint", "latest") == 0
    config = json.loads((tmp_path / "straight" / "generator" / "config.json").read_text())
    assert config["extra_layers"] == 1
    for name in ("generator", "discriminator", "generator_ema"):
        a = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-6" / f"model_{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-6" / f"model_{name}.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key}")


def test_nan_stops_with_advice_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    import hubgen.gan.losses as gan_losses

    calls = {"n": 0}

    def poisoned_d_loss(real, fake):
        calls["n"] += 1
        loss = gan_losses.discriminator_loss(real, fake)
        return loss * float("nan") if calls["n"] > 6 else loss

    monkeypatch.setattr(
        gan_losses, "losses_for", lambda name: (poisoned_d_loss, gan_losses.generator_loss_non_saturating)
    )
    assert _train(tmp_path / "r", 10) == 1
    printed = capsys.readouterr().out
    assert "non-finite loss" in printed and "checkpoint-3" in printed and "--learning_rate" in printed
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-3"]


def test_a_discriminator_stuck_at_zero_is_reported(tmp_path, monkeypatch, capsys):
    import hubgen.gan.losses as gan_losses

    def winning_d_loss(real, fake):
        return (real.mean() - real.mean()) + 1e-5  # D "wins": its loss is ~0 at every step

    monkeypatch.setattr(
        gan_losses, "losses_for", lambda name: (winning_d_loss, gan_losses.generator_loss_non_saturating)
    )
    assert _train(tmp_path / "r", 20, "--divergence_steps", "4") == 1
    assert "stayed below 1e-3 for 4 generator steps" in capsys.readouterr().out


def _recipe_of(*argv):
    from hubgen.gan.train_gan import parse_args

    a = parse_args(["--output_dir", "unused", *argv])
    return a.base_channels, a.extra_layers, a.train_batch_size, a.learning_rate, a.d_learning_rate


def test_the_r1_penalty_is_in_hubgens_recipe_only():
    from hubgen.gan.train_gan import parse_args

    def gamma(*argv):
        return parse_args(["--output_dir", "unused", *argv]).r1_gamma

    got = (gamma(), gamma("--recipe", "dcgan"), gamma("--r1_gamma", "0"), gamma("--recipe", "dcgan", "--r1_gamma", "1"))
    assert got == (0.03, 0.0, 0.0, 1.0)


def test_the_defaults_are_the_measured_recipe_and_the_papers_is_one_flag_away():
    # hubgen's: the best measured on MNIST in 10 CPU-minutes (BENCHMARKS "GAN on MNIST"); dcgan: Radford et al.'s
    assert _recipe_of() == (32, 1, 64, 6.4e-3, 1.28e-2)
    assert _recipe_of("--recipe", "dcgan") == (64, 0, 128, 2e-4, 2e-4)
    assert _recipe_of("--recipe=dcgan", "--base_channels", "16") == (16, 0, 128, 2e-4, 2e-4)  # given options win
    assert _recipe_of("--learning_rate", "1e-3") == (32, 1, 64, 1e-3, 2e-3)  # D at twice G unless given
    assert _recipe_of("--recipe", "dcgan", "--learning_rate", "1e-3") == (64, 0, 128, 1e-3, 1e-3)
    assert _recipe_of("--d_learning_rate", "5e-3", "--recipe", "dcgan")[-2:] == (2e-4, 5e-3)


def test_a_fine_tune_keeps_the_pretrained_architecture_whatever_the_defaults_are_now(tmp_path):
    # the base run leaves its width and extra layers at the dcgan recipe's defaults (64, 0); the fine-tune's defaults
    # are hubgen's (32, 1): the model's saved config, not today's defaults, gives the architecture
    quick = ["--max_train_steps", "1", "--train_batch_size", "16", "--dataset", "digits", "--eval_num_samples", "0",
             "--report_to", "none"]  # fmt: skip
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main(["train", "gan", "--output_dir", str(base), "--recipe", "dcgan", "--latent_dim", "8", *quick]) == 0
    assert main(["train", "gan", "--output_dir", str(tuned), "--pretrained_model_name_or_path", str(base), *quick]) == 0
    config = json.loads((tuned / "generator" / "config.json").read_text())
    assert (config["base_channels"], config["extra_layers"], config["latent_dim"]) == (64, 0, 8)


@pytest.mark.parametrize(
    "extra, message",
    [(["--loss", "wgan"], "invalid choice"), (["--recipe", "wgan"], "argument --recipe: invalid choice"),
     (["--d_steps", "0"], "--d_steps must be >= 1"),
     (["--ema_decay", "1.5"], "--ema_decay must be in [0, 1)"),
     (["--ema_bn_batches", "-1"], "--ema_bn_batches must be >= 0, got -1"),
     (["--d_learning_rate", "0"], "--d_learning_rate must be a positive number"),
     (["--extra_layers", "-1"], "--extra_layers must be >= 0"),
     (["--r1_gamma", "-1"], "--r1_gamma must be a number >= 0, got -1.0"),
     (["--r1_interval", "0"], "--r1_interval must be >= 1, got 0")],
)  # fmt: skip
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert _train(tmp_path / "o", 2, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_gan_family_is_registered_and_loads_in_a_fresh_process(trained_gan_dir):
    family = hubgen.get_family("gan")
    assert family.load("pipeline_class") is GANPipeline and family.card_template == "hubgen.gan:card.md"
    code = f"import hubgen; p = hubgen.load_pipeline({str(trained_gan_dir)!r}); print(type(p).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("GANPipeline"), out.stderr[-2000:]
