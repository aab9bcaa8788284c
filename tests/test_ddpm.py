"""The DDPM family: the pipeline (plain-diffusers compatibility, samplers, trajectory, checks), the training script
through the CLI (outputs, exact resume, NaN guard, bad arguments), and `hubgen eval` / `hubgen sample`."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UNet2DModel
from PIL import Image
from safetensors.torch import load_file

import hubgen
from hubgen.cli import main
from hubgen.data import to_signed_range
from hubgen.ddpm import DDPMPipeline
from hubgen.ddpm.evaluation import DDPMEvalRequest, evaluate, parse_sampler
from hubgen.ddpm.pipeline_ddpm import make_scheduler, trajectory_strip
from hubgen.ddpm.train_ddpm import unet_config
from hubgen.diffusion.scheduling import eps_to_x0
from hubgen.pipeline_utils import PICKLE_SUFFIXES

T = 50  # training timesteps of every tiny model here
TINY = ["--dataset", "digits", "--block_out_channels", "8", "16", "--norm_num_groups", "4", "--num_train_timesteps",
        str(T), "--report_to", "none", "--seed", "0"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def tiny_pipeline(seed=0) -> DDPMPipeline:
    torch.manual_seed(seed)
    unet = UNet2DModel(**unet_config(8, 1, (8, 16), norm_num_groups=4))
    scheduler = DDPMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddpm-pipe") / "model"
    pipe.save_pretrained(folder)
    return folder


# -- the pipeline -------------------------------------------------------------------------------------------------


def test_unet_configurations():
    small, mnist = unet_config(8), unet_config(28)
    assert small["block_out_channels"] == (32, 64, 64) and mnist["block_out_channels"] == (32, 64, 128)
    for cfg, lowest in ((small, 2), (mnist, 7)):  # three resolutions, attention in the mid block only
        assert cfg["sample_size"] // 2 ** (len(cfg["block_out_channels"]) - 1) == lowest
        assert cfg["add_attention"] and "AttnDownBlock2D" not in cfg["down_block_types"]
        assert sum(p.numel() for p in UNet2DModel(**cfg).parameters()) < 3e6  # sized for a CPU budget
    assert unet_config(8, attention="low")["down_block_types"][-1] == "AttnDownBlock2D"
    with pytest.raises(ValueError, match="divisible by 4"):
        unet_config(10)
    with pytest.raises(ValueError, match="norm_num_groups"):
        unet_config(8, block_out_channels=(8, 12), norm_num_groups=8)


def test_to_model_range_maps_levels_to_the_grid():
    levels = torch.arange(17, dtype=torch.float64)
    u8 = torch.round(levels * 255 / 16)  # how hubgen.data stores digits' 17 levels
    torch.testing.assert_close(to_signed_range(u8 / 255, 17), 2 * levels / 16 - 1, rtol=0, atol=1e-12)
    assert parse_sampler("ddim:50") == ("ddim", 50) and parse_sampler("ddpm") == ("ddpm", None)
    for bad in ("euler:10", "ddim:x", "ddim:0"):
        with pytest.raises(ValueError, match="ddim|steps"):
            parse_sampler(bad, 100)


def test_saved_folder_is_a_plain_diffusers_ddpm_that_loads_without_hubgen(pipe, saved, tmp_path):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"] and index["scheduler"] == ["diffusers", "DDPMScheduler"]
    script = textwrap.dedent(f"""
        import sys

        class BlockHubgen:  # hubgen cannot be imported in this process
            def find_spec(self, name, path=None, target=None):
                if name == "hubgen" or name.startswith("hubgen."):
                    raise ImportError("hubgen is blocked in this test")

        sys.meta_path.insert(0, BlockHubgen())
        import numpy as np, torch, diffusers
        try:
            import hubgen
            raise SystemExit("hubgen was importable")
        except ImportError:
            pass
        pipe = diffusers.DDPMPipeline.from_pretrained({str(saved)!r}, use_safetensors=True)
        generic = diffusers.DiffusionPipeline.from_pretrained({str(saved)!r}, use_safetensors=True)
        assert type(pipe).__module__.startswith("diffusers") and type(generic).__name__ == "DDPMPipeline"
        pipe.set_progress_bar_config(disable=True)
        images = pipe(batch_size=3, generator=torch.Generator().manual_seed(5), num_inference_steps={T},
                      output_type="np").images
        np.save({str(tmp_path / "plain.npy")!r}, images)
        print("ok", sorted(m for m in sys.modules if m.startswith("hubgen")))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "ok []", out.stderr[-3000:]
    ours = pipe(3, generator=_g(5), sampler="ddpm", output_type="np").images
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), ours)


