"""Benchmark: a PixelCNN on MNIST under a fixed CPU budget, and its sampler's speed (figures go to BENCHMARKS.md).

    python bench/pixelcnn_mnist.py --data ../shared/data/mnist.npz --minutes 30        # binarized MNIST
    python bench/pixelcnn_mnist.py --data ../shared/data/mnist.npz --minutes 20 --pixel_mode discrete \
        --out bench/out/pixelcnn-mnist256                                                   # 256 levels
    python bench/pixelcnn_mnist.py --speed_only bench/out/pixelcnn-mnist --num_samples 4

Trains through the real CLI (`hubgen train pixelcnn`) on the 50k training images of the npz, stops after the budget,
then reports on the test split (the first `--num_images`, 0: all 10,000): the exact NLL in nats and bits/dim, each
image dynamically binarized once from seed 0 (the VAE benchmark's protocol) or scored at its 256 levels; and the
sampler's images/s, fast (the network on the rows an output can see) against naive (the whole image per value) on
the same weights and generator, with the check that both draw the same images. The result JSON is written beside the
model folder.
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
from hubgen.pixelcnn.evaluation import PixelCNNEvalRequest, evaluate
from hubgen.pixelcnn.modeling_pixelcnn import sample_levels
from hubgen.pixelcnn.pipeline_pixelcnn import PixelCNNPipeline


def _machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}"


def sampler_speed(folder: Path, num_samples: int, seed: int = 0) -> dict:
    """Images/s of the fast and the naive sampler on the same weights and generator; equal images asserted."""
    pipe = PixelCNNPipeline.from_pretrained(folder)
    timings, drawn = {}, {}
    for fast in (True, False):
        t0 = time.perf_counter()
        drawn[fast] = sample_levels(pipe.model, num_samples, torch.Generator().manual_seed(seed), fast=fast)
        timings[fast] = time.perf_counter() - t0
    return {"num_samples": num_samples, "fast_images_per_second": num_samples / timings[True],
            "naive_images_per_second": num_samples / timings[False], "speedup": timings[False] / timings[True],
            "same_images": bool(torch.equal(drawn[True], drawn[False])),
            "receptive_rows": pipe.model.receptive_rows}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mnist.npz", help="mnist.npz with x_train/x_test uint8 arrays")
    p.add_argument("--out", default="bench/out/pixelcnn-mnist")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--pixel_mode", choices=("binary", "discrete"), default="binary")
    p.add_argument("--hidden_channels", type=int, default=32)
    p.add_argument("--num_layers", type=int, default=1)
    p.add_argument("--architecture", choices=("multiscale", "gated", "pixelcnn"), default="multiscale")
    p.add_argument("--learning_rate", type=float, default=3e-3)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--expected_targets", action="store_true", help="each pixel scored against its intensity (binary)")
    add_train_arguments(p)
    p.add_argument("--num_images", type=int, default=0, help="first N test images (0: all 10,000)")
    p.add_argument("--num_samples", type=int, default=4, help="images drawn by each sampler for the speed figure")
    p.add_argument("--speed_only", default=None, help="time the samplers of an existing model folder")
    args = p.parse_args()

    out = Path(args.speed_only or args.out)
    if args.speed_only:
        print(json.dumps(sampler_speed(out, args.num_samples, args.seed), indent=2))
        return 0
    code = hubgen(["train", "pixelcnn", "--dataset", args.data, "--output_dir", str(out), "--overwrite_output_dir",
                   "--pixel_mode", args.pixel_mode, "--hidden_channels", str(args.hidden_channels), "--num_layers",
                   str(args.num_layers), "--architecture", args.architecture, "--learning_rate",
                   str(args.learning_rate), "--train_batch_size", str(args.batch_size), "--num_epochs", "100000",
                   "--max_train_time", str(args.minutes * 60),
                   "--seed", str(args.seed), "--checkpointing_steps", "5000", "--checkpoints_total_limit", "1",
                   "--sample_steps", "100000", "--logging_steps", "100", "--eval_num_images", "0",
                   "--eval_num_samples", "0", *train_argv(args),
                   *(["--expected_targets"] if args.expected_targets else [])])  # fmt: skip
    if code != 0:
        return code
    info = json.loads((out / "hubgen_training.json").read_text())
    t0 = time.perf_counter()
    request = PixelCNNEvalRequest(dataset=args.data, split="test", num_images=args.num_images or None, seed=0,
                                  num_samples=0)  # fmt: skip
    results = write_evaluation(out, evaluate(out, request))
    eval_seconds = time.perf_counter() - t0
    record = {"date": date.today().isoformat(), "machine": _machine(),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "train_seconds": info["train_seconds"],
              "train_cpu_seconds": info.get("train_cpu_seconds"), "steps": info["steps"], "epochs": info["epochs"],
              "images_per_second": info["images_per_second"], "eval_seconds": round(eval_seconds, 1),
              "sampler": sampler_speed(out, args.num_samples, args.seed), **results}  # fmt: skip
    (out / f"bench_n{results['num_images']}.json").write_text(json.dumps(record, indent=2) + "\n")
    m = results["metrics"]
    print(json.dumps(record, indent=2))
    print(f"| {record['date']} | {args.pixel_mode} | {info['train_seconds']:.0f} s | {info['steps']} | "
          f"{m['nll_nats']['mean']:.2f} ± {m['nll_nats']['stderr']:.2f} | {m['bits_per_dim']['mean']:.4f} | "
          f"{record['sampler']['fast_images_per_second']:.3f} vs {record['sampler']['naive_images_per_second']:.3f} "
          f"images/s |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
