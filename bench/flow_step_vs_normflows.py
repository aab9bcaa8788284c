"""Benchmark: one training step of hubgen's flow against normflows' Glow of the same size, interleaved in one process.

    python bench/flow_step_vs_normflows.py --data ../shared/data/mnist.npz --rounds 12

bench/flow_mnist.py times each library's whole training loop, one after the other; on a machine whose speed drifts
between minutes, their ratio drifts with it. Here the two steps alternate in one process, `--steps` steps of each per
round, so both see the same machine within seconds, and the figure is the median of the rounds' ratios. A step is
what both loops share (flow_mnist.plain_step, the step of normflows' loop there): the log-likelihood of a batch of
dequantized MNIST images (bf16 autocast with `--mixed_precision bf16`), bits/dim, backward, gradient clipping at 100
and fused Adam; the data loading and the bookkeeping of each loop are not in it. Same architecture as
bench/flow_mnist.py (normflows_glow there).

    python bench/flow_step_vs_normflows.py --data ../shared/data/mnist.npz --rounds 24 --baseline 365b206

With `--baseline REV` the other side is hubgen's own flow at git revision REV instead of normflows' (its `hubgen`
package taken from this repository by `git archive` into a temporary folder and imported as `hubgen_baseline`):
an A/B of a change to the flow, both built from the same seed and trained on the same batches.
"""

import argparse
import atexit
import importlib
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from flow_mnist import dequantize, normflows_glow, plain_step  # bench/flow_mnist.py (the script's own folder)

from hubgen.flow.losses import log_prob
from hubgen.flow.modeling_flow import FlowModel


def baseline_flow(rev: str, folder: str):
    """hubgen's FlowModel class and log_prob at git revision `rev`, imported as the package `hubgen_baseline`."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "archive", rev, "hubgen"], cwd=repo, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    Path(folder, "hubgen").rename(Path(folder, "hubgen_baseline"))  # its own imports are relative
    sys.path.insert(0, folder)
    modeling = importlib.import_module("hubgen_baseline.flow.modeling_flow")
    return modeling.FlowModel, importlib.import_module("hubgen_baseline.flow.losses").log_prob


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="an MNIST .npz (x_train uint8), e.g. ../shared/data/mnist.npz")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--steps", type=int, default=20, help="steps of each model per round")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--hidden_channels", type=int, default=64)
    p.add_argument("--mixed_precision", choices=("no", "bf16"), default="bf16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baseline", metavar="REV", help="hubgen at this git revision in place of normflows")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.from_numpy(np.load(args.data)["x_train"][:8192]).reshape(-1, 1, 28, 28)
    b = args.batch_size

    torch.manual_seed(0)
    hub = FlowModel(sample_size=28, num_levels=2, steps_per_level=6, hidden_channels=args.hidden_channels)
    hub.initialize(images[:512].float() / 255, generator=torch.Generator().manual_seed(0))
    if args.baseline:
        folder = tempfile.mkdtemp(prefix="hubgen-baseline-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        base_class, base_log_prob = baseline_flow(args.baseline, folder)
        torch.manual_seed(0)
        base = base_class(sample_size=28, num_levels=2, steps_per_level=6, hidden_channels=args.hidden_channels)
        base.initialize(images[:512].float() / 255, generator=torch.Generator().manual_seed(0))
        other = (base, lambda x: base_log_prob(base, x))
    else:
        torch.manual_seed(0)
        nf = normflows_glow(2, 6, args.hidden_channels)
        with torch.no_grad():
            nf.log_prob(dequantize(images[:512]), None)  # normflows' ActNorm initializes from its first batch
        other = (nf, lambda x: nf.log_prob(x, None))
    other_name = f"hubgen@{args.baseline}" if args.baseline else "normflows"
    models = {"hubgen": (hub, lambda x: log_prob(hub, x)), other_name: other}
    state = {}
    for name, (model, _) in models.items():
        model.train()
        params = list(model.parameters())
        state[name] = (params, torch.optim.Adam(params, lr=1e-4, fused=True))

    def steps(name: str, first: int) -> float:
        model, log_likelihood = models[name]
        params, opt = state[name]
        start = time.perf_counter()
        for i in range(first, first + args.steps):
            k = (i * b) % (len(images) - b)
            plain_step(log_likelihood, dequantize(images[k : k + b]), params, opt, args.mixed_precision, 100.0)
        return (time.perf_counter() - start) / args.steps

    for name in models:  # warm-up: oneDNN builds its kernels on the first calls
        steps(name, 0)
    times = {name: [] for name in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))  # A B, B A, ...
        for name in order:
            times[name].append(steps(name, (r + 1) * args.steps))
    ratios = [n / h for h, n in zip(times["hubgen"], times[other_name], strict=True)]
    print(f"{args.rounds} rounds of {args.steps} steps each, batch {b}, {args.mixed_precision}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")  # fmt: skip
    for name, t in times.items():
        print(f"{name}: median {1000 * statistics.median(t):.2f} ms/step (min {1000 * min(t):.2f}, "
              f"max {1000 * max(t):.2f})")  # fmt: skip
    print(f"per-round ratios {other_name}/hubgen (step times):", " ".join(f"{q:.3f}" for q in ratios))
    print(f"step throughput ratio hubgen / {other_name}: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