def test_save_and_load_give_identical_samples_with_every_sampler(pipe, saved):
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert files == ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                     "unet/diffusion_pytorch_model.safetensors"]  # fmt: skip
    loaded = DDPMPipeline.from_pretrained(saved)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(hubgen.load_pipeline(saved), DDPMPipeline)
    for sampler, steps in (("ddpm", None), ("ddim", 10), ("dpmsolver++", 8)):
        a = pipe(2, generator=_g(3), sampler=sampler, num_inference_steps=steps, output_type="pt").images
        b = loaded(2, generator=_g(3), sampler=sampler, num_inference_steps=steps, output_type="pt").images
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=sampler)


def test_every_sampler_runs_from_the_saved_config(saved):
    pipe = DDPMPipeline.from_pretrained(saved)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config
    kinds = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler}
    outputs = {}
    for sampler, cls in kinds.items():
        scheduler = make_scheduler(config, sampler)
        assert type(scheduler) is cls and scheduler.config.num_train_timesteps == T
        torch.testing.assert_close(scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod, rtol=0, atol=0)
        seen = []
        out = pipe(2, generator=_g(1), sampler=sampler, num_inference_steps=5 if sampler != "ddpm" else None,
                   output_type="pt", callback_on_step_end=lambda p, i, t, k, s=seen: s.append(int(t)))  # fmt: skip
        assert len(seen) == (T if sampler == "ddpm" else 5) and seen == sorted(seen, reverse=True)
        assert seen[0] == T - 1  # "trailing" spacing: every sampler starts from pure noise at t = T
        assert out.images.shape == (2, 1, 8, 8) and 0 <= out.images.min() and out.images.max() <= 1
        outputs[sampler] = out.images
    assert scheduler.config.algorithm_type == "dpmsolver++" and scheduler.config.solver_order == 2
    assert not torch.equal(outputs["ddim"], outputs["dpmsolver++"])
    # DDIM with eta = 0 and DPM-Solver++ are deterministic given x_T: the generator only draws x_T
    z = torch.randn(2, 1, 8, 8, generator=_g(9))
    for sampler in ("ddim", "dpmsolver++"):
        a = pipe(2, generator=_g(1), latents=z, sampler=sampler, num_inference_steps=4, output_type="pt").images
        b = pipe(2, generator=_g(2), latents=z, sampler=sampler, num_inference_steps=4, output_type="pt").images
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = pipe(2, generator=_g(9), sampler="dpmsolver++", num_inference_steps=4, output_type="pt").images
    torch.testing.assert_close(c, pipe(2, latents=z, sampler="dpmsolver++", num_inference_steps=4,
                                       output_type="pt").images)  # fmt: skip


