"""Benchmark: the multi-scale flow on MNIST under a fixed CPU wall-clock budget, against normflows' Glow.

    python bench/flow_mnist.py --data ../shared/data/mnist.npz --minutes 20 --threads 2

In one run, with torch's intra-op threads fixed (`--threads`, stated in the output):
1. hubgen: `hubgen train flow` through the real CLI on the 50k training images for `--minutes` of training, then
   the exact test bits/dim (hubgen.flow.evaluation.evaluate: every test image dequantized once from seed 0) and
   the sample quality at temperatures 1 and 0.7.
2. normflows 1.7 (`pip install hubgen[bench]`): the same architecture size built from its Glow blocks as in its
   multi-scale Glow example (`nf.flows.GlowBlock`, `nf.flows.Squeeze`, `nf.flows.Merge`, an unconditional
   `nf.distributions.GlowBase` per level, `nf.MultiscaleFlow`) with the same levels, steps and hidden width, the
   same logit preprocessing (`nf.transforms.Logit`, alpha 0.05), the same data, uniform dequantization, batch size,
   Adam, learning-rate warm-up, gradient clipping, precision (`--mixed_precision bf16`: torch.autocast around its
   forward) and budget, trained by a plain loop; then bits/dim on the same test images with the same
   dequantization draws.

Training throughput is images per second of the training loop (hubgen's includes its accelerate loop, logging
and checkpoint; normflows' loop does nothing else). With `--num_processes N` hubgen trains through
`accelerate launch` with N CPU processes (gloo), `--threads / N` threads and a batch of `--batch_size / N` each,
so the global batch, the model and the machine stay the same; normflows keeps one process with `--threads`.
`--torch_compile` trains hubgen with `hubgen train --torch_compile` and `--normflows_compile` wraps normflows'
log_prob in torch.compile; either compilation happens inside its model's budget.
Goals (issue 5): at most 1.5 test bits/dim after 20 CPU-minutes, and hubgen's training throughput at least 1.5x
normflows'. Writes `flow_mnist.json` in `--out` and prints one Markdown row per model.
"""

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch
from _train_options import add_train_arguments, train_argv  # bench/_train_options.py (the script's own folder)

from hubgen.cli import main as hubgen
from hubgen.data import load_dataset


