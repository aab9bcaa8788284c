"""Benchmark: a DCGAN on MNIST under a fixed CPU wall-clock budget, non-saturating vs saturating loss.

    python bench/gan_mnist.py --data ../shared/data/mnist.npz --minutes 10

For each generator loss (non-saturating first, then the saturating minimax form, same budget, same seed),
trains through the real CLI (`hubgen train gan`) on the 50k training images (DCGAN width 32 with one extra
3x3 layer per hidden resolution, batch 64, Adam betas (0.5, 0.999) with lr 1.6e-3 for G and 3.2e-3 for D,
EMA 0.999; the options below change them), then evaluates the EMA generator
with hubgen.metrics: N samples (seed 0) against the test split in the frozen MNIST classifier's features:
FD-mnist with its train-vs-test floor at the same N, precision/recall/density/coverage (k = 5), classes
covered, memorization. Goals (issue 4): 10 classes covered, precision and recall >= 0.6, FD within 5x of the
floor. Result JSON beside each model folder; a Markdown row per run on stdout.
"""

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import torch
from _train_options import add_train_arguments, train_argv  # bench/_train_options.py (the script's own folder)

from hubgen import model_folder as mf
from hubgen.cli import main as hubgen
from hubgen.gan.evaluation import GANEvalRequest, evaluate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="bench/out")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_samples", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--losses", nargs="+", default=["non_saturating", "saturating"])
    p.add_argument("--base_channels", type=int, default=32)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--extra_layers", type=int, default=1, help="stride-1 3x3 layers per hidden resolution")
    p.add_argument("--learning_rate", type=float, default=1.6e-3, help="generator's Adam lr")
    p.add_argument("--d_learning_rate", type=float, default=3.2e-3, help="discriminator's Adam lr")
    p.add_argument("--ema_decay", type=float, default=0.999, help="decay of the generator's EMA (what is evaluated)")
    p.add_argument("--adam_betas", type=float, nargs=2, default=[0.5, 0.999], help="Adam's beta1 beta2, both nets")
    p.add_argument("--r1_gamma", type=float, default=0.0, help="R1 penalty weight (0: none), every --r1_interval")
    p.add_argument("--r1_interval", type=int, default=16, help="D steps between R1 penalties (lazy)")
    p.add_argument("--spectral_norm", action="store_true", help="spectral norm in D instead of its batch norm")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--tag", default="", help="suffix of the model folders' names")
    p.add_argument("--eval_only", action="store_true", help="evaluate the existing model folders, do not train")
    add_train_arguments(p)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for loss in args.losses:
        out = Path(args.out) / f"gan-mnist-{loss}-c{args.base_channels}-b{args.batch_size}{args.tag}"
        code = 0 if args.eval_only else hubgen([
            "train", "gan", "--dataset", args.data, "--output_dir", str(out), "--overwrite_output_dir",
            "--loss", loss, "--latent_dim", "64", "--base_channels", str(args.base_channels),
            "--train_batch_size", str(args.batch_size),
            "--extra_layers", str(args.extra_layers), "--learning_rate", str(args.learning_rate),
            "--d_learning_rate", str(args.d_learning_rate), "--ema_decay", str(args.ema_decay),
            "--adam_beta1", str(args.adam_betas[0]), "--adam_beta2", str(args.adam_betas[1]), "--num_epochs", "1000",
            "--max_train_time", str(args.minutes * 60), "--seed", str(args.seed), "--checkpointing_steps", "100000",
            "--checkpoints_total_limit", "1", "--sample_steps", "1000", "--logging_steps", "50",
            "--divergence_steps", "100000", "--eval_num_samples", "0", "--report_to", "none", *train_argv(args),
            "--r1_gamma", str(args.r1_gamma), "--r1_interval", str(args.r1_interval),
            *(["--spectral_norm"] if args.spectral_norm else []),
        ])  # fmt: skip
        if code not in (0, 1):
            return code
        info = json.loads((out / "hubgen_training.json").read_text()) if code == 0 else {}
        for n in args.num_samples:
            result = evaluate(out, GANEvalRequest(dataset=args.data, num_samples=n, seed=0))
            for name, picture in result.pictures.items():  # the nearest-neighbour grid, beside the model as before
                mf.write_image(out / name, picture)
            results = result.to_json()
            q = results["sample_quality"]
            record = {
                "date": date.today().isoformat(),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "loss": loss,
                "train": {k: info.get(k) for k in ("train_seconds", "steps", "epochs", "real_images_per_second")},
                **results,
            }
            (out / f"bench_n{n}.json").write_text(json.dumps(record, indent=2) + "\n")
            fd, prdc = q["frechet_distance"], q["prdc"]
            ratio = fd["value"] / fd["floor_train_vs_test"]
            cells = [
                f"{loss}, width {args.base_channels}, extra layers {args.extra_layers}, batch {args.batch_size}, "
                f"lr G {args.learning_rate:g} / D {args.d_learning_rate:g}, {args.lr_scheduler}"
                + (f", R1 gamma {args.r1_gamma:g} every {args.r1_interval}" if args.r1_gamma else "")
                + (", spectral norm in D" if args.spectral_norm else ""),
                f"{info.get('steps')} steps, {info.get('epochs')} epochs",
                info.get("real_images_per_second"),
                n,
                f"{fd['value']:.2f} ({ratio:.1f}x the floor {fd['floor_train_vs_test']:.2f})",
                *(f"{prdc[key]:.3f}" for key in ("precision", "recall", "density", "coverage")),
                q["modes"]["classes_covered"],
                f"{q['memorization']['fraction_closer_than_any_test']:.3f}",
            ]
            rows.append("| " + " | ".join(str(c) for c in cells) + " |")
            print(rows[-1], flush=True)
    header = ["loss", "training", "real images/s", "N", "FD-mnist", "precision", "recall", "density", "coverage"]
    print("| " + " | ".join([*header, "classes", "memorized"]) + " |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
