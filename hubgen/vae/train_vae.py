"""Train a VAE with accelerate: `hubgen train vae --dataset digits --output_dir out/vae`.

The loop is written out (diffusers' train_unconditional.py is the model); the bookkeeping around it (seeded
accelerator, pickle-free checkpoints that resume exactly, NaN guard, time budget, the model folder, evaluation
and card) is hubgen.training's. Distributed: `accelerate launch -m hubgen train vae ...`.

Each step maximizes the ELBO of a fresh dynamic binarization (or dequantization) of the batch, or of the
8-bit pixels themselves under the discretized-logistic decoder (--pixel_mode discrete):
    loss = -1/B sum_b [ log p(x_b|z_b) - beta_t KL(q(z|x_b) || N(0, I)) ],  z_b = mu_b + sigma_b * eps_b
with beta_t = min(1, t / kl_warmup_steps) (beta = 1 without warm-up). `--latent_dims 64 32` trains the hierarchical
VAE p(x|z1) p(z1|z2) p(z2), q(z1|x) q(z2|z1) with the same loop: the KL is then the joint one, estimated per layer
(hubgen.vae.losses), and the IWAE objective weighs the joint latents.
"""

import argparse
import math

import torch

from .. import data as hdata
from .. import training as tr
from ..errors import UserInputError

__all__ = ["parse_args", "main"]

