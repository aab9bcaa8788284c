"""Train a PixelCNN by maximum likelihood: minimize -log p(x) = -sum_i log p(x_i | x_<i), exact, one pass per batch.

    hubgen train pixelcnn --dataset digits --output_dir models/pixelcnn-digits --max_train_time 120
    hubgen train pixelcnn --dataset ../shared/data/mnist.npz --pixel_mode binary --output_dir models/pixelcnn-mnist

`--pixel_mode binary` (default): dynamic binarization, a fresh Bernoulli(intensity) draw per use, as the VAE's
protocol; `--pixel_mode discrete`: the data's own L levels (256 for 8-bit images, 17 for sklearn's digits) with an
L-way categorical per value. The data, checkpoints, exact resume, time budget, card and evaluation are
hubgen.training's.
"""

import argparse
import math

import torch

from .. import data as hdata
from .. import training as tr
from ..errors import UserInputError

PIPELINE_CLASS = "PixelCNNPipeline"
# (hidden channels, layers) when not given: the best measured on MNIST for each architecture (BENCHMARKS "PixelCNN
# on MNIST"); multiscale's layers are per resolution and pass, so 1 already makes 12 gated residual layers
SIZES = {"multiscale": (32, 1), "gated": (64, 7), "pixelcnn": (64, 7)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train pixelcnn",
                                description="Train an autoregressive PixelCNN (exact likelihood).")  # fmt: skip
    data, model, opt, out = tr.add_common_arguments(p, batch_size=64, learning_rate=3e-3, num_epochs=100,
                                                    num_samples=100)  # fmt: skip
    data.add_argument("--pixel_mode", choices=("binary", "discrete"), default="binary",
                      help="binary: dynamic binarization, a Bernoulli per value; discrete: the data's L levels, an "
                      "L-way categorical per value (R -> G -> B within a pixel)")  # fmt: skip
    model.add_argument("--architecture", choices=("multiscale", "gated", "pixelcnn"), default="multiscale",
                       help="multiscale (default): PixelCNN++'s shifted streams over 1, 1/2 and 1/4 resolution, "
                       "every value above and to the left in view (arXiv:1701.05517); gated: vertical and "
                       "horizontal stacks with gated activations, no blind spot (arXiv:1606.05328); pixelcnn: "
                       "masked 7x7 then residual 3x3 blocks (arXiv:1601.06759)")  # fmt: skip
    model.add_argument("--hidden_channels", type=int, default=None, help="default: 32 (multiscale), 64 (others)")
    model.add_argument("--num_layers", type=int, default=None,
                       help="multiscale: gated residual layers per resolution and pass (default 1); gated: gated "
                       "layers (default 7); pixelcnn: residual blocks (default 7)")  # fmt: skip
    model.add_argument("--kernel_size", type=int, default=3, help="the gated stacks' kernel (odd)")
    opt.add_argument("--max_grad_norm", type=float, default=1.0)
    opt.add_argument("--expected_targets", action="store_true",
                     help="binary mode: score each pixel against its intensity p (the loss averaged over the "
                     "pixel's own Bernoulli draw, in closed form) instead of one draw; the inputs stay one "
                     "binarization. Same expected objective, less gradient noise")  # fmt: skip
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    for name, default in zip(("hidden_channels", "num_layers"), SIZES[args.architecture], strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.kernel_size < 3 or args.kernel_size % 2 == 0:
        p.error(f"--kernel_size must be odd and >= 3, got {args.kernel_size}")
    if not args.max_grad_norm > 0:
        p.error(f"--max_grad_norm must be > 0, got {args.max_grad_norm}")
    if args.expected_targets and args.pixel_mode != "binary":
        p.error(f"--expected_targets needs --pixel_mode binary, got {args.pixel_mode}")
    return args


def model_config(args, image_shape: tuple[int, int, int], levels: int) -> dict:
    c, h, w = image_shape
    if h != w:
        raise UserInputError(f"PixelCNN takes square images, got {h}x{w}; pass --resolution N.")
    return {"sample_size": h, "in_channels": c, "pixel_levels": 2 if args.pixel_mode == "binary" else levels,
            "architecture": args.architecture, "hidden_channels": args.hidden_channels,
            "num_layers": args.num_layers, "kernel_size": args.kernel_size}  # fmt: skip


def to_levels(intensities: torch.Tensor, pixel_levels: int) -> torch.Tensor:
    """A batch of intensities in [0, 1] as the model's integer values: a fresh binarization, or level round(p (L-1))."""
    if pixel_levels == 2:
        return hdata.binarize(intensities).long()
    return torch.round(intensities * (pixel_levels - 1)).long()


def sample_grid(pipe, num_images: int = 16, seed: int = 0):
    from ..pipeline_utils import card_grid

    images = pipe(num_images, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return card_grid(images, nrow=int(math.sqrt(num_images)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .evaluation import PixelCNNEvalRequest, evaluate
    from .modeling_pixelcnn import PixelCNNModel, to_input, value_log_probs
    from .pipeline_pixelcnn import PixelCNNPipeline

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    config = model_config(args, train_set.image_shape, train_set.levels)
    accumulation = args.gradient_accumulation_steps
    run = tr.start_run(args, "pixelcnn", resume, train_set, gradient_accumulation_steps=accumulation)
    accelerator = run.accelerator

    # 1. Model, optimizer, data
    model = PixelCNNModel(**config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    model, optimizer, loader = tr.prepare(run, model, optimizer, tr.make_loader(run))
    max_steps = args.max_train_steps or args.num_epochs * math.ceil(len(loader) / args.gradient_accumulation_steps)
    models, optimizers = {"pixelcnn": model}, {"pixelcnn": optimizer}
    tr.restore(run, models, optimizers, {"pixelcnn": tr.config_dict(accelerator.unwrap_model(model))}, max_steps)

    # 2. The loop: -log p(x) in nats per image, exact
    window = []
    num_dims = math.prod(train_set.image_shape)
    model.train()
    for intensities, _ in tr.training_batches(run, loader, max_steps):
        with accelerator.accumulate(model):
            levels = to_levels(intensities, config["pixel_levels"])
            # through the model's forward, so that a DistributedDataParallel wrapper sees the pass
            logits = model(to_input(levels, config["pixel_levels"]))
            # -log p(x), nats per image. With --expected_targets, pixel i's term is averaged over its own draw b_i ~
            # Bernoulli(p_i): E[-log p(b_i | b_<i)] = BCE(logit_i, p_i). b_i is independent of the context b_<i
            # given the intensities, so the sum over pixels has the same expectation as the sampled -log p(b)
            # (the objective of dynamic binarization) with less variance (Rao-Blackwellization of the targets).
            targets = intensities if args.expected_targets else levels
            nll = -value_log_probs(logits, targets).sum((1, 2, 3))
            loss = nll.mean()
            if tr.nonfinite(run, loss):
                break
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                tr.clip_grad_norm(run, model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            window.append(loss.detach().reshape(1))
        run.images_seen += levels.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        run.step += 1
        if tr.log_due(run, max_steps):
            (mean_nll,) = tr.gather_mean(run, window)
            tr.record(run, {"nll": mean_nll, "bits_per_dim": mean_nll / (num_dims * math.log(2))})
        if tr.end_of_step(run, max_steps, models, optimizers):
            break
    if run.diverged:
        return tr.stop_diverged(run, "Lower --learning_rate or --max_grad_norm.")

    # 3. The model folder: pipeline, samples, curves, training record, evaluation and card
    pipe = PixelCNNPipeline(model=accelerator.unwrap_model(model).eval())
    pipe.set_progress_bar_config(disable=True)
    request = PixelCNNEvalRequest(split="test", num_images=args.eval_num_images, num_samples=args.eval_num_samples)
    panels = [("nats / image", {"nll": "-log p(x) (train batch)"}, "linear"),
              ("bits / dim", {"bits_per_dim": "bits/dim (train batch)"}, "linear")]  # fmt: skip
    record = {"pixel_mode": "binary (dynamic binarization)" if args.pixel_mode == "binary"
              else f"discrete ({config['pixel_levels']} levels)", "architecture": args.architecture,
              "expected_targets": args.expected_targets,
              "final_train_nll": run.history[-1]["nll"] if run.history else None}  # fmt: skip
    evaluation = lambda: evaluate(run.out, request, pipeline=pipe)  # noqa: E731
    return tr.finish_run(run, pipe, sample_grid(pipe), panels, record,
                         None if request.skips_everything() else evaluation)  # fmt: skip
