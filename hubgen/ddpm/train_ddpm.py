"""Train a DDPM with accelerate: `hubgen train ddpm --dataset digits --output_dir out/ddpm`.

Algorithm 1 of Ho et al. 2020 (arXiv:2006.11239), written out; the denoiser is diffusers' UNet2DModel and the
noise schedule a diffusers DDPMScheduler:

    x_0 ~ data (L grey levels scaled to [-1, 1]),  t ~ U{1..T},  eps ~ N(0, I)
    loss = || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2          (L_simple, eq. 14)

optionally weighted per example by min(SNR_t, gamma) / SNR_t (min-SNR-gamma, Hang et al. 2023,
arXiv:2303.09556). An exponential moving average of the weights (diffusers' EMAModel) is what is sampled,
saved and evaluated. Checkpoints (hubgen.training: safetensors + JSON) hold the UNet, its EMA copy, the
optimizer and every RNG, so a resumed run repeats a straight one bit for bit. A non-finite loss stops the run
with advice and keeps the last good checkpoint. diffusers' train_unconditional.py is the model for the loop; this
one adds the seed for the whole run, pickle-free exact resume, the NaN guard, the bound and the card.

`evaluate` reports the variational bound in bits/dim on test images and, per sampler (DDPM, DDIM,
DPM-Solver++), the sample quality of hubgen.metrics with the wall time per image.
"""

import argparse
import copy
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from .. import data as hdata
from ..diffusion import scheduling
from ..errors import UserInputError
from ..training import (
    check_output_dir,
    config_dict,
    load_checkpoint,
    make_accelerator,
    recorded_dataset,
    resolve_checkpoint,
    save_checkpoint,
    versions,
    write_json_atomic,
)

__all__ = ["parse_args", "main", "evaluate", "unet_config", "parse_sampler", "to_model_range", "DEFAULT_EVAL_SAMPLERS"]

PIPELINE_CLASS = "DDPMPipeline"
# Denoiser widths per image size, chosen for a CPU budget: three resolutions (8-4-2 or 28-14-7), one ResNet block
# each, self-attention in the mid block only (1.06M parameters for 8x8, 2.54M for 28x28).
UNET_WIDTHS = {8: (32, 64, 64), 28: (32, 64, 128)}
DEFAULT_EVAL_SAMPLERS = ("ddpm", "ddim:50", "dpmsolver++:20")  # "ddpm": every training timestep (1000)
SAMPLER_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpmsolver++": "DPM-Solver++"}
GRID_SAMPLER = "dpmsolver++"  # training grids and samples.png: 20 steps, cheap enough to draw often
STRIP_STEPS = 100  # the card's denoising strip


def unet_config(
    sample_size: int,
    in_channels: int = 1,
    block_out_channels: tuple[int, ...] | None = None,
    layers_per_block: int = 1,
    attention: str = "mid",
    norm_num_groups: int = 8,
) -> dict:
    """The UNet2DModel arguments hubgen trains: len(block_out_channels) resolutions, halving between blocks.

    `attention`: "none", "mid" (self-attention in the mid block, at the lowest resolution) or "low" (also in the
    lowest-resolution down and up blocks). Default widths: UNET_WIDTHS for 8x8 and 28x28, else (32, 64, 128).
    """
    widths = tuple(block_out_channels or UNET_WIDTHS.get(sample_size, (32, 64, 128)))
    n = len(widths)
    if sample_size % 2 ** (n - 1):
        raise UserInputError(
            f"A UNet with {n} blocks halves the image {n - 1} times: the image size {sample_size} must be divisible "
            f"by {2 ** (n - 1)}; pass fewer `--block_out_channels`."
        )
    if any(w % norm_num_groups for w in widths):
        raise UserInputError(f"`--norm_num_groups` {norm_num_groups} must divide every block width {list(widths)}.")
    if attention not in ("none", "mid", "low"):
        raise UserInputError(f"`attention` must be 'none', 'mid' or 'low', got {attention!r}.")
    low = attention == "low"
    return dict(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D" if low else "DownBlock2D",),
        up_block_types=("AttnUpBlock2D" if low else "UpBlock2D",) + ("UpBlock2D",) * (n - 1),
        add_attention=attention != "none",
        attention_head_dim=8,
        norm_num_groups=norm_num_groups,
    )


