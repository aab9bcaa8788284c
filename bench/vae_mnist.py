"""Benchmark: a VAE on MNIST under a fixed CPU wall-clock budget (figures go to BENCHMARKS.md).

    python bench/vae_mnist.py --data ../shared/data/mnist.npz --minutes 10
    python bench/vae_mnist.py --data ../shared/data/mnist.npz --eval_only bench/out/vae-mnist --k 5000 --num_images 0
    python bench/vae_mnist.py --data ../shared/data/mnist.npz --minutes 10 --objective iwae --train_k 5 \
        --out bench/out/vae-mnist-iwae5
    OMP_NUM_THREADS=1 python bench/vae_mnist.py --data ../shared/data/mnist.npz --threads 1 --minutes 20 \
        --latent_dims 64 32 --out bench/out/hvae-mnist --k 5000 --num_images 0

`--latent_dims 64 32` trains the hierarchical VAE p(x|z1) p(z1|z2) p(z2), q(z1|x) q(z2|z1) (same MLP image networks,
`--latent_hidden_dims` between the layers, default 100 100); `--threads 1 --minutes N` makes the budget N CPU-minutes
of the training process (the training record keeps `train_cpu_seconds`, copied into the result JSON).

Trains through the real CLI (`hubgen train vae`) on the 50k training images of the npz, stops after the
budget, then reports on the test split: training images/s, the negative ELBO and the IWAE NLL (k = 1000 on
the first 1000 test images by default) under dynamic binarization, each image binarized once from seed 0.
The result JSON is written beside the model folder.
"""

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch
from _train_options import add_train_arguments, train_argv  # bench/_train_options.py (the script's own folder)

from hubgen.cli import main as hubgen
from hubgen.model_folder import write_evaluation
from hubgen.vae.evaluation import VAEEvalRequest, evaluate


def _machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="mnist.npz with x_train/x_test uint8 arrays")
    p.add_argument("--out", default="bench/out/vae-mnist")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    add_train_arguments(p)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--num_images", type=int, default=1000, help="first N test images (0: all 10000)")
    p.add_argument("--eval_only", default=None, help="evaluate an existing model folder instead of training")
    p.add_argument(
        "--objective",
        choices=("elbo", "iwae"),
        default="elbo",
        help="iwae: train on the importance-weighted bound with --train_k samples (no KL warm-up)",
    )
    p.add_argument("--train_k", type=int, default=5, help="importance samples of --objective iwae")
    p.add_argument("--latent_dims", type=int, nargs="+", default=None,
                   help="stochastic layers, bottom first (e.g. 64 32); default one layer of 32")  # fmt: skip
    p.add_argument("--latent_hidden_dims", type=int, nargs="+", default=None,
                   help="widths of the MLPs between stochastic layers (default 100 100)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads for training and evaluation")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    latents = ["--latent_dim", "32"] if args.latent_dims is None else ["--latent_dims", *map(str, args.latent_dims)]
    if args.latent_hidden_dims is not None:
        latents += ["--latent_hidden_dims", *map(str, args.latent_hidden_dims)]

    out = Path(args.eval_only or args.out)
    if not args.eval_only:
        code = hubgen(
            [
                "train",
                "vae",
                "--dataset",
                args.data,
                "--output_dir",
                str(out),
                "--overwrite_output_dir",
                "--architecture",
                "mlp",
                "--hidden_dims",
                "512",
                "256",
                *latents,
                "--activation",
                "elu",
                "--train_batch_size",
                "128",
                "--learning_rate",
                "1e-3",
                *(
                    ["--kl_warmup_steps", "4000"]
                    if args.objective == "elbo"
                    else ["--objective", "iwae", "--k", str(args.train_k)]
                ),  # fmt: skip
                "--num_epochs",
                "100000",
                "--max_train_time",
                str(args.minutes * 60),
                "--seed",
                str(args.seed),
                "--checkpointing_steps",
                "5000",
                "--checkpoints_total_limit",
                "1",
                "--sample_steps",
                "5000",
                "--logging_steps",
                "100",
                "--eval_num_images",
                "0",
                *train_argv(args),
            ]
        )
        if code != 0:
            return code
    info = json.loads((out / "hubgen_training.json").read_text())
    config = json.loads((out / "vae" / "config.json").read_text())
    t0 = time.perf_counter()
    # --num_images 0 means the whole split here; the request's 0 would skip the likelihood (None: all)
    request = VAEEvalRequest(dataset=args.data, split="test", k=args.k, num_images=args.num_images or None, seed=0)
    results = write_evaluation(out, evaluate(out, request))  # eval_results.json and the nearest-neighbour grid
    eval_seconds = time.perf_counter() - t0
    record = {
        "date": date.today().isoformat(),
        "machine": _machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "train_seconds": info["train_seconds"],
        "train_cpu_seconds": info.get("train_cpu_seconds"),
        "torch_threads": info.get("torch_threads"),
        "latent_dims": config.get("latent_dims") or [config["latent_dim"]],  # the model's, also under --eval_only
        "steps": info["steps"],
        "epochs": info["epochs"],
        "images_per_second": info["images_per_second"],
        "eval_seconds": round(eval_seconds, 1),
        **results,
    }
    name = f"bench_k{args.k}_n{results['num_images']}.json"
    (out / name).write_text(json.dumps(record, indent=2) + "\n")
    m = results["metrics"]
    print(json.dumps(record, indent=2))
    print(
        f"| {record['date']} | {info['train_seconds']:.0f} s | {info['images_per_second']:.0f} | "
        f"{m['neg_elbo_nats']['mean']:.2f} ± {m['neg_elbo_nats']['stderr']:.2f} | "
        f"{m['iwae_nll_nats']['mean']:.2f} ± {m['iwae_nll_nats']['stderr']:.2f} "
        f"(k={args.k}, N={results['num_images']}) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
