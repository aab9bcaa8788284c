"""Train a multi-scale flow with accelerate: `hubgen train flow --dataset digits --output_dir out/flow`.

Maximum likelihood, exactly: each step minimizes the bits/dim of a fresh dequantization of the batch,

    loss = 1/B sum_b [-log p(x_b) + log q(u_b|k_b)] / (D ln 2) + log2 L,   x_b = (k_b + u_b) / L

with log p(x) by the change of variables (hubgen.flow.modeling_flow). The loop is written out as in
train_vae/train_gan: a seed for the whole run, Adam or AdamW with a linear learning-rate warm-up, gradient
clipping, an optional EMA of the weights (diffusers' EMAModel), pickle-free checkpoints that resume exactly
(hubgen.training), sample grids and a NaN guard. ActNorm is initialized from one batch of training images
before training starts (the same batch on every process), and its flag is saved with the weights.

Invertibility is checked at every checkpoint: a fixed batch goes x -> z -> x' and must come back within
`--invertibility_tolerance`, with the two log-determinants cancelling. A flow whose inverse has drifted
(an ill-conditioned 1x1 convolution, a coupling scale near 0) would report likelihoods of a model it cannot
sample from; the run stops with exit code 1 and advice, and the last good checkpoint is kept.
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

__all__ = ["parse_args", "main", "evaluate", "invertibility_error"]

PIPELINE_CLASS = "FlowPipeline"
EVAL_TEMPERATURES = (1.0, 0.7)  # T = 1 samples the density; 0.7 is Glow's choice for cleaner samples
QUANTILES = (1, 5, 25, 50, 75, 95, 99)  # percent: the per-image bits/dim quantiles `evaluate` records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train flow", description="Train a multi-scale Glow/RealNVP flow.")
    g = p.add_argument_group("data and output")
    g.add_argument("--dataset", default="digits", help="digits | mnist | a .npz file | an image folder")
    g.add_argument("--output_dir", required=True, help="the model folder to write (pipeline, card, checkpoints)")
    g.add_argument("--overwrite_output_dir", action="store_true", help="train a new model into a folder holding a flow")
    g = p.add_argument_group("model")
    g.add_argument("--num_levels", type=int, default=2, help="scales (one squeeze each); 2 for 28x28 and 8x8")
    g.add_argument("--steps_per_level", type=int, default=6, help="flow steps K per scale")
    g.add_argument("--hidden_channels", type=int, default=64, help="width of the coupling networks")
    g.add_argument("--logit_alpha", type=float, default=0.05, help="RealNVP's logit transform alpha")
    g.add_argument("--no_logit", action="store_true", help="Glow's x - 1/2 instead of the logit transform")
    g.add_argument("--dequantization", choices=("uniform", "variational"), default="uniform")
    g.add_argument("--dequant_hidden_channels", type=int, default=32, help="variational dequantization width")
    g.add_argument("--dequant_steps", type=int, default=2, help="couplings of the variational dequantization flow")
    g = p.add_argument_group("optimization")
    g.add_argument("--train_batch_size", type=int, default=32, help="per process")
    g.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    g.add_argument("--learning_rate", type=float, default=2e-3)
    g.add_argument("--adam_weight_decay", type=float, default=0.0, help="for --optimizer adamw")
    g.add_argument("--lr_warmup_steps", type=int, default=500, help="linear warm-up of the learning rate")
    g.add_argument("--max_grad_norm", type=float, default=100.0, help="clip the gradient norm (0: off)")
    g.add_argument("--use_ema", action="store_true", help="save and evaluate an EMA of the weights")
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--init_batch_size", type=int, default=512, help="images for ActNorm's data-dependent init")
    g.add_argument("--num_epochs", type=int, default=20)
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps; overrides --num_epochs")
    g.add_argument("--max_train_time", type=float, default=None, help="stop after this many seconds of training")
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("checkpoints, logging, evaluation")
    g.add_argument("--checkpointing_steps", type=int, default=1000)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    g.add_argument("--sample_steps", type=int, default=1000, help="write a sample grid every N steps")
    g.add_argument("--logging_steps", type=int, default=20)
    g.add_argument("--invertibility_tolerance", type=float, default=1e-3,
                   help="largest |x - f^-1(f(x))| allowed at a checkpoint, for x in [0, 1)")  # fmt: skip
    g.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    g.add_argument("--eval_num_images", type=int, default=0, help="test images for the final bits/dim (0: all)")
    g.add_argument("--eval_num_samples", type=int, default=1000, help="samples per temperature for sample quality")
    g.add_argument("--no_eval", action="store_true", help="skip the final evaluation")
    g.add_argument("--license", default="apache-2.0", help="license written in the model card")
    args = p.parse_args(argv)

    for name in ["num_levels", "steps_per_level", "hidden_channels", "dequant_hidden_channels", "train_batch_size",
                 "init_batch_size", "num_epochs", "checkpointing_steps", "sample_steps", "logging_steps"]:  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("dequant_steps", "lr_warmup_steps", "eval_num_images", "eval_num_samples"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        p.error(f"--learning_rate must be a positive number, got {args.learning_rate}")
    if not (args.max_grad_norm >= 0 and math.isfinite(args.max_grad_norm)):
        p.error(f"--max_grad_norm must be >= 0 (0: no clipping), got {args.max_grad_norm}")
    if not 0 <= args.logit_alpha < 0.5:
        p.error(f"--logit_alpha must be in [0, 0.5), got {args.logit_alpha}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if not (args.invertibility_tolerance > 0 and math.isfinite(args.invertibility_tolerance)):
        p.error(f"--invertibility_tolerance must be a positive number, got {args.invertibility_tolerance}")
    if args.max_train_time is not None and args.max_train_time <= 0:
        p.error(f"--max_train_time must be > 0 seconds, got {args.max_train_time}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _sample_grid(model, num_images: int = 64, seed: int = 0, temperature: float = 1.0):
    from ..pipeline_utils import make_grid

    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = model.sample(num_images, temperature, generator=torch.Generator(model.device).manual_seed(seed))
        images = model.to_intensities(x).float()
    model.train(was_training)
    return make_grid(images, nrow=int(math.sqrt(num_images)))


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(steps, [h["bits_per_dim"] for h in history], label="bits/dim (train batches)")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("bits/dim")
    ax[0].legend()
    ax[1].plot(steps, [h["grad_norm"] for h in history], color="tab:orange", label="gradient norm (before clipping)")
    ax[1].set_yscale("log")
    ax[1].set_xlabel("step")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def invertibility_error(model, intensities: torch.Tensor, seed: int = 0) -> dict:
    """x -> z -> x' on one batch in eval mode: the largest |x - x'| and |log_det + log_det_inverse|, and whether
    every value is finite. `intensities` in [0, 1]; x = (k + u) / L with u drawn from `seed`."""
    was_training = model.training
    model.eval()
    x, _ = model.dequantize(intensities, generator=torch.Generator(intensities.device).manual_seed(seed))
    z, log_det = model(x)
    x_back, log_det_back = model.inverse(z)
    model.train(was_training)
    finite = bool(torch.isfinite(z).all() and torch.isfinite(x_back).all() and torch.isfinite(log_det).all())
    return {
        "max_abs_error": (x - x_back).abs().max().item() if finite else float("inf"),
        "max_log_det_error": (log_det + log_det_back).abs().max().item() if finite else float("inf"),
        "finite": finite,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers.training_utils import EMAModel

    from .modeling_flow import FlowModel

    out = Path(args.output_dir)
    resume = resolve_checkpoint(out, args.resume_from_checkpoint) if out.is_dir() else None
    check_output_dir(out, PIPELINE_CLASS, resume=args.resume_from_checkpoint is not None,
                     overwrite=args.overwrite_output_dir)  # fmt: skip
    train_set = hdata.load_dataset(args.dataset, "train")  # ValueError for an unknown or empty dataset
    c, h, w = train_set.image_shape
    if h != w or h % 2**args.num_levels:
        raise UserInputError(
            f"Dataset {args.dataset!r} has {h}x{w} images; the flow needs square images with a side divisible by "
            f"2**num_levels = {2**args.num_levels} (--num_levels {args.num_levels})."
        )

    accelerator = make_accelerator(args, "flow")

    # 1. Model, ActNorm's data-dependent initialization, optimizer, data
    model = FlowModel(
        sample_size=h,
        in_channels=c,
        pixel_levels=train_set.levels,
        num_levels=args.num_levels,
        steps_per_level=args.steps_per_level,
        hidden_channels=args.hidden_channels,
        logit_alpha=None if args.no_logit else args.logit_alpha,
        dequantization=args.dequantization,
        dequant_hidden_channels=args.dequant_hidden_channels,
        dequant_steps=args.dequant_steps,
    )
    init_rng = torch.Generator().manual_seed(args.seed)  # own generator: the global RNG stays as seeded
    init_idx = torch.randperm(len(train_set), generator=init_rng)[: args.init_batch_size]
    init_batch = train_set.images[init_idx].float() / 255.0
    if resume is None:
        model.initialize(init_batch, generator=init_rng)
    check_batch = init_batch[:64].to(accelerator.device)  # the invertibility check's fixed batch
    ema_model = copy.deepcopy(model).requires_grad_(False) if args.use_ema else None
    opt_class = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    weight_decay = args.adam_weight_decay if args.optimizer == "adamw" else 0.0
    # The fused (single-kernel) Adam halves the optimizer's share of a CPU step; other devices take the default.
    fused = {"fused": True} if accelerator.device.type in ("cpu", "cuda") else {}
    optimizer = opt_class(model.parameters(), lr=args.learning_rate, weight_decay=weight_decay, **fused)
    # The loader gets its own generator: creating an iterator must not draw from the global RNG, which the
    # dequantization noise uses (exact resume). The shuffle order is accelerate's seedable sampler.
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    if len(loader) == 0:
        raise UserInputError(
            f"--train_batch_size {args.train_batch_size} is larger than the {len(train_set)} training images."
        )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    flow = accelerator.unwrap_model(model)
    ema = None
    if ema_model is not None:
        ema_model.to(accelerator.device)
        ema = EMAModel(ema_model.parameters(), decay=args.ema_decay, foreach=True)

    steps_per_epoch = len(loader)
    max_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    global_step, history, trained_seconds, images_seen = 0, [], 0.0, 0
    models = {"flow": model, **({"flow_ema": ema_model} if ema_model is not None else {})}

    # 2. Resume: weights (with ActNorm's flags), optimizer, EMA, RNG, step and the history so far
    if resume is not None:
        saved = load_checkpoint(accelerator, resume, models, {"flow": optimizer})
        if saved["state"]["model_config"] != config_dict(flow):
            raise UserInputError(f"Checkpoint {resume} holds a model with another configuration than these arguments.")
        if (ema is not None) != ("ema_optimization_step" in saved["state"]):
            raise UserInputError(f"Checkpoint {resume} was written {'without' if ema else 'with'} --use_ema; match it.")
        global_step = saved["step"]
        history, trained_seconds = saved["state"]["history"], saved["state"]["trained_seconds"]
        images_seen = saved["state"]["images_seen"]
        if ema is not None:
            ema = EMAModel(ema_model.parameters(), decay=args.ema_decay, foreach=True)
            ema.optimization_step = saved["state"]["ema_optimization_step"]
        accelerator.print(f"Resumed from {resume} at step {global_step}")
    elif args.resume_from_checkpoint is not None:
        accelerator.print(f"No checkpoint in {out} yet: starting from step 0.")
    first_epoch = global_step // steps_per_epoch
    if global_step >= max_steps:
        accelerator.print(f"Already trained to step {global_step} (>= {max_steps}): writing the outputs only.")
        num_epochs = first_epoch
    skip_batches = global_step % steps_per_epoch

    def state():
        s = {"model_config": config_dict(flow), "history": history, "trained_seconds": trained_seconds,
             "images_seen": images_seen, "args": args.argv}  # fmt: skip
        if ema is not None:
            s["ema_optimization_step"] = ema.optimization_step
        return s

    def saved_model():
        """The weights that get saved and evaluated: the EMA copy when --use_ema, else the live model."""
        if ema is None:
            return flow
        ema.copy_to(ema_model.parameters())
        return ema_model

    # 3. The loop
    from tqdm.auto import tqdm

    progress = tqdm(total=max_steps, initial=global_step, disable=not accelerator.is_local_main_process,
                    desc="flow", mininterval=1)  # fmt: skip
    diverged, not_invertible, start, stop = None, None, time.perf_counter(), False
    last_checkpoint, running = resume, []
    log2_levels, num_dims = math.log2(train_set.levels), flow.num_dims
    model.train()
    for epoch in range(first_epoch, num_epochs):
        loader.set_epoch(epoch)
        batches = (
            accelerator.skip_first_batches(loader, skip_batches) if epoch == first_epoch and skip_batches else loader
        )
        for intensities, _ in batches:
            # linear warm-up: lr_t = lr min(1, t / warmup), a function of the step only (exact resume)
            warmup = min(1.0, (global_step + 1) / args.lr_warmup_steps) if args.lr_warmup_steps else 1.0
            lr = args.learning_rate * warmup
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, log_q = flow.dequantize(intensities)  # a fresh u for every use of an image
            # bits/dim of the batch: (-log p(x) + log q(u|k)) / (D ln 2) + log2 L
            loss = (log_q - flow_log_prob(model, x)).mean() / (num_dims * math.log(2)) + log2_levels
            bad = accelerator.gather(torch.tensor([float(not torch.isfinite(loss))], device=loss.device))
            if bad.any():
                diverged = f"non-finite loss ({loss.item()}) at step {global_step + 1}"
                break
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(flow.parameters())
            running.append(torch.stack([loss.detach().float(), torch.as_tensor(grad_norm, device=loss.device).float()]))
            images_seen += x.shape[0] * accelerator.num_processes
            global_step += 1
            progress.update(1)
            if global_step % args.logging_steps == 0 or global_step == max_steps:
                mean = accelerator.gather(torch.stack(running).mean(0, keepdim=True)).mean(0)
                running = []
                row = {"step": global_step, "bits_per_dim": mean[0].item(), "grad_norm": mean[1].item(), "lr": lr}
                history.append(row)
                accelerator.log({k: v for k, v in row.items() if k != "step"}, step=global_step)
                progress.set_postfix(bpd=f"{row['bits_per_dim']:.3f}", refresh=False)
            elapsed = trained_seconds + time.perf_counter() - start
            out_of_time = args.max_train_time is not None and elapsed >= args.max_train_time
            # All processes take the main process's clock, so they stop at the same step.
            stop = global_step >= max_steps or bool(
                accelerator.gather(torch.tensor([float(out_of_time)], device=loss.device))[0].item()
            )
            if accelerator.is_main_process and global_step % args.sample_steps == 0:
                _sample_grid(saved_model()).save(out / "samples" / f"step-{global_step:06d}.png")
            if global_step % args.checkpointing_steps == 0 or stop:
                trained_seconds, start = elapsed, time.perf_counter()
                checked = [flow] + ([saved_model()] if ema is not None else [])  # live and EMA weights
                check = max((invertibility_error(m, check_batch, seed=args.seed) for m in checked),
                            key=lambda c: (not c["finite"], c["max_abs_error"]))  # fmt: skip
                if not check["finite"] or check["max_abs_error"] > args.invertibility_tolerance:
                    not_invertible = (
                        f"at step {global_step} the flow no longer inverts: max |x - f^-1(f(x))| = "
                        f"{check['max_abs_error']:.3g} > {args.invertibility_tolerance:g} on a fixed batch "
                        f"(log-det mismatch {check['max_log_det_error']:.3g})"
                    )
                    break
                last_checkpoint = save_checkpoint(accelerator, out, global_step, models, {"flow": optimizer}, state(),
                                                  args.checkpoints_total_limit)  # fmt: skip
            if stop:
                break
        skip_batches = 0
        if diverged or not_invertible or stop:
            break
    progress.close()

    if diverged or not_invertible:
        kept = f"The last good checkpoint is {last_checkpoint}." if last_checkpoint else "No checkpoint was written."
        advice = (
            "Lower --learning_rate or --max_grad_norm, lengthen --lr_warmup_steps, or use --mixed_precision no"
            if diverged
            else "Its checkpoint was not written. Lower --learning_rate or --max_grad_norm, or use --mixed_precision "
            "no (float32 keeps the 1x1 convolutions well conditioned)"
        )
        accelerator.print(
            f"hubgen: training stopped: {diverged or not_invertible}. {kept} {advice}; then resume with "
            "--resume_from_checkpoint latest."
        )
        accelerator.end_training()
        return 1

    # 4. Save the pipeline, samples, curves, evaluation and card (main process only)
    if accelerator.is_main_process:
        _finish(saved_model(), args, train_set, out, history, global_step, trained_seconds, images_seen,
                accelerator.num_processes)  # fmt: skip
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def flow_log_prob(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) through the (possibly distributed-wrapped) model's forward, so that DDP sees the call."""
    from .transforms import standard_normal_log_prob

    z, log_det = model(x)
    return standard_normal_log_prob(z) + log_det