def parse_sampler(spec: str, num_train_timesteps: int | None = None) -> tuple[str, int | None]:
    """A sampler spec NAME[:STEPS] -> (name, steps): "ddim:50" -> ("ddim", 50), "ddpm" -> ("ddpm", None: all T)."""
    from .pipeline_ddpm import DEFAULT_STEPS, SAMPLERS

    name, _, steps = str(spec).partition(":")
    if name not in SAMPLERS or (steps and not steps.isdigit()):
        raise UserInputError(
            f"A sampler is NAME or NAME:STEPS with NAME one of {', '.join(SAMPLERS)} (e.g. 'ddim:50'), got {spec!r}."
        )
    value = int(steps) if steps else DEFAULT_STEPS[name]
    if value is not None and (value < 1 or (num_train_timesteps and value > num_train_timesteps)):
        raise UserInputError(f"Sampler {spec!r}: steps must be in [1, {num_train_timesteps or 'T'}].")
    return name, value


def to_model_range(intensities: torch.Tensor, levels: int) -> torch.Tensor:
    """Intensities in [0, 1] -> the `levels`-point grid of [-1, 1]: x_0 = 2 k / (L - 1) - 1, k = round(p (L - 1))."""
    k = torch.round(intensities * (levels - 1))
    return 2 * k / (levels - 1) - 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train ddpm", description="Train a denoising diffusion model (DDPM).")
    g = p.add_argument_group("data and output")
    g.add_argument("--dataset", default="digits", help="digits | mnist | a .npz file | an image folder")
    g.add_argument("--output_dir", required=True, help="the model folder to write (pipeline, card, checkpoints)")
    g.add_argument("--overwrite_output_dir", action="store_true", help="train a new model into a folder holding a DDPM")
    g = p.add_argument_group("model and noise schedule")
    g.add_argument("--block_out_channels", type=int, nargs="+", default=None,
                   help="UNet widths, one per resolution (default: 32 64 64 for 8x8, 32 64 128 otherwise)")  # fmt: skip
    g.add_argument("--layers_per_block", type=int, default=1)
    g.add_argument("--attention", choices=("none", "mid", "low"), default="mid",
                   help="self-attention: none, in the mid block, or also in the lowest-resolution blocks")  # fmt: skip
    g.add_argument("--norm_num_groups", type=int, default=8)
    g.add_argument("--num_train_timesteps", type=int, default=1000, help="T")
    g.add_argument("--beta_schedule", choices=("linear", "squaredcos_cap_v2"), default="linear")
    g.add_argument("--beta_start", type=float, default=1e-4)
    g.add_argument("--beta_end", type=float, default=0.02)
    g.add_argument("--variance_type", choices=("fixed_small", "fixed_large"), default="fixed_small",
                   help="sigma_t^2 of the reverse steps: beta~_t (fixed_small) or beta_t (fixed_large)")  # fmt: skip
    g = p.add_argument_group("objective and optimization")
    g.add_argument("--snr_gamma", type=float, default=None, help="min-SNR-gamma weighting (e.g. 5); default off")
    g.add_argument("--train_batch_size", type=int, default=128, help="per process")
    g.add_argument("--learning_rate", type=float, default=2e-4)
    g.add_argument("--lr_warmup_steps", type=int, default=100, help="linear warm-up of the learning rate")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_weight_decay", type=float, default=0.0)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0: off)")
    g.add_argument("--ema_decay", type=float, default=0.999, help="the EMA's largest decay")
    g.add_argument("--ema_power", type=float, default=0.75, help="EMA warm-up: decay = 1 - (1 + step)^-power")
    g.add_argument("--num_epochs", type=int, default=100)
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps; overrides --num_epochs")
    g.add_argument("--max_train_time", type=float, default=None, help="stop after this many seconds of training")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("checkpoints, logging, evaluation")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    g.add_argument("--sample_steps", type=int, default=500, help="write a grid of EMA samples every N steps")
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    g.add_argument("--eval_num_images", type=int, default=100, help="test images for the bound at the end (0: skip)")
    g.add_argument("--eval_num_timesteps", type=int, default=None,
                   help="timesteps per image for the bound (sampled, unbiased; default 50, 0: all)")  # fmt: skip
    g.add_argument("--eval_num_samples", type=int, default=1000, help="samples per sampler (0: skip)")
    g.add_argument("--eval_samplers", nargs="+", default=None,
                   help="NAME[:STEPS] with NAME ddpm, ddim or dpmsolver++; the first is the headline "
                        "(default: dpmsolver++:20, or T steps if T < 20)")  # fmt: skip
    g.add_argument("--license", default="apache-2.0", help="license written in the model card")
    args = p.parse_args(argv)

    for name in ["train_batch_size", "num_epochs", "gradient_accumulation_steps", "checkpointing_steps",
                 "sample_steps", "logging_steps", "layers_per_block", "norm_num_groups"]:  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_train_timesteps < 2:
        p.error(f"--num_train_timesteps must be >= 2, got {args.num_train_timesteps}")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("eval_num_images", "eval_num_samples", "lr_warmup_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    T = args.num_train_timesteps
    if args.eval_num_timesteps is None:
        args.eval_num_timesteps = min(50, T)
    if args.eval_num_timesteps not in range(2, T + 1) and args.eval_num_timesteps != 0:
        p.error(f"--eval_num_timesteps must be 0 (all) or in [2, {T}], got {args.eval_num_timesteps}")
    if args.block_out_channels is not None and min(args.block_out_channels) < 1:
        p.error(f"--block_out_channels must be positive, got {args.block_out_channels}")
    for name in ("learning_rate", "adam_epsilon", "beta_start", "beta_end", "ema_power"):
        if not (getattr(args, name) > 0 and math.isfinite(getattr(args, name))):
            p.error(f"--{name} must be a positive number, got {getattr(args, name)}")
    if not args.beta_start < args.beta_end < 1:
        p.error(f"--beta_start < --beta_end < 1 is required, got {args.beta_start} and {args.beta_end}")
    if args.snr_gamma is not None and not (args.snr_gamma > 0 and math.isfinite(args.snr_gamma)):
        p.error(f"--snr_gamma must be a positive number, got {args.snr_gamma}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if not args.max_grad_norm >= 0:
        p.error(f"--max_grad_norm must be >= 0, got {args.max_grad_norm}")
    if args.max_train_time is not None and args.max_train_time <= 0:
        p.error(f"--max_train_time must be > 0 seconds, got {args.max_train_time}")
    try:
        specs = args.eval_samplers or [f"{GRID_SAMPLER}:{min(20, T)}"]
        args.eval_samplers = [parse_sampler(spec, T) for spec in specs]
    except ValueError as e:
        p.error(f"--eval_samplers: {e}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _pipeline(unet, scheduler):
    from .pipeline_ddpm import DDPMPipeline

    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _grid(images: torch.Tensor, nrow: int):
    """make_grid, enlarged (nearest neighbour) until a tile is 64 pixels: 8x8 digits stay legible on a card."""
    from ..demo_utils import upscale
    from ..pipeline_utils import make_grid

    return upscale(make_grid(images.float().cpu(), nrow=nrow), images.shape[-1])


def _sample_grid(unet, scheduler, num_images: int = 64, seed: int = 0):
    """A grid of DPM-Solver++ samples (20 steps, or T if smaller) from `seed`."""

    steps = min(20, scheduler.config.num_train_timesteps)
    g = torch.Generator().manual_seed(seed)
    images = _pipeline(unet, scheduler)(num_images, generator=g, sampler=GRID_SAMPLER, num_inference_steps=steps,
                                        output_type="pt").images  # fmt: skip
    return _grid(images, nrow=int(math.sqrt(num_images)))


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="training loss (batch mean)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("|| eps - eps_theta ||^2 per pixel")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel, compute_snr

    out = Path(args.output_dir)
    resume = resolve_checkpoint(out, args.resume_from_checkpoint) if out.is_dir() else None
    check_output_dir(out, PIPELINE_CLASS, resume=args.resume_from_checkpoint is not None,
                     overwrite=args.overwrite_output_dir)  # fmt: skip
    train_set = hdata.load_dataset(args.dataset, "train")
    c, h, w = train_set.image_shape
    if h != w:
        raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the UNet here needs square images.")
    cfg = unet_config(h, c, args.block_out_channels, args.layers_per_block, args.attention, args.norm_num_groups)

    accelerator = make_accelerator(args, "ddpm", gradient_accumulation_steps=args.gradient_accumulation_steps)

    # 1. Denoiser, its EMA copy, noise schedule, optimizer, data
    unet = UNet2DModel(**cfg)
    unet_ema = copy.deepcopy(unet).requires_grad_(False).eval()  # what is sampled, saved and evaluated
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        beta_start=args.beta_start,
        beta_end=args.beta_end,
        variance_type=args.variance_type,
        clip_sample=True,
        timestep_spacing="trailing",  # samplers with fewer steps start at t = T (Lin et al. 2023, arXiv:2305.08891)
    )
    T = args.num_train_timesteps
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)  # fmt: skip
    # Own generator for the loader: iterator creation must not draw from the global RNG (exact resume).
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    if len(loader) == 0:
        raise UserInputError(f"--train_batch_size {args.train_batch_size} exceeds the {len(train_set)} training images.")
    unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
    unet_ema.to(accelerator.device)

    def new_ema():
        return EMAModel(unet_ema.parameters(), decay=args.ema_decay, use_ema_warmup=True, inv_gamma=1.0,
                        power=args.ema_power, foreach=True)  # fmt: skip

    ema = new_ema()
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    global_step, history, trained_seconds, images_seen = 0, [], 0.0, 0

    # 2. Resume: weights, EMA, optimizer, RNG, step and history
    models, optimizers = {"unet": unet, "unet_ema": unet_ema}, {"unet": optimizer}
    schedule = config_dict(noise_scheduler)
    if resume is not None:
        saved = load_checkpoint(accelerator, resume, models, optimizers)
        if saved["state"]["unet_config"] != config_dict(accelerator.unwrap_model(unet)) or (
            saved["state"]["scheduler_config"] != schedule
        ):
            raise UserInputError(f"Checkpoint {resume} holds a model or schedule with another configuration than these "
                             "arguments.")  # fmt: skip
        global_step, history = saved["step"], saved["state"]["history"]
        trained_seconds, images_seen = saved["state"]["trained_seconds"], saved["state"]["images_seen"]
        ema = new_ema()  # shadow weights = the loaded EMA copy
        ema.optimization_step = saved["state"]["ema_optimization_step"]
        accelerator.print(f"Resumed from {resume} at step {global_step}")
    elif args.resume_from_checkpoint is not None:
        accelerator.print(f"No checkpoint in {out} yet: starting from step 0.")
    first_epoch = global_step // steps_per_epoch
    if global_step >= max_steps:
        accelerator.print(f"Already trained to step {global_step} (>= {max_steps}): writing the outputs only.")
        num_epochs = first_epoch
    skip_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps

    def state():
        return {"unet_config": config_dict(accelerator.unwrap_model(unet)), "scheduler_config": schedule,
                "history": history, "trained_seconds": trained_seconds, "images_seen": images_seen,
                "ema_optimization_step": ema.optimization_step, "args": args.argv}  # fmt: skip

    # 3. The loop (Algorithm 1)
    from tqdm.auto import tqdm

    alphas_cumprod = noise_scheduler.alphas_cumprod.to(accelerator.device)
    progress = tqdm(total=max_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="ddpm",
                    mininterval=1)  # fmt: skip
    diverged, start, stop, last_checkpoint, running = None, time.perf_counter(), False, resume, []
    unet.train()
    for epoch in range(first_epoch, num_epochs):
        loader.set_epoch(epoch)
        resuming = epoch == first_epoch and skip_batches
        batches = accelerator.skip_first_batches(loader, skip_batches) if resuming else loader
        for intensities, _ in batches:
            with accelerator.accumulate(unet):
                x0 = to_model_range(intensities, train_set.levels)  # (B, C, H, W) on the L-level grid of [-1, 1]
                eps = torch.randn_like(x0)  # eps ~ N(0, I)
                t = torch.randint(0, T, (x0.shape[0],), device=x0.device)  # t ~ U{1..T}, 0-based
                xt = scheduling.q_sample(x0, t, eps, alphas_cumprod)  # x_t ~ q(x_t | x_0), eq. 4
                eps_pred = unet(xt, t).sample
                loss = F.mse_loss(eps_pred.float(), eps.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,) eq. 14
                if args.snr_gamma is not None:
                    loss = loss * scheduling.min_snr_weight(compute_snr(noise_scheduler, t), args.snr_gamma)
                loss = loss.mean()
                # NaN guard, agreed by all processes so that they stop together.
                bad = accelerator.gather(torch.tensor([float(not torch.isfinite(loss))], device=loss.device))
                if bad.any():
                    diverged = f"non-finite loss ({loss.item()}) at step {global_step + 1}"
                    break
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                warmup = min(1.0, (global_step + 1) / args.lr_warmup_steps) if args.lr_warmup_steps else 1.0
                for group in optimizer.param_groups:
                    group["lr"] = args.learning_rate * warmup
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                running.append(loss.detach())
            images_seen += x0.shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            ema.step(accelerator.unwrap_model(unet).parameters())
            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_steps:
                mean = accelerator.gather(torch.stack(running).float().mean().reshape(1)).mean()
                running = []
                row = {"step": global_step, "loss": mean.item(), "lr": args.learning_rate * warmup}
                history.append(row)
                accelerator.log({k: v for k, v in row.items() if k != "step"}, step=global_step)
                progress.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            elapsed = trained_seconds + time.perf_counter() - start
            out_of_time = args.max_train_time is not None and elapsed >= args.max_train_time
            # All processes take the main process's clock, so they stop at the same step.
            stop = global_step >= max_steps or bool(
                accelerator.gather(torch.tensor([float(out_of_time)], device=loss.device))[0].item()
            )
            if accelerator.is_main_process and global_step % args.sample_steps == 0:
                ema.copy_to(unet_ema.parameters())
                _sample_grid(unet_ema, noise_scheduler).save(out / "samples" / f"step-{global_step:06d}.png")
            if global_step % args.checkpointing_steps == 0 or stop:
                ema.copy_to(unet_ema.parameters())
                trained_seconds, start = elapsed, time.perf_counter()
                last_checkpoint = save_checkpoint(accelerator, out, global_step, models, optimizers, state(),
                                                  args.checkpoints_total_limit)  # fmt: skip
            if stop:
                break
        skip_batches = 0
        if diverged or stop:
            break
    progress.close()

    if diverged:
        kept = f"The last good checkpoint is {last_checkpoint}." if last_checkpoint else "No checkpoint was written."
        accelerator.print(
            f"hubgen: training stopped: {diverged}. {kept} Lower --learning_rate, keep --max_grad_norm on, use "
            "--mixed_precision no (or bf16 rather than fp16), then resume with --resume_from_checkpoint latest."
        )
        accelerator.end_training()
        return 1

    # 4. Save the pipeline (EMA weights), samples, trajectory, curve, evaluation and card (main process only)
    if accelerator.is_main_process:
        ema.copy_to(unet_ema.parameters())
        _finish(unet_ema, noise_scheduler, args, train_set, out, history, global_step, trained_seconds, images_seen,
                accelerator.num_processes)  # fmt: skip
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _finish(unet, scheduler, args, train_set, out: Path, history, step, seconds, images_seen, num_processes) -> None:
    from ..demo_utils import upscale
    from ..hub import render_card, save_pipeline_atomic
    from .pipeline_ddpm import trajectory_strip

    pipe = _pipeline(unet.eval(), scheduler)
    save_pipeline_atomic(pipe, out)
    _sample_grid(unet, scheduler, 64, seed=0).save(out / "samples.png")
    # The denoising strip: ancestral (DDPM) steps on 100 of the T timesteps ("trailing": from t = T), 4 images, seed
    # 0; every timestep would cost T network evaluations, minutes for 28x28 images on a busy CPU.
    strip_steps = min(STRIP_STEPS, scheduler.config.num_train_timesteps)
    trajectory = pipe(4, generator=torch.Generator().manual_seed(0), sampler="ddpm", num_inference_steps=strip_steps,
                      output_type="pt", return_trajectory=True).trajectory  # fmt: skip
    upscale(trajectory_strip(trajectory, num_frames=10), unet.config.sample_size).save(out / "denoising.png")
    if history:
        _plot_history(history, out / "loss_curve.png")
    info = {
        "family": "ddpm",
        "command": "hubgen train ddpm " + shlex.join(args.argv),
        "dataset": str(args.dataset),
        "image_shape": list(train_set.image_shape),
        "num_train_images": len(train_set),
        "pixel_levels": train_set.levels,
        "pixel_mode": f"{train_set.levels} grey levels scaled to [-1, 1] (x_0 = 2 k / (L - 1) - 1), no dequantization",
        "seed": args.seed,
        "steps": step,
        "epochs": round(images_seen / len(train_set), 2),
        "num_parameters": sum(p.numel() for p in unet.parameters()),
        "scheduler": config_dict(scheduler),
        "snr_gamma": args.snr_gamma,
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
        "lr_warmup_steps": args.lr_warmup_steps,
        "adam_betas": [args.adam_beta1, args.adam_beta2],
        "adam_weight_decay": args.adam_weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "ema_decay": args.ema_decay,
        "ema_power": args.ema_power,
        "mixed_precision": args.mixed_precision,
        "num_processes": num_processes,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(images_seen / seconds, 1) if seconds > 0 else None,
        "final_loss": history[-1]["loss"] if history else None,
        "samples_png": f"DPM-Solver++ {min(20, scheduler.config.num_train_timesteps)} steps, 64 images, seed 0",
        "denoising_png": f"DDPM ancestral steps on {strip_steps} of the {scheduler.config.num_train_timesteps} "
        "timesteps, 4 images, seed 0",
        "license": args.license,
        "versions": versions(),
    }
    write_json_atomic(out / "hubgen_training.json", info)
    if args.eval_num_images or (args.eval_num_samples and args.eval_samplers):
        results = evaluate(out, num_images=args.eval_num_images or None, num_timesteps=args.eval_num_timesteps or None,
                           num_samples=args.eval_num_samples, samplers=args.eval_samplers, pipeline=pipe)  # fmt: skip
        write_json_atomic(out / "eval_results.json", results)
    render_card(out)


def _summary(values: torch.Tensor) -> dict:
    v = values.double()
    return {"mean": v.mean().item(), "stderr": (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else None}


def _sampler_label(name: str, steps: int) -> str:
    return f"{SAMPLER_LABELS[name]}-{steps}"


@torch.no_grad()
def evaluate(
    folder,
    dataset: str | None = None,
    split: str = "test",
    k=None,
    num_images: int | None = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    num_timesteps: int | None = None,
    samplers=DEFAULT_EVAL_SAMPLERS,
    batch_size: int = 250,
    pipeline=None,
    **unused,
) -> dict:
    """The variational bound and, per sampler, sample quality and speed. `k` (IWAE samples) does not apply.

    Bound: the first `num_images` images of `split` (0: all; None: skip), on their L-level grid in [-1, 1]; per
    image `num_timesteps` timesteps (None: all T; n < T: L_0 and L_T plus n - 1 sampled KL terms, unbiased), the
    noise and timesteps drawn from `seed`. Reported: vlb_nats and vlb_bits_per_dim (mean and standard error over
    images) with results["num_timesteps"].

    Samplers: each "NAME[:STEPS]" of `samplers` (ddpm, ddim, dpmsolver++) denoises the same `num_samples` initial
    noises x_T (drawn from `seed`; DDPM's step noise from seed + 1); the wall time per image, the hubgen.metrics
    report (classifier Frechet distance, precision/recall/density/coverage, classes, memorization) and a grid of
    the first 64 go into results["samplers"]; the first sampler's report is results["sample_quality"]. `samplers`
    may also be an earlier results["samplers"], to repeat that protocol.
    """
    from ..metrics import evaluate_samples
    from .pipeline_ddpm import DDPMPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, dataset)
    if num_images is not None and (not isinstance(num_images, int) or num_images < 0):
        raise UserInputError(f"`num_images` must be None (no bound), 0 (all) or a positive integer, got {num_images!r}.")
    if not isinstance(num_samples, int) or num_samples < 0:
        raise UserInputError(f"`num_samples` must be an integer >= 0, got {num_samples!r}.")
    pipe = pipeline or DDPMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    T = pipe.scheduler.config.num_train_timesteps
    if isinstance(samplers, dict):  # the results["samplers"] of an earlier evaluation: repeat its protocol
        samplers = [f"{r['sampler']}:{r['steps']}" for r in sorted(samplers.values(), key=lambda r: r.get("order", 0))]
    specs = [s if isinstance(s, tuple) else parse_sampler(s, T) for s in (samplers or ())]
    test = hdata.load_dataset(dataset, split)
    results = {"family": "ddpm", "dataset": str(dataset), "split": split, "seed": seed, "metrics": {},
               "pixel_levels": test.levels, "pixel_mode": f"{test.levels}-level discrete", "sample_quality": None,
               "samplers": {}, "num_train_timesteps": T}  # fmt: skip

    # 1. The variational bound (Ho et al. eq. 5) on test images
    if num_images is not None:
        n = len(test) if num_images == 0 else min(num_images, len(test))
        g = torch.Generator().manual_seed(seed)
        terms = {"prior": [], "diffusion": [], "decoder": [], "total": [], "bits_per_dim": []}
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            x0 = to_model_range(test.images[i : min(i + batch_size, n)].float() / 255, test.levels).to(pipe.device)
            bound = scheduling.variational_bound(pipe.unet, pipe.scheduler, x0, num_timesteps, generator=g,
                                                 levels=test.levels)  # fmt: skip
            for name in terms:
                terms[name].append(getattr(bound, name).cpu())
        terms = {name: torch.cat(values) for name, values in terms.items()}
        used = num_timesteps or T
        estimate = "every timestep" if used == T else (
            f"{used} timesteps per image: L_0, L_T and {used - 1} of the {T - 1} KL terms drawn uniformly without "
            f"replacement, weighted {T - 1}/{used - 1} (unbiased)"
        )  # fmt: skip
        results.update(
            num_images=n,
            num_timesteps=used,
            vlb_seconds=round(time.perf_counter() - start, 1),
            vlb_terms_nats={name: terms[name].mean().item() for name in ("prior", "diffusion", "decoder")},
            bound_protocol=(
                f"L_T + sum_(t=2..T) L_(t-1) + L_0 (Ho et al. eq. 5), T = {T}, discretized Gaussian decoder over "
                f"{test.levels} levels, one x_t ~ q(x_t | x_0) per term, seed {seed}; {estimate}"
            ),
        )
        results["metrics"] = {"vlb_nats": _summary(terms["total"]), "vlb_bits_per_dim": _summary(terms["bits_per_dim"])}

    # 2. Samples from the same initial noises with every sampler
    if num_samples and specs:
        c, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
        noise = torch.randn((num_samples, c, size, size), generator=torch.Generator().manual_seed(seed))
        for j, (name, steps) in enumerate(specs):
            steps = steps or T
            step_noise = torch.Generator().manual_seed(seed + 1)
            start = time.perf_counter()
            images = torch.cat([
                pipe(len(chunk), generator=step_noise, latents=chunk, sampler=name, num_inference_steps=steps,
                     output_type="pt").images.float().cpu()
                for chunk in noise.split(batch_size)
            ])  # fmt: skip
            seconds = time.perf_counter() - start
            label = _sampler_label(name, steps)
            grid_name = f"samples_{name.replace('+', 'p')}_{steps}.png"
            nn_grid = folder / "nearest_neighbours.png" if j == 0 and folder.is_dir() else None
            report = evaluate_samples(images, dataset, seed=seed, reference_split=split, grid_path=nn_grid)
            report["samples"] = f"{label} ({SAMPLER_LABELS[name]} sampler, {steps} steps) of the EMA UNet"
            if folder.is_dir():
                _grid(images[:64], nrow=8).save(folder / grid_name)
            results["samplers"][label] = {"order": j, "sampler": name, "steps": steps, "num_samples": num_samples,
                                          "seconds_per_image": seconds / num_samples, "grid": grid_name,
                                          "report": report}  # fmt: skip
            if j == 0:
                results["sample_quality"] = report
                results["headline_sampler"] = label
    return results