def normflows_glow(num_levels: int, steps: int, hidden: int, shape=(1, 28, 28), alpha: float = 0.05):
    """normflows' multi-scale Glow (its examples/glow.ipynb), unconditional, with the logit preprocessing."""
    import normflows as nf

    c, h, w = shape
    q0, merges, flows = [], [], []
    for i in range(num_levels):
        level = [nf.flows.GlowBlock(c * 2 ** (num_levels + 1 - i), hidden, split_mode="channel", scale=True)
                 for _ in range(steps)]  # fmt: skip
        flows.append([*level, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (num_levels - i), h // 2 ** (num_levels - i), w // 2 ** (num_levels - i))
        else:
            latent = (c * 2 ** (num_levels + 1), h // 2**num_levels, w // 2**num_levels)
        q0.append(nf.distributions.GlowBase(latent))
    return nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(alpha), class_cond=False)


def launch(train_args: list[str], num_processes: int, threads: int) -> int:
    """`accelerate launch` hubgen's training in `num_processes` CPU processes (one gloo group), threads split."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": str(threads // num_processes)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(port), "-m", "hubgen", *train_args]  # fmt: skip
    return subprocess.run(cmd, env=env).returncode


def dequantize(images_u8: torch.Tensor, generator=None) -> torch.Tensor:
    """uint8 (B, 1, H, W) -> x = (k + u) / 256, u ~ U[0, 1): the same convention as hubgen.data/hubgen.flow."""
    k = images_u8.float()
    return (k + torch.rand(k.shape, generator=generator)) / 256.0


def plain_step(log_likelihood, x, params, opt, mixed_precision: str, max_grad_norm: float) -> torch.Tensor:
    """One step of a plain training loop: the batch's bits/dim under torch's own autocast (`mixed_precision`
    "bf16", as a plain loop would use it), backward, gradient clipping and the optimizer's step. Returns the loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
        log_p = log_likelihood(x)
    loss = -log_p.float().mean() / (x[0].numel() * math.log(2)) + 8.0  # bits/dim of 8-bit data
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    return loss


def train_normflows(model, train_u8, args) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate, fused=True)  # as hubgen's loop on CPU
    # --normflows_compile: torch.compile of its log_prob, as a user would try it (inductor; the compilation counts in
    # the budget, as hubgen's --torch_compile does)
    log_prob = torch.compile(model.log_prob) if args.normflows_compile else model.log_prob
    g = torch.Generator().manual_seed(args.seed)
    step, images, history, start = 0, 0, [], time.perf_counter()
    model.train()
    while time.perf_counter() - start < args.minutes * 60:
        for idx in torch.randperm(len(train_u8), generator=g).split(args.batch_size):
            if len(idx) < args.batch_size:
                break
            for group in opt.param_groups:
                group["lr"] = args.learning_rate * min(1.0, (step + 1) / args.warmup_steps)
            x = dequantize(train_u8[idx])
            loss = plain_step(lambda x: log_prob(x, None), x, model.parameters(), opt, args.mixed_precision,
                              args.max_grad_norm)  # fmt: skip
            step, images = step + 1, images + len(idx)
            if not math.isfinite(loss.item()):
                return {"steps": step, "diverged": True, "train_seconds": time.perf_counter() - start}
            if step % 100 == 0:
                history.append((step, round(loss.item(), 4)))
            if time.perf_counter() - start >= args.minutes * 60:
                break
    seconds = time.perf_counter() - start
    return {"steps": step, "epochs": round(images / len(train_u8), 2), "train_seconds": round(seconds, 1),
            "images_per_second": round(images / seconds, 1), "history": history}  # fmt: skip


@torch.no_grad()
def test_bits_per_dim(model, test_u8, seed: int, batch_size: int = 500) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(seed)
    num_dims = test_u8[0].numel()
    bits = []
    for i in range(0, len(test_u8), batch_size):
        x = dequantize(test_u8[i : i + batch_size], generator=g)
        bits.append(-model.log_prob(x, None).double() / (num_dims * math.log(2)) + 8.0)
    v = torch.cat(bits)
    return {"mean": v.mean().item(), "stderr": (v.std() / math.sqrt(len(v))).item(), "num_images": len(v)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="an MNIST .npz (x_train, x_test uint8), e.g. ../shared/data/mnist.npz")
    p.add_argument("--out", default="bench/out")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget of each model")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_levels", type=int, default=2)
    p.add_argument("--steps_per_level", type=int, default=6)
    p.add_argument("--hidden_channels", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32, help="global batch")
    p.add_argument("--num_processes", type=int, default=1,
                   help="hubgen's CPU processes (accelerate launch), batch_size / N each")  # fmt: skip
    p.add_argument("--learning_rate", type=float, default=2e-3)
    p.add_argument("--warmup_steps", type=int, default=500)
    p.add_argument("--max_grad_norm", type=float, default=100.0)
    p.add_argument("--eval_num_images", type=int, default=0, help="first N test images (0: all 10,000)")
    p.add_argument("--num_samples", type=int, default=1000, help="hubgen samples per temperature (0: skip)")
    p.add_argument("--skip_normflows", action="store_true")
    p.add_argument("--skip_hubgen", action="store_true")
    p.add_argument("--normflows_compile", action="store_true", help="torch.compile normflows' log_prob (inductor)")
    add_train_arguments(p, default="constant_with_warmup")  # hubgen's schedule (normflows' loop: the warm-up)
    args = p.parse_args()
    if args.num_processes < 1 or args.batch_size % args.num_processes or args.threads % args.num_processes:
        p.error(f"--num_processes {args.num_processes} must divide --batch_size and --threads")
    torch.set_num_threads(args.threads)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    arch = f"L={args.num_levels}, K={args.steps_per_level}, hidden {args.hidden_channels}, batch {args.batch_size}"
    procs = (f"{args.num_processes} process(es) x {args.threads // args.num_processes} thread(s), "
             f"batch {args.batch_size // args.num_processes} each")  # fmt: skip
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "budget_minutes": args.minutes,
        "architecture": arch,
        "data": {"train": "x_train (50,000 images)", "test": "x_test", "dequantization": "uniform, u ~ U[0, 1)/256"},
    }
    rows = []

    if not args.skip_hubgen:
        from hubgen.flow.evaluation import FlowEvalRequest, evaluate
        from hubgen.model_folder import write_evaluation

        folder = out_root / f"flow-mnist-L{args.num_levels}-K{args.steps_per_level}-h{args.hidden_channels}"
        train = [
            "train", "flow", "--dataset", args.data, "--output_dir", str(folder), "--overwrite_output_dir",
            "--num_levels", str(args.num_levels), "--steps_per_level", str(args.steps_per_level),
            "--hidden_channels", str(args.hidden_channels),
            "--train_batch_size", str(args.batch_size // args.num_processes),
            "--learning_rate", str(args.learning_rate), "--lr_warmup_steps", str(args.warmup_steps),
            "--max_grad_norm", str(args.max_grad_norm), "--num_epochs", "10000",
            "--max_train_time", str(args.minutes * 60), "--seed", str(args.seed), "--checkpointing_steps", "2000",
            "--checkpoints_total_limit", "1", "--sample_steps", "2000", "--logging_steps", "100",
            "--no_eval", "--report_to", "none", *train_argv(args),
        ]  # fmt: skip
        code = hubgen(train) if args.num_processes == 1 else launch(train, args.num_processes, args.threads)
        if code != 0:
            print(f"hubgen training failed with exit code {code}", file=sys.stderr)
            return code
        info = json.loads((folder / "hubgen_training.json").read_text())
        request = FlowEvalRequest(dataset=args.data, num_images=args.eval_num_images or None,
                                  num_samples=args.num_samples, seed=0)  # fmt: skip
        results = write_evaluation(folder, evaluate(folder, request))  # eval_results.json and its pictures
        from hubgen.hub import render_card

        render_card(folder)
        bpd = results["metrics"]["exact_bits_per_dim"]
        quality = {t: {"fd": r["frechet_distance"]["value"], "floor": r["frechet_distance"]["floor_train_vs_test"],
                       "coverage": r["prdc"]["coverage"], "num_samples": r["num_samples"]}
                   for t, r in (results.get("sample_quality_by_temperature") or {}).items()}  # fmt: skip
        record["hubgen"] = {
            "folder": str(folder),
            "processes": procs,
            "train": {k: info.get(k) for k in ("train_seconds", "steps", "epochs", "images_per_second")},
            "test_bits_per_dim": {**bpd, "num_images": results["num_images"]},
            "sample_quality": quality,
        }
        fd = ", ".join(f"T={t}: FD {q['fd']:.1f} (floor {q['floor']:.1f}), coverage {q['coverage']:.3f}"
                       for t, q in quality.items())  # fmt: skip
        rows.append(["hubgen", f"{arch}; {procs}", f"{info['steps']} steps, {info['epochs']} epochs",
                     info["images_per_second"], f"{bpd['mean']:.4f} ± {bpd['stderr']:.4f}", results["num_images"],
                     fd or "-"])  # fmt: skip

    if not args.skip_normflows:
        import normflows as nf

        train = load_dataset(args.data, "train").images  # (50000, 1, 28, 28) uint8
        test = load_dataset(args.data, "test").images
        if args.eval_num_images:
            test = test[: args.eval_num_images]
        torch.manual_seed(args.seed)
        model = normflows_glow(args.num_levels, args.steps_per_level, args.hidden_channels, tuple(train.shape[1:]))
        trained = train_normflows(model, train, args)
        bpd = test_bits_per_dim(model, test, seed=0)
        record["normflows"] = {"version": nf.__version__, "compiled": args.normflows_compile, "train": trained,
                               "test_bits_per_dim": bpd}  # fmt: skip
        rows.append([f"normflows {nf.__version__}", arch, f"{trained['steps']} steps, {trained.get('epochs')} epochs",
                     trained.get("images_per_second"), f"{bpd['mean']:.4f} ± {bpd['stderr']:.4f}", bpd["num_images"],
                     "-"])  # fmt: skip

    if "hubgen" in record and "normflows" in record and record["normflows"]["train"].get("images_per_second"):
        ratio = record["hubgen"]["train"]["images_per_second"] / record["normflows"]["train"]["images_per_second"]
        record["throughput_ratio_hubgen_over_normflows"] = round(ratio, 3)
    if "hubgen" in record:
        record["goals"] = {
            "test_bits_per_dim_at_most_1.5": record["hubgen"]["test_bits_per_dim"]["mean"] <= 1.5,
            "throughput_ratio_at_least_1.5": record.get("throughput_ratio_hubgen_over_normflows", 0) >= 1.5,
        }
    (out_root / "flow_mnist.json").write_text(json.dumps(record, indent=2) + "\n")
    header = ["model", "architecture", "training", "train images/s", "test bits/dim", "N (test)",
              "sample quality (N, seed 0)"]  # fmt: skip
    print(f"\n{args.minutes:g} minutes per model, {torch.get_num_threads()} torch threads, {record['date']}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if "throughput_ratio_hubgen_over_normflows" in record:
        print(f"throughput ratio hubgen / normflows: {record['throughput_ratio_hubgen_over_normflows']:.2f}")
    if "goals" in record:
        print("goals:", json.dumps(record["goals"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