def _finish(model, args, train_set, out: Path, history, step, seconds, images_seen, num_processes) -> None:
    from ..hub import render_card, save_pipeline_atomic
    from .pipeline_flow import FlowPipeline

    model.eval()
    pipe = FlowPipeline(flow=model)
    save_pipeline_atomic(pipe, out)
    _sample_grid(model, 64, seed=0, temperature=1.0).save(out / "samples.png")
    _sample_grid(model, 64, seed=0, temperature=0.7).save(out / "samples_t0.7.png")
    if history:
        _plot_history(history, out / "loss_curve.png")
    cfg = model.config
    info = {
        "family": "flow",
        "command": "hubgen train flow " + shlex.join(args.argv),
        "dataset": str(args.dataset),
        "image_shape": list(train_set.image_shape),
        "num_train_images": len(train_set),
        "pixel_mode": "continuous",
        "pixel_levels": train_set.levels,
        "dequantization": cfg.dequantization,
        "preprocessing": "none (x - 1/2)" if cfg.logit_alpha is None else f"logit, alpha = {cfg.logit_alpha}",
        "seed": args.seed,
        "steps": step,
        "epochs": round(images_seen / len(train_set), 2),
        "train_batch_size": args.train_batch_size,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "lr_warmup_steps": args.lr_warmup_steps,
        "max_grad_norm": args.max_grad_norm,
        "ema_decay": args.ema_decay if args.use_ema else None,
        "init_batch_size": args.init_batch_size,
        "mixed_precision": args.mixed_precision,
        "num_processes": num_processes,
        "torch_threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 1),
        "images_per_second": round(images_seen / seconds, 1) if seconds > 0 else None,
        "final_train_bits_per_dim": history[-1]["bits_per_dim"] if history else None,
        "license": args.license,
        "versions": versions(),
    }
    write_json_atomic(out / "hubgen_training.json", info)
    if not args.no_eval:
        results = evaluate(out, num_images=args.eval_num_images, num_samples=args.eval_num_samples, pipeline=pipe)
        write_json_atomic(out / "eval_results.json", results)
    render_card(out)


