"""Train a DCGAN with accelerate: `hubgen train gan --dataset digits --output_dir out/gan`.

The alternating loop of Goodfellow et al. (Algorithm 1), written out: each generator step follows k
discriminator steps, each on a fresh real batch and fresh z:

    D step:  minimize  softplus(-l(x)) + softplus(l(G(z)))        (= -[log D(x) + log(1 - D(G(z)))])
    G step:  minimize  softplus(-l(G(z)))                          (non-saturating; or the saturating/hinge forms)

An exponential moving average of the generator's weights (diffusers' EMAModel) is what gets sampled, saved
and evaluated. Checkpoints (hubgen.training, safetensors + JSON) hold both networks, both optimizers, the EMA
generator and every RNG; resuming repeats a straight run exactly. A NaN, or a discriminator loss stuck near
zero (the generator has lost), stops the run with advice.
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

__all__ = ["parse_args", "main", "evaluate"]

PIPELINE_CLASS = "GANPipeline"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train gan", description="Train a DCGAN.")
    g = p.add_argument_group("data and output")
    g.add_argument("--dataset", default="digits", help="digits | mnist | a .npz file | an image folder")
    g.add_argument("--output_dir", required=True)
    g.add_argument("--overwrite_output_dir", action="store_true")
    g = p.add_argument_group("model")
    g.add_argument("--latent_dim", type=int, default=64)
    g.add_argument("--base_channels", type=int, default=64, help="width of G's last and D's first layer")
    g.add_argument("--no_batch_norm", action="store_true", help="drop batch norm from both networks")
    g.add_argument("--extra_layers", type=int, default=0,
                   help="stride-1 3x3 conv layers at every hidden resolution of G and D (0: DCGAN)")  # fmt: skip
    g = p.add_argument_group("objective and optimization")
    g.add_argument("--loss", choices=("non_saturating", "saturating", "hinge"), default="non_saturating")
    g.add_argument("--d_steps", type=int, default=1, help="discriminator steps per generator step (k)")
    g.add_argument("--train_batch_size", type=int, default=128, help="per process")
    g.add_argument("--learning_rate", type=float, default=2e-4, help="generator's (and, by default, D's) Adam lr")
    g.add_argument("--d_learning_rate", type=float, default=None,
                   help="discriminator's lr (two time-scale update rule, Heusel et al. 2017)")  # fmt: skip
    g.add_argument("--adam_beta1", type=float, default=0.5)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--num_epochs", type=int, default=50, help="passes of the discriminator over the data")
    g.add_argument("--max_train_steps", type=int, default=None, help="generator steps; overrides --num_epochs")
    g.add_argument("--max_train_time", type=float, default=None, help="stop after this many seconds")
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("checkpoints, logging, evaluation")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    g.add_argument("--sample_steps", type=int, default=500)
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument(
        "--divergence_steps",
        type=int,
        default=500,
        help="stop when the discriminator loss stays below 1e-3 for this many generator steps",
    )
    g.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    g.add_argument("--eval_num_samples", type=int, default=1000, help="samples for the final evaluation (0: skip)")
    g.add_argument("--license", default="apache-2.0")
    args = p.parse_args(argv)
    for name in ["latent_dim", "base_channels", "d_steps", "train_batch_size", "num_epochs", "checkpointing_steps",
                 "sample_steps", "logging_steps", "divergence_steps"]:  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.eval_num_samples < 0:
        p.error(f"--eval_num_samples must be >= 0, got {args.eval_num_samples}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        p.error(f"--learning_rate must be a positive number, got {args.learning_rate}")
    if args.d_learning_rate is None:
        args.d_learning_rate = args.learning_rate
    if not (args.d_learning_rate > 0 and math.isfinite(args.d_learning_rate)):
        p.error(f"--d_learning_rate must be a positive number, got {args.d_learning_rate}")
    if args.extra_layers < 0:
        p.error(f"--extra_layers must be >= 0, got {args.extra_layers}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if args.max_train_time is not None and args.max_train_time <= 0:
        p.error(f"--max_train_time must be > 0 seconds, got {args.max_train_time}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _grid(generator, num_images: int = 64, seed: int = 0):
    from ..pipeline_utils import make_grid

    z = torch.randn((num_images, generator.config.latent_dim), generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        images = (generator(z.to(generator.device, generator.dtype)).float() + 1) / 2
    generator.train(was_training)
    return make_grid(images.clamp(0, 1), nrow=int(math.sqrt(num_images)))


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(steps, [h["d_loss"] for h in history], label="discriminator loss")
    ax[0].plot(steps, [h["g_loss"] for h in history], label="generator loss")
    ax[0].set_xlabel("generator step")
    ax[0].legend()
    ax[1].plot(steps, [h["d_real"] for h in history], label="mean D(x)")
    ax[1].plot(steps, [h["d_fake"] for h in history], label="mean D(G(z))")
    ax[1].axhline(0.5, color="gray", lw=0.5)
    ax[1].set_xlabel("generator step")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers.training_utils import EMAModel

    from . import losses as gan_losses
    from .modeling_gan import Discriminator, Generator, init_dcgan_weights

    out = Path(args.output_dir)
    resume = resolve_checkpoint(out, args.resume_from_checkpoint) if out.is_dir() else None
    check_output_dir(out, PIPELINE_CLASS, resume=args.resume_from_checkpoint is not None,
                     overwrite=args.overwrite_output_dir)  # fmt: skip
    train_set = hdata.load_dataset(args.dataset, "train")
    c, h, w = train_set.image_shape
    if h != w or h % 4:
        raise UserInputError(f"The DCGAN needs square images with a side divisible by 4; {args.dataset!r} has {h}x{w}.")
    d_loss_fn, g_loss_fn = gan_losses.losses_for(args.loss)

    accelerator = make_accelerator(args, "gan")

    # 1. Networks, optimizers (both prepared), EMA of G, data
    gen = Generator(args.latent_dim, h, c, args.base_channels, not args.no_batch_norm, args.extra_layers)
    disc = Discriminator(h, c, args.base_channels, not args.no_batch_norm, args.extra_layers)
    gen.apply(init_dcgan_weights)
    disc.apply(init_dcgan_weights)
    gen_ema = copy.deepcopy(gen).requires_grad_(False)  # what is sampled, saved and evaluated
    betas = (args.adam_beta1, args.adam_beta2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.learning_rate, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.d_learning_rate, betas=betas)
    # Own generator for the loader: iterator creation must not draw from the global RNG (exact resume).
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    if len(loader) == 0:
        raise UserInputError(f"--train_batch_size {args.train_batch_size} exceeds the {len(train_set)} training images.")
    gen, disc, opt_g, opt_d, loader = accelerator.prepare(gen, disc, opt_g, opt_d, loader)
    gen_ema.to(accelerator.device)
    ema = EMAModel(gen_ema.parameters(), decay=args.ema_decay)

    batches_per_step = args.d_steps
    max_steps = args.max_train_steps or max(1, args.num_epochs * len(loader) // batches_per_step)
    step, batches_seen, history, trained_seconds = 0, 0, [], 0.0

    # 2. Resume
    models = {"generator": gen, "discriminator": disc, "generator_ema": gen_ema}
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    if resume is not None:
        saved = load_checkpoint(accelerator, resume, models, optimizers)
        if saved["state"]["generator_config"] != config_dict(accelerator.unwrap_model(gen)):
            raise UserInputError(f"Checkpoint {resume} holds a generator with another configuration than these arguments.")
        step, batches_seen = saved["step"], saved["state"]["batches_seen"]
        history, trained_seconds = saved["state"]["history"], saved["state"]["trained_seconds"]
        ema = EMAModel(gen_ema.parameters(), decay=args.ema_decay)
        ema.optimization_step = saved["state"]["ema_optimization_step"]
        accelerator.print(f"Resumed from {resume} at generator step {step}")

    def state():
        return {"generator_config": config_dict(accelerator.unwrap_model(gen)), "batches_seen": batches_seen,
                "history": history, "trained_seconds": trained_seconds, "ema_optimization_step": ema.optimization_step,
                "args": args.argv}  # fmt: skip

    def real_batches():
        """Real batches from `batches_seen` on: epoch = seen // len(loader), skipping what that epoch gave."""
        epoch, skip = divmod(batches_seen, len(loader))
        while True:
            loader.set_epoch(epoch)
            for x, _ in accelerator.skip_first_batches(loader, skip) if skip else loader:
                yield x * 2 - 1  # intensities [0, 1] -> [-1, 1], the range of G's Tanh
            epoch, skip = epoch + 1, 0

    # 3. The alternating loop
    from tqdm.auto import tqdm

    progress = tqdm(total=max_steps, initial=step, disable=not accelerator.is_local_main_process, desc="gan",
                    mininterval=1)  # fmt: skip
    diverged, last_checkpoint, start, low_d_steps = None, resume, time.perf_counter(), 0
    reals, window = real_batches(), []
    gen.train()
    disc.train()
    g_cfg = accelerator.unwrap_model(gen).config
    while step < max_steps:
        # k discriminator steps: ascend V(D, G) on a fresh real batch and fresh fakes
        for _ in range(args.d_steps):
            x = next(reals)
            batches_seen += 1
            z = torch.randn((x.shape[0], g_cfg.latent_dim), device=x.device)
            with torch.no_grad():
                fake = gen(z)
            real_logits, fake_logits = disc(x), disc(fake)
            d_loss = d_loss_fn(real_logits, fake_logits)
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(d_loss)
            opt_d.step()
        # one generator step
        z = torch.randn((x.shape[0], g_cfg.latent_dim), device=x.device)
        g_fake_logits = disc(gen(z))
        g_loss = g_loss_fn(g_fake_logits)
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(g_loss)
        opt_g.step()
        ema.step(accelerator.unwrap_model(gen).parameters())
        step += 1
        progress.update(1)

        # divergence: agreed by all processes
        d_value = d_loss.detach().float()
        bad = accelerator.gather(torch.stack([(~torch.isfinite(d_value)) | (~torch.isfinite(g_loss.detach())),
                                              d_value < 1e-3]).float().reshape(1, 2)).amax(0)  # fmt: skip
        low_d_steps = low_d_steps + 1 if bad[1] else 0
        if bad[0]:
            diverged = f"non-finite loss at generator step {step}"
        elif low_d_steps >= args.divergence_steps:
            diverged = (f"the discriminator loss stayed below 1e-3 for {low_d_steps} generator steps (D wins every "
                        "time; G gets no useful gradient)")  # fmt: skip
        if diverged:
            break

        window.append(torch.stack([d_value, g_loss.detach().float(), torch.sigmoid(real_logits).mean().float(),
                                   torch.sigmoid(fake_logits).mean().float()]))  # fmt: skip
        if step % args.logging_steps == 0 or step == max_steps:
            mean = accelerator.gather(torch.stack(window).mean(0, keepdim=True)).mean(0)
            window = []
            row = {"step": step, "d_loss": mean[0].item(), "g_loss": mean[1].item(), "d_real": mean[2].item(),
                   "d_fake": mean[3].item()}  # fmt: skip
            history.append(row)
            accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step)
            progress.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}", refresh=False)
        elapsed = trained_seconds + time.perf_counter() - start
        out_of_time = args.max_train_time is not None and elapsed >= args.max_train_time
        stop = step >= max_steps or bool(accelerator.gather(torch.tensor([float(out_of_time)], device=x.device))[0])
        if accelerator.is_main_process and step % args.sample_steps == 0:
            ema.copy_to(gen_ema.parameters())
            _grid(gen_ema).save(out / "samples" / f"step-{step:06d}.png")
        if step % args.checkpointing_steps == 0 or stop:
            ema.copy_to(gen_ema.parameters())
            trained_seconds, start = elapsed, time.perf_counter()
            last_checkpoint = save_checkpoint(accelerator, out, step, models, optimizers, state(),
                                              args.checkpoints_total_limit)  # fmt: skip
        if stop:
            break
    progress.close()

    if diverged:
        kept = f"The last good checkpoint is {last_checkpoint}." if last_checkpoint else "No checkpoint was written."
        accelerator.print(
            f"hubgen: training stopped: {diverged}. {kept} Try a lower --d_learning_rate (the discriminator's) or "
            "--learning_rate, --loss non_saturating (the saturating loss starves G early), fewer --d_steps, or keep "
            "batch norm; "
            "then resume with --resume_from_checkpoint latest."
        )
        accelerator.end_training()
        return 1

    if accelerator.is_main_process:
        ema.copy_to(gen_ema.parameters())
        # The EMA generator takes the live generator's batch-norm statistics (EMAModel averages parameters).
        live_buffers = dict(accelerator.unwrap_model(gen).named_buffers())
        for name, buf in gen_ema.named_buffers():
            buf.copy_(live_buffers[name])
        _finish(gen_ema, args, train_set, out, history, step, batches_seen, trained_seconds, accelerator.num_processes)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _finish(gen_ema, args, train_set, out: Path, history, step, batches_seen, seconds, num_processes) -> None:
    from ..hub import render_card, save_pipeline_atomic
    from .pipeline_gan import GANPipeline

    gen_ema.eval()
    pipe = GANPipeline(generator=gen_ema)
    save_pipeline_atomic(pipe, out)
    _grid(gen_ema, 64, seed=0).save(out / "samples.png")
    if history:
        _plot_history(history, out / "loss_curve.png")
    images_seen = batches_seen * args.train_batch_size * num_processes
    info = {
        "family": "gan",
        "command": "hubgen train gan " + shlex.join(args.argv),
        "dataset": str(args.dataset),
        "image_shape": list(train_set.image_shape),
        "num_train_images": len(train_set),
        "pixel_mode": "continuous intensities scaled to [-1, 1] (no dequantization: a GAN has no likelihood)",
        "seed": args.seed,
        "steps": step,
        "epochs": round(images_seen / len(train_set), 2),
        "loss": args.loss,
        "d_steps": args.d_steps,
        "train_batch_size": args.train_batch_size,
        "learning_rate": args.learning_rate,
        "d_learning_rate": args.d_learning_rate,
        "adam_betas": [args.adam_beta1, args.adam_beta2],
        "ema_decay": args.ema_decay,
        "mixed_precision": args.mixed_precision,
        "num_processes": num_processes,
        "train_seconds": round(seconds, 1),
        "real_images_per_second": round(images_seen / seconds, 1) if seconds > 0 else None,
        "final_losses": history[-1] if history else None,
        "license": args.license,
        "versions": versions(),
    }
    write_json_atomic(out / "hubgen_training.json", info)
    if args.eval_num_samples > 0:
        write_json_atomic(out / "eval_results.json", evaluate(out, num_samples=args.eval_num_samples, pipeline=pipe))
    render_card(out)


