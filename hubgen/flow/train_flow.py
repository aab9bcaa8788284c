"""Train a multi-scale flow with accelerate: `hubgen train flow --dataset digits --output_dir out/flow`.

Maximum likelihood, exactly (hubgen.flow.losses): each step minimizes the bits/dim of a fresh dequantization
of the batch,

    loss = 1/B sum_b [-log p(x_b) + log q(u_b|k_b) + D ln L] / (D ln 2),   x_b = (k_b + u_b) / L,

with log p(x) = log N(f(x); 0, I) + log |det df/dx| by the change of variables. The loop is written out (as
in diffusers' train_unconditional.py): Adam or AdamW with a linear learning-rate warm-up, gradient clipping
and an optional EMA of the weights (diffusers' EMAModel); the bookkeeping around it (seeded accelerator,
pickle-free checkpoints that resume exactly, NaN guard, time budget, the model folder, evaluation and card)
is hubgen.training's. ActNorm is initialized from one batch of training images before training starts (the
same batch on every process), and its flag is saved with the weights.

Invertibility is checked before every checkpoint: a fixed batch goes x -> z -> x' and must come back within
`--invertibility_tolerance`, with the two log-determinants cancelling. A flow whose inverse has drifted
(an ill-conditioned 1x1 convolution, a coupling scale near 0) would report likelihoods of a model it cannot
sample from; the run stops with exit code 1 and advice, and the last good checkpoint is kept.
"""

import argparse
import copy
import math

import torch

from .. import training as tr
from ..errors import UserInputError

__all__ = ["parse_args", "main", "invertibility_error", "sample_grid"]

