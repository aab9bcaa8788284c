"""Train a DCGAN with accelerate: `hubgen train gan --dataset digits --output_dir out/gan`.

The alternating loop of Goodfellow et al. (Algorithm 1), written out: each generator step follows k
discriminator steps, each on a fresh real batch and fresh z:

    D step:  minimize  softplus(-l(x)) + softplus(l(G(z)))        (= -[log D(x) + log(1 - D(G(z)))])
    G step:  minimize  softplus(-l(G(z)))                          (non-saturating; or the saturating/hinge forms)

An exponential moving average of the generator's weights (diffusers' EMAModel) is what gets sampled, saved
and evaluated. The bookkeeping around the loop (seeded accelerator, pickle-free checkpoints holding both
networks, both optimizers, the EMA generator and every RNG, so that resuming repeats a straight run exactly;
time budget, the model folder, evaluation and card) is hubgen.training's. A NaN, or a discriminator loss stuck
near zero (the generator has lost), stops the run with advice.
"""

import argparse
import contextlib
import copy
import math

import torch

from .. import data as hdata
from .. import training as tr
from ..draws import randn_tensor
from ..errors import UserInputError

__all__ = ["parse_args", "main", "sample_grid"]

PIPELINE_CLASS = "GANPipeline"
ADVICE = ("Try a lower --d_learning_rate (the discriminator's) or --learning_rate, --loss non_saturating (the "
          "saturating loss starves G early), fewer --d_steps, or keep batch norm.")  # fmt: skip


# The defaults: two recipes, one flag apart. "hubgen" is the best measured on MNIST 28x28 in 10 CPU-minutes (bench/
# gan_mnist.py; BENCHMARKS.md "GAN on MNIST"): half the paper's width with one extra stride-1 3x3 layer per hidden
# resolution (the n_extra_layers of Arjovsky et al.'s DCGAN code), batch 64 and learning rates 32x the paper's,
# the discriminator's twice the generator's (the two time-scale update rule, Heusel et al. 2017), and a weak R1
# penalty on D (gamma 0.03, every 16 D steps: FD-mnist 6.6 -> 3.9 at N = 10,000 in the tenth session's probes; gamma
# 1 flattened D and failed). "dcgan" is Radford et al. 2015's: width 64, batch 128, Adam lr 2e-4 for both, no
# penalty. Options given explicitly override either.
RECIPES = {
    "hubgen": dict(base_channels=32, extra_layers=1, train_batch_size=64, learning_rate=6.4e-3, r1_gamma=0.03),
    "dcgan": dict(base_channels=64, extra_layers=0, train_batch_size=128, learning_rate=2e-4, r1_gamma=0.0),
}
D_TO_G_LEARNING_RATE = {"hubgen": 2.0, "dcgan": 1.0}  # the default --d_learning_rate is this times --learning_rate