@torch.no_grad()
def evaluate(
    folder,
    dataset: str | None = None,
    split: str = "test",
    num_samples: int = 1000,
    seed: int = 0,
    truncation: float | None = None,
    pipeline=None,
    **unused,
) -> dict:
    """Sample quality of `num_samples` samples (seed `seed`) against `split` of the training dataset:
    classifier Frechet distance, precision/recall/density/coverage, classes covered, memorization
    (nearest-neighbour grid written to `nearest_neighbours.png`). A GAN has no likelihood: `k` and
    `num_images` of `hubgen eval` do not apply and are ignored.
    """
    from ..metrics import evaluate_samples
    from .pipeline_gan import GANPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, dataset)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise UserInputError(f"A GAN is evaluated on samples only: `num_samples` must be >= 1, got {num_samples!r}.")
    pipe = pipeline or GANPipeline.from_pretrained(folder)
    samples = pipe(num_samples, generator=torch.Generator().manual_seed(seed), truncation=truncation,
                   output_type="pt").images  # fmt: skip
    grid = folder / "nearest_neighbours.png" if folder.is_dir() else None
    quality = evaluate_samples(samples, dataset, seed=seed, reference_split=split, grid_path=grid)
    quality["samples"] = "G(z) of the EMA generator, z ~ N(0, I)" + (
        f" truncated to |z_i| <= {truncation}" if truncation else ""
    )
    return {"family": "gan", "dataset": str(dataset), "split": split, "seed": seed, "metrics": {},
            "sample_quality": quality}  # fmt: skip
