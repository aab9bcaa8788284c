"""Fit a mixture of Bernoullis (binarized pixels) or of diagonal Gaussians (dequantized pixels) by EM.

    hubgen train mixture --dataset digits --num_components 20 --output_dir models/mixture-digits
    hubgen train mixture --dataset ../shared/data/mnist.npz --num_components 500 --num_epochs 100 --output_dir m500

How EM uses the shared bookkeeping (hubgen.training): one training step is one EM iteration over the whole
training set (E-step over every image, then the closed-form M-step; hubgen.mixture.em), so `--num_epochs` and
`--max_train_steps` both count EM iterations and `--train_batch_size` is the E-step's chunk (memory only: the
update is the same for any chunk). There is no optimizer (`restore` and `end_of_step` get none) and no DataLoader:
the training images are drawn once from `--seed` (a fixed binarization, or a fixed dequantization, of the training
split: EM's monotone objective needs one fixed data set) and held in memory. The model is the state: a checkpoint
holds its parameters, and a resumed run recomputes the same data draw, so it continues exactly where the straight
run would be. `--tolerance` stops when an iteration raised J / N by less than that many nats (the stop is
checkpointed, so a resumed converged run does not take one more step). `--fit gradient` maximizes the same
objective by full-batch Adam instead (for comparison, in one process; then `--learning_rate` and the optimizer,
checkpointed with the model, are used). With several processes (`accelerate launch`), EM gives each a shard of the
images for the E-step and sums the statistics across processes before the M-step: the same update.
"""

import argparse
import math
import os

import torch

from .. import data as hdata
from .. import training as tr
from ..errors import UserInputError
from .em import INIT_METHODS, em_step, gradient_ascent_step, initialize

PIPELINE_CLASS = "MixturePipeline"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train mixture",
                                description="Fit a mixture of Bernoullis or of diagonal Gaussians by EM.")  # fmt: skip
    data, model, opt, out = tr.add_common_arguments(
        p,
        batch_size=4096,
        learning_rate=0.05,
        num_epochs=100,
        accumulation=False,
        num_images="all",
        num_samples=1000,
        sample_steps=10,
        speed=False,
        mixed_precision=False,
    )  # fmt: skip  (EM: no network to autocast)
    data.add_argument("--distribution", choices=("bernoulli", "gaussian"), default="bernoulli",
                      help="bernoulli: binarized pixels (one Bernoulli(intensity) draw per value, fixed by --seed); "
                      "gaussian: dequantized pixels x = (k + u) / L (one draw of u, fixed by --seed)")  # fmt: skip
    model.add_argument("--num_components", type=int, default=10, help="K")
    model.add_argument("--init", choices=INIT_METHODS, default="kmeans++",
                       help="kmeans++: hard assignment to K k-means++ seeds, then an M-step; random: Dirichlet "
                       "responsibilities, then an M-step")  # fmt: skip
    model.add_argument(
        "--bernoulli_pseudo_count",
        type=float,
        default=1.0,
        help="alpha of the Beta(1 + alpha, 1 + alpha) prior on Bernoulli means (0: maximum likelihood)",
    )
    model.add_argument("--mean_clamp", type=float, default=1e-6, help="Bernoulli means are kept in [eps, 1 - eps]")
    model.add_argument("--min_variance", type=float, default=1e-3, help="floor of every Gaussian variance")
    opt.add_argument(
        "--fit",
        choices=("em", "gradient"),
        default="em",
        help="em: closed-form EM iterations; gradient: full-batch Adam on the same objective",
    )
    opt.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="stop when an iteration raises the objective by less than this (nats/image; 0: never)",
    )
    # one step is a pass over the whole training set: log every iteration, checkpoint every 10
    p.set_defaults(logging_steps=1, checkpointing_steps=10)
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    if args.num_components < 1:
        p.error(f"--num_components must be >= 1, got {args.num_components}")
    if not args.bernoulli_pseudo_count >= 0 or not math.isfinite(args.bernoulli_pseudo_count):
        p.error(f"--bernoulli_pseudo_count must be >= 0, got {args.bernoulli_pseudo_count}")
    if not 0 < args.mean_clamp < 0.5:
        p.error(f"--mean_clamp must be in (0, 0.5), got {args.mean_clamp}")
    if not (args.min_variance > 0 and math.isfinite(args.min_variance)):
        p.error(f"--min_variance must be > 0, got {args.min_variance}")
    if args.fit == "em" and args.lr_scheduler != "constant":
        p.error(f"--lr_scheduler {args.lr_scheduler} schedules the learning rate of --fit gradient; EM (--fit em) "
                "has none")  # fmt: skip
    if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
        p.error(f"--tolerance must be >= 0, got {args.tolerance}")
    return args


def model_config(args, image_shape: tuple[int, int, int], levels: int) -> dict:
    c, h, w = image_shape
    return {"num_components": args.num_components, "in_channels": c, "height": h, "width": w,
            "distribution": args.distribution, "pixel_levels": 2 if args.distribution == "bernoulli" else levels,
            "bernoulli_pseudo_count": args.bernoulli_pseudo_count, "mean_clamp": args.mean_clamp,
            "min_variance": args.min_variance}  # fmt: skip


def training_values(train_set, config: dict, seed: int) -> torch.Tensor:
    """The whole training split as the model's values (N, D), drawn once from `seed`: a binarization x ~
    Bernoulli(intensity) or a dequantization x = (k + u) / L. The same seed gives the same values (resume)."""
    intensities = train_set.take(range(len(train_set))).float() / 255  # (N, C, H, W)
    g = torch.Generator().manual_seed(seed)
    if config["distribution"] == "bernoulli":
        x = hdata.binarize(intensities, g)
    else:
        x = hdata.dequantize(intensities, config["pixel_levels"], g)
    return x.reshape(x.shape[0], -1)