def _recipe(argv: list[str] | None) -> str:
    """The --recipe named on the command line (read before the parser's defaults are set; the parser itself checks
    the choice)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default="hubgen")
    return pre.parse_known_args(argv)[0].recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hubgen train gan",
        description="Train a DCGAN. A step is a generator step, after --d_steps discriminator steps; an epoch is "
        "a pass of the discriminator over the data; --learning_rate is the generator's Adam learning rate and "
        "--d_learning_rate the discriminator's. --recipe sets the defaults: hubgen's measured best or the DCGAN "
        "paper's.",
    )
    default = RECIPES["hubgen"]  # set_defaults below puts the recipe named on the command line in its place
    data, model, opt, out = tr.add_common_arguments(p, batch_size=default["train_batch_size"],
                                                    learning_rate=default["learning_rate"], num_epochs=50,
                                                    num_images=None)  # fmt: skip
    opt.add_argument("--recipe", choices=tuple(RECIPES), default="hubgen",
                     help="the defaults of the width, extra layers, batch, both learning rates and the R1 penalty: "
                     "hubgen (the best measured on MNIST in 10 CPU-minutes: width 32, 1 extra layer, batch 64, lr "
                     "6.4e-3 for G and twice that for D, R1 gamma 0.03) or dcgan (the DCGAN paper's: width 64, no "
                     "extra layer, batch 128, lr 2e-4 for both, no penalty); options given explicitly override "
                     "them")  # fmt: skip
    model.add_argument("--architecture", choices=("auto", "small", "dcgan"), default="auto",
                       help="dcgan: the DCGAN paper's 64x64 architecture (32, 64 or 128 px); small: two stages (any "
                       "side divisible by 4); auto: dcgan for 32, 64 and 128 px, small otherwise")  # fmt: skip
    model.add_argument("--latent_dim", type=int, default=None,
                       help="size of z (default: 100 as in the paper for dcgan, 64 for small)")  # fmt: skip
    model.add_argument("--base_channels", type=int, help="width of G's last and D's first layer")
    model.add_argument("--no_batch_norm", action="store_true", help="drop batch norm from both networks")
    model.add_argument("--extra_layers", type=int,
                       help="stride-1 3x3 conv layers at every hidden resolution of G and D (0: DCGAN)")  # fmt: skip
    model.add_argument("--spectral_norm", action="store_true",
                       help="spectral normalization of D's convolutions in place of D's batch norm (Miyato et al. "
                       "2018); G keeps its batch norm")  # fmt: skip
    opt.add_argument("--loss", choices=("non_saturating", "saturating", "hinge"), default="non_saturating")
    opt.add_argument("--r1_gamma", type=float,
                     help="R1 gradient penalty (gamma / 2) E||grad_x l(x)||^2 on real images in D's loss (Mescheder "
                     "et al. 2018; default: 0.03 in the hubgen recipe, 0 in dcgan); 0: none")  # fmt: skip
    opt.add_argument("--r1_interval", type=int, default=16,
                     help="apply the R1 penalty every this many D steps, scaled by it (lazy regularization, Karras "
                     "et al. 2020)")  # fmt: skip
    opt.add_argument("--d_steps", type=int, default=1, help="discriminator steps per generator step (k)")
    opt.add_argument("--d_learning_rate", type=float,
                     help="discriminator's lr (two time-scale update rule, Heusel et al. 2017; default: twice "
                     "--learning_rate in the hubgen recipe, equal to it in dcgan)")  # fmt: skip
    opt.add_argument("--adam_beta1", type=float, default=0.5)
    opt.add_argument("--adam_beta2", type=float, default=0.999)
    opt.add_argument("--ema_decay", type=float, default=0.999)
    opt.add_argument("--ema_bn_batches", type=int, default=200,
                     help="the EMA generator's batch-norm statistics, recomputed at the end from this many batches "
                     "of z (its own activations' mean and variance); 0 copies the live generator's")  # fmt: skip
    out.add_argument("--divergence_steps", type=int, default=500,
                     help="stop when D's loss stays below 1e-3 for this many generator steps")  # fmt: skip
    p.set_defaults(**RECIPES.get(_recipe(argv), RECIPES["hubgen"]))  # an unknown name: the parser refuses it
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    for name in ("latent_dim", "base_channels", "d_steps", "divergence_steps", "r1_interval"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.d_learning_rate is None:
        args.d_learning_rate = D_TO_G_LEARNING_RATE[args.recipe] * args.learning_rate
    if not (args.d_learning_rate > 0 and math.isfinite(args.d_learning_rate)):
        p.error(f"--d_learning_rate must be a positive number, got {args.d_learning_rate}")
    if args.extra_layers < 0:
        p.error(f"--extra_layers must be >= 0, got {args.extra_layers}")
    if not (args.r1_gamma >= 0 and math.isfinite(args.r1_gamma)):
        p.error(f"--r1_gamma must be a number >= 0, got {args.r1_gamma}")
    if args.ema_bn_batches < 0:
        p.error(f"--ema_bn_batches must be >= 0, got {args.ema_bn_batches}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    return args


def sample_grid(pipe, num_images: int = 64, seed: int = 0):
    """G(z) of the pipeline's generator for `num_images` draws z ~ N(0, I) from `seed`, as one grid."""
    from ..pipeline_utils import card_grid

    images = pipe(num_images, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return card_grid(images, nrow=int(math.sqrt(num_images)))


def _architecture(args, image_shape) -> str:
    """The architecture for the data's (square) images: --architecture, or by size; sets the default
    --latent_dim (100 for "dcgan", the paper's; 64 for "small"). UserInputError naming the allowed sides."""
    from .modeling_gan import allowed_sizes, architecture_for, check_size

    _, h, w = image_shape
    if h != w:
        raise UserInputError(f"The DCGAN needs square images of side {allowed_sizes()}; {args.dataset!r} has {h}x{w} "
                             "(--resolution resizes them).")  # fmt: skip
    try:
        arch = architecture_for(h) if args.architecture == "auto" else args.architecture
        check_size(h, arch)
    except UserInputError as e:
        raise UserInputError(f"{e} Dataset {args.dataset!r} has {h}x{w} images (--resolution resizes them; "
                             f"--architecture {args.architecture}).") from None  # fmt: skip
    if args.latent_dim is None:
        args.latent_dim = 100 if arch == "dcgan" else 64
    return arch


def _syncing(accelerator, model, last: bool):
    """Gradient accumulation by hand (the GAN's two networks and optimizers alternate, so accelerate's single
    `accumulate` counter does not fit): a DDP model all-reduces its gradients only on the last batch of a step."""
    return contextlib.nullcontext() if last else accelerator.no_sync(model)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers.training_utils import EMAModel

    from . import losses as gan_losses
    from .evaluation import GANEvalRequest, evaluate
    from .modeling_gan import Discriminator, Generator, init_dcgan_weights
    from .pipeline_gan import GANPipeline

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    c, h, _ = train_set.image_shape
    arch = _architecture(args, train_set.image_shape)  # checked before start_run writes anything
    d_loss_fn, g_loss_fn = gan_losses.losses_for(args.loss)
    run = tr.start_run(args, "gan", resume, train_set)
    accelerator = run.accelerator

    # 1. Networks, optimizers (both prepared), the EMA copy of G, data
    gen = Generator(args.latent_dim, h, c, args.base_channels, not args.no_batch_norm, args.extra_layers, arch)
    disc = Discriminator(h, c, args.base_channels, not (args.no_batch_norm or args.spectral_norm), args.extra_layers,
                         arch, args.spectral_norm)  # fmt: skip
    gen.apply(init_dcgan_weights)
    disc.apply(init_dcgan_weights)
    gen_ema = copy.deepcopy(gen).requires_grad_(False)  # what is sampled, saved and evaluated
    betas = (args.adam_beta1, args.adam_beta2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.learning_rate, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.d_learning_rate, betas=betas)
    gen, disc, opt_g, opt_d, loader = tr.prepare(run, gen, disc, opt_g, opt_d, tr.make_loader(run))
    gen_ema.to(accelerator.device)
    accumulation = args.gradient_accumulation_steps
    max_steps = args.max_train_steps or max(1, args.num_epochs * len(loader) // (args.d_steps * accumulation))
    models = {"generator": gen, "discriminator": disc, "generator_ema": gen_ema}
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    saved = tr.restore(run, models, optimizers, {"generator": tr.config_dict(accelerator.unwrap_model(gen))}, max_steps)
    ema = EMAModel(gen_ema.parameters(), decay=args.ema_decay)  # after restore: it averages on from the saved EMA
    ema.optimization_step = (saved or {}).get("ema_optimization_step", 0)
    pipe = GANPipeline(generator=gen_ema)  # gen_ema only ever samples: eval mode throughout

    # 2. The loop (Algorithm 1): k discriminator steps on fresh real batches, one generator step, the EMA step
    reals = (hdata.to_signed_range(x) for x, _ in tr.training_batches(run, loader, max_steps))  # G's Tanh range
    window, low_d_steps = [], 0
    ema_state = lambda: {"ema_optimization_step": ema.optimization_step}  # noqa: E731

    def copy_ema():
        """Before a progress grid or a checkpoint: the averaged weights, with the live generator's batch-norm
        statistics (gen_ema's own are never updated in the loop: they would be those of its initialization)."""
        ema.copy_to(gen_ema.parameters())
        live_buffers = dict(accelerator.unwrap_model(gen).named_buffers())
        for name, buf in gen_ema.named_buffers():
            buf.copy_(live_buffers[name])

    gen.train()
    disc.train()
    while run.step < max_steps:
        for k in range(args.d_steps):  # ascend V(D, G): D(x) -> 1 on real x, D(G(z)) -> 0 on fakes
            opt_d.zero_grad(set_to_none=True)
            # every --r1_interval-th D step of the run, counted from the step so that a resumed run keeps the beat
            r1_due = args.r1_gamma > 0 and (run.step * args.d_steps + k) % args.r1_interval == 0
            # the step's gradient: the mean over --gradient_accumulation_steps batches
            for micro in range(accumulation):
                x = next(reals)
                run.images_seen += x.shape[0] * accelerator.num_processes
                with torch.no_grad():
                    fake = gen(torch.randn((x.shape[0], args.latent_dim), device=x.device))
                with _syncing(accelerator, disc, micro == accumulation - 1):
                    real_logits, fake_logits = disc(x.requires_grad_(r1_due)), disc(fake)
                    d_loss = d_loss_fn(real_logits, fake_logits)  # -[log D(x) + log(1 - D(G(z)))] (minimax forms)
                    penalty = 0.0
                    if r1_due:  # lazy R1: gamma / 2 E||grad_x l(x)||^2, scaled by the interval
                        penalty = 0.5 * args.r1_gamma * args.r1_interval * gan_losses.r1_penalty(real_logits, x)
                    accelerator.backward((d_loss + penalty) / accumulation)
            opt_d.step()
        # one generator step on fresh z: non-saturating -log D(G(z)), or log(1 - D(G(z))), or hinge -l(G(z)).
        # D's weights would get a gradient here that nobody uses (the next D step starts from zero), so D runs
        # frozen and unwrapped: backward skips D's weight-gradient convolutions (and, with several processes,
        # their all-reduce) and only carries dL/dx back to G. Same update, fewer multiply-adds.
        opt_g.zero_grad(set_to_none=True)
        d_frozen = accelerator.unwrap_model(disc).requires_grad_(False)
        for micro in range(accumulation):
            with _syncing(accelerator, gen, micro == accumulation - 1):
                g_loss = g_loss_fn(d_frozen(gen(torch.randn((x.shape[0], args.latent_dim), device=x.device))))
                if tr.nonfinite(run, d_loss, g_loss):
                    break
                accelerator.backward(g_loss / accumulation)
        d_frozen.requires_grad_(True)
        if run.diverged:
            break
        opt_g.step()
        ema.step(accelerator.unwrap_model(gen).parameters())
        run.step += 1
        d_wins = accelerator.gather((d_loss.detach().float() < 1e-3).float().reshape(1)).any()  # on any process
        low_d_steps = low_d_steps + 1 if d_wins else 0
        if low_d_steps >= args.divergence_steps:
            run.diverged = (f"the discriminator loss stayed below 1e-3 for {low_d_steps} generator steps (D wins "
                            "every time; G gets no useful gradient)")  # fmt: skip
            break
        d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
        window.append(torch.stack([v.detach().float() for v in (d_loss, g_loss, d_real, d_fake)]))
        if tr.log_due(run, max_steps):
            d_mean, g_mean, d_real_mean, d_fake_mean = tr.gather_mean(run, window)
            tr.record(run, {"d_loss": d_mean, "g_loss": g_mean, "d_real": d_real_mean, "d_fake": d_fake_mean})
        if tr.end_of_step(run, max_steps, models, optimizers, ema_state, lambda: sample_grid(pipe), copy_ema):
            break
    if run.diverged:
        return tr.stop_diverged(run, ADVICE)

    # 3. The model folder: the EMA generator is the model. EMAModel averages parameters only, so its batch-norm
    # statistics are recomputed for the averaged weights ("standing statistics": the mean and variance of its
    # own activations over --ema_bn_batches batches of z, Izmailov et al. 2018's bn_update for averaged weights,
    # torch.optim.swa_utils.update_bn); with 0, the live generator's running statistics, which belong to other
    # weights (FD-mnist 6.88 -> 6.61 at N = 10,000 on the bench's model, BENCHMARKS "GAN on MNIST").
    copy_ema()
    if args.ema_bn_batches:
        z_rng = torch.Generator().manual_seed(args.seed)  # the same draws on every process: equal replicas
        zs = (randn_tensor((args.train_batch_size, args.latent_dim), z_rng, accelerator.device)
              for _ in range(args.ema_bn_batches))  # fmt: skip
        torch.optim.swa_utils.update_bn(zs, gen_ema)  # no_grad, train mode for the pass, eval mode restored after
    panels = [("loss", {"d_loss": "discriminator loss", "g_loss": "generator loss"}, "linear"),
              ("mean output of D", {"d_real": "mean D(x)", "d_fake": "mean D(G(z))"}, "linear")]  # fmt: skip
    seconds = run.trained_seconds
    record = {"pixel_mode": "continuous intensities scaled to [-1, 1] (no dequantization: a GAN has no likelihood)",
              "recipe": args.recipe, "loss": args.loss, "d_steps": args.d_steps,
              "d_learning_rate": args.d_learning_rate,
              "adam_betas": list(betas), "ema_decay": args.ema_decay, "ema_bn_batches": args.ema_bn_batches,
              "spectral_norm": args.spectral_norm, "r1_gamma": args.r1_gamma, "r1_interval": args.r1_interval,
              "real_images_per_second": round(run.images_seen / seconds, 1) if seconds > 0 else None,
              "final_losses": run.history[-1] if run.history else None}  # fmt: skip
    request = GANEvalRequest(split="test", num_samples=args.eval_num_samples) if args.eval_num_samples else None
    evaluation = (lambda: evaluate(run.out, request, pipeline=pipe)) if request else None
    return tr.finish_run(run, pipe, sample_grid(pipe), panels, record, evaluation)
