"""Train a DDPM with accelerate: `hubgen train ddpm --dataset digits --output_dir out/ddpm`.

Algorithm 1 of Ho et al. 2020 (arXiv:2006.11239), written out; the denoiser is diffusers' UNet2DModel and the
noise schedule a diffusers DDPMScheduler:

    x_0 ~ data (L grey levels scaled to [-1, 1]),  t ~ U{1..T},  eps ~ N(0, I)
    loss = || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2          (L_simple, eq. 14)

optionally weighted per example by min(SNR_t, gamma) / SNR_t (min-SNR-gamma, Hang et al. 2023,
arXiv:2303.09556). An exponential moving average of the weights (diffusers' EMAModel) is what is sampled,
saved and evaluated. diffusers' train_unconditional.py is the model for the loop; the bookkeeping around it
(seeded accelerator, pickle-free checkpoints of the UNet, its EMA copy, the optimizer and every RNG that resume
bit for bit, NaN guard, time budget, the model folder, evaluation and card) is hubgen.training's. Distributed:
`accelerate launch -m hubgen train ddpm ...`.

The evaluation (hubgen.ddpm.evaluation) reports the variational bound in bits/dim on test images and, per
sampler (DDPM, DDIM, DPM-Solver++), the sample quality of hubgen.metrics with the wall time per image.
"""

import argparse
import copy
import math
from dataclasses import dataclass

import torch

from .. import data as hdata
from .. import training as tr
from ..diffusion import scheduling
from ..errors import UserInputError

__all__ = [
    "parse_args",
    "main",
    "unet_config",
    "unet_preset",
    "UNET_PRESETS",
    "noise_schedule",
    "sample_grid",
    "denoising_strip",
]

PIPELINE_CLASS = "DDPMPipeline"
GRID_SAMPLER = "dpmsolver++"  # training grids and samples.png: 20 steps, cheap enough to draw often
STRIP_STEPS = 100  # the card's denoising strip
EXAMPLE_WIDTHS = (128, 128, 256, 256, 512, 512)  # diffusers' examples/unconditional_image_generation


@dataclass(frozen=True)
class UNetPreset:
    """The denoiser hubgen builds for an image side when the options do not say: widths (one per resolution,
    halving between blocks), ResNet layers per block, self-attention ("mid": the mid block only; a tuple: the
    down/up blocks at those resolutions, and the mid block), GroupNorm groups, and where the choice comes from."""

    widths: tuple[int, ...]
    layers_per_block: int
    attention: str | tuple[int, ...]
    norm_num_groups: int
    source: str


UNET_PRESETS = {
    8: UNetPreset((32, 64, 64), 1, "mid", 8, "hubgen's CPU preset for 8x8 (1.06M parameters for 1 channel)"),
    16: UNetPreset((32, 64, 128), 1, (8,), 8, "hubgen's CPU preset for 16x16: 16-8-4, attention at 8x8"),
    28: UNetPreset((32, 64, 128), 1, "mid", 8, "hubgen's CPU preset for 28x28 (2.54M parameters for 1 channel)"),
    32: UNetPreset((64, 128, 128, 128), 1, (16,), 8, "Ho et al.'s CIFAR-10 layout (32-16-8-4, attention at 16x16) "
                   "at half width (128, 256, 256, 256 there) with one ResNet layer per block instead of two"),
}  # fmt: skip
FALLBACK_PRESET = UNetPreset((32, 64, 128), 1, "mid", 8, "hubgen's default: three resolutions, mid-block attention")