PIPELINE_CLASS = "VAEPipeline"
# hubgen.data's pixel modes and the VAE's own "discrete": the L-level pixels scored by a discrete decoder.
PIXEL_MODES = tuple(dict.fromkeys((*hdata.PIXEL_MODES, "discrete")))
DECODERS = {"binary": "bernoulli", "continuous": "gaussian", "discrete": "discretized_logistic"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train vae", description="Train a variational autoencoder.")
    data, model, opt, out = tr.add_common_arguments(p, batch_size=128, learning_rate=1e-3, num_epochs=100)
    data.add_argument("--pixel_mode", choices=PIXEL_MODES, default="binary",
                      help="binary: dynamic binarization + Bernoulli decoder; continuous: dequantization + Gaussian "
                      "decoder; discrete: the 8-bit levels as they are + discretized logistic decoder (PixelCNN++), "
                      "bits/dim comparable with a flow's")  # fmt: skip
    model.add_argument("--architecture", choices=("mlp", "conv"), default="mlp",
                       help="conv: one stride-2 convolution per stage, as many stages as the resolution takes "
                       "(down to about 4x4); needs a side that is a multiple of 4, at least 8")  # fmt: skip
    model.add_argument("--latent_dim", type=int, default=None, help="size of z (default 20)")
    model.add_argument("--latent_dims", type=int, nargs="+", default=None,
                       help="a hierarchy of stochastic layers, bottom first (64 32: p(x|z1) p(z1|z2) p(z2) with "
                       "q(z1|x) q(z2|z1)); instead of --latent_dim")  # fmt: skip
    model.add_argument("--latent_hidden_dims", type=int, nargs="+", default=None,
                       help="widths of the MLPs between stochastic layers, q(z_l+1|z_l) and p(z_l|z_l+1) "
                       "(default 100 100, the IWAE paper's); only with --latent_dims")  # fmt: skip
    model.add_argument("--hidden_dims", type=int, nargs="+", default=None,
                       help="MLP widths (default 400); for conv the first and last stage's widths, or one per stage "
                       "(default 32 doubling per stage up to 256)")  # fmt: skip
    model.add_argument("--activation", choices=("relu", "elu", "tanh", "softplus"), default="relu")
    opt.add_argument("--adam_weight_decay", type=float, default=0.0)
    opt.add_argument("--kl_warmup_steps", type=int, default=0, help="anneal the KL weight from 0 to 1 over these steps")
    opt.add_argument("--objective", choices=("elbo", "iwae"), default="elbo",
                     help="elbo: one posterior sample per image (AEVB); iwae: the importance-weighted bound L_k with "
                     "--k samples (Burda et al. 2015), tighter and with a stronger posterior")  # fmt: skip
    opt.add_argument("--k", type=int, default=None, help="importance samples per image of --objective iwae (default 5)")
    out.add_argument("--eval_k", type=int, default=1000, help="importance samples for the IWAE bound at the end")
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    if args.latent_dims is not None and args.latent_dim is not None:
        p.error("--latent_dim and --latent_dims both give the latent size: use --latent_dims for a hierarchy only")
    if args.latent_hidden_dims is not None and (args.latent_dims is None or len(args.latent_dims) < 2):
        p.error("--latent_hidden_dims are the widths between stochastic layers: give two or more --latent_dims")
    args.latent_dim = 20 if args.latent_dim is None else args.latent_dim
    for name in ("latent_dims", "latent_hidden_dims"):
        if getattr(args, name) is not None and any(d < 1 for d in getattr(args, name)):
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    for name in ("latent_dim", "eval_k"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.kl_warmup_steps < 0:
        p.error(f"--kl_warmup_steps must be >= 0, got {args.kl_warmup_steps}")
    if args.objective == "elbo" and args.k is not None:
        p.error(f"--k {args.k} is the number of importance samples of --objective iwae; the ELBO takes one sample")
    if args.objective == "iwae":
        args.k = 5 if args.k is None else args.k
        if args.k < 1:
            p.error(f"--k must be >= 1, got {args.k}")
        if args.kl_warmup_steps:
            p.error("--kl_warmup_steps anneals the ELBO's KL term; the IWAE bound has no separate KL term to anneal")
    if args.hidden_dims is not None and any(h < 1 for h in args.hidden_dims):
        p.error(f"--hidden_dims must be positive, got {args.hidden_dims}")
    if args.architecture == "conv" and args.hidden_dims is not None and len(args.hidden_dims) < 2:
        p.error(f"--architecture conv takes two --hidden_dims (first and last stage's widths) or one per stride-2 "
                f"stage, got {args.hidden_dims}")  # fmt: skip
    return args


def model_config(args, image_shape: tuple[int, int, int], levels: int) -> dict:
    """VAEModel's arguments for these options and data; UserInputError (naming the sizes allowed) for images the
    architecture cannot take. The conv stack's depth follows the resolution (modeling_vae.conv_widths)."""
    from .modeling_vae import conv_stages, conv_widths

    c, h, w = image_shape
    if h != w:
        raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the VAE needs square images.")
    if args.architecture == "conv":
        stages = conv_stages(h)
        hidden_dims = conv_widths(h, args.hidden_dims or (32, min(256, 32 * 2 ** (stages - 1))))
    else:
        hidden_dims = tuple(args.hidden_dims or (400,))
    config = dict(sample_size=h, in_channels=c, latent_dim=args.latent_dim, architecture=args.architecture,
                  hidden_dims=hidden_dims, activation=args.activation, decoder_distribution=DECODERS[args.pixel_mode],
                  num_levels=levels)  # fmt: skip
    if args.latent_dims is not None and len(args.latent_dims) > 1:
        config.update(latent_dim=args.latent_dims[0], latent_dims=tuple(args.latent_dims))
        if args.latent_hidden_dims is not None:
            config["latent_hidden_dims"] = tuple(args.latent_hidden_dims)
    elif args.latent_dims is not None:
        config["latent_dim"] = args.latent_dims[0]
    return config


def model_input(intensities: torch.Tensor, pixel_mode: str, levels: int) -> torch.Tensor:
    """The batch as the decoder scores it: the L-level pixels themselves for "discrete", else hubgen.data's
    fresh binarization or dequantization."""
    from .losses import to_levels

    if pixel_mode == "discrete":
        return to_levels(intensities, levels)
    return hdata.to_model_input(intensities, pixel_mode, levels)


def checkpoint_config(model) -> dict:
    """The model's config as checkpoints record it; `num_levels` only for the discrete decoder that uses it, and
    the hierarchy's keys only for a hierarchy, so checkpoints written before they existed still resume."""
    config = tr.config_dict(model)
    if config["decoder_distribution"] != "discretized_logistic":
        config.pop("num_levels", None)
    if len(model.latent_sizes) == 1:
        config.pop("latent_dims", None)
        config.pop("latent_hidden_dims", None)
    return config


def sample_grid(model, num_images: int = 64, seed: int = 0):
    """Decoder means E[x|z] for `num_images` draws z ~ N(0, I) from `seed` (a hierarchy: z_L ~ N(0, I), then z_l ~
    p(z_l|z_l+1) down to z_1, from the same generator), as one grid."""
    from ..pipeline_utils import card_grid

    generator = torch.Generator().manual_seed(seed)
    z = torch.randn((num_images, model.top_latent_dim), generator=generator)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        z1 = model.ancestral_latents(z.to(model.device, model.dtype), generator=generator)
        images = model.decode_to_images(z1)
    model.train(was_training)
    return card_grid(images.float(), nrow=int(math.sqrt(num_images)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .evaluation import VAEEvalRequest, evaluate
    from .losses import elbo, iwae_objective
    from .modeling_vae import VAEModel
    from .pipeline_vae import VAEPipeline

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    config = model_config(args, train_set.image_shape, train_set.levels)
    run = tr.start_run(args, "vae", resume, train_set, gradient_accumulation_steps=args.gradient_accumulation_steps)
    accelerator = run.accelerator

    # 1. Model, optimizer, data
    model = VAEModel(**config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    model, optimizer, loader = tr.prepare(run, model, optimizer, tr.make_loader(run))
    max_steps = args.max_train_steps or args.num_epochs * math.ceil(len(loader) / args.gradient_accumulation_steps)
    models, optimizers = {"vae": model}, {"vae": optimizer}
    tr.restore(run, models, optimizers, {"vae": checkpoint_config(accelerator.unwrap_model(model))}, max_steps)

    # 2. The loop: one ELBO step per batch (accumulated over --gradient_accumulation_steps batches)
    window = []
    grid = lambda: sample_grid(accelerator.unwrap_model(model))  # noqa: E731
    model.train()
    for intensities, _ in tr.training_batches(run, loader, max_steps):
        with accelerator.accumulate(model):
            x = model_input(intensities, args.pixel_mode, train_set.levels)  # a fresh draw at every use (not discrete)
            beta = min(1.0, (run.step + 1) / args.kl_warmup_steps) if args.kl_warmup_steps else 1.0
            if args.objective == "iwae":
                terms = iwae_objective(model, x, args.k)  # per image: L_k(x), autograd gives eq. 14's gradient
                loss = -terms["iwae"].mean()
                logged = terms["iwae"].mean()[None]
            else:
                terms = elbo(model, x, beta=beta)  # per image: log p(x|z), KL(q(z|x) || p(z)), the (warm-up) ELBO
                loss = -terms["elbo"].mean()
                logged = torch.stack([terms["elbo"].mean(), terms["log_px_z"].mean(), terms["kl"].mean(),
                                      *terms["kl_layers"].mean(1)[1:]])  # fmt: skip
            if tr.nonfinite(run, loss):
                break
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            window.append(logged.detach())
        run.images_seen += x.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        run.step += 1
        if tr.log_due(run, max_steps) and args.objective == "iwae":
            (bound,) = tr.gather_mean(run, window)
            tr.record(run, {"neg_iwae": -bound, "loss": -bound})
        elif tr.log_due(run, max_steps):
            objective, log_px_z, kl, *upper_kl = tr.gather_mean(run, window)
            # loss: the warm-up objective -(log p(x|z) - beta KL); neg_elbo: the bound itself -(log p(x|z) - KL); a
            # hierarchy's KL is the joint one, and kl_z2.. are the upper layers' terms (latent_kl_terms)
            layers = {f"kl_z{i}": value for i, value in enumerate(upper_kl, start=2)}
            tr.record(run, {"neg_elbo": kl - log_px_z, "loss": -objective, "recon_nll": -log_px_z, "kl": kl,
                            "beta": beta, **layers})  # fmt: skip
        if tr.end_of_step(run, max_steps, models, optimizers, sample_grid=grid):
            break
    if run.diverged:
        return tr.stop_diverged(run, "Lower --learning_rate, use --kl_warmup_steps or --mixed_precision no.")

    # 3. The model folder: pipeline, samples, curves, training record, evaluation and card
    vae = accelerator.unwrap_model(model).eval()
    pipe = VAEPipeline(vae=vae, pixel_levels=train_set.levels)
    request = VAEEvalRequest(split="test", k=args.eval_k, num_images=args.eval_num_images,
                             num_samples=args.eval_num_samples)  # fmt: skip
    panels = [("nats / image", {"neg_elbo": "-ELBO (train batch)"}, "linear"),
              ("nats / image", {"kl": "KL(q(z|x) || p(z))", "recon_nll": "-log p(x|z)"}, "linear")]  # fmt: skip
    sizes = vae.latent_sizes
    if len(sizes) > 1:  # the joint KL and the top layers' terms (latent_kl_terms)
        layers = {f"kl_z{i}": f"layer z{i}: KL(q(z{i}|z{i - 1}) || p(z{i}))" if i == len(sizes) else f"layer z{i}"
                  for i in range(2, len(sizes) + 1)}  # fmt: skip
        panels[1] = ("nats / image", {"kl": "KL(q(z1..|x) || p(z1..)), joint", "recon_nll": "-log p(x|z1)", **layers},
                     "linear")  # fmt: skip
    if args.objective == "iwae":
        panels = [("nats / image", {"neg_iwae": f"-L_{args.k} (train batch)"}, "linear")]
    final = run.history[-1] if run.history else {}
    record = {"pixel_mode": args.pixel_mode, "decoder": config["decoder_distribution"],
              "kl_warmup_steps": args.kl_warmup_steps, "objective": args.objective, "train_k": args.k,
              "final_train_neg_elbo": final.get("neg_elbo"), "final_train_neg_iwae": final.get("neg_iwae")}  # fmt: skip
    evaluation = lambda: evaluate(run.out, request, pipeline=pipe)  # noqa: E731
    return tr.finish_run(run, pipe, sample_grid(vae), panels, record, None if request.skips_everything() else
                         evaluation)  # fmt: skip