def test_callback_and_trajectory(pipe):
    calls = []
    out = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=6, output_type="np", return_trajectory=True,
               callback_on_step_end=lambda p, i, t, k: calls.append((i, int(t), k["xt"].clone(), k["x0_pred"].clone())),
               callback_on_step_end_tensor_inputs=["xt", "x0_pred"])  # fmt: skip
    traj = out.trajectory
    assert [c[0] for c in calls] == list(range(6)) and traj.timesteps.tolist() == [c[1] for c in calls]
    assert traj.xt.shape == traj.x0_pred.shape == (6, 2, 1, 8, 8)
    for i, t, xt, x0 in calls:
        torch.testing.assert_close(traj.xt[i], xt)
        eps = pipe.unet(xt, t).sample  # x0_pred is eq. 15 applied to the UNet's eps
        torch.testing.assert_close(x0, eps_to_x0(xt, t, eps, pipe.scheduler.alphas_cumprod))
    assert isinstance(out.images, np.ndarray) and out.images.shape == (2, 8, 8, 1)
    strip = trajectory_strip(traj, num_frames=4)
    assert strip.size == (4 * 10 + 2, 4 * 10 + 2)  # 4 frames; x_t and x0 rows for each of 2 images
    images, traj2 = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=6, return_dict=False,
                         return_trajectory=True)  # fmt: skip
    assert isinstance(images[0], Image.Image) and torch.equal(traj2.xt, traj.xt)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "`batch_size`"),
        (dict(sampler="euler"), "`sampler`"),
        (dict(num_inference_steps=0), "`num_inference_steps`"),
        (dict(num_inference_steps=T + 1), r"\[1, T = 50\]"),
        (dict(output_type="gif"), "`output_type`"),
        (dict(eta=0.5), "`eta` applies to the 'ddim' sampler only"),
        (dict(sampler="ddim", eta=2.0), "`eta`"),
        (dict(latents=torch.zeros(2, 1, 4, 4)), r"`latents` must have shape \(2, 1, 8, 8\)"),
        (dict(callback="print"), "`callback`"),
        (dict(callback=print, callback_on_step_end=print), "Pass `callback_on_step_end` only"),
        (dict(callback_on_step_end="print"), "`callback_on_step_end` must be callable"),
        (dict(callback_on_step_end=print, callback_on_step_end_tensor_inputs=["x0"]), "tensor_inputs` must be"),
        (dict(sampler=3), "`sampler` must be None, a name"),
    ],
)
def test_call_validates_inputs(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated `callback`
        pipe(**{"batch_size": 2, **kwargs})


def test_default_sampler_is_the_pipeline_scheduler_and_a_swap_takes_effect(pipe):
    # the saved DDPMScheduler: ancestral sampling over every timestep, as sampler="ddpm" (and plain diffusers)
    default = pipe(2, generator=_g(3), output_type="pt").images
    torch.testing.assert_close(default, pipe(2, generator=_g(3), sampler="ddpm", output_type="pt").images, rtol=0,
                               atol=0)  # fmt: skip
    swapped = tiny_pipeline()  # the same weights
    swapped.scheduler = DDIMScheduler.from_config(swapped.scheduler.config)
    for steps in (6, None):  # None: DDIM's default, 50 steps (T = 50)
        ddim = pipe(2, generator=_g(3), sampler="ddim", num_inference_steps=steps, output_type="pt").images
        got = swapped(2, generator=_g(3), num_inference_steps=steps, output_type="pt").images
        torch.testing.assert_close(got, ddim, rtol=0, atol=0)
        ancestral = pipe(2, generator=_g(3), num_inference_steps=steps, output_type="pt").images
        assert (got - ancestral).abs().max() > 1e-3  # not the saved DDPMScheduler's ancestral samples
    assert isinstance(swapped.scheduler, DDIMScheduler)  # a call builds its own copy and never replaces it
    # a name still builds that sampler from the saved config, whatever the pipeline's scheduler
    torch.testing.assert_close(swapped(2, generator=_g(3), sampler="ddpm", output_type="pt").images, default, rtol=0,
                               atol=0)  # fmt: skip
    # any diffusers scheduler: one the family does not name, as pipe.scheduler or as a class
    swapped.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    euler = swapped(2, generator=_g(3), num_inference_steps=5, output_type="pt", return_trajectory=True)
    assert torch.isfinite(euler.images).all() and euler.trajectory.xt.shape == (5, 2, 1, 8, 8)
    torch.testing.assert_close(pipe(2, generator=_g(3), num_inference_steps=5, output_type="pt",
                                    sampler=EulerDiscreteScheduler).images, euler.images, rtol=0, atol=0)  # fmt: skip


def test_callback_on_step_end_gets_the_latents_and_may_replace_them(pipe):
    seen = []

    def record(p, i, t, tensors):
        assert p is pipe and set(tensors) == {"latents"}
        seen.append((i, int(t), tensors["latents"].clone()))

    out = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=6, output_type="pt", return_trajectory=True,
               callback_on_step_end=record)  # fmt: skip
    assert [i for i, _, _ in seen] == list(range(6)) and [t for _, t, _ in seen] == out.trajectory.timesteps.tolist()
    for i, _, latents in seen[:-1]:  # the sample after step i is the x_t entering step i + 1
        torch.testing.assert_close(latents, out.trajectory.xt[i + 1], rtol=0, atol=0)
    torch.testing.assert_close(out.images, (seen[-1][2] / 2 + 0.5).clamp(0, 1), rtol=0, atol=0)

    def replace(p, i, t, tensors):  # a returned "latents" replaces the sample the loop goes on from
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 2 else tensors

    replaced = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=6, output_type="pt",
                    return_trajectory=True, callback_on_step_end=replace)  # fmt: skip
    assert torch.equal(replaced.trajectory.xt[3], torch.zeros(2, 1, 8, 8))
    torch.testing.assert_close(replaced.trajectory.xt[:3], out.trajectory.xt[:3], rtol=0, atol=0)
    assert (replaced.images - out.images).abs().max() > 1e-3
    final = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=6, output_type="pt",
                 callback_on_step_end=lambda p, i, t, k: {"latents": 0 * k["latents"]}).images  # fmt: skip
    assert torch.equal(final, torch.full((2, 1, 8, 8), 0.5))  # x_0 = 0 is mid-grey