def unet_preset(sample_size: int) -> UNetPreset:
    """The default denoiser for a side (the rule the card states): UNET_PRESETS for 8, 16, 28 and 32 px; for 64 px
    and any larger side divisible by 32, diffusers' train_unconditional.py example (widths 128, 128, 256, 256,
    512, 512, two ResNet layers per block, self-attention in the fifth down block and its mirror up block: 4x4 for
    64 px, 8x8 for 128 px, and the mid block; GroupNorm 32, diffusers' default); other sides FALLBACK_PRESET."""
    if sample_size in UNET_PRESETS:
        return UNET_PRESETS[sample_size]
    if sample_size >= 64 and sample_size % 32 == 0:
        return UNetPreset(EXAMPLE_WIDTHS, 2, (sample_size // 16,), 32,
                          "diffusers' examples/unconditional_image_generation/train_unconditional.py")  # fmt: skip
    return FALLBACK_PRESET


def unet_config(
    sample_size: int,
    in_channels: int = 1,
    block_out_channels: tuple[int, ...] | None = None,
    layers_per_block: int | None = None,
    attention: str | tuple[int, ...] | None = None,
    norm_num_groups: int | None = None,
) -> dict:
    """The UNet2DModel arguments hubgen trains: len(block_out_channels) resolutions, halving between blocks.

    Every argument left None comes from `unet_preset(sample_size)`. `attention`: "none", "mid" (self-attention
    in the mid block, at the lowest resolution), "low" (also in the lowest-resolution down and up blocks), or a
    tuple of resolutions (e.g. (16,) for 16x16) whose down and up blocks get self-attention, with the mid block.
    A preset's resolutions that given widths do not reach are dropped (mid-block attention stays); given ones
    must be among the blocks' resolutions.
    """
    preset = unet_preset(sample_size)
    widths = tuple(block_out_channels or preset.widths)
    layers_per_block = preset.layers_per_block if layers_per_block is None else layers_per_block
    norm_num_groups = preset.norm_num_groups if norm_num_groups is None else norm_num_groups
    n = len(widths)
    if sample_size % 2 ** (n - 1):
        raise UserInputError(
            f"A UNet with {n} blocks halves the image {n - 1} times: the image size {sample_size} must be divisible "
            f"by {2 ** (n - 1)}; pass fewer `--block_out_channels` (or resize the images with --resolution)."
        )
    if any(w % norm_num_groups for w in widths):
        raise UserInputError(f"`--norm_num_groups` {norm_num_groups} must divide every block width {list(widths)}.")
    resolutions = [sample_size // 2**i for i in range(n)]  # of the down blocks, in order (up blocks: reversed)
    if attention is None:
        attention = preset.attention
        if not isinstance(attention, str):
            attention = tuple(r for r in attention if r in resolutions) or "mid"
    if isinstance(attention, str):
        if attention not in ("none", "mid", "low"):
            raise UserInputError(
                f"`attention` must be 'none', 'mid', 'low' or resolutions such as (16,), got {attention!r}."
            )
        add_attention = attention != "none"
        attention = (resolutions[-1],) if attention == "low" else ()
    else:
        attention = tuple(attention)
        add_attention = True
    missing = [r for r in attention if r not in resolutions]
    if missing:
        raise UserInputError(f"`attention` at {missing}: the UNet's blocks run at {resolutions} for a "
                             f"{sample_size}x{sample_size} image with {n} widths.")  # fmt: skip
    down = tuple("AttnDownBlock2D" if r in attention else "DownBlock2D" for r in resolutions)
    return dict(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        down_block_types=down,
        up_block_types=tuple(t.replace("Down", "Up") for t in reversed(down)),
        add_attention=add_attention,
        attention_head_dim=8,
        norm_num_groups=norm_num_groups,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .evaluation import parse_sampler

    p = argparse.ArgumentParser(prog="hubgen train ddpm", description="Train a denoising diffusion model (DDPM).")
    _, model, opt, out = tr.add_common_arguments(
        p,
        batch_size=128,
        learning_rate=2e-4,
        num_epochs=100,
        num_images=100,
        gradient_checkpointing=True,
        lr_scheduler="constant_with_warmup",
        lr_warmup_steps=100,
    )
    model.add_argument("--block_out_channels", type=int, nargs="+", default=None,
                       help="UNet widths, one per resolution (default by image side, see --attention: 32 64 64 for "
                       "8 px, 32 64 128 for 16 and 28 px, 64 128 128 128 for 32 px, diffusers' example's 128 128 256 "
                       "256 512 512 for 64 px)")  # fmt: skip
    model.add_argument(
        "--layers_per_block",
        type=int,
        default=None,
        help="ResNet layers per block (default by image side: 1, 2 for 64 px as in diffusers' example)",
    )
    model.add_argument("--attention", nargs="+", default=None, metavar="WHERE",
                       help="self-attention: none, mid (the mid block), low (also the lowest-resolution blocks), or "
                       "resolutions such as 16 (the blocks at 16x16, and the mid block); default by image side: mid "
                       "for 8 and 28 px, 8 for 16 px, 16 for 32 px, 4 for 64 px (diffusers' example)")  # fmt: skip
    model.add_argument(
        "--norm_num_groups",
        type=int,
        default=None,
        help="GroupNorm groups (default by image side: 8, 32 for 64 px as in diffusers)",
    )
    model.add_argument("--num_train_timesteps", type=int, default=1000, help="T")
    model.add_argument("--beta_schedule", choices=("linear", "squaredcos_cap_v2"), default="linear")
    model.add_argument("--beta_start", type=float, default=1e-4)
    model.add_argument("--beta_end", type=float, default=0.02)
    model.add_argument("--variance_type", choices=("fixed_small", "fixed_large"), default="fixed_small",
                       help="sigma_t^2 of the reverse steps: beta~_t (fixed_small) or beta_t "
                       "(fixed_large)")  # fmt: skip
    opt.add_argument("--snr_gamma", type=float, default=None, help="min-SNR-gamma weighting (e.g. 5); default off")
    opt.add_argument("--adam_beta1", type=float, default=0.9)
    opt.add_argument("--adam_beta2", type=float, default=0.999)
    opt.add_argument("--adam_weight_decay", type=float, default=0.0)
    opt.add_argument("--adam_epsilon", type=float, default=1e-8)
    opt.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0: off)")
    opt.add_argument("--ema_decay", type=float, default=0.999, help="the EMA's largest decay")
    opt.add_argument("--ema_power", type=float, default=0.75, help="EMA warm-up: decay = 1 - (1 + step)^-power")
    out.add_argument("--eval_num_timesteps", type=int, default=None,
                     help="timesteps per image for the bound (sampled, unbiased; default 50, 0: all)")  # fmt: skip
    out.add_argument("--eval_samplers", nargs="+", default=None,
                     help="NAME[:STEPS] with NAME ddpm, ddim or dpmsolver++; the first is the headline "
                          "(default: dpmsolver++:20, or T steps if T < 20)")  # fmt: skip
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)

    for name in ("layers_per_block", "norm_num_groups"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.attention is not None:
        words, numbers = [a for a in args.attention if not a.isdigit()], [int(a) for a in args.attention if a.isdigit()]
        if (words and (numbers or len(words) > 1 or words[0] not in ("none", "mid", "low"))) or 0 in numbers:
            p.error(
                f"--attention takes none, mid, low, or image resolutions such as 16 8, got {' '.join(args.attention)}"
            )
        args.attention = words[0] if words else tuple(numbers)
    T = args.num_train_timesteps
    if T < 2:
        p.error(f"--num_train_timesteps must be >= 2, got {T}")
    if args.eval_num_timesteps is None:
        args.eval_num_timesteps = min(50, T)
    if args.eval_num_timesteps not in range(2, T + 1) and args.eval_num_timesteps != 0:
        p.error(f"--eval_num_timesteps must be 0 (all) or in [2, {T}], got {args.eval_num_timesteps}")
    if args.block_out_channels is not None and min(args.block_out_channels) < 1:
        p.error(f"--block_out_channels must be positive, got {args.block_out_channels}")
    for name in ("adam_epsilon", "beta_start", "beta_end", "ema_power"):
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
    args.eval_samplers = args.eval_samplers or [f"{GRID_SAMPLER}:{min(20, T)}"]
    try:
        for spec in args.eval_samplers:
            parse_sampler(spec, T)
    except UserInputError as e:
        p.error(f"--eval_samplers: {e}")
    return args


def noise_schedule(args):
    """The forward process q(x_t | x_0) as a diffusers DDPMScheduler; every sampler is built from its config."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule=args.beta_schedule,
        beta_start=args.beta_start,
        beta_end=args.beta_end,
        variance_type=args.variance_type,
        clip_sample=True,
        timestep_spacing="trailing",  # samplers with fewer steps start at t = T (Lin et al. 2023, arXiv:2305.08891)
    )


def sample_grid(pipe, num_images: int = 64, seed: int = 0):
    """A grid of DPM-Solver++ samples (20 steps, or T if smaller) from `seed`."""
    from .evaluation import image_grid

    steps = min(20, pipe.scheduler.config.num_train_timesteps)
    images = pipe(num_images, generator=torch.Generator().manual_seed(seed), sampler=GRID_SAMPLER,
                  num_inference_steps=steps, output_type="pt").images  # fmt: skip
    return image_grid(images, nrow=int(math.sqrt(num_images)))


def denoising_strip(pipe, steps: int):
    """The card's denoising strip: ancestral (DDPM) steps on `steps` of the T timesteps ("trailing": from t = T),
    4 images, seed 0, 10 frames; every timestep would cost T network evaluations, minutes for 28x28 images."""
    from ..demo_utils import upscale
    from .pipeline_ddpm import trajectory_strip

    trajectory = pipe(4, generator=torch.Generator().manual_seed(0), sampler="ddpm", num_inference_steps=steps,
                      output_type="pt", return_trajectory=True).trajectory  # fmt: skip
    return upscale(trajectory_strip(trajectory, num_frames=10), pipe.unet.config.sample_size)


def _denoiser_config(args, image_shape) -> dict:
    """unet_config for the dataset's (square) images and the options."""
    c, h, w = image_shape
    if h != w:
        raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the UNet here needs square images.")
    return unet_config(h, c, args.block_out_channels, args.layers_per_block, args.attention, args.norm_num_groups)


def _record_fields(args, run, pipe, strip_steps: int) -> dict:
    """The DDPM's own fields of the training record (the card's tables read them)."""
    T, levels = pipe.scheduler.config.num_train_timesteps, run.train_set.levels
    c, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    given = [f"--{name}" for name in ("block_out_channels", "layers_per_block", "attention", "norm_num_groups")
             if getattr(args, name) is not None]  # fmt: skip
    return {
        "pixel_mode": f"{levels} levels per channel ({c} channel(s)) scaled to [-1, 1] (x_0 = 2 k / (L - 1) - 1), "
        f"no dequantization; bits/dim over D = {c}x{size}x{size} = {c * size * size} dimensions",
        "num_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "unet_choice": f"defaults for the image side: {unet_preset(size).source}"
        + (f"; set by the options: {', '.join(given)}" if given else ""),
        "scheduler": tr.config_dict(pipe.scheduler),
        "snr_gamma": args.snr_gamma,
        "adam_betas": [args.adam_beta1, args.adam_beta2],
        "adam_weight_decay": args.adam_weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "ema_decay": args.ema_decay,
        "ema_power": args.ema_power,
        "final_loss": run.history[-1]["loss"] if run.history else None,
        "samples_png": f"DPM-Solver++ {min(20, T)} steps, 64 images, seed 0",
        "denoising_png": f"DDPM ancestral steps on {strip_steps} of the {T} timesteps, 4 images, seed 0",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch.nn.functional as F
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel, compute_snr

    from .evaluation import DDPMEvalRequest, evaluate
    from .pipeline_ddpm import DDPMPipeline

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    cfg = _denoiser_config(args, train_set.image_shape)  # checked before start_run writes anything
    run = tr.start_run(args, "ddpm", resume, train_set, gradient_accumulation_steps=args.gradient_accumulation_steps)
    accelerator = run.accelerator

    # 1. Denoiser, its EMA copy (what is sampled, saved and evaluated), noise schedule, optimizer, data
    unet = UNet2DModel(**cfg)
    unet_ema = copy.deepcopy(unet).requires_grad_(False).eval()
    noise_scheduler = noise_schedule(args)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)  # fmt: skip
    unet, optimizer, loader = tr.prepare(run, unet, optimizer, tr.make_loader(run))
    unet_ema.to(accelerator.device)
    max_steps = args.max_train_steps or args.num_epochs * math.ceil(len(loader) / args.gradient_accumulation_steps)
    models, optimizers = {"unet": unet, "unet_ema": unet_ema}, {"unet": optimizer}
    configs = {"unet": tr.config_dict(accelerator.unwrap_model(unet)), "scheduler": tr.config_dict(noise_scheduler)}
    saved = tr.restore(run, models, optimizers, configs, max_steps)
    # the EMA's shadow weights start from unet_ema: the initial weights, or the restored EMA copy
    ema = EMAModel(unet_ema.parameters(), decay=args.ema_decay, use_ema_warmup=True, inv_gamma=1.0,
                   power=args.ema_power, foreach=True)  # fmt: skip
    ema.optimization_step = saved["ema_optimization_step"] if saved else 0
    ema_state = lambda: {"ema_optimization_step": ema.optimization_step}  # noqa: E731
    copy_ema = lambda: ema.copy_to(unet_ema.parameters())  # noqa: E731 (before grids, checkpoints, the final save)
    grid = lambda: sample_grid(pipe)  # noqa: E731
    pipe = DDPMPipeline(unet=unet_ema, scheduler=noise_scheduler)
    pipe.set_progress_bar_config(disable=True)

    # 2. The loop (Algorithm 1): one step of L_simple per batch (accumulated over --gradient_accumulation_steps)
    T, alphas_cumprod = args.num_train_timesteps, noise_scheduler.alphas_cumprod.to(accelerator.device)
    window = []
    unet.train()
    for intensities, _ in tr.training_batches(run, loader, max_steps):
        with accelerator.accumulate(unet):
            x0 = hdata.to_signed_range(intensities, train_set.levels)  # (B, C, H, W) on the L-level grid of [-1, 1]
            eps = torch.randn_like(x0)  # eps ~ N(0, I)
            t = torch.randint(0, T, (x0.shape[0],), device=x0.device)  # t ~ U{1..T}, 0-based
            xt = scheduling.q_sample(x0, t, eps, alphas_cumprod)  # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eq. 4
            eps_pred = unet(xt, t).sample  # eps_theta(x_t, t)
            # L_simple (eq. 14) per example: || eps - eps_theta(x_t, t) ||^2 / D, optionally min(SNR_t, gamma) / SNR_t
            loss = F.mse_loss(eps_pred.float(), eps.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
            if args.snr_gamma is not None:
                loss = loss * scheduling.min_snr_weight(compute_snr(noise_scheduler, t), args.snr_gamma)
            loss = loss.mean()
            if tr.nonfinite(run, loss):
                break
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                tr.clip_grad_norm(run, unet.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window.append(loss.detach().reshape(1))
        run.images_seen += x0.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        ema.step(accelerator.unwrap_model(unet).parameters())  # theta_ema <- decay theta_ema + (1 - decay) theta
        run.step += 1
        if tr.log_due(run, max_steps):
            tr.record(run, {"loss": tr.gather_mean(run, window)[0]})  # + "lr" (tr.record, from the schedule)
        if tr.end_of_step(run, max_steps, models, optimizers, state=ema_state, sample_grid=grid, before_save=copy_ema):
            break
    if run.diverged:
        return tr.stop_diverged(run, "Lower --learning_rate, keep --max_grad_norm on, use --mixed_precision no (or "
                                "bf16 rather than fp16).")  # fmt: skip

    # 3. The model folder (EMA weights): pipeline, samples, denoising strip, curve, training record, evaluation, card
    copy_ema()
    strip_steps = min(STRIP_STEPS, T)
    samples, pictures = None, None
    if accelerator.is_main_process:
        samples, pictures = sample_grid(pipe), {"denoising.png": denoising_strip(pipe, strip_steps)}
    request = DDPMEvalRequest(num_images=args.eval_num_images, num_samples=args.eval_num_samples,
                              num_timesteps=args.eval_num_timesteps or None,  # --eval_num_timesteps 0: all T
                              samplers=tuple(args.eval_samplers))  # fmt: skip
    panels = [("|| eps - eps_theta ||^2 per pixel", {"loss": "training loss (batch mean)"}, "log")]
    record = _record_fields(args, run, pipe, strip_steps)
    evaluation = lambda: evaluate(run.out, request, pipeline=pipe)  # noqa: E731
    evaluation = None if request.skips_everything() else evaluation
    return tr.finish_run(run, pipe, samples, panels, record, evaluation, pictures=pictures)
