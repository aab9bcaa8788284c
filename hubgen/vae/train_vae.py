"""Train a VAE with accelerate: `hubgen train vae --dataset digits --output_dir out/vae`.

The loop is written out (diffusers' train_unconditional.py is the model), with what that script lacks: a
seed for the whole run, pickle-free checkpoints that resume exactly (hubgen.training), a NaN guard, an
evaluation and a model card at the end. Distributed: `accelerate launch -m hubgen train vae ...`.

Each step maximizes the ELBO of a fresh dynamic binarization (or dequantization) of the batch:
    loss = -1/B sum_b [ log p(x_b|z_b) - beta_t KL(q(z|x_b) || N(0, I)) ],  z_b = mu_b + sigma_b * eps_b
with beta_t = min(1, t / kl_warmup_steps) (beta = 1 without warm-up).
"""

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from .. import data as hdata
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

PIPELINE_CLASS = "VAEPipeline"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train vae", description="Train a variational autoencoder.")
    g = p.add_argument_group("data and output")
    g.add_argument("--dataset", default="digits", help="digits | mnist | a .npz file | an image folder")
    g.add_argument("--output_dir", required=True, help="the model folder to write (pipeline, card, checkpoints)")
    g.add_argument(
        "--pixel_mode",
        choices=hdata.PIXEL_MODES,
        default="binary",
        help="binary: dynamic binarization + Bernoulli decoder; continuous: dequantization + Gaussian decoder",
    )
    g.add_argument(
        "--overwrite_output_dir", action="store_true", help="train a new model into a folder holding a VAE run"
    )
    g = p.add_argument_group("model")
    g.add_argument("--architecture", choices=("mlp", "conv"), default="mlp")
    g.add_argument("--latent_dim", type=int, default=20)
    g.add_argument("--hidden_dims", type=int, nargs="+", default=[400], help="MLP widths, or two conv widths")
    g.add_argument("--activation", choices=("relu", "elu", "tanh", "softplus"), default="relu")
    g = p.add_argument_group("optimization")
    g.add_argument("--train_batch_size", type=int, default=128, help="per process")
    g.add_argument("--learning_rate", type=float, default=1e-3)
    g.add_argument("--adam_weight_decay", type=float, default=0.0)
    g.add_argument("--num_epochs", type=int, default=100)
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps; overrides --num_epochs")
    g.add_argument("--max_train_time", type=float, default=None, help="stop after this many seconds of training")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--kl_warmup_steps", type=int, default=0, help="anneal the KL weight from 0 to 1 over these steps")
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("checkpoints, logging, evaluation")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    g.add_argument("--sample_steps", type=int, default=500, help="write a sample grid every N steps")
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    g.add_argument("--eval_k", type=int, default=1000, help="importance samples for the IWAE bound at the end")
    g.add_argument("--eval_num_images", type=int, default=1000, help="test images to evaluate (0: skip)")
    g.add_argument(
        "--eval_num_samples", type=int, default=1000, help="samples for the sample-quality metrics (0: skip)"
    )
    g.add_argument("--license", default="apache-2.0", help="license written in the model card")
    args = p.parse_args(argv)

    positive = [
        "latent_dim",
        "train_batch_size",
        "num_epochs",
        "gradient_accumulation_steps",
        "checkpointing_steps",
        "sample_steps",
        "logging_steps",
    ]
    for name in positive:
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_train_steps", "checkpoints_total_limit", "eval_k"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.eval_num_images, args.eval_num_samples, args.kl_warmup_steps) < 0:
        p.error("--eval_num_images, --eval_num_samples and --kl_warmup_steps must be >= 0")
    if any(h < 1 for h in args.hidden_dims):
        p.error(f"--hidden_dims must be positive, got {args.hidden_dims}")
    if args.architecture == "conv" and len(args.hidden_dims) != 2:
        p.error(f"--architecture conv takes two --hidden_dims (conv widths), got {args.hidden_dims}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        p.error(f"--learning_rate must be a positive number, got {args.learning_rate}")
    if args.max_train_time is not None and args.max_train_time <= 0:
        p.error(f"--max_train_time must be > 0 seconds, got {args.max_train_time}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _sample_grid(model, num_images: int = 64, seed: int = 0):
    from ..pipeline_utils import make_grid

    g = torch.Generator().manual_seed(seed)
    z = torch.randn((num_images, model.config.latent_dim), generator=g)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        images = model.decode_to_images(z.to(model.device, model.dtype))
    model.train(was_training)
    return make_grid(images.float(), nrow=int(math.sqrt(num_images)))


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(steps, [h["neg_elbo"] for h in history], label="-ELBO (train batch)")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("nats / image")
    ax[0].legend()
    ax[1].plot(steps, [h["kl"] for h in history], color="tab:orange", label="KL(q(z|x) || p(z))")
    ax[1].plot(steps, [-h["log_px_z"] for h in history], color="tab:green", label="-log p(x|z)")
    ax[1].set_xlabel("step")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .losses import elbo
    from .modeling_vae import VAEModel

    out = Path(args.output_dir)
    resume = resolve_checkpoint(out, args.resume_from_checkpoint) if out.is_dir() else None
    check_output_dir(
        out, PIPELINE_CLASS, resume=args.resume_from_checkpoint is not None, overwrite=args.overwrite_output_dir
    )
    train_set = hdata.load_dataset(args.dataset, "train")  # ValueError for an unknown or empty dataset
    c, h, w = train_set.image_shape
    if h != w:
        raise ValueError(f"Dataset {args.dataset!r} has {h}x{w} images; the VAE needs square images.")
    if args.architecture == "conv" and h % 4:
        raise ValueError(f"--architecture conv needs an image size divisible by 4, dataset {args.dataset!r} has {h}.")

    accelerator = make_accelerator(args, "vae", gradient_accumulation_steps=args.gradient_accumulation_steps)

    # 1. Model, optimizer, data
    model = VAEModel(
        sample_size=h,
        in_channels=c,
        latent_dim=args.latent_dim,
        architecture=args.architecture,
        hidden_dims=tuple(args.hidden_dims),
        activation=args.activation,
        decoder_distribution="bernoulli" if args.pixel_mode == "binary" else "gaussian",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    # The loader gets its own generator: creating an iterator would otherwise draw from the global RNG, which
    # the dynamic binarization uses, and a resumed run (one more iterator) would not repeat the straight one.
    # The shuffle order is accelerate's seedable sampler: a permutation seeded by seed + epoch.
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if len(loader) == 0:
        raise ValueError(
            f"--train_batch_size {args.train_batch_size} is larger than the {len(train_set)} training images."
        )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    global_step, history, trained_seconds, images_seen = 0, [], 0.0, 0

    # 2. Resume: weights, optimizer, RNG, step and the history so far
    if resume is not None:
        saved = load_checkpoint(accelerator, resume, {"vae": model}, {"vae": optimizer})
        if saved["state"]["model_config"] != config_dict(accelerator.unwrap_model(model)):
            raise ValueError(f"Checkpoint {resume} holds a model with another configuration than these arguments.")
        global_step = saved["step"]
        history, trained_seconds = saved["state"]["history"], saved["state"]["trained_seconds"]
        images_seen = saved["state"]["images_seen"]
        accelerator.print(f"Resumed from {resume} at step {global_step}")
    elif args.resume_from_checkpoint is not None:
        accelerator.print(f"No checkpoint in {out} yet: starting from step 0.")
    first_epoch = global_step // steps_per_epoch
    if global_step >= max_steps:
        accelerator.print(f"Already trained to step {global_step} (>= {max_steps}): writing the outputs only.")
        num_epochs = first_epoch
    skip_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps

    def state():
        return {
            "model_config": config_dict(accelerator.unwrap_model(model)),
            "history": history,
            "trained_seconds": trained_seconds,
            "images_seen": images_seen,
            "args": args.argv,
        }

    # 3. The loop
    from tqdm.auto import tqdm

    progress = tqdm(
        total=max_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="vae", mininterval=1
    )
    diverged, start, stop = None, time.perf_counter(), False
    last_checkpoint = resume
    model.train()
    for epoch in range(first_epoch, num_epochs):
        loader.set_epoch(epoch)
        batches = (
            accelerator.skip_first_batches(loader, skip_batches) if epoch == first_epoch and skip_batches else loader
        )
        running = []
        for intensities, _ in batches:
            with accelerator.accumulate(model):
                x = hdata.to_model_input(intensities, args.pixel_mode, train_set.levels)  # fresh draw each use
                beta = min(1.0, (global_step + 1) / args.kl_warmup_steps) if args.kl_warmup_steps else 1.0
                terms = elbo(model, x, beta=beta)
                loss = -terms["elbo"].mean()
                # NaN guard, agreed by all processes so that they stop together.
                bad = accelerator.gather(torch.tensor([float(not torch.isfinite(loss))], device=loss.device))
                if bad.any():
                    diverged = f"non-finite loss ({loss.item()}) at step {global_step + 1}"
                    break
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
                running.append(
                    torch.stack([terms["elbo"].mean(), terms["log_px_z"].mean(), terms["kl"].mean()]).detach()
                )
            images_seen += x.shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_steps:
                mean = accelerator.gather(torch.stack(running).float().mean(0, keepdim=True)).mean(0)
                running = []
                row = {
                    "step": global_step,
                    "loss": -mean[0].item(),  # -(log p(x|z) - beta KL): the warm-up objective
                    "neg_elbo": (mean[2] - mean[1]).item(),  # -(log p(x|z) - KL): the bound itself
                    "log_px_z": mean[1].item(),
                    "kl": mean[2].item(),
                    "beta": beta,
                }
                history.append(row)
                accelerator.log({k: v for k, v in row.items() if k != "step"}, step=global_step)
                progress.set_postfix(neg_elbo=f"{row['neg_elbo']:.2f}", refresh=False)
            elapsed = trained_seconds + time.perf_counter() - start
            out_of_time = args.max_train_time is not None and elapsed >= args.max_train_time
            # All processes take the main process's clock, so they stop at the same step.
            stop = global_step >= max_steps or bool(
                accelerator.gather(torch.tensor([float(out_of_time)], device=loss.device))[0].item()
            )
            if accelerator.is_main_process and global_step % args.sample_steps == 0:
                _sample_grid(accelerator.unwrap_model(model)).save(out / "samples" / f"step-{global_step:06d}.png")
            if global_step % args.checkpointing_steps == 0 or stop:
                trained_seconds, start = elapsed, time.perf_counter()
                last_checkpoint = save_checkpoint(
                    accelerator,
                    out,
                    global_step,
                    {"vae": model},
                    {"vae": optimizer},
                    state(),
                    args.checkpoints_total_limit,
                )
            if stop:
                break
        skip_batches = 0
        if diverged or stop:
            break
    progress.close()

    if diverged:
        kept = f"The last good checkpoint is {last_checkpoint}." if last_checkpoint else "No checkpoint was written."
        accelerator.print(
            f"hubgen: training stopped: {diverged}. {kept} Lower --learning_rate, use --kl_warmup_steps or "
            "--mixed_precision no, then resume with --resume_from_checkpoint latest."
        )
        accelerator.end_training()
        return 1

    # 4. Save the pipeline, samples, curves, evaluation and card (main process only)
    if accelerator.is_main_process:
        _finish(
            accelerator.unwrap_model(model),
            args,
            train_set,
            out,
            history,
            global_step,
            trained_seconds,
            images_seen,
            accelerator.num_processes,
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers and, when distributed, the process group
    return 0


def _finish(model, args, train_set, out: Path, history, step, seconds, images_seen, num_processes) -> None:
    from ..hub import render_card, save_pipeline_atomic
    from .pipeline_vae import VAEPipeline

    model.eval()
    pipe = VAEPipeline(vae=model, pixel_levels=train_set.levels)
    save_pipeline_atomic(pipe, out)
    _sample_grid(model, 64, seed=0).save(out / "samples.png")
    if history:
        _plot_history(history, out / "loss_curve.png")
    info = {
        "family": "vae",
        "command": "hubgen train vae " + shlex.join(args.argv),
        "dataset": str(args.dataset),
        "image_shape": list(train_set.image_shape),
        "num_train_images": len(train_set),
        "pixel_mode": args.pixel_mode,
        "pixel_levels": train_set.levels,
        "seed": args.seed,
        "steps": step,
        "epochs": round(images_seen / len(train_set), 2),
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
        "kl_warmup_steps": args.kl_warmup_steps,
        "mixed_precision": args.mixed_precision,
        "num_processes": num_processes,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(images_seen / seconds, 1) if seconds > 0 else None,
        "final_train_neg_elbo": history[-1]["neg_elbo"] if history else None,
        "license": args.license,
        "versions": versions(),
    }
    write_json_atomic(out / "hubgen_training.json", info)
    if args.eval_num_images > 0:
        results = evaluate(
            out, k=args.eval_k, num_images=args.eval_num_images, num_samples=args.eval_num_samples, pipeline=pipe
        )
        write_json_atomic(out / "eval_results.json", results)
    render_card(out)


@torch.no_grad()
def evaluate(
    folder,
    dataset: str | None = None,
    split: str = "test",
    k: int = 1000,
    num_images: int | None = 1000,
    seed: int = 0,
    batch_size: int = 100,
    pipeline=None,
    num_samples: int = 1000,
) -> dict:
    """Negative ELBO and IWAE NLL (nats) on the first `num_images` images of `split`, and bits/dim.

    Each image is binarized once (dynamic binarization, from a generator seeded with `seed`) for a Bernoulli
    decoder, or dequantized once for a Gaussian one; the same draw serves both bounds. Reported: the mean
    over images and its standard error.

    With `num_samples` > 0, also the sample-quality figures of hubgen.metrics (classifier Frechet distance,
    precision/recall/density/coverage, mode coverage, memorization) for `num_samples` decoder means E[x|z],
    z ~ N(0, I) drawn from `seed`; the nearest-neighbour grid goes to `nearest_neighbours.png` in `folder`.
    """
    from .pipeline_vae import VAEPipeline

    if not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1, got {k!r}.")
    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, dataset)
    pipe = pipeline or VAEPipeline.from_pretrained(folder)
    test = hdata.load_dataset(dataset, split)
    n = len(test) if not num_images else min(num_images, len(test))
    g = torch.Generator().manual_seed(seed)
    nll, neg_elbo, bpd = [], [], []
    for i in range(0, n, batch_size):
        x = torch.stack([test[j][0] for j in range(i, min(i + batch_size, n))])
        scores = pipe.log_likelihood(x, k=k, generator=g)
        nll.append(scores.nll_nats)
        neg_elbo.append(scores.neg_elbo_nats)
        bpd.append(scores.bits_per_dim)

    def summary(values):
        v = torch.cat(values).double()
        return {"mean": v.mean().item(), "stderr": (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else None}

    binary = pipe.vae.config.decoder_distribution == "bernoulli"
    quality = None
    if num_samples:
        from ..metrics import evaluate_samples

        samples = pipe(num_samples, generator=torch.Generator().manual_seed(seed), output_type="pt").images
        grid = folder / "nearest_neighbours.png" if folder.is_dir() else None
        quality = evaluate_samples(samples, dataset, seed=seed, grid_path=grid)
        quality["samples"] = "decoder means E[x|z], z ~ N(0, I)"
    return {
        "sample_quality": quality,
        "family": "vae",
        "dataset": str(dataset),
        "split": split,
        "num_images": n,
        "k": k,
        "seed": seed,
        "pixel_mode": "binary" if binary else "continuous",
        "protocol": (
            f"dynamic binarization: one Bernoulli(intensity) draw per image from seed {seed}"
            if binary
            else f"uniform dequantization to {pipe.config.pixel_levels} levels, one draw per image, seed {seed}"
        ),
        "metrics": {
            "iwae_nll_nats": summary(nll),
            "neg_elbo_nats": summary(neg_elbo),
            "bits_per_dim": summary(bpd),
        },
    }