def test_deprecated_callback_still_works_and_warns(pipe):
    old, new = [], []
    with pytest.warns(FutureWarning, match="callback_on_step_end") as warned:
        a = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=4, output_type="pt",
                 callback=lambda i, t, xt, x0: old.append((i, t, xt, x0))).images  # fmt: skip
    assert warned[0].filename == __file__  # the warning points at the caller
    b = pipe(2, generator=_g(4), sampler="ddim", num_inference_steps=4, output_type="pt",
             callback_on_step_end=lambda p, i, t, k: new.append((i, int(t), k["xt"], k["x0_pred"])),
             callback_on_step_end_tensor_inputs=["xt", "x0_pred"]).images  # fmt: skip
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [(i, t) for i, t, _, _ in old] == [(i, t) for i, t, _, _ in new] and isinstance(old[0][1], int)
    for (_, _, xt, x0), (_, _, xt2, x02) in zip(old, new, strict=True):
        assert torch.equal(xt, xt2) and torch.equal(x0, x02)


# -- training through the CLI -------------------------------------------------------------------------------------

# 1437 digits at batch 256: 5 batches per epoch, so 6 steps cross an epoch and the resume at step 3 skips batches.
LOOP = ["--train_batch_size", "256", "--checkpointing_steps", "3", "--sample_steps", "3", "--max_train_steps", "6"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddpm-run") / "model"
    argv = ["train", "ddpm", "--output_dir", str(out), *LOOP, *TINY, "--eval_num_images", "12",
            "--eval_num_timesteps", "4", "--eval_num_samples", "30",
            "--eval_samplers", "dpmsolver++:4", "ddim:5"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_training_writes_a_complete_ddpm_folder(trained):
    out = trained
    for name in ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "README.md", "samples.png", "denoising.png", "loss_curve.png", "eval_results.json",
                 "hubgen_training.json", "nearest_neighbours.png", "samples/step-000003.png", "samples_ddim_5.png",
                 "samples_dpmsolverpp_4.png", "checkpoints/checkpoint-6/model_unet_ema.safetensors",
                 "checkpoints/checkpoint-6/optimizer_unet.safetensors"]:  # fmt: skip
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["steps"] == 6 and info["pixel_levels"] == 17 and info["scheduler"]["num_train_timesteps"] == T
    assert info["scheduler"]["timestep_spacing"] == "trailing" and info["command"].startswith("hubgen train ddpm")
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_timesteps"] == 4 and results["num_images"] == 12 and results["num_train_timesteps"] == T
    bpd = results["metrics"]["vlb_bits_per_dim"]["mean"]
    assert np.isclose(results["metrics"]["vlb_nats"]["mean"] / (64 * np.log(2)), bpd, rtol=1e-9) and bpd > 0
    assert set(results["samplers"]) == {"DPM-Solver++-4", "DDIM-5"} and results["headline_sampler"] == "DPM-Solver++-4"
    assert results["sample_quality"] == results["samplers"]["DPM-Solver++-4"]["report"]
    assert all(r["seconds_per_image"] > 0 and r["report"]["num_samples"] == 30 for r in results["samplers"].values())
    card = (out / "README.md").read_text()
    needles = ["DDPMPipeline.from_pretrained(", "diffusers.DDPMPipeline.from_pretrained", "### Variational bound",
               "| DPM-Solver++-4 | 4 |", "| DDIM-5 | 5 |", "samples_ddim_5.png", "denoising.png", "FD-digits",
               "hubgen train ddpm --output_dir", "--num_timesteps 4 --num_samples 30 --samplers dpmsolver++:4 ddim:5",
               "2006.11239", "2211.01095", "variational bound bits/dim (4 timesteps)"]  # fmt: skip
    for needle in needles:
        assert needle in card, needle
    assert card.index("| DPM-Solver++-4 |") < card.index("| DDIM-5 |")  # the samplers in the order evaluated
    # the saved UNet is the EMA copy of the last checkpoint
    ema = load_file(out / "checkpoints" / "checkpoint-6" / "model_unet_ema.safetensors")
    saved = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    live = load_file(out / "checkpoints" / "checkpoint-6" / "model_unet.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in ema.items())
    assert not all(torch.equal(live[k], v) for k, v in ema.items())


def _train(out, steps, *extra):
    loop = [*LOOP[:-1], str(steps)]
    return main(["train", "ddpm", "--output_dir", str(out), *loop, *TINY, "--eval_num_images", "0",
                 "--eval_num_samples", "0", *extra])  # fmt: skip


def test_resume_continues_exactly(trained, tmp_path):
    """6 straight steps (the `trained` run) == 3 steps, then a resume for 3 more: every tensor bit for bit."""
    assert _train(tmp_path / "resumed", 3) == 0
    assert _train(tmp_path / "resumed", 6, "--resume_from_checkpoint", "latest") == 0
    straight, resumed = trained / "checkpoints" / "checkpoint-6", tmp_path / "resumed" / "checkpoints" / "checkpoint-6"
    for name in ("model_unet", "model_unet_ema", "optimizer_unet", "rng_0"):
        a, b = load_file(straight / f"{name}.safetensors"), load_file(resumed / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key}")
    state_a, state_b = (json.loads((p / "state.json").read_text())["state"]["script"] for p in (straight, resumed))
    assert state_a["ema_optimization_step"] == state_b["ema_optimization_step"] == 6


def test_nan_stops_with_advice_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    import hubgen.diffusion.scheduling as scheduling

    original, calls = scheduling.q_sample, {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        x = original(*args)
        return x * float("nan") if calls["n"] > 4 else x

    monkeypatch.setattr(scheduling, "q_sample", poisoned)
    assert _train(tmp_path / "r", 10, "--snr_gamma", "5") == 1  # min-SNR weighting on, for the first 4 steps
    printed = capsys.readouterr().out
    assert "non-finite loss" in printed and "checkpoint-3" in printed and "--learning_rate" in printed
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-3"]
    assert not (tmp_path / "r" / "model_index.json").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eval_samplers", "euler:5"], "--eval_samplers"),
        (["--num_train_timesteps", "1"], "--num_train_timesteps must be >= 2"),
        (["--snr_gamma", "-1"], "--snr_gamma must be a positive number"),
        (["--eval_num_timesteps", "1"], "--eval_num_timesteps must be 0 (all) or in [2, 50]"),
        (["--ema_decay", "1"], "--ema_decay must be in [0, 1)"),
        (["--beta_end", "1e-5"], "--beta_start < --beta_end < 1"),
        (["--norm_num_groups", "3"], "`--norm_num_groups` 3 must divide"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert _train(tmp_path / "o", 2, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_eval_and_sample_commands(trained, tmp_path, capsys):
    argv = ["eval", str(trained), "--num_images", "8", "--num_timesteps", "3", "--num_samples", "20", "--samplers",
            "ddpm", "dpmsolver++:3", "--seed", "1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "N=8, 3 timesteps, seed=1" in printed and "vlb_bits_per_dim" in printed and "k=1000" not in printed
    assert "DDPM-50" in printed and "DPM-Solver++-3" in printed and "s/image" in printed
    results = json.loads((trained / "eval_results.json").read_text())
    assert results["seed"] == 1 and results["headline_sampler"] == "DDPM-50" and results["num_timesteps"] == 3
    assert (
        "--num_timesteps 3 --num_samples 20 --samplers ddpm:50 dpmsolver++:3 --seed 1"
        in (trained / "README.md").read_text()
    )
    assert main(["sample", str(trained), "--num_images", "4", "--seed", "2", "--out", str(tmp_path / "g.png")]) == 0
    with Image.open(tmp_path / "g.png") as grid:
        k = -(-256 // (2 * 10 + 2))  # card_grid: enlarged by an integer factor to at least 256 px wide
        assert grid.size == ((2 * 10 + 2) * k, (2 * 10 + 2) * k) and grid.text["hubgen:scale"] == str(k)
    # the recorded request repeats its protocol, samplers included, figure for figure
    again = evaluate(trained, DDPMEvalRequest.from_record(results)).to_json()  # what `hubgen verify` re-runs
    assert again["metrics"] == results["metrics"] and again["headline_sampler"] == "DDPM-50"
    assert again["sample_quality"]["frechet_distance"] == results["sample_quality"]["frechet_distance"]
    assert main(["eval", str(trained), "--samplers", "ddim:500"]) == 2  # more steps than T
    assert "steps must be in [1, 50]" in capsys.readouterr().err


def test_ddpm_family_is_registered(trained):
    family = hubgen.get_family("ddpm")
    assert family.load("pipeline_class") is DDPMPipeline and family.card_template == "hubgen.ddpm:card.md"
    from hubgen.hub import family_of

    assert family_of(trained).name == "ddpm"


def test_public_names_exist():
    import importlib

    for name in ("hubgen.diffusion", "hubgen.diffusion.scheduling", "hubgen.diffusion.samplers", "hubgen.ddpm",
                 "hubgen.ddpm.pipeline_ddpm",
                 "hubgen.ddpm.train_ddpm", "hubgen.ddpm.evaluation", "hubgen.ddpm.demo"):  # fmt: skip
        module = importlib.import_module(name)
        assert all(hasattr(module, attr) for attr in module.__all__), module.__name__