def _summary(values: list[torch.Tensor]) -> dict:
    v = torch.cat(values).double()
    return {"mean": v.mean().item(), "stderr": (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else None}


@torch.no_grad()
def evaluate(
    folder,
    dataset: str | None = None,
    split: str = "test",
    num_images: int | None = 0,
    num_samples: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
    temperatures=EVAL_TEMPERATURES,
    pipeline=None,
    **unused,
) -> dict:
    """Exact test bits/dim and, for `num_samples` > 0, sample quality at each temperature.

    Likelihood: the first `num_images` images (0 or None: all) of `split`, each quantized to the model's L
    grey levels and dequantized once (u drawn from a generator seeded with `seed`: uniform, or from q(u|k) for
    a variationally dequantized model). Per image, by the change of variables:

        exact_nll_nats     = -log p(x) + log q(u|k) + D ln L,      x = (k + u) / L
        exact_bits_per_dim = exact_nll_nats / (D ln 2)              (hubgen.metrics.units)

    The density p(x) is exact; as a figure for the discrete images it is, in expectation over u, an upper
    bound on -log P(k) (a lower bound on the discrete log-likelihood), the convention of every published
    bits/dim of a dequantized flow. Reported: the mean over images and its standard error. `k` of `hubgen
    eval` (importance samples) does not apply: one dequantization draw per image, recorded as k = 1.

    Sample quality (hubgen.metrics.evaluate_samples) of `num_samples` samples x = f^-1(z), z ~ N(0, T^2 I),
    drawn from `seed`, for each T in `temperatures`: results["sample_quality"] at T = 1 (or the first T), all
    of them in results["sample_quality_by_temperature"] keyed by T. The nearest-neighbour grid of T = 1 goes
    to `nearest_neighbours.png` in `folder`.
    """
    from .pipeline_flow import FlowPipeline

    folder = Path(folder)
    dataset, _ = recorded_dataset(folder, dataset)
    if num_images is not None and (not isinstance(num_images, int) or num_images < 0):
        raise UserInputError(f"`num_images` must be an integer >= 0 (0: all), got {num_images!r}.")
    if not isinstance(num_samples, int) or num_samples < 0:
        raise UserInputError(f"`num_samples` must be an integer >= 0, got {num_samples!r}.")
    pipe = pipeline or FlowPipeline.from_pretrained(folder)
    flow = pipe.flow
    test = hdata.load_dataset(dataset, split)
    if test.levels != flow.config.pixel_levels:
        raise UserInputError(
            f"The model was trained on {flow.config.pixel_levels} grey levels but `{dataset}` has {test.levels}: "
            "pass the dataset it was trained on."
        )
    n = len(test) if not num_images else min(num_images, len(test))
    g = torch.Generator().manual_seed(seed)
    bits = []
    for i in range(0, n, batch_size):
        images = test.images[i : min(i + batch_size, n)].float() / 255.0
        bits.append(pipe.log_likelihood(images, generator=g).bits_per_dim.double())
    per_image = torch.cat(bits)
    nats_per_bit = flow.num_dims * math.log(2)
    quantiles = torch.quantile(per_image, torch.tensor(QUANTILES, dtype=torch.float64) / 100)

    quality, by_temperature, note = None, {}, None
    from ..metrics.sample_quality import NETWORK_FOR_SIZE

    if num_samples and flow.config.sample_size not in NETWORK_FOR_SIZE:
        note = f"no frozen classifier for {flow.config.sample_size}x{flow.config.sample_size} images: skipped"
    elif num_samples:
        from ..metrics import evaluate_samples

        for t in temperatures:
            samples = pipe(num_samples, generator=torch.Generator().manual_seed(seed), temperature=t,
                           output_type="pt").images  # fmt: skip
            grid = folder / "nearest_neighbours.png" if folder.is_dir() and t == temperatures[0] else None
            report = evaluate_samples(samples, dataset, seed=seed, reference_split=split, grid_path=grid)
            report["temperature"] = t
            report["samples"] = f"x = f^-1(z), z ~ N(0, T^2 I) with T = {t:g}, shown at their grey level"
            by_temperature[f"{t:g}"] = report
        quality = by_temperature.get("1", next(iter(by_temperature.values())))
    dequant = flow.config.dequantization
    return {
        "family": "flow",
        "dataset": str(dataset),
        "split": split,
        "num_images": n,
        "k": 1,
        "seed": seed,
        "pixel_mode": "continuous",
        "pixel_levels": flow.config.pixel_levels,
        "num_dims": flow.num_dims,
        "dequantization": dequant,
        "protocol": (
            f"each image quantized to {flow.config.pixel_levels} grey levels and dequantized once "
            + ("with u ~ U[0, 1)" if dequant == "uniform" else "with u ~ q(u|k), the learned dequantization flow")
            + f" from seed {seed}; exact log-density of x = (k + u) / L by the change of variables"
        ),
        "bound": "in expectation over u, an upper bound on -log2 P(k) / D (a lower bound on the discrete likelihood)",
        "metrics": {
            "exact_nll_nats": _summary([per_image * nats_per_bit]),
            "exact_bits_per_dim": _summary([per_image]),
        },
        # [percent, bits/dim] pairs, in order (a list: JSON objects would sort "25" before "5")
        # [percent, bits/dim] pairs in order (a JSON object's keys would be sorted "1", "25", "5", ...)
        "bits_per_dim_quantiles": [list(pair) for pair in zip(QUANTILES, quantiles.tolist(), strict=True)],
        "sample_quality": quality,
        "sample_quality_by_temperature": by_temperature or None,
        "sample_quality_note": note,
    }