PIPELINE_CLASS = "FlowPipeline"
DIVERGED = "Lower --learning_rate or --max_grad_norm, lengthen --lr_warmup_steps, or use --mixed_precision no."
NOT_INVERTIBLE = ("Its checkpoint was not written. Lower --learning_rate or --max_grad_norm, or use "
                  "--mixed_precision no (float32 keeps the 1x1 convolutions well conditioned).")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train flow", description="Train a multi-scale Glow/RealNVP flow.")
    data, model, opt, out = tr.add_common_arguments(
        p,
        batch_size=32,
        learning_rate=2e-3,
        num_epochs=20,
        num_images="all",
        sample_steps=1000,
        lr_scheduler="constant_with_warmup",
        lr_warmup_steps=500,
    )
    p.set_defaults(checkpointing_steps=1000, logging_steps=20)
    model.add_argument("--num_levels", type=int, default=None,
                       help="scales (one squeeze each); default by image side: the most squeezes that leave the last "
                       "scale at least 4x4, at least 2 (2 for 8-28 px, 3 for 32 px, 4 for 64 px)")  # fmt: skip
    model.add_argument("--steps_per_level", type=int, default=6, help="flow steps K per scale")
    model.add_argument("--hidden_channels", type=int, default=64, help="width of the coupling networks")
    model.add_argument("--logit_alpha", type=float, default=0.05, help="RealNVP's logit transform alpha")
    model.add_argument("--no_logit", action="store_true", help="Glow's x - 1/2 instead of the logit transform")
    model.add_argument("--dequantization", choices=("uniform", "variational"), default="uniform")
    model.add_argument("--dequant_hidden_channels", type=int, default=32, help="variational dequantization width")
    model.add_argument("--dequant_steps", type=int, default=2, help="couplings of the variational dequantization")
    opt.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    opt.add_argument("--adam_weight_decay", type=float, default=0.0, help="for --optimizer adamw")
    opt.add_argument("--max_grad_norm", type=float, default=100.0, help="clip the gradient norm (0: off)")
    opt.add_argument("--use_ema", action="store_true", help="save and evaluate an EMA of the weights")
    opt.add_argument("--ema_decay", type=float, default=0.999)
    opt.add_argument("--init_batch_size", type=int, default=512, help="images for ActNorm's data-dependent init")
    out.add_argument("--invertibility_tolerance", type=float, default=1e-3,
                     help="largest |x - f^-1(f(x))| allowed at a checkpoint, for x in [0, 1)")  # fmt: skip
    out.add_argument("--no_eval", action="store_true", help="skip the final evaluation")
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    for name in ("num_levels", "steps_per_level", "hidden_channels", "dequant_hidden_channels", "init_batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.dequant_steps < 0:
        p.error(f"--dequant_steps must be >= 0, got {args.dequant_steps}")
    if not (args.max_grad_norm >= 0 and math.isfinite(args.max_grad_norm)):
        p.error(f"--max_grad_norm must be >= 0 (0: no clipping), got {args.max_grad_norm}")
    if not 0 <= args.logit_alpha < 0.5:
        p.error(f"--logit_alpha must be in [0, 0.5), got {args.logit_alpha}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if not (args.invertibility_tolerance > 0 and math.isfinite(args.invertibility_tolerance)):
        p.error(f"--invertibility_tolerance must be a positive number, got {args.invertibility_tolerance}")
    return args


def sample_grid(model, num_images: int = 64, seed: int = 0, temperature: float = 1.0):
    """x = f^-1(z), z ~ N(0, T^2 I), for `num_images` draws from `seed`, at their grey level, as one grid."""
    from ..pipeline_utils import card_grid

    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = model.sample(num_images, temperature, generator=torch.Generator().manual_seed(seed))
        images = model.to_intensities(x).float()
    model.train(was_training)
    return card_grid(images, nrow=int(math.sqrt(num_images)))


@torch.no_grad()
def invertibility_error(model, intensities: torch.Tensor, seed: int = 0) -> dict:
    """x -> z -> x' on one batch in eval mode: the largest |x - x'| and |log_det + log_det_inverse|, and whether
    every value is finite. `intensities` in [0, 1]; x = (k + u) / L with u drawn from `seed`."""
    was_training = model.training
    model.eval()
    x, _ = model.dequantize(intensities, generator=torch.Generator().manual_seed(seed))
    # in float32 under --mixed_precision too: f without accelerate's autocast, as f^-1 (and a user's load) runs
    z, log_det = tr.float32_forward(model)(x)
    x_back, log_det_back = model.inverse(z)
    model.train(was_training)
    finite = bool(torch.isfinite(z).all() and torch.isfinite(x_back).all() and torch.isfinite(log_det).all())
    return {
        "max_abs_error": (x - x_back).abs().max().item() if finite else float("inf"),
        "max_log_det_error": (log_det + log_det_back).abs().max().item() if finite else float("inf"),
        "finite": finite,
    }


def not_invertible(models: list, check_batch: torch.Tensor, args, step: int) -> str | None:
    """The worst invertibility error over `models` (live and EMA weights): a message beyond the tolerance."""
    check = max((invertibility_error(m, check_batch, seed=args.seed) for m in models),
                key=lambda c: (not c["finite"], c["max_abs_error"]))  # fmt: skip
    if not check["finite"] or check["max_abs_error"] > args.invertibility_tolerance:
        return (
            f"at step {step} the flow no longer inverts: max |x - f^-1(f(x))| = {check['max_abs_error']:.3g} > "
            f"{args.invertibility_tolerance:g} on a fixed batch (log-det mismatch {check['max_log_det_error']:.3g})"
        )
    return None


def _optimizer(model, args, device):
    opt_class = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    weight_decay = args.adam_weight_decay if args.optimizer == "adamw" else 0.0
    # The fused (single-kernel) Adam halves the optimizer's share of a CPU step; other devices take the default.
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return opt_class(model.parameters(), lr=args.learning_rate, weight_decay=weight_decay, **fused)


def _record(args, run, model) -> dict:
    """The flow's own fields of hubgen_training.json (the card's training table)."""
    cfg = model.config
    return {"pixel_mode": "continuous", "dequantization": cfg.dequantization,
            "preprocessing": "none (x - 1/2)" if cfg.logit_alpha is None else f"logit, alpha = {cfg.logit_alpha}",
            "optimizer": args.optimizer, "max_grad_norm": args.max_grad_norm,
            "ema_decay": args.ema_decay if args.use_ema else None, "init_batch_size": args.init_batch_size,
            "final_train_bits_per_dim": run.history[-1]["bits_per_dim"] if run.history else None}  # fmt: skip


def _num_levels(args, image_shape) -> int:
    """--num_levels, or the scales chosen by the image side (modeling_flow.levels_for); UserInputError naming
    the sides the flow takes when the images do not fit."""
    from .modeling_flow import levels_for

    _, h, w = image_shape
    given = args.num_levels
    if h == w and (given is None or h % 2**given == 0):
        try:
            return levels_for(h) if given is None else given
        except UserInputError as e:
            raise UserInputError(
                f"{e} Dataset {args.dataset!r} has {h}x{w} images (--resolution resizes them)."
            ) from None
    need = (
        f"a side divisible by 2**num_levels = {2**given} (--num_levels {given})" if given else "a side divisible by 4"
    )
    raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the flow needs square images with {need}, "
                         "e.g. 8, 16, 28, 32 or 64 (--resolution resizes them).")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers.training_utils import EMAModel

    from .evaluation import FlowEvalRequest, evaluate
    from .losses import bits_per_dim, dequantized_nll, log_prob
    from .modeling_flow import FlowModel
    from .pipeline_flow import FlowPipeline

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    c, h, _ = train_set.image_shape
    num_levels = _num_levels(args, train_set.image_shape)  # checked before start_run writes anything
    if resume is not None and (resume / "model_flow_ema.safetensors").is_file() != args.use_ema:
        raise UserInputError(f"Checkpoint {resume} was written {'without' if args.use_ema else 'with'} --use_ema; "
                             "match it.")  # fmt: skip
    run = tr.start_run(args, "flow", resume, train_set, gradient_accumulation_steps=args.gradient_accumulation_steps)
    accelerator = run.accelerator

    # 1. Model, ActNorm's data-dependent initialization (Glow section 3.1), optimizer, data
    model = FlowModel(sample_size=h, in_channels=c, pixel_levels=train_set.levels, num_levels=num_levels,
                      steps_per_level=args.steps_per_level, hidden_channels=args.hidden_channels,
                      logit_alpha=None if args.no_logit else args.logit_alpha, dequantization=args.dequantization,
                      dequant_hidden_channels=args.dequant_hidden_channels,
                      dequant_steps=args.dequant_steps)  # fmt: skip
    init_rng = torch.Generator().manual_seed(args.seed)  # own generator: the global RNG stays as seeded
    init_idx = torch.randperm(len(train_set), generator=init_rng)[: args.init_batch_size]
    init_batch = train_set.take(init_idx).float() / 255.0  # (N, C, H, W) intensities in [0, 1]
    if resume is None:
        model.initialize(init_batch, generator=init_rng)  # the same batch on every process: equal replicas
    check_batch = init_batch[:64].to(accelerator.device)  # the invertibility check's fixed batch
    ema_model = copy.deepcopy(model).requires_grad_(False).to(accelerator.device) if args.use_ema else None
    optimizer = _optimizer(model, args, accelerator.device)
    model, optimizer, loader = tr.prepare(run, model, optimizer, tr.make_loader(run))
    flow = accelerator.unwrap_model(model)
    max_steps = args.max_train_steps or args.num_epochs * math.ceil(len(loader) / args.gradient_accumulation_steps)
    models, optimizers = {"flow": model, **({"flow_ema": ema_model} if args.use_ema else {})}, {"flow": optimizer}
    saved = tr.restore(run, models, optimizers, {"flow": tr.config_dict(flow)}, max_steps) or {}
    # diffusers' EMAModel over the (restored) EMA weights: theta_ema <- d_t theta_ema + (1 - d_t) theta
    ema = EMAModel(ema_model.parameters(), decay=args.ema_decay, foreach=True) if args.use_ema else None
    if ema is not None:
        ema.optimization_step = saved.get("ema_optimization_step", 0)

    def saved_model():  # what is sampled, checked, checkpointed and saved: the EMA copy with --use_ema
        if ema is None:
            return flow
        ema.copy_to(ema_model.parameters())
        return ema_model

    def state():
        return {"ema_optimization_step": ema.optimization_step} if ema else {}

    def check():  # before each checkpoint, on every process: a flow that no longer inverts is not saved
        return not_invertible([flow] + ([saved_model()] if ema else []), check_batch, args, run.step)

    # 2. The loop: one maximum-likelihood step per batch (accumulated over --gradient_accumulation_steps batches)
    window, step_losses, advice, num_dims, levels = [], [], DIVERGED, flow.num_dims, train_set.levels
    params = list(model.parameters())  # listed once, not walked through the modules at every step
    model.train()
    for intensities, _ in tr.training_batches(run, loader, max_steps):
        with accelerator.accumulate(model):
            x, log_q = flow.dequantize(intensities)  # x = (k + u) / L, a fresh u ~ q(u|k) at every use of an image
            # bits/dim of the batch: mean_b [-log p(x_b) + log q(u_b|k_b) + D ln L] / (D ln 2), in float32 under
            # mixed precision (log_prob's sums of log-determinants are float32, see transforms.py)
            loss = bits_per_dim(dequantized_nll(log_prob(model, x), log_q, num_dims, levels), num_dims).mean()
            if tr.nonfinite(run, loss):
                break
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                grad_norm = tr.clip_grad_norm(run, params, args.max_grad_norm or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        run.images_seen += x.shape[0] * accelerator.num_processes
        step_losses.append(loss.detach().float())
        if not accelerator.sync_gradients:
            continue
        window.append(
            torch.stack([torch.stack(step_losses).mean(), torch.as_tensor(grad_norm, device=loss.device).float()])
        )
        step_losses.clear()
        if ema is not None:
            ema.step(flow.parameters())
        run.step += 1
        if tr.log_due(run, max_steps):
            bpd, norm = tr.gather_mean(run, window)
            tr.record(run, {"bits_per_dim": bpd, "grad_norm": norm})  # + "lr" (tr.record, from the schedule)
        if tr.end_of_step(run, max_steps, models, optimizers, state=state, check=check,
                          sample_grid=lambda: sample_grid(saved_model())):  # fmt: skip
            advice = NOT_INVERTIBLE if run.diverged else advice
            break
    if run.diverged:
        return tr.stop_diverged(run, advice)

    # 3. The model folder: pipeline, samples at T = 1 and 0.7, curves, training record, evaluation and card
    final = saved_model().eval()
    pipe = FlowPipeline(flow=final)
    request = FlowEvalRequest(num_images=args.eval_num_images, num_samples=args.eval_num_samples)
    panels = [("bits/dim", {"bits_per_dim": "bits/dim (train batches)"}, "linear"),
              ("gradient norm", {"grad_norm": "gradient norm (before clipping)"}, "log")]  # fmt: skip
    skip_eval = args.no_eval or (request.num_images == 0 and request.num_samples == 0)
    evaluation = None if skip_eval else lambda: evaluate(run.out, request, pipeline=pipe)
    return tr.finish_run(run, pipe, sample_grid(final), panels, _record(args, run, final), evaluation,
                         pictures={"samples_t0.7.png": sample_grid(final, temperature=0.7)})  # fmt: skip