def sample_grid(pipe, num_images: int = 16, seed: int = 0):
    from ..pipeline_utils import card_grid

    images = pipe(num_images, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return card_grid(images, nrow=int(math.sqrt(num_images)))


def components_grid(pipe, limit: int = 100):
    """The component means, heaviest first (at most `limit`), for the card; and every weight, in that order."""
    from ..pipeline_utils import card_grid

    means, weights = pipe.component_means()
    shown = means[:limit]
    return card_grid(shown, nrow=min(10, math.ceil(math.sqrt(len(shown))))), weights


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .evaluation import MixtureEvalRequest, evaluate
    from .modeling_mixture import MixtureModel
    from .pipeline_mixture import MixturePipeline

    if args.fit == "gradient" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserInputError("--fit gradient runs in one process (it is the comparison, not the fit to scale); "
                             "EM (--fit em) shards the E-step over processes.")  # fmt: skip
    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    config = model_config(args, train_set.image_shape, train_set.levels)
    if args.num_components > len(train_set):
        raise UserInputError(f"--num_components {args.num_components} is more than the {len(train_set)} training "
                             "images.")  # fmt: skip
    run = tr.start_run(args, "mixture", resume, train_set)
    accelerator = run.accelerator

    # 1. The model, the fixed training values (this process's shard for the E-step), the seeded initialization
    model = MixtureModel(**config)
    x_all = training_values(train_set, config, args.seed)  # (N, D)
    model.to(accelerator.device)
    x = x_all[accelerator.process_index :: accelerator.num_processes].to(accelerator.device)
    optimizers = {}
    if args.fit == "gradient":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
        optimizers = {"mixture": optimizer}
    max_steps = args.max_train_steps or args.num_epochs
    models = {"mixture": model}
    saved = tr.restore(run, models, optimizers, {"mixture": tr.config_dict(model)},
                       max_steps)  # fmt: skip
    if resume is None and not args.pretrained_model_name_or_path:
        # seeded starting point (inside the training clock: k-means++ is part of the fit); a fine-tune starts EM
        # from the pretrained parameters instead (loaded by tr.restore)
        initialize(model, x_all.to(accelerator.device), args.init,
                   torch.Generator().manual_seed(args.seed + 1), args.train_batch_size)  # fmt: skip
    converged = bool((saved or {}).get("converged"))
    previous = (saved or {}).get("objective")
    num_dims = x.shape[1]

    def reduce(flat: torch.Tensor) -> torch.Tensor:  # the E-step's statistics summed over processes
        return accelerator.reduce(flat, "sum") if accelerator.num_processes > 1 else flat

    # 2. The loop: one EM iteration (or one full-batch gradient step) per training step
    while run.step < max_steps and not converged:
        if args.fit == "em":
            it = em_step(model, x, reduce, args.train_batch_size)
        else:
            it = gradient_ascent_step(model, x, optimizer)
        value, log_likelihood = it.objective, it.log_likelihood
        if tr.nonfinite(run, torch.tensor(value, device=accelerator.device)):
            break
        run.batches_seen += 1
        run.images_seen += len(x_all)
        run.step += 1
        converged = args.tolerance > 0 and previous is not None and value - previous < args.tolerance
        previous = value
        if tr.log_due(run, max_steps) or converged:
            tr.record(run, {"objective": value, "log_likelihood": log_likelihood,
                            "bits_per_dim": -log_likelihood / (num_dims * math.log(2))})  # fmt: skip
        if converged:
            accelerator.print(f"\nConverged at step {run.step}: J / N rose by less than --tolerance {args.tolerance}.")
        state = {"converged": converged, "objective": previous}
        grid_now = lambda: sample_grid(MixturePipeline(model=model))  # noqa: E731
        stop_at = run.step if converged else max_steps  # a converged run stops (and checkpoints) now
        if tr.end_of_step(run, stop_at, models, optimizers, state=lambda saved=state: saved, sample_grid=grid_now):
            break
    if run.diverged:
        return tr.stop_diverged(run, "Raise --min_variance or --bernoulli_pseudo_count.")

    # 3. The model folder: pipeline, samples, component means, curves, training record, evaluation and card
    pipe = MixturePipeline(model=model.eval())
    pipe.set_progress_bar_config(disable=True)
    request = MixtureEvalRequest(split="test", num_images=args.eval_num_images, num_samples=args.eval_num_samples)
    grid, weights = components_grid(pipe)
    panels = [("nats / image", {"objective": "J / N (log-likelihood + log prior)",
                                "log_likelihood": "log-likelihood / N"}, "linear"),
              ("bits / dim", {"bits_per_dim": "-log p / (D ln 2), train"}, "linear")]  # fmt: skip
    record = {
        "pixel_mode": "binary (a fixed binarization of the training set, drawn from --seed)"
        if args.distribution == "bernoulli" else f"continuous ({config['pixel_levels']} levels, dequantized once)",
        "distribution": args.distribution, "fit": args.fit, "init": args.init, "converged": converged,
        "tolerance": args.tolerance,
        "final_objective": previous,  # J / N at the last iteration's E-step
        "component_weights": [round(float(w), 6) for w in weights],
    }  # fmt: skip
    evaluation = lambda: evaluate(run.out, request, pipeline=pipe)  # noqa: E731
    return tr.finish_run(run, pipe, sample_grid(pipe), panels, record,
                         None if request.skips_everything() else evaluation,
                         pictures={"components.png": grid})  # fmt: skip
