"""Benchmark: a mixture of K Bernoullis on binarized MNIST fitted by EM (figures go to BENCHMARKS.md).

    python bench/mixture_mnist.py --data ../shared/data/mnist.npz --num_components 500 --iterations 100 --seeds 0 1 2
    python bench/mixture_mnist.py --num_components 50 --iterations 10 --seeds 0        # a short check (~1-2 min)

Anchor: a mixture of 500 Bernoullis scores 137.64 nats on binarized MNIST (Larochelle & Murray 2011, the NADE paper),
on the fixed Larochelle binarization, which is not available here (../shared/data/README.md). So the
protocol, stated with every figure:

- training: the 50,000 training images of the npz, binarized ONCE by a Bernoulli(intensity) draw from the run's seed
  (a fixed binarization of our own, not Larochelle's; EM needs one fixed data set for its monotone objective); EM
  from a k-means++ start (seeded by seed + 1), one iteration = one pass over the 50,000 images, stopped after
  `--iterations` or when an iteration raises the objective by less than `--tolerance` nats per image;
- test: all 10,000 test images (or the first `--num_images`), each binarized once from evaluation seed 0 (dynamic
  binarization, the protocol of hubgen's VAE and PixelCNN figures); the exact NLL in nats, bits/dim = nats / (784 ln 2),
  and the adjusted Rand index of argmax_k p(z = k | x) against the digit labels;
- cost: the training run's CPU-seconds in the main process (all its torch threads) and its wall time.

Trains through the real CLI (`hubgen train mixture`), one model folder per seed under `--out`; the result JSON is
written beside each model folder and a summary line per seed is printed (a BENCHMARKS.md row).
"""

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

from hubgen.cli import main as hubgen
from hubgen.mixture.evaluation import MixtureEvalRequest, evaluate
from hubgen.model_folder import write_evaluation


def _machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}"


def run_seed(args, seed: int) -> dict:
    out = Path(args.out) / f"k{args.num_components}-seed{seed}"
    code = hubgen(["train", "mixture", "--dataset", args.data, "--output_dir", str(out), "--overwrite_output_dir",
                   "--distribution", "bernoulli", "--num_components", str(args.num_components),
                   "--bernoulli_pseudo_count", str(args.pseudo_count), "--num_epochs", str(args.iterations),
                   "--tolerance", str(args.tolerance), "--seed", str(seed), "--checkpointing_steps", "1000000",
                   "--checkpoints_total_limit", "1", "--sample_steps", "1000000", "--logging_steps", "1",
                   "--report_to", "none", "--eval_num_images", "0", "--eval_num_samples", "0"])  # fmt: skip
    if code != 0:
        raise SystemExit(code)
    info = json.loads((out / "hubgen_training.json").read_text())
    t0 = time.perf_counter()
    request = MixtureEvalRequest(dataset=args.data, split="test", num_images=args.num_images or None, seed=0,
                                 num_samples=0)  # fmt: skip
    results = write_evaluation(out, evaluate(out, request))
    record = {"date": date.today().isoformat(), "machine": _machine(),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "num_components": args.num_components,
              "training_seed": seed, "evaluation_seed": 0, "iterations": info["steps"], "converged": info["converged"],
              "final_train_objective": info["final_objective"], "train_seconds": info["train_seconds"],
              "train_cpu_seconds": info.get("train_cpu_seconds"), "torch_threads": info.get("torch_threads"),
              "eval_seconds": round(time.perf_counter() - t0, 1),
              "protocol": ("train: one fixed Bernoulli binarization of the 50k training images from the training seed; "
                           "test: one Bernoulli draw per test image from seed 0 (dynamic binarization); exact NLL"),
              **results}  # fmt: skip
    (out / f"bench_n{results['num_images']}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mnist.npz", help="mnist.npz with x_train/x_test uint8 arrays")
    p.add_argument("--out", default="bench/out/mixture-mnist")
    p.add_argument("--num_components", type=int, default=500, help="K (the anchor's 500)")
    p.add_argument("--iterations", type=int, default=100, help="at most this many EM iterations")
    p.add_argument("--tolerance", type=float, default=1e-3, help="stop when J / N rises by less (nats/image)")
    p.add_argument("--pseudo_count", type=float, default=1.0, help="alpha of the Beta(1 + alpha, 1 + alpha) prior")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--num_images", type=int, default=0, help="first N test images (0: all 10,000)")
    args = p.parse_args()

    records = [run_seed(args, seed) for seed in args.seeds]
    for r in records:
        m = r["metrics"]
        print(f"| {r['date']} | K={r['num_components']} | seed {r['training_seed']} | {r['iterations']} EM iterations"
              f"{' (converged)' if r['converged'] else ''} | {r['train_cpu_seconds']:.0f} CPU-s "
              f"({r['train_seconds']:.0f} s wall, {r['torch_threads']} threads) | N={r['num_images']} | "
              f"{m['nll_nats']['mean']:.2f} ± {m['nll_nats']['stderr']:.2f} nats | {m['bits_per_dim']['mean']:.4f} "
              f"bits/dim | ARI {m['adjusted_rand_index']['mean']:.3f} |")  # fmt: skip
    if len(records) > 1:
        nats = [r["metrics"]["nll_nats"]["mean"] for r in records]
        print(f"mean over {len(nats)} seeds: {statistics.mean(nats):.2f} nats (sd {statistics.stdev(nats):.2f}); "
              "anchor 137.64 nats (K=500, Larochelle binarization: not the same test data)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
